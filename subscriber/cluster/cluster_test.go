package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testShards is the number of shards of the test clusters.
const testShards = 64

// node is one member of a test cluster.
type node struct {
	*Cluster
	reg   *prometheus.Registry
	clock *fakeClock
}

// fakeClock is a clock a test moves by hand.
type fakeClock struct{ offset atomic.Int64 }

func (c *fakeClock) now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *fakeClock) advance(d time.Duration) { c.offset.Add(int64(d)) }

// fastConfig returns a config whose failure detection takes about a
// second on loopback.
func fastConfig(name string) Config {
	return Config{
		Name:           name,
		BindAddr:       "127.0.0.1:0",
		HTTPAddr:       "127.0.0.1:8080",
		Shards:         testShards,
		ProbeInterval:  200 * time.Millisecond,
		ProbeTimeout:   100 * time.Millisecond,
		SuspicionMult:  2,
		GossipInterval: 50 * time.Millisecond,
	}
}

// startNodes starts n nodes named node-1… and joins them through the first.
func startNodes(t *testing.T, n int) []*node {
	t.Helper()
	nodes := make([]*node, n)
	for i := range nodes {
		name := fmt.Sprintf("node-%d", i+1)
		cfg := fastConfig(name)
		cfg.HTTPAddr = fmt.Sprintf("127.0.0.%d:8080", i+1)
		if i > 0 {
			cfg.Join = []string{nodes[0].GossipAddr()}
		}
		nd := &node{reg: prometheus.NewRegistry(), clock: &fakeClock{}}
		cfg.Registerer = nd.reg
		cfg.Now = nd.clock.now
		c, err := New(cfg)
		if err != nil {
			t.Fatalf("New(%s): %v", name, err)
		}
		t.Cleanup(func() {
			if err := c.Shutdown(); err != nil {
				t.Errorf("Shutdown(%s): %v", name, err)
			}
		})
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		err = c.Join(ctx)
		cancel()
		if err != nil {
			t.Fatalf("Join(%s): %v", name, err)
		}
		nd.Cluster = c
		nodes[i] = nd
	}
	return nodes
}

// eventually polls cond until it returns nil, failing the test with its
// last error if that takes more than ten seconds.
func eventually(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		select {
		case <-deadline.C:
			t.Fatalf("%s: %v", what, err)
		case <-tick.C:
		}
	}
}

