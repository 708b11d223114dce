package bench

import (
	"fmt"
	"slices"
	"strings"
)

// Targets the report checks (DESIGN.md §10).
const (
	targetPropagationP99US = 5000  // µs
	targetBaselineRatio    = 200   // baseline p99 / overlay p99
	targetCeilingRatio     = 0.7   // groupcast delivered/s ÷ hello-world req/s
	targetPeerRatio        = 2.0   // groupcast delivered/s ÷ peer delivered/s
	targetHalfRateP99US    = 10000 // µs, publish → deliver at half the saturated rate
	targetBytesPerParked   = 12 << 10
)

func (r *Results) fanout(target string, n int) (FanoutRun, bool) {
	for _, f := range r.Fanout {
		if f.Target == target && f.Subscribers == n {
			return f, true
		}
	}
	return FanoutRun{}, false
}

func (r *Results) subscriberCounts() []int {
	var ns []int
	for _, f := range r.Fanout {
		if !slices.Contains(ns, f.Subscribers) {
			ns = append(ns, f.Subscribers)
		}
	}
	slices.Sort(ns)
	return ns
}

func ms(us float64) string {
	switch {
	case us >= 100_000:
		return fmt.Sprintf("%.0f ms", us/1000)
	case us >= 10_000:
		return fmt.Sprintf("%.1f ms", us/1000)
	default:
		return fmt.Sprintf("%.2f ms", us/1000)
	}
}

func checks(r *Results) []Check {
	var cs []Check
	ov, base := r.Propagation.Overlay, r.Propagation.Baseline
	if ov.Count > 0 {
		cs = append(cs, Check{"propagation p99 (overlay on)", ms(ov.P99), "≤ 5 ms", ov.P99 <= targetPropagationP99US})
		if base.Count > 0 {
			ratio := base.P99 / ov.P99
			cs = append(cs, Check{"propagation p99 vs. 1 s-refresh baseline", fmt.Sprintf("1/%.0f (%s vs. %s)", ratio, ms(ov.P99), ms(base.P99)), "≤ 1/200", ratio >= targetBaselineRatio})
		}
	}
	for _, n := range r.subscriberCounts() {
		g, ok := r.fanout("groupcast", n)
		if !ok {
			continue
		}
		best, kept := g.Max()
		if c := r.Ceiling[n]; c > 0 {
			cs = append(cs, Check{fmt.Sprintf("fanout n=%d: most delivered/s kept up with vs. hello-world req/s", n),
				fmt.Sprintf("%.2f× (%.0f vs. %.0f)", best.DeliveredPerSec/c, best.DeliveredPerSec, c), "≥ 0.7×", kept && best.DeliveredPerSec >= targetCeilingRatio*c})
		}
		if peer, ok := r.fanout("nchan", n); ok {
			pb, pk := peer.Max()
			fig := fmt.Sprintf("%.2f× (%.0f vs. %.0f)", best.DeliveredPerSec/pb.DeliveredPerSec, best.DeliveredPerSec, pb.DeliveredPerSec)
			if peer.Capped() {
				fig = fmt.Sprintf("≤ %.2f× (%.0f vs. Nchan ≥ %.0f: it kept up with the sweep's highest load)", best.DeliveredPerSec/pb.DeliveredPerSec, best.DeliveredPerSec, pb.DeliveredPerSec)
			}
			if !pk {
				fig = fmt.Sprintf("%.0f vs. none (Nchan kept up with no step)", best.DeliveredPerSec)
			}
			cs = append(cs, Check{fmt.Sprintf("fanout n=%d: most delivered/s kept up with vs. Nchan", n), fig, "≥ 2×",
				kept && (!pk || best.DeliveredPerSec >= targetPeerRatio*pb.DeliveredPerSec)})
		}
		half, ok := g.HalfStep()
		fig := "no step kept up with"
		if ok {
			fig = fmt.Sprintf("%s (%.0f deliveries/s = %.1f publishes/s)", ms(half.Latency.P99), half.Offered, half.PublishedPerSec)
		}
		cs = append(cs, Check{fmt.Sprintf("fanout n=%d: publish→deliver p99 at half the max rate", n), fig, "≤ 10 ms",
			ok && half.Latency.Count > 0 && half.Latency.P99 <= targetHalfRateP99US})
		cs = append(cs, Check{fmt.Sprintf("fanout n=%d: memory per parked subscriber", n),
			fmt.Sprintf("%.1f KiB (%d parked)", g.BytesPerParked/1024, g.Parked), "≤ 12 KiB", g.BytesPerParked <= targetBytesPerParked && g.Parked >= n})
	}
	if g := r.Groups; g != nil {
		cs = append(cs, Check{"groups: missed after adds / leaked after removes",
			fmt.Sprintf("%d / %d (%d edits, %d expected × %d subscribers)", g.Missed, g.Leaked, g.Edits, g.Expected, g.Subscribers), "0 / 0", g.Missed == 0 && g.Leaked == 0 && g.Expected > 0})
	}
	if t := r.Tokens; t != nil {
		cs = append(cs, Check{"tokens: reads that missed the token's edit", fmt.Sprintf("%d of %d", t.Stale, t.Samples), "0", t.Stale == 0 && t.Samples > 0})
	}
	return cs
}

