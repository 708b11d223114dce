package cluster

import (
	"fmt"
	"slices"
	"testing"
)

func names(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("node-%d", i+1)
	}
	return out
}

func TestRingOwnersAreDistinct(t *testing.T) {
	for _, tc := range []struct{ nodes, replicas int }{
		{0, 2}, {1, 2}, {2, 2}, {3, 2}, {3, 3}, {5, 3}, {4, 1}, {2, 5},
	} {
		t.Run(fmt.Sprintf("nodes=%d/replicas=%d", tc.nodes, tc.replicas), func(t *testing.T) {
			r := NewRing(names(tc.nodes), 64, tc.replicas)
			want := min(tc.nodes, tc.replicas)
			for shard := range 64 {
				owners := r.Owners(shard)
				if len(owners) != want {
					t.Fatalf("shard %d: got %d owners %v, want %d", shard, len(owners), owners, want)
				}
				if len(slices.Compact(slices.Sorted(slices.Values(owners)))) != len(owners) {
					t.Fatalf("shard %d: got owners %v, want distinct", shard, owners)
				}
				if want > 0 && r.Primary(shard) != owners[0] {
					t.Fatalf("shard %d: got primary %q, want the first owner of %v", shard, r.Primary(shard), owners)
				}
			}
		})
	}
}

func TestRingBalance(t *testing.T) {
	const shards, replicas = 64, 2
	r := NewRing(names(3), shards, replicas)
	for _, n := range names(3) {
		a := r.Assignment(n)
		primaries := 0
		for s := range shards {
			if a.IsPrimary(s) {
				primaries++
			}
		}
		// 64*2/3 ≈ 43 owned and 64/3 ≈ 21 primaries; the bands are about
		// three standard deviations wide.
		if got := a.Count(); got < 31 || got > 54 {
			t.Errorf("%s: got %d shards owned, want about %d", n, got, shards*replicas/3)
		}
		if primaries < 10 || primaries > 32 {
			t.Errorf("%s: got primary of %d shards, want about %d", n, primaries, shards/3)
		}
	}
}

func TestRingMinimalMovement(t *testing.T) {
	const shards = 256
	for _, replicas := range []int{1, 2, 3} {
		t.Run(fmt.Sprintf("replicas=%d", replicas), func(t *testing.T) {
			before := NewRing(names(3), shards, replicas)
			after := NewRing(names(4), shards, replicas)
			gained := 0
			for s := range shards {
				old, cur := before.Owners(s), after.Owners(s)
				// Without the new node, the new owners are the old ones in
				// the same order, less the one the new node displaced.
				kept := slices.DeleteFunc(slices.Clone(cur), func(n string) bool { return n == "node-4" })
				if len(kept) < len(cur) {
					gained++
				}
				if !slices.Equal(kept, old[:len(kept)]) {
					t.Fatalf("shard %d: owners went from %v to %v; only node-4 may displace an owner", s, old, cur)
				}
			}
			if gained == 0 {
				t.Fatalf("got node-4 owning no shard, want about %d", shards*replicas/4)
			}
		})
	}
}

func TestRingDeterministic(t *testing.T) {
	a := NewRing([]string{"c", "a", "b"}, 64, 2)
	b := NewRing([]string{"b", "c", "a", "a"}, 64, 2)
	if a.Version() != b.Version() {
		t.Fatalf("got versions %d and %d for the same nodes, want equal", a.Version(), b.Version())
	}
	for s := range 64 {
		if !slices.Equal(a.Owners(s), b.Owners(s)) {
			t.Fatalf("shard %d: got owners %v and %v, want equal", s, a.Owners(s), b.Owners(s))
		}
	}
	// Stable across processes and releases: a change here reshuffles every
	// running cluster, so it must be deliberate.
	if got, want := a.Version(), uint64(goldenVersion); got != want {
		t.Errorf("got version %d, want %d", got, want)
	}
	if got, want := a.Owners(0), goldenOwners0; !slices.Equal(got, want) {
		t.Errorf("got shard 0 owners %v, want %v", got, want)
	}
	if a.Version() >= 1<<53 {
		t.Errorf("got version %d, want < 2^53", a.Version())
	}
	for _, other := range []*Ring{
		NewRing([]string{"a", "b"}, 64, 2),
		NewRing([]string{"a", "b", "c"}, 65, 2),
		NewRing([]string{"a", "b", "c"}, 64, 3),
	} {
		if other.Version() == a.Version() {
			t.Errorf("got version %d for a different ring, want another", other.Version())
		}
	}
}

const goldenVersion = 3471730515676090

var goldenOwners0 = []string{"b", "a"}

func TestRingOutOfRange(t *testing.T) {
	r := NewRing(names(3), 8, 2)
	for _, s := range []int{-1, 8} {
		if got := r.Owners(s); got != nil {
			t.Errorf("Owners(%d): got %v, want nil", s, got)
		}
		if got := r.Primary(s); got != "" {
			t.Errorf("Primary(%d): got %q, want none", s, got)
		}
	}
}

func BenchmarkNewRing(b *testing.B) {
	nodes := names(10)
	b.ReportAllocs()
	for b.Loop() {
		NewRing(nodes, 1024, 2)
	}
}
