package bench

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// OnOff is a comparison of one feature turned off and on (Access Manager,
// Message Persistence): the same fanout run alternately in each case, each
// run with a step at a latency load (one the node keeps up with, where
// publish→deliver latency is compared) and one at a saturation load (more
// than it delivers, where deliveries/s are compared).
type OnOff struct {
	Subscribers                 int
	LatencyLoad, SaturationLoad float64
	Step                        time.Duration
	Runs                        []OnOffRun // in the order they ran
	// Load is the load average (1, 5, 15 minutes) before and after.
	LoadBefore, LoadAfter string
}

// OnOffRun is one fanout run: Steps[0] at the latency load, Steps[1] at the
// saturation load.
type OnOffRun struct {
	On bool // the feature was on
	FanoutRun
}

// OnOffCase is one case (off or on) over its rounds: the median of each
// figure (one run's hiccup on a shared machine moves a mean of p99s more
// than the difference measured).
type OnOffCase struct {
	Rounds          int
	P50, P99        float64 // µs, publish→deliver at the latency load
	DeliveredPerSec float64 // at the saturation load
	// ServerCPU is the node's CPU time over the latency step, as a share
	// of the step (1 = one core busy throughout): whether the latency load
	// left it headroom, and what the feature costs.
	ServerCPU      float64
	Lost, Failures int64 // summed over the rounds
}

// alternate says whether run i of an on/off comparison has the feature
// on: off, on, on, off, off, on, … so that drift over the runs (the
// machine's, the node's growing state) falls on both cases alike.
func alternate(i int) bool { return (i%2 == 1) != (i/2%2 == 1) }

// run runs one fanout of the comparison against t and records it; label
// names the case in the target and in errors.
func (r *OnOff) run(ctx context.Context, t Target, on bool, channel string, pids []int, label string, prog *Progress) error {
	var serverPIDs func() ([]int, error)
	if len(pids) > 0 {
		serverPIDs = func() ([]int, error) { return pids, nil }
	}
	run, err := Fanout(ctx, t, FanoutConfig{Subscribers: r.Subscribers, Step: r.Step, Loads: []float64{r.LatencyLoad, r.SaturationLoad},
		AllLoads: true, Channel: channel, ServerPIDs: serverPIDs, Progress: prog})
	run.Target = "groupcast, " + label
	r.Runs = append(r.Runs, OnOffRun{On: on, FanoutRun: run})
	if err != nil {
		return fmt.Errorf("%s: %w", label, err)
	}
	if run.Failures > 0 {
		return fmt.Errorf("%s: %d subscribe polls failed", label, run.Failures)
	}
	return nil
}

// Case summarises the runs with the feature on or off.
func (r *OnOff) Case(on bool) OnOffCase {
	var c OnOffCase
	var p50, p99, delivered, cpu []float64
	for _, run := range r.Runs {
		if run.On != on || len(run.Steps) < 2 {
			continue
		}
		c.Rounds++
		p50 = append(p50, run.Steps[0].Latency.P50)
		p99 = append(p99, run.Steps[0].Latency.P99)
		delivered = append(delivered, run.Steps[1].DeliveredPerSec)
		if r.Step > 0 {
			cpu = append(cpu, run.Steps[0].ServerCPU/r.Step.Seconds())
		}
		c.Lost += run.Steps[0].Lost + run.Steps[1].Lost
		c.Failures += run.Failures
	}
	c.P50, c.P99, c.DeliveredPerSec, c.ServerCPU = median(p50), median(p99), median(delivered), median(cpu)
	return c
}

// median of xs (the mean of the middle two for an even count); 0 if none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	if m := len(xs) / 2; len(xs)%2 == 0 {
		return (xs[m-1] + xs[m]) / 2
	} else {
		return xs[m]
	}
}

// Apart is how far on is from off, relative to off: of the p99 latency and
// of the deliveries/s (positive: on is higher).
func (r *OnOff) Apart() (p99, delivered float64) {
	off, on := r.Case(false), r.Case(true)
	return rel(on.P99, off.P99), rel(on.DeliveredPerSec, off.DeliveredPerSec)
}

// Spread is the noise between rounds of the same case: the largest
// relative difference between two rounds of one case, of the p99 and of
// the deliveries/s.
func (r *OnOff) Spread() (p99, delivered float64) {
	for i, a := range r.Runs {
		for _, b := range r.Runs[i+1:] {
			if a.On != b.On || len(a.Steps) < 2 || len(b.Steps) < 2 {
				continue
			}
			p99 = max(p99, math.Abs(rel(b.Steps[0].Latency.P99, a.Steps[0].Latency.P99)))
			delivered = max(delivered, math.Abs(rel(b.Steps[1].DeliveredPerSec, a.Steps[1].DeliveredPerSec)))
		}
	}
	return p99, delivered
}

func rel(x, base float64) float64 {
	if base == 0 {
		return math.Inf(1)
	}
	return x/base - 1
}

