package main

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/groupcast/groupcast/channelgroups"
	"github.com/groupcast/groupcast/internal/testenv"
	membership "github.com/groupcast/groupcast/subscriber/cluster"
)

// gossipArgs are the flags of a cluster node on loopback: gossip on its own
// port, the first node's as the seed, failure detection in about a second.
func gossipArgs(t *testing.T, seed string) (gossip string, args []string) {
	gossip = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	args = []string{"--gossip", gossip, "--replicas", "2",
		"--gossip-probe-interval", "200ms", "--gossip-probe-timeout", "100ms", "--gossip-suspicion-mult", "2"}
	if seed != "" {
		args = append(args, "--join", seed)
	}
	return gossip, args
}

// gossipCluster starts n nodes that find each other through memberlist.
func gossipCluster(t *testing.T, n int, extra ...string) []*server {
	t.Helper()
	hosts := strings.Join(testenv.CassandraHosts(t), ",")
	shared := []string{"--cassandra", hosts, "--keyspace", testenv.Keyspace(t), "--redis", testenv.RedisAddr(t),
		"--redis-prefix", fmt.Sprintf("gcgossip%d", time.Now().UnixNano()), "--secret", "cluster-test-secret-0123456789"}
	var nodes []*server
	seed := ""
	for i := range n {
		g, args := gossipArgs(t, seed)
		if seed == "" {
			seed = g
		}
		args = append(append(args, shared...), "--node", fmt.Sprintf("n%d", i+1), "--data", t.TempDir())
		nodes = append(nodes, start(t, append(args, extra...)...))
	}
	return nodes
}

