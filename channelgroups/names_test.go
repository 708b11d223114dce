package channelgroups_test

import (
	"errors"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/groupcast/groupcast/channelgroups"
)

func TestParseGroup(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"family", true},
		{"a-b_c.d~e=f+g", true},
		{"ünïcødé-チャンネル", true},
		{strings.Repeat("x", 92), true},
		{strings.Repeat("é", 92), true},
		{strings.Repeat("x", 93), false},
		{"", false},
		{"a,b", false},
		{"a:b", false},
		{"a*", false},
		{"a/b", false},
		{`a\b`, false},
		{"a b", false},
		{"a\tb", false},
		{"a\x00b", false},
		{"a\x7fb", false},
		{"bad\xffutf8", false},
	} {
		_, err := channelgroups.ParseGroup(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("ParseGroup(%q) error = %v, want ok=%v", tc.in, err, tc.ok)
		}
		if err != nil && !errors.Is(err, channelgroups.ErrInvalidName) {
			t.Errorf("ParseGroup(%q) error %v does not wrap ErrInvalidName", tc.in, err)
		}
	}
}

func TestParseChannelList(t *testing.T) {
	many := strings.TrimSuffix(strings.Repeat("c,", 201), ",")
	for _, tc := range []struct {
		in      string
		want    []channelgroups.Channel
		wantErr error
	}{
		{"a", []channelgroups.Channel{"a"}, nil},
		{"b,a,b", []channelgroups.Channel{"b", "a"}, nil},
		{"", nil, channelgroups.ErrNoChannels},
		{"a,,b", nil, channelgroups.ErrInvalidName},
		{"a,", nil, channelgroups.ErrInvalidName},
		{"a,b*", nil, channelgroups.ErrInvalidName},
		{many, nil, channelgroups.ErrTooManyChannels},
	} {
		got, err := channelgroups.ParseChannelList(tc.in, channelgroups.MaxChannelsPerEdit)
		if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
			t.Errorf("ParseChannelList(%.20q) error = %v, want %v", tc.in, err, tc.wantErr)
			continue
		}
		if len(got) != len(tc.want) {
			t.Errorf("ParseChannelList(%q) = %v, want %v", tc.in, got, tc.want)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("ParseChannelList(%q) = %v, want %v", tc.in, got, tc.want)
			}
		}
	}
}

func FuzzParseGroupName(f *testing.F) {
	for _, s := range []string{"g", "a,b", "", "é", "a\x00", strings.Repeat("x", 93), "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		g, err := channelgroups.ParseGroup(s)
		if err != nil {
			if !errors.Is(err, channelgroups.ErrInvalidName) {
				t.Fatalf("error %v does not wrap ErrInvalidName", err)
			}
			return
		}
		if string(g) != s {
			t.Fatalf("ParseGroup(%q) = %q", s, g)
		}
		if !utf8.ValidString(s) || utf8.RuneCountInString(s) > channelgroups.MaxNameRunes || s == "" {
			t.Fatalf("accepted %q", s)
		}
		for _, r := range s {
			if unicode.IsControl(r) || strings.ContainsRune(",:*/\\ ", r) {
				t.Fatalf("accepted %q with %q", s, r)
			}
		}
	})
}

func FuzzParseChannelList(f *testing.F) {
	for _, s := range []string{"a,b", ",", "a,,b", "a,a", "é,ü"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := channelgroups.ParseChannelList(s, channelgroups.MaxChannelsPerEdit)
		if err != nil {
			return
		}
		if len(got) == 0 || len(got) > channelgroups.MaxChannelsPerEdit {
			t.Fatalf("ParseChannelList(%q) returned %d channels", s, len(got))
		}
		seen := map[channelgroups.Channel]bool{}
		for _, c := range got {
			if seen[c] {
				t.Fatalf("duplicate %q", c)
			}
			seen[c] = true
			if _, err := channelgroups.ParseChannel(string(c)); err != nil {
				t.Fatalf("returned invalid channel %q: %v", c, err)
			}
		}
	})
}
