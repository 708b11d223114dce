package httpapi_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/groupcast/groupcast/internal/nodetest"
	"github.com/groupcast/groupcast/subscriber"
	"github.com/groupcast/groupcast/subscriber/httpapi"
)

// handedBack parks a poll on a new connection to base (served for node),
// publishes to answer it and reads the answer: the connection is then the
// server's again, waiting for its next request (on Linux, in the re-poll
// queue). It publishes only once the poll is parked: a poll answered at
// once stays with the server's own loop, which is never handed back.
func handedBack(t *testing.T, node *subscriber.Node, base string) (net.Conn, *bufio.Reader) {
	t.Helper()
	var hs pollAnswer
	if err := getJSONURL(base+"/v2/subscribe/demo/back/0", &hs); err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := fmt.Fprintf(conn, "GET /v2/subscribe/demo/back/0?tt=%s HTTP/1.1\r\nHost: x\r\n\r\n", hs.T.T); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the poll is parked", func() bool { return node.Parked() == 1 })
	resp, err := http.Get(base + "/publish/demo/demo/0/back/0/%22m%22")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if err := conn.SetReadDeadline(time.Now().Add(20 * time.Second)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	if _, body := readResponse(t, br); !strings.Contains(body, `"d":"m"`) {
		t.Fatalf("answer = %s", body)
	}
	return conn, br
}

// serveWith serves a node's API on TCP with the fasthttp server changed by
// mod (nodetest.ServeWith).
func serveWith(t *testing.T, mod func(*httpapi.Server)) (node *subscriber.Node, base string, stop func()) {
	t.Helper()
	_, cfg := embeddedWith(t, prometheus.NewRegistry(), subscriber.Config{PollHold: time.Minute})
	base, stop = nodetest.ServeWith(t, cfg, mod)
	return cfg.Pubsub.(*subscriber.Node), base, stop
}

// TestHandedBackConnectionTimesOut: a connection handed back after a
// long-poll, waiting for its next request, is closed by the server at its
// read timeout (fasthttp's for the first request of a connection it is
// given): a wait in the re-poll queue keeps the deadline the server set,
// up to a second late.
func TestHandedBackConnectionTimesOut(t *testing.T) {
	node, base, _ := serveWith(t, func(s *httpapi.Server) { s.ReadTimeout = 300 * time.Millisecond })
	conn, br := handedBack(t, node, base)
	if err := conn.SetReadDeadline(time.Now().Add(15 * time.Second)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if rest, err := io.ReadAll(br); err != nil {
		t.Fatalf("idle handed-back connection: read %q, %v after %v; want the server to close it after its 300ms read timeout", rest, err, time.Since(start))
	}
}

// TestShutdownClosesHandedBackConnection: Shutdown returns while a
// handed-back connection waits for its next request: closing it ends its
// wait (servedConn.Close).
func TestShutdownClosesHandedBackConnection(t *testing.T) {
	node, base, stop := serveWith(t, func(*httpapi.Server) {})
	conn, br := handedBack(t, node, base)
	stopped := make(chan struct{})
	go func() {
		stop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(15 * time.Second):
		t.Fatal("Shutdown did not return with a handed-back connection waiting")
	}
	if err := conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("after Shutdown: read %v, want EOF", err)
	}
}
