package bench

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/pprof"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
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
	reg.MustRegister(collectors.NewGoCollector())
	_, cfg := nodetest.Embedded(t, reg, subscriber.Config{PollHold: 5 * time.Second, Registerer: reg})
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.Handle("/debug/pprof/heap", pprof.Handler("heap"))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return nodetest.Serve(t, cfg), srv.URL
}

// TestFanoutSteps runs the fanout scenario against a real node with a few
// subscribers: every subscriber parks, memory is fitted over 5 counts, and
// each step delivers its own messages to every subscriber, no more.
func TestFanoutSteps(t *testing.T) {
	base, admin := nodeWithAdmin(t)
	const subs = 20
	run, err := Fanout(context.Background(), &Groupcast{Origin: base, Admin: admin, Account: "bench", PIDs: []int{os.Getpid()}},
		FanoutConfig{Subscribers: subs, Step: 300 * time.Millisecond, Loads: []float64{200, 400, 1e9},
			ServerPIDs: func() ([]int, error) { return []int{os.Getpid()}, nil }})
	if err != nil {
		t.Fatal(err)
	}
	if run.Parked != subs || run.Failures != 0 || len(run.Memory) != 5 || run.Memory[4].Parked != subs || run.MemoryKind == "" {
		t.Fatalf("parked %d of %d, %d failed polls, memory %+v (%s)", run.Parked, subs, run.Failures, run.Memory, run.MemoryKind)
	}
	// 200 and 400 deliveries/s (10 and 20 publishes/s) are easy; a billion
	// is not (its timetable cannot be kept: slots skipped): the sweep
	// stops there and runs half of 400.
	if len(run.Steps) != 4 || !run.Steps[0].KeptUp || !run.Steps[1].KeptUp || run.Steps[2].KeptUp || !run.Steps[3].Half || run.Steps[3].Offered != 200 {
		t.Fatalf("steps %+v", run.Steps)
	}
	if run.Steps[2].Slots.Skipped == 0 {
		t.Errorf("a billion deliveries/s: no slot skipped: %+v", run.Steps[2].Slots)
	}
	for _, s := range run.Steps {
		// Delivered/s and published/s are per second of the same step, so a
		// step delivers at most published × subscribers.
		if s.Latency.Count == 0 || s.DeliveredPerSec == 0 || s.DeliveredPerSec > s.PublishedPerSec*subs*1.0001 || s.AnswersPerSec == 0 || s.Batch < 1 {
			t.Errorf("step %.0f/s: published/s %.1f delivered/s %.1f answers/s %.1f batch %.1f latencies %d", s.Offered, s.PublishedPerSec, s.DeliveredPerSec, s.AnswersPerSec, s.Batch, s.Latency.Count)
		}
		if s.Slots.OnTime+s.Slots.Late+s.Slots.Skipped != s.Slots.Slots {
			t.Errorf("step %.0f/s: slots unaccounted %+v", s.Offered, s.Slots)
		}
	}
	if best, ok := run.Max(); !ok || best.Offered != 400 {
		t.Errorf("max %+v %v", best, ok)
	}
}

