package bench

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/groupcast/groupcast/channelgroups"
)

func TestLongestGap(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	from, to, kill := at(0), at(10_000), at(1000)
	for _, tc := range []struct {
		name     string
		arrivals []time.Time
		gap      time.Duration
		silent   bool
	}{
		{"steady", []time.Time{at(50), at(100), at(9950), at(10_000)}, 9850 * time.Millisecond, false},
		{"gap at the kill", []time.Time{at(900), at(950), at(2950), at(3000), at(9990)}, 6990 * time.Millisecond, false},
		{"nothing at all", nil, 10 * time.Second, true},
		{"nothing after the kill", []time.Time{at(500), at(999)}, 9001 * time.Millisecond, true},
		{"outside the window ignored", []time.Time{at(-500), at(5000), at(12_000)}, 5 * time.Second, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gap, silent := longestGap(tc.arrivals, from, to, kill)
			if gap != tc.gap || silent != tc.silent {
				t.Errorf("longestGap = %v, %v; want %v, %v", gap, silent, tc.gap, tc.silent)
			}
		})
	}
}

// status builds a /cluster view of three members on ring version v, each
// ready for ready[i], with shard s owned by owners(s).
func status(v uint64, ready []uint64, owners func(int) []string) clusterStatus {
	st := clusterStatus{Self: "n1", RingVersion: v, Replicas: 2, Owners: map[string][]string{}}
	for i, r := range ready {
		st.Members = append(st.Members, struct {
			Node         string `json:"node"`
			HTTP         string `json:"http"`
			State        string `json:"state"`
			ReadyVersion uint64 `json:"ready_version"`
		}{Node: "n" + strconv.Itoa(i+1), State: "active", ReadyVersion: r})
	}
	for s := range channelgroups.DefaultShards {
		st.Owners[strconv.Itoa(s)] = owners(s)
	}
	return st
}

func TestAgreed(t *testing.T) {
	names := []string{"n1", "n2", "n3"}
	rotate := func(s int) []string { return []string{names[s%3], names[(s+1)%3]} }
	ok := status(7, []uint64{7, 7, 7}, rotate)
	for _, tc := range []struct {
		name  string
		views []clusterStatus
		names []string
		want  bool
	}{
		{"all ready on one ring", []clusterStatus{ok, ok, ok}, names, true},
		{"a member not ready", []clusterStatus{ok, status(7, []uint64{7, 6, 7}, rotate), ok}, names, false},
		{"rings differ", []clusterStatus{ok, status(8, []uint64{8, 8, 8}, rotate)}, names, false},
		{"a member missing", []clusterStatus{status(7, []uint64{7, 7}, rotate)}, names, false},
		{"an extra member", []clusterStatus{ok}, names[:2], false},
		{"no views", nil, names, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := agreed(tc.views, tc.names); got != tc.want {
				t.Errorf("agreed = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestPickAccounts(t *testing.T) {
	names := []string{"n1", "n2", "n3"}
	st := status(1, []uint64{1, 1, 1}, func(s int) []string { return []string{names[s%3], names[(s+1)%3]} })
	accounts, primary, second := failoverAccounts(st, channelgroups.DefaultShards, "n3", "fo", 9)
	if len(accounts) != 9 || primary != 5 || second != 4 {
		t.Fatalf("failoverAccounts = %v, %d primary, %d second; want 9: 5, 4", accounts, primary, second)
	}
	for i, a := range accounts {
		owners := st.owners(a, channelgroups.DefaultShards)
		if want := "n3"; (i < 5 && owners[0] != want && owners[1] != want) || !strings.HasPrefix(a, "fo") {
			t.Errorf("account %s: owners %v, want n3 among them", a, owners)
		}
	}
	a, owner, non, ok := forwardAccount(st, channelgroups.DefaultShards, names, "fwd")
	owners := st.owners(a, channelgroups.DefaultShards)
	if !ok || owner != owners[0] || non == owners[0] || non == owners[1] {
		t.Errorf("forwardAccount = %s, %s, %s, %v; owners %v", a, owner, non, ok, owners)
	}
}

// TestClusterReport checks the cluster rows: the ratio against 1/N, the
// added forward latency and the failover gap, each met or missed.
func TestClusterReport(t *testing.T) {
	node := func(name string, shards, idle, heap float64) NodeMemory {
		return NodeMemory{Node: name, ShardsServing: shards, IdleHeap: idle * (1 << 20), Heap: heap * (1 << 20)}
	}
	c := &ClusterResult{Shards: 64, Memory: []ClusterMemory{
		{Nodes: 1, Replicas: 1, Accounts: 100, PerNode: []NodeMemory{node("n1", 64, 10, 50)}},                                                 // 40 MiB of state
		{Nodes: 2, Replicas: 1, Accounts: 100, PerNode: []NodeMemory{node("n1", 30, 10, 29), node("n2", 34, 10, 31)}},                         // 19, 21: mean 0.5×
		{Nodes: 3, Replicas: 1, Accounts: 100, PerNode: []NodeMemory{node("n1", 20, 10, 30), node("n2", 22, 10, 30), node("n3", 22, 10, 30)}}, // 0.5× > 1.25/3
	}}
	c.Forward = &ForwardResult{Owner: "n1", NonOwner: "n3", Direct: Latencies{Count: 10, P50: 200, P99: 400}, Forwarded: Latencies{Count: 10, P50: 300, P99: 700}}
	c.Failover = &FailoverResult{Subscribers: 10, Killed: "n3", Gap: Latencies{Count: 10, P50: 900_000, P99: 2_500_000, Max: 2_500_000}, Unavailable: 4}
	if mean, largest, ok := c.StateRatio(2); !ok || mean != 0.5 || largest != 21.0/40 {
		t.Errorf("StateRatio(2) = %v, %v, %v; want 0.5, 0.525, true", mean, largest, ok)
	}
	r := &Results{Cluster: c}
	r.Checks = checks(r)
	want := map[string]bool{
		"cluster N=2 (replicas 1): heap state per node vs. 1 node":                true,
		"cluster N=3 (replicas 1): heap state per node vs. 1 node":                false,
		"cluster: list via a non-owner (one forward) vs. via an owner, added p99": true, // +0.3 ms
		"cluster: failover gap p99, kill -9 of an owner (10 subscribers)":         true,
	}
	if len(r.Checks) != len(want) {
		t.Fatalf("checks: %+v", r.Checks)
	}
	for _, ck := range r.Checks {
		if met, ok := want[ck.What]; !ok || met != ck.Met {
			t.Errorf("check %q (%s) met=%v, want %v (known: %v)", ck.What, ck.Figure, ck.Met, met, ok)
		}
	}
	rep := Report(r, nil)
	for _, s := range []string{
		"## Targets: 3 of 4 met",
		"| cluster N=3 (replicas 1): heap state per node vs. 1 node | mean 0.50×, largest node 0.50× (1/N = 0.33; 40.0 MiB of 100 accounts on 1 node) | ≤ 0.42× (1.25/N) | **MISSED** |",
		"| 2 | n2 | 34 | 10.0 MiB | 31.0 MiB | 21.0 MiB | 0.53 |",
		"+0.30 ms (p50 +0.10 ms; 0.70 ms vs. 0.40 ms p99)",
		"2.50 s (p50 0.90 s, max 2.50 s; 0 silent; 4 publishes 503)",
		"**--replicas 1**",
	} {
		if !strings.Contains(rep, s) {
			t.Errorf("report lacks %q:\n%s", s, rep)
		}
	}
}
