package channelgroups_test

import (
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/groupcast/groupcast/channelgroups"
)

func TestParseTimetoken(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want channelgroups.Timetoken
		ok   bool
	}{
		{"0", 0, true},
		{"17000000000000000", 17000000000000000, true},
		{"9223372036854775807", 9223372036854775807, true},
		{"9223372036854775808", 0, false},
		{"", 0, false},
		{"-1", 0, false},
		{"+1", 0, false},
		{"1e5", 0, false},
		{"12345678901234567890", 0, false},
	} {
		got, err := channelgroups.ParseTimetoken(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseTimetoken(%q) = %v, %v; want %v, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestTimetokenRendering(t *testing.T) {
	at := time.Date(2026, 11, 23, 10, 0, 0, 123456789, time.UTC)
	tt := channelgroups.TimetokenOf(at)
	if s := tt.String(); len(s) != 17 || s != "17954280001234560" {
		t.Fatalf("String() = %s, want the 17-digit 100 ns form 17954280001234560", s)
	}
	if tt.Micros() != at.UnixMicro() || !tt.Time().Equal(at.Truncate(time.Microsecond)) {
		t.Fatalf("Micros/Time do not round-trip: %d %v", tt.Micros(), tt.Time())
	}
}

type fakeWall struct {
	mu sync.Mutex
	t  time.Time
}

func (w *fakeWall) now() time.Time  { w.mu.Lock(); defer w.mu.Unlock(); return w.t }
func (w *fakeWall) set(t time.Time) { w.mu.Lock(); w.t = t; w.mu.Unlock() }

func TestClockMonotonic(t *testing.T) {
	w := &fakeWall{t: time.Unix(1_700_000_000, 0)}
	c := channelgroups.NewClock(w.now, time.Minute)
	a := c.Now()
	if a != channelgroups.TimetokenOf(w.t) {
		t.Fatalf("first Now = %v, want the wall clock %v", a, channelgroups.TimetokenOf(w.t))
	}
	b := c.Now() // wall clock has not moved
	if b != a+10 {
		t.Fatalf("second Now = %v, want %v (+1 µs)", b, a+10)
	}
	w.set(w.t.Add(-time.Hour)) // wall clock jumps back
	if d := c.Now(); d <= b {
		t.Fatalf("Now after the wall clock went back = %v, want > %v", d, b)
	}
}

func TestClockWitness(t *testing.T) {
	w := &fakeWall{t: time.Unix(1_700_000_000, 0)}
	c := channelgroups.NewClock(w.now, time.Minute)
	ahead := channelgroups.TimetokenOf(w.t.Add(30 * time.Second))
	if err := c.Witness(ahead); err != nil {
		t.Fatal(err)
	}
	if got := c.Now(); got <= ahead {
		t.Fatalf("Now after witnessing %v = %v, want later", ahead, got)
	}
	far := channelgroups.TimetokenOf(w.t.Add(2 * time.Minute))
	before := c.Now()
	if err := c.Witness(far); !errors.Is(err, channelgroups.ErrClockSkew) {
		t.Fatalf("Witness(2 min ahead) = %v, want ErrClockSkew", err)
	}
	if got := c.Now(); got >= far || got <= before {
		t.Fatalf("refused witness moved the clock: %v", got)
	}
}

func TestClockConcurrentUnique(t *testing.T) {
	c := channelgroups.NewClock(nil, 0)
	const n, workers = 2000, 8
	out := make([][]channelgroups.Timetoken, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for range n {
				out[w] = append(out[w], c.Now())
			}
		})
	}
	wg.Wait()
	seen := map[channelgroups.Timetoken]bool{}
	for _, ts := range out {
		for i, x := range ts {
			if seen[x] {
				t.Fatalf("timetoken %v handed out twice", x)
			}
			seen[x] = true
			if i > 0 && x <= ts[i-1] {
				t.Fatalf("not increasing within one goroutine: %v then %v", ts[i-1], x)
			}
		}
	}
}

// FuzzClock drives a clock with an arbitrary walk of wall-clock times and
// witnessed timetokens: every Now must exceed every earlier Now and every
// accepted witness, and never be behind the wall clock.
func FuzzClock(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3}, int64(1_700_000_000_000_000))
	f.Add([]byte{255, 0, 128, 7, 9}, int64(0))
	f.Fuzz(func(t *testing.T, steps []byte, start int64) {
		if start < 0 || start > 4_000_000_000_000_000 {
			return
		}
		wall := time.UnixMicro(start)
		c := channelgroups.NewClock(func() time.Time { return wall }, time.Second)
		var floor channelgroups.Timetoken
		r := rand.New(rand.NewPCG(uint64(start), uint64(len(steps))))
		for _, s := range steps {
			switch s % 4 {
			case 0:
				wall = wall.Add(time.Duration(s) * time.Microsecond)
			case 1:
				wall = wall.Add(-time.Duration(s) * time.Millisecond)
			case 2:
				w := channelgroups.TimetokenOf(wall) + channelgroups.Timetoken(r.Int64N(40_000_000)-20_000_000)
				if err := c.Witness(w); err == nil {
					floor = max(floor, w)
				} else if w <= channelgroups.TimetokenOf(wall.Add(time.Second)) {
					t.Fatalf("refused %v within the skew bound: %v", w, err)
				}
			case 3:
				got := c.Now()
				if got <= floor || got < channelgroups.TimetokenOf(wall) || got%10 != 0 {
					t.Fatalf("Now = %v, floor %v, wall %v", got, floor, channelgroups.TimetokenOf(wall))
				}
				floor = got
			}
		}
	})
}

func FuzzParseTimetoken(f *testing.F) {
	for _, s := range []string{"0", "17000000000000000", "-1", "", "99999999999999999999", " 1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tt, err := channelgroups.ParseTimetoken(s)
		if bt, berr := channelgroups.ParseTimetokenBytes([]byte(s)); bt != tt || (berr == nil) != (err == nil) {
			t.Fatalf("bytes of %q: %v, %v; the string: %v, %v", s, bt, berr, tt, err)
		}
		if err != nil {
			if !errors.Is(err, channelgroups.ErrInvalidTimetoken) {
				t.Fatalf("error %v does not wrap ErrInvalidTimetoken", err)
			}
			return
		}
		if tt < 0 {
			t.Fatalf("negative %v from %q", tt, s)
		}
		again, err := channelgroups.ParseTimetoken(tt.String())
		if err != nil || again != tt {
			t.Fatalf("round trip of %q: %v, %v", s, again, err)
		}
	})
}
