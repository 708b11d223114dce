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
// It is the usual tuner: after each collection (a finalizer that re-arms
// itself) it reads the live heap (runtime/metrics) and sets GOGC
// (debug.SetGCPercent) to the percent that puts the goal at the floor, never
// below the GOGC the process started with.
package gcfloor

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
)

var (
	mu      sync.Mutex
	floor   atomic.Uint64
	base    int // GOGC as the process started (the GOGC variable, or 100)
	current int // what the tuner set last
	started bool

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
		current = base
		if base < 0 {
			return // GOGC=off
		}
		started = true
		arm()
	}
	floor.Store(bytes)
	tuneLocked()
}

// Percent is the GOGC that puts the heap goal, live*(1+GOGC/100), at floor
// for a live heap of live bytes, and never below base.
func Percent(floor, live uint64, base int) int {
	live = max(live, 1)
	if live >= floor {
		return base
	}
	p := (floor - live) * 100 / live
	if p > 1<<20 {
		p = 1 << 20 // a near-empty heap: the floor is what counts, not the exact percent
	}
	return max(int(p), base)
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

var liveSample = []metrics.Sample{{Name: "/gc/heap/live:bytes"}}

func tuneLocked() {
	metrics.Read(liveSample)
	if liveSample[0].Value.Kind() != metrics.KindUint64 {
		return // a runtime without the metric: leave GOGC be
	}
	p := Percent(floor.Load(), liveSample[0].Value.Uint64(), base)
	if p != current {
		debug.SetGCPercent(p)
		current = p
	}
}
