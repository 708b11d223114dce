package httpapi_test

import (
	"bytes"
	"compress/zlib"
	"context"
	"encoding/json"
	"net"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/groupcast/groupcast/channelgroups"
	"github.com/groupcast/groupcast/channelgroups/bolt"
	"github.com/groupcast/groupcast/subscriber"
	"github.com/groupcast/groupcast/subscriber/httpapi"
)

// testShards is the shard count of the test clusters: not the default, so
// that a forwarder computing shards from the wrong count is noticed.
const testShards = 8

// fakeRouter routes every shard to the same owners, the first the primary,
// and records what it is asked and told.
type fakeRouter struct {
	self string

	mu      sync.Mutex
	owners  []string
	shards  []int
	refused []string
}

func (r *fakeRouter) Route(shard int, write bool) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.shards = append(r.shards, shard)
	if i := slices.Index(r.owners, r.self); i == 0 || i > 0 && !write {
		return nil
	}
	return append([]string{}, r.owners...) // non-nil, even when empty
}

func (r *fakeRouter) Refused(addr string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.refused = append(r.refused, addr)
}

func (r *fakeRouter) setOwners(owners ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.owners = owners
}

func (r *fakeRouter) refusals() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.refused)
}

func (r *fakeRouter) askedShards() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.shards)
}

// countingPubsub counts the polls started (and registered) on a node.
type countingPubsub struct {
	httpapi.Pubsub
	polls atomic.Int64
}

func (c *countingPubsub) StartPoll(ctx context.Context, req subscriber.PollRequest, done func(subscriber.PollResult, error)) *subscriber.Parked {
	p := c.Pubsub.StartPoll(ctx, req, done)
	c.polls.Add(1)
	return p
}

// killableListener can be closed with every connection it accepted, as if
// its process had died.
type killableListener struct {
	net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func (l *killableListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		l.conns = append(l.conns, c)
		l.mu.Unlock()
	}
	return c, err
}

func (l *killableListener) kill() {
	l.Listener.Close()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		c.Close()
	}
}

type clusterNode struct {
	addr   string
	ln     *killableListener
	store  *bolt.Store
	reg    *prometheus.Registry
	router *fakeRouter
	pubsub *countingPubsub
	api    *httpapi.API
	kill   func()
}

func listen(t *testing.T) *killableListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return &killableListener{Listener: ln}
}

// deadAddr is an address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln := listen(t)
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// startNode serves an embedded node on ln with a router that knows it as
// ln's address and routes to owners.
func startNode(t *testing.T, ln *killableListener, owners ...string) *clusterNode {
	t.Helper()
	n := &clusterNode{addr: ln.Addr().String(), ln: ln, reg: prometheus.NewRegistry()}
	n.router = &fakeRouter{self: n.addr, owners: owners}
	var cfg httpapi.Config
	n.store, cfg = embeddedWith(t, n.reg, subscriber.Config{Shards: testShards})
	n.pubsub = &countingPubsub{Pubsub: cfg.Pubsub}
	cfg.Pubsub, cfg.Router, cfg.Shards, cfg.Node = n.pubsub, n.router, testShards, n.addr
	cfg.ForwardTimeout = 30 * time.Second
	api, err := httpapi.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	n.api = api
	srv := httpapi.NewServer(api)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	var killed atomic.Bool
	n.kill = func() {
		if !killed.Swap(true) {
			ln.kill()
		}
	}
	t.Cleanup(func() {
		if !killed.Swap(true) {
			api.Drain(0)
			if err := srv.Shutdown(); err != nil {
				t.Error(err)
			}
		}
		<-done
		api.CloseIdleForwards()
	})
	return n
}

// cluster starts nodes A and B, the owners of every shard (A the primary),
// and C, which owns none.
func cluster(t *testing.T) (a, b, c *clusterNode) {
	t.Helper()
	la, lb, lc := listen(t), listen(t), listen(t)
	owners := []string{la.Addr().String(), lb.Addr().String()}
	return startNode(t, la, owners...), startNode(t, lb, owners...), startNode(t, lc, owners...)
}

