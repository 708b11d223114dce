package clustercheck_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/groupcast/groupcast/internal/clustercheck"
)

// origins maps publish timetokens to the region published through. A
// publish holds mu until its origin is stored, so a subscribe answer (which
// may be written as soon as the fake appended the message) is stamped after.
type origins struct {
	mu sync.RWMutex
	m  map[string]int
}

// regionFront is one "region" in front of the fake origin both share (so
// replication is perfect and instant): it stamps each delivered message
// with the region it was published through (p.r), and can misbehave in
// ways the one-region fake cannot.
type regionFront struct {
	n       int
	f       *fake
	origins *origins

	noRetryAfter atomic.Bool // answer the next publish 503 without Retry-After
	staleViews   bool        // answer plain lists (no token, no consistency) with an empty list
}

func (h *regionFront) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	switch {
	case strings.HasPrefix(r.URL.Path, "/publish/"):
		if h.noRetryAfter.CompareAndSwap(true, false) {
			writeJSON(w, 503, []any{0, "unavailable", "0"})
			return
		}
		rec := httptest.NewRecorder()
		h.origins.mu.Lock()
		h.f.ServeHTTP(rec, r)
		var a []json.RawMessage
		var tt string
		if json.Unmarshal(rec.Body.Bytes(), &a) == nil && len(a) == 3 && json.Unmarshal(a[2], &tt) == nil {
			h.origins.m[tt] = h.n
		}
		h.origins.mu.Unlock()
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
	case strings.HasPrefix(r.URL.Path, "/v2/subscribe/"):
		rec := httptest.NewRecorder()
		h.f.ServeHTTP(rec, r)
		var a map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &a); err != nil {
			w.WriteHeader(rec.Code)
			w.Write(rec.Body.Bytes())
			return
		}
		ms, _ := a["m"].([]any)
		h.origins.mu.RLock()
		for _, m := range ms {
			p := m.(map[string]any)["p"].(map[string]any)
			if tt, _ := p["t"].(string); h.origins.m[tt] != 0 {
				p["r"] = h.origins.m[tt]
			}
		}
		h.origins.mu.RUnlock()
		writeJSON(w, rec.Code, a)
	case h.staleViews && strings.HasPrefix(r.URL.Path, "/v1/") && !q.Has("add") && !q.Has("remove") && q.Get("token") == "" && q.Get("consistency") == "":
		writeJSON(w, 200, map[string]any{"status": 200, "payload": map[string]any{"channels": []string{}}})
	default:
		h.f.ServeHTTP(w, r)
	}
}

// runRegionsFake runs RunRegions for a short while against two regions of
// two nodes each, all in front of one fake origin.
func runRegionsFake(t *testing.T, f *fake, tweak func(r1, r2 *regionFront)) clustercheck.RegionsResult {
	t.Helper()
	o := &origins{m: map[string]int{}}
	fronts := []*regionFront{{n: 1, f: f, origins: o}, {n: 2, f: f, origins: o}}
	if tweak != nil {
		tweak(fronts[0], fronts[1])
	}
	var pools []func() []string
	for _, front := range fronts {
		a, b := httptest.NewServer(front), httptest.NewServer(front)
		t.Cleanup(a.Close)
		t.Cleanup(b.Close)
		pool := []string{a.URL, b.URL}
		pools = append(pools, func() []string { return pool })
	}
	res := clustercheck.RunRegions(t.Context(), clustercheck.RegionsConfig{
		Regions: pools, Account: "fake", Duration: 1500 * time.Millisecond, TrialEvery: 150 * time.Millisecond,
		EditEvery: 50 * time.Millisecond, Drain: 10 * time.Second, Settle: 2 * time.Second, Seed: 1,
	})
	t.Log(res)
	return res
}

func TestRegionsCleanFake(t *testing.T) {
	res := runRegionsFake(t, newFake(), nil)
	if res.Failed() || res.Unavailable+res.LocalFailures+res.ConnErrors+res.Undrained != 0 {
		t.Fatalf("clean fake: %s; first: %s; first error: %s", res, res.First, res.FirstError)
	}
	if res.Edits == 0 || res.ConflictEdits == 0 || res.CrossReads == 0 || res.Trials == 0 || res.Published == 0 || res.CrossPublishes == 0 || res.Delivered == 0 || res.Subscribers != 6 || res.Groups != 4 {
		t.Fatalf("clean fake: %s: want every kind of work done", res)
	}
	if !strings.HasPrefix(res.String(), "views_diverged=0 ryw_violations=0 g3_missed=0 g3_leaked=0 lost=0 duplicated=0 edits_lost=0 unavailable=0 retry_after_missing=0 local_failures=0 ") {
		t.Fatalf("report %q", res)
	}
}

