package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/groupcast/groupcast/internal/metrictest"
	"github.com/groupcast/groupcast/subscriber"
	"github.com/groupcast/groupcast/subscriber/httpapi"
)

// serveLimited serves cfg under lim on a loopback port until the test ends
// and returns its address (host:port).
func serveLimited(t *testing.T, cfg httpapi.Config, lim httpapi.Limits) string {
	t.Helper()
	api, err := httpapi.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := httpapi.NewLimitedServer(api, lim)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		api.Drain(0)
		if err := srv.Shutdown(); err != nil {
			t.Error(err)
		}
		<-done
	})
	return ln.Addr().String()
}

// fetchJSON GETs u on a connection of its own, closed after the answer,
// so that connection counts are not disturbed by a client's idle pool.
func fetchJSON(u string, into any) error {
	resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return jsonDecode(resp, into)
}

// eventually polls cond until it holds or 15s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		<-time.After(20 * time.Millisecond) // polling with a deadline
	}
}

// cursorOf returns the cursor a subscribe of channel parks on.
func cursorOf(t *testing.T, addr, channel string) string {
	t.Helper()
	var hs struct {
		T struct {
			T string `json:"t"`
		} `json:"t"`
	}
	if err := fetchJSON("http://"+addr+"/v2/subscribe/demo/"+channel+"/0", &hs); err != nil {
		t.Fatal(err)
	}
	return hs.T.T
}

