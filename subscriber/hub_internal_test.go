package subscriber

import (
	"maps"
	"testing"

	"github.com/groupcast/groupcast/channelgroups"
	"github.com/groupcast/groupcast/internal/testenv"
)

// TestHeldAt: how a message at a log position is judged by its group's
// recent edits when the group was not tracked then.
func TestHeldAt(t *testing.T) {
	at := func(ms uint64) channelgroups.Position { return channelgroups.Position{Ms: ms} }
	add := func(ms uint64, held ...channelgroups.Channel) loggedEdit {
		return loggedEdit{pos: at(ms), at: channelgroups.Timetoken(ms), op: channelgroups.OpAdd, channels: []channelgroups.Channel{"c"}, held: held, heldKnown: true}
	}
	remove := func(ms uint64, held ...channelgroups.Channel) loggedEdit {
		return loggedEdit{pos: at(ms), at: channelgroups.Timetoken(ms), op: channelgroups.OpRemove, channels: []channelgroups.Channel{"c"}, held: held, heldKnown: true}
	}
	unknown := func(e loggedEdit) loggedEdit { e.held, e.heldKnown = nil, false; return e }
	clear := loggedEdit{pos: at(50), at: 50, op: channelgroups.OpClear, held: []channelgroups.Channel{"c"}, heldKnown: true}
	// copied: an edit of another region copied into the log later than its
	// timetoken says (at 1 while the log is at ms).
	copied := func(e loggedEdit, at channelgroups.Timetoken) loggedEdit { e.at = at; return e }
	for _, tc := range []struct {
		name     string
		es       []loggedEdit
		p        uint64
		held, ok bool
	}{
		{"no edits", nil, 10, false, false},
		{"added before", []loggedEdit{add(5)}, 10, true, true},
		{"removed before", []loggedEdit{add(5), remove(8, "c")}, 10, false, true},
		{"re-added before", []loggedEdit{remove(3), add(5), remove(8, "c"), add(9)}, 10, true, true},
		{"deleted before", []loggedEdit{add(5), clear}, 60, false, true},
		{"removed after, held then", []loggedEdit{remove(20, "c")}, 10, true, true},
		{"removed after, not held then (a remove that changed nothing)", []loggedEdit{remove(20)}, 10, false, true},
		{"added after, not held then", []loggedEdit{add(20)}, 10, false, true},
		{"added after, held then (an add that changed nothing)", []loggedEdit{add(20, "c")}, 10, true, true},
		{"deleted after, held then", []loggedEdit{clear}, 10, true, true},
		{"the first edit after does not say", []loggedEdit{unknown(remove(20, "c"))}, 10, false, false},
		{"an older add copied after a newer remove (two regions)", []loggedEdit{remove(5, "c"), copied(add(6), 1)}, 10, false, true},
		{"an older remove copied after a newer add (two regions)", []loggedEdit{add(5), copied(remove(6, "c"), 1)}, 10, true, true},
		{"an add and a remove at the same timetoken: remove wins", []loggedEdit{remove(5), copied(add(6), 5)}, 10, false, true},
		{"an older delete copied after a newer add", []loggedEdit{add(60), clear}, 70, true, true},
		{"another channel's edits", []loggedEdit{{pos: at(5), op: channelgroups.OpAdd, channels: []channelgroups.Channel{"d"}}}, 10, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			held, ok := heldAt(tc.es, "c", at(tc.p))
			if held != tc.held || ok != tc.ok {
				t.Fatalf("heldAt = %t, %t; want %t, %t", held, ok, tc.held, tc.ok)
			}
		})
	}
}

// TestLastOps: a group tracked late joins the channels whose winning edit
// (last writer wins, not the last in the log) is an add.
func TestLastOps(t *testing.T) {
	e := func(at channelgroups.Timetoken, op channelgroups.Op, chs ...channelgroups.Channel) loggedEdit {
		return loggedEdit{at: at, op: op, channels: chs}
	}
	got := lastOps([]loggedEdit{
		e(5, channelgroups.OpAdd, "a", "b", "c", "d"),
		e(8, channelgroups.OpRemove, "a"),
		e(3, channelgroups.OpAdd, "a"), // an older add, copied from another region later
		e(6, channelgroups.OpClear),    // a delete: b, c, d out
		e(7, channelgroups.OpAdd, "c"), // c back
		e(6, channelgroups.OpAdd, "d"), // ties the delete: the delete wins
	})
	want := map[channelgroups.Channel]bool{"a": false, "b": false, "c": true, "d": false}
	if !maps.Equal(got, want) {
		t.Fatalf("lastOps = %v, want %v", got, want)
	}
}

// TestReleasedDeliveriesAreReusedCleared: an answer's deliveries given back
// are reused by a later answer, and the array keeps no message alive
// meanwhile; arrays of another size are not kept.
func TestReleasedDeliveriesAreReusedCleared(t *testing.T) {
	reused := 0
	for range 100 {
		ds := getDeliveries()
		if len(ds) != 0 {
			t.Fatalf("a pooled slice has %d deliveries, want 0", len(ds))
		}
		for range MaxDeliveries {
			ds = append(ds, Delivery{Msg: &Message{}, Group: "g"})
		}
		first := &ds[:1][0]
		ReleaseDeliveries(ds[:MaxDeliveries/2]) // as an answer cut short gives it back
		again := getDeliveries()
		if cap(again) > 0 && &again[:1][0] == first {
			reused++
			for i, d := range again[:cap(again)] {
				if d.Msg != nil || d.Group != "" {
					t.Fatalf("a reused array keeps delivery %d of its last answer: %+v", i, d)
				}
			}
		}
		ReleaseDeliveries(again)
	}
	if reused == 0 {
		t.Fatal("released deliveries were never reused")
	}
	for _, c := range []int{pooledDeliveries / 2, pooledDeliveries + 1, 4 * pooledDeliveries} {
		ReleaseDeliveries(make([]Delivery, 0, c))
	}
	for range 10 {
		if ds := getDeliveries(); cap(ds) != pooledDeliveries {
			t.Fatalf("the pool kept an array of %d deliveries", cap(ds))
		}
	}
}

// TestDeliveriesAllocs: taking an answer's array and giving it back
// allocates nothing.
func TestDeliveriesAllocs(t *testing.T) {
	testenv.CountAllocs(t)
	ReleaseDeliveries(getDeliveries())
	if n := testing.AllocsPerRun(100, func() { ReleaseDeliveries(getDeliveries()) }); n != 0 {
		t.Errorf("taking and giving back an answer's array: %.0f allocations, want 0", n)
	}
}