var testClient = &fasthttp.Client{ReadTimeout: 30 * time.Second, ReadBufferSize: 256 << 10, DisablePathNormalizing: true}

func call(t *testing.T, method, addr, uri string, hdr map[string]string, body []byte) reply {
	t.Helper()
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://" + addr + uri)
	req.URI().DisablePathNormalizing = true
	req.Header.SetMethod(method)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if body != nil {
		req.SetBody(body)
	}
	if err := testClient.Do(req, resp); err != nil {
		t.Fatalf("%s %s%s: %v", method, addr, uri, err)
	}
	r := reply{status: resp.StatusCode(), contentType: string(resp.Header.ContentType()), body: append([]byte(nil), resp.Body()...), headers: map[string]string{}}
	for k, v := range resp.Header.All() {
		r.headers[string(k)] = string(v)
	}
	return r
}

func (n *clusterNode) get(t *testing.T, uri string) reply {
	t.Helper()
	return call(t, "GET", n.addr, uri, nil, nil)
}

// metric returns the value of a counter (or a histogram's sample count)
// with the given label, or 0.
func metric(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			found := label == ""
			for _, l := range m.GetLabel() {
				found = found || l.GetName() == label && l.GetValue() == value
			}
			if !found {
				continue
			}
			if h := m.GetHistogram(); h != nil {
				return float64(h.GetSampleCount())
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

func sameAnswer(t *testing.T, what string, got, want reply) {
	t.Helper()
	if got.status != want.status || got.contentType != want.contentType || !bytes.Equal(got.body, want.body) {
		t.Fatalf("%s: got %d %q %s, want %d %q %s", what, got.status, got.contentType, got.body, want.status, want.contentType, want.body)
	}
	for _, h := range []string{"Access-Control-Allow-Origin", "Cache-Control"} {
		if got.headers[h] != want.headers[h] {
			t.Fatalf("%s: header %s %q, want %q", what, h, got.headers[h], want.headers[h])
		}
	}
}

func TestForwardAnswersAsTheOwner(t *testing.T) {
	a, b, c := cluster(t)

	// An edit through C (no owner) and one through B (a secondary) are made
	// on A, the primary, once each; encoded names pass through unchanged.
	r := c.get(t, cg+"/gr%C3%BCn?add=%C3%A9t%C3%A9%2Cwinter")
	if r.status != 200 || r.contentType != "application/json" || r.headers[httpapi.TokenHeader] == "" {
		t.Fatalf("add via C: %d %q %s %v", r.status, r.contentType, r.body, r.headers)
	}
	tt := decode(t, r)["timetoken"].(string)
	if r := b.get(t, cg+"/gr%C3%BCn?remove=winter"); r.status != 200 {
		t.Fatalf("remove via B: %d %s", r.status, r.body)
	}
	snap, err := a.store.Read(t.Context(), "demo", "grün")
	if err != nil {
		t.Fatal(err)
	}
	if got := snap.Channels(); !reflect.DeepEqual(got, []channelgroups.Channel{"été"}) {
		t.Fatalf("A's group: %v, want [été]", got)
	}
	for _, n := range []*clusterNode{b, c} {
		if gs, err := n.store.Groups(t.Context(), "demo"); err != nil || len(gs) != 0 {
			t.Fatalf("%s's store has groups %v (%v): the edit was made there", n.addr, gs, err)
		}
	}
	for _, ep := range []string{"cg_add", "cg_remove"} {
		if got := metric(t, a.reg, "groupcast_http_requests_total", "endpoint", ep); got != 1 {
			t.Fatalf("A served %s %v times, want 1", ep, got)
		}
	}
	if r := a.get(t, cg+"/gr%C3%BCn"); decode(t, r)["payload"].(map[string]any)["version"] == tt {
		t.Fatalf("version is still the add's %s after the remove", tt)
	}

	// Reads through C answer exactly what A answers.
	for _, uri := range []string{cg + "/gr%C3%BCn", cg, cg + "/nothing", cg + "/a%2Fb?add=x", cg + "/keep?add=a%2C%2Cb"} {
		sameAnswer(t, "GET "+uri, c.get(t, uri), a.get(t, uri))
	}

	// A publish through C is appended on A once; history through C is A's.
	r = c.get(t, "/publish/pk/demo/0/news/0/%22hello%22?uuid=p")
	if r.status != 200 || !strings.HasPrefix(string(r.body), `[1,"Sent","`) {
		t.Fatalf("publish via C: %d %s", r.status, r.body)
	}
	// A GET publish whose message (30 KB, in the path) is far longer than a
	// pooled connection's buffers goes through whole.
	big := `"` + strings.Repeat("x", 30000) + `"`
	r = c.get(t, "/publish/pk/demo/0/big/0/"+url.PathEscape(big)+"?uuid=p")
	if r.status != 200 {
		t.Fatalf("a 30 KB GET publish via C: %d %s", r.status, r.body)
	}
	waitFor(t, "the 30 KB message in A's history", func() bool {
		return strings.Contains(string(a.get(t, "/v3/history/sub-key/demo/channel/big").body), strings.Repeat("x", 30000))
	})
	var z bytes.Buffer
	zw := zlib.NewWriter(&z)
	zw.Write([]byte(`{"posted":true}`))
	zw.Close()
	r = call(t, "POST", c.addr, "/publish/pk/demo/0/news/0?uuid=p", map[string]string{"Content-Encoding": "deflate", "Content-Type": "application/json"}, z.Bytes())
	if r.status != 200 {
		t.Fatalf("POST publish via C: %d %s", r.status, r.body)
	}
	h := "/v3/history/sub-key/demo/channel/news"
	// A publish is acknowledged once it is in the log; history shows it once
	// A's consumer has applied it.
	waitFor(t, "both publishes in A's history", func() bool { return bytes.Contains(a.get(t, h).body, []byte(`"posted":true`)) })
	ra := a.get(t, h)
	sameAnswer(t, "history", c.get(t, h), ra)
	var hist struct {
		Channels map[string][]struct {
			Message json.RawMessage `json:"message"`
		} `json:"channels"`
	}
	if err := json.Unmarshal(ra.body, &hist); err != nil || len(hist.Channels["news"]) != 2 ||
		string(hist.Channels["news"][0].Message) != `"hello"` || string(hist.Channels["news"][1].Message) != `{"posted":true}` {
		t.Fatalf("A's history: %s (%v)", ra.body, err)
	}
	if r := b.get(t, h); !bytes.Contains(r.body, []byte(`"channels":{}`)) {
		t.Fatalf("B's history (served there, B has no log of A's in this test): %s", r.body)
	}

	// Requests without an account are C's own.
	if r := c.get(t, "/readyz"); r.status != 200 {
		t.Fatalf("readyz on C: %d %s", r.status, r.body)
	}
	want := channelgroups.ShardOf("demo", testShards)
	for _, s := range c.router.askedShards() {
		if s != want {
			t.Fatalf("C asked the router about shard %d, want %d", s, want)
		}
	}
	if got := metric(t, c.reg, "groupcast_forwards_total", "result", "ok"); got < 9 {
		t.Fatalf("C counted %v ok forwards, want at least 9", got)
	}
	if got := metric(t, c.reg, "groupcast_forward_duration_seconds", "", ""); got < 9 {
		t.Fatalf("C observed %v forward latencies, want at least 9", got)
	}
	if got := metric(t, a.reg, "groupcast_forwards_total", "result", "ok"); got != 0 {
		t.Fatalf("A forwarded %v requests; it owns the shard", got)
	}
}

// TestForwardBadInput: bad requests sent to a node that forwards still get
// a 4xx JSON error, whether it answers them or the owner does, and change
// nothing.
func TestForwardBadInput(t *testing.T) {
	a, _, c := cluster(t)
	for _, tc := range []struct {
		name, method, uri string
		status            int
	}{
		{"group with encoded slash", "GET", cg + "/a%2Fb?add=x", 400},
		{"bad escape", "GET", cg + "/a%zzb?add=x", 400},
		{"bad account", "GET", "/v1/channel-registration/sub-key/a:b/channel-group/g?add=x", 400},
		{"empty item", "GET", cg + "/g?add=a%2C%2Cb", 400},
		{"add and remove", "GET", cg + "/g?add=x&remove=a", 400},
		{"bad subscribe", "GET", "/v2/subscribe/demo/,/0", 400},
		{"bad subscribe account", "GET", "/v2/subscribe/a:b/c/0", 400},
		{"unknown path", "GET", "/v1/nothing/here", 404},
		{"unknown deeper path", "GET", cg + "/g/remove/extra", 404},
		{"no cluster", "GET", "/cluster", 404},
		{"wrong method", "POST", cg + "/g?add=x", 405},
		{"publish bad method", "DELETE", "/publish/pk/demo/0/c/0/1", 405},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := call(t, tc.method, c.addr, tc.uri, nil, nil)
			if r.status != tc.status || r.contentType != "application/json" {
				t.Fatalf("got %d %q %s, want %d JSON", r.status, r.contentType, r.body, tc.status)
			}
			if m := decode(t, r); m["error"] != true || m["status"] != float64(tc.status) || m["message"] == "" {
				t.Fatalf("body %s is not a PubNub error", r.body)
			}
		})
	}
	for _, n := range []*clusterNode{a, c} {
		if gs, _ := n.store.Groups(t.Context(), "demo"); len(gs) != 0 {
			t.Fatalf("bad input created groups on %s: %v", n.addr, gs)
		}
	}
}

