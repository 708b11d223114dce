package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/groupcast/groupcast/channelgroups"
	"github.com/groupcast/groupcast/channelgroups/cassandra"
	"github.com/groupcast/groupcast/internal/clustercheck"
	"github.com/groupcast/groupcast/internal/testenv"
)

// wanLatency is the one-way delay the link between the regions adds.
const wanLatency = 40 * time.Millisecond

// wanLink is the in-process toxiproxy through which one region's nodes
// reach the other region's Redis: 40 ms each way, and a switch that cuts
// it (data dropped both ways on open and new connections; the connections
// it held are closed when it heals).
type wanLink struct {
	t     *testing.T
	proxy *toxiproxy.Proxy
}

func newWANLink(t *testing.T, srv *toxiproxy.ApiServer, name, upstream string) *wanLink {
	t.Helper()
	p := toxiproxy.NewProxy(srv, name, "127.0.0.1:0", upstream)
	if err := p.Start(); err != nil {
		t.Fatalf("proxy in front of %s: %v", upstream, err)
	}
	t.Cleanup(p.Stop)
	l := &wanLink{t: t, proxy: p}
	for _, stream := range []string{"upstream", "downstream"} {
		l.toxic(fmt.Sprintf(`{"name":"wan_%s","type":"latency","stream":%q,"attributes":{"latency":%d}}`, stream, stream, wanLatency.Milliseconds()))
	}
	return l
}

func (l *wanLink) toxic(js string) {
	l.t.Helper()
	if _, err := l.proxy.Toxics.AddToxicJson(strings.NewReader(js)); err != nil {
		l.t.Fatal(err)
	}
}

func (l *wanLink) cut() {
	l.t.Helper()
	for _, stream := range []string{"upstream", "downstream"} {
		l.toxic(fmt.Sprintf(`{"name":"cut_%s","type":"timeout","stream":%q,"attributes":{"timeout":0}}`, stream, stream))
	}
}

func (l *wanLink) heal() {
	l.t.Helper()
	for _, stream := range []string{"upstream", "downstream"} {
		if err := l.proxy.Toxics.RemoveToxic(context.Background(), "cut_"+stream); err != nil {
			l.t.Fatal(err)
		}
	}
}

// geoRegion is one region of TestRegions: its servers, its gossip cluster
// of groupcastd nodes, and the clients' pool of them.
type geoRegion struct {
	t      *testing.T
	n      int
	env    testenv.RegionEnv
	shared []string // flags every node of the region gets
	seeds  []string // gossip addresses, by node
	nodes  []*server
	pool   *nodePool
	rdb    *redis.Client // its Redis, directly (for the replication check)
}

// geoSetup is what both regions share in one run: the keyspace and the
// Redis key prefix.
type geoSetup struct {
	keyspace, prefix string
}

func newGeoRegion(t *testing.T, n int, s geoSetup, link *wanLink) *geoRegion {
	t.Helper()
	env := testenv.Region(t, n)
	otherN := 3 - n
	other := testenv.Region(t, otherN)
	g := &geoRegion{t: t, n: n, env: env, pool: &nodePool{}, rdb: redis.NewClient(&redis.Options{Addr: env.Redis})}
	t.Cleanup(func() { g.rdb.Close() })
	g.shared = []string{
		"--region", fmt.Sprint(n), "--cassandra", strings.Join(env.Cassandra, ","), "--cassandra-dc", env.DC,
		"--cassandra-replication", fmt.Sprintf("%s:1,%s:1", env.DC, other.DC), "--keyspace", s.keyspace,
		"--region-dcs", fmt.Sprintf("%d=%s", otherN, other.DC),
		"--redis", env.Redis, "--redis-prefix", s.prefix, "--secret", "regions-test-secret-0123456789",
		"--remote-region", fmt.Sprintf("%d=%s", otherN, link.proxy.Listen),
		"--poll-hold", "20s",
	}
	return g
}

// startNode starts the region's next node, joining the first.
func (g *geoRegion) startNode() {
	g.t.Helper()
	i := len(g.seeds)
	g.seeds = append(g.seeds, fmt.Sprintf("127.0.0.1:%d", freePort(g.t)))
	args := append(slices.Clone(g.shared), "--node", fmt.Sprintf("r%dn%d", g.n, i+1), "--data", g.t.TempDir())
	s := start(g.t, append(args, clusterArgs(i, g.seeds)...)...)
	g.nodes = append(g.nodes, s)
	g.pool.add(s.url)
}

