package bench

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
)

// Targets the report checks (DESIGN.md §10).
const (
	targetPropagationP99US = 5000  // µs
	targetBaselineRatio    = 200   // baseline p99 / overlay p99
	targetCeilingRatio     = 0.7   // groupcast delivered/s ÷ hello-world req/s
	targetPeerRatio        = 1.0   // groupcast delivered/s ÷ peer delivered/s (the goal is 2)
	targetHalfRateP99US    = 10000 // µs, publish → deliver at half the saturated rate
	targetBytesPerParked   = 12 << 10
	targetStateSlack       = 1.25 // per-node state on N nodes ÷ 1 node's, at most this × 1/N
	targetForwardP99US     = 500  // µs added by one forward, p99
	targetFailoverGapUS    = 3_000_000
)

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
		sums := summaries(r.Fanout, n)
		g, ok := best(sums, "groupcast")
		if !ok {
			continue
		}
		t := g.Typical
		top, kept := t.Max()
		if c := r.Ceiling[n]; c > 0 {
			cs = append(cs, Check{fmt.Sprintf("fanout n=%d: answers/s at the most deliveries/s kept up with vs. hello-world req/s", n),
				fmt.Sprintf("%.2f× (%.0f answers/s of %.1f messages vs. %.0f)", top.AnswersPerSec/c, top.AnswersPerSec, top.Batch, c), "≥ 0.7×", kept && top.AnswersPerSec >= targetCeilingRatio*c})
		}
		if peer, ok := best(sums, "nchan"); ok {
			fig := fmt.Sprintf("%s (median of %d: %.0f vs. Nchan %s, %d runs: %.0f)", ratio(g, peer), len(g.Runs), g.Median, peer.Variant, len(peer.Runs), peer.Median)
			cs = append(cs, Check{fmt.Sprintf("fanout n=%d: most delivered/s kept up with vs. Nchan's (better configuration)", n), fig, "≥ 1× (goal 2×)",
				kept && !peer.Capped && (peer.Median == 0 || g.Median >= targetPeerRatio*peer.Median)})
		}
		half, ok := t.HalfStep()
		fig := "no step kept up with"
		var own []float64
		if ok {
			own = halfP99s(r, n, half)
			fig = fmt.Sprintf("%s (%.0f deliveries/s = %.1f publishes/s)", spreadMS(own), half.Offered, half.PublishedPerSec)
		}
		if n <= LatencySubscribers {
			cs = append(cs, Check{fmt.Sprintf("fanout n=%d: publish→deliver p99 at half the max rate", n), fig, "≤ 10 ms",
				ok && half.Latency.Count > 0 && median(own) <= targetHalfRateP99US})
		}
		cs = append(cs, halfVsPeer(r, n, half, ok))
		cs = append(cs, Check{fmt.Sprintf("fanout n=%d: memory per parked subscriber", n),
			fmt.Sprintf("%s (fit over %d counts up to %d parked, r² %.3f; kernel sockets %s more)", kib(t.BytesPerParked), len(t.Memory), t.Parked, t.FitR2, kib(t.SocketBytesPerParked)), "≤ 12 KiB", t.BytesPerParked <= targetBytesPerParked && t.Parked >= n})
	}
	if g := r.Groups; g != nil {
		cs = append(cs, Check{"groups: missed after adds / leaked after removes",
			fmt.Sprintf("%d / %d (%d edits, %d expected × %d subscribers)", g.Missed, g.Leaked, g.Edits, g.Expected, g.Subscribers), "0 / 0", g.Missed == 0 && g.Leaked == 0 && g.Expected > 0})
	}
	if t := r.Tokens; t != nil {
		cs = append(cs, Check{"tokens: reads that missed the token's edit", fmt.Sprintf("%d of %d", t.Stale, t.Samples), "0", t.Stale == 0 && t.Samples > 0})
	}
	if a := r.Access; a != nil {
		cs = append(cs, accessChecks(a)...)
	}
	if h := r.History; h != nil {
		cs = append(cs, historyChecks(h)...)
	}
	if c := r.Cluster; c != nil {
		cs = append(cs, clusterChecks(c)...)
	}
	if g := r.Geo; g != nil {
		cs = append(cs, geoChecks(g)...)
	}
	return cs
}

