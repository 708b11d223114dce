package bench

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/groupcast/groupcast/internal/nodetest"
	"github.com/groupcast/groupcast/subscriber"
)

// node serves an embedded groupcast node in this process; base is its API's
// base URL.
func node(t *testing.T) (base string) {
	t.Helper()
	base, _ = nodeWithAdmin(t)
	return base
}

// nodeWithAdmin is node, with its metrics served on /metrics of admin, as
// groupcastd's admin listener serves them.
func nodeWithAdmin(t *testing.T) (base, admin string) {
	t.Helper()
	reg := prometheus.NewRegistry()
	_, cfg := nodetest.Embedded(t, reg, subscriber.Config{PollHold: 5 * time.Second, Registerer: reg})
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return nodetest.Serve(t, cfg), srv.URL
}

// TestFanoutSteps runs the fanout scenario against a real node with a few
// subscribers: every subscriber parks, and each step delivers its own
// messages to every subscriber, no more.
func TestFanoutSteps(t *testing.T) {
	base, admin := nodeWithAdmin(t)
	const subs = 20
	run, err := Fanout(context.Background(), &Groupcast{Origin: base, Admin: admin, Account: "bench", PIDs: []int{os.Getpid()}},
		FanoutConfig{Subscribers: subs, Step: 300 * time.Millisecond, Loads: []float64{200, 400, 1e9}})
	if err != nil {
		t.Fatal(err)
	}
	if run.Parked != subs || run.Failures != 0 {
		t.Fatalf("parked %d of %d, %d failed polls", run.Parked, subs, run.Failures)
	}
	// 200 and 400 deliveries/s (10 and 20 publishes/s) are easy; a billion
	// is not: the sweep stops there and runs half of 400.
	if len(run.Steps) != 4 || !run.Steps[0].KeptUp || !run.Steps[1].KeptUp || run.Steps[2].KeptUp || !run.Steps[3].Half || run.Steps[3].Offered != 200 {
		t.Fatalf("steps %+v", run.Steps)
	}
	for _, s := range run.Steps {
		// Delivered/s and published/s are per second of the same step, so a
		// step delivers at most published × subscribers.
		if s.Latency.Count == 0 || s.DeliveredPerSec == 0 || s.DeliveredPerSec > s.PublishedPerSec*subs*1.0001 {
			t.Errorf("step %.0f/s: published/s %.1f delivered/s %.1f latencies %d", s.Offered, s.PublishedPerSec, s.DeliveredPerSec, s.Latency.Count)
		}
	}
	if best, ok := run.Max(); !ok || best.Offered != 400 {
		t.Errorf("max %+v %v", best, ok)
	}
}

// TestGroupsAndTokens runs both scenarios against one node (A = B): the
// harness's own counting must find no miss, no leak and no stale read.
func TestGroupsAndTokens(t *testing.T) {
	base, admin := nodeWithAdmin(t)
	g, err := Groups(context.Background(), GroupsConfig{A: base, B: base, BAdmin: admin, Account: "bench", Subscribers: 3, EditsPerSec: 100, Duration: time.Second, Pool: 4})
	if err != nil {
		t.Fatal(err)
	}
	if g.Edits < 50 || g.Expected == 0 || g.Missed != 0 || g.Leaked != 0 || g.Duplicates != 0 || g.Latency.Count != int64(g.Expected*3) {
		t.Fatalf("groups: %+v", g)
	}
	tok, err := Tokens(context.Background(), TokensConfig{A: base, B: base, BAdmin: admin, Account: "bench", Samples: 50})
	if err != nil {
		t.Fatal(err)
	}
	if tok.Samples != 100 || tok.Stale != 0 || tok.Fast+tok.Waited+tok.Slow != 100 {
		t.Fatalf("tokens: %+v", tok)
	}
}

// TestReportSaysMisses checks that the report puts every target next to
// its figure and says plainly which ones were missed.
func TestReportSaysMisses(t *testing.T) {
	r := &Results{Ceiling: map[int]float64{1000: 50000}}
	r.Propagation.Overlay = Latencies{Count: 100, P99: 2000}
	r.Propagation.Baseline = Latencies{Count: 10, P99: 990000}
	r.Fanout = []FanoutRun{
		{Target: "groupcast", Subscribers: 1000, Parked: 1000, BytesPerParked: 20 << 10, Steps: []FanoutStep{
			{Offered: 40000, DeliveredPerSec: 40000, KeptUp: true}, {Offered: 80000, DeliveredPerSec: 50000},
			{Offered: 20000, Half: true, KeptUp: true, Latency: Latencies{Count: 10, P99: 30000}}}},
		{Target: "nchan", Subscribers: 1000, Parked: 1000, Steps: []FanoutStep{{Offered: 10000, DeliveredPerSec: 10000, KeptUp: true}, {Offered: 20000, DeliveredPerSec: 12000}}},
	}
	r.Groups = &GroupsResult{Subscribers: 2, Edits: 10, Expected: 5, Leaked: 1}
	r.Checks = checks(r)
	want := map[string]bool{
		"propagation p99 (overlay on)":                                       true,
		"propagation p99 vs. 1 s-refresh baseline":                           true, // 1/495
		"fanout n=1000: most delivered/s kept up with vs. hello-world req/s": true, // 0.8×
		"fanout n=1000: most delivered/s kept up with vs. Nchan":             true, // 4×
		"fanout n=1000: publish→deliver p99 at half the max rate":            false,
		"fanout n=1000: memory per parked subscriber":                        false,
		"groups: missed after adds / leaked after removes":                   false,
	}
	if len(r.Checks) != len(want) {
		t.Fatalf("checks: %+v", r.Checks)
	}
	for _, c := range r.Checks {
		if met, ok := want[c.What]; !ok || met != c.Met {
			t.Errorf("check %q met=%v, want %v (known: %v)", c.What, c.Met, met, ok)
		}
	}
	rep := Report(r, []string{"throughput.png"})
	for _, s := range []string{"## Targets: 4 of 7 met", "| fanout n=1000: memory per parked subscriber | 20.0 KiB (1000 parked) | ≤ 12 KiB | **MISSED** |", "![throughput](throughput.png)"} {
		if !strings.Contains(rep, s) {
			t.Errorf("report lacks %q:\n%s", s, rep)
		}
	}
}