func latencyRow(name string, l Latencies) string {
	return fmt.Sprintf("| %s | %d | %s | %s | %s | %s |\n", name, l.Count, ms(l.P50), ms(l.P90), ms(l.P99), ms(l.Max))
}

const latencyHeader = "| | samples | p50 | p90 | p99 | max |\n|---|---:|---:|---:|---:|---:|\n"

// Report renders the results as Markdown: every figure from this run,
// each target next to its figure, misses said plainly.
func Report(r *Results, plots []string) string {
	var b strings.Builder
	kind := "full"
	if r.Quick {
		kind = "quick (smoke: fewer samples, shorter steps)"
	}
	fmt.Fprintf(&b, "# groupcast benchmark report\n\n")
	fmt.Fprintf(&b, "- run: %s, %s UTC, %.0f s\n", kind, r.Started.UTC().Format("2006-01-02 15:04:05"), r.Seconds)
	fmt.Fprintf(&b, "- command: `%s`\n", r.Command)
	fmt.Fprintf(&b, "- machine: %d CPUs (%s), Linux %s, %s; clients, servers, Cassandra and Redis share it, over loopback\n",
		r.Machine.CPUs, r.Machine.CPU, r.Machine.Kernel, r.Machine.GoVersion)
	for _, e := range r.Errors {
		fmt.Fprintf(&b, "- **scenario failed**: %s\n", e)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "- note: %s\n", n)
	}

	met := 0
	for _, c := range r.Checks {
		if c.Met {
			met++
		}
	}
	fmt.Fprintf(&b, "\n## Targets: %d of %d met\n\n| what | measured | target | |\n|---|---|---|---|\n", met, len(r.Checks))
	for _, c := range r.Checks {
		verdict := "met"
		if !c.Met {
			verdict = "**MISSED**"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", c.What, c.Figure, c.Target, verdict)
	}

	fmt.Fprintf(&b, "\n## propagation\n\nAn add on node A until a group read on node B (no token) lists it; two groupcastd nodes on real Cassandra and Redis.\n\n%s", latencyHeader)
	b.WriteString(latencyRow("overlay on", r.Propagation.Overlay))
	b.WriteString(latencyRow("baseline: overlay off, storage re-read every 1 s", r.Propagation.Baseline))

	if t := r.Tokens; t != nil {
		fmt.Fprintf(&b, "\n## tokens\n\nAn edit on A, then at once a list on B with the edit's token.\n\n%s", latencyHeader)
		b.WriteString(latencyRow("list with token", t.Latency))
		fmt.Fprintf(&b, "\nServed by B: fast (memory at once) %.0f (%.1f%%), waited for its log %.0f, slow (storage) %.0f (%.1f%%), failed %.0f. Reads missing the edit: %d.\n",
			t.Fast, 100*t.FastShare, t.Waited, t.Slow, 100*t.SlowShare, t.Failed, t.Stale)
	}

	if g := r.Groups; g != nil {
		fmt.Fprintf(&b, "\n## groups\n\n%d subscribers of one group on B; its membership changed %.0f times/s on A (%d edits), each edit followed by a message on the channel it touched, published on B with the edit's token.\n\n", g.Subscribers, g.EditsPerSec, g.Edits)
		fmt.Fprintf(&b, "| expected per subscriber | missed | leaked | duplicates |\n|---:|---:|---:|---:|\n| %d | %d | %d | %d |\n\n%s", g.Expected, g.Missed, g.Leaked, g.Duplicates, latencyHeader)
		b.WriteString(latencyRow("publish → deliver", g.Latency))
	}

	if len(r.Fanout) > 0 {
		fmt.Fprintf(&b, "\n## fanout and peer\n\nN long-poll subscribers on one channel of one server; %d publishers sharing a fixed schedule per step, offered loads rising as fractions of the hello-world ceiling until the server no longer keeps up (delivers %.0f%% of the step's messages with p99 ≤ %v), then one step at half the highest load kept up with. Delivered/s counts each message once per subscriber; lost are deliveries that never arrived (a subscriber fell more than the channel's 100-message buffer behind). groupcast runs as one groupcastd on its embedded default (bbolt store, in-process log); the peer is Nchan on one nginx without Redis (Debian nginx + libnginx-mod-nchan, long-poll with all buffered messages per answer, 2 workers, the same 100-message buffer). Memory per parked subscriber is the growth of the server's proportional set size from half to all subscribers parked. The ceiling is a fasthttp hello-world with the same client concurrency.\n\n", Publishers, KeepUpShare*100, KeepUpP99)
		fmt.Fprintf(&b, "| server | N | parked | memory / parked | most delivered/s kept up with | × ceiling | × Nchan | p99 at half that |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, n := range r.subscriberCounts() {
			for _, name := range []string{"groupcast", "nchan"} {
				f, ok := r.fanout(name, n)
				if !ok {
					continue
				}
				best, kept := f.Max()
				top, xc, xp, half := "none", "–", "–", "–"
				if kept {
					top = fmt.Sprintf("%.0f", best.DeliveredPerSec)
					if f.Capped() {
						top = "≥ " + top // kept up with the sweep's highest load
					}
					if c := r.Ceiling[n]; c > 0 {
						xc = fmt.Sprintf("%.2f", best.DeliveredPerSec/c)
					}
					if p, ok := r.fanout("nchan", n); ok && name != "nchan" {
						if pb, pk := p.Max(); pk {
							xp = fmt.Sprintf("%.2f", best.DeliveredPerSec/pb.DeliveredPerSec)
						}
					}
				}
				if h, ok := f.HalfStep(); ok {
					half = ms(h.Latency.P99)
				}
				fmt.Fprintf(&b, "| %s | %d | %d | %.1f KiB | %s | %s | %s | %s |\n", name, n, f.Parked, f.BytesPerParked/1024, top, xc, xp, half)
			}
			if c := r.Ceiling[n]; c > 0 {
				fmt.Fprintf(&b, "| hello-world ceiling | %d | | | %.0f req/s | 1.00 | | |\n", n, c)
			}
		}
		fmt.Fprintf(&b, "\nEvery step:\n\n| server | N | offered deliveries/s | publishes/s | delivered/s | lost | p50 | p90 | p99 | max | kept up |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
		for _, f := range r.Fanout {
			for _, s := range f.Steps {
				kept := "yes"
				if !s.KeptUp {
					kept = "**no**"
				}
				if s.Half {
					kept += " (half the max)"
				}
				fmt.Fprintf(&b, "| %s | %d | %.0f | %.1f | %.0f | %d | %s | %s | %s | %s | %s |\n", f.Target, f.Subscribers, s.Offered, s.PublishedPerSec, s.DeliveredPerSec, s.Lost,
					ms(s.Latency.P50), ms(s.Latency.P90), ms(s.Latency.P99), ms(s.Latency.Max), kept)
			}
		}
	}
	if len(plots) > 0 {
		b.WriteString("\n## Plots\n\n")
		for _, p := range plots {
			fmt.Fprintf(&b, "![%s](%s)\n\n", strings.TrimSuffix(p, ".png"), p)
		}
	}
	return b.String()
}