// primary returns the index of the node that is the primary of acct's
// shard, once the region's nodes agree on their ring.
func (g *geoRegion) primary(acct string) int {
	g.t.Helper()
	st := agreed(g.t, g.nodes, len(g.nodes))
	name := st.Owners[fmt.Sprint(channelgroups.ShardOf(channelgroups.Account(acct), channelgroups.DefaultShards))][0]
	for i, s := range g.nodes {
		if status(g.t, s).Self == name {
			return i
		}
	}
	g.t.Fatalf("region %d: no node is %s", g.n, name)
	return -1
}

// kill9 kills node i with SIGKILL (the clients' pool drops it first, as a
// health-checking balancer would as it dies) and starts it again on its
// port with its flags and data, joining through another node.
func (g *geoRegion) kill9(i int) {
	g.t.Helper()
	victim := g.nodes[i]
	g.pool.remove(victim.url)
	if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		g.t.Fatal(err)
	}
	victim.cmd.Wait()
	args := append(slices.Clone(victim.cmd.Args[1:]), "--listen", strings.TrimPrefix(victim.url, "http://"), "--join", g.seeds[(i+1)%len(g.seeds)])
	g.nodes[i] = start(g.t, args...)
	g.pool.add(g.nodes[i].url)
}

// streams reads every shard log of the region from its Redis.
func (g *geoRegion) streams(ctx context.Context, prefix string) []clustercheck.StreamEntry {
	g.t.Helper()
	var out []clustercheck.StreamEntry
	for shard := range channelgroups.DefaultShards {
		msgs, err := g.rdb.XRange(ctx, fmt.Sprintf("%s:r%d:s%d", prefix, g.n, shard), "-", "+").Result()
		if err != nil {
			g.t.Fatalf("region %d shard %d: %v", g.n, shard, err)
		}
		for _, m := range msgs {
			rec, _ := m.Values["r"].(string)
			prev, _ := m.Values["p"].(string)
			var r struct {
				K  string `json:"k"`
				Or int    `json:"or"`
				Op string `json:"op"`
			}
			if err := json.Unmarshal([]byte(rec), &r); err != nil {
				g.t.Fatalf("region %d shard %d entry %s: %v: %q", g.n, shard, m.ID, err, rec)
			}
			out = append(out, clustercheck.StreamEntry{Shard: shard, ID: m.ID, Prev: prev, Kind: r.K, Origin: r.Or, OriginPos: r.Op})
		}
	}
	return out
}

// dropKeys deletes the run's keys from the region's Redis.
func (g *geoRegion) dropKeys(prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var keys []string
	it := g.rdb.Scan(ctx, 0, prefix+":*", 1000).Iterator()
	for it.Next(ctx) {
		keys = append(keys, it.Val())
	}
	err := it.Err()
	if err == nil && len(keys) > 0 {
		err = g.rdb.Del(ctx, keys...).Err()
	}
	if err != nil {
		g.t.Errorf("region %d: deleting %s:*: %v", g.n, prefix, err)
	}
}

// storeReader reads a group as each region's Cassandra datacenter holds it
// (LOCAL_QUORUM there, through the store adapter the nodes use): the answer
// the checker's views must converge to.
func storeReader(t *testing.T, keyspace string, regions ...*geoRegion) func(context.Context, int, string, string) ([]string, error) {
	t.Helper()
	stores := map[int]*cassandra.Store{}
	for _, g := range regions {
		st, err := cassandra.New(t.Context(), cassandra.Config{Hosts: g.env.Cassandra, LocalDC: g.env.DC, Region: g.n, Keyspace: keyspace})
		if err != nil {
			t.Fatalf("region %d: %v", g.n, err)
		}
		t.Cleanup(func() { st.Close() })
		stores[g.n] = st
	}
	return func(ctx context.Context, region int, acct, group string) ([]string, error) {
		snap, err := stores[region].Read(ctx, channelgroups.Account(acct), channelgroups.Group(group))
		if err != nil {
			return nil, err
		}
		var out []string
		for _, c := range snap.Channels() {
			out = append(out, string(c))
		}
		return out, nil
	}
}