func clusterChecks(c *ClusterResult) []Check {
	var cs []Check
	one, _ := c.memory(1)
	for _, m := range c.Memory {
		if m.Nodes == 1 {
			continue
		}
		what := fmt.Sprintf("cluster N=%d (replicas 1): heap state per node vs. 1 node", m.Nodes)
		mean, largest, ok := c.StateRatio(m.Nodes)
		if !ok {
			cs = append(cs, Check{what, "no 1-node run to compare with", fmt.Sprintf("≤ %.2f× (1.25/N)", targetStateSlack/float64(m.Nodes)), false})
			continue
		}
		cs = append(cs, Check{what,
			fmt.Sprintf("mean %.2f×, largest node %.2f× (1/N = %.2f; %s of %d accounts on 1 node)", mean, largest, 1/float64(m.Nodes), mib(one.MeanState()), m.Accounts),
			fmt.Sprintf("≤ %.2f× (1.25/N)", targetStateSlack/float64(m.Nodes)), mean <= targetStateSlack/float64(m.Nodes) && m.Errors == 0})
	}
	if f := c.Forward; f != nil && f.Forwarded.Count > 0 {
		p50, p99 := f.Added()
		cs = append(cs, Check{"cluster: list via a non-owner (one forward) vs. via an owner, added p99",
			fmt.Sprintf("%+.2f ms (p50 %+.2f ms; %s vs. %s p99)", p99/1000, p50/1000, ms(f.Forwarded.P99), ms(f.Direct.P99)), "≤ 0.5 ms", p99 <= targetForwardP99US})
	}
	if f := c.Failover; f != nil {
		cs = append(cs, Check{fmt.Sprintf("cluster: failover gap p99, kill -9 of an owner (%d subscribers)", f.Subscribers),
			fmt.Sprintf("%.2f s (p50 %.2f s, max %.2f s; %d silent; %d publishes 503)", f.Gap.P99/1e6, f.Gap.P50/1e6, f.Gap.Max/1e6, f.Silent, f.Unavailable),
			"≤ 3 s", f.Gap.Count > 0 && f.Gap.P99 <= targetFailoverGapUS})
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

	if r.Propagation.Overlay.Count > 0 || r.Propagation.Baseline.Count > 0 { // not run: --only
		fmt.Fprintf(&b, "\n## propagation\n\nAn add on node A until a group read on node B (no token) lists it; two groupcastd nodes on real Cassandra and Redis.\n\n%s", latencyHeader)
		b.WriteString(latencyRow("overlay on", r.Propagation.Overlay))
		b.WriteString(latencyRow("baseline: overlay off, storage re-read every 1 s", r.Propagation.Baseline))
	}

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

	fanoutReport(&b, r)
	if a := r.Access; a != nil {
		accessReport(&b, a)
	}
	if h := r.History; h != nil {
		historyReport(&b, h)
	}
	if c := r.Cluster; c != nil {
		clusterReport(&b, c)
	}
	if g := r.Geo; g != nil {
		geoReport(&b, g)
	}
	if len(plots) > 0 {
		b.WriteString("\n## Plots\n\n")
		for _, p := range plots {
			fmt.Fprintf(&b, "![%s](%s)\n\n", strings.TrimSuffix(p, ".png"), p)
		}
	}
	return b.String()
}

func clusterReport(b *strings.Builder, c *ClusterResult) {
	fmt.Fprintf(b, "\n## cluster\n\ngroupcastd nodes gossiping over loopback (127.0.0.1, .2, .3; memberlist probe every 200 ms, 100 ms timeout, suspicion ×2) on real Cassandra and Redis, %d account shards.\n", c.Shards)
	if len(c.Memory) > 0 {
		fmt.Fprintf(b, "\n### memory per node\n\nFresh processes per cluster size, **--replicas 1** (one owner per shard, so that per-node state can fall with N; with the default of 2 it would fall as 2/N) and **--gc-heap-floor 0** (collections by GOGC alone: with the default 64 MiB floor a node of a few MiB lets garbage reach the floor between collections, and the state allocated meanwhile spreads over more spans, so heap in use after a forced GC stays near the same ~25 MiB whatever the node's share). Each run creates the state of %d accounts: per account one channel-group edit adding a channel, 3 publishes to that channel and one list of the group (its view cached), requests spread round-robin over the nodes. Heap is go_memstats_heap_inuse_bytes after a forced GC (the node's profiler, heap?gc=1), before (idle) and after the workload; state is the difference, the figure the target is checked on; live state is the same difference in go_memstats_heap_alloc_bytes (live objects only). Pss is the process's proportional set size. The ratio is the state per node over the 1-node run's. Each node's state also holds what serving the workload leaves behind whatever it owns (pooled connections and buffers, forwarding pools to the other nodes), which does not fall with N.\n\n", c.Memory[0].Accounts)
		fmt.Fprintf(b, "| nodes | node | shards served | heap idle | heap after | state | state × 1 node | live state | live × 1 node | Pss idle | Pss after |\n|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		one, has1 := c.memory(1)
		for _, m := range c.Memory {
			for _, n := range m.PerNode {
				ratio, live := "–", "–"
				if has1 && one.MeanState() > 0 {
					ratio = fmt.Sprintf("%.2f", n.State()/one.MeanState())
				}
				if has1 && len(one.PerNode) > 0 && one.PerNode[0].LiveState() > 0 {
					live = fmt.Sprintf("%.2f", n.LiveState()/one.PerNode[0].LiveState())
				}
				fmt.Fprintf(b, "| %d | %s | %.0f | %s | %s | %s | %s | %s | %s | %s | %s |\n", m.Nodes, n.Node, n.ShardsServing, mib(n.IdleHeap), mib(n.Heap), mib(n.State()), ratio, mib(n.LiveState()), live, mib(n.IdlePss), mib(n.Pss))
			}
		}
		fmt.Fprintf(b, "\n| nodes | requests | failed | seconds | requests/s | mean state | largest state | largest heap | largest Pss |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, m := range c.Memory {
			fmt.Fprintf(b, "| %d | %d | %d | %.1f | %.0f | %s | %s | %s | %s |\n", m.Nodes, m.Requests, m.Errors, m.Seconds, float64(m.Requests)/max(m.Seconds, 1e-9),
				mib(m.MeanState()), mib(m.MaxState()), mib(m.maxOf(func(n NodeMemory) float64 { return n.Heap })), mib(m.maxOf(func(n NodeMemory) float64 { return n.Pss })))
		}
	}
	if f := c.Forward; f != nil {
		p50, p99 := f.Added()
		fmt.Fprintf(b, "\n### forward\n\n3 nodes, 2 owners per shard. One group of account %q (shard %d) listed alternately through %s, an owner, and %s, which owns none of the shard and forwards the request once; one request at a time. Added by the forward: p50 %+.2f ms, p99 %+.2f ms.\n\n%s", f.Account, f.Shard, f.Owner, f.NonOwner, p50/1000, p99/1000, latencyHeader)
		b.WriteString(latencyRow("via an owner ("+f.Owner+")", f.Direct))
		b.WriteString(latencyRow("via a non-owner ("+f.NonOwner+", one forward)", f.Forwarded))
	}
	if f := c.Failover; f != nil {
		ring := "never, within the run"
		if f.RingAfter > 0 {
			ring = fmt.Sprintf("%.2f s", f.RingAfter)
		}
		fmt.Fprintf(b, "\n### failover\n\n3 nodes, 2 owners per shard. %d long-poll subscribers through n1, one per account, of accounts whose shard %s owns (%d as primary, %d as second owner); a publisher through n2 publishes to each of their channels every %v; then `kill -9` of %s. Gap: per subscriber, the longest time without a delivery from 1 s before the kill until publishing stopped; the table is its distribution over subscribers (max is the worst subscriber). n1's ring left %s out, every member ready, after %s.\n\n", f.Subscribers, f.Killed, f.Primary, f.Second, f.Every, f.Killed, f.Killed, ring)
		fmt.Fprintf(b, "%s", latencyHeader)
		b.WriteString(latencyRow("longest gap per subscriber", f.Gap))
		other := fmt.Sprint(f.Failed)
		if len(f.Failures) > 0 {
			var parts []string
			for _, k := range slices.Sorted(maps.Keys(f.Failures)) {
				parts = append(parts, fmt.Sprintf("%s: %d", k, f.Failures[k]))
			}
			other += " (" + strings.Join(parts, ", ") + ")"
		}
		fmt.Fprintf(b, "\n| publishes acknowledged | answered 503 | failed otherwise | acknowledged, never delivered | failed subscribe requests | subscribers silent after the kill |\n|---:|---:|---:|---:|---:|---:|\n| %d | %d | %s | %d | %d | %d |\n",
			f.Published, f.Unavailable, other, f.Lost, f.PollErrors, f.Silent)
	}
}

// LatencySubscribers is the subscriber count whose publish→deliver p99 at
// half the maximum is also held to an absolute bound (targetHalfRateP99US);
// at every count it is held to the peer's p99 at the same load.
const LatencySubscribers = 100

// halfVsPeer compares groupcast's p99 at half its maximum with n
// subscribers against the better Nchan configuration's at the same offered
// load: the median of groupcast's runs at that load (the typical run's half
// step and Results.HalfAgain) against the median of each configuration's
// (Results.PeerAtHalf), the lower of the two. A run that delivered nothing
// counts as an infinite p99, on either side.
func halfVsPeer(r *Results, n int, half FanoutStep, ok bool) Check {
	what := fmt.Sprintf("fanout n=%d: publish→deliver p99 at half the max rate vs. Nchan's at the same load", n)
	if !ok || half.Latency.Count == 0 {
		return Check{what, "no step kept up with", "≤ Nchan's", false}
	}
	own := halfP99s(r, n, half)
	byVariant := map[string][]float64{}
	kept := map[string]int{}
	for _, f := range r.PeerAtHalf {
		if f.Subscribers != n || len(f.Steps) == 0 {
			continue
		}
		byVariant[f.Variant] = append(byVariant[f.Variant], stepP99(f.Steps[0]))
		if f.Steps[0].KeptUp {
			kept[f.Variant]++
		}
	}
	fig := fmt.Sprintf("%s at %.0f deliveries/s (%.1f publishes/s)", spreadMS(own), half.Offered, half.PublishedPerSec)
	variant, found := "", false
	for _, v := range slices.Sorted(maps.Keys(byVariant)) {
		if !found || median(slices.Clone(byVariant[v])) < median(slices.Clone(byVariant[variant])) {
			variant, found = v, true
		}
	}
	if !found {
		return Check{what, fig + "; no Nchan run at that load", "≤ Nchan's", false}
	}
	peer := byVariant[variant]
	fig += fmt.Sprintf(" vs. Nchan (%s) %s", variant, spreadMS(peer))
	if kept[variant] < len(peer) {
		fig += fmt.Sprintf(" (Nchan kept up in %d of %d)", kept[variant], len(peer))
	}
	if memoryOnly := runP99s(r.HalfMemoryOnly, n); len(memoryOnly) > 0 {
		fig += fmt.Sprintf("; not compared: groupcast with --history=false (memory only, as Nchan) %s", spreadMS(memoryOnly))
	}
	return Check{what, fig, "≤ Nchan's", median(own) <= median(peer)}
}

// halfP99s is groupcast's p99s at the load of its typical run's half step
// with n subscribers: that step's and those of the runs again at that load.
func halfP99s(r *Results, n int, half FanoutStep) []float64 {
	return append([]float64{stepP99(half)}, runP99s(r.HalfAgain, n)...)
}

// runP99s is the p99 of the one step of each run with n subscribers.
func runP99s(runs []FanoutRun, n int) []float64 {
	var p99s []float64
	for _, f := range runs {
		if f.Subscribers == n && len(f.Steps) > 0 {
			p99s = append(p99s, stepP99(f.Steps[0]))
		}
	}
	return p99s
}

// stepP99 is a step's p99 latency in µs, infinite when nothing arrived.
func stepP99(s FanoutStep) float64 {
	if s.Latency.Count == 0 {
		return math.Inf(1)
	}
	return s.Latency.P99
}

// spreadMS is one p99 as it is, several as their median with the lowest
// and highest.
func spreadMS(p99s []float64) string {
	if len(p99s) == 1 {
		return ms(p99s[0])
	}
	m := median(slices.Clone(p99s))
	return fmt.Sprintf("%s (median of %d, %s–%s)", ms(m), len(p99s), ms(slices.Min(p99s)), ms(slices.Max(p99s)))
}