// TestFanoutQuietChannels spreads subscribers and publishes over channels:
// every publish reaches its channel's subscribers only.
func TestFanoutQuietChannels(t *testing.T) {
	base, admin := nodeWithAdmin(t)
	run, err := Fanout(context.Background(), &Groupcast{Origin: base, Admin: admin, Account: "bench"},
		FanoutConfig{Subscribers: 12, Channels: 6, Step: 400 * time.Millisecond, Loads: []float64{100}, AllLoads: true, MemoryPoints: 2})
	if err != nil {
		t.Fatal(err)
	}
	s := run.Steps[0]
	// 100 deliveries/s = 50 publishes/s, each to a channel of 2.
	if !s.KeptUp || s.Lost != 0 || s.PublishedPerSec < 45 || s.PublishedPerSec > 50.001 || run.Channels != 6 || s.Batch < 1 {
		t.Fatalf("run %+v step %+v", run, s)
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
			{Offered: 40000, DeliveredPerSec: 40000, AnswersPerSec: 40000, Batch: 1, KeptUp: true}, {Offered: 80000, DeliveredPerSec: 50000},
			{Offered: 20000, Half: true, KeptUp: true, Latency: Latencies{Count: 10, P99: 30000}}}},
		{Target: "nchan", Variant: "2 workers", Subscribers: 1000, Parked: 1000, Steps: []FanoutStep{{Offered: 10000, DeliveredPerSec: 10000, KeptUp: true}, {Offered: 20000, DeliveredPerSec: 12000}}},
		{Target: "nchan", Variant: "1 worker", Subscribers: 1000, Parked: 1000, Steps: []FanoutStep{{Offered: 20000, DeliveredPerSec: 20000, KeptUp: true}, {Offered: 40000, DeliveredPerSec: 22000}}},
	}
	r.Groups = &GroupsResult{Subscribers: 2, Edits: 10, Expected: 5, Leaked: 1}
	r.Checks = checks(r)
	want := map[string]bool{
		"propagation p99 (overlay on)":                                                         true,
		"propagation p99 vs. 1 s-refresh baseline":                                             true,  // 1/495
		"fanout n=1000: answers/s at the most deliveries/s kept up with vs. hello-world req/s": true,  // 0.8×
		"fanout n=1000: most delivered/s kept up with vs. Nchan's (better configuration)":      true,  // 2× the 1-worker Nchan
		"fanout n=1000: publish→deliver p99 at half the max rate vs. Nchan's at the same load": false, // no Nchan run at that load
		"fanout n=1000: memory per parked subscriber":                                          false,
		"groups: missed after adds / leaked after removes":                                     false,
	}
	if len(r.Checks) != len(want) {
		t.Fatalf("checks: %+v", r.Checks)
	}
	for _, c := range r.Checks {
		if met, ok := want[c.What]; !ok || met != c.Met {
			t.Errorf("check %q met=%v, want %v (known: %v)", c.What, c.Met, met, ok)
		}
	}
	r.Quiet = []FanoutRun{{Target: "groupcast", Subscribers: 10, Channels: 10, Steps: []FanoutStep{{Offered: 10}}}}
	r.PeerAtHalf = []FanoutRun{{Target: "nchan", Variant: "1 worker", Subscribers: 1000, Steps: []FanoutStep{{Offered: 20000, KeptUp: true, Latency: Latencies{Count: 10, P99: 20000}}}}}
	r.Decode = []DecodeCost{{Format: "raw", Batch: 1}}
	r.Isolation = []string{"pinned"}
	rep := Report(r, []string{"throughput.png"})
	// Every table's alignment row has as many cells as its header and rows.
	lines := strings.Split(rep, "\n")
	for i := 1; i < len(lines); i++ {
		if !strings.HasPrefix(lines[i], "|---") {
			continue
		}
		want := strings.Count(lines[i], "|")
		for j := i - 1; j <= i+1 && j < len(lines); j++ {
			if strings.HasPrefix(lines[j], "|") && strings.Count(strings.ReplaceAll(lines[j], "\\|", ""), "|") != want {
				t.Errorf("table row %q: %d cells, alignment %q: %d", lines[j], strings.Count(lines[j], "|"), lines[i], want)
			}
		}
	}
	for _, s := range []string{"## Targets: 4 of 7 met", "| fanout n=1000: memory per parked subscriber | 20.0 KiB (fit over 0 counts up to 1000 parked, r² 0.000; kernel sockets 0.0 KiB more) | ≤ 12 KiB | **MISSED** |",
		"| 2.00× (median of 1: 40000 vs. Nchan 1 worker, 1 runs: 20000) | ≥ 1× (goal 2×) | met |", "![throughput](throughput.png)"} {
		if !strings.Contains(rep, s) {
			t.Errorf("report lacks %q:\n%s", s, rep)
		}
	}
}
