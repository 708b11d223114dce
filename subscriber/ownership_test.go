package subscriber_test

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/groupcast/groupcast/channelgroups"
	"github.com/groupcast/groupcast/subscriber"
)

// ownership is a hand-driven subscriber.Ownership (the cluster package's is
// tested against real memberlist; this tests the node's side of the seam).
type ownership struct {
	mu      sync.Mutex
	a       *subscriber.Assignment
	changed chan struct{}
	ready   []uint64
}

func newOwnership(shards int) *ownership {
	return &ownership{a: subscriber.All(shards), changed: make(chan struct{})}
}

func (o *ownership) Assignment() *subscriber.Assignment {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.a
}

func (o *ownership) Changed() <-chan struct{} {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.changed
}

func (o *ownership) Ready(v uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.ready = append(o.ready, v)
}

func (o *ownership) readyFor(v uint64) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Contains(o.ready, v)
}

// set makes the node own every shard but the ones given, under version v.
func (o *ownership) set(v uint64, shards int, without ...int) {
	a := subscriber.All(shards)
	a.Version = v
	for _, s := range without {
		a.Owned[s], a.Primary[s] = false, false
	}
	o.mu.Lock()
	o.a = a
	close(o.changed)
	o.changed = make(chan struct{})
	o.mu.Unlock()
}

// TestOwnershipChanges: a node follows only the shards it owns. When it
// loses one, the shard's parked polls answer with the cursor they were
// given and new polls do not park; when it gains it back, it rebuilds the
// shard's rings from the log, so a client resuming from its cursor gets
// every message published meanwhile, exactly once, in order (G6).
func TestOwnershipChanges(t *testing.T) {
	const shards = 4
	own := newOwnership(shards)
	n, _ := node(t, openBolt(t), subscriber.Config{Shards: shards, Ownership: own, PollHold: time.Minute, FreshWait: 20 * time.Millisecond})
	const a = channelgroups.Account("acct")
	shard := channelgroups.ShardOf(a, shards)
	req := subscriber.PollRequest{Account: a, Channels: []channelgroups.Channel{"x"}}
	publish := func(p string) {
		t.Helper()
		if _, err := n.Publish(t.Context(), &subscriber.Message{Account: a, Channel: "x", Payload: []byte(p)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	hs, err := n.Poll(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "every shard served", func() bool { return n.Serving() == shards })
	publish(`1`)
	req.Cursor = hs.Cursor
	first := wait(t, pollAsync(t.Context(), n, req))
	if len(first.Deliveries) != 1 {
		t.Fatalf("first poll: %d deliveries, want 1", len(first.Deliveries))
	}
	req.Cursor = first.Cursor
	parked := pollAsync(t.Context(), n, req)
	eventually(t, "the poll is parked", func() bool { return n.Parked() == 1 })

	own.set(2, shards, shard)
	res := wait(t, parked)
	if len(res.Deliveries) != 0 || res.Cursor != first.Cursor {
		t.Fatalf("a parked poll of a lost shard answered %d deliveries, cursor %d; want none and its own cursor %d", len(res.Deliveries), res.Cursor, first.Cursor)
	}
	eventually(t, "the node gave the shard up", func() bool { return n.Serving() == shards-1 && own.readyFor(2) })
	publish(`2`)
	publish(`3`)
	if res := wait(t, pollAsync(t.Context(), n, req)); len(res.Deliveries) != 0 || res.Cursor != first.Cursor {
		t.Fatalf("a poll of a shard not served: %d deliveries, cursor %d; want none and cursor %d", len(res.Deliveries), res.Cursor, first.Cursor)
	}

	own.set(3, shards)
	eventually(t, "the node took the shard up again", func() bool { return n.Serving() == shards && own.readyFor(3) })
	publish(`4`)
	var got []string
	for len(got) < 3 {
		res := wait(t, pollAsync(t.Context(), n, req))
		for _, d := range res.Deliveries {
			got = append(got, string(d.Msg.Payload))
		}
		req.Cursor = res.Cursor
	}
	if want := []string{"2", "3", "4"}; !slices.Equal(got, want) {
		t.Fatalf("after the shard came back the client got %v, want %v", got, want)
	}
}

// TestNotServedShardAnswersUnavailable: history and here-now of a shard the
// node does not serve fail with ErrNotServing (503), never an empty answer.
func TestNotServedShardAnswersUnavailable(t *testing.T) {
	const shards = 4
	own := newOwnership(shards)
	n, _ := node(t, openBolt(t), subscriber.Config{Shards: shards, Ownership: own, FreshWait: 20 * time.Millisecond})
	const a = channelgroups.Account("acct")
	own.set(2, shards, channelgroups.ShardOf(a, shards))
	eventually(t, "the node gave the shard up", func() bool { return n.Serving() == shards-1 })
	if _, err := n.History(t.Context(), a, "x", 0, 0, 10); !errors.Is(err, subscriber.ErrNotServing) {
		t.Fatalf("History of a shard not served: %v, want ErrNotServing", err)
	}
	if _, err := n.Occupancy(t.Context(), a, "x"); !errors.Is(err, subscriber.ErrNotServing) {
		t.Fatalf("Occupancy of a shard not served: %v, want ErrNotServing", err)
	}
}

// TestNewPrimaryAppendsTheOutboxFirst: a node that becomes a shard's
// primary while the shard's outbox holds an acknowledged edit that a
// previous primary could not append appends that edit before anything of
// its own, so the log order keeps matching the order of acknowledgement.
func TestNewPrimaryAppendsTheOutboxFirst(t *testing.T) {
	const shards = 4
	own := newOwnership(shards)
	const a = channelgroups.Account("acct")
	shard := channelgroups.ShardOf(a, shards)
	own.set(1, shards, shard)
	st := openBolt(t)
	n, lg := node(t, st, subscriber.Config{Shards: shards, Ownership: own, FreshWait: 20 * time.Millisecond})
	// Stored and acknowledged elsewhere, never appended: it is in the outbox.
	e := channelgroups.Edit{Account: a, Group: "g", Shard: shard, Op: channelgroups.OpAdd, Channels: []channelgroups.Channel{"c"}, At: channelgroups.TimetokenOf(time.Now())}
	if err := st.Write(t.Context(), e); err != nil {
		t.Fatal(err)
	}
	own.set(2, shards)
	eventually(t, "the node took the shard up", func() bool { return n.Serving() == shards })
	var published bool
	eventually(t, "a publish accepted", func() bool {
		_, err := n.Publish(t.Context(), &subscriber.Message{Account: a, Channel: "c", Payload: []byte(`1`)}, nil)
		if err != nil && !errors.Is(err, subscriber.ErrShardBlocked) {
			t.Fatal(err)
		}
		published = err == nil
		return published
	})
	es, err := lg.Range(t.Context(), shard, channelgroups.Position{}, 10)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, le := range es {
		kinds = append(kinds, string(le.Data[:8]))
	}
	if len(es) < 2 || !strings.Contains(string(es[0].Data), `"k":"e"`) || !strings.Contains(string(es[len(es)-1].Data), `"k":"m"`) {
		t.Fatalf("the shard's log: %q; want the outbox's edit before the message", kinds)
	}
}
