package cluster

import (
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

func TestRoute(t *testing.T) {
	nodes := startNodes(t, 3)
	eventually(t, "rings agree", func() error { return agree(nodes, "node-1", "node-2", "node-3") })
	self := nodes[0]
	http := map[string]string{"node-1": "127.0.0.1:8080", "node-2": "127.0.0.2:8080", "node-3": "127.0.0.3:8080"}
	ring := self.Ring()
	addrs := func(names []string) []string {
		out := []string{}
		for _, n := range names {
			if n != "node-1" {
				out = append(out, http[n])
			}
		}
		return out
	}
	// One shard of each kind, as node-1 sees them.
	primary, secondary, foreign := -1, -1, -1
	for s := range testShards {
		switch o := ring.Owners(s); {
		case o[0] == "node-1":
			primary = s
		case o[1] == "node-1":
			secondary = s
		default:
			foreign = s
		}
	}
	if primary < 0 || secondary < 0 || foreign < 0 {
		t.Fatalf("got shards primary %d, secondary %d, foreign %d; want one of each", primary, secondary, foreign)
	}

	for _, tc := range []struct {
		name  string
		shard int
		write bool
		want  []string // nil: serve here
	}{
		{"write to primary", primary, true, nil},
		{"read from primary", primary, false, nil},
		{"write to secondary", secondary, true, addrs(ring.Owners(secondary)[:1])},
		{"read from secondary", secondary, false, nil},
		{"write elsewhere", foreign, true, addrs(ring.Owners(foreign)[:1])},
		{"read elsewhere", foreign, false, addrs(ring.Owners(foreign))},
		{"out of range", testShards, false, []string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := self.Route(tc.shard, tc.write)
			if (got == nil) != (tc.want == nil) || !slices.Equal(got, tc.want) {
				t.Errorf("Route(%d, %t): got %#v, want %#v", tc.shard, tc.write, got, tc.want)
			}
		})
	}

	// A refused owner is skipped until its quarantine ends.
	owners := addrs(ring.Owners(foreign))
	self.Refused(owners[0])
	if got, want := self.Route(foreign, false), owners[1:]; !slices.Equal(got, want) {
		t.Errorf("after Refused(%s): got %v, want %v", owners[0], got, want)
	}
	if got := self.Route(foreign, true); got == nil || len(got) != 0 {
		t.Errorf("a write with its primary refused: got %#v, want empty (never the second owner)", got)
	}
	self.Refused(owners[1])
	if got := self.Route(foreign, false); got == nil || len(got) != 0 {
		t.Errorf("with every owner refused: got %#v, want empty", got)
	}
	if got := self.Route(secondary, true); got == nil || len(got) != 0 {
		t.Errorf("write with the primary refused: got %#v, want empty", got)
	}
	if got := self.Route(primary, true); got != nil {
		t.Errorf("write to this node with the others refused: got %#v, want nil", got)
	}
	// Ownership follows gossip alone.
	if got := self.Ring().Version(); got != ring.Version() {
		t.Errorf("got ring version %d after Refused, want %d", got, ring.Version())
	}
	self.clock.advance(self.cfg.Quarantine - time.Millisecond)
	if got := self.Route(foreign, false); len(got) != 0 {
		t.Errorf("just before the quarantine ends: got %v, want empty", got)
	}
	self.clock.advance(time.Millisecond)
	if got := self.Route(foreign, false); !slices.Equal(got, owners) {
		t.Errorf("after the quarantine: got %v, want %v", got, owners)
	}
}

func TestQuarantineEndsWhenTheNodeRejoins(t *testing.T) {
	cfg := fastConfig("node-1")
	cfg.Replicas = 1
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = c.Shutdown() })
	// Gossip about a peer, fed straight to the event delegate.
	peer := &memberlist.Node{Name: "node-2", Meta: encodeMeta(Member{HTTP: "127.0.0.2:8080", Region: 1, State: Active})}
	ev := events{c}
	ev.NotifyJoin(peer)
	shard := -1
	for s := range testShards {
		if c.Ring().Primary(s) == "node-2" {
			shard = s
			break
		}
	}
	if shard < 0 {
		t.Fatalf("got node-2 owning nothing of %v, want some shard", c.Ring().Nodes())
	}
	want := []string{"127.0.0.2:8080"}
	if got := c.Route(shard, true); !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	c.Refused(want[0])
	if got := c.Route(shard, true); len(got) != 0 {
		t.Fatalf("after Refused: got %v, want empty", got)
	}
	ev.NotifyUpdate(peer) // same address: still in quarantine
	if got := c.Route(shard, true); len(got) != 0 {
		t.Fatalf("after an update: got %v, want empty", got)
	}
	ev.NotifyLeave(peer)
	ev.NotifyJoin(peer)
	if got := c.Route(shard, true); !slices.Equal(got, want) {
		t.Errorf("after node-2 rejoined: got %v, want %v", got, want)
	}
}