// TestRegionsEveryCounterCanFail injects one fault at a time and expects
// its counter to see it.
func TestRegionsEveryCounterCanFail(t *testing.T) {
	for _, tc := range []struct {
		counter string
		fault   fault
		tweak   func(r1, r2 *regionFront)
		get     func(clustercheck.RegionsResult) int
		allowed bool // not a violation: Failed() stays false
	}{
		{counter: "lost", fault: dropDelivery, get: func(r clustercheck.RegionsResult) int { return r.Lost }},
		{counter: "duplicated", fault: dupDelivery, get: func(r clustercheck.RegionsResult) int { return r.Duplicated }},
		{counter: "g3_leaked", fault: leakRemove, get: func(r clustercheck.RegionsResult) int { return r.G3Leaked }},
		{counter: "g3_missed", fault: missAdd, get: func(r clustercheck.RegionsResult) int { return r.G3Missed }},
		{counter: "ryw_violations", fault: staleList, get: func(r clustercheck.RegionsResult) int { return r.RYWViolations }},
		{counter: "edits_lost", fault: loseEdits, get: func(r clustercheck.RegionsResult) int { return r.EditsLost }},
		{counter: "client_errors", fault: serverError, get: func(r clustercheck.RegionsResult) int { return r.ClientErrors }},
		{counter: "unavailable", fault: unavailable, allowed: true, get: func(r clustercheck.RegionsResult) int { return r.Unavailable }},
		{counter: "local_failures", fault: unavailable, allowed: true, get: func(r clustercheck.RegionsResult) int { return r.LocalFailures }},
		{counter: "retry_after_missing", tweak: func(r1, _ *regionFront) { r1.noRetryAfter.Store(true) }, get: func(r clustercheck.RegionsResult) int { return r.RetryAfterMissing }},
		{counter: "views_diverged", tweak: func(_, r2 *regionFront) { r2.staleViews = true }, get: func(r clustercheck.RegionsResult) int { return r.ViewsDiverged }},
	} {
		t.Run(tc.counter, func(t *testing.T) {
			t.Parallel()
			var f *fake
			if tc.fault != "" {
				f = newFake(tc.fault)
			} else {
				f = newFake()
			}
			res := runRegionsFake(t, f, tc.tweak)
			if tc.get(res) == 0 || !strings.Contains(res.String(), " "+tc.counter+"=") && !strings.HasPrefix(res.String(), tc.counter+"=") {
				t.Fatalf("%s: want %s > 0", res, tc.counter)
			}
			if res.Failed() == tc.allowed {
				t.Fatalf("%s: Failed() = %v", res, res.Failed())
			}
			t.Logf("first: %s / %s", res.First, res.FirstError)
		})
	}
}

func TestRegionsConfigErrors(t *testing.T) {
	pool := func() []string { return nil }
	for _, cfg := range []clustercheck.RegionsConfig{
		{Account: "a", Regions: []func() []string{pool}},
		{Account: "a", Regions: []func() []string{pool, nil}},
		{Regions: []func() []string{pool, pool}},
	} {
		if res := clustercheck.RunRegions(t.Context(), cfg); res.ClientErrors == 0 || !strings.HasPrefix(res.FirstError, "clustercheck: ") {
			t.Errorf("RunRegions(%+v) = %s, %q; want a clustercheck: error", cfg, res, res.FirstError)
		}
	}
}

func TestCheckReplication(t *testing.T) {
	orig := func(shard int, id, kind string) clustercheck.StreamEntry {
		return clustercheck.StreamEntry{Shard: shard, ID: id, Kind: kind}
	}
	copyOf := func(shard int, id string, from int, pos string) clustercheck.StreamEntry {
		return clustercheck.StreamEntry{Shard: shard, ID: id, Kind: "e", Origin: from, OriginPos: pos}
	}
	first := func(e clustercheck.StreamEntry) clustercheck.StreamEntry { e.Prev = "0-0"; return e }
	for _, tc := range []struct {
		name        string
		logs        map[int][]clustercheck.StreamEntry
		lost, twice int
	}{
		{name: "each copied once", logs: map[int][]clustercheck.StreamEntry{
			1: {first(orig(3, "10-0", "e")), orig(3, "11-0", "m"), orig(3, "12-0", "p"), copyOf(3, "13-0", 2, "5-0")},
			2: {first(orig(3, "5-0", "m")), copyOf(3, "14-0", 1, "10-0"), copyOf(3, "14-1", 1, "11-0")},
		}},
		{name: "a message not copied", lost: 1, logs: map[int][]clustercheck.StreamEntry{
			1: {first(orig(3, "10-0", "e")), orig(3, "11-0", "m")},
			2: {first(copyOf(3, "14-0", 1, "10-0"))},
		}},
		{name: "copied into another shard", lost: 1, logs: map[int][]clustercheck.StreamEntry{
			1: {first(orig(3, "10-0", "e"))},
			2: {first(copyOf(4, "14-0", 1, "10-0"))},
		}},
		{name: "copied twice", twice: 1, logs: map[int][]clustercheck.StreamEntry{
			1: {first(orig(3, "10-0", "e"))},
			2: {first(copyOf(3, "14-0", 1, "10-0")), copyOf(3, "15-0", 1, "10-0")},
		}},
		{name: "copy trimmed away with older ones", logs: map[int][]clustercheck.StreamEntry{
			1: {first(orig(3, "10-0", "e")), orig(3, "11-0", "e")},
			2: {{Shard: 3, ID: "20-0", Prev: "19-0", Kind: "e", Origin: 1, OriginPos: "11-0"}},
		}},
		{name: "trimmed, newer not copied", lost: 1, logs: map[int][]clustercheck.StreamEntry{
			1: {first(orig(3, "10-0", "e")), orig(3, "11-0", "e"), orig(3, "12-0", "m")},
			2: {{Shard: 3, ID: "20-0", Prev: "19-0", Kind: "e", Origin: 1, OriginPos: "11-0"}},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := clustercheck.CheckReplication(tc.logs)
			if res.Lost != tc.lost || res.Twice != tc.twice {
				t.Fatalf("got %s (%s); want replicated_lost=%d replicated_twice=%d", res, res.First, tc.lost, tc.twice)
			}
		})
	}
}
