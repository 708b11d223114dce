package bench

import (
	"fmt"
	"slices"
	"strings"
)

// FanoutSummary is one server configuration's repeated runs at one
// subscriber count.
type FanoutSummary struct {
	Target, Variant string
	Subscribers     int
	Runs            []FanoutRun
	// Max is each run's most deliveries/s kept up with (0: none); Median,
	// Low and High summarise them.
	Max               []float64
	Median, Low, High float64
	// Capped is set if a run kept up with its sweep's highest load: its
	// limit is then only bounded below.
	Capped bool
	// Typical is the run whose maximum is the median (the lower of the
	// middle two): its answers/s, CPU, latency and memory are reported.
	Typical FanoutRun
}

// Spread is the relative distance between the lowest and the highest
// run's maximum.
func (s FanoutSummary) Spread() float64 {
	if s.Median == 0 {
		return 0
	}
	return (s.High - s.Low) / s.Median
}

// summarize sums up runs (of one target, variant and subscriber count).
func summarize(runs []FanoutRun) FanoutSummary {
	s := FanoutSummary{Target: runs[0].Target, Variant: runs[0].Variant, Subscribers: runs[0].Subscribers, Runs: runs}
	type pair struct {
		max float64
		run FanoutRun
	}
	var ps []pair
	for _, r := range runs {
		best, _ := r.Max()
		ps = append(ps, pair{best.DeliveredPerSec, r})
		s.Max = append(s.Max, best.DeliveredPerSec)
		s.Capped = s.Capped || r.Capped()
	}
	slices.SortStableFunc(ps, func(a, b pair) int {
		switch {
		case a.max < b.max:
			return -1
		case a.max > b.max:
			return 1
		}
		return 0
	})
	s.Low, s.High = ps[0].max, ps[len(ps)-1].max
	s.Median = median(slices.Clone(s.Max))
	s.Typical = ps[(len(ps)-1)/2].run
	return s
}

// summaries groups runs by target and variant at subscriber count n,
// groupcast first, each in the order first run.
func summaries(runs []FanoutRun, n int) []FanoutSummary {
	type key struct{ target, variant string }
	var order []key
	by := map[key][]FanoutRun{}
	for _, r := range runs {
		if r.Subscribers != n {
			continue
		}
		k := key{r.Target, r.Variant}
		if _, ok := by[k]; !ok {
			order = append(order, k)
		}
		by[k] = append(by[k], r)
	}
	slices.SortStableFunc(order, func(a, b key) int {
		if (a.target == "groupcast") != (b.target == "groupcast") {
			if a.target == "groupcast" {
				return -1
			}
			return 1
		}
		return 0
	})
	var out []FanoutSummary
	for _, k := range order {
		out = append(out, summarize(by[k]))
	}
	return out
}

// best is the summary of target with the highest median (the better Nchan
// configuration), if any ran.
func best(sums []FanoutSummary, target string) (FanoutSummary, bool) {
	var b FanoutSummary
	found := false
	for _, s := range sums {
		if s.Target == target && (!found || s.Median > b.Median) {
			b, found = s, true
		}
	}
	return b, found
}

// ratio states a/b, as a bound where either side is one.
func ratio(g, p FanoutSummary) string {
	if p.Median == 0 {
		return "– (Nchan kept up with no step)"
	}
	r := g.Median / p.Median
	switch {
	case g.Capped && p.Capped:
		return fmt.Sprintf("? (both kept up with their sweep's highest load: %.0f vs. %.0f)", g.Median, p.Median)
	case g.Capped:
		return fmt.Sprintf("≥ %.2f×", r)
	case p.Capped:
		return fmt.Sprintf("≤ %.2f×", r)
	}
	return fmt.Sprintf("%.2f×", r)
}

func kib(b float64) string { return fmt.Sprintf("%.1f KiB", b/1024) }

