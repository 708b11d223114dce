package channelgroups

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync/atomic"
	"time"
)

// Timetoken is a point in groupcast's time: 100 ns units since the Unix
// epoch, rendered as PubNub's 17-digit decimal string. Timetokens made by a
// Clock are whole microseconds (the last digit is 0), so Micros is exactly the
// write timestamp Cassandra stores.
type Timetoken int64

// TimetokenFromMicros converts a Cassandra write timestamp.
func TimetokenFromMicros(us int64) Timetoken { return Timetoken(us * 10) }

// TimetokenOf converts a wall-clock time, truncated to microseconds.
func TimetokenOf(t time.Time) Timetoken { return TimetokenFromMicros(t.UnixMicro()) }

// Micros is the timetoken in microseconds since the epoch.
func (tt Timetoken) Micros() int64 { return int64(tt) / 10 }

// Time is the wall-clock time the timetoken denotes.
func (tt Timetoken) Time() time.Time { return time.UnixMicro(tt.Micros()) }

func (tt Timetoken) String() string { return strconv.FormatInt(int64(tt), 10) }

// AppendText appends the decimal form without allocating.
func (tt Timetoken) AppendText(b []byte) ([]byte, error) {
	return strconv.AppendInt(b, int64(tt), 10), nil
}

// ErrInvalidTimetoken is wrapped by ParseTimetoken's errors.
var ErrInvalidTimetoken = errors.New("channelgroups: invalid timetoken")

// ParseTimetoken reads a decimal timetoken of at most 19 digits ("0" is valid:
// the start of time, as in a subscribe handshake).
func ParseTimetoken(s string) (Timetoken, error) { return parseTimetoken(s) }

// ParseTimetokenBytes is ParseTimetoken of b, without copying b to a
// string unless it is refused (a subscribe's tt, read from the request).
func ParseTimetokenBytes(b []byte) (Timetoken, error) { return parseTimetoken(b) }

func parseTimetoken[T string | []byte](s T) (Timetoken, error) {
	if len(s) == 0 || len(s) > 19 {
		return 0, fmt.Errorf("%q: want 1 to 19 digits: %w", string(s), ErrInvalidTimetoken)
	}
	var v uint64
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("%q: want only digits: %w", string(s), ErrInvalidTimetoken)
		}
		v = v*10 + uint64(s[i]-'0') // 19 digits fit in a uint64
	}
	if v > math.MaxInt64 {
		return 0, fmt.Errorf("%q: out of range: %w", string(s), ErrInvalidTimetoken)
	}
	return Timetoken(v), nil
}

// DefaultMaxSkew is how far ahead of the local wall clock a witnessed
// timetoken may be.
const DefaultMaxSkew = time.Minute

// ErrClockSkew reports a timetoken too far in the future to be witnessed.
var ErrClockSkew = errors.New("channelgroups: timetoken too far in the future")

// Clock is a hybrid logical clock at microsecond resolution: every Now is
// strictly greater than every earlier Now and every witnessed timetoken,
// and never behind the wall clock. It is safe for concurrent use.
type Clock struct {
	now     func() time.Time
	maxSkew time.Duration
	last    atomic.Int64 // µs
}

// NewClock returns a clock over now (nil means time.Now) that refuses to
// witness timetokens more than maxSkew ahead of now (0 means DefaultMaxSkew).
func NewClock(now func() time.Time, maxSkew time.Duration) *Clock {
	if now == nil {
		now = time.Now
	}
	if maxSkew <= 0 {
		maxSkew = DefaultMaxSkew
	}
	return &Clock{now: now, maxSkew: maxSkew}
}

// Now returns a fresh timetoken: max(wall clock, last + 1 µs).
func (c *Clock) Now() Timetoken {
	for {
		last := c.last.Load()
		next := max(c.now().UnixMicro(), last+1)
		if c.last.CompareAndSwap(last, next) {
			return TimetokenFromMicros(next)
		}
	}
}

// CheckSkew refuses, with ErrClockSkew, a timetoken more than the clock's
// skew bound ahead of the wall clock; it does not move the clock.
func (c *Clock) CheckSkew(tt Timetoken) error {
	us := tt.Micros()
	if limit := c.now().Add(c.maxSkew).UnixMicro(); us > limit {
		return fmt.Errorf("%s is %s ahead of this node's clock: %w",
			tt, time.Duration(us-c.now().UnixMicro())*time.Microsecond, ErrClockSkew)
	}
	return nil
}

// Witness moves the clock to at least tt, so later timetokens sort after
// it. A timetoken more than the clock's skew bound ahead of the wall clock is
// refused with ErrClockSkew and leaves the clock unchanged.
func (c *Clock) Witness(tt Timetoken) error {
	if err := c.CheckSkew(tt); err != nil {
		return err
	}
	us := tt.Micros()
	for {
		last := c.last.Load()
		if us <= last || c.last.CompareAndSwap(last, us) {
			return nil
		}
	}
}
