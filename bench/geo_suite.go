package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Targets of the geo scenario (issue 11): what replication may add to the
// one-way latency between the regions, at p99.
const (
	targetGeoEditOverUS    = 5000  // µs
	targetGeoMessageOverUS = 10000 // µs
)

// geoRefresh is the nodes' --refresh-every in the geo scenario: the
// default, which is how region 2 learns region 1's edits without
// replication.
const geoRefresh = 30 * time.Second

// geoQuietGap bounds the pause between quiet-link samples: long enough
// for the replicator's blocking read to time out (after 1 s) and be
// re-issued between two messages, twice.
const geoQuietGap = 2500 * time.Millisecond

// geoWarm is how many edits and messages go unmeasured first: the first
// edit after the nodes start was seen to take up to 200 ms over the link.
const geoWarm = 3

// geoPlan sizes the geo scenario: samples of each measurement.
type geoPlan struct{ edits, messages, quiet, baseline int }

// startRegions starts one groupcastd per region, each on its own Cassandra
// datacenter and Redis, listening on its Redis's host, in a fresh keyspace
// replicated to every region's datacenter and a fresh Redis prefix. With a
// link, each node pulls the other regions' shard logs through it
// (--remote-region); without, nothing but Cassandra joins the regions.
func (s *suite) startRegions(ctx context.Context, regions []Region, link *wan) ([]*Proc, error) {
	s.seq++
	ks := fmt.Sprintf("bench_geo_%d_%d", time.Now().Unix(), s.seq)
	var repl []string
	for _, r := range regions {
		repl = append(repl, r.DC+":1")
	}
	var procs []*Proc
	for _, r := range regions {
		host, _, err := net.SplitHostPort(r.Redis)
		if err != nil {
			return nil, err
		}
		listen := net.JoinHostPort(host, strconv.Itoa(18140+r.N))
		args := []string{"--listen", listen, "--admin-listen", adminAddr(listen), "--data", filepath.Join(s.work, fmt.Sprintf("%s-r%d", ks, r.N)),
			"--cassandra", r.Cassandra, "--cassandra-dc", r.DC, "--cassandra-replication", strings.Join(repl, ","), "--keyspace", ks,
			"--redis", r.Redis, "--redis-prefix", ks, "--region", strconv.Itoa(r.N), "--refresh-every", geoRefresh.String(),
			"--secret", "bench-secret-0123456789", "--node", fmt.Sprintf("r%d", r.N), "--log-level", "warn"}
		var dcs []string
		for _, o := range regions {
			if o.N == r.N {
				continue
			}
			dcs = append(dcs, fmt.Sprintf("%d=%s", o.N, o.DC))
			if link != nil {
				args = append(args, "--remote-region", fmt.Sprintf("%d=%s", o.N, link.Addr(o.N)))
			}
		}
		args = append(args, "--region-dcs", strings.Join(dcs, ","))
		p, err := StartProc(ctx, s.work, fmt.Sprintf("%s-r%d", ks, r.N), "http://"+listen, "/readyz", s.cfg.Groupcastd, args...)
		if err != nil {
			stopAll(procs)
			return nil, err
		}
		p.Admin = "http://" + adminAddr(listen)
		procs = append(procs, p)
	}
	return procs, nil
}