// fanoutReport writes the fan-out sections: the hot channel (swept,
// repeated), quiet channels, channel groups, the client's decode cost.
func fanoutReport(b *strings.Builder, r *Results) {
	if len(r.Isolation) > 0 {
		fmt.Fprintf(b, "\n## fan-out isolation\n\n")
		for _, s := range r.Isolation {
			fmt.Fprintf(b, "- %s\n", s)
		}
	}
	if len(r.Fanout) > 0 {
		fmt.Fprintf(b, "\n## fanout and peer\n\nN long-poll subscribers on one channel of one server. Publishes follow an open-loop timetable (up to %d in flight): each is sent when due whether or not earlier ones were answered; one sent more than %v late counts as late, one that could not be sent before the step ended as skipped. Every message carries its due time, so latency includes any lag of the publisher. A step's delivered/s counts the step's messages that arrived within the step; those arriving in the drain after it (drained) count toward loss but not toward the rate, and a message a subscriber gets again (duplicates) toward neither. A server keeps up with a step when no slot was skipped, %.0f%% of the deliveries owed arrived and p99 ≤ %v. The load doubles from a fraction of the hello-world ceiling until the server does not keep up, then bisects between the highest load kept up with and the lowest not, so each server's maximum is measured (≥ only where it kept up with the sweep's top). The servers run in turn (groupcast, each Nchan configuration, groupcast, …), each run on a fresh process; the table gives the median run's maximum with the lowest and highest. Answers/s are poll answers bringing the step's messages (a batch of many messages is one answer), batch = deliveries per answer, server CPU from /proc/<pid>/stat (utime + stime, every process of the server) over the step, and the load generator's (client CPU) likewise: a client CPU near the step's length means the client, not the server, was the limit. The ceiling compares answers/s with a fasthttp hello-world's requests/s at the same client concurrency. groupcast runs as one groupcastd on its embedded default (bbolt store, in-process log); Nchan on one nginx without Redis (Debian nginx + libnginx-mod-nchan, long-poll with all buffered messages per answer, the same 100-message buffer), as nginx's 2 workers and as 1 worker pinned; the better is compared. Memory per parked subscriber is the slope of a least-squares line through the server's memory at 5 subscriber counts (groupcast: Go heap in use + stacks after a forced GC; Nchan: Pss of master and workers); kernel socket memory is the same slope of /proc/net/sockstat's TCP memory, machine-wide, so both ends of each loopback connection.\n\n",
			Publishers, PublishLateAfter, KeepUpShare*100, KeepUpP99)
		fmt.Fprintf(b, "| server | configuration | N | runs | most delivered/s kept up with: median (low–high, spread) | answers/s | batch | deliveries / server CPU-s | answers/s ÷ hello req/s | × best Nchan | p99 at half | memory / parked (r²) | kernel sockets / parked |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, n := range r.subscriberCounts() {
			sums := summaries(r.Fanout, n)
			peer, hasPeer := best(sums, "nchan")
			for _, s := range sums {
				t := s.Typical
				top, _ := t.Max()
				med := fmt.Sprintf("%.0f", s.Median)
				if s.Capped {
					med = "≥ " + med
				}
				xc, xp, half := "–", "–", "–"
				if c := r.Ceiling[n]; c > 0 && top.AnswersPerSec > 0 {
					xc = fmt.Sprintf("%.2f", top.AnswersPerSec/c)
				}
				if hasPeer && s.Target != "nchan" {
					xp = ratio(s, peer)
				}
				if h, ok := t.HalfStep(); ok {
					half = ms(h.Latency.P99)
				}
				perCPU := "–"
				if top.DeliveriesPerCPUSecond > 0 {
					perCPU = fmt.Sprintf("%.0f", top.DeliveriesPerCPUSecond)
				}
				fmt.Fprintf(b, "| %s | %s | %d | %d | %s (%.0f–%.0f, %.0f%%) | %.0f | %.1f | %s | %s | %s | %s | %s (%.3f) | %s |\n", s.Target, s.Variant, n, len(s.Runs), med, s.Low, s.High, 100*s.Spread(),
					top.AnswersPerSec, top.Batch, perCPU, xc, xp, half, kib(t.BytesPerParked), t.FitR2, kib(t.SocketBytesPerParked))
			}
			if c := r.Ceiling[n]; c > 0 {
				fmt.Fprintf(b, "| hello-world ceiling | | %d | 1 | | %.0f req/s | 1 | | 1.00 | | | | |\n", n, c)
			}
		}
		fmt.Fprintf(b, "\nEvery step:\n\n%s", stepHeader)
		for _, f := range r.Fanout {
			for _, s := range f.Steps {
				b.WriteString(stepRow(f, s))
			}
		}
	}
	if len(r.PeerAtHalf) > 0 {
		fmt.Fprintf(b, "\n## latency at the same load\n\nEvery configuration again, each run on a fresh process, at the load of the half-the-max step of groupcast's typical run, in alternating rounds (each Nchan configuration; then groupcast and each Nchan configuration, as many rounds as the sweeps repeat). The typical run's half step is groupcast's first sample. The p99s are compared at the same offered load, median against median. Beside them, not compared: groupcast with Message Persistence off (`%s`), which keeps messages in memory only, in the channel's ring of the same 100 messages, as Nchan does, run first in each round; the comparison holds groupcast's default, every message stored (fsynced) for history.\n\n%s", memoryOnlyVariant, stepHeader)
		same := slices.Concat(r.HalfAgain, r.HalfMemoryOnly, r.PeerAtHalf)
		slices.SortStableFunc(same, func(a, b FanoutRun) int { return a.Subscribers - b.Subscribers })
		for _, f := range same {
			for _, s := range f.Steps {
				b.WriteString(stepRow(f, s))
			}
		}
	}
	if len(r.Quiet) > 0 {
		q := r.Quiet[0]
		fmt.Fprintf(b, "\n## quiet channels\n\n%d subscribers, each on a channel of its own (%d channels), %.0f publishes/s spread over the channels in turn on the same open-loop timetable: most real traffic, where a poll rarely finds more than one message. One run per server configuration.\n\n%s", q.Subscribers, q.Channels, q.Steps[0].Offered, stepHeader)
		for _, f := range r.Quiet {
			for _, s := range f.Steps {
				b.WriteString(stepRow(f, s))
			}
		}
		b.WriteString(memoryTable(r.Quiet))
	}
	if len(r.Multi) > 0 {
		fmt.Fprintf(b, "\n## channel groups\n\nEvery subscriber subscribes to several channels in one long-poll: through a channel group on groupcast (the product's own path), through Nchan's multi-channel subscribe (/msub/a,b,…). Publishes go to the channels in turn; each reaches every subscriber. Swept to each server's limit as the hot channel is; one run per server configuration.\n\n%s", stepHeader)
		for _, f := range r.Multi {
			for _, s := range f.Steps {
				b.WriteString(stepRow(f, s))
			}
		}
	}
	if len(r.Decode) > 0 {
		fmt.Fprintf(b, "\n## the client's decode cost\n\nWhat this benchmark's client spends decoding one poll answer (testing.Benchmark of the targets' own decoders on answers of 1, 10 and 100 messages): the groupcast JSON envelope costs the client more than Nchan's raw lines, and that cost runs on the load generator's core, not the server's.\n\n| format | messages | bytes | ns / answer | ns / message | allocs / answer |\n|---|---:|---:|---:|---:|---:|\n")
		for _, d := range r.Decode {
			fmt.Fprintf(b, "| %s | %d | %d | %.0f | %.0f | %d |\n", d.Format, d.Batch, d.Bytes, d.NsPerAnswer, d.NsPerMessage, d.AllocsPerCall)
		}
	}
}

