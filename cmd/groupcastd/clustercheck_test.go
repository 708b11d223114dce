package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/groupcast/groupcast/channelgroups"
	"github.com/groupcast/groupcast/internal/clustercheck"
	"github.com/groupcast/groupcast/internal/testenv"
)

// clusterArgs returns node i's cluster flags; seeds holds the gossip
// address of every node started so far, seeds[i] being node i's own: it
// gossips there and joins through the first node (or, for the first node
// restarted, through the second).
func clusterArgs(i int, seeds []string) []string {
	join := seeds[0]
	if i == 0 && len(seeds) > 1 {
		join = seeds[1]
	}
	args := []string{"--gossip", seeds[i], "--replicas", "2",
		"--gossip-probe-interval", "200ms", "--gossip-probe-timeout", "100ms", "--gossip-suspicion-mult", "2"}
	if join != seeds[i] {
		args = append(args, "--join", join)
	}
	return args
}

// nodePool is the clients' current view of the cluster, as a load balancer
// health-checking /readyz would keep it.
type nodePool struct {
	mu   sync.Mutex
	urls []string
}

func (p *nodePool) nodes() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.urls)
}

func (p *nodePool) add(u string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.urls = append(p.urls, u)
}

func (p *nodePool) remove(u string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.urls = slices.DeleteFunc(p.urls, func(x string) bool { return x == u })
}

// historyCluster starts nodes that share one keyspace, one Redis key prefix
// and one secret, each with its own name, data directory and gossip address.
type historyCluster struct {
	t      *testing.T
	shared []string
	seeds  []string
}

func newHistoryCluster(t *testing.T, redisAddr string) *historyCluster {
	t.Helper()
	hosts := strings.Join(testenv.CassandraHosts(t), ",")
	return &historyCluster{t: t, shared: []string{
		"--cassandra", hosts, "--keyspace", testenv.Keyspace(t), "--redis", redisAddr,
		"--redis-prefix", fmt.Sprintf("gchist%d", time.Now().UnixNano()), "--secret", "cluster-test-secret-0123456789",
	}}
}

// startNode starts the next node.
func (c *historyCluster) startNode() *server {
	c.t.Helper()
	i := len(c.seeds)
	c.seeds = append(c.seeds, fmt.Sprintf("127.0.0.1:%d", freePort(c.t)))
	args := append(slices.Clone(c.shared), "--node", fmt.Sprintf("n%d", i+1), "--data", c.t.TempDir())
	return start(c.t, append(args, clusterArgs(i, c.seeds)...)...)
}

// restart starts s again with its arguments, on its port.
func restart(t *testing.T, s *server) *server {
	t.Helper()
	return start(t, append(slices.Clone(s.cmd.Args[1:]), "--listen", strings.TrimPrefix(s.url, "http://"))...)
}

// waitUntil waits for the schedule to reach at (pacing, not synchronising:
// the events happen at set times of the run whatever the clients do).
func waitUntil(t *testing.T, at time.Time) {
	t.Helper()
	tm := time.NewTimer(time.Until(at))
	defer tm.Stop()
	select {
	case <-t.Context().Done():
		t.Fatal(t.Context().Err())
	case <-tm.C:
	}
}

// TestClusterHistory runs the history checker (≥ 20 clients: editors with
// tokens, G3 trials, publishers and subscribers following cursors) against
// 3 groupcastd processes on real Cassandra and Redis for
// GROUPCAST_CLUSTER_SECONDS (45 s) while one node is killed with -9 and
// started again 10 s later on its port, another is stopped with SIGTERM and
// started again, and a 4th joins the clients' pool.
func TestClusterHistory(t *testing.T) {
	c := newHistoryCluster(t, testenv.RedisAddr(t))
	var nodes []*server
	for range 3 {
		nodes = append(nodes, c.startNode())
	}
	pool := &nodePool{urls: urls(nodes)}
	d := duration(t, "GROUPCAST_CLUSTER_SECONDS", 45*time.Second)
	// The node killed is the primary of the account's shard, the one
	// stopped its other owner: the faults hit the nodes that serve it.
	st := agreed(t, nodes, 3)
	owners := st.Owners[fmt.Sprint(channelgroups.ShardOf("history", channelgroups.DefaultShards))]
	index := map[string]int{}
	for i, s := range nodes {
		index[status(t, s).Self] = i
	}
	kill, term := index[owners[0]], index[owners[1]]

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan clustercheck.Result, 1)
	begin := time.Now()
	go func() {
		done <- clustercheck.Run(ctx, clustercheck.Config{Nodes: pool.nodes, Clients: 24, Duration: d, Account: "history"})
	}()

	var events []string
	event := func(format string, args ...any) {
		e := fmt.Sprintf("%.1fs ", time.Since(begin).Seconds()) + fmt.Sprintf(format, args...)
		events = append(events, e)
		t.Log(e)
	}

	// kill -9 n2 (the balancer stops sending it requests as it dies), start
	// it again 10 s later on the same port with the same flags and data.
	waitUntil(t, begin.Add(d*15/100))
	victim := nodes[kill]
	pool.remove(victim.url)
	if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	victim.cmd.Wait()
	event("kill -9 %s, the shard's primary (%s)", owners[0], victim.url)
	waitUntil(t, time.Now().Add(10*time.Second))
	nodes[kill] = restart(t, victim)
	pool.add(nodes[kill].url)
	event("%s serving again on %s", owners[0], nodes[kill].url)

	// SIGTERM the other owner (graceful: it hands its shards over and drains
	// its parked polls), then start it again.
	waitUntil(t, begin.Add(d*55/100))
	stopped := nodes[term]
	pool.remove(stopped.url)
	stopped.stop()
	event("%s stopped by SIGTERM", owners[1])
	nodes[term] = restart(t, stopped)
	pool.add(nodes[term].url)
	event("%s serving again on %s", owners[1], nodes[term].url)

	// A 4th node joins.
	waitUntil(t, begin.Add(d*70/100))
	joined := c.startNode()
	pool.add(joined.url)
	event("n4 joined on %s", joined.url)

	var res clustercheck.Result
	select {
	case res = <-done:
	case <-time.After(d + 3*time.Minute):
		t.Fatal("the checker did not finish")
	}
	event("checker done")
	fmt.Println(res)
	fmt.Printf("cluster: nodes=4 pool=%d events=[%s] first_violation=%q first_client_error=%q first_conn_error=%q\n", len(pool.nodes()), strings.Join(events, "; "), res.First, res.FirstError, res.FirstConnError)
	for _, e := range res.Examples {
		t.Log("violation: " + e)
	}
	if res.Failed() || res.Edits == 0 || res.Trials == 0 || res.Published == 0 || res.Delivered == 0 {
		t.Fatalf("%s\nfirst violation: %s\nfirst client error: %s", res, res.First, res.FirstError)
	}
}
