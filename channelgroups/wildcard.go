package channelgroups

import (
	"errors"
	"fmt"
	"strings"
)

// Wildcard is a wildcard subscribe channel, PubNub's "a.*" or "a.b.*": it
// stands for every channel whose name starts with its prefix ("a." or
// "a.b."), whatever follows, dots included.
//
// PubNub's rules: the name ends in ".*" and has no other "*"; it has at most
// two dots (three levels: "a.b.*", not "a.b.c.*"); the levels before the
// "*" are non-empty channel-name text. A wildcard cannot be published to
// (ParseChannel refuses "*") nor put in a channel group.
type Wildcard string

// IsWildcard reports whether a subscribe channel is meant as a wildcard:
// whether it holds a "*". Such a name is a Wildcard or nothing.
func IsWildcard(s string) bool { return strings.IndexByte(s, '*') >= 0 }

// MaxWildcardDots is the most dots a wildcard may have.
const MaxWildcardDots = 2

// ParseWildcard validates a wildcard subscribe channel.
func ParseWildcard(s string) (Wildcard, error) {
	bad := func(reason string) error { return &NameError{Kind: "wildcard channel", Name: s, Reason: reason} }
	prefix, ok := strings.CutSuffix(s, ".*")
	switch {
	case !ok:
		return "", bad(`a wildcard ends in ".*" and has no other "*" (a.* or a.b.*)`)
	case strings.IndexByte(prefix, '*') >= 0:
		return "", bad(`"*" may only be the last character, after a dot (a.* or a.b.*)`)
	case strings.Count(s, ".") > MaxWildcardDots:
		return "", bad(fmt.Sprintf("more than %d dots: a wildcard has at most three levels (a.b.*, not a.b.c.*)", MaxWildcardDots))
	}
	for level := range strings.SplitSeq(prefix, ".") {
		if level == "" {
			return "", bad("a level before the * is empty (write a.* or a.b.*)")
		}
	}
	// The prefix must be channel-name text, and the whole name within the
	// length limit: check the name with a letter for the star.
	if err := checkName("wildcard channel", prefix+".x"); err != nil {
		var ne *NameError
		if errors.As(err, &ne) {
			return "", bad(ne.Reason)
		}
		return "", err
	}
	return Wildcard(s), nil
}

// Prefix is what every matching channel's name starts with: "a." for "a.*".
func (w Wildcard) Prefix() string { return string(w[:len(w)-1]) }

// Match reports whether a channel is one the wildcard stands for.
func (w Wildcard) Match(c Channel) bool {
	p := w.Prefix()
	return len(c) > len(p) && strings.HasPrefix(string(c), p)
}