const stepHeader = "| server | configuration | N | offered deliveries/s | publishes/s | late / skipped slots | delivered/s | drained | answers/s | batch | server CPU s | deliveries / CPU-s | client CPU s | lost | duplicates | p50 | p99 | max | kept up |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n"

func stepRow(f FanoutRun, s FanoutStep) string {
	kept := "yes"
	if !s.KeptUp {
		kept = "**no**"
	}
	if s.Half {
		kept += " (half the max)"
	}
	return fmt.Sprintf("| %s | %s | %d | %.0f | %.1f | %d / %d | %.0f | %d | %.0f | %.1f | %.2f | %.0f | %.2f | %d | %d | %s | %s | %s | %s |\n", f.Target, f.Variant, f.Subscribers, s.Offered, s.PublishedPerSec,
		s.Slots.Late, s.Slots.Skipped, s.DeliveredPerSec, s.Drained, s.AnswersPerSec, s.Batch, s.ServerCPU, s.DeliveriesPerCPUSecond, s.ClientCPU, s.Lost, s.Duplicates,
		ms(s.Latency.P50), ms(s.Latency.P99), ms(s.Latency.Max), kept)
}

func memoryTable(runs []FanoutRun) string {
	var b strings.Builder
	b.WriteString("\n| server | configuration | parked | memory / parked (r²) | kernel sockets / parked |\n|---|---|---:|---:|---:|\n")
	for _, f := range runs {
		fmt.Fprintf(&b, "| %s | %s | %d | %s (%.3f) | %s |\n", f.Target, f.Variant, f.Parked, kib(f.BytesPerParked), f.FitR2, kib(f.SocketBytesPerParked))
	}
	return b.String()
}