// geo runs the geo scenario on the first two regions: with replication
// over a link of GeoOneWay each way, edits and messages from region 1 to
// region 2; then, on fresh nodes without replication, the edits again.
func (s *suite) geo(ctx context.Context, p geoPlan, res *Results) error {
	if len(s.cfg.Regions) < 2 {
		res.Notes = append(res.Notes, "geo skipped: two regions needed (scripts/infra up --regions 2, then groupcast bench suite --region N=CASSANDRA,DC,REDIS for each)")
		return nil
	}
	regions := slices.SortedFunc(slices.Values(s.cfg.Regions), func(a, b Region) int { return a.N - b.N })[:2]
	g := &GeoResult{OneWay: GeoOneWay, Refresh: geoRefresh}
	res.Geo = g
	link, err := startWAN(regions, GeoOneWay)
	if err != nil {
		return err
	}
	defer link.Close()
	s.prog.Scenario(fmt.Sprintf("geo: a node per region, replicating over %v each way", GeoOneWay), "", nil)
	nodes, err := s.startRegions(ctx, regions, link)
	if err != nil {
		return err
	}
	// Each sample starts with the link idle: at least a round trip after
	// the last (so a replicator's next read is parked again), plus up to
	// as much at random. Region 2 is read every millisecond: reading it
	// back to back kept a core busy and, on 2 cores, lengthened the
	// replication it measured (p99 54–143 ms vs. 43–50 ms, p50 1 ms lower,
	// in 4 alternating rounds of 40 edits).
	cfg := GeoConfig{R1: nodes[0].URL, R2: nodes[1].URL, Account: "bench", Samples: p.edits, Floor: GeoOneWay,
		Idle: 2 * GeoOneWay, Jitter: 2 * GeoOneWay, Poll: time.Millisecond, Warm: geoWarm, Progress: s.prog, Name: "geo: edits region 1 → 2"}
	var errs []error
	g.LoadBefore = loadAvg()
	if g.Edit, g.EditEarly, err = GeoEdits(ctx, cfg); err != nil {
		errs = append(errs, fmt.Errorf("edits: %w", err))
	}
	cfg.Samples, cfg.Name = p.messages, "geo: messages region 1 → 2"
	m, err := GeoMessages(ctx, cfg)
	g.Message, g.MessageAcked, g.MessageDuplicates = m.Sent, m.Acked, m.Duplicates
	if err != nil {
		errs = append(errs, fmt.Errorf("messages: %w", err))
	}
	cfg.Samples, cfg.Jitter, cfg.Name, cfg.Warm, g.QuietGap = p.quiet, geoQuietGap, "geo: messages region 1 → 2, quiet link", 0, geoQuietGap
	m, err = GeoMessages(ctx, cfg)
	g.MessageQuiet, g.MessageDuplicates = m.Sent, g.MessageDuplicates+m.Duplicates
	if err != nil {
		errs = append(errs, fmt.Errorf("messages on a quiet link: %w", err))
	}
	g.LoadAfter = loadAvg()
	for i, n := range nodes { // evidence beside the report: how each node served the run
		if err := saveMetrics(n.Admin, filepath.Join(filepath.Dir(s.work), fmt.Sprintf("geo-region%d.metrics", regions[i].N))); err != nil {
			errs = append(errs, fmt.Errorf("region %d metrics: %w", regions[i].N, err))
		}
	}
	if g.Replicated, err = scrapeSum(nodes[1].Admin, "groupcast_replicated_entries_total"); err != nil {
		errs = append(errs, fmt.Errorf("region 2 metrics: %w", err))
	}
	stopAll(nodes)
	if len(errs) > 0 || ctx.Err() != nil {
		return errors.Join(append(errs, ctx.Err())...)
	}

	s.prog.Scenario(fmt.Sprintf("geo baseline: no replication, %v refresh", geoRefresh), "", nil)
	if nodes, err = s.startRegions(ctx, regions, nil); err != nil {
		return fmt.Errorf("baseline: %w", err)
	}
	defer stopAll(nodes)
	// Each sample starts at a random point of the refresh round.
	g.Baseline, _, err = GeoEdits(ctx, GeoConfig{R1: nodes[0].URL, R2: nodes[1].URL, Account: "bench", Samples: p.baseline,
		Timeout: geoRefresh + 10*time.Second, Jitter: geoRefresh, Poll: 10 * time.Millisecond, Keep: true,
		Progress: s.prog, Name: "geo baseline: edits region 1 → 2"})
	if err != nil {
		return fmt.Errorf("baseline: %w", err)
	}
	return nil
}

// loadAvg is the machine's load averages over 1, 5 and 15 minutes; empty
// where /proc/loadavg is not.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return ""
}

// saveMetrics writes the node's groupcast_ samples, histogram buckets
// left out, to file; admin is the base URL of its admin listener.
func saveMetrics(admin, file string) error {
	resp, err := http.Get(admin + "/metrics")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var out strings.Builder
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, "groupcast_") && !strings.Contains(line, "_bucket{") {
			out.WriteString(line + "\n")
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return os.WriteFile(file, []byte(out.String()), 0o644)
}

// scrapeSum adds up every sample of a metric (all its label sets) on the
// node's /metrics (admin is the base URL of its admin listener); 0 if it
// has none.
func scrapeSum(admin, name string) (float64, error) {
	resp, err := http.Get(admin + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok || (rest != "" && rest[0] != '{' && rest[0] != ' ') {
			continue
		}
		if v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64); err == nil {
			sum += v
		}
	}
	return sum, sc.Err()
}

func geoChecks(g *GeoResult) []Check {
	type measured struct {
		what   string
		l      Latencies
		target float64
	}
	all := []measured{
		{"geo: edit in region 1 → listed in region 2, p99 − one-way", g.Edit, targetGeoEditOverUS},
		{"geo: message published in region 1 → region-2 subscriber, p99 − one-way", g.Message, targetGeoMessageOverUS},
	}
	if g.QuietGap > 0 {
		all = append(all, measured{fmt.Sprintf("geo: the same on a quiet link (messages up to %v apart), p99 − one-way", g.QuietGap), g.MessageQuiet, targetGeoMessageOverUS})
	}
	var cs []Check
	for _, m := range all {
		_, over := g.OverOneWay(m.l)
		fig := fmt.Sprintf("%+.2f ms (p99 %s over %v; %d samples, %d timed out)", over/1000, ms(m.l.P99), g.OneWay, m.l.Count, m.l.Errors)
		cs = append(cs, Check{m.what, fig, fmt.Sprintf("≤ +%.0f ms", m.target/1000), m.l.Count > 0 && m.l.Errors == 0 && over <= m.target})
	}
	return cs
}

