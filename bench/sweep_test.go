package bench

import (
	"math"
	"testing"
	"time"
)

// sweepAgainst runs s against a target that keeps up with loads up to
// limit, except those in flaky (it fails them), and returns the loads.
func sweepAgainst(s Sweep, limit float64, flaky ...float64) []sweepPoint {
	var done []sweepPoint
	for {
		load, ok := s.Next(done)
		if !ok {
			return done
		}
		kept := load <= limit
		for _, f := range flaky {
			if load == f {
				kept = false
			}
		}
		done = append(done, sweepPoint{load, kept})
	}
}

func TestSweepBisectsToTheLimit(t *testing.T) {
	s := Sweep{Start: 1000, Factor: 2, Max: 1e6, Precision: 0.05}
	done := sweepAgainst(s, 11_000)
	lo, hi := bracket(done)
	if lo > 11_000 || hi <= 11_000 || (hi-lo)/lo > 0.05 || s.Capped(done) {
		t.Fatalf("bracket [%v, %v] capped %v after %+v; want 11000 within 5%%", lo, hi, s.Capped(done), done)
	}
	// Up 1k, 2k, 4k, 8k, 16k (fails), then bisecting.
	for i, want := range []float64{1000, 2000, 4000, 8000, 16000, 12000, 10000, 11000} {
		if done[i].Offered != want {
			t.Fatalf("step %d offered %v, want %v (%+v)", i, done[i].Offered, want, done)
		}
	}
}

func TestSweepCapsAndBottoms(t *testing.T) {
	s := Sweep{Start: 1000, Max: 5000}
	done := sweepAgainst(s, math.Inf(1))
	if !s.Capped(done) || done[len(done)-1].Offered != 5000 || len(done) != 4 {
		t.Fatalf("capped sweep %+v", done)
	}
	done = sweepAgainst(s, 0) // keeps up with nothing: a few steps down, then stops
	if s.Capped(done) || len(done) != 4 || done[3].Offered != 125 {
		t.Fatalf("sweep of a target that keeps up with nothing %+v", done)
	}
	if _, ok := (Sweep{}).Next(nil); ok {
		t.Error("a sweep from 0 started")
	}
	if len(sweepAgainst(Sweep{Start: 1, Steps: 3}, math.Inf(1))) != 3 {
		t.Error("Steps not respected")
	}
}

// A failure below a load kept up with (noise) does not bound the limit.
func TestSweepNoise(t *testing.T) {
	done := []sweepPoint{{1000, true}, {2000, false}, {1500, true}, {4000, true}}
	if lo, hi := bracket(done); lo != 4000 || !math.IsInf(hi, 1) {
		t.Fatalf("bracket = %v, %v; want 4000, +Inf", lo, hi)
	}
	if next, ok := (Sweep{Start: 1000}).Next(done); !ok || next != 8000 {
		t.Fatalf("next = %v, %v; want 8000", next, ok)
	}
}

// fakeClock advances only when slept or told: dispatch's timing without
// waiting.
type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time { return c.now }
func (c *fakeClock) SleepUntil(t time.Time) {
	if t.After(c.now) {
		c.now = t
	}
}

// fakePublishers takes cost[k] of the clock to become free for slot k
// (a pool whose publishers are all busy), and records the slots launched.
type fakePublishers struct {
	c        *fakeClock
	cost     map[int]time.Duration
	next     int
	launched []int
	refuse   bool
}

func (p *fakePublishers) Acquire() bool {
	p.c.now = p.c.now.Add(p.cost[p.next])
	return !p.refuse
}
func (p *fakePublishers) Launch(k int, due time.Time) {
	p.launched = append(p.launched, k)
	p.next = k + 1
}
func (p *fakePublishers) Release() { p.next++ }

