package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/groupcast/groupcast/internal/nodetest"
	"github.com/groupcast/groupcast/subscriber"
)

// TestDroppedLongPollsAreReleased opens 1,000 long-polls over real TCP and
// drops them from the client side. Each parked poll ends when the watcher
// sees its connection close (watch_linux.go) or, at the latest, on its hold
// timer (here 500ms); then the goroutines and the heap must be back at their
// baseline.
func TestDroppedLongPollsAreReleased(t *testing.T) {
	_, cfg := embeddedWith(t, prometheus.NewRegistry(), subscriber.Config{PollHold: 500 * time.Millisecond})
	base := nodetest.Serve(t, cfg)

	// A handshake gives the cursor to park on.
	var hs struct {
		T struct {
			T string `json:"t"`
		} `json:"t"`
	}
	if err := getJSONURL(base+"/v2/subscribe/demo/quiet/0", &hs); err != nil {
		t.Fatal(err)
	}
	settle := func() (int, uint64) {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return runtime.NumGoroutine(), ms.HeapInuse
	}
	g0, h0 := settle()

	const polls = 1000
	var wg sync.WaitGroup
	for i := range polls {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s/v2/subscribe/demo/quiet,c%d/0?tt=%s", base, i, hs.T.T), nil)
			tr := &http.Transport{DisableKeepAlives: true}
			defer tr.CloseIdleConnections()
			resp, err := (&http.Client{Transport: tr}).Do(req)
			if err == nil { // the poll must not answer before the client gives up
				resp.Body.Close()
				t.Errorf("poll %d answered %d before its hold", i, resp.StatusCode)
			}
		})
	}
	wg.Wait()
	var g1 int
	var h1 uint64
	deadline := time.Now().Add(30 * time.Second)
	for {
		g1, h1 = settle()
		if g1 <= g0+5 && h1 <= h0+4<<20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after dropping %d polls: %d goroutines (baseline %d), heap %d KiB (baseline %d KiB)", polls, g1, g0, h1>>10, h0>>10)
		}
		<-time.After(50 * time.Millisecond) // polling with a deadline: the server's own timers release the polls
	}
	t.Logf("goroutines %d → %d, heap in use %d KiB → %d KiB after %d dropped polls", g0, g1, h0>>10, h1>>10, polls)
}

func getJSONURL(u string, into any) error {
	resp, err := http.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return jsonDecode(resp, into)
}

// TestParkedPollKeepsItsConnection parks a subscribe, answers it with a
// publish, and then sends further requests on the same TCP connection: the
// connection a parked poll hijacked goes back to the server. A request with
// Connection: close gets its answer and then the connection closes.
func TestParkedPollKeepsItsConnection(t *testing.T) {
	_, cfg := embeddedWith(t, prometheus.NewRegistry(), subscriber.Config{PollHold: 2 * time.Second})
	base := nodetest.Serve(t, cfg)
	var hs struct {
		T struct {
			T string `json:"t"`
		} `json:"t"`
	}
	if err := getJSONURL(base+"/v2/subscribe/demo/kept/0", &hs); err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(20 * time.Second)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	roundTrip := func(path, connection string) (*http.Response, string) {
		t.Helper()
		if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: %s\r\n\r\n", path, connection); err != nil {
			t.Fatal(err)
		}
		return readResponse(t, br)
	}

	for i := range 3 { // each parks until the publish below answers it
		if _, err := fmt.Fprintf(conn, "GET /v2/subscribe/demo/kept/0?tt=%s HTTP/1.1\r\nHost: x\r\n\r\n", hs.T.T); err != nil {
			t.Fatal(err)
		}
		// The cursor makes this race-free: a publish that lands before the
		// poll is registered is found in the ring at once.
		resp, err := http.Get(fmt.Sprintf("%s/publish/demo/demo/0/kept/0/%%22m%d%%22", base, i))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		_, body := readResponse(t, br)
		if !strings.Contains(body, fmt.Sprintf(`"d":"m%d"`, i)) {
			t.Fatalf("answer %d = %s", i, body)
		}
		var next struct {
			T struct {
				T string `json:"t"`
			} `json:"t"`
		}
		if err := json.Unmarshal([]byte(body), &next); err != nil {
			t.Fatal(err)
		}
		hs.T.T = next.T.T
		if resp, body := roundTrip("/time/0", "keep-alive"); resp.StatusCode != 200 || !strings.HasPrefix(body, "[") {
			t.Fatalf("request after the parked poll, same connection: %d %s", resp.StatusCode, body)
		}
	}
	// This poll parks until its 2s hold passes, answers, and then the
	// server closes the connection as asked.
	resp, body := roundTrip("/v2/subscribe/demo/kept/0?tt="+hs.T.T, "close")
	if resp.StatusCode != 200 || !strings.Contains(body, `"m":[]`) {
		t.Fatalf("held poll: %d %s", resp.StatusCode, body)
	}
	if !resp.Close {
		t.Fatalf("answer to a Connection: close poll does not close: %v", resp.Header)
	}
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("connection still open after Connection: close")
	}
}

func readResponse(t *testing.T, br *bufio.Reader) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Error(err)
		return nil, ""
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Error(err)
	}
	return resp, string(b)
}
