package bench

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/groupcast/groupcast/internal/testenv"
)

// fakeNode answers subscribes with answer and publishes with ack, on a
// loopback port, and remembers the request URIs.
type fakeNode struct {
	answer, ack []byte
	quiet       bool // remember no URI (an allocation per request)
	mu          sync.Mutex
	uris        []string
}

func (f *fakeNode) serve(t *testing.T) (*fasthttp.HostClient, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		f.mu.Lock()
		if !f.quiet {
			f.uris = append(f.uris, string(ctx.RequestURI()))
		}
		f.mu.Unlock()
		if ctx.IsGet() && len(ctx.Path()) > 3 && string(ctx.Path()[:3]) == "/v2" {
			ctx.SetBody(f.answer)
			return
		}
		ctx.SetBody(f.ack)
	}}
	go srv.Serve(ln) //nolint:errcheck // ends when the listener closes
	t.Cleanup(func() { _ = ln.Close() })
	t.Cleanup(func() { _ = srv.Shutdown() })
	return &fasthttp.HostClient{Addr: ln.Addr().String()}, ln.Addr().String()
}

// TestGroupcastRequests checks the requests the load generator sends a node,
// built in the pooled requests' buffers: their URIs, the acknowledgement a
// publish must get, and that a re-poll decodes into the subscriber's buffer.
func TestGroupcastRequests(t *testing.T) {
	ctx := context.Background()
	f := &fakeNode{answer: sampleSubscribe(3), ack: []byte(`[1,"Sent","17000000000000000"]`)}
	hc, addr := f.serve(t)
	g := &Groupcast{Origin: "http://" + addr, Account: "acct", Auth: "tok+/="}
	sc := NewSubConn(addr)
	defer sc.Close()
	buf := make([]int64, 0, 8)
	msgs, next, err := g.Poll(ctx, sc, "ch-1", Cursor{A: "123"}, append(buf, -1, -2, -3, -4))
	want, tt, _ := decodeSubscribe(sampleSubscribe(3), nil)
	if err != nil || !slices.Equal(msgs, want) || next.A != tt {
		t.Fatalf("poll: %v, %v, %v; want %v, %s", msgs, next, err, want, tt)
	}
	if &msgs[0] != &buf[:1][0] {
		t.Error("the answer was not decoded into the buffer given")
	}
	if err := g.Publish(ctx, hc, "ch-1", 42); err != nil {
		t.Fatal(err)
	}
	gg := &GroupcastGroup{Groupcast: &Groupcast{Origin: "http://" + addr, Account: "acct"}, Group: "grp"}
	if _, _, err := gg.Poll(ctx, sc, "", Cursor{A: "7"}, nil); err != nil {
		t.Fatal(err)
	}
	wantURIs := []string{
		"/v2/subscribe/acct/ch-1/0?tt=123&auth=tok%2B%2F%3D",
		"/publish/bench/acct/0/ch-1/0/42?auth=tok%2B%2F%3D",
		"/v2/subscribe/acct/,/0?channel-group=grp&tt=7",
	}
	if !slices.Equal(f.uris, wantURIs) {
		t.Errorf("requests %q, want %q", f.uris, wantURIs)
	}

	f.ack = []byte(`[0,"Failed","x"]`)
	if err := g.Publish(ctx, hc, "ch-1", 43); err == nil {
		t.Error("a publish the node did not acknowledge: no error")
	}
}

// TestGroupcastPollAllocs: a re-poll allocates the next cursor's
// string and nothing per message (the load generator's core decodes about
// a million messages a second; its collections were a third of Nchan's
// client's before the buffers were reused, and charged to groupcast).
func TestGroupcastPollAllocs(t *testing.T) {
	testenv.CountAllocs(t)
	ctx := context.Background()
	f := &fakeNode{answer: sampleSubscribe(50), ack: []byte(`[1,"Sent","1"]`), quiet: true}
	_, addr := f.serve(t)
	g := &Groupcast{Origin: "http://" + addr, Account: "acct"}
	sc := NewSubConn(addr)
	defer sc.Close()
	var msgs []int64
	cur := Cursor{A: "1"}
	poll := func() {
		var err error
		if msgs, _, err = g.Poll(ctx, sc, "ch-1", cur, msgs); err != nil || len(msgs) != 50 {
			t.Fatalf("poll: %d messages, %v", len(msgs), err)
		}
	}
	n := testing.AllocsPerRun(200, poll)
	t.Logf("%.1f allocations per re-poll, the loopback server's included", n)
	if n > 1 {
		t.Errorf("%.1f allocations per re-poll (the server's included), want at most 1", n)
	}
}