// agree reports whether every node's ring is over exactly want.
func agree(nodes []*node, want ...string) error {
	ring := NewRing(want, testShards, 2)
	for _, n := range nodes {
		got := n.Ring()
		if !slices.Equal(got.Nodes(), ring.Nodes()) {
			return fmt.Errorf("%s: got ring over %v, want %v", n.Self(), got.Nodes(), ring.Nodes())
		}
		if got.Version() != ring.Version() {
			return fmt.Errorf("%s: got ring version %d, want %d", n.Self(), got.Version(), ring.Version())
		}
	}
	return nil
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestClusterAgrees(t *testing.T) {
	nodes := startNodes(t, 3)
	eventually(t, "rings agree", func() error { return agree(nodes, "node-1", "node-2", "node-3") })

	want := NewRing(names(3), testShards, 2)
	owned := 0
	for _, n := range nodes {
		a := n.Assignment()
		if a.Version != want.Version() {
			t.Errorf("%s: got assignment version %d, want %d", n.Self(), a.Version, want.Version())
		}
		for s := range testShards {
			if a.Owns(s) != slices.Contains(want.Owners(s), n.Self()) || a.IsPrimary(s) != (want.Primary(s) == n.Self()) {
				t.Fatalf("%s: shard %d: got owned %t primary %t, want owners %v", n.Self(), s, a.Owns(s), a.IsPrimary(s), want.Owners(s))
			}
		}
		owned += a.Count()
		if got := gauge(t, n.reg, "groupcast_cluster_shards_owned", ""); got != float64(a.Count()) {
			t.Errorf("%s: got shards_owned %v, want %d", n.Self(), got, a.Count())
		}
		if got := gauge(t, n.reg, "groupcast_cluster_members", "active"); got != 3 {
			t.Errorf("%s: got %v active members, want 3", n.Self(), got)
		}
	}
	if owned != 2*testShards {
		t.Errorf("got %d shard ownerships, want %d", owned, 2*testShards)
	}

	// Every node sees every other's metadata, well under memberlist's cap.
	for _, n := range nodes {
		for _, m := range n.ml.Members() {
			if len(m.Meta) >= 256 {
				t.Errorf("%s: got %d bytes of metadata from %s, want well under 512", n.Self(), len(m.Meta), m.Name)
			}
		}
		st := n.Status()
		if len(st.Members) != 3 {
			t.Fatalf("%s: got members %+v, want 3", n.Self(), st.Members)
		}
		for i, m := range st.Members {
			if want := fmt.Sprintf("127.0.0.%d:8080", i+1); m.HTTP != want || m.Region != 1 || m.State != Active {
				t.Errorf("%s: got member %+v, want http %s, region 1, active", n.Self(), m, want)
			}
		}
	}
}

func TestClusterCrash(t *testing.T) {
	nodes := startNodes(t, 3)
	eventually(t, "rings agree", func() error { return agree(nodes, "node-1", "node-2", "node-3") })
	changed := nodes[0].Changed()
	before := nodes[0].Assignment()
	movedBefore := counter(t, nodes[0].reg, "groupcast_cluster_shards_moved_total")
	changesBefore := counter(t, nodes[0].reg, "groupcast_cluster_ring_changes_total")

	// Shut down without Leave: the others find out by probing.
	if err := nodes[2].Shutdown(); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	eventually(t, "survivors agree", func() error { return agree(nodes[:2], "node-1", "node-2") })
	if !closed(changed) {
		t.Fatalf("got Changed still open after the ring changed, want closed")
	}
	after := nodes[0].Assignment()
	if after.Version == before.Version {
		t.Errorf("got assignment version %d after the crash, want a new one", after.Version)
	}
	if got := after.Count(); got != testShards {
		t.Errorf("got node-1 owning %d shards of 2 nodes with 2 replicas, want all %d", got, testShards)
	}
	if got, want := counter(t, nodes[0].reg, "groupcast_cluster_shards_moved_total")-movedBefore, float64(testShards-before.Count()); got != want {
		t.Errorf("got shards_moved %v, want %v", got, want)
	}
	if got := counter(t, nodes[0].reg, "groupcast_cluster_ring_changes_total") - changesBefore; got < 1 {
		t.Errorf("got %v more ring changes, want at least 1", got)
	}
}

func TestClusterLeave(t *testing.T) {
	nodes := startNodes(t, 3)
	eventually(t, "rings agree", func() error { return agree(nodes, "node-1", "node-2", "node-3") })
	if err := nodes[2].Leave(5 * time.Second); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	if err := nodes[2].Leave(5 * time.Second); err != nil {
		t.Fatalf("second Leave: %v", err)
	}
	eventually(t, "the others agree", func() error { return agree(nodes[:2], "node-1", "node-2") })
	if err := nodes[2].Shutdown(); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := nodes[2].Shutdown(); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
	if err := nodes[2].Leave(time.Second); err != nil {
		t.Fatalf("Leave after Shutdown: %v", err)
	}
}

func TestClusterDrainAndHandover(t *testing.T) {
	nodes := startNodes(t, 3)
	eventually(t, "rings agree", func() error { return agree(nodes, "node-1", "node-2", "node-3") })
	drainer, others := nodes[0], nodes[1:]
	for _, n := range nodes {
		n.Ready(n.Assignment().Version)
	}
	frozen := drainer.Assignment()
	changed := drainer.Changed()
	var owned int // a shard node-1 owns, which it must forward once draining
	for owned = range testShards {
		if frozen.Owns(owned) {
			break
		}
	}

	drainer.SetDraining()
	if got := drainer.Route(owned, false); got == nil {
		t.Errorf("draining: got Route(%d) nil, want its new owners", owned)
	}
	if err := agree(nodes[:1], "node-2", "node-3"); err != nil {
		t.Errorf("draining node: %v", err)
	}
	eventually(t, "the others leave node-1 out", func() error { return agree(others, "node-2", "node-3") })
	if got := drainer.Assignment(); got != frozen {
		t.Errorf("got assignment %+v while draining, want the frozen %+v", got, frozen)
	}
	if closed(changed) {
		t.Errorf("got Changed closed while draining, want the assignment frozen")
	}
	for _, n := range others {
		if m := member(n.Status(), "node-1"); m.State != Draining {
			t.Errorf("%s: got node-1 %+v, want draining", n.Self(), m)
		}
	}

	// Nobody is ready for the ring without node-1 yet.
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	err := drainer.WaitHandover(ctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitHandover before the others are ready: got %v, want %v", err, context.DeadlineExceeded)
	}

	others[0].Ready(others[0].Assignment().Version)
	eventually(t, "node-1 sees node-2 ready", func() error {
		if m := member(drainer.Status(), "node-2"); m.ReadyVersion != others[0].Assignment().Version {
			return fmt.Errorf("got node-2 %+v, want ready for %d", m, others[0].Assignment().Version)
		}
		return nil
	})
	ctx, cancel = context.WithTimeout(t.Context(), 300*time.Millisecond)
	err = drainer.WaitHandover(ctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitHandover with node-3 not ready: got %v, want %v", err, context.DeadlineExceeded)
	}

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		done <- drainer.WaitHandover(ctx)
	}()
	others[1].Ready(others[1].Assignment().Version)
	if err := <-done; err != nil {
		t.Fatalf("WaitHandover: %v", err)
	}
	want := NewRing([]string{"node-2", "node-3"}, testShards, 2).Version()
	for _, m := range drainer.Status().Members {
		if m.Node != "node-1" && m.ReadyVersion != want {
			t.Errorf("got %s ready for %d, want %d", m.Node, m.ReadyVersion, want)
		}
	}
}

func member(s Status, name string) Member {
	for _, m := range s.Members {
		if m.Node == name {
			return m
		}
	}
	return Member{}
}

// gauge returns the value of the named gauge (with the given state label,
// if any) in reg.
func gauge(t *testing.T, reg *prometheus.Registry, name, state string) float64 {
	t.Helper()
	m := metric(t, reg, name, state)
	return m.GetGauge().GetValue()
}

func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	return metric(t, reg, name, "").GetCounter().GetValue()
}

func metric(t *testing.T, reg *prometheus.Registry, name, state string) *dto.Metric {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if state == "" || slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool { return l.GetValue() == state }) {
				return m
			}
		}
	}
	t.Fatalf("got no metric %s{state=%q}", name, state)
	return nil
}
