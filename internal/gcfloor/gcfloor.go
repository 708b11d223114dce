// Package gcfloor keeps the garbage collector's heap goal at or above a
// floor. Go collects when the heap has grown by GOGC percent (100) over
// what the last collection found live; a node whose live heap is a few
// megabytes but which allocates a hundred megabytes a second per core (a
// long-poll answer, a request, a log entry each) would collect every few
// tens of milliseconds, and on a node pinned to one core every collection
// takes a quarter of that core for its mark phase and delays every
// goroutine queued meanwhile: at 1,000 subscribers the fan-out benchmark
// saw 18 collections in 2 s and goroutines waiting up to 17 ms to run.
// With a floor, the goal is max(what GOGC gives, floor): small heaps are
// collected a few times a second, large ones exactly as GOGC says. A
// GOMEMLIMIT still bounds the heap (the runtime collects at the limit
// whatever the goal).
//
// How: while the live heap is small (under a quarter of the floor) the
// process runs with GOGC off and a memory limit at the floor plus what the
// runtime holds beside the heap (goroutine stacks above all; limitFor), so
// the runtime collects when the heap reaches the floor; once a
// collection finds more than half the floor live it goes back to GOGC (and
// to the memory limit the process started with), and back again below a
// quarter. A finalizer that re-arms itself looks after each collection.
// Tuning GOGC itself to put the goal at the floor (GOGC = floor/live) is
// what tuners usually do, and it overshoots: the percent set for a small
// live heap applies to the next collection's live heap too, and a node
// whose live heap grew tenfold between two collections (a flood of large
// publishes) would let its heap grow to ten times the floor before the
// tuner caught up (the abuse suite saw 900 MiB). A memory limit cannot
// overshoot: past it the runtime collects at once.
package gcfloor

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
)

var (
	mu        sync.Mutex
	floor     atomic.Uint64
	base      int   // GOGC as the process started (the GOGC variable, or 100)
	baseLimit int64 // the memory limit as the process started (GOMEMLIMIT, or none)
	small     bool  // GOGC off, memory limit at the floor
	started   bool

	tunes atomic.Uint64 // collections the tuner ran after, for tests
)

// Set makes floor bytes the smallest heap goal of the process (0: none,
// GOGC alone). It applies to the whole process; the last Set wins. With
// GOGC=off there is nothing to raise, and Set does nothing.
func Set(bytes uint64) {
	mu.Lock()
	defer mu.Unlock()
	if !started {
		base = debug.SetGCPercent(100)
		debug.SetGCPercent(base)
		baseLimit = debug.SetMemoryLimit(-1) // a negative limit only reads it
		if base < 0 {
			return // GOGC=off
		}
		started = true
		arm()
	}
	floor.Store(bytes)
	tuneLocked()
}

// Small reports whether a live heap of live bytes is run with the floor
// as the memory limit (GOGC off), given whether it was so far: under a
// quarter of the floor it is, over half it is not, in between it stays.
func Small(floor, live uint64, was bool) bool {
	if floor == 0 {
		return false
	}
	if was {
		return live <= floor/2
	}
	return live < floor/4
}

// sentinel is the object whose finalizer runs after each collection.
type sentinel struct {
	_ *int // a pointer, so that the allocator does not batch it with others (tiny allocations share a block)
}

func arm() {
	runtime.SetFinalizer(&sentinel{}, func(*sentinel) {
		mu.Lock()
		defer mu.Unlock()
		tunes.Add(1)
		tuneLocked()
		arm()
	})
}

// samples are what the tuner reads after each collection: the live heap,
// and the runtime's memory by class, to tell the heap's from the rest's.
var samples = []metrics.Sample{
	{Name: "/gc/heap/live:bytes"},
	{Name: "/memory/classes/total:bytes"},
	{Name: "/memory/classes/heap/released:bytes"},
	{Name: "/memory/classes/heap/objects:bytes"},
	{Name: "/memory/classes/heap/unused:bytes"},
	{Name: "/memory/classes/heap/free:bytes"},
}

func tuneLocked() {
	metrics.Read(samples)
	for _, s := range samples {
		if s.Value.Kind() != metrics.KindUint64 {
			return // a runtime without the metrics: leave GOGC be
		}
	}
	f := floor.Load()
	want := Small(f, samples[0].Value.Uint64(), small)
	switch {
	case want && !small:
		// The limit first: GOGC off without it would let the heap grow.
		debug.SetMemoryLimit(limitFor(f))
		debug.SetGCPercent(-1)
	case !want && small:
		debug.SetGCPercent(base)
		debug.SetMemoryLimit(baseLimit)
	case want:
		debug.SetMemoryLimit(limitFor(f)) // the floor, or the memory beside the heap, changed
	}
	small = want
}

// limitFor is the memory limit that lets the heap reach floor: the floor
// plus what the runtime holds beside the heap (goroutine stacks, its own
// metadata), as the last read of samples found it, and no more than the
// limit the process started with. The memory limit counts all of it: at
// the floor alone, a node parking 10,000 subscribers (some 20-160 MiB of
// goroutine stacks while they are being answered) was over its limit with
// almost nothing on the heap, and the runtime then collects without pause
// (up to half the CPU): the fan-out benchmark's node fell to a third of
// its answers for seconds after a quiet spell.
func limitFor(floor uint64) int64 {
	v := func(i int) uint64 { return samples[i].Value.Uint64() }
	held := v(1) - min(v(2), v(1)) // what the memory limit counts
	heap := v(3) + v(4) + v(5)
	beside := held - min(heap, held)
	return min(int64(floor+beside), baseLimit)
}
