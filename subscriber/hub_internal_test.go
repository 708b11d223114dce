package subscriber

import (
	"testing"

	"github.com/groupcast/groupcast/channelgroups"
)

// TestHeldAt: how a message at a log position is judged by its group's
// recent edits when the group was not tracked then.
func TestHeldAt(t *testing.T) {
	at := func(ms uint64) channelgroups.Position { return channelgroups.Position{Ms: ms} }
	add := func(ms uint64, held ...channelgroups.Channel) loggedEdit {
		return loggedEdit{pos: at(ms), op: channelgroups.OpAdd, channels: []channelgroups.Channel{"c"}, held: held, heldKnown: true}
	}
	remove := func(ms uint64, held ...channelgroups.Channel) loggedEdit {
		return loggedEdit{pos: at(ms), op: channelgroups.OpRemove, channels: []channelgroups.Channel{"c"}, held: held, heldKnown: true}
	}
	unknown := func(e loggedEdit) loggedEdit { e.held, e.heldKnown = nil, false; return e }
	clear := loggedEdit{pos: at(50), op: channelgroups.OpClear, held: []channelgroups.Channel{"c"}, heldKnown: true}
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
