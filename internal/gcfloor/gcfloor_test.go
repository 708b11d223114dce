package gcfloor

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"testing"
	"time"
)

func TestSmall(t *testing.T) {
	const f = 64 << 20
	for _, c := range []struct {
		live uint64
		was  bool
		want bool
	}{
		{8 << 20, false, true},   // under a quarter: the floor is the limit
		{20 << 20, false, false}, // between a quarter and a half: stays as it was
		{20 << 20, true, true},
		{40 << 20, true, false}, // over half: GOGC again
		{200 << 20, false, false},
	} {
		if got := Small(f, c.live, c.was); got != c.want {
			t.Errorf("Small(64 MiB, %d MiB, %v) = %v, want %v", c.live>>20, c.was, got, c.want)
		}
	}
	if Small(0, 1, false) || Small(0, 1, true) {
		t.Error("no floor: never small")
	}
}

func readMetric(name string) metrics.Value {
	s := []metrics.Sample{{Name: name}}
	metrics.Read(s)
	return s[0].Value
}

// TestSetBoundsTheHeapByTheFloor: with a floor above the test's live heap
// the process collects at the floor (GOGC off, memory limit = floor plus
// what the runtime holds beside the heap, read
// back from runtime/metrics, where off reads as -1); once more than half the floor is live it is
// back on GOGC with its own limit, so a heap that grows is never let grow
// past a goal set for a small one; without a floor, as it started. The
// tuner runs after every collection, not once.
func TestSetBoundsTheHeapByTheFloor(t *testing.T) {
	// The test needs a collector that runs: with GOGC=off in the
	// environment it runs with 100 (Set reads GOGC on its first call).
	if old := debug.SetGCPercent(100); old >= 0 {
		debug.SetGCPercent(old)
	} else {
		t.Cleanup(func() { debug.SetGCPercent(old) })
	}
	start := debug.SetGCPercent(-1)
	debug.SetGCPercent(start)
	startLimit := debug.SetMemoryLimit(-1)
	gogc := func() int64 { return int64(readMetric("/gc/gogc:percent").Uint64()) }
	limit := func() int64 { return int64(readMetric("/gc/gomemlimit:bytes").Uint64()) }
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !ok(); {
			if time.Now().After(deadline) {
				t.Fatalf("%s: GOGC %d, memory limit %d", what, gogc(), limit())
			}
			runtime.GC()                   // a collection runs the finalizer that tunes
			<-time.After(time.Millisecond) // polling with a deadline: the finalizer runs on its own goroutine
		}
	}
	const floor = 256 << 20
	Set(floor)
	waitFor("a floor over the live heap", func() bool { return gogc() == -1 && limit() >= floor && limit() < floor+64<<20 })
	from := tunes.Load()
	waitFor("three collections tuned after", func() bool { return tunes.Load() >= from+3 })

	keep := make([][]byte, 0, 160)
	for range 160 { // 160 MiB live: over half the floor
		keep = append(keep, make([]byte, 1<<20))
	}
	waitFor("a live heap over half the floor", func() bool { return gogc() == int64(start) && limit() == startLimit })
	runtime.KeepAlive(keep)
	keep = nil

	Set(0)
	waitFor("no floor", func() bool { return gogc() == int64(start) && limit() == startLimit })
}

// grow uses about depth KiB of its goroutine's stack, then waits for done.
func grow(depth int, done <-chan struct{}) byte {
	var pad [1 << 10]byte
	pad[depth%len(pad)] = byte(depth)
	if depth > 0 {
		return pad[0] + grow(depth-1, done)
	}
	<-done
	return pad[0]
}

// TestLimitLeavesRoomForStacks: the memory limit the floor sets counts
// what the runtime holds beside the heap, goroutine stacks above all, so
// that a process with many goroutines is not over its limit (and collecting
// without pause) with a heap far under the floor.
func TestLimitLeavesRoomForStacks(t *testing.T) {
	if old := debug.SetGCPercent(100); old >= 0 {
		debug.SetGCPercent(old)
	} else {
		t.Cleanup(func() { debug.SetGCPercent(old) })
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range 400 { // 400 stacks of 256 KiB: 100 MiB
		wg.Go(func() { grow(200, done) })
	}
	defer func() { close(done); wg.Wait(); Set(0) }()
	stacks := func() int64 { return int64(readMetric("/memory/classes/heap/stacks:bytes").Uint64()) }
	for deadline := time.Now().Add(10 * time.Second); stacks() < 80<<20; <-time.After(time.Millisecond) { // polling with a deadline
		if time.Now().After(deadline) {
			t.Fatalf("stacks hold %d MiB, want the goroutines' 100", stacks()>>20)
		}
	}
	const floor = 64 << 20
	Set(floor)
	var limit int64
	for deadline := time.Now().Add(10 * time.Second); ; {
		runtime.GC() // the tuner runs after a collection
		<-time.After(time.Millisecond)
		limit = int64(readMetric("/gc/gomemlimit:bytes").Uint64())
		if limit >= floor+stacks()*3/4 && readMetric("/gc/gogc:percent").Uint64() == ^uint64(0) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("memory limit %d MiB with a %d MiB floor and %d MiB of stacks; want room for the stacks over the floor", limit>>20, floor>>20, stacks()>>20)
		}
	}
}