func TestForwardLoop(t *testing.T) {
	a, _, c := cluster(t)
	hop := map[string]string{httpapi.ForwardedHeader: "n9"}
	r := call(t, "GET", c.addr, cg+"/g?add=x", hop, nil)
	if r.status != fasthttp.StatusLoopDetected || r.contentType != "application/json" {
		t.Fatalf("second hop: %d %q %s, want 508", r.status, r.contentType, r.body)
	}
	if m := decode(t, r); m["error"] != true || m["status"] != 508.0 || !strings.Contains(m["message"].(string), "n9") {
		t.Fatalf("508 body: %s", r.body)
	}
	if got := metric(t, c.reg, "groupcast_forwards_total", "result", "loop"); got != 1 {
		t.Fatalf("loop forwards: %v, want 1", got)
	}
	// The owner serves a forwarded request: one hop is fine.
	if r := call(t, "GET", a.addr, cg+"/g?add=x", hop, nil); r.status != 200 {
		t.Fatalf("forwarded request at the owner: %d %s", r.status, r.body)
	}
	if gs, _ := a.store.Groups(t.Context(), "demo"); !reflect.DeepEqual(gs, []channelgroups.Group{"g"}) {
		t.Fatalf("A's groups: %v, want [g] (the looping edit must not be made)", gs)
	}
}

