package channelgroups

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Position is a place in a shard log: a Redis stream ID (milliseconds and a
// sequence within the millisecond), ordered as Redis orders them. The zero
// Position is before every entry.
type Position struct {
	Ms, Seq uint64
}

// Less reports whether p comes before q.
func (p Position) Less(q Position) bool {
	return p.Ms < q.Ms || (p.Ms == q.Ms && p.Seq < q.Seq)
}

// IsZero reports whether p is the start of the log.
func (p Position) IsZero() bool { return p == Position{} }

// String renders the Redis stream ID "ms-seq".
func (p Position) String() string {
	return strconv.FormatUint(p.Ms, 10) + "-" + strconv.FormatUint(p.Seq, 10)
}

// ErrInvalidPosition is wrapped by ParsePosition's errors.
var ErrInvalidPosition = errors.New("channelgroups: invalid log position")

// ParsePosition reads "ms-seq".
func ParsePosition(s string) (Position, error) {
	ms, seq, ok := strings.Cut(s, "-")
	a, err1 := strconv.ParseUint(ms, 10, 64)
	b, err2 := strconv.ParseUint(seq, 10, 64)
	if !ok || err1 != nil || err2 != nil {
		return Position{}, fmt.Errorf("%q: %w", s, ErrInvalidPosition)
	}
	return Position{Ms: a, Seq: b}, nil
}

// MaxPosition returns the later of p and q.
func MaxPosition(p, q Position) Position {
	if p.Less(q) {
		return q
	}
	return p
}
