package channelgroups_test

import (
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/groupcast/groupcast/channelgroups"
)

func TestSupersedes(t *testing.T) {
	add := func(at channelgroups.Timetoken) channelgroups.Entry {
		return channelgroups.Entry{Channel: "c", State: channelgroups.Added, At: at}
	}
	rm := func(at channelgroups.Timetoken) channelgroups.Entry {
		return channelgroups.Entry{Channel: "c", State: channelgroups.Removed, At: at}
	}
	for _, tc := range []struct {
		name string
		a, b channelgroups.Entry
		want bool
	}{
		{"later add beats remove", add(20), rm(10), true},
		{"earlier add loses", add(10), rm(20), false},
		{"remove wins a tie", rm(10), add(10), true},
		{"add loses a tie", add(10), rm(10), false},
		{"equal entries: no change", add(10), add(10), false},
	} {
		if got := tc.a.Supersedes(tc.b); got != tc.want {
			t.Errorf("%s: %+v.Supersedes(%+v) = %v, want %v", tc.name, tc.a, tc.b, got, tc.want)
		}
	}
}

// TestApplyOrderIndependent: the model gives one answer for every order of
// the same edits, which is what lets nodes apply changes as they arrive.
func TestApplyOrderIndependent(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	pool := []channelgroups.Channel{"a", "b", "c", "d", "e"}
	for trial := range 2000 {
		var edits []channelgroups.Edit
		for range 1 + r.IntN(10) {
			e := channelgroups.Edit{Op: channelgroups.Op(1 + r.IntN(3)), At: channelgroups.Timetoken(10 * (1 + r.IntN(5)))}
			if e.Op != channelgroups.OpClear {
				e.Channels = []channelgroups.Channel{pool[r.IntN(len(pool))], pool[r.IntN(len(pool))]}
			}
			edits = append(edits, e)
		}
		var first channelgroups.Snapshot
		for _, e := range edits {
			first.Apply(e)
		}
		for range 5 {
			r.Shuffle(len(edits), func(i, j int) { edits[i], edits[j] = edits[j], edits[i] })
			var again channelgroups.Snapshot
			for _, e := range edits {
				again.Apply(e)
			}
			if !sameSnapshot(first, again) {
				t.Fatalf("trial %d: order changed the result:\n%+v\n%+v", trial, first, again)
			}
		}
	}
}

func TestSnapshotQueries(t *testing.T) {
	var s channelgroups.Snapshot
	s.Apply(channelgroups.Edit{Op: channelgroups.OpAdd, Channels: []channelgroups.Channel{"b", "a", "c"}, At: 10})
	s.Apply(channelgroups.Edit{Op: channelgroups.OpRemove, Channels: []channelgroups.Channel{"b"}, At: 20})
	if got := s.Channels(); !reflect.DeepEqual(got, []channelgroups.Channel{"a", "c"}) {
		t.Fatalf("Channels = %v", got)
	}
	if s.Count() != 2 || !s.Exists() || s.Version != 20 {
		t.Fatalf("Count %d Exists %v Version %v", s.Count(), s.Exists(), s.Version)
	}
	if e, ok := s.Lookup("b"); !ok || e.State != channelgroups.Removed {
		t.Fatalf("Lookup(b) = %+v, %v", e, ok)
	}
	s.Apply(channelgroups.Edit{Op: channelgroups.OpClear, At: 30})
	if s.Exists() || len(s.Entries) != 0 {
		t.Fatalf("after delete: %+v", s)
	}
}

func sameSnapshot(a, b channelgroups.Snapshot) bool {
	return a.Version == b.Version && a.Cleared == b.Cleared && len(a.Entries) == len(b.Entries) &&
		(len(a.Entries) == 0 || reflect.DeepEqual(a.Entries, b.Entries))
}

