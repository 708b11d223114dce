package channelgroups_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/groupcast/groupcast/channelgroups"
)

func TestParseWildcard(t *testing.T) {
	for _, s := range []string{"a.*", "a.b.*", "news.*", "sports.cricket.*", strings.Repeat("x", channelgroups.MaxNameRunes-2) + ".*"} {
		w, err := channelgroups.ParseWildcard(s)
		if err != nil || string(w) != s {
			t.Errorf("ParseWildcard(%q) = %q, %v; want it accepted", s, w, err)
		}
		if !channelgroups.IsWildcard(s) {
			t.Errorf("IsWildcard(%q) = false", s)
		}
	}
	for _, tc := range []struct{ name, reason string }{
		{"*", `ends in ".*"`},
		{"a*", `ends in ".*"`},
		{"a.b", `ends in ".*"`},
		{"a.*.c", `ends in ".*"`},
		{"a.*.*", `only be the last`},
		{"*.*", `only be the last`},
		{"a.b*.*", `only be the last`},
		{"a.b.c.*", "more than 2 dots"},
		{".*", "empty"},
		{"a..*", "empty"},
		{".a.*", "empty"},
		{"a,b.*", `contains ','`},
		{"a b.*", `contains ' '`},
		{"a/b.*", `contains '/'`},
		{"a\x01.*", "control character"},
		{"a\xff.*", "UTF-8"},
		{strings.Repeat("x", channelgroups.MaxNameRunes-1) + ".*", "longer than 92"},
	} {
		_, err := channelgroups.ParseWildcard(tc.name)
		var ne *channelgroups.NameError
		if !errors.As(err, &ne) || !errors.Is(err, channelgroups.ErrInvalidName) {
			t.Errorf("ParseWildcard(%q): got %v, want a *NameError", tc.name, err)
			continue
		}
		if ne.Kind != "wildcard channel" || ne.Name != tc.name || !strings.Contains(ne.Reason, tc.reason) {
			t.Errorf("ParseWildcard(%q): got %+v, want reason with %q", tc.name, ne, tc.reason)
		}
	}
	if channelgroups.IsWildcard("a.b") {
		t.Error(`IsWildcard("a.b") = true`)
	}
	// A wildcard is never a channel: nothing can publish to one.
	if _, err := channelgroups.ParseChannel("a.*"); err == nil {
		t.Error(`ParseChannel("a.*") accepted a wildcard`)
	}
}

func TestWildcardMatch(t *testing.T) {
	for _, tc := range []struct {
		w, c string
		want bool
	}{
		{"a.*", "a.b", true},
		{"a.*", "a.b.c", true},
		{"a.*", "a.", false},
		{"a.*", "a", false},
		{"a.*", "ab.c", false},
		{"a.*", "b.a.c", false},
		{"a.b.*", "a.b.c", true},
		{"a.b.*", "a.b.c.d", true},
		{"a.b.*", "a.bc", false},
		{"a.b.*", "a.c.d", false},
		{"news.*", "news.sport", true},
		{"news.*", "News.sport", false},
	} {
		w, err := channelgroups.ParseWildcard(tc.w)
		if err != nil {
			t.Fatal(err)
		}
		if got := w.Match(channelgroups.Channel(tc.c)); got != tc.want {
			t.Errorf("%s matches %s: got %v, want %v", tc.w, tc.c, got, tc.want)
		}
	}
	if w, _ := channelgroups.ParseWildcard("a.b.*"); w.Prefix() != "a.b." {
		t.Errorf("Prefix of a.b.*: got %q, want %q", w.Prefix(), "a.b.")
	}
}

func FuzzParseWildcard(f *testing.F) {
	for _, s := range []string{"a.*", "a.b.*", "a.b.c.*", "*", "a.*.c", ".*", "a,b.*", "\xff.*"} {
		f.Add(s, "a.b")
	}
	f.Fuzz(func(t *testing.T, s, c string) {
		w, err := channelgroups.ParseWildcard(s)
		if err != nil {
			if !errors.Is(err, channelgroups.ErrInvalidName) {
				t.Fatalf("ParseWildcard(%q): %v is not ErrInvalidName", s, err)
			}
			return
		}
		if !strings.HasSuffix(s, ".*") || strings.Count(s, "*") != 1 || strings.Count(s, ".") > channelgroups.MaxWildcardDots {
			t.Fatalf("ParseWildcard(%q) accepted a name against the rules", s)
		}
		if _, err := channelgroups.ParseChannel(s); err == nil {
			t.Fatalf("ParseChannel(%q) accepts a wildcard", s)
		}
		if got, want := w.Match(channelgroups.Channel(c)), strings.HasPrefix(c, s[:len(s)-1]) && len(c) > len(s)-1; got != want {
			t.Fatalf("%q matches %q: %v, want %v", s, c, got, want)
		}
	})
}
