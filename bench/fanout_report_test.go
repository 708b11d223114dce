package bench

import (
	"fmt"
	"math"
	"strings"
	"testing"
)

func runWithMax(target string, max float64, capped bool) FanoutRun {
	return FanoutRun{Target: target, Subscribers: 1000, Swept: true, SweepCapped: capped, Steps: []FanoutStep{{Offered: max, DeliveredPerSec: max, KeptUp: true}}}
}

// TestSummaries checks the repeats' median, spread and typical run, and
// that the better Nchan configuration is the one compared.
func TestSummaries(t *testing.T) {
	runs := []FanoutRun{runWithMax("groupcast", 30, false), runWithMax("nchan", 50, false), runWithMax("groupcast", 10, false), runWithMax("groupcast", 20, false)}
	runs[1].Variant = "2 workers"
	one := runWithMax("nchan", 60, false)
	one.Variant = "1 worker"
	runs = append(runs, one, runWithMax("other", 1, false))
	runs[5].Subscribers = 10 // another count: not in these summaries
	sums := summaries(runs, 1000)
	if len(sums) != 3 || sums[0].Target != "groupcast" {
		t.Fatalf("summaries %+v", sums)
	}
	g := sums[0]
	if g.Median != 20 || g.Low != 10 || g.High != 30 || math.Abs(g.Spread()-1) > 1e-9 || len(g.Runs) != 3 {
		t.Fatalf("groupcast summary median %v low %v high %v spread %v", g.Median, g.Low, g.High, g.Spread())
	}
	if top, _ := g.Typical.Max(); top.DeliveredPerSec != 20 {
		t.Fatalf("typical run's max %v, want the median run's 20", top.DeliveredPerSec)
	}
	p, ok := best(sums, "nchan")
	if !ok || p.Variant != "1 worker" {
		t.Fatalf("best nchan %+v", p)
	}
	if got := ratio(g, p); got != "0.33×" {
		t.Errorf("ratio %q", got)
	}
	p.Capped = true
	if got := ratio(g, p); got != "≤ 0.33×" {
		t.Errorf("ratio against a capped peer %q", got)
	}
}

// TestHalfVsPeer: groupcast's p99 at half its maximum is compared with the
// better Nchan configuration's at the same load, median against median, and
// the check fails when groupcast's is higher or when no peer run at that
// load exists.
func TestHalfVsPeer(t *testing.T) {
	half := FanoutStep{Offered: 1000, PublishedPerSec: 1, KeptUp: true, Half: true, Latency: Latencies{Count: 100, P99: 30_000}}
	run := func(target, variant string, p99 float64) FanoutRun {
		return FanoutRun{Target: target, Variant: variant, Subscribers: 1000, Steps: []FanoutStep{{Offered: 1000, KeptUp: true, Latency: Latencies{Count: 100, P99: p99}}}}
	}
	peer := func(variant string, p99 float64) FanoutRun { return run("nchan", variant, p99) }
	r := &Results{}
	if c := halfVsPeer(r, 1000, half, true); c.Met {
		t.Fatalf("met with no peer run: %+v", c)
	}
	r.PeerAtHalf = []FanoutRun{peer("2 workers", 50_000), peer("1 worker", 40_000)}
	r.PeerAtHalf[1].Subscribers = 10000 // another count: not compared
	if c := halfVsPeer(r, 1000, half, true); !c.Met || !strings.Contains(c.Figure, "2 workers") {
		t.Fatalf("30 ms vs. 50 ms: %+v", c)
	}
	r.PeerAtHalf = append(r.PeerAtHalf, peer("1 worker", 20_000))
	c := halfVsPeer(r, 1000, half, true)
	if c.Met || !strings.Contains(c.Figure, "1 worker") {
		t.Fatalf("30 ms vs. the better peer's 20 ms: %+v", c)
	}
	if c := halfVsPeer(r, 1000, FanoutStep{}, false); c.Met {
		t.Fatalf("met with no half step: %+v", c)
	}

	// Three runs a side: groupcast 30, 20, 25 ms (median 25) against the
	// 1-worker configuration's 20, 40, 26 ms (median 26): met, though the
	// typical run's 30 ms alone is above the peer's best single run.
	r.HalfAgain = []FanoutRun{run("groupcast", "", 20_000), run("groupcast", "", 25_000)}
	r.PeerAtHalf = append(r.PeerAtHalf, peer("1 worker", 40_000), peer("1 worker", 26_000))
	if c := halfVsPeer(r, 1000, half, true); !c.Met || !strings.Contains(c.Figure, "median of 3") {
		t.Fatalf("median 25 ms vs. the peer's median 26 ms: %+v", c)
	}
	// The peer's median falls to 24 ms: missed.
	r.PeerAtHalf[len(r.PeerAtHalf)-1] = peer("1 worker", 24_000)
	if c := halfVsPeer(r, 1000, half, true); c.Met {
		t.Fatalf("median 25 ms vs. the peer's median 24 ms: %+v", c)
	}
	// groupcast with persistence off is reported beside the comparison,
	// never in it: its 10 ms does not meet the check.
	r.HalfMemoryOnly = []FanoutRun{run("groupcast", memoryOnlyVariant, 10_000), run("groupcast", memoryOnlyVariant, 12_000)}
	if c := halfVsPeer(r, 1000, half, true); c.Met || !strings.Contains(c.Figure, "--history=false (memory only, as Nchan) 11.0 ms (median of 2") {
		t.Fatalf("persistence off at 10 and 12 ms beside 25 ms vs. the peer's 24 ms: %+v", c)
	}
	r.HalfMemoryOnly = nil
	// A groupcast run that delivered nothing is an infinite p99, not a
	// run left out: the median is 30 ms now.
	r.HalfAgain[0].Steps[0].Latency = Latencies{}
	r.PeerAtHalf[len(r.PeerAtHalf)-1] = peer("1 worker", 28_000)
	if c := halfVsPeer(r, 1000, half, true); c.Met {
		t.Fatalf("groupcast 30 ms, 25 ms and nothing vs. the peer's median 28 ms: %+v", c)
	}
}

