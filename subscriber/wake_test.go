package subscriber_test

import (
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/groupcast/groupcast/channelgroups"
	"github.com/groupcast/groupcast/subscriber"
)

// wakeHarness parks polls on a node and records the order they answer in.
type wakeHarness struct {
	t   *testing.T
	n   *subscriber.Node
	svc *channelgroups.Service
	reg *prometheus.Registry

	mu      sync.Mutex
	order   []int
	results map[int]subscriber.PollResult
	on      map[uint64]int // goroutine id → answers given on it
	done    chan struct{}
}

func newWakeHarness(t *testing.T) *wakeHarness {
	reg := prometheus.NewRegistry()
	st := openBolt(t)
	n, _ := node(t, st, subscriber.Config{PollHold: time.Minute, Registerer: reg})
	svc, err := channelgroups.NewService(st, channelgroups.NewClock(nil, 0), channelgroups.ServiceConfig{Announcer: n})
	if err != nil {
		t.Fatal(err)
	}
	return &wakeHarness{t: t, n: n, svc: svc, reg: reg, results: map[int]subscriber.PollResult{}, on: map[uint64]int{}, done: make(chan struct{}, 1000)}
}

// park starts poll i; it must park (not answer at once).
func (h *wakeHarness) park(i int, req subscriber.PollRequest) {
	h.t.Helper()
	before := h.n.Parked()
	h.n.StartPoll(h.t.Context(), req, func(res subscriber.PollResult, err error) {
		if err != nil {
			h.t.Errorf("poll %d: %v", i, err)
		}
		h.mu.Lock()
		h.order = append(h.order, i)
		h.results[i] = res
		h.on[goroutineID()]++
		h.mu.Unlock()
		h.done <- struct{}{}
	})
	if got := h.n.Parked(); got != before+1 {
		h.t.Fatalf("poll %d: %d parked after it, want %d", i, got, before+1)
	}
}

// wait waits for k answers, with a deadline.
func (h *wakeHarness) wait(k int) {
	h.t.Helper()
	deadline := time.After(10 * time.Second)
	for range k {
		select {
		case <-h.done:
		case <-deadline:
			h.t.Fatalf("not all %d polls answered within 10s", k)
		}
	}
}

// metric reads one of the node's counters.
func (h *wakeHarness) metric(name string) float64 {
	h.t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	h.t.Fatalf("no metric %s", name)
	return 0
}

// TestWakeAnswersOldestFirst: one message wakes the polls of its channel,
// those subscribed to it directly, those through a group holding it and
// those through both, and they answer in the order they parked, once each.
func TestWakeAnswersOldestFirst(t *testing.T) {
	h := newWakeHarness(t)
	const a, g = channelgroups.Account("fifo"), channelgroups.Group("g")
	ctx := t.Context()
	if _, err := h.svc.Add(ctx, a, g, []channelgroups.Channel{"c"}, channelgroups.IfMatch{}); err != nil {
		t.Fatal(err)
	}
	hs, err := h.n.Poll(ctx, subscriber.PollRequest{Account: a, Channels: []channelgroups.Channel{"c"}})
	if err != nil {
		t.Fatal(err)
	}
	const polls = 60 // below the size the hub splits a wake-up at
	for i := range polls {
		req := subscriber.PollRequest{Account: a, Cursor: hs.Cursor}
		switch i % 3 {
		case 0:
			req.Channels = []channelgroups.Channel{"c"}
		case 1:
			req.Groups = []channelgroups.Group{g}
		default:
			req.Channels, req.Groups = []channelgroups.Channel{"c"}, []channelgroups.Group{g}
		}
		h.park(i, req)
	}
	if _, err := h.n.Publish(ctx, &subscriber.Message{Account: a, Channel: "c", Payload: []byte(`"hi"`)}, nil); err != nil {
		t.Fatal(err)
	}
	h.wait(polls)
	h.mu.Lock()
	defer h.mu.Unlock()
	want := make([]int, polls)
	for i := range want {
		want[i] = i
	}
	if !slices.Equal(h.order, want) {
		t.Fatalf("answered in order %v, want %v", h.order, want)
	}
	for i, res := range h.results {
		if len(res.Deliveries) != 1 {
			t.Fatalf("poll %d got %d deliveries, want 1", i, len(res.Deliveries))
		}
	}
}

