package channelgroups

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits PubNub documents for channel groups; groupcast enforces the same so
// that an application written against either behaves the same.
const (
	// MaxNameRunes is the longest account, group or channel name, in characters.
	MaxNameRunes = 92
	// MaxChannelsPerEdit is the most channels one add or remove call may name.
	MaxChannelsPerEdit = 200
	// MaxChannelsPerGroup is the most channels a group may hold.
	MaxChannelsPerGroup = 2000
)

// Account is a subscribe key: the identity of a tenant and the key that
// picks its shard.
type Account string

// Group is a channel group name, unique within an account.
type Group string

// Channel is a channel name, unique within an account.
type Channel string

// ErrInvalidName is wrapped by every *NameError.
var ErrInvalidName = errors.New("channelgroups: invalid name")

// NameError reports a name that breaks the naming rules.
type NameError struct {
	Kind   string // "account", "group" or "channel"
	Name   string
	Reason string
}

func (e *NameError) Error() string {
	name := e.Name
	if utf8.RuneCountInString(name) > 32 {
		name = string([]rune(name)[:32]) + "…"
	}
	return fmt.Sprintf("invalid %s name %q: %s", e.Kind, name, e.Reason)
}

func (e *NameError) Unwrap() error { return ErrInvalidName }

// forbidden lists the characters no name may contain: list separators,
// wildcards and path separators.
const forbidden = ",:*/\\ "

func checkName(kind, s string) error {
	bad := func(reason string) error { return &NameError{Kind: kind, Name: s, Reason: reason} }
	if s == "" {
		return bad("empty")
	}
	if !utf8.ValidString(s) {
		return bad("not valid UTF-8")
	}
	n := 0
	for _, r := range s {
		n++
		switch {
		case n > MaxNameRunes:
			return bad(fmt.Sprintf("longer than %d characters", MaxNameRunes))
		case strings.ContainsRune(forbidden, r):
			return bad(fmt.Sprintf("contains %q", r))
		case unicode.IsControl(r) || r == utf8.RuneError:
			return bad("contains a control character")
		}
	}
	return nil
}

// ParseAccount validates a subscribe key.
func ParseAccount(s string) (Account, error) {
	if err := checkName("account", s); err != nil {
		return "", err
	}
	return Account(s), nil
}

// ParseGroup validates a channel group name.
func ParseGroup(s string) (Group, error) {
	if err := checkName("group", s); err != nil {
		return "", err
	}
	return Group(s), nil
}

// ParseChannel validates a channel name.
func ParseChannel(s string) (Channel, error) {
	if err := checkName("channel", s); err != nil {
		return "", err
	}
	return Channel(s), nil
}

// ErrTooManyChannels reports a list or a group over its limit.
var ErrTooManyChannels = errors.New("channelgroups: too many channels")

// ErrNoChannels reports an edit that names no channel.
var ErrNoChannels = errors.New("channelgroups: no channels given")

// ParseChannelList splits a comma-separated list (already URL-decoded),
// validates every name and drops duplicates, keeping first-seen order. It
// accepts at most max names.
func ParseChannelList(s string, max int) ([]Channel, error) {
	if s == "" {
		return nil, ErrNoChannels
	}
	if n := strings.Count(s, ",") + 1; n > max {
		return nil, fmt.Errorf("%d channels in one call, at most %d: %w", n, max, ErrTooManyChannels)
	}
	out := make([]Channel, 0, strings.Count(s, ",")+1)
	seen := make(map[string]struct{}, cap(out))
	for part := range strings.SplitSeq(s, ",") {
		c, err := ParseChannel(part)
		if err != nil {
			return nil, err
		}
		if _, dup := seen[part]; dup {
			continue
		}
		seen[part] = struct{}{}
		out = append(out, c)
	}
	return out, nil
}