// checks are the comparison's targets: the p99 and the deliveries/s of on
// within target (a fraction) of off's; scenario and what name them.
func (r *OnOff) checks(scenario, what string, target float64) []Check {
	off, on := r.Case(false), r.Case(true)
	want := fmt.Sprintf("≤ %.0f%% apart", 100*target)
	if off.Rounds == 0 || on.Rounds == 0 {
		return []Check{{scenario + ": " + what, "no complete pair of runs", want, false}}
	}
	p99, delivered := r.Apart()
	sp99, sdel := r.Spread()
	return []Check{
		{fmt.Sprintf("%s n=%d: publish→deliver p99, %s (%.0f deliveries/s)", scenario, r.Subscribers, what, r.LatencyLoad),
			fmt.Sprintf("%+.1f%% (%s vs. %s; rounds of one case %.1f%% apart)", 100*p99, ms(on.P99), ms(off.P99), 100*sp99), want,
			math.Abs(p99) <= target && on.Failures == 0},
		{fmt.Sprintf("%s n=%d: deliveries/s at saturation, %s (%.0f offered)", scenario, r.Subscribers, what, r.SaturationLoad),
			fmt.Sprintf("%+.1f%% (%.0f vs. %.0f; rounds of one case %.1f%% apart)", 100*delivered, on.DeliveredPerSec, off.DeliveredPerSec, 100*sdel), want,
			math.Abs(delivered) <= target && on.Failures == 0},
	}
}

// report writes the runs and the medians; feature names the column.
func (r *OnOff) report(b *strings.Builder, feature string) {
	fmt.Fprintf(b, "%d subscribers; each run has a step at %.0f deliveries/s (the latency compared) and one at %.0f offered (beyond what the node delivers: the deliveries/s compared), %d publishers; the cases alternate (off, on, on, off, …) so that drift, the machine's or the node's, falls on both alike, and each figure is the median over a case's rounds. Load average before %s, after %s.\n\n",
		r.Subscribers, r.LatencyLoad, r.SaturationLoad, Publishers, r.LoadBefore, r.LoadAfter)
	fmt.Fprintf(b, "| run | %s | p50 | p90 | p99 | max | delivered/s at %.0f | node CPU at %.0f | delivered/s at %.0f offered | lost | failed polls |\n|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n", feature, r.LatencyLoad, r.LatencyLoad, r.SaturationLoad)
	for i, run := range r.Runs {
		if len(run.Steps) < 2 {
			fmt.Fprintf(b, "| %d | %s | | | | | | | | | %d (incomplete) |\n", i+1, onOff(run.On), run.Failures)
			continue
		}
		l := run.Steps[0].Latency
		fmt.Fprintf(b, "| %d | %s | %s | %s | %s | %s | %.0f | %s | %.0f | %d | %d |\n", i+1, onOff(run.On), ms(l.P50), ms(l.P90), ms(l.P99), ms(l.Max),
			run.Steps[0].DeliveredPerSec, r.cpuShare(run.Steps[0].ServerCPU), run.Steps[1].DeliveredPerSec, run.Steps[0].Lost+run.Steps[1].Lost, run.Failures)
	}
	off, on := r.Case(false), r.Case(true)
	if off.Rounds > 0 && on.Rounds > 0 {
		p99, delivered := r.Apart()
		sp99, sdel := r.Spread()
		fmt.Fprintf(b, "\n| median | rounds | p50 | p99 | node CPU at the latency load | delivered/s at saturation |\n|---|---:|---:|---:|---:|---:|\n| off | %d | %s | %s | %.1f%% | %.0f |\n| on | %d | %s | %s | %.1f%% | %.0f |\n| on vs. off | | %+.1f%% | %+.1f%% | %+.1f%% | %+.1f%% |\n| rounds of one case, farthest apart | | | %.1f%% | | %.1f%% |\n",
			off.Rounds, ms(off.P50), ms(off.P99), 100*off.ServerCPU, off.DeliveredPerSec, on.Rounds, ms(on.P50), ms(on.P99), 100*on.ServerCPU, on.DeliveredPerSec,
			100*rel(on.P50, off.P50), 100*p99, 100*rel(on.ServerCPU, off.ServerCPU), 100*delivered, 100*sp99, 100*sdel)
	}
}

// cpuShare is CPU seconds over a step as a percentage of one core.
func (r *OnOff) cpuShare(secs float64) string {
	if r.Step <= 0 || secs <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f%%", 100*secs/r.Step.Seconds())
}

// onOffSetup isolates the suite for an on/off scenario (as the fan-out
// scenarios are: servers on ServerCPU, this process on LoadCPU) and
// measures the hello-world ceiling its loads are fractions of, unless the
// fanout did; it returns the subscriber count (the plan's first) and what
// undoes the isolation (always to be called).
func (s *suite) onOffSetup(ctx context.Context, p plan, res *Results) (n int, undo func() error, err error) {
	if undo, err = s.isolate(res); err != nil {
		return 0, undo, err
	}
	n = p.subscribers[0]
	if res.Ceiling[n] == 0 {
		err = s.ceiling(ctx, p, n, res)
	}
	return n, undo, err
}
