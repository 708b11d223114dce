package channelgroups

import (
	"hash/fnv"
	"slices"
	"strings"
)

// GroupKey names one group of one account.
type GroupKey struct {
	Account Account
	Group   Group
}

// DefaultShards is how many shards accounts are spread over.
const DefaultShards = 64

// ShardOf returns the shard of account a among n shards.
func ShardOf(a Account, n int) int {
	h := fnv.New32a()
	h.Write([]byte(a))
	return int(h.Sum32() % uint32(n))
}

// View is a group's membership as a node serves it: the storage snapshot
// with the recent changes of the overlay merged in. A View is immutable.
type View struct {
	// Channels are the group's channels in name order.
	Channels []Channel
	// Version is the timetoken of the newest edit the view reflects.
	Version Timetoken
}

// Contains reports whether channel c is in the view.
func (v *View) Contains(c Channel) bool {
	_, ok := slices.BinarySearchFunc(v.Channels, c, func(x, c Channel) int { return strings.Compare(string(x), string(c)) })
	return ok
}

// Merge computes the view of a snapshot overlaid with recent entries (at
// most one per channel) and a recent delete at cleared (0 if none): per
// channel the superseding entry wins, and everything written at or before
// the latest delete is gone. The answer is what Snapshot.Apply would give
// after applying the overlay's edits, so the view never disagrees with the
// storage it converges to.
func Merge(snap *Snapshot, overlay []Entry, cleared Timetoken) *View {
	cleared = max(cleared, snap.Cleared)
	v := &View{Version: max(snap.Version, cleared)}
	byName := func(a, b Entry) int { return strings.Compare(string(a.Channel), string(b.Channel)) }
	over := slices.Clone(overlay)
	slices.SortFunc(over, byName)
	v.Channels = make([]Channel, 0, len(snap.Entries)+len(over))
	i, j := 0, 0
	for i < len(snap.Entries) || j < len(over) {
		var e Entry
		switch {
		case j == len(over) || (i < len(snap.Entries) && snap.Entries[i].Channel < over[j].Channel):
			e = snap.Entries[i]
			i++
		case i == len(snap.Entries) || over[j].Channel < snap.Entries[i].Channel:
			e = over[j]
			j++
		default: // same channel in both
			e = snap.Entries[i]
			if over[j].Supersedes(e) {
				e = over[j]
			}
			i++
			j++
		}
		v.Version = max(v.Version, e.At)
		if e.State == Added && e.At > cleared {
			v.Channels = append(v.Channels, e.Channel)
		}
	}
	return v
}