// replication checks both regions' logs, polling until nothing is missing
// (copies still on their way) or 15 s pass.
func replication(t *testing.T, prefix string, regions ...*geoRegion) clustercheck.ReplicationResult {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		logs := map[int][]clustercheck.StreamEntry{}
		for _, g := range regions {
			logs[g.n] = g.streams(t.Context(), prefix)
		}
		res := clustercheck.CheckReplication(logs)
		if res.Lost == 0 || time.Now().After(deadline) {
			return res
		}
		select {
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// TestRegions runs the two-region history checker (internal/clustercheck
// RunRegions) against 2 regions × 2 groupcastd nodes on real Cassandra (one
// datacenter per region, keyspace replicated to both) and one real Redis
// per region, each region's nodes reaching the other region's Redis
// through an in-process toxiproxy adding 40 ms each way. Three phases, one
// "regions: " report line each: steady; a 20 s partition (both links cut)
// under load, then healed; kill -9 of region 2's primary of the phase's
// shard (the node copying region 1's log into region 2's) mid-run, started
// again at once, twice. Views are compared with the group as each datacenter
// holds it, read directly. After each phase both regions' logs are read
// from Redis: every edit and message appears exactly once as a copy in the
// other region's log. Purely local operations must not fail in the first
// two phases (the third kills a node under its clients).
// GROUPCAST_REGIONS_FAULTS=1 adds a 4th phase with deliberate faults, which
// must make every figure they can reach non-zero (the checker can fail).
func TestRegions(t *testing.T) {
	setup := geoSetup{keyspace: testenv.Keyspace(t), prefix: fmt.Sprintf("gcgeo%d", time.Now().UnixNano())}
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	// to[n] is the link to region n's Redis, used by the other region.
	to := map[int]*wanLink{
		1: newWANLink(t, srv, "to-region-1", testenv.Region(t, 1).Redis),
		2: newWANLink(t, srv, "to-region-2", testenv.Region(t, 2).Redis),
	}
	r1, r2 := newGeoRegion(t, 1, setup, to[2]), newGeoRegion(t, 2, setup, to[1])
	// Runs after the nodes are stopped (cleanups run last first).
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the logs are kept for inspection under %s:* in both regions' Redis", setup.prefix)
			return
		}
		r1.dropKeys(setup.prefix)
		r2.dropKeys(setup.prefix)
	})
	begin := time.Now()
	// Region 1's first node creates the keyspace (replicated to both DCs).
	for _, g := range []*geoRegion{r1, r2} {
		for range 2 {
			g.startNode()
		}
	}
	t.Logf("4 nodes serving after %v", time.Since(begin).Round(100*time.Millisecond))
	pools := []func() []string{r1.pool.nodes, r2.pool.nodes}
	stored := storeReader(t, setup.keyspace, r1, r2)

	type phase struct {
		name     string
		duration time.Duration
		during   func(start time.Time) // faults at set times of the run
		local    bool                  // local_failures must be 0
	}
	phases := []phase{
		{name: "steady", duration: 15 * time.Second, local: true},
		{name: "partition", duration: 40 * time.Second, local: true, during: func(start time.Time) {
			waitUntil(t, start.Add(8*time.Second))
			to[1].cut()
			to[2].cut()
			t.Logf("partition: both links cut at %.1fs", time.Since(start).Seconds())
			waitUntil(t, start.Add(28*time.Second))
			to[1].heal()
			to[2].heal()
			t.Logf("partition: healed at %.1fs", time.Since(start).Seconds())
		}},
		// Twice, each time as a G3 trial starts (one every 500 ms) and
		// publishes in region 2.
		{name: "kill", duration: 20 * time.Second, during: func(start time.Time) {
			for _, at := range []time.Duration{6 * time.Second, 12500 * time.Millisecond} {
				i := r2.primary("geo-kill")
				waitUntil(t, start.Add(at))
				r2.kill9(i)
				t.Logf("kill: region 2's primary of the shard (node %d) killed with -9 at %v and serving again at %.1fs", i+1, at, time.Since(start).Seconds())
			}
		}},
	}
	for _, ph := range phases {
		res, repl := runGeoPhase(t, "geo-"+ph.name, clustercheck.RegionsConfig{Regions: pools, Account: "geo-" + ph.name, Duration: ph.duration, Stored: stored}, ph.during, setup.prefix, r1, r2)
		fmt.Printf("regions: phase=%s %s %s\n", ph.name, res, repl)
		for _, e := range append(res.Examples, repl.Examples...) {
			t.Log("violation: " + e)
		}
		if res.Failed() || repl.Lost+repl.Twice > 0 || (ph.local && res.LocalFailures > 0) || res.Edits == 0 || res.Trials == 0 || res.Published == 0 || res.CrossPublishes == 0 || res.Delivered == 0 {
			t.Errorf("phase %s: %s %s\nfirst violation: %s\nfirst client error: %s\nfirst connection error: %s", ph.name, res, repl, cmp.Or(res.First, repl.First), res.FirstError, res.FirstConnError)
		}
	}
	if os.Getenv("GROUPCAST_REGIONS_FAULTS") == "" {
		return
	}
	geoFaults(t, pools, stored, setup.prefix, to, r1, r2)
}

