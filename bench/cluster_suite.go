package bench

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/groupcast/groupcast/channelgroups"
)

// clusterNode is one groupcastd of a cluster the suite started.
type clusterNode struct {
	*Proc
	Node  string // its --node name
	Debug string // base URL of its admin listener (profiler, /metrics)
}

// startCluster starts n groupcastd nodes gossiping on loopback, as n hosts
// (127.0.0.1 …), on real Cassandra and Redis in a fresh keyspace and
// prefix, with fast failure detection; it waits until every node agrees on
// a ring of all n, every member ready for it. extra are more flags for
// every node.
func (s *suite) startCluster(ctx context.Context, n, replicas int, extra ...string) ([]*clusterNode, clusterStatus, error) {
	s.seq++
	ks := fmt.Sprintf("bench_%d_%d", time.Now().Unix(), s.seq)
	var nodes []*clusterNode
	var bases, names []string
	for i := 1; i <= n; i++ {
		host := fmt.Sprintf("127.0.0.%d", i)
		listen, gossip, debug := fmt.Sprintf("%s:%d", host, 18110+i), fmt.Sprintf("%s:%d", host, 18120+i), fmt.Sprintf("%s:%d", host, 18130+i)
		name := fmt.Sprintf("n%d", i)
		args := []string{"--listen", listen, "--data", filepath.Join(s.work, fmt.Sprintf("%s-%d", ks, i)),
			"--cassandra", s.cfg.Cassandra, "--keyspace", ks, "--redis", s.cfg.Redis, "--redis-prefix", ks,
			"--secret", "bench-secret-0123456789", "--node", name, "--log-level", "warn", "--admin-listen", debug,
			"--gossip", gossip, "--replicas", fmt.Sprint(replicas), "--drain", "1s",
			"--gossip-probe-interval", "200ms", "--gossip-probe-timeout", "100ms", "--gossip-suspicion-mult", "2"}
		args = append(args, extra...)
		if i > 1 {
			args = append(args, "--join", "127.0.0.1:18121")
		}
		p, err := StartProc(ctx, s.work, fmt.Sprintf("%s-%s", ks, name), "http://"+listen, "/readyz", s.cfg.Groupcastd, args...)
		if err != nil {
			stopCluster(nodes)
			return nil, clusterStatus{}, err
		}
		nodes = append(nodes, &clusterNode{Proc: p, Node: name, Debug: "http://" + debug})
		bases, names = append(bases, p.URL), append(names, name)
	}
	st, err := waitAgreed(ctx, bases, names, 30*time.Second)
	if err != nil {
		stopCluster(nodes)
		return nil, st, err
	}
	return nodes, st, nil
}

// stopCluster stops the nodes together, so that their drains overlap.
func stopCluster(nodes []*clusterNode) {
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Go(func() { _ = n.Stop() })
	}
	wg.Wait()
}

func urlsOf(nodes []*clusterNode) []string {
	out := make([]string, len(nodes))
	for i, n := range nodes {
		out[i] = n.URL
	}
	return out
}

// measureNodes forces a GC on every node and reads its heap in use, its
// proportional set size and the shards it serves.
func measureNodes(nodes []*clusterNode) ([]NodeMemory, error) {
	out := make([]NodeMemory, len(nodes))
	for i, n := range nodes {
		for range 2 { // the second collects what the first's finalizers freed
			if err := forceGC(n.Debug); err != nil {
				return nil, err
			}
		}
		heap, err := scrape(n.Debug, "go_memstats_heap_inuse_bytes")
		if err != nil {
			return nil, err
		}
		live, err := scrape(n.Debug, "go_memstats_heap_alloc_bytes")
		if err != nil {
			return nil, err
		}
		pss, err := Pss(n.PID())
		if err != nil {
			return nil, err
		}
		shards, err := scrape(n.Debug, "groupcast_shards_serving")
		if err != nil {
			return nil, err
		}
		out[i] = NodeMemory{Node: n.Node, Heap: heap, Live: live, Pss: pss, ShardsServing: shards}
	}
	return out, nil
}

func (s *suite) clusterScenario(ctx context.Context, p clusterPlan, res *Results) error {
	res.Cluster = &ClusterResult{Shards: channelgroups.DefaultShards}
	var errs []error
	for _, n := range p.nodes {
		m, err := s.clusterMemory(ctx, p, n)
		if len(m.PerNode) > 0 {
			res.Cluster.Memory = append(res.Cluster.Memory, m)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("memory on %d node(s): %w", n, err))
		}
	}
	errs = append(errs, s.clusterForwardFailover(ctx, p, res.Cluster))
	return errors.Join(errs...)
}

