package subscriber

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/groupcast/groupcast/channelgroups"
)

// count returns a counter's value.
func count(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// liveSeqs returns the insertion sequences of every entry the rings hold.
func liveSeqs(h *hub) map[uint64]bool {
	out := map[uint64]bool{}
	for _, r := range h.rings {
		for _, e := range r.entries {
			out[e.seq] = true
		}
	}
	return out
}

// checkRings fails unless the hub's byte count, its order of rings and its
// rings agree: every ring is non-empty, in order at its index, its entries
// in insertion order; the heap property holds; bytes is what they hold.
func checkRings(t *testing.T, h *hub) {
	t.Helper()
	var bytes int64
	if len(h.order) != len(h.rings) {
		t.Fatalf("%d rings in order, %d in the map", len(h.order), len(h.rings))
	}
	for k, r := range h.rings {
		if len(r.entries) == 0 {
			t.Fatalf("ring %v is empty and kept", k)
		}
		if r.key != k || h.order[r.index] != r {
			t.Fatalf("ring %v: key %v, index %d holds another ring", k, r.key, r.index)
		}
		bytes += ringOverhead
		for i, e := range r.entries {
			bytes += e.size()
			if i > 0 && e.seq <= r.entries[i-1].seq {
				t.Fatalf("ring %v out of insertion order at %d", k, i)
			}
		}
	}
	for i := 1; i < len(h.order); i++ {
		if h.order.Less(i, (i-1)/2) {
			t.Fatalf("order is not a heap at %d", i)
		}
	}
	if bytes != h.bytes {
		t.Fatalf("the hub counts %d bytes; its rings hold %d", h.bytes, bytes)
	}
}

// TestRingBytesInvariants applies messages of random sizes to random
// channels of several accounts, with sweeps and dropped shards among them:
// the accounting and the order stay exact, the rings hold at most
// RingBytes, and the entry evicted by bytes is always the oldest of all.
func TestRingBytesInvariants(t *testing.T) {
	const limit = 200 << 10
	cfg := Config{RingBytes: limit, RingSize: 8, Shards: 4, RingAge: time.Minute}
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	now := time.UnixMilli(1_800_000_000_000)
	n := &Node{cfg: cfg, now: func() time.Time { return now }, views: &views{}}
	h, err := newHub(n)
	if err != nil {
		t.Fatal(err)
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 2))
	seq := uint64(0)
	for i := range 5000 {
		switch x := r.IntN(100); {
		case x == 0:
			h.sweep(now.Add(cfg.RingAge - time.Duration(r.IntN(30))*time.Second))
		case x == 1:
			h.dropShard(r.IntN(cfg.Shards))
		default:
			a := channelgroups.Account(fmt.Sprint("a", r.IntN(8)))
			m := &Message{Account: a, Channel: channelgroups.Channel(fmt.Sprint("c", r.IntN(50))), Payload: make([]byte, r.IntN(8<<10)),
				Pos: channelgroups.Position{Ms: uint64(now.UnixMilli()), Seq: seq}}
			seq++
			before := liveSeqs(h)
			evicted := count(t, h.m.byBytes)
			h.applyMessage(m)
			// Entries evicted by bytes went oldest first: each is older
			// than every entry left.
			after := liveSeqs(h)
			oldest := uint64(1<<64 - 1)
			for s := range after {
				oldest = min(oldest, s)
			}
			older := 0
			for s := range before {
				if !after[s] && s < oldest {
					older++
				}
			}
			if byBytes := int(count(t, h.m.byBytes) - evicted); older < byBytes {
				t.Fatalf("step %d: %d entries evicted by bytes, only %d of the entries gone were older than all left", i, byBytes, older)
			}
		}
		if h.bytes > limit {
			t.Fatalf("step %d: the rings hold %d bytes, more than %d", i, h.bytes, limit)
		}
		checkRings(t, h)
		if i%500 == 0 {
			now = now.Add(10 * time.Second)
		}
	}
}