// runGeoPhase runs the checker with cfg while during (if any) injects the
// phase's faults, then checks both regions' logs.
func runGeoPhase(t *testing.T, name string, cfg clustercheck.RegionsConfig, during func(time.Time), prefix string, regions ...*geoRegion) (clustercheck.RegionsResult, clustercheck.ReplicationResult) {
	t.Helper()
	done := make(chan clustercheck.RegionsResult, 1)
	start := time.Now()
	go func() { done <- clustercheck.RunRegions(t.Context(), cfg) }()
	if during != nil {
		during(start)
	}
	var res clustercheck.RegionsResult
	select {
	case res = <-done:
	case <-time.After(cfg.Duration + 5*time.Minute):
		t.Fatalf("%s: the checker did not finish", name)
	}
	t.Logf("%s: checker done after %v", name, time.Since(start).Round(100*time.Millisecond))
	return res, replication(t, prefix, regions...)
}

// geoFaults runs the checker once more with deliberate faults and expects
// each figure it can reach to be non-zero: the link region 2 pulls region
// 1's log through stays cut (lost, g3_missed, views_diverged, and
// replicated_lost for region 1's entries), an edit Cassandra never saw is
// appended to region 2's log before the final reads (views_diverged), the
// clients drop their tokens
// on cross-region reads and G3 publishes (ryw_violations, g3_missed,
// g3_leaked), a copied message is appended a second time to region 1's log
// mid-run (replicated_twice; duplicated if the nodes deliver it again).
// retry_after_missing and local_failures are shown able to fail by
// clustercheck's unit tests: no deliberate fault from outside makes a node
// answer 503 without Retry-After.
func geoFaults(t *testing.T, pools []func() []string, stored func(context.Context, int, string, string) ([]string, error), prefix string, to map[int]*wanLink, r1, r2 *geoRegion) {
	const acct = "geo-faults"
	to[1].cut()
	defer to[1].heal()
	key := fmt.Sprintf("%s:r1:s%d", prefix, channelgroups.ShardOf(acct, channelgroups.DefaultShards))
	// Before the final reads, an edit Cassandra never saw, in region 2's
	// log (region 1 copies it): the nodes' overlays hold it, waiting for
	// storage to confirm it.
	bogus := func() {
		rec := fmt.Sprintf(`{"k":"e","a":%q,"g":"ed0","o":1,"c":["bogus"],"t":%d,"hk":true}`, acct, time.Now().UnixMicro()*10)
		key2 := fmt.Sprintf("%s:r2:s%d", prefix, channelgroups.ShardOf(acct, channelgroups.DefaultShards))
		if err := r2.rdb.Eval(t.Context(), appendLua, []string{key2}, 100000, rec).Err(); err != nil {
			t.Error(err)
		}
		t.Logf("faults: appended to %s an edit Cassandra never saw: %s", key2, rec)
	}
	res, repl := runGeoPhase(t, "faults", clustercheck.RegionsConfig{Regions: pools, Account: acct, Duration: 15 * time.Second, Drain: 15 * time.Second, IgnoreTokens: true, BeforeCheck: bogus, Stored: stored}, func(start time.Time) {
		waitUntil(t, start.Add(8*time.Second))
		// A copy of a region 2 message, appended again as the nodes append.
		msgs, err := r1.rdb.XRevRange(t.Context(), key, "+", "-").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			rec, _ := m.Values["r"].(string)
			if strings.Contains(rec, `"k":"m"`) && strings.Contains(rec, `"or":2`) && strings.Contains(rec, `"a":"`+acct+`"`) && strings.Contains(rec, `"ch":"p`) {
				if err := r1.rdb.Eval(t.Context(), appendLua, []string{key}, 100000, rec).Err(); err != nil {
					t.Fatal(err)
				}
				t.Logf("faults: appended again to %s the copy %s: %s", key, m.ID, rec)
				return
			}
		}
		t.Errorf("faults: no copy of a region 2 message in %s to duplicate", key)
	}, prefix, r1, r2)
	fmt.Printf("regions: phase=faults %s %s\n", res, repl)
	for _, e := range append(res.Examples, repl.Examples...) {
		t.Log("violation: " + e)
	}
	for name, v := range map[string]int{"views_diverged": res.ViewsDiverged, "ryw_violations": res.RYWViolations, "g3_missed": res.G3Missed,
		"g3_leaked": res.G3Leaked, "lost": res.Lost, "replicated_lost": repl.Lost, "replicated_twice": repl.Twice} {
		if v == 0 {
			t.Errorf("faults: %s=0; want the deliberate faults seen", name)
		}
	}
}

// appendLua is redislog's append (a record linked to the entry before it).
const appendLua = `
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local prev = '0-0'
if #last > 0 then prev = last[1][1] end
return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'r', ARGV[2], 'p', prev)
`
