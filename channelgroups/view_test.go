package channelgroups_test

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/groupcast/groupcast/channelgroups"
)

// TestMergeMatchesApply: a view merged from any split of a history into
// "already in storage" and "still in the overlay" equals the model applied to
// the whole history. This is G5 for the read path: a reader never sees the
// answer flip when storage catches up.
func TestMergeMatchesApply(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 9))
	pool := []channelgroups.Channel{"a", "b", "c", "d"}
	for trial := range 5000 {
		var all, stored channelgroups.Snapshot
		var overlay []channelgroups.Entry
		var cleared channelgroups.Timetoken
		for range 1 + r.IntN(12) {
			e := channelgroups.Edit{Op: channelgroups.Op(1 + r.IntN(3)), At: channelgroups.Timetoken(10 * (1 + r.IntN(6)))}
			if e.Op == channelgroups.OpClear && r.IntN(3) > 0 {
				e.Op = channelgroups.OpAdd
			}
			if e.Op != channelgroups.OpClear {
				e.Channels = []channelgroups.Channel{pool[r.IntN(len(pool))]}
			}
			all.Apply(e)
			if r.IntN(2) == 0 {
				stored.Apply(e)
				continue
			}
			// Into the overlay: one entry per channel, the superseding one.
			if e.Op == channelgroups.OpClear {
				cleared = max(cleared, e.At)
				continue
			}
			st := channelgroups.Added
			if e.Op == channelgroups.OpRemove {
				st = channelgroups.Removed
			}
			n := channelgroups.Entry{Channel: e.Channels[0], State: st, At: e.At}
			if i := slices.IndexFunc(overlay, func(x channelgroups.Entry) bool { return x.Channel == n.Channel }); i < 0 {
				overlay = append(overlay, n)
			} else if n.Supersedes(overlay[i]) {
				overlay[i] = n
			}
		}
		v := channelgroups.Merge(&stored, overlay, cleared)
		if want := all.Channels(); !slices.Equal(v.Channels, want) || v.Version != all.Version {
			t.Fatalf("trial %d: view %v v%v, model %v v%v\nstored %+v overlay %+v cleared %v",
				trial, v.Channels, v.Version, want, all.Version, stored, overlay, cleared)
		}
		for _, c := range pool {
			if v.Contains(c) != slices.Contains(v.Channels, c) {
				t.Fatalf("Contains(%s) wrong", c)
			}
		}
	}
}

func TestShardOf(t *testing.T) {
	seen := map[int]bool{}
	for i := range 1000 {
		s := channelgroups.ShardOf(channelgroups.Account(rune('a'+i%26))+channelgroups.Account(rune('a'+i/26)), 64)
		if s < 0 || s >= 64 {
			t.Fatalf("shard %d out of range", s)
		}
		seen[s] = true
	}
	if len(seen) < 32 {
		t.Fatalf("1000 accounts landed on only %d of 64 shards", len(seen))
	}
	if channelgroups.ShardOf("demo", 64) != channelgroups.ShardOf("demo", 64) {
		t.Fatal("ShardOf is not deterministic")
	}
}
