package bench

import (
	"math"
	"time"
)

// Sweep chooses the offered loads of a fan-out run: from Start it
// multiplies the load by Factor while the target keeps up, until it does
// not (or Max is reached), then bisects between the highest load kept up
// with and the lowest above it that was not, until the two are within
// Precision of each other. The target's limit is then measured, not
// bounded, unless it kept up with Max (Capped).
type Sweep struct {
	Start float64 // first load; must be > 0
	// Factor multiplies the load while the target keeps up; zero means 2.
	Factor float64
	// Max is the highest load offered; zero means no limit.
	Max float64
	// Precision is the relative gap between the highest load kept up with
	// and the lowest not kept up with at which bisection stops; zero means
	// 0.1 (10%).
	Precision float64
	// Steps is the most steps a sweep runs; zero means 12.
	Steps int
}

// sweepPoint is one finished step: the load offered and whether the
// target kept up with it.
type sweepPoint struct {
	Offered float64
	KeptUp  bool
}

// bracket is the highest load kept up with (0 if none) and the lowest load
// above it that was not kept up with (+Inf if none): noise can make a
// target keep up with a load above one it failed, and then the failure
// below no longer bounds the limit.
func bracket(done []sweepPoint) (lo, hi float64) {
	hi = math.Inf(1)
	for _, p := range done {
		if p.KeptUp {
			lo = max(lo, p.Offered)
		}
	}
	for _, p := range done {
		if !p.KeptUp && p.Offered > lo {
			hi = min(hi, p.Offered)
		}
	}
	return lo, hi
}

// Next is the load of the next step after done, or false if the sweep is
// over.
func (s Sweep) Next(done []sweepPoint) (float64, bool) {
	factor, precision, steps := s.Factor, s.Precision, s.Steps
	if factor <= 1 {
		factor = 2
	}
	if precision <= 0 {
		precision = 0.1
	}
	if steps <= 0 {
		steps = 12
	}
	if len(done) == 0 {
		return s.Start, s.Start > 0
	}
	if len(done) >= steps {
		return 0, false
	}
	lo, hi := bracket(done)
	switch {
	case math.IsInf(hi, 1): // kept up with everything so far: go higher
		if s.Max > 0 && lo >= s.Max {
			return 0, false
		}
		next := lo * factor
		if s.Max > 0 {
			next = min(next, s.Max)
		}
		return next, true
	case lo == 0: // kept up with nothing: go lower, but not forever
		if hi <= s.Start/(factor*factor*factor) {
			return 0, false
		}
		return hi / factor, true
	case (hi-lo)/lo <= precision:
		return 0, false
	default:
		return (lo + hi) / 2, true
	}
}

// Capped reports whether the sweep ended because the target kept up with
// its highest load: the limit is then above it, and only bounded.
func (s Sweep) Capped(done []sweepPoint) bool {
	_, hi := bracket(done)
	return len(done) > 0 && math.IsInf(hi, 1)
}

// Timetable is an open-loop publishing schedule: Slots() publishes, the
// k-th due at Begin + k/Rate, within [Begin, Begin+Length).
type Timetable struct {
	Begin  time.Time
	Rate   float64 // publishes/s
	Length time.Duration
}

// Slots is how many publishes the timetable holds.
func (t Timetable) Slots() int { return int(t.Rate * t.Length.Seconds()) }

// Due is when slot k is due.
func (t Timetable) Due(k int) time.Time {
	return t.Begin.Add(time.Duration(float64(k) / t.Rate * float64(time.Second)))
}

// End is when the timetable's window closes.
func (t Timetable) End() time.Time { return t.Begin.Add(t.Length) }

// PublishLateAfter is how long after its due time a publish may start and
// still count as on time.
const PublishLateAfter = 5 * time.Millisecond

// SlotCounts says what became of a timetable's slots: each is on time,
// late (sent more than PublishLateAfter after it was due) or skipped (not
// sent before the window closed). OnTime+Late+Skipped == Slots.
type SlotCounts struct {
	Slots, OnTime, Late, Skipped int64
}

// clock is the time a dispatch sees: Now, and Sleep until a time.
type clock interface {
	Now() time.Time
	SleepUntil(t time.Time)
}

// publishers is the pool a dispatch hands slots to: Acquire blocks until
// a publisher is free (false: stop, the run is failing), Launch starts
// slot k's publish on the publisher acquired and returns at once, Release
// gives back a publisher acquired but not launched.
type publishers interface {
	Acquire() bool
	Launch(k int, due time.Time)
	Release()
}

// dispatch runs the timetable open-loop: each slot is started when it is
// due, whether or not earlier publishes have been answered, on the first
// free publisher. A slot started more than PublishLateAfter after it was
// due counts as late; one that cannot start before the window closes is
// skipped, as is every one after it; none is dropped without being
// counted.
func dispatch(tt Timetable, c clock, p publishers) SlotCounts {
	n := tt.Slots()
	counts := SlotCounts{Slots: int64(n)}
	for k := range n {
		due := tt.Due(k)
		c.SleepUntil(due)
		if !p.Acquire() {
			counts.Skipped = int64(n - k)
			return counts
		}
		now := c.Now()
		if !now.Before(tt.End()) {
			p.Release()
			counts.Skipped = int64(n - k)
			return counts
		}
		if now.Sub(due) > PublishLateAfter {
			counts.Late++
		} else {
			counts.OnTime++
		}
		p.Launch(k, due)
	}
	return counts
}

// wallClock is the real clock.
type wallClock struct{}

func (wallClock) Now() time.Time { return time.Now() }
func (wallClock) SleepUntil(t time.Time) {
	if d := time.Until(t); d > 0 {
		time.Sleep(d)
	}
}
