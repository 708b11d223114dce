package clustercheck_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/groupcast/groupcast/internal/clustercheck"
)

// fault names one misbehaviour of the fake origin; each fires once unless
// said otherwise.
type fault string

const (
	dropDelivery fault = "drop a publisher message's delivery to a channel subscriber"
	dupDelivery  fault = "deliver a message twice"
	leakRemove   fault = "acknowledge a G3 remove without applying it"
	missAdd      fault = "match a G3 message against no group"
	staleList    fault = "answer a token read with an empty list"
	loseEdits    fault = "leave editors' channels out of every fully consistent list"
	serverError  fault = "answer a publish with 500"
	unavailable  fault = "answer an edit with 503 and Retry-After"
)

// fake is an in-process origin with one ordered log, for this unit test
// only: it speaks just enough of the API for the checker.
type fake struct {
	faults map[fault]bool // enabled and not fired yet

	mu     sync.Mutex
	tt     int64
	groups map[string]map[string]bool
	msgs   []fakeMsg
	wake   chan struct{} // closed and replaced on every publish
}

type fakeMsg struct {
	tt      int64
	channel string
	payload json.RawMessage
	groups  []string // groups holding the channel when it was published
}

func newFake(fs ...fault) *fake {
	f := &fake{faults: map[fault]bool{}, tt: 17_000_000_000_000_000, groups: map[string]map[string]bool{}, wake: make(chan struct{})}
	for _, x := range fs {
		f.faults[x] = true
	}
	return f
}