// TestSubConnReadsWhatServersAnswer: a subscriber's connection reads a
// Content-Length body, a chunked one, a 304 without a body, the headers a
// cursor needs, and dials again after the server closed the connection.
func TestSubConnReadsWhatServersAnswer(t *testing.T) {
	var mu sync.Mutex
	var requests []string
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		mu.Lock()
		requests = append(requests, string(ctx.RequestURI())+" ims="+string(ctx.Request.Header.Peek("If-Modified-Since"))+" inm="+string(ctx.Request.Header.Peek("If-None-Match")))
		mu.Unlock()
		switch string(ctx.Path()) {
		case "/fixed":
			ctx.Response.Header.Set("Last-Modified", "Tue, 01 Dec 2026 18:00:00 GMT")
			ctx.Response.Header.Set("Etag", "7")
			ctx.SetBodyString("1\n2\n")
		case "/chunked":
			ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
				w.WriteString("10\n")     //nolint:errcheck
				w.Flush()                 //nolint:errcheck
				w.WriteString("20\n30\n") //nolint:errcheck
			})
		case "/none":
			ctx.SetStatusCode(fasthttp.StatusNotModified)
		case "/close":
			ctx.SetConnectionClose()
			ctx.SetBodyString("bye")
		}
	}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln) //nolint:errcheck // ends at Shutdown
	t.Cleanup(func() { _ = srv.Shutdown() })
	sc := NewSubConn(ln.Addr().String())
	defer sc.Close()
	for _, c := range []struct {
		target, extra, body string
		status              int
		lm, etag            string
	}{
		{"/fixed", "", "1\n2\n", 200, "Tue, 01 Dec 2026 18:00:00 GMT", "7"},
		{"/chunked", "If-Modified-Since: a\r\nIf-None-Match: b\r\n", "10\n20\n30\n", 200, "", ""},
		{"/none", "", "", 304, "", ""},
		{"/close", "", "bye", 200, "", ""},
		{"/fixed?x=1", "", "1\n2\n", 200, "Tue, 01 Dec 2026 18:00:00 GMT", "7"}, // on a new connection
	} {
		status, body, err := sc.Get([]byte(c.target), []byte(c.extra))
		if err != nil || status != c.status || string(body) != c.body || string(sc.LastModified) != c.lm || string(sc.Etag) != c.etag {
			t.Errorf("%s: %d %q (Last-Modified %q, Etag %q), %v; want %d %q (%q, %q)",
				c.target, status, body, sc.LastModified, sc.Etag, err, c.status, c.body, c.lm, c.etag)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(requests) != 5 || requests[1] != "/chunked ims=a inm=b" || requests[4] != "/fixed?x=1 ims= inm=" {
		t.Errorf("the server got %q", requests)
	}
}

// FuzzSubConnRead: whatever a server answers, reading it returns an answer
// or an error, never a panic, and a body read by its Content-Length has
// that length.
func FuzzSubConnRead(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 4\r\nEtag: 1\r\n\r\n1\n2\n"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n10\n\r\n0\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 304 Not Modified\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 200 OK\r\n\r\nended by closing"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffff\r\n"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7fffffff\r\n"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2000000000\r\n\r\n"))
	f.Fuzz(func(t *testing.T, answer []byte) {
		s := &SubConn{br: bufio.NewReader(bytes.NewReader(answer))}
		status, body, err := s.read()
		if err != nil {
			return
		}
		if status < 0 || status > 999 {
			t.Fatalf("status %d", status)
		}
		if i := bytes.Index(bytes.ToLower(answer), []byte("\ncontent-length:")); i >= 0 && !bytes.Contains(bytes.ToLower(answer), []byte("chunked")) {
			line, _, _ := bytes.Cut(answer[i+len("\ncontent-length:"):], []byte("\n"))
			if n, err := strconv.Atoi(string(bytes.TrimSpace(line))); err == nil && n != len(body) {
				t.Fatalf("Content-Length %d, body of %d bytes", n, len(body))
			}
		}
	})
}

// TestSubConnReadsABodyEndedByClosing: an answer with neither
// Content-Length nor chunked ends with the connection, which is then closed.
func TestSubConnReadsABodyEndedByClosing(t *testing.T) {
	s := &SubConn{br: bufio.NewReader(strings.NewReader("HTTP/1.1 200 OK\r\nEtag: 3\r\n\r\n1\n2\n"))}
	status, body, err := s.read()
	if err != nil || status != 200 || string(body) != "1\n2\n" || string(s.Etag) != "3" {
		t.Fatalf("%d %q %q, %v", status, body, s.Etag, err)
	}
}