func TestForwardRefused(t *testing.T) {
	la, lc := listen(t), listen(t)
	a := startNode(t, la, la.Addr().String())
	dead := deadAddr(t)
	c := startNode(t, lc, dead, a.addr)

	// A write whose primary refuses the connection goes to the next owner:
	// nothing was sent.
	if r := c.get(t, cg+"/g?add=x"); r.status != 200 {
		t.Fatalf("add via C with a dead first owner: %d %s", r.status, r.body)
	}
	if r := c.get(t, cg+"/g"); r.status != 200 || !bytes.Contains(r.body, []byte(`"channels":["x"]`)) {
		t.Fatalf("list via C with a dead first owner: %d %s", r.status, r.body)
	}
	if got := c.router.refusals(); !reflect.DeepEqual(got, []string{dead, dead}) {
		t.Fatalf("refused %v, want [%s %s]", got, dead, dead)
	}
	if got := metric(t, a.reg, "groupcast_http_requests_total", "endpoint", "cg_add"); got != 1 {
		t.Fatalf("A served %v adds, want 1", got)
	}

	// No owner left: 503 with Retry-After, in the error shape.
	for _, owners := range [][]string{{dead}, {}} {
		c.router.setOwners(owners...)
		for _, uri := range []string{cg + "/g?add=y", cg + "/g", "/v2/subscribe/demo/c/0"} {
			r := c.get(t, uri)
			if r.status != 503 || r.headers["Retry-After"] != "1" || r.contentType != "application/json" {
				t.Fatalf("owners %v, %s: %d %v %s, want 503 with Retry-After", owners, uri, r.status, r.headers, r.body)
			}
			if m := decode(t, r); m["error"] != true || m["message"] != "owner unreachable, retry" {
				t.Fatalf("503 body: %s", r.body)
			}
		}
	}
	if got := len(c.router.refusals()); got != 5 {
		t.Fatalf("%d refusals, want 5 (2 and 3 to the dead owner)", got)
	}
	if got := metric(t, c.reg, "groupcast_forwards_total", "result", "refused"); got != 6 {
		t.Fatalf("refused forwards: %v, want 6", got)
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

// subscribeVia starts a subscribe on n after cursor; the answer arrives on
// the channel.
func subscribeVia(t *testing.T, n *clusterNode, cursor string) <-chan reply {
	t.Helper()
	out := make(chan reply, 1)
	go func() {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI("http://" + n.addr + "/v2/subscribe/demo/news/0?uuid=s&tt=" + cursor)
		if err := testClient.Do(req, resp); err != nil {
			out <- reply{status: -1, body: []byte(err.Error())}
			return
		}
		out <- reply{status: resp.StatusCode(), contentType: string(resp.Header.ContentType()), body: append([]byte(nil), resp.Body()...)}
	}()
	return out
}

func handshake(t *testing.T, n *clusterNode) string {
	t.Helper()
	var hs pollAnswer
	r := n.get(t, "/v2/subscribe/demo/news/0?uuid=s")
	if err := json.Unmarshal(r.body, &hs); err != nil || r.status != 200 || hs.T.T == "" || hs.T.T == "0" {
		t.Fatalf("handshake: %d %s (%v)", r.status, r.body, err)
	}
	return hs.T.T
}

func awaitMessage(t *testing.T, answer <-chan reply, want string) {
	t.Helper()
	select {
	case r := <-answer:
		var p pollAnswer
		if err := json.Unmarshal(r.body, &p); err != nil || r.status != 200 || r.contentType != "application/json" ||
			len(p.M) != 1 || string(p.M[0].D) != want || p.M[0].C != "news" {
			t.Fatalf("subscribe answer: %d %q %s (%v), want the message %s", r.status, r.contentType, r.body, err, want)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("subscribe did not answer")
	}
}

func TestForwardSubscribe(t *testing.T) {
	a, _, c := cluster(t)
	cursor := handshake(t, c)
	if got := a.pubsub.polls.Load(); got != 1 {
		t.Fatalf("A started %d polls, want the handshake", got)
	}
	answer := subscribeVia(t, c, cursor)
	waitFor(t, "the poll to park on A", func() bool { return a.pubsub.polls.Load() == 2 })
	if r := a.get(t, "/publish/pk/demo/0/news/0/%22hi%22"); r.status != 200 {
		t.Fatalf("publish on A: %d %s", r.status, r.body)
	}
	awaitMessage(t, answer, `"hi"`)
	if got := c.pubsub.polls.Load(); got != 0 {
		t.Fatalf("C started %d polls of its own", got)
	}
	if got := metric(t, c.reg, "groupcast_forward_duration_seconds", "", ""); got != 0 {
		t.Fatalf("subscribe forwards observed in the latency histogram: %v", got)
	}
	if got := metric(t, c.reg, "groupcast_http_requests_total", "endpoint", "subscribe"); got != 2 {
		t.Fatalf("C counted %v subscribes, want 2", got)
	}
}

func TestForwardedSubscribeMovesWhenTheOwnerDies(t *testing.T) {
	a, b, c := cluster(t)
	cursor := handshake(t, c)
	answer := subscribeVia(t, c, cursor)
	waitFor(t, "the poll to park on A", func() bool { return a.pubsub.polls.Load() == 2 })
	a.kill()
	waitFor(t, "the poll to move to B", func() bool { return b.pubsub.polls.Load() == 1 })
	b.router.setOwners(b.addr) // the ring moves on
	if r := b.get(t, "/publish/pk/demo/0/news/0/%22after%22"); r.status != 200 {
		t.Fatalf("publish on B: %d %s", r.status, r.body)
	}
	awaitMessage(t, answer, `"after"`)
	if got := c.router.refusals(); !reflect.DeepEqual(got, []string{a.addr}) {
		t.Fatalf("refused %v, want [%s]", got, a.addr)
	}

}

// TestDrainCutsForwardedPolls: a draining node answers the subscribes it
// forwarded as it answers its own parked ones, at once, with the cursor.
func TestDrainCutsForwardedPolls(t *testing.T) {
	a, _, c := cluster(t)
	cursor := handshake(t, c)
	answer := subscribeVia(t, c, cursor)
	waitFor(t, "the poll to park on A", func() bool { return a.pubsub.polls.Load() == 2 })
	c.api.Drain(0)
	select {
	case r := <-answer:
		var p pollAnswer
		if err := json.Unmarshal(r.body, &p); err != nil || r.status != 200 || p.T.T != cursor || len(p.M) != 0 {
			t.Fatalf("answer after Drain: %d %s (%v), want no messages and cursor %s", r.status, r.body, err, cursor)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Drain left the forwarded poll waiting")
	}
}

// TestForwardedWriteIsNotRetried: an owner that takes a write and drops the
// connection gets it once; the client gets 503 and the next owner nothing.
func TestForwardedWriteIsNotRetried(t *testing.T) {
	var hits atomic.Int64
	drop := listen(t)
	go func() {
		for {
			conn, err := drop.Accept()
			if err != nil {
				return
			}
			go func() {
				buf := make([]byte, 4096)
				if n, _ := conn.Read(buf); n > 0 {
					hits.Add(1)
				}
				conn.Close()
			}()
		}
	}()
	t.Cleanup(func() { drop.Close() })
	la, lc := listen(t), listen(t)
	a := startNode(t, la, la.Addr().String())
	c := startNode(t, lc, drop.Addr().String(), a.addr)

	r := c.get(t, cg+"/g?add=x")
	if r.status != 503 || r.headers["Retry-After"] != "1" || decode(t, r)["error"] != true {
		t.Fatalf("write to a dropping owner: %d %v %s, want 503", r.status, r.headers, r.body)
	}
	if got := hits.Load(); got != 1 {
		t.Fatalf("the dropping owner got the write %d times, want 1", got)
	}
	if gs, _ := a.store.Groups(t.Context(), "demo"); len(gs) != 0 {
		t.Fatalf("the write was sent on to A: %v", gs)
	}
	if got := metric(t, c.reg, "groupcast_forwards_total", "result", "failed"); got != 1 {
		t.Fatalf("failed forwards: %v, want 1", got)
	}
	// A read is retried: on the same owner once, then on the next.
	if r := c.get(t, cg+"/g"); r.status != 200 {
		t.Fatalf("read with a dropping first owner: %d %s", r.status, r.body)
	}
	if got := hits.Load(); got != 3 {
		t.Fatalf("the dropping owner got %d requests, want 3", got)
	}
	if got := c.router.refusals(); len(got) != 0 {
		t.Fatalf("refusals %v: the owner accepted the connections", got)
	}
}

func TestClusterEndpoint(t *testing.T) {
	_, cfg := embedded(t, nil)
	state := map[string]any{"self": "n1", "ring_version": 7.0, "replicas": 2.0}
	cfg.Cluster = func() any { return state }
	api, err := httpapi.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, method := range []string{"GET", "POST"} {
		var ctx fasthttp.RequestCtx
		ctx.Request.Header.SetMethod(method)
		ctx.Request.SetRequestURI("/cluster")
		api.Handle(&ctx)
		if method == "POST" {
			if ctx.Response.StatusCode() != 405 {
				t.Fatalf("POST /cluster: %d", ctx.Response.StatusCode())
			}
			continue
		}
		var got map[string]any
		if err := json.Unmarshal(ctx.Response.Body(), &got); err != nil || ctx.Response.StatusCode() != 200 ||
			string(ctx.Response.Header.ContentType()) != "application/json" || !reflect.DeepEqual(got, state) {
			t.Fatalf("GET /cluster: %d %s (%v), want %v", ctx.Response.StatusCode(), ctx.Response.Body(), err, state)
		}
	}
}