// clusterMemory creates the state of p.accounts accounts on n nodes with
// one owner per shard and measures every node.
func (s *suite) clusterMemory(ctx context.Context, p clusterPlan, n int) (ClusterMemory, error) {
	m := ClusterMemory{Nodes: n, Replicas: 1, Accounts: p.accounts}
	s.prog.Scenario(fmt.Sprintf("cluster: starting %d node(s)", n), "", nil)
	// The state measured is what the node holds, not the collector's
	// policy: with the default heap floor a node of a few MiB lets garbage
	// reach 64 MiB between collections, and the long-lived state allocated
	// meanwhile spreads over more spans (heap in use after a forced GC
	// then stays near the same ~25 MiB whatever the node's share).
	nodes, _, err := s.startCluster(ctx, n, 1, "--gc-heap-floor", "0")
	if err != nil {
		return m, err
	}
	defer stopCluster(nodes)
	idle, err := measureNodes(nodes)
	if err != nil {
		return m, err
	}
	start := time.Now()
	m.Requests, m.Errors, err = CreateState(ctx, StateConfig{Nodes: urlsOf(nodes), Accounts: p.accounts, Publishes: 3, Workers: p.workers, Progress: s.prog})
	m.Seconds = time.Since(start).Seconds()
	if err != nil {
		return m, err
	}
	// Let the nodes' log consumers apply the last messages.
	if err := sleepCtx(ctx, time.Second); err != nil {
		return m, err
	}
	after, err := measureNodes(nodes)
	if err != nil {
		return m, err
	}
	for i := range after {
		after[i].IdleHeap, after[i].IdleLive, after[i].IdlePss = idle[i].Heap, idle[i].Live, idle[i].Pss
	}
	m.PerNode = after
	return m, nil
}

// clusterForwardFailover runs the forward and failover scenarios on one
// cluster of three nodes with two owners per shard.
func (s *suite) clusterForwardFailover(ctx context.Context, p clusterPlan, cr *ClusterResult) error {
	s.prog.Scenario("cluster: starting 3 nodes, 2 owners per shard", "", nil)
	nodes, st, err := s.startCluster(ctx, 3, 2)
	if err != nil {
		return err
	}
	defer stopCluster(nodes)
	names := []string{"n1", "n2", "n3"}
	byName := map[string]*clusterNode{}
	for _, n := range nodes {
		byName[n.Node] = n
	}

	account, owner, nonOwner, ok := forwardAccount(st, cr.Shards, names, "fwd")
	if !ok {
		return errors.New("forward: no account with a non-owner among 3 nodes")
	}
	s.prog.Scenario(fmt.Sprintf("cluster: forward, list via %s (owner) and %s (not)", owner, nonOwner), "", nil)
	direct, fwd, err := Forward(ctx, ForwardConfig{Owner: byName[owner].URL, NonOwner: byName[nonOwner].URL, Account: account, Samples: p.forwardSamples})
	cr.Forward = &ForwardResult{Account: account, Shard: channelgroups.ShardOf(channelgroups.Account(account), cr.Shards),
		Owner: owner, NonOwner: nonOwner, Direct: direct, Forwarded: fwd}
	if err != nil {
		return fmt.Errorf("forward: %w", err)
	}

	// n3 dies; subscribers come through n1, the publisher through n2.
	victim := "n3"
	accounts, primary, second := failoverAccounts(st, cr.Shards, victim, "fo", p.failoverSubs)
	s.prog.Scenario(fmt.Sprintf("cluster: failover, %d subscribers, kill -9 %s after %v", len(accounts), victim, p.before), "", nil)
	fo, err := Failover(ctx, FailoverConfig{
		Subscribe: byName["n1"].URL, Publish: byName["n2"].URL, Accounts: accounts, Every: 50 * time.Millisecond,
		Before: p.before, After: p.after, Kill: byName[victim].Kill,
		Gone: func(st clusterStatus) bool {
			return st.settled(slices.DeleteFunc(slices.Clone(names), func(n string) bool { return n == victim }))
		},
	})
	fo.Killed, fo.Primary, fo.Second = victim, primary, second
	if fo.Gap.Count > 0 || err == nil {
		cr.Failover = &fo
	}
	if err != nil {
		return fmt.Errorf("failover: %w", err)
	}
	return nil
}
