package subscriber_test

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/groupcast/groupcast/channelgroups"
	"github.com/groupcast/groupcast/channelgroups/bolt"
	"github.com/groupcast/groupcast/internal/nodetest"
	"github.com/groupcast/groupcast/storagecache"
	"github.com/groupcast/groupcast/subscriber"
	"github.com/groupcast/groupcast/subscriber/memlog"
	"github.com/groupcast/groupcast/volatile"
)

func openBolt(t *testing.T) *bolt.Store {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "g.db"), bolt.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// eventually polls cond until it holds, failing the test after a deadline.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline:
			t.Fatalf("not within 10s: %s", what)
		case <-tick.C:
		}
	}
}

type pollOutcome struct {
	res subscriber.PollResult
	err error
}

func pollAsync(ctx context.Context, n *subscriber.Node, req subscriber.PollRequest) <-chan pollOutcome {
	ch := make(chan pollOutcome, 1)
	go func() {
		res, err := n.Poll(ctx, req)
		ch <- pollOutcome{res, err}
	}()
	return ch
}

func wait(t *testing.T, ch <-chan pollOutcome) subscriber.PollResult {
	t.Helper()
	select {
	case o := <-ch:
		if o.err != nil {
			t.Fatal(o.err)
		}
		return o.res
	case <-time.After(10 * time.Second):
		t.Fatal("the poll did not answer within 10s")
	}
	return subscriber.PollResult{}
}

func channelsOf(ds []subscriber.Delivery) []string {
	var out []string
	for _, d := range ds {
		out = append(out, string(d.Msg.Channel)+"@"+string(d.Group))
	}
	return out
}