func geoReport(b *strings.Builder, g *GeoResult) {
	fmt.Fprintf(b, "\n## geo\n\nTwo regions on this machine, one groupcastd each: region 1 on Cassandra datacenter dc1 and its own Redis, region 2 on dc2 and another Redis, one keyspace replicated to both datacenters. Each node pulls the other region's shard logs (`--remote-region`) through an in-process toxiproxy that delays every byte by %v each way (%v round trip) on the link to the other region's Redis; the datacenters' own link carries no injected latency.\n\n", g.OneWay, 2*g.OneWay)
	fmt.Fprintf(b, "- **edit**: from an add returning in region 1 until a group read in region 2 without a token lists the channel (what any reader there sees). Region 2 is read every 1 ms over one connection, so the figure may overstate by up to 1 ms and one loopback read; reading back to back kept a core of this 2-CPU machine busy and lengthened the tail it measured. A subscribe parked on the group would not show an edit by itself (it re-expands without answering). Each channel is removed again and the removal awaited in region 2, unmeasured.\n")
	fmt.Fprintf(b, "- **message**: from a publish being sent in region 1 (before its own round trip, so conservative; the target is checked on this) until a long-poll subscriber of the channel's group in region 2 has it; also from the publish's answer, as the edit is from the add's. The group is made in region 2; one message is in flight.\n")
	fmt.Fprintf(b, "- The first %d edits and messages after the nodes start go unmeasured (the very first edit was seen to take up to 200 ms over the link).\n", geoWarm)
	fmt.Fprintf(b, "- Edits and messages are spaced %v plus up to %v at random, so each starts with the link idle, the replicator's next read parked at the remote Redis (back-to-back traffic can wait up to one more round trip for that read). **Quiet link**: messages spaced %v plus up to %v, so the replicator's blocking reads time out and are re-issued between two of them, as between sparse entries; its two readers take turns (reads with nothing new end at least 300 ms apart), so one of them is always parked at the remote Redis then.\n", 2*g.OneWay, 2*g.OneWay, 2*g.OneWay, g.QuietGap)
	fmt.Fprintf(b, "- **baseline**: the edit again on fresh nodes without `--remote-region`, where region 2 sees region 1's edits only when it re-reads its groups from its datacenter every %v (`--refresh-every`, the default); each sample starts at a random point of that round and region 2 is read every 10 ms, up to %v.\n\n", g.Refresh, g.Refresh+10*time.Second)
	fmt.Fprintf(b, "| | samples | timed out | p50 | p90 | p99 | max | p50 − one-way | p99 − one-way | target (p99 − one-way) |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	row := func(name string, l Latencies, target string) {
		p50, p99 := g.OverOneWay(l)
		over50, over99 := fmt.Sprintf("%+.2f ms", p50/1000), fmt.Sprintf("%+.2f ms", p99/1000)
		if l.Count == 0 {
			over50, over99 = "–", "–"
		}
		fmt.Fprintf(b, "| %s | %d | %d | %s | %s | %s | %s | %s | %s | %s |\n", name, l.Count, l.Errors, ms(l.P50), ms(l.P90), ms(l.P99), ms(l.Max), over50, over99, target)
	}
	row("edit, replication on", g.Edit, fmt.Sprintf("≤ +%.0f ms", targetGeoEditOverUS/1000.0))
	row("message, replication on", g.Message, fmt.Sprintf("≤ +%.0f ms", targetGeoMessageOverUS/1000.0))
	if g.MessageAcked.Count > 0 {
		row("message, the same from the publish's answer", g.MessageAcked, "")
	}
	if g.QuietGap > 0 {
		row("message, replication on, quiet link", g.MessageQuiet, fmt.Sprintf("≤ +%.0f ms", targetGeoMessageOverUS/1000.0))
	}
	row(fmt.Sprintf("edit, baseline: no replication, %v refresh", g.Refresh), g.Baseline, "")
	fmt.Fprintf(b, "\nWithout replication a message published in region 1 never reaches region 2. Edits region 2 listed sooner after the add was sent than the one-way latency (so not over the link: from its datacenter): %d. Messages received twice: %d. Region 2's node counted %.0f replicated entries (`groupcast_replicated_entries_total`).", g.EditEarly, g.MessageDuplicates, g.Replicated)
	if g.Edit.Count > 0 && g.Baseline.Count > 0 {
		fmt.Fprintf(b, " Edit p50 with replication is 1/%.0f of the baseline's (%s vs. %s).", g.Baseline.P50/g.Edit.P50, ms(g.Edit.P50), ms(g.Baseline.P50))
	}
	if g.LoadBefore != "" {
		fmt.Fprintf(b, " Load average (1, 5, 15 min) as the replicated measurements began: %s; as they ended: %s (2 CPUs; other work on the machine shows in the tails).", g.LoadBefore, g.LoadAfter)
	}
	b.WriteString(" Each node's `groupcast_` metrics after the replicated measurements are in geo-region1.metrics and geo-region2.metrics beside this report.\n")
}