// TestWakeAnswersInOnePass: one message to N parked polls is one wake-up,
// which checks and answers all N on one goroutine (no hop per poll), and every
// answer carries the same *Message, so its envelope is encoded once
// (Message.Wire).
func TestWakeAnswersInOnePass(t *testing.T) {
	h := newWakeHarness(t)
	const a = channelgroups.Account("batch")
	ctx := t.Context()
	hs, err := h.n.Poll(ctx, subscriber.PollRequest{Account: a, Channels: []channelgroups.Channel{"c"}})
	if err != nil {
		t.Fatal(err)
	}
	const polls = 40
	for i := range polls {
		h.park(i, subscriber.PollRequest{Account: a, Channels: []channelgroups.Channel{"c"}, Cursor: hs.Cursor})
	}
	w0, p0, a0 := h.metric("groupcast_wakeups_total"), h.metric("groupcast_wakeup_polls_total"), h.metric("groupcast_wakeup_answers_total")
	if _, err := h.n.Publish(ctx, &subscriber.Message{Account: a, Channel: "c", Payload: []byte(`"hi"`)}, nil); err != nil {
		t.Fatal(err)
	}
	h.wait(polls)
	// The pass counts its answers once it has written them all.
	eventually(t, "the pass counted its answers", func() bool { return h.metric("groupcast_wakeup_answers_total")-a0 == polls })
	if got := h.metric("groupcast_wakeups_total") - w0; got != 1 {
		t.Fatalf("%v wake-ups for one message, want 1", got)
	}
	if got := h.metric("groupcast_wakeup_polls_total") - p0; got != polls {
		t.Fatalf("the wake-up checked %v polls, want %d", got, polls)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.on) != 1 {
		t.Fatalf("answers given on %d goroutines (id → answers: %v), want 1", len(h.on), h.on)
	}
	m := h.results[0].Deliveries[0].Msg
	for i, res := range h.results {
		if len(res.Deliveries) != 1 || res.Deliveries[0].Msg != m {
			t.Fatalf("poll %d: deliveries %v, want the one shared message", i, res.Deliveries)
		}
	}
}

// goroutineID is the calling goroutine's number, from its stack's header
// ("goroutine 42 [running]:"): which goroutine answered, for the test only.
func goroutineID() uint64 {
	var b [64]byte
	f := strings.Fields(string(b[:runtime.Stack(b[:], false)]))
	id, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		panic(err)
	}
	return id
}

// TestWaitingMessagesAnswerAtOnce: a poll of plain channels whose messages
// are already there answers before StartPoll returns, without registering
// for wake-ups or starting a timer, with what a parked poll would get, and
// marks its user present; a poll through a group takes the registered path
// and gets the same messages.
func TestWaitingMessagesAnswerAtOnce(t *testing.T) {
	h := newWakeHarness(t)
	const a, g = channelgroups.Account("now"), channelgroups.Group("g")
	ctx := t.Context()
	if _, err := h.svc.Add(ctx, a, g, []channelgroups.Channel{"c"}, channelgroups.IfMatch{}); err != nil {
		t.Fatal(err)
	}
	direct := subscriber.PollRequest{Account: a, Channels: []channelgroups.Channel{"c"}, UUID: "u"}
	hs, err := h.n.Poll(ctx, direct)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := h.n.Publish(ctx, &subscriber.Message{Account: a, Channel: "c", Payload: []byte(strconv.Itoa(i))}, nil); err != nil {
			t.Fatal(err)
		}
	}
	direct.Cursor = hs.Cursor
	var want subscriber.PollResult
	for deadline := time.Now().Add(10 * time.Second); len(want.Deliveries) < 3; {
		if time.Now().After(deadline) {
			t.Fatalf("the 3 messages were not all applied within 10s: %d", len(want.Deliveries))
		}
		if want, err = h.n.Poll(ctx, direct); err != nil {
			t.Fatal(err)
		}
	}
	payloads := func(res subscriber.PollResult) []string {
		var out []string
		for _, d := range res.Deliveries {
			out = append(out, string(d.Msg.Payload))
		}
		return out
	}
	start := func(req subscriber.PollRequest) (*subscriber.Parked, subscriber.PollResult, bool) {
		var got subscriber.PollResult
		answered := false
		w := h.n.StartPoll(ctx, req, func(res subscriber.PollResult, err error) {
			if err != nil {
				t.Errorf("poll: %v", err)
			}
			got, answered = res, true
		})
		return w, got, answered
	}
	direct.UUID = "v"
	w, got, answered := start(direct)
	if !answered {
		t.Fatal("a poll with its messages waiting did not answer before StartPoll returned")
	}
	if !subscriber.AnsweredAtOnce(w) {
		t.Fatal("a poll with its messages waiting registered for wake-ups or started a timer")
	}
	// The cursor is the shard's applied position: a presence event applied
	// between the two polls (u's join) moves it on, never back.
	if !slices.Equal(payloads(got), payloads(want)) || got.Cursor < want.Cursor {
		t.Fatalf("answered at once %v at %d, a poll that looked got %v at %d", payloads(got), got.Cursor, payloads(want), want.Cursor)
	}
	for deadline := time.Now().Add(10 * time.Second); ; { // the join is applied from the log
		here, err := h.n.Occupancy(ctx, a, "c")
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(here, "v") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("here on c: %v, want v among them", here)
		}
		runtime.Gosched()
	}
	w, got, answered = start(subscriber.PollRequest{Account: a, Groups: []channelgroups.Group{g}, UUID: "w", Cursor: hs.Cursor})
	if !answered || subscriber.AnsweredAtOnce(w) {
		t.Fatalf("a group poll: answered %v, at once %v; want answered through the registered path", answered, subscriber.AnsweredAtOnce(w))
	}
	if !slices.Equal(payloads(got), payloads(want)) {
		t.Fatalf("the group poll got %v, want %v", payloads(got), payloads(want))
	}
}