// TestMergeSnapshots: merging snapshots that each saw part of a history
// gives the model of the whole history.
func TestMergeSnapshots(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	pool := []channelgroups.Channel{"a", "b", "c", "d"}
	for trial := range 3000 {
		var all, left, right channelgroups.Snapshot
		for range 1 + r.IntN(10) {
			e := channelgroups.Edit{Op: channelgroups.Op(1 + r.IntN(3)), At: channelgroups.Timetoken(10 * (1 + r.IntN(5)))}
			if e.Op != channelgroups.OpClear {
				e.Channels = []channelgroups.Channel{pool[r.IntN(len(pool))]}
			}
			all.Apply(e)
			switch r.IntN(3) {
			case 0:
				left.Apply(e)
			case 1:
				right.Apply(e)
			default:
				left.Apply(e)
				right.Apply(e)
			}
		}
		if got := channelgroups.MergeSnapshots(left, right); !sameSnapshot(got, all) {
			t.Fatalf("trial %d: merge %+v, model %+v", trial, got, all)
		}
	}
}

// TestRestate: an outbox record is announced as storage holds its channels.
// The first case is the record Cassandra keeps for an add and a remove of
// one group at one timetoken (their channels under the larger op, remove):
// restated, it is the two edits that were made. Announcing what Restate
// returns never changes the snapshot it was restated from.
func TestRestate(t *testing.T) {
	snap := func(es ...channelgroups.Entry) channelgroups.Snapshot {
		s := channelgroups.Snapshot{}
		for _, e := range es {
			op := channelgroups.OpAdd
			if e.State == channelgroups.Removed {
				op = channelgroups.OpRemove
			}
			s.Apply(channelgroups.Edit{Account: "a", Group: "g", Op: op, Channels: []channelgroups.Channel{e.Channel}, At: e.At})
		}
		return s
	}
	add := func(c channelgroups.Channel, at channelgroups.Timetoken) channelgroups.Entry {
		return channelgroups.Entry{Channel: c, State: channelgroups.Added, At: at}
	}
	rm := func(c channelgroups.Channel, at channelgroups.Timetoken) channelgroups.Entry {
		return channelgroups.Entry{Channel: c, State: channelgroups.Removed, At: at}
	}
	edit := func(op channelgroups.Op, at channelgroups.Timetoken, chs ...channelgroups.Channel) channelgroups.Edit {
		return channelgroups.Edit{Account: "a", Group: "g", Shard: 3, Op: op, Channels: chs, At: at}
	}
	for _, tc := range []struct {
		name   string
		snap   channelgroups.Snapshot
		record channelgroups.Edit
		want   []channelgroups.Edit
	}{
		{"an add and a remove at one timetoken, merged", snap(add("a", 10), add("d", 10), rm("b", 10)),
			edit(channelgroups.OpRemove, 10, "a", "d", "b"),
			[]channelgroups.Edit{edit(channelgroups.OpAdd, 10, "a", "d"), edit(channelgroups.OpRemove, 10, "b")}},
		{"the record as it was made", snap(add("a", 10), add("b", 10)),
			edit(channelgroups.OpAdd, 10, "a", "b"), []channelgroups.Edit{edit(channelgroups.OpAdd, 10, "a", "b")}},
		{"a newer write of a channel", snap(rm("a", 20), add("b", 10)),
			edit(channelgroups.OpAdd, 10, "a", "b"),
			[]channelgroups.Edit{edit(channelgroups.OpAdd, 10, "b"), edit(channelgroups.OpRemove, 20, "a")}},
		{"a remove storage no longer holds", snap(add("b", 5)), edit(channelgroups.OpRemove, 10, "x"), nil},
		{"a delete of the group", channelgroups.Snapshot{Version: 20, Cleared: 10, Entries: []channelgroups.Entry{add("b", 20)}}, edit(channelgroups.OpClear, 10),
			[]channelgroups.Edit{edit(channelgroups.OpClear, 10)}},
	} {
		got := tc.snap.Restate(tc.record)
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: Restate(%+v) = %+v, want %+v", tc.name, tc.record, got, tc.want)
		}
		after := tc.snap
		after.Entries = append([]channelgroups.Entry(nil), tc.snap.Entries...)
		for _, e := range got {
			after.Apply(e)
		}
		if !reflect.DeepEqual(after, tc.snap) {
			t.Errorf("%s: announcing %+v changes the snapshot %+v into %+v", tc.name, got, tc.snap, after)
		}
	}
}