// TestSmallFanoutHasBothLatencyBounds: at LatencySubscribers the p99 at half
// the maximum is held to the absolute bound and to Nchan's at the same load;
// meeting one does not hide missing the other.
func TestSmallFanoutHasBothLatencyBounds(t *testing.T) {
	n := LatencySubscribers
	r := &Results{Fanout: []FanoutRun{{Target: "groupcast", Subscribers: n, Parked: n, Steps: []FanoutStep{
		{Offered: 2000, DeliveredPerSec: 2000, KeptUp: true}, {Offered: 4000, DeliveredPerSec: 3000},
		{Offered: 1000, Half: true, KeptUp: true, Latency: Latencies{Count: 100, P99: 7_000}}}}}}
	r.PeerAtHalf = []FanoutRun{{Target: "nchan", Variant: "1 worker", Subscribers: n, Steps: []FanoutStep{{Offered: 1000, KeptUp: true, Latency: Latencies{Count: 100, P99: 5_000}}}}}
	got := map[string]bool{}
	for _, c := range checks(r) {
		got[c.What] = c.Met
	}
	abs := fmt.Sprintf("fanout n=%d: publish→deliver p99 at half the max rate", n)
	peer := fmt.Sprintf("fanout n=%d: publish→deliver p99 at half the max rate vs. Nchan's at the same load", n)
	if met, ok := got[abs]; !ok || !met {
		t.Errorf("7 ms against 10 ms: %v (present %v)", met, ok)
	}
	if met, ok := got[peer]; !ok || met {
		t.Errorf("7 ms against Nchan's 5 ms: %v (present %v), checks %v", met, ok, got)
	}
	// Two more runs at that load, of 12 and 13 ms: the median, 12 ms, is
	// held to the bound, not the typical run's 7 ms.
	again := func(p99 float64) FanoutRun {
		return FanoutRun{Target: "groupcast", Subscribers: n, Steps: []FanoutStep{{Offered: 1000, KeptUp: true, Latency: Latencies{Count: 100, P99: p99}}}}
	}
	r.HalfAgain = []FanoutRun{again(12_000), again(13_000)}
	for _, c := range checks(r) {
		if c.What == abs && c.Met {
			t.Errorf("7, 12 and 13 ms against 10 ms: met (%s)", c.Figure)
		}
	}
}
