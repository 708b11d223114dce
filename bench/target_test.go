package bench

import (
	"context"
	"net"
	"slices"
	"sync"
	"testing"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/groupcast/groupcast/internal/testenv"
)

// fakeNode answers subscribes with answer and publishes with ack, over an
// in-memory listener, and remembers the request URIs.
type fakeNode struct {
	answer, ack []byte
	quiet       bool // remember no URI (an allocation per request)
	mu          sync.Mutex
	uris        []string
}

func (f *fakeNode) serve(t *testing.T) *fasthttp.HostClient {
	t.Helper()
	ln := fasthttputil.NewInmemoryListener()
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
	return &fasthttp.HostClient{Addr: "node", Dial: func(string) (net.Conn, error) { return ln.Dial() }}
}

// TestGroupcastRequests checks the requests the load generator sends a node,
// built in the pooled requests' buffers: their URIs, the acknowledgement a
// publish must get, and that a re-poll decodes into the subscriber's buffer.
func TestGroupcastRequests(t *testing.T) {
	ctx := context.Background()
	f := &fakeNode{answer: sampleSubscribe(3), ack: []byte(`[1,"Sent","17000000000000000"]`)}
	hc := f.serve(t)
	g := &Groupcast{Origin: "http://node", Account: "acct", Auth: "tok+/="}
	buf := make([]int64, 0, 8)
	msgs, next, err := g.Poll(ctx, hc, "ch-1", Cursor{A: "123"}, append(buf, -1, -2, -3, -4))
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
	gg := &GroupcastGroup{Groupcast: &Groupcast{Origin: "http://node", Account: "acct"}, Group: "grp"}
	if _, _, err := gg.Poll(ctx, hc, "", Cursor{A: "7"}, nil); err != nil {
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
	hc := f.serve(t)
	g := &Groupcast{Origin: "http://node", Account: "acct"}
	var msgs []int64
	cur := Cursor{A: "1"}
	poll := func() {
		var err error
		if msgs, _, err = g.Poll(ctx, hc, "ch-1", cur, msgs); err != nil || len(msgs) != 50 {
			t.Fatalf("poll: %d messages, %v", len(msgs), err)
		}
	}
	n := testing.AllocsPerRun(200, poll)
	t.Logf("%.1f allocations per re-poll, the in-memory server's included", n)
	if n > 1 {
		t.Errorf("%.1f allocations per re-poll (the server's included), want at most 1", n)
	}
}
