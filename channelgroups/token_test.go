package channelgroups_test

import (
	"encoding/base64"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/groupcast/groupcast/channelgroups"
)

func tokenKey(t testing.TB, secret string) *channelgroups.TokenKey {
	t.Helper()
	k, err := channelgroups.NewTokenKey([]byte(secret), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

var tokenNow = time.Unix(1_795_428_000, 0)

func sampleToken() channelgroups.Token {
	return channelgroups.Token{
		Shard:     17,
		Positions: []channelgroups.RegionPosition{{Region: 1, Pos: channelgroups.Position{Ms: uint64(tokenNow.UnixMilli()), Seq: 3}}},
		At:        channelgroups.TimetokenOf(tokenNow),
		Origin:    1,
	}
}

func TestTokenRoundTrip(t *testing.T) {
	k := tokenKey(t, "0123456789abcdef-secret")
	for _, tok := range []channelgroups.Token{
		sampleToken(),
		{Shard: 3, Pending: channelgroups.TimetokenOf(tokenNow), At: channelgroups.TimetokenOf(tokenNow), Origin: 2},
		{},
	} {
		s := k.Encode("acct", tok)
		got, err := k.Decode("acct", s, tokenNow)
		if err != nil {
			t.Fatalf("Decode(Encode(%+v)): %v", tok, err)
		}
		if !reflect.DeepEqual(got.Positions, tok.Positions) && !(len(got.Positions) == 0 && len(tok.Positions) == 0) ||
			got.Shard != tok.Shard || got.At != tok.At || got.Pending != tok.Pending || got.Origin != tok.Origin {
			t.Fatalf("round trip: got %+v, want %+v", got, tok)
		}
	}
}

func TestTokenRejects(t *testing.T) {
	k := tokenKey(t, "0123456789abcdef-secret")
	good := k.Encode("acct", sampleToken())
	raw, _ := base64.RawURLEncoding.DecodeString(good)
	flip := func(i int) string {
		b := append([]byte(nil), raw...)
		b[i] ^= 1
		return base64.RawURLEncoding.EncodeToString(b)
	}
	future := sampleToken()
	future.Positions[0].Pos.Ms = uint64(tokenNow.Add(2 * time.Minute).UnixMilli())
	futureAt := sampleToken()
	futureAt.At = channelgroups.TimetokenOf(tokenNow.Add(time.Hour))
	for name, tc := range map[string]struct {
		account channelgroups.Account
		key     *channelgroups.TokenKey
		s       string
	}{
		"tampered payload": {"acct", k, flip(3)},
		"tampered mac":     {"acct", k, flip(len(raw) - 1)},
		"truncated":        {"acct", k, good[:len(good)-4]},
		"empty":            {"acct", k, ""},
		"not base64":       {"acct", k, "!!!"},
		"other account":    {"other", k, good},
		"other cluster":    {"acct", tokenKey(t, "another-secret-0123456789"), good},
		"future position":  {"acct", k, k.Encode("acct", future)},
		"future timetoken": {"acct", k, k.Encode("acct", futureAt)},
		"huge":             {"acct", k, strings.Repeat("A", 4096)},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := tc.key.Decode(tc.account, tc.s, tokenNow); !errors.Is(err, channelgroups.ErrInvalidToken) {
				t.Fatalf("Decode = %v, want ErrInvalidToken", err)
			}
		})
	}
}

func TestTokenMerge(t *testing.T) {
	p := func(ms, seq uint64) channelgroups.Position { return channelgroups.Position{Ms: ms, Seq: seq} }
	a := channelgroups.Token{Shard: 1, Positions: []channelgroups.RegionPosition{{Region: 1, Pos: p(10, 5)}, {Region: 2, Pos: p(3, 0)}}, At: 100, Origin: 1}
	b := channelgroups.Token{Shard: 1, Positions: []channelgroups.RegionPosition{{Region: 1, Pos: p(10, 2)}, {Region: 3, Pos: p(7, 1)}}, At: 200, Origin: 3, Pending: 150}
	m := a.Merge(b)
	want := []channelgroups.RegionPosition{{Region: 1, Pos: p(10, 5)}, {Region: 2, Pos: p(3, 0)}, {Region: 3, Pos: p(7, 1)}}
	if !reflect.DeepEqual(m.Positions, want) || m.At != 200 || m.Origin != 3 || m.Pending != 150 {
		t.Fatalf("Merge = %+v", m)
	}
	if !reflect.DeepEqual(a.Positions, []channelgroups.RegionPosition{{Region: 1, Pos: p(10, 5)}, {Region: 2, Pos: p(3, 0)}}) {
		t.Fatalf("Merge changed its receiver: %+v", a)
	}
}

func FuzzDecodeToken(f *testing.F) {
	k := tokenKey(f, "0123456789abcdef-secret")
	f.Add(k.Encode("acct", sampleToken()))
	f.Add("")
	f.Add("AQA")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := k.Decode("acct", s, tokenNow)
		if err != nil {
			if !errors.Is(err, channelgroups.ErrInvalidToken) {
				t.Fatalf("error %v does not wrap ErrInvalidToken", err)
			}
			return
		}
		// Anything accepted re-encodes to a token that decodes the same.
		again, err := k.Decode("acct", k.Encode("acct", tok), tokenNow)
		if err != nil || again.Shard != tok.Shard || again.At != tok.At || len(again.Positions) != len(tok.Positions) {
			t.Fatalf("re-encoding %+v: %+v, %v", tok, again, err)
		}
	})
}

func FuzzParsePosition(f *testing.F) {
	for _, s := range []string{"0-0", "1700000000000-5", "-", "1-", "x-1", "18446744073709551615-18446744073709551615"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := channelgroups.ParsePosition(s)
		if err != nil {
			return
		}
		if q, err := channelgroups.ParsePosition(p.String()); err != nil || q != p {
			t.Fatalf("round trip %q: %v %v", s, q, err)
		}
	})
}
