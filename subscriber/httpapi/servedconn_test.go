//go:build unix

package httpapi

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// countingConn counts the reads of a TCP connection: plain ones and the
// read(2) calls made through its RawConn.
type countingConn struct {
	*net.TCPConn
	plain, raw atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	c.plain.Add(1)
	return c.TCPConn.Read(p)
}

func (c *countingConn) SyscallConn() (syscall.RawConn, error) {
	rc, err := c.TCPConn.SyscallConn()
	return countingRawConn{rc, &c.raw}, err
}

type countingRawConn struct {
	syscall.RawConn
	n *atomic.Int64
}

func (r countingRawConn) Read(f func(uintptr) bool) error {
	return r.RawConn.Read(func(fd uintptr) bool { r.n.Add(1); return f(fd) })
}

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (server *net.TCPConn, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); s.Close() })
	return s.(*net.TCPConn), client
}

// TestServedConnReadsARequestOnce: fasthttp serving a handed-back
// connection (ReduceMemoryUsage: a one-byte read, then the rest) reads a
// request that has arrived with one read(2), and a pipelined second
// request is served from the same read.
func TestServedConnReadsARequestOnce(t *testing.T) {
	s, client := tcpPair(t)
	cc := &countingConn{TCPConn: s}
	type seen struct {
		path       string
		plain, raw int64
	}
	seenc := make(chan seen, 2)
	srv := &fasthttp.Server{
		ReduceMemoryUsage: true,
		Handler: func(ctx *fasthttp.RequestCtx) {
			seenc <- seen{string(ctx.Path()), cc.plain.Load(), cc.raw.Load()}
			ctx.SetBodyString("ok")
		},
	}
	// Both requests are there before the server reads.
	if _, err := client.Write([]byte("GET /a HTTP/1.1\r\nHost: x\r\nUser-Agent: " + strings.Repeat("u", 300) + "\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	var lp longPollState
	done := make(chan error, 1)
	go func() { done <- srv.ServeConn(lp.newServedConn(cc, nil, nil)) }()
	for _, want := range []seen{{"/a", 0, 1}, {"/b", 0, 1}} {
		select {
		case got := <-seenc:
			if got != want {
				t.Fatalf("served %s after %d plain reads and %d read(2)s, want %s after %d and %d", got.path, got.plain, got.raw, want.path, want.plain, want.raw)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s not served", want.path)
		}
	}
	// The answers arrive, and the connection closes cleanly.
	r := bufio.NewReader(client)
	for range 2 {
		resp := fasthttp.AcquireResponse()
		if err := resp.Read(r); err != nil || string(resp.Body()) != "ok" {
			t.Fatalf("answer: %q, %v", resp.Body(), err)
		}
		fasthttp.ReleaseResponse(resp)
	}
	client.Close()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("ServeConn did not return after the client closed")
	}
}

// TestServedConnKeepsReadAheadBytes: bytes read ahead and not yet handed
// to the server keep the connection wrapped when it parks (unwrapHijacked),
// and are read before the socket.
func TestServedConnKeepsReadAheadBytes(t *testing.T) {
	s, client := tcpPair(t)
	if _, err := client.Write([]byte("abcdef")); err != nil {
		t.Fatal(err)
	}
	var lp longPollState
	sc := lp.newServedConn(s, nil, nil)
	b := make([]byte, 1)
	if n, err := sc.Read(b); n != 1 || err != nil || b[0] != 'a' {
		t.Fatalf("first read: %d %q %v", n, b[:n], err)
	}
	// fasthttp's hijack wrapper, reading straight from the servedConn.
	hj := &fakeHijacked{Conn: sc, r: sc}
	if c, buffered := unwrapHijacked(hj); !buffered || c != net.Conn(hj) {
		t.Fatalf("unwrapHijacked with bytes read ahead = %T, %v; want the wrapper, true", c, buffered)
	}
	if _, err := client.Write([]byte("gh")); err != nil {
		t.Fatal(err)
	}
	var got []byte
	buf := make([]byte, 64<<10)
	for len(got) < 7 {
		if err := sc.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		n, err := sc.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, buf[:n]...)
	}
	if string(got) != "bcdefgh" {
		t.Fatalf("read %q, want %q", got, "bcdefgh")
	}
	if sc.buffered() {
		t.Fatal("still buffered after everything was read")
	}
}

// fakeHijacked has the shape of fasthttp's hijack wrapper that
// unwrapHijacked looks into.
type fakeHijacked struct {
	net.Conn
	r io.Reader
}

func (c *fakeHijacked) UnsafeConn() net.Conn { return c.Conn }

// TestResolveRemembersASubscribePath: on a served connection a subscribe's
// path is decoded and matched once and reused while it stays the same; a
// changed path (another channel), another endpoint and a malformed path are
// each resolved afresh, and a connection that was never handed back
// remembers nothing.
func TestResolveRemembersASubscribePath(t *testing.T) {
	a := &API{cfg: Config{Logger: slog.New(slog.DiscardHandler)}}
	s, _ := tcpPair(t)
	sc := &servedConn{Conn: s}
	resolve := func(c net.Conn, uri string) (*fasthttp.RequestCtx, []string, endpoint, bool) {
		t.Helper()
		ctx := new(fasthttp.RequestCtx)
		ctx.Init2(c, nil, false)
		ctx.Request.SetRequestURI(uri)
		raw := ctx.URI().PathOriginal()
		if i := strings.IndexByte(string(raw), '?'); i >= 0 {
			raw = raw[:i]
		}
		parts, ep, ok := a.resolve(ctx, raw)
		return ctx, parts, ep, ok
	}
	_, first, ep, ok := resolve(sc, "/v2/subscribe/sub-c/ch%2Ca,b/0?tt=1&uuid=u")
	if !ok || ep.name != "subscribe" || len(first) != 5 || first[3] != "ch,a,b" {
		t.Fatalf("first subscribe: %q, %s, %v", first, ep.name, ok)
	}
	_, again, ep, ok := resolve(sc, "/v2/subscribe/sub-c/ch%2Ca,b/0?tt=2&uuid=u")
	if !ok || ep.name != "subscribe" || &again[0] != &first[0] {
		t.Fatalf("the same path again was resolved afresh (or not served): %q, %s, %v", again, ep.name, ok)
	}
	_, other, ep, ok := resolve(sc, "/v2/subscribe/sub-c/other/0?tt=3")
	if !ok || ep.name != "subscribe" || other[3] != "other" {
		t.Fatalf("another channel's path: %q, %s, %v", other, ep.name, ok)
	}
	if _, tp, ep, ok := resolve(sc, "/time/0"); !ok || ep.name != "time" || len(tp) != 2 {
		t.Fatalf("time after a subscribe: %q, %s, %v", tp, ep.name, ok)
	}
	if _, again, _, _ := resolve(sc, "/v2/subscribe/sub-c/other/0?tt=4"); &again[0] != &other[0] {
		t.Errorf("a request to another endpoint replaced the remembered subscribe")
	}
	if ctx, _, _, ok := resolve(sc, "/v2/subscribe/sub-c/%ZZ/0?tt=5"); ok || ctx.Response.StatusCode() != fasthttp.StatusBadRequest {
		t.Fatalf("a malformed path: ok %v, status %d; want false, 400", ok, ctx.Response.StatusCode())
	}
	plain, _ := tcpPair(t)
	_, p1, _, _ := resolve(plain, "/v2/subscribe/sub-c/ch/0?tt=1")
	_, p2, _, _ := resolve(plain, "/v2/subscribe/sub-c/ch/0?tt=2")
	if &p1[0] == &p2[0] {
		t.Error("a connection never handed back remembered a path")
	}
}
