package gcfloor

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

func TestPercent(t *testing.T) {
	for _, c := range []struct {
		floor, live uint64
		base, want  int
	}{
		{64 << 20, 8 << 20, 100, 700},  // goal 8 MiB * 8 = 64 MiB
		{64 << 20, 32 << 20, 100, 100}, // GOGC's own goal (64 MiB) reaches the floor
		{64 << 20, 40 << 20, 100, 100}, // and beyond it
		{64 << 20, 128 << 20, 50, 50},  // a large heap: GOGC as set
		{64 << 20, 16 << 20, 400, 400}, // GOGC above what the floor needs
		{64 << 20, 0, 100, 1 << 20},    // nothing live: capped
		{0, 8 << 20, 100, 100},         // no floor
	} {
		if got := Percent(c.floor, c.live, c.base); got != c.want {
			t.Errorf("Percent(%d, %d, %d) = %d, want %d", c.floor, c.live, c.base, got, c.want)
		}
	}
}

// TestSetRaisesGOGC: with a floor far above the test's live heap, the
// tuner raises GOGC (read back from runtime/metrics) after collections, and
// with the floor removed it goes back to what the process started with.
func TestSetRaisesGOGC(t *testing.T) {
	gogc := func() int {
		s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
		metrics.Read(s)
		return int(s[0].Value.Uint64())
	}
	start := debug.SetGCPercent(100)
	debug.SetGCPercent(start)
	if start < 0 {
		t.Skip("GOGC=off: nothing to tune") // not CI's setting; the test needs a collector that runs
	}
	waitFor := func(what string, ok func(int) bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; {
			runtime.GC() // a collection runs the finalizer that tunes
			if g := gogc(); ok(g) {
				return
			} else if time.Now().After(deadline) {
				t.Fatalf("%s: GOGC %d", what, g)
			}
			time.Sleep(time.Millisecond) // the finalizer runs on its own goroutine
		}
	}
	Set(1 << 30)
	waitFor("floor of 1 GiB", func(g int) bool { return g > 1000 })
	// It runs after every collection, not once.
	from := tunes.Load()
	waitFor("three collections tuned after", func(int) bool { return tunes.Load() >= from+3 })
	Set(0)
	waitFor("no floor", func(g int) bool { return g == start })
}