func status(t *testing.T, s *server) membership.Status {
	t.Helper()
	var st membership.Status
	if err := getBody(t.Context(), http.DefaultClient, s.url+"/cluster", &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// agreed waits until every node shows the same ring of want members, each
// ready for it, and returns that view.
func agreed(t *testing.T, nodes []*server, want int) membership.Status {
	t.Helper()
	var first membership.Status
	eventually(t, 20*time.Second, fmt.Sprintf("%d nodes agree on a ring of %d", len(nodes), want), func() bool {
		first = status(t, nodes[0])
		if len(first.Members) != want {
			return false
		}
		for _, m := range first.Members {
			if m.ReadyVersion != first.RingVersion {
				return false
			}
		}
		for _, s := range nodes[1:] {
			st := status(t, s)
			if st.RingVersion != first.RingVersion || fmt.Sprint(st.Owners) != fmt.Sprint(first.Owners) {
				return false
			}
		}
		return true
	})
	return first
}

// TestGossipCluster: three real groupcastd processes on real Cassandra and
// Redis, joined with --join, agree on one ring; each follows only the logs
// of the shards it owns (about 64·2/3, not 64); a request sent to a node
// that does not own the account's shard is forwarded and answered as the
// owner answers it.
func TestGossipCluster(t *testing.T) {
	nodes := gossipCluster(t, 3)
	st := agreed(t, nodes, 3)
	if st.Replicas != 2 || len(st.Owners) != channelgroups.DefaultShards {
		t.Fatalf("replicas %d, %d shards in owners; want 2 and %d", st.Replicas, len(st.Owners), channelgroups.DefaultShards)
	}
	byName := map[string]*server{}
	for _, s := range nodes {
		byName[status(t, s).Self] = s
	}
	owned := map[string]int{}
	for shard, owners := range st.Owners {
		if len(owners) != 2 || owners[0] == owners[1] {
			t.Fatalf("shard %s has owners %v, want 2 distinct", shard, owners)
		}
		for _, o := range owners {
			owned[o]++
		}
	}
	for name, s := range byName {
		serving := metricValue(t, s, "groupcast_shards_serving")
		t.Logf("%s owns %d shards, follows %v", name, owned[name], serving)
		if int(serving) != owned[name] || serving >= channelgroups.DefaultShards || serving < 20 {
			t.Fatalf("%s follows %v shard logs; the ring gives it %d of %d", name, serving, owned[name], channelgroups.DefaultShards)
		}
	}

	// An account whose shard a given node does not own.
	var account string
	var owners []string
	for i := 0; account == ""; i++ {
		a := fmt.Sprintf("acct%d", i)
		o := st.Owners[fmt.Sprint(channelgroups.ShardOf(channelgroups.Account(a), channelgroups.DefaultShards))]
		if !slices.Contains(o, "n3") {
			account, owners = a, o
		}
	}
	outsider, owner := byName["n3"], byName[owners[0]]
	base := "/v1/channel-registration/sub-key/" + account + "/channel-group/g"
	if code, body := outsider.get(base + "?add=x,y"); code != 200 || body["error"] != false {
		t.Fatalf("edit through a non-owner: %d %v", code, body)
	}
	code, body := outsider.get(base)
	if code != 200 || fmt.Sprint(body["payload"].(map[string]any)["channels"]) != "[x y]" {
		t.Fatalf("list through a non-owner: %d %v", code, body)
	}
	ocode, obody := owner.get(base)
	if ocode != code || fmt.Sprint(obody) != fmt.Sprint(body) {
		t.Fatalf("the owner answers %d %v, the non-owner %d %v", ocode, obody, code, body)
	}
	if f := metricValue(t, outsider, `groupcast_forwards_total{result="ok"}`); f < 2 {
		t.Fatalf("the non-owner counted %v successful forwards, want >= 2", f)
	}
	if f := metricValue(t, owner, `groupcast_forwards_total{result="ok"}`); f != 0 {
		t.Fatalf("the owner forwarded %v requests for its own shard", f)
	}
}

// TestDrainSpreadsReleases: a node stopped with SIGTERM while 200
// subscribes are parked on it answers them spread over --drain, not all at
// once, each with a cursor to resume from (on the shard's other owner).
func TestDrainSpreadsReleases(t *testing.T) {
	const polls, drain = 200, 2 * time.Second
	nodes := gossipCluster(t, 2, "--drain", drain.String())
	agreed(t, nodes, 2)
	n2 := nodes[1]
	var hs subAnswer
	if err := getBody(t.Context(), http.DefaultClient, n2.url+"/v2/subscribe/drain/c/0?uuid=h", &hs); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 0, MaxIdleConnsPerHost: polls}}
	type answer struct {
		at     time.Time
		cursor string
		err    error
	}
	answers := make(chan answer, polls)
	var wg sync.WaitGroup
	for i := range polls {
		wg.Go(func() {
			var a subAnswer
			err := getBody(context.Background(), client, fmt.Sprintf("%s/v2/subscribe/drain/c/0?uuid=u%d&tt=%s", n2.url, i, hs.T.T), &a)
			answers <- answer{time.Now(), a.T.T, err}
		})
	}
	eventually(t, 20*time.Second, "every poll parked", func() bool { return metricValue(t, n2, "groupcast_parked_polls") == polls })
	sent := time.Now()
	if err := n2.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(answers)
	var at []time.Duration
	for a := range answers {
		if a.err != nil {
			t.Fatalf("a parked poll got %v, want an answer", a.err)
		}
		if a.cursor == "" || a.cursor == "0" {
			t.Fatalf("a released poll answered cursor %q", a.cursor)
		}
		at = append(at, a.at.Sub(sent))
	}
	if err := n2.cmd.Wait(); err != nil {
		t.Fatalf("groupcastd after SIGTERM: %v", err)
	}
	slices.Sort(at)
	first, last, tenth := at[0], at[len(at)-1], at[len(at)/10]
	t.Logf("released %d polls from %v to %v after SIGTERM (10th percentile %v, median %v)", len(at), first, last, tenth, at[len(at)/2])
	// Spread: the answers span most of the window, and the first tenth of
	// them is not a burst at its start.
	if last-first < drain/2 || tenth-first < drain/20 {
		t.Fatalf("answers from %v to %v (10th percentile %v): not spread over --drain %v", first, last, tenth, drain)
	}
}
