package subscriber_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/groupcast/groupcast/archive"
	"github.com/groupcast/groupcast/channelgroups"
	"github.com/groupcast/groupcast/channelgroups/bolt"
	"github.com/groupcast/groupcast/internal/nodetest"
	"github.com/groupcast/groupcast/subscriber"
	"github.com/groupcast/groupcast/subscriber/memlog"
)

// region is one in-process region: its own store, its own log, one node.
type region struct {
	n    int
	log  *memlog.Log
	node *subscriber.Node
	svc  *channelgroups.Service
}

// gatedLog is another region's log as a replicator sees it: reads wait
// until the gate opens.
type gatedLog struct {
	subscriber.Log
	mu   sync.Mutex
	open chan struct{} // closed once reads may pass
}

func newGated(l subscriber.Log) *gatedLog {
	return &gatedLog{Log: l, open: make(chan struct{})}
}

func (g *gatedLog) Read(ctx context.Context, cs []subscriber.Cursor, max int, block time.Duration) ([]subscriber.LogEntry, error) {
	g.mu.Lock()
	open := g.open
	g.mu.Unlock()
	select {
	case <-open:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return g.Log.Read(ctx, cs, max, block)
}

func (g *gatedLog) Open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	close(g.open)
}

const regionShards = 4

// startRegions starts one node per region; remote(i, j) is the log region i
// reads region j's entries from (the plain log if it returns nil). Every
// region's clock is now.
func startRegions(t *testing.T, count int, now func() time.Time, remote func(i, j int, l *memlog.Log) subscriber.Log) []*region {
	t.Helper()
	rs := make([]*region, count)
	for i := range rs {
		lg, err := memlog.New(memlog.Config{Shards: regionShards})
		if err != nil {
			t.Fatal(err)
		}
		rs[i] = &region{n: i + 1, log: lg}
	}
	for i, r := range rs {
		st, err := bolt.Open(filepath.Join(t.TempDir(), "g.db"), bolt.Config{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		remotes := map[int]subscriber.Log{}
		for j, o := range rs {
			if j != i {
				remotes[o.n] = o.log
				if remote != nil {
					if l := remote(r.n, o.n, o.log); l != nil {
						remotes[o.n] = l
					}
				}
			}
		}
		clock := channelgroups.NewClock(now, 0)
		// FreshWait is generous: on a loaded machine the copy may take a
		// while, and a read that gives up would be answered from storage
		// (another region's bolt file, which never has the edit).
		node := nodetest.Run(t, r.log, st, clock, subscriber.Config{
			Region: r.n, Shards: regionShards, Remotes: remotes, FreshWait: 20 * time.Second, Now: now,
		}, nil)
		svc, err := channelgroups.NewService(st, clock, channelgroups.ServiceConfig{Announcer: node, Shards: regionShards, Region: r.n})
		if err != nil {
			t.Fatal(err)
		}
		r.node, r.svc = node, svc
	}
	return rs
}

func (r *region) has(t *testing.T, key channelgroups.GroupKey, tok *channelgroups.Token, c channelgroups.Channel) bool {
	t.Helper()
	mode := subscriber.MinimizeLatency
	if tok != nil {
		mode = subscriber.AtLeastAsFresh
	}
	v, err := r.node.View(t.Context(), key, tok, mode)
	if err != nil {
		t.Fatalf("region %d: view of %v: %v", r.n, key, err)
	}
	_, ok := slices.BinarySearch(v.Channels, c)
	return ok
}

// copies returns the records in region r's log of shard copied from other
// regions, in log order, as "origin:kind:what".
func copies(t *testing.T, r *region, shard int) []string {
	t.Helper()
	es, err := r.log.Range(t.Context(), shard, channelgroups.Position{}, 10000)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		var rec struct {
			Kind     string                  `json:"k"`
			Origin   int                     `json:"or"`
			Channels []channelgroups.Channel `json:"c"`
			Payload  json.RawMessage         `json:"d"`
		}
		if err := json.Unmarshal(e.Data, &rec); err != nil {
			t.Fatal(err)
		}
		if rec.Origin != 0 {
			out = append(out, fmt.Sprintf("%d:%s:%s%s", rec.Origin, rec.Kind, rec.Channels, rec.Payload))
		}
	}
	return out
}

func pollUntil(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 20s: %s", what)
		}
		<-time.After(5 * time.Millisecond) // polling with a deadline, as the other tests do
	}
}

