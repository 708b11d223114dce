package channelgroups

import (
	"cmp"
	"slices"
	"strings"
)

// State is whether a channel is in a group.
type State int8

// The stored values of State. Removed is the zero value.
const (
	Removed State = 0
	Added   State = 1
)

func (s State) String() string {
	if s == Added {
		return "added"
	}
	return "removed"
}

// Entry is the last write of one channel of a group: its state and the
// timetoken it was written at.
type Entry struct {
	Channel Channel
	State   State
	At      Timetoken
}

// Supersedes reports whether e wins over o for the same channel: the later
// timetoken wins, and on equal timetokens a remove beats an add. This is the
// rule Cassandra applies to the cells groupcast writes (an add is a plain
// cell, a remove a cell with a TTL, and Cassandra prefers the expiring cell
// on a timestamp tie); TestTieRule in channelgroups/cassandra proves it
// against a real server.
func (e Entry) Supersedes(o Entry) bool {
	if e.At != o.At {
		return e.At > o.At
	}
	return e.State == Removed && o.State == Added
}

// Op is the kind of an Edit.
type Op uint8

// The edits a group supports.
const (
	OpAdd    Op = iota + 1 // add Channels
	OpRemove               // remove Channels
	OpClear                // remove every channel written at or before At (delete group)
)

func (op Op) String() string {
	switch op {
	case OpAdd:
		return "add"
	case OpRemove:
		return "remove"
	case OpClear:
		return "clear"
	}
	return "op?"
}

// Edit is one acknowledged change to one group, written at one timetoken.
type Edit struct {
	Account  Account
	Group    Group
	Shard    int // ShardOf(Account): the log the edit is announced in
	Op       Op
	Channels []Channel // empty for OpClear
	At       Timetoken
	// Held lists the channels the edit names (for OpClear: every channel)
	// that the group held, as storage answered just before the edit was
	// made, when HeldKnown; it tells a reader of the log whether the edit
	// changed anything. Stores do not keep it.
	Held      []Channel
	HeldKnown bool
}

// held returns the channels of chs (all of them if chs is nil) that snap
// holds.
func held(snap *Snapshot, chs []Channel) []Channel {
	if chs == nil {
		return snap.Channels()
	}
	var out []Channel
	for _, c := range chs {
		if e, ok := snap.Lookup(c); ok && e.State == Added {
			out = append(out, c)
		}
	}
	return out
}

// Snapshot is a group's membership as storage holds it.
type Snapshot struct {
	// Version is the highest timetoken of any edit of the group; 0 if never edited.
	Version Timetoken
	// Cleared is the timetoken of the last delete of the group: every channel
	// written at or before it is gone. 0 if never deleted.
	Cleared Timetoken
	// Entries holds the last write of each channel written after Cleared,
	// removes included (until storage ages them out), sorted by channel.
	Entries []Entry
}

// Exists reports whether the group has been edited since it was last deleted.
func (s Snapshot) Exists() bool { return s.Version > s.Cleared }

// Channels returns the channels currently in the group, in name order.
func (s Snapshot) Channels() []Channel {
	out := make([]Channel, 0, len(s.Entries))
	for _, e := range s.Entries {
		if e.State == Added {
			out = append(out, e.Channel)
		}
	}
	return out
}

// Count returns how many channels are in the group.
func (s Snapshot) Count() int {
	n := 0
	for _, e := range s.Entries {
		if e.State == Added {
			n++
		}
	}
	return n
}

// Lookup returns the entry for channel c.
func (s Snapshot) Lookup(c Channel) (Entry, bool) {
	i, ok := slices.BinarySearchFunc(s.Entries, c, func(e Entry, c Channel) int { return strings.Compare(string(e.Channel), string(c)) })
	if !ok {
		return Entry{}, false
	}
	return s.Entries[i], true
}

// Apply merges an edit into the snapshot with last-writer-wins semantics. It
// is the reference model of what the stores keep: applying the same edits in
// any order gives the same snapshot, and the same snapshot Cassandra returns.
func (s *Snapshot) Apply(e Edit) {
	s.Version = max(s.Version, e.At)
	if e.Op == OpClear {
		if e.At <= s.Cleared {
			return
		}
		s.Cleared = e.At
		s.Entries = slices.DeleteFunc(s.Entries, func(x Entry) bool { return x.At <= e.At })
		return
	}
	if e.At <= s.Cleared { // shadowed by a delete at the same or a later timetoken
		return
	}
	state := Added
	if e.Op == OpRemove {
		state = Removed
	}
	for _, c := range e.Channels {
		n := Entry{Channel: c, State: state, At: e.At}
		i, ok := slices.BinarySearchFunc(s.Entries, c, func(x Entry, c Channel) int { return strings.Compare(string(x.Channel), string(c)) })
		switch {
		case !ok:
			s.Entries = slices.Insert(s.Entries, i, n)
		case n.Supersedes(s.Entries[i]):
			s.Entries[i] = n
		}
	}
}

// Restate returns the edits an outbox record of the group stands for, given
// s, the group as storage holds it, read after the record was written (a
// store writes the record with the edit's rows, at once). The record alone
// can be wrong: edits of one group at one timetoken share a record in the
// Cassandra outbox, which keeps the union of their channels under the larger
// op (an add at t merged with a remove at t reads as a remove of both
// edits' channels). So each channel the record names is restated as s holds
// it, at the timetoken of that write, grouped into one edit per op and
// timetoken (oldest first): every one of them is a write storage holds, the
// record's own or a newer one, so announcing them can neither undo an edit
// nor lose the record's. A channel s does not hold (its remove expired) is
// left out. A delete of the group (OpClear) is returned as it is: at its
// timetoken it shadows every write of the group, so nothing else its record
// could hold was kept.
func (s Snapshot) Restate(e Edit) []Edit {
	if e.Op == OpClear {
		return []Edit{e}
	}
	var out []Edit
	for _, c := range e.Channels {
		st, ok := s.Lookup(c)
		if !ok {
			continue
		}
		op := OpAdd
		if st.State == Removed {
			op = OpRemove
		}
		i := slices.IndexFunc(out, func(x Edit) bool { return x.Op == op && x.At == st.At })
		if i < 0 {
			out = append(out, Edit{Account: e.Account, Group: e.Group, Shard: e.Shard, Op: op, At: st.At})
			i = len(out) - 1
		}
		out[i].Channels = append(out[i].Channels, c)
	}
	slices.SortFunc(out, func(a, b Edit) int { return cmp.Or(cmp.Compare(a.At, b.At), cmp.Compare(a.Op, b.Op)) })
	return out
}

// MergeSnapshots combines two snapshots of the same group read from
// different places (say, two datacenters): the result is what Apply would
// give after every edit either of them reflects.
func MergeSnapshots(a, b Snapshot) Snapshot {
	out := Snapshot{Version: max(a.Version, b.Version), Cleared: max(a.Cleared, b.Cleared)}
	i, j := 0, 0
	for i < len(a.Entries) || j < len(b.Entries) {
		var e Entry
		switch {
		case j == len(b.Entries) || (i < len(a.Entries) && a.Entries[i].Channel < b.Entries[j].Channel):
			e = a.Entries[i]
			i++
		case i == len(a.Entries) || b.Entries[j].Channel < a.Entries[i].Channel:
			e = b.Entries[j]
			j++
		default:
			e = a.Entries[i]
			if b.Entries[j].Supersedes(e) {
				e = b.Entries[j]
			}
			i++
			j++
		}
		if e.At > out.Cleared {
			out.Entries = append(out.Entries, e)
		}
	}
	return out
}