// storeAheadOfLog stores edits first and then second of c in group key,
// appends only first to the log, and waits until the refresh that first
// starts has read second from storage: the view is then ahead of the log,
// showing c if second is an add. It returns second, for the caller to
// append later.
func storeAheadOfLog(t *testing.T, n *subscriber.Node, st *bolt.Store, clock *channelgroups.Clock, key channelgroups.GroupKey, first, second channelgroups.Op) channelgroups.Edit {
	t.Helper()
	shard := channelgroups.ShardOf(key.Account, channelgroups.DefaultShards)
	edit := func(op channelgroups.Op) channelgroups.Edit {
		return channelgroups.Edit{Account: key.Account, Group: key.Group, Shard: shard, Op: op, Channels: []channelgroups.Channel{"c"}, At: clock.Now()}
	}
	e1, e2 := edit(first), edit(second)
	for _, e := range []channelgroups.Edit{e1, e2} {
		if err := st.Write(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
	pos, err := n.Announce(t.Context(), e1)
	if err != nil {
		t.Fatal(err)
	}
	tok := &channelgroups.Token{Shard: shard, At: e1.At, Origin: 1, Positions: []channelgroups.RegionPosition{{Region: 1, Pos: pos}}}
	if _, err := n.View(t.Context(), key, tok, subscriber.AtLeastAsFresh); err != nil {
		t.Fatal(err)
	}
	shows := second == channelgroups.OpAdd
	eventually(t, "the view reflects the stored second edit", func() bool {
		v, err := n.View(t.Context(), key, nil, subscriber.MinimizeLatency)
		return err == nil && slices.Contains(v.Channels, "c") == shows
	})
	return e2
}

// untilSentinel reads the answers of the group poll parked (made with req)
// and its successors until one carries a message on channel "keep", and
// returns what they delivered, the poll parked after them and its request.
func untilSentinel(t *testing.T, n *subscriber.Node, req subscriber.PollRequest, parked <-chan pollOutcome) ([]string, subscriber.PollRequest, <-chan pollOutcome) {
	t.Helper()
	var got []string
	for !slices.Contains(got, "keep@"+string(req.Groups[0])) {
		res := wait(t, parked)
		got = append(got, channelsOf(res.Deliveries)...)
		req.Cursor = res.Cursor
		parked = pollAsync(t.Context(), n, req)
	}
	return got, req, parked
}

// aroundEdit publishes payload on channel "c", announces edit, publishes
// the sentinel on "keep", and returns what the group poll parked (made
// with req) and its successors delivered up to the sentinel (untilSentinel).
func aroundEdit(t *testing.T, n *subscriber.Node, payload string, edit channelgroups.Edit, req subscriber.PollRequest, parked <-chan pollOutcome) ([]string, subscriber.PollRequest, <-chan pollOutcome) {
	t.Helper()
	if _, err := n.Publish(t.Context(), &subscriber.Message{Account: req.Account, Channel: "c", Payload: []byte(`"` + payload + `"`)}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Announce(t.Context(), edit); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Publish(t.Context(), &subscriber.Message{Account: req.Account, Channel: "keep", Payload: []byte(`"sentinel"`)}, nil); err != nil {
		t.Fatal(err)
	}
	return untilSentinel(t, n, req, parked)
}

// TestG3StorageAheadOfLog is the G3 race found with three nodes (add c →
// publish to c → remove c at once; now and then one subscriber missed the
// message): storage is ahead of the log, because an edit is stored before
// it is appended. Here the storage refresh that the add's overlay entry
// triggers reads the remove, which is stored but not yet in the log, and
// the group's view loses c before the message is applied. The message was
// published while c was in the group (the add returned, the remove had
// not), so the group's subscriber must get it: the G3 tracking follows the
// log, not the view.
func TestG3StorageAheadOfLog(t *testing.T) {
	st := openBolt(t)
	n, _ := node(t, st, subscriber.Config{PollHold: time.Minute})
	clock := channelgroups.NewClock(nil, 0)
	svc, err := channelgroups.NewService(st, clock, channelgroups.ServiceConfig{Announcer: n})
	if err != nil {
		t.Fatal(err)
	}
	const a, g = channelgroups.Account("acct"), channelgroups.Group("g")
	key := channelgroups.GroupKey{Account: a, Group: g}
	if _, err := svc.Add(t.Context(), a, g, []channelgroups.Channel{"keep"}, channelgroups.IfMatch{}); err != nil {
		t.Fatal(err)
	}
	hs, err := n.Poll(t.Context(), subscriber.PollRequest{Account: a, Groups: []channelgroups.Group{g}})
	if err != nil {
		t.Fatal(err)
	}
	req := subscriber.PollRequest{Account: a, Groups: []channelgroups.Group{g}, Cursor: hs.Cursor}
	parked := pollAsync(t.Context(), n, req)

	// Both edits are stored; only the add is in the log yet. The refresh
	// the add started reads the stored remove: the view drops c.
	remove := storeAheadOfLog(t, n, st, clock, key, channelgroups.OpAdd, channelgroups.OpRemove)
	got, _, parked := aroundEdit(t, n, "owed", remove, req, parked)
	if want := []string{"c@g", "keep@g"}; !slices.Equal(got, want) {
		t.Fatalf("the group's subscriber got %v, want %v: a message published while c was in the group is owed (G3)", got, want)
	}
	// After the remove, a message on c reaches nobody through the group.
	if _, err := n.Publish(t.Context(), &subscriber.Message{Account: a, Channel: "c", Payload: []byte(`"after"`)}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Publish(t.Context(), &subscriber.Message{Account: a, Channel: "keep", Payload: []byte(`"sentinel2"`)}, nil); err != nil {
		t.Fatal(err)
	}
	if got := channelsOf(wait(t, parked).Deliveries); !slices.Equal(got, []string{"keep@g"}) {
		t.Fatalf("after the remove the group's subscriber got %v, want [keep@g]", got)
	}
}

// TestG3StorageAheadOfLogReadd is TestG3StorageAheadOfLog the other way
// round: c is removed (stored and in the log) and added again (stored, not
// yet in the log), and a storage refresh reads the re-add, so the group's
// view shows c again before the log does. A message to c published in
// between sorts after the remove and before the re-add: the remove had
// returned when it was published, so no subscriber of the group may get
// it (G3); one published after the re-add is in the log reaches them. The
// group is tracked before the re-add is read, or only after (its first
// subscriber comes while the view is ahead).
func TestG3StorageAheadOfLogReadd(t *testing.T) {
	for _, late := range []bool{false, true} {
		t.Run(map[bool]string{false: "tracked", true: "tracked late"}[late], func(t *testing.T) {
			testG3Readd(t, late)
		})
	}
}

func testG3Readd(t *testing.T, late bool) {
	st := openBolt(t)
	n, _ := node(t, st, subscriber.Config{PollHold: time.Minute})
	clock := channelgroups.NewClock(nil, 0)
	svc, err := channelgroups.NewService(st, clock, channelgroups.ServiceConfig{Announcer: n})
	if err != nil {
		t.Fatal(err)
	}
	const a, g = channelgroups.Account("acct"), channelgroups.Group("g")
	key := channelgroups.GroupKey{Account: a, Group: g}
	if _, err := svc.Add(t.Context(), a, g, []channelgroups.Channel{"keep", "c"}, channelgroups.IfMatch{}); err != nil {
		t.Fatal(err)
	}
	// The handshake of a group tracks it; one of a plain channel (the same
	// account, so the same shard and cursor) does not.
	hsReq := subscriber.PollRequest{Account: a, Groups: []channelgroups.Group{g}}
	if late {
		hsReq = subscriber.PollRequest{Account: a, Channels: []channelgroups.Channel{"keep"}}
	}
	hs, err := n.Poll(t.Context(), hsReq)
	if err != nil {
		t.Fatal(err)
	}
	req := subscriber.PollRequest{Account: a, Groups: []channelgroups.Group{g}, Cursor: hs.Cursor}
	var parked <-chan pollOutcome
	if !late {
		parked = pollAsync(t.Context(), n, req)
	}

	// Both edits are stored; only the remove is in the log yet. The
	// refresh the remove started reads the stored re-add: the view shows c
	// again.
	readd := storeAheadOfLog(t, n, st, clock, key, channelgroups.OpRemove, channelgroups.OpAdd)
	if late {
		parked = pollAsync(t.Context(), n, req)
		eventually(t, "the group's poll parked", func() bool { return n.Parked() == 1 })
	}
	got, _, parked := aroundEdit(t, n, "not owed", readd, req, parked)
	if want := []string{"keep@g"}; !slices.Equal(got, want) {
		t.Fatalf("the group's subscriber got %v, want %v: a message published after c's remove returned, before its re-add, is not owed (G3)", got, want)
	}
	// After the re-add is in the log, a message on c reaches the group.
	if _, err := n.Publish(t.Context(), &subscriber.Message{Account: a, Channel: "c", Payload: []byte(`"owed"`)}, nil); err != nil {
		t.Fatal(err)
	}
	if got := channelsOf(wait(t, parked).Deliveries); !slices.Equal(got, []string{"c@g"}) {
		t.Fatalf("after the re-add the group's subscriber got %v, want [c@g]", got)
	}
}

// TestG3StorageOnlyAccount: an account that does not use the overlay
// reads its group views from storage, refreshed periodically, so its
// published view lags an edit by up to a refresh period. Its G3 tracking
// must not: a message published after a remove of c returned reaches no
// subscriber of the group, and one published after an add returned does.
func TestG3StorageOnlyAccount(t *testing.T) {
	st := openBolt(t)
	lg, err := memlog.New(memlog.Config{})
	if err != nil {
		t.Fatal(err)
	}
	clock := channelgroups.NewClock(nil, 0)
	n := nodetest.RunOverlay(t, lg, st, clock, subscriber.Config{PollHold: time.Minute},
		volatile.Config{Enabled: func(channelgroups.Account) bool { return false }}, nil)
	svc, err := channelgroups.NewService(st, clock, channelgroups.ServiceConfig{Announcer: n})
	if err != nil {
		t.Fatal(err)
	}
	const a, g = channelgroups.Account("acct"), channelgroups.Group("g")
	ctx := t.Context()
	if _, err := svc.Add(ctx, a, g, []channelgroups.Channel{"c", "keep"}, channelgroups.IfMatch{}); err != nil {
		t.Fatal(err)
	}
	req := subscriber.PollRequest{Account: a, Groups: []channelgroups.Group{g}}
	hs, err := n.Poll(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Remove(ctx, a, g, []channelgroups.Channel{"c"}, channelgroups.IfMatch{}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Add(ctx, a, g, []channelgroups.Channel{"d"}, channelgroups.IfMatch{}); err != nil {
		t.Fatal(err)
	}
	for _, m := range []struct{ c, p string }{{"c", `"not owed"`}, {"d", `"owed"`}, {"keep", `"sentinel"`}} {
		if _, err := n.Publish(ctx, &subscriber.Message{Account: a, Channel: channelgroups.Channel(m.c), Payload: []byte(m.p)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for req.Cursor = hs.Cursor; !slices.Contains(got, "keep@g"); {
		res := wait(t, pollAsync(ctx, n, req))
		got = append(got, channelsOf(res.Deliveries)...)
		req.Cursor = res.Cursor
	}
	if want := []string{"d@g", "keep@g"}; !slices.Equal(got, want) {
		t.Fatalf("the group's subscriber got %v, want %v: c was removed and d added before the publishes (G3)", got, want)
	}
}

// TestNoLostWakeUpAtTheSeam holds the log consumer between a message's ring
// insert and the advance of its shard's position, and registers a poll
// right there: the poll's own check cannot see the message yet (its cut is
// older), so the wake-up after the advance must find it.
func TestNoLostWakeUpAtTheSeam(t *testing.T) {
	inserted, proceed := make(chan struct{}), make(chan struct{})
	// Only the first insert after the test arms the seam is held: with a
	// non-blocking send instead, a consumer quicker than the test (another
	// core, -race) passed the seam before the test waited there, and the
	// test waited forever (seen twice in CI).
	var armed atomic.Bool
	n, _ := nodetest.NodeWith(t, openBolt(t), subscriber.Config{PollHold: time.Minute}, func(n *subscriber.Node) {
		subscriber.SetAfterInsert(n, func(channelgroups.Position) {
			if armed.CompareAndSwap(true, false) {
				inserted <- struct{}{}
				<-proceed
			}
		})
	})

	req := subscriber.PollRequest{Account: "a", Channels: []channelgroups.Channel{"x"}}
	hs, err := n.Poll(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	published := make(chan error, 1)
	armed.Store(true)
	go func() {
		_, err := n.Publish(t.Context(), &subscriber.Message{Account: "a", Channel: "x", Payload: []byte(`1`)}, nil)
		published <- err
	}()
	<-inserted // the consumer holds between the insert and the position advance
	req.Cursor = hs.Cursor
	parked := pollAsync(t.Context(), n, req)
	eventually(t, "the poll is parked", func() bool { return n.Parked() == 1 })
	close(proceed)
	if err := <-published; err != nil {
		t.Fatal(err)
	}
	if got := channelsOf(wait(t, parked).Deliveries); !slices.Equal(got, []string{"x@"}) {
		t.Fatalf("got %v, want the message on x", got)
	}
}

// TestConfigValidation: values that cannot work are refused by NewNode with
// a message naming the field, instead of a panic later (a negative refresh
// period used to panic in time.NewTicker).
func TestConfigValidation(t *testing.T) {
	st := openBolt(t)
	lg, _ := memlog.New(memlog.Config{})
	cache, _ := storagecache.New(st, storagecache.Config{})
	t.Cleanup(cache.Close)
	ov, _ := volatile.New(volatile.Config{})
	for _, tc := range []struct {
		cfg  subscriber.Config
		want string
	}{
		{subscriber.Config{RefreshEvery: -time.Second}, "RefreshEvery must be > 0"},
		{subscriber.Config{PollHold: -1}, "PollHold must be > 0"},
		{subscriber.Config{Shards: -3}, "Shards must be between 1 and 65536"},
		{subscriber.Config{RingSize: -1}, "RingSize must be >= 1"},
		{subscriber.Config{Region: -1}, "Region must be >= 1"},
		{subscriber.Config{ReleaseSpread: -time.Second}, "ReleaseSpread must be > 0"},
	} {
		_, err := subscriber.NewNode(lg, st, cache, ov, channelgroups.NewClock(nil, 0), tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewNode(%+v) = %v, want an error containing %q", tc.cfg, err, tc.want)
		}
	}
	if _, err := subscriber.NewNode(lg, st, cache, ov, channelgroups.NewClock(nil, 0), subscriber.Config{}); err != nil {
		t.Fatalf("the zero Config: %v", err)
	}
}

// TestG3GroupTrackedLate: a subscriber that follows a group from node to
// node brings its cursor to a node where the group is not tracked yet. The
// messages between its cursor and now were applied before the group was
// tracked there, so they carry no annotation for it; they are judged by the
// group's edits in the log: one published while c was in the group is
// delivered, one published after c was removed is not.
func TestG3GroupTrackedLate(t *testing.T) {
	st := openBolt(t)
	n, _ := node(t, st, subscriber.Config{PollHold: time.Minute})
	svc, err := channelgroups.NewService(st, channelgroups.NewClock(nil, 0), channelgroups.ServiceConfig{Announcer: n})
	if err != nil {
		t.Fatal(err)
	}
	const a, g = channelgroups.Account("acct"), channelgroups.Group("g")
	ctx := t.Context()
	if _, err := svc.Add(ctx, a, g, []channelgroups.Channel{"keep"}, channelgroups.IfMatch{}); err != nil {
		t.Fatal(err)
	}
	// The cursor comes from elsewhere: this node does not track the group.
	hs, err := n.Poll(ctx, subscriber.PollRequest{Account: a, Channels: []channelgroups.Channel{"other"}})
	if err != nil {
		t.Fatal(err)
	}
	publish := func(c channelgroups.Channel, p string) {
		t.Helper()
		if _, err := n.Publish(ctx, &subscriber.Message{Account: a, Channel: c, Payload: []byte(p)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := svc.Add(ctx, a, g, []channelgroups.Channel{"c"}, channelgroups.IfMatch{}); err != nil {
		t.Fatal(err)
	}
	publish("c", `"owed"`)
	r, err := svc.Remove(ctx, a, g, []channelgroups.Channel{"c"}, channelgroups.IfMatch{})
	if err != nil {
		t.Fatal(err)
	}
	publish("c", `"not owed"`)
	publish("keep", `"sentinel"`)
	if _, err := n.View(ctx, channelgroups.GroupKey{Account: a, Group: g}, &r.Token, subscriber.AtLeastAsFresh); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the sentinel applied", func() bool { return historyLen(t, n, a, "keep") == 1 })
	res, err := n.Poll(ctx, subscriber.PollRequest{Account: a, Groups: []channelgroups.Group{g}, Cursor: hs.Cursor})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range res.Deliveries {
		got = append(got, string(d.Msg.Payload)+"@"+string(d.Group))
	}
	if want := []string{`"owed"@g`, `"sentinel"@g`}; !slices.Equal(got, want) {
		t.Fatalf("the group's subscriber got %v, want %v", got, want)
	}
}

// TestG3TrackedLateStorageAhead: as TestG3GroupTrackedLate, but the add is
// before the subscriber's cursor and the remove is stored and not yet in
// the log when the group becomes tracked: the view the tracking starts from
// lacks the channel, and the message published while it was in the group
// is still owed.
func TestG3TrackedLateStorageAhead(t *testing.T) {
	st := openBolt(t)
	n, _ := node(t, st, subscriber.Config{PollHold: 5 * time.Second})
	clock := channelgroups.NewClock(nil, 0)
	svc, err := channelgroups.NewService(st, clock, channelgroups.ServiceConfig{Announcer: n})
	if err != nil {
		t.Fatal(err)
	}
	const a, g = channelgroups.Account("acct"), channelgroups.Group("g")
	ctx := t.Context()
	added, err := svc.Add(ctx, a, g, []channelgroups.Channel{"keep", "c"}, channelgroups.IfMatch{})
	if err != nil {
		t.Fatal(err)
	}
	// The subscriber's cursor is after the add.
	if _, err := n.View(ctx, channelgroups.GroupKey{Account: a, Group: g}, &added.Token, subscriber.AtLeastAsFresh); err != nil {
		t.Fatal(err)
	}
	subscriber.DropCached(n, channelgroups.GroupKey{Account: a, Group: g}) // tracking starts from a storage read
	if _, err := n.Publish(ctx, &subscriber.Message{Account: a, Channel: "other", Payload: []byte(`0`)}, nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a later entry applied", func() bool { return historyLen(t, n, a, "other") == 1 })
	hs, err := n.Poll(ctx, subscriber.PollRequest{Account: a, Channels: []channelgroups.Channel{"other"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Publish(ctx, &subscriber.Message{Account: a, Channel: "c", Payload: []byte(`"owed"`)}, nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the message applied", func() bool { return historyLen(t, n, a, "c") == 1 })
	shard := channelgroups.ShardOf(a, channelgroups.DefaultShards)
	remove := channelgroups.Edit{Account: a, Group: g, Shard: shard, Op: channelgroups.OpRemove, Channels: []channelgroups.Channel{"c"}, At: clock.Now()}
	if err := st.Write(ctx, remove); err != nil {
		t.Fatal(err)
	}
	res, err := n.Poll(ctx, subscriber.PollRequest{Account: a, Groups: []channelgroups.Group{g}, Cursor: hs.Cursor})
	if err != nil {
		t.Fatal(err)
	}
	if got := channelsOf(res.Deliveries); !slices.Equal(got, []string{"c@g"}) {
		t.Fatalf("the group's subscriber got %v, want [c@g]", got)
	}
}

func historyLen(t *testing.T, n *subscriber.Node, a channelgroups.Account, c channelgroups.Channel) int {
	t.Helper()
	ms, err := n.History(t.Context(), a, c, 0, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	return len(ms)
}