// TestRegionsCopyEditsAndMessages: an edit made in region 1 is read in
// region 2 with its token from memory; a message published in region 1
// reaches a subscriber in region 2 with its original timetoken.
func TestRegionsCopyEditsAndMessages(t *testing.T) {
	rs := startRegions(t, 2, nil, nil)
	r1, r2 := rs[0], rs[1]
	ctx := t.Context()
	key := channelgroups.GroupKey{Account: "acct", Group: "g"}
	res, err := r1.svc.Add(ctx, key.Account, key.Group, []channelgroups.Channel{"c"}, channelgroups.IfMatch{})
	if err != nil {
		t.Fatal(err)
	}
	if !r2.has(t, key, &res.Token, "c") {
		t.Fatalf("region 2 read with region 1's token %+v lacks the edit", res.Token)
	}
	// Subscribe in region 2 through the group, then publish in region 1.
	start, err := r2.node.Poll(ctx, subscriber.PollRequest{Account: key.Account, Groups: []channelgroups.Group{key.Group}})
	if err != nil {
		t.Fatal(err)
	}
	tt, err := r1.node.Publish(ctx, &subscriber.Message{Account: key.Account, Channel: "c", Payload: json.RawMessage(`"hello"`)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := r2.node.Poll(ctx, subscriber.PollRequest{Account: key.Account, Groups: []channelgroups.Group{key.Group}, Cursor: start.Cursor, Hold: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Deliveries) != 1 || string(got.Deliveries[0].Msg.Payload) != `"hello"` || got.Deliveries[0].Group != key.Group {
		t.Fatalf("region 2 subscriber got %+v, want the message through group g", got.Deliveries)
	}
	if m := got.Deliveries[0].Msg; m.Timetoken() != tt || m.Origin != 1 {
		t.Fatalf("region 2 delivered timetoken %d from region %d, want %d from region 1", m.Timetoken(), m.Origin, tt)
	}
	// Region 1 does not copy its own entries back.
	shard := channelgroups.ShardOf(key.Account, regionShards)
	if c := copies(t, r1, shard); len(c) != 0 {
		t.Fatalf("region 1's log holds copies %v of its own entries", c)
	}
	if c := copies(t, r2, shard); !slices.Equal(c, []string{"1:e:[c]", `1:m:[]"hello"`}) {
		t.Fatalf("region 2's copies: %v", c)
	}
}

// TestCausalOrderThreeRegions: region 2 publishes under a token of region
// 1's add; region 3 copies region 2's log before region 1's. The message
// waits until the add is copied, so region 3's log (and every node of it)
// applies the add first and the group's subscriber gets the message.
func TestCausalOrderThreeRegions(t *testing.T) {
	var gate *gatedLog // region 3's view of region 1's log: closed at first
	rs := startRegions(t, 3, nil, func(i, j int, l *memlog.Log) subscriber.Log {
		switch {
		case i == 3 && j == 1:
			gate = newGated(l)
			return gate
		}
		return nil
	})
	r1, r2, r3 := rs[0], rs[1], rs[2]
	ctx := t.Context()
	key := channelgroups.GroupKey{Account: "acct", Group: "g"}
	shard := channelgroups.ShardOf(key.Account, regionShards)
	// The handshake names a channel: the group is empty in region 3 yet.
	start, err := r3.node.Poll(ctx, subscriber.PollRequest{Account: key.Account, Channels: []channelgroups.Channel{"other"}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := r1.svc.Add(ctx, key.Account, key.Group, []channelgroups.Channel{"c"}, channelgroups.IfMatch{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r2.node.Publish(ctx, &subscriber.Message{Account: key.Account, Channel: "c", Payload: json.RawMessage(`"after the add"`)}, &res.Token); err != nil {
		t.Fatal(err)
	}
	// Region 3 reads region 2's log, finds the message depends on region
	// 1's add, which it cannot copy yet, and holds it back.
	pollUntil(t, "region 3 holds region 2's message back", func() bool { return subscriber.ReplicationWaits(r3.node) > 0 })
	if c := copies(t, r3, shard); len(c) != 0 {
		t.Fatalf("region 3 copied %v before the add it depends on", c)
	}
	gate.Open()
	pollUntil(t, "region 3 copies both", func() bool { return len(copies(t, r3, shard)) == 2 })
	if c := copies(t, r3, shard); !slices.Equal(c, []string{"1:e:[c]", `2:m:[]"after the add"`}) {
		t.Fatalf("region 3's copies in log order: %v, want region 1's add before region 2's message", c)
	}
	got, err := r3.node.Poll(ctx, subscriber.PollRequest{Account: key.Account, Groups: []channelgroups.Group{key.Group}, Cursor: start.Cursor, Hold: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Deliveries) != 1 || string(got.Deliveries[0].Msg.Payload) != `"after the add"` {
		t.Fatalf("region 3's subscriber of the group got %+v, want the message (G3 across regions)", got.Deliveries)
	}
}

// TestRegionsEqualTimetokens: an add in region 1 and a remove in region 2
// of the same channel at the same timetoken: each region applies its own
// edit first and the other's second, and both end with the channel out
// (remove wins a tie, as in Cassandra: channelgroups/cassandra TestTieRule).
func TestRegionsEqualTimetokens(t *testing.T) {
	at := time.Now()
	var gate *gatedLog // region 2's view of region 1's log: closed until both edits are made
	rs := startRegions(t, 2, func() time.Time { return at }, func(i, j int, l *memlog.Log) subscriber.Log {
		if i == 2 {
			gate = newGated(l)
			return gate
		}
		return nil
	})
	r1, r2 := rs[0], rs[1]
	ctx := t.Context()
	key := channelgroups.GroupKey{Account: "acct", Group: "g"}
	add, err := r1.svc.Add(ctx, key.Account, key.Group, []channelgroups.Channel{"c"}, channelgroups.IfMatch{})
	if err != nil {
		t.Fatal(err)
	}
	rm, err := r2.svc.Remove(ctx, key.Account, key.Group, []channelgroups.Channel{"c"}, channelgroups.IfMatch{})
	if err != nil {
		t.Fatal(err)
	}
	gate.Open()
	if add.At != rm.At {
		t.Fatalf("timetokens differ: add %d, remove %d", add.At, rm.At)
	}
	both := add.Token.Merge(rm.Token)
	for _, r := range rs {
		if r.has(t, key, &both, "c") {
			t.Errorf("region %d shows c after an add and a remove at the same timetoken; remove must win", r.n)
		}
	}
}

// TestHistoryInTimetokenOrder: a copy of region 2's message reaches region
// 1's ring after a local message with a later timetoken; history is in
// timetoken order, so its newest-N page holds the newest by timetoken.
func TestHistoryInTimetokenOrder(t *testing.T) {
	var gate *gatedLog // region 1's view of region 2's log
	rs := startRegions(t, 2, nil, func(i, j int, l *memlog.Log) subscriber.Log {
		if i == 1 {
			gate = newGated(l)
			return gate
		}
		return nil
	})
	r1, r2 := rs[0], rs[1]
	ctx := t.Context()
	publish := func(r *region, body string) channelgroups.Timetoken {
		tt, err := r.node.Publish(ctx, &subscriber.Message{Account: "acct", Channel: "c", Payload: json.RawMessage(`"` + body + `"`)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return tt
	}
	tt2 := publish(r2, "r2")
	// Positions are (millisecond, sequence) in each region's log: r1a must
	// come in a later millisecond to have a later timetoken.
	pollUntil(t, "the next millisecond", func() bool { return uint64(time.Now().UnixMilli()) > uint64(tt2)/10000 })
	publish(r1, "r1a")
	gate.Open()
	shard := channelgroups.ShardOf("acct", regionShards)
	pollUntil(t, "region 1 copies region 2's message", func() bool { return len(copies(t, r1, shard)) == 1 })
	publish(r1, "r1b")
	bodies := func(max int) []string {
		var ms []*subscriber.Message
		pollUntil(t, "region 1's ring holds the three", func() bool {
			all, err := r1.node.History(ctx, "acct", "c", 0, 0, 10)
			if err != nil {
				t.Fatal(err)
			}
			if len(all) < 3 {
				return false
			}
			ms, err = r1.node.History(ctx, "acct", "c", 0, 0, max)
			return err == nil
		})
		var out []string
		for _, m := range ms {
			out = append(out, string(m.Payload))
		}
		return out
	}
	if got, want := bodies(10), []string{`"r2"`, `"r1a"`, `"r1b"`}; !slices.Equal(got, want) {
		t.Fatalf("history %v, want timetoken order %v", got, want)
	}
	if got, want := bodies(2), []string{`"r1a"`, `"r1b"`}; !slices.Equal(got, want) {
		t.Fatalf("newest 2: %v, want %v", got, want)
	}
}

// TestCausalOrderOfEditsThreeRegions: region 2 removes a channel under the
// token of region 1's add (Node.CatchUp, as the HTTP API does for an edit
// carrying a token); region 3 copies region 2's log before region 1's. The
// remove waits until the add is copied, so region 3's log holds them in
// causal order.
func TestCausalOrderOfEditsThreeRegions(t *testing.T) {
	var gate *gatedLog // region 3's view of region 1's log: closed at first
	rs := startRegions(t, 3, nil, func(i, j int, l *memlog.Log) subscriber.Log {
		if i == 3 && j == 1 {
			gate = newGated(l)
			return gate
		}
		return nil
	})
	r1, r2, r3 := rs[0], rs[1], rs[2]
	key := channelgroups.GroupKey{Account: "acct", Group: "g"}
	shard := channelgroups.ShardOf(key.Account, regionShards)
	add, err := r1.svc.Add(t.Context(), key.Account, key.Group, []channelgroups.Channel{"c"}, channelgroups.IfMatch{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, err := r2.node.CatchUp(t.Context(), &add.Token)
	if err != nil {
		t.Fatal(err)
	}
	rm, err := r2.svc.Remove(ctx, key.Account, key.Group, []channelgroups.Channel{"c"}, channelgroups.IfMatch{})
	if err != nil {
		t.Fatal(err)
	}
	if rm.At <= add.At {
		t.Fatalf("the remove's timetoken %d is not after the add's %d it was made under", rm.At, add.At)
	}
	pollUntil(t, "region 3 holds region 2's remove back", func() bool { return subscriber.ReplicationWaits(r3.node) > 0 })
	if c := copies(t, r3, shard); len(c) != 0 {
		t.Fatalf("region 3 copied %v before the add the remove depends on", c)
	}
	gate.Open()
	pollUntil(t, "region 3 copies both", func() bool { return len(copies(t, r3, shard)) == 2 })
	if c := copies(t, r3, shard); !slices.Equal(c, []string{"1:e:[c]", "2:e:[c]"}) {
		t.Fatalf("region 3's copies in log order: %v, want region 1's add before region 2's remove", c)
	}
	if r3.has(t, key, &rm.Token, "c") {
		t.Fatal("region 3 shows c after the remove")
	}
}

// TestRegionsCopyActionsAndDeletes: a message action added in region 1
// reaches region 2's subscriber as an action event with region 1's action
// timetoken, and a history deletion made in region 1 hides the message in
// region 2's rings too.
func TestRegionsCopyActionsAndDeletes(t *testing.T) {
	rs := startRegions(t, 2, nil, nil)
	r1, r2 := rs[0], rs[1]
	ctx := t.Context()
	const a, c = channelgroups.Account("acct"), channelgroups.Channel("c")
	start, err := r2.node.Poll(ctx, subscriber.PollRequest{Account: a, Channels: []channelgroups.Channel{c}})
	if err != nil {
		t.Fatal(err)
	}
	tt, err := r1.node.Publish(ctx, &subscriber.Message{Account: a, Channel: c, Payload: json.RawMessage(`"hello"`)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	act, err := r1.node.AddAction(ctx, archive.Action{Account: a, Channel: c, Message: tt, Type: "reaction", Value: "smile", Publisher: "u"})
	if err != nil {
		t.Fatal(err)
	}
	var got []*subscriber.Message
	for cursor := start.Cursor; len(got) < 2; {
		res, err := r2.node.Poll(ctx, subscriber.PollRequest{Account: a, Channels: []channelgroups.Channel{c}, Cursor: cursor, Hold: 20 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Deliveries) == 0 {
			t.Fatalf("region 2's subscriber got %d of the message and its action within the hold", len(got))
		}
		for _, d := range res.Deliveries {
			got = append(got, d.Msg)
		}
		cursor = res.Cursor
	}
	if m := got[1]; m.Action == nil || m.Action.Type != "reaction" || m.Action.Message != tt || m.ActionTimetoken() != act.Timetoken || m.Origin != 1 {
		t.Fatalf("region 2 got %+v (action %+v), want region 1's action %+v", m, m.Action, act)
	}
	if ms, err := r2.node.History(ctx, a, c, 0, 0, 10); err != nil || len(ms) != 1 || ms[0].Timetoken() != tt {
		t.Fatalf("region 2's history before the deletion: %v, %v; want the message", ms, err)
	}
	if err := r1.node.DeleteHistory(ctx, a, c, tt-1, tt); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the deletion hides the message in region 2", func() bool {
		ms, err := r2.node.History(ctx, a, c, 0, 0, 10)
		return err == nil && len(ms) == 0
	})
}