// rawGet sends a GET on a new connection and returns the connection
// without reading the answer.
func rawGet(t *testing.T, addr, path string, headers ...string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	req := "GET " + path + " HTTP/1.1\r\nHost: x\r\n"
	for _, h := range headers {
		req += h + "\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	return c, bufio.NewReader(c)
}

// wantRefusal checks a limit's answer: status, JSON error body and
// Retry-After.
func wantRefusal(t *testing.T, resp *http.Response, body string, status int) {
	t.Helper()
	if resp == nil {
		t.Fatalf("no answer, want %d", status)
	}
	var e struct {
		Status  int    `json:"status"`
		Error   bool   `json:"error"`
		Message string `json:"message"`
	}
	if resp.StatusCode != status || json.Unmarshal([]byte(body), &e) != nil || e.Status != status || !e.Error || e.Message == "" {
		t.Fatalf("got %d %s, want %d with a JSON error", resp.StatusCode, body, status)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("content type %q", ct)
	}
	if resp.Header.Get("Retry-After") == "" {
		t.Errorf("%d without Retry-After: %v", status, resp.Header)
	}
}

// TestConnectionLimitCountsParkedPolls: with MaxConns 3, two parked polls
// and one idle connection fill the node (fasthttp stops counting the polls'
// connections once they are hijacked; the limit must not), and a fourth
// connection is answered 503 with a JSON body and Retry-After, then closed.
// Once a poll's client goes, a new connection is served.
func TestConnectionLimitCountsParkedPolls(t *testing.T) {
	reg := prometheus.NewRegistry()
	_, cfg := embeddedWith(t, reg, subscriber.Config{PollHold: time.Minute})
	node := cfg.Pubsub.(*subscriber.Node)
	addr := serveLimited(t, cfg, httpapi.Limits{MaxConns: 3})
	tt := cursorOf(t, addr, "full")

	polls := make([]net.Conn, 2)
	for i := range polls {
		polls[i], _ = rawGet(t, addr, "/v2/subscribe/demo/full/0?tt="+tt)
	}
	eventually(t, "both polls are parked", func() bool { return node.Parked() == 2 })
	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	eventually(t, "3 connections are counted", func() bool { return metrictest.Value(t, reg, "groupcast_http_connections") == 3 })

	_, br := rawGet(t, addr, "/time/0")
	resp, body := readResponse(t, br)
	wantRefusal(t, resp, body, http.StatusServiceUnavailable)
	if !resp.Close {
		t.Errorf("a refused connection stays open: %v", resp.Header)
	}
	if got := metrictest.Value(t, reg, "groupcast_http_limited_total", "reason", "connections"); got != 1 {
		t.Errorf("groupcast_http_limited_total{reason=connections} = %v, want 1", got)
	}

	polls[0].Close()
	eventually(t, "the dropped poll's connection is given back", func() bool { return metrictest.Value(t, reg, "groupcast_http_connections") == 2 })
	_, br = rawGet(t, addr, "/time/0")
	if resp, body := readResponse(t, br); resp == nil || resp.StatusCode != 200 {
		t.Fatalf("after a connection closed: %v %s", resp, body)
	}
}

// TestParkedPollLimits: MaxParked answers 503, MaxParkedPerIP 429 per
// client address, the address taken from X-Forwarded-For when the peer is
// a trusted proxy; a refused subscribe changes nothing, and a place given
// back is taken again.
func TestParkedPollLimits(t *testing.T) {
	reg := prometheus.NewRegistry()
	_, cfg := embeddedWith(t, reg, subscriber.Config{PollHold: time.Minute})
	node := cfg.Pubsub.(*subscriber.Node)
	addr := serveLimited(t, cfg, httpapi.Limits{MaxParked: 3, MaxParkedPerIP: 2, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	tt := cursorOf(t, addr, "lim")
	path := "/v2/subscribe/demo/lim/0?tt=" + tt

	a1, _ := rawGet(t, addr, path, "X-Forwarded-For: 198.51.100.9, 203.0.113.1")
	rawGet(t, addr, path, "X-Forwarded-For: 203.0.113.1")
	eventually(t, "two polls are parked", func() bool { return node.Parked() == 2 })

	_, br := rawGet(t, addr, path, "X-Forwarded-For: 203.0.113.1")
	resp, body := readResponse(t, br)
	wantRefusal(t, resp, body, http.StatusTooManyRequests)

	rawGet(t, addr, path, "X-Forwarded-For: 203.0.113.2") // another client: served
	eventually(t, "three polls are parked", func() bool { return node.Parked() == 3 })
	_, br = rawGet(t, addr, path, "X-Forwarded-For: 203.0.113.3")
	resp, body = readResponse(t, br)
	wantRefusal(t, resp, body, http.StatusServiceUnavailable)
	if node.Parked() != 3 {
		t.Fatalf("%d polls parked after the refusals, want 3", node.Parked())
	}
	if got := metrictest.Value(t, reg, "groupcast_http_limited_total", "reason", "parked_per_ip"); got != 1 {
		t.Errorf("limited{parked_per_ip} = %v, want 1", got)
	}
	if got := metrictest.Value(t, reg, "groupcast_http_limited_total", "reason", "parked"); got != 1 {
		t.Errorf("limited{parked} = %v, want 1", got)
	}

	a1.Close() // 203.0.113.1's place comes back once the drop is noticed
	eventually(t, "the dropped poll is released", func() bool { return node.Parked() == 2 })
	rawGet(t, addr, path, "X-Forwarded-For: 203.0.113.1")
	eventually(t, "203.0.113.1 parks again", func() bool { return node.Parked() == 3 })
}

// TestDroppedPollsAreNoticed parks 50 long-polls with a one-minute hold
// and closes their clients' connections: the node must notice within
// seconds, not at the hold: its parked count and the connections drop to
// zero and the subscribers leave the channel's presence.
func TestDroppedPollsAreNoticed(t *testing.T) {
	reg := prometheus.NewRegistry()
	_, cfg := embeddedWith(t, reg, subscriber.Config{PollHold: time.Minute})
	node := cfg.Pubsub.(*subscriber.Node)
	addr := serveLimited(t, cfg, httpapi.Limits{})
	tt := cursorOf(t, addr, "drops")
	occupancy := func() int {
		var here struct {
			Occupancy int `json:"occupancy"`
		}
		if err := fetchJSON("http://"+addr+"/v2/presence/sub-key/demo/channel/drops", &here); err != nil {
			t.Fatal(err)
		}
		return here.Occupancy
	}

	const polls = 50
	conns := make([]net.Conn, polls)
	for i := range conns {
		conns[i], _ = rawGet(t, addr, fmt.Sprintf("/v2/subscribe/demo/drops/0?tt=%s&uuid=u%d", tt, i))
	}
	eventually(t, "the polls are parked", func() bool { return node.Parked() == polls })
	eventually(t, "the subscribers joined", func() bool { return occupancy() == polls })

	begin := time.Now()
	for _, c := range conns {
		c.Close()
	}
	eventually(t, "the dropped polls are released", func() bool { return node.Parked() == 0 })
	released := time.Since(begin)
	eventually(t, "their connections are closed", func() bool { return metrictest.Value(t, reg, "groupcast_http_connections") == 0 })
	eventually(t, "the subscribers left", func() bool { return occupancy() == 0 })
	if got := metrictest.Value(t, reg, "groupcast_dropped_polls_total"); got != polls {
		t.Errorf("groupcast_dropped_polls_total = %v, want %d", got, polls)
	}
	if got := metrictest.Value(t, reg, "groupcast_http_requests_total", "endpoint", "subscribe", "code", "499"); got != polls {
		t.Errorf("subscribes counted 499 = %v, want %d", got, polls)
	}
	t.Logf("%d dropped polls released in %v, presence left within %v", polls, released, time.Since(begin))
}

// TestResubscribeKeepsPresence: a client that drops its poll and
// subscribes again soon after (SDKs abort a subscribe to change channels)
// does not leave the channel, even when its new subscribe has answered and
// nothing of it is parked when the grace period ends.
func TestResubscribeKeepsPresence(t *testing.T) {
	reg := prometheus.NewRegistry()
	_, cfg := embeddedWith(t, reg, subscriber.Config{PollHold: time.Minute})
	node := cfg.Pubsub.(*subscriber.Node)
	addr := serveLimited(t, cfg, httpapi.Limits{})
	tt := cursorOf(t, addr, "stay")
	first, _ := rawGet(t, addr, "/v2/subscribe/demo/stay/0?uuid=ann&tt="+tt)
	eventually(t, "the poll is parked", func() bool { return node.Parked() == 1 })
	first.Close()
	eventually(t, "the drop is noticed", func() bool { return metrictest.Value(t, reg, "groupcast_dropped_polls_total") == 1 })
	if err := fetchJSON("http://"+addr+"/v2/subscribe/demo/stay,other/0?uuid=ann", new(any)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(httpapi.DroppedLeaveGrace + time.Second)
	for time.Now().Before(deadline) {
		users, err := node.Occupancy(context.Background(), "demo", "stay")
		if err != nil || len(users) != 1 {
			t.Fatalf("occupancy of stay = %v, %v; want [ann] throughout", users, err)
		}
		<-time.After(50 * time.Millisecond) // sampling over the grace period
	}
}

// TestResubscribeBeforeDropKeepsPresence: the other order — the SDK's new
// subscribe arrives before the old connection's hang-up is noticed (it
// aborted the old poll and resent at once): the subscriber stays present.
func TestResubscribeBeforeDropKeepsPresence(t *testing.T) {
	reg := prometheus.NewRegistry()
	_, cfg := embeddedWith(t, reg, subscriber.Config{PollHold: time.Minute})
	node := cfg.Pubsub.(*subscriber.Node)
	addr := serveLimited(t, cfg, httpapi.Limits{})
	tt := cursorOf(t, addr, "stay")
	first, _ := rawGet(t, addr, "/v2/subscribe/demo/stay/0?uuid=ann&tt="+tt)
	eventually(t, "the poll is parked", func() bool { return node.Parked() == 1 })
	if err := fetchJSON("http://"+addr+"/v2/subscribe/demo/stay,other/0?uuid=ann", new(any)); err != nil {
		t.Fatal(err)
	}
	first.Close()
	eventually(t, "the drop is noticed", func() bool { return metrictest.Value(t, reg, "groupcast_dropped_polls_total") == 1 })
	deadline := time.Now().Add(httpapi.DroppedLeaveGrace + time.Second)
	for time.Now().Before(deadline) {
		users, err := node.Occupancy(context.Background(), "demo", "stay")
		if err != nil || len(users) != 1 {
			t.Fatalf("occupancy of stay = %v, %v; want [ann] throughout", users, err)
		}
		<-time.After(50 * time.Millisecond) // sampling over the grace period
	}
}

// TestPipelinedRequestWhileParked: bytes a client sends while its poll is
// parked (a pipelined request) are not taken for a hang-up and not lost:
// the server reads them once the poll has answered.
func TestPipelinedRequestWhileParked(t *testing.T) {
	_, cfg := embeddedWith(t, prometheus.NewRegistry(), subscriber.Config{PollHold: time.Minute})
	node := cfg.Pubsub.(*subscriber.Node)
	addr := serveLimited(t, cfg, httpapi.Limits{})
	tt := cursorOf(t, addr, "pipe")
	c, br := rawGet(t, addr, "/v2/subscribe/demo/pipe/0?tt="+tt)
	eventually(t, "the poll is parked", func() bool { return node.Parked() == 1 })
	if _, err := io.WriteString(c, "GET /time/0 HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Get("http://" + addr + "/publish/demo/demo/0/pipe/0/%22hi%22")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp, body := readResponse(t, br); resp == nil || !strings.Contains(body, `"d":"hi"`) {
		t.Fatalf("poll answer: %v %s", resp, body)
	}
	if resp, body := readResponse(t, br); resp == nil || resp.StatusCode != 200 || !strings.HasPrefix(body, "[") {
		t.Fatalf("pipelined request: %v %s", resp, body)
	}
}

// panickyPubsub poisons the answers of polls by uuid "boom" with a
// delivery without a message, which the answer's encoding dereferences.
type panickyPubsub struct{ httpapi.Pubsub }

func (p panickyPubsub) StartPoll(ctx context.Context, req subscriber.PollRequest, done func(subscriber.PollResult, error)) *subscriber.Parked {
	if req.UUID == "boom" && req.Cursor != 0 {
		return p.Pubsub.StartPoll(ctx, req, func(res subscriber.PollResult, err error) {
			done(subscriber.PollResult{Cursor: res.Cursor, Deliveries: []subscriber.Delivery{{}}}, err)
		})
	}
	return p.Pubsub.StartPoll(ctx, req, done)
}

// TestPanicsAreRecovered: a handler that panics, and a parked poll whose
// answer panics while it is written, get 500 with a JSON body; the panics
// are counted; the server goes on serving, and a poll parked meanwhile
// still gets its answer.
func TestPanicsAreRecovered(t *testing.T) {
	reg := prometheus.NewRegistry()
	_, cfg := embeddedWith(t, reg, subscriber.Config{PollHold: time.Minute})
	node := cfg.Pubsub.(*subscriber.Node)
	var panicky atomic.Bool
	cfg.Ready = func(context.Context) error {
		if panicky.Load() {
			panic("storage is corrupt")
		}
		return nil
	}
	cfg.Pubsub = panickyPubsub{cfg.Pubsub}
	addr := serveLimited(t, cfg, httpapi.Limits{})
	tt := cursorOf(t, addr, "calm")
	_, bystander := rawGet(t, addr, "/v2/subscribe/demo/calm/0?tt="+tt)
	_, boom := rawGet(t, addr, "/v2/subscribe/demo/calm/0?uuid=boom&tt="+tt)
	eventually(t, "the polls are parked", func() bool { return node.Parked() == 2 })

	want500 := func(resp *http.Response, body string) {
		t.Helper()
		var e struct {
			Status  int    `json:"status"`
			Error   bool   `json:"error"`
			Service string `json:"service"`
			Message string `json:"message"`
		}
		if resp == nil || resp.StatusCode != 500 || json.Unmarshal([]byte(body), &e) != nil ||
			e != (struct {
				Status  int    `json:"status"`
				Error   bool   `json:"error"`
				Service string `json:"service"`
				Message string `json:"message"`
			}{500, true, "groupcast", "internal error"}) {
			t.Fatalf("got %v %s, want 500 internal error", resp, body)
		}
	}
	panicky.Store(true)
	_, br := rawGet(t, addr, "/readyz")
	want500(readResponse(t, br))
	panicky.Store(false)

	resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Get("http://" + addr + "/publish/demo/demo/0/calm/0/%22still%22")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	want500(readResponse(t, boom))
	if resp, body := readResponse(t, bystander); resp == nil || !strings.Contains(body, `"d":"still"`) {
		t.Fatalf("the bystander's poll: %v %s", resp, body)
	}
	if got := metrictest.Value(t, reg, "groupcast_panics_total"); got != 2 {
		t.Errorf("groupcast_panics_total = %v, want 2", got)
	}
	if err := fetchJSON("http://"+addr+"/time/0", new([]any)); err != nil {
		t.Fatalf("after the panics: %v", err)
	}
	eventually(t, "no poll is left parked", func() bool { return node.Parked() == 0 })
}

// emfileListener fails Accept with EMFILE while failing is set, as a
// process out of descriptors does.
type emfileListener struct {
	net.Listener
	failing atomic.Int32
}

func (l *emfileListener) Accept() (net.Conn, error) {
	if l.failing.Load() > 0 {
		l.failing.Add(-1)
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

// TestServeSurvivesEMFILE: Accept failing with EMFILE (too many open
// files) does not end Serve: the server pauses, retries, counts the errors
// and then serves the connection that waited.
func TestServeSurvivesEMFILE(t *testing.T) {
	reg := prometheus.NewRegistry()
	_, cfg := embeddedWith(t, reg, subscriber.Config{})
	api, err := httpapi.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httpapi.NewServer(api)
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := &emfileListener{Listener: inner}
	ln.failing.Store(8)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	got := make(chan error, 1)
	go func() { got <- fetchJSON("http://"+inner.Addr().String()+"/time/0", new([]any)) }()
	select {
	case err := <-served:
		t.Fatalf("Serve returned %v after EMFILE", err)
	case err := <-got:
		if err != nil {
			t.Fatalf("/time/0 after EMFILE: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no answer 30s after EMFILE")
	}
	if n := metrictest.Value(t, reg, "groupcast_accept_errors_total"); n != 8 {
		t.Errorf("groupcast_accept_errors_total = %v, want 8", n)
	}
	if err := srv.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve after Shutdown: %v", err)
	}
}