func TestDispatchCountsEverySlot(t *testing.T) {
	begin := time.Unix(1000, 0)
	tt := Timetable{Begin: begin, Rate: 100, Length: time.Second} // 100 slots, 10 ms apart
	for _, tc := range []struct {
		name                  string
		cost                  map[int]time.Duration
		refuse                bool
		onTime, late, skipped int64
		launched              int
	}{
		{"on time", nil, false, 100, 0, 0, 100},
		// Slot 10 waits 30 ms for a publisher: it and slots 11, 12 (due
		// before the wait ended) are late; 13 is on time again.
		{"late", map[int]time.Duration{10: 30 * time.Millisecond}, false, 97, 3, 0, 100},
		// Slot 50 waits past the end: it and the 49 after it are skipped.
		{"skipped", map[int]time.Duration{50: 600 * time.Millisecond}, false, 50, 0, 50, 50},
		{"refused", nil, true, 0, 0, 100, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &fakeClock{now: begin}
			p := &fakePublishers{c: c, cost: tc.cost, refuse: tc.refuse}
			got := dispatch(tt, c, p)
			want := SlotCounts{Slots: 100, OnTime: tc.onTime, Late: tc.late, Skipped: tc.skipped}
			if got != want || len(p.launched) != tc.launched {
				t.Fatalf("dispatch = %+v, %d launched; want %+v, %d", got, len(p.launched), want, tc.launched)
			}
			if got.OnTime+got.Late+got.Skipped != got.Slots {
				t.Fatalf("slots unaccounted: %+v", got)
			}
		})
	}
}

// TestStepRecorder checks a step's accounting: only its own messages count,
// those arriving in the drain count apart, answers count once each.
func TestStepRecorder(t *testing.T) {
	// 1000 publishes/s: slots 1000 µs apart from 1000 µs, 1000 of them.
	r := &stepRecorder{from: 1000, to: 1_001_000, rate: 1000, slots: 1000, hist: newHistogram()}
	r.record(1500, 0, []int64{1000, 2000, 999})       // two of the step's, one earlier
	r.record(1900, 1, []int64{1_001_000, 1_002_000})  // the next step's: not counted, no answer
	r.record(1950, 1, []int64{2000})                  // another subscriber's first
	r.record(1960, 0, []int64{2000, 3000})            // one again (a duplicate), one new
	r.record(1_002_500, 0, []int64{4000, 5000, 6000}) // the drain
	if r.inWindow != 4 || r.answers != 3 || r.drained != 3 || r.duplicates != 1 || r.count.Load() != 7 || r.hist.TotalCount() != 7 {
		t.Fatalf("in window %d, answers %d, drained %d, duplicates %d, count %d, latencies %d; want 4, 3, 3, 1, 7, 7",
			r.inWindow, r.answers, r.drained, r.duplicates, r.count.Load(), r.hist.TotalCount())
	}
}

// TestSubscriberMeans: each subscriber's mean latency over its deliveries
// (duplicates not counted), spread over the subscribers that got any.
func TestSubscriberMeans(t *testing.T) {
	r := &stepRecorder{from: 1000, to: 1_001_000, rate: 1000, slots: 1000, hist: newHistogram()}
	r.record(1100, 0, []int64{1000})       // 100 µs
	r.record(2300, 0, []int64{2000})       // 300 µs: subscriber 0's mean 200
	r.record(2400, 0, []int64{2000})       // a duplicate: not a delivery
	r.record(9000, 3, []int64{3000, 5000}) // 6000 and 4000 µs: subscriber 3's mean 5000
	got := r.subscriberMeans()
	want := Spread{Min: 200, P10: 200, P50: 5000, P90: 5000, Max: 5000}
	if got != want {
		t.Fatalf("subscriber means %+v, want %+v (subscribers 1 and 2 got nothing and do not count)", got, want)
	}
	if (&stepRecorder{}).subscriberMeans() != (Spread{}) {
		t.Fatal("a step with no deliveries has a spread")
	}
}

func TestKeptUp(t *testing.T) {
	ok := Latencies{Count: 10, P99: 1000}
	for _, tc := range []struct {
		name      string
		counts    SlotCounts
		want, got int64
		l         Latencies
		kept      bool
	}{
		{"all there", SlotCounts{Slots: 10, OnTime: 10}, 100, 100, ok, true},
		{"late but sent", SlotCounts{Slots: 10, OnTime: 5, Late: 5}, 100, 98, ok, true},
		{"a slot skipped", SlotCounts{Slots: 10, OnTime: 9, Skipped: 1}, 90, 90, ok, false},
		{"too few delivered", SlotCounts{Slots: 10, OnTime: 10}, 100, 96, ok, false},
		{"slow", SlotCounts{Slots: 10, OnTime: 10}, 100, 100, Latencies{Count: 10, P99: 2e6}, false},
		{"nothing owed", SlotCounts{}, 0, 0, ok, false},
	} {
		if got := keptUp(tc.counts, tc.want, tc.got, tc.l); got != tc.kept {
			t.Errorf("%s: keptUp = %v, want %v", tc.name, got, tc.kept)
		}
	}
}