// fire reports whether x is enabled and not yet fired; f.mu held.
func (f *fake) fire(x fault) bool {
	if f.faults[x] {
		delete(f.faults, x)
		return true
	}
	return false
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func (f *fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/"), "/")
	q := r.URL.Query()
	switch {
	case len(parts) == 6 && parts[0] == "v1" && (q.Has("add") || q.Has("remove")):
		f.edit(w, parts[5], q.Has("add"), strings.Split(q.Get("add")+q.Get("remove"), ","))
	case len(parts) == 6 && parts[0] == "v1":
		f.list(w, parts[5], q.Get("token"), q.Get("consistency"))
	case len(parts) >= 7 && parts[0] == "publish":
		f.publish(w, parts[4], strings.Join(parts[6:], "/"))
	case len(parts) == 5 && parts[0] == "v2" && parts[1] == "subscribe":
		f.subscribe(w, r, parts[3], q)
	default:
		writeJSON(w, 404, map[string]any{"error": true})
	}
}

func (f *fake) edit(w http.ResponseWriter, group string, add bool, chs []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fire(unavailable) {
		w.Header().Set("Retry-After", "1")
		writeJSON(w, 503, map[string]any{"error": true})
		return
	}
	f.tt++
	g := f.groups[group]
	if g == nil {
		g = map[string]bool{}
		f.groups[group] = g
	}
	for _, ch := range chs {
		switch {
		case add:
			g[ch] = true
		case (ch[0] == 't' || ch[0] == 'r') && f.fire(leakRemove):
		default:
			delete(g, ch)
		}
	}
	writeJSON(w, 200, map[string]any{"status": 200, "error": false, "token": strconv.FormatInt(f.tt, 10)})
}

func (f *fake) list(w http.ResponseWriter, group, token, consistency string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	chs := []string{}
	for ch := range f.groups[group] {
		if consistency == "fully_consistent" && ch[0] == 'e' && f.faults[loseEdits] {
			continue
		}
		chs = append(chs, ch)
	}
	if token != "" && f.fire(staleList) {
		chs = []string{}
	}
	slices.Sort(chs)
	writeJSON(w, 200, map[string]any{"status": 200, "payload": map[string]any{"channels": chs, "group": group}})
}

func (f *fake) publish(w http.ResponseWriter, ch, msg string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fire(serverError) {
		writeJSON(w, 500, []any{0, "internal error", "0"})
		return
	}
	f.tt++
	m := fakeMsg{tt: f.tt, channel: ch, payload: json.RawMessage(msg)}
	if !((ch[0] == 't' || ch[0] == 'r') && f.fire(missAdd)) {
		for g, members := range f.groups {
			if members[ch] {
				m.groups = append(m.groups, g)
			}
		}
	}
	f.msgs = append(f.msgs, m)
	close(f.wake)
	f.wake = make(chan struct{})
	writeJSON(w, 200, []any{1, "Sent", strconv.FormatInt(f.tt, 10)})
}

type fakeEnvelope struct {
	B string            `json:"b,omitempty"`
	C string            `json:"c"`
	D json.RawMessage   `json:"d"`
	P map[string]string `json:"p"`
}

func (f *fake) subscribe(w http.ResponseWriter, r *http.Request, chList string, q map[string][]string) {
	chs := strings.Split(chList, ",")
	var groups []string
	if g := q["channel-group"]; len(g) > 0 && g[0] != "" {
		groups = strings.Split(g[0], ",")
	}
	var cursor int64
	if tt := q["tt"]; len(tt) > 0 {
		cursor, _ = strconv.ParseInt(tt[0], 10, 64)
	}
	answer := func(cur int64, ms []fakeEnvelope) {
		if ms == nil {
			ms = []fakeEnvelope{}
		}
		writeJSON(w, 200, map[string]any{"t": map[string]any{"t": strconv.FormatInt(cur, 10), "r": 1}, "m": ms})
	}
	hold := time.NewTimer(300 * time.Millisecond)
	defer hold.Stop()
	for {
		f.mu.Lock()
		cur, wake := f.tt, f.wake
		if cursor == 0 {
			f.mu.Unlock()
			answer(cur, nil)
			return
		}
		var ms []fakeEnvelope
		dropped := false
		for _, m := range f.msgs {
			if m.tt <= cursor {
				continue
			}
			env := fakeEnvelope{C: m.channel, D: m.payload, P: map[string]string{"t": strconv.FormatInt(m.tt, 10)}}
			if slices.Contains(chs, m.channel) {
				if m.channel[0] == 'p' && f.fire(dropDelivery) {
					dropped = true // answered, so the cursor moves past it
					continue
				}
				ms = append(ms, env)
			} else if i := slices.IndexFunc(groups, func(g string) bool { return slices.Contains(m.groups, g) }); i >= 0 {
				env.B = groups[i]
				ms = append(ms, env)
			}
			if len(ms) > 0 && f.fire(dupDelivery) {
				ms = append(ms, ms[len(ms)-1])
			}
		}
		f.mu.Unlock()
		if len(ms) > 0 || dropped {
			answer(cur, ms)
			return
		}
		select {
		case <-wake:
		case <-hold.C:
			answer(cur, nil)
			return
		case <-r.Context().Done():
			return
		}
	}
}

// runFake runs the checker for a short while against two fake "nodes"
// sharing one fake origin (plus the extra URLs).
func runFake(t *testing.T, f *fake, extra ...string) clustercheck.Result {
	t.Helper()
	a, b := httptest.NewServer(f), httptest.NewServer(f)
	t.Cleanup(a.Close)
	t.Cleanup(b.Close)
	pool := append([]string{a.URL, b.URL}, extra...)
	res := clustercheck.Run(t.Context(), clustercheck.Config{
		Nodes: func() []string { return pool }, Clients: 20, Duration: 1500 * time.Millisecond,
		Account: "fake", TrialEvery: 150 * time.Millisecond, Drain: 10 * time.Second, Seed: 1,
	})
	t.Log(res)
	return res
}

func TestCleanFake(t *testing.T) {
	res := runFake(t, newFake())
	if res.Failed() || res.Unavailable != 0 || res.ConnErrors != 0 || res.Undrained != 0 {
		t.Fatalf("clean fake: %s; first: %s; first error: %s", res, res.First, res.FirstError)
	}
	if res.Edits == 0 || res.Reads == 0 || res.Trials == 0 || res.Published == 0 || res.Delivered == 0 || res.Subscribers < 10 || res.FailoverGapMax == 0 {
		t.Fatalf("clean fake: %s: want every kind of work done", res)
	}
	if !strings.HasPrefix(res.String(), "ryw_violations=0 g3_missed=0 g3_leaked=0 lost=0 duplicated=0 edits_lost=0 failover_gap_p99=") {
		t.Fatalf("report %q", res)
	}
}

// TestEveryCounterCanFail injects one fault at a time and expects its
// counter to see it.
func TestEveryCounterCanFail(t *testing.T) {
	for _, tc := range []struct {
		fault   fault
		counter string
		get     func(clustercheck.Result) int
	}{
		{dropDelivery, "lost", func(r clustercheck.Result) int { return r.Lost }},
		{dupDelivery, "duplicated", func(r clustercheck.Result) int { return r.Duplicated }},
		{leakRemove, "g3_leaked", func(r clustercheck.Result) int { return r.G3Leaked }},
		{missAdd, "g3_missed", func(r clustercheck.Result) int { return r.G3Missed }},
		{staleList, "ryw_violations", func(r clustercheck.Result) int { return r.RYWViolations }},
		{loseEdits, "edits_lost", func(r clustercheck.Result) int { return r.EditsLost }},
		{serverError, "client_errors", func(r clustercheck.Result) int { return r.ClientErrors }},
		{unavailable, "unavailable", func(r clustercheck.Result) int { return r.Unavailable }},
	} {
		t.Run(tc.counter, func(t *testing.T) {
			res := runFake(t, newFake(tc.fault))
			if tc.get(res) == 0 || !strings.Contains(res.String(), tc.counter+"=") {
				t.Fatalf("%s: %s: want %s > 0", tc.fault, res, tc.counter)
			}
			if tc.fault != unavailable && !res.Failed() {
				t.Fatalf("%s: %s: Failed() = false", tc.fault, res)
			}
			t.Logf("first: %s / %s", res.First, res.FirstError)
		})
	}
	t.Run("conn_errors", func(t *testing.T) {
		dead := httptest.NewServer(http.NotFoundHandler())
		dead.Close()
		res := runFake(t, newFake(), dead.URL)
		if res.ConnErrors == 0 || res.Failed() {
			t.Fatalf("a dead node in the pool: %s; want conn_errors > 0 and nothing else", res)
		}
	})
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []clustercheck.Config{
		{Account: "a", Clients: 20},
		{Nodes: func() []string { return nil }, Clients: 20},
		{Nodes: func() []string { return nil }, Account: "a", Clients: 5},
	} {
		if res := clustercheck.Run(t.Context(), cfg); res.ClientErrors == 0 || !strings.HasPrefix(res.FirstError, "clustercheck: ") {
			t.Errorf("Run(%+v) = %s, %q; want a prefixed config error", cfg, res, res.FirstError)
		}
	}
}

func ExampleResult_String() {
	fmt.Println(clustercheck.Result{FailoverGapP99: 1500 * time.Millisecond, Unavailable: 2}.String())
	// Output: ryw_violations=0 g3_missed=0 g3_leaked=0 lost=0 duplicated=0 edits_lost=0 failover_gap_p99=1.5s client_errors=0 unavailable=2 conn_errors=0 failover_gap_max=0s edits=0 reads=0 g3_trials=0 published=0 delivered=0 subscribers=0 undrained=0
}
