package access

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/fxamacker/cbor/v2"
)

const testSecret = "sec-c-test-secret"

var testIssued = time.Unix(1_700_000_000, 0)

func sampleToken() *Token {
	return &Token{
		Version: TokenVersion,
		Issued:  testIssued,
		TTL:     15 * time.Minute,
		Resources: Grants{
			Channels: map[string]Perm{"ch-1": Read | Write, "ch 2,ü": Read, "room-1": Read},
			Groups:   map[string]Perm{"cg-1": Read | Manage},
			UUIDs:    map[string]Perm{"u-1": Get | Update},
		},
		Patterns: Grants{
			Channels: map[string]Perm{"^room-.*": Read | Write},
			Groups:   map[string]Perm{},
			UUIDs:    map[string]Perm{"^bot-[0-9]+$": Get},
		},
		Meta:           map[string]any{"s": "v", "n": int64(-7), "f": 2.5, "b": true, "z": nil},
		AuthorizedUUID: "alice",
	}
}

func mustSign(t testing.TB, tok *Token, secret string) string {
	t.Helper()
	s, err := tok.Sign(secret)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	return s
}

// normMeta makes decoded CBOR numbers comparable with what was signed.
func normMeta(m map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		if u, ok := v.(uint64); ok {
			v = int64(u)
		}
		out[k] = v
	}
	return out
}

func TestTokenRoundTrip(t *testing.T) {
	want := sampleToken()
	s := mustSign(t, want, testSecret)
	if len(s)%4 != 0 || strings.ContainsAny(s, "+/") {
		t.Errorf("token %q: want padded base64url", s)
	}
	for name, parse := range map[string]func() (*Token, error){
		"ParseToken":  func() (*Token, error) { return ParseToken(s) },
		"VerifyToken": func() (*Token, error) { return VerifyToken(s, testSecret, testIssued.Add(time.Minute)) },
	} {
		t.Run(name, func(t *testing.T) {
			got, err := parse()
			if err != nil {
				t.Fatal(err)
			}
			if got.Version != TokenVersion || !got.Issued.Equal(want.Issued) || got.TTL != want.TTL || got.AuthorizedUUID != want.AuthorizedUUID {
				t.Errorf("got v%d issued %s ttl %s uuid %q, want v%d %s %s %q", got.Version, got.Issued, got.TTL, got.AuthorizedUUID, TokenVersion, want.Issued, want.TTL, want.AuthorizedUUID)
			}
			if !reflect.DeepEqual(got.Resources, want.Resources) {
				t.Errorf("resources: got %v, want %v", got.Resources, want.Resources)
			}
			if !reflect.DeepEqual(got.Patterns, want.Patterns) {
				t.Errorf("patterns: got %v, want %v", got.Patterns, want.Patterns)
			}
			if m := normMeta(got.Meta); !reflect.DeepEqual(m, want.Meta) {
				t.Errorf("meta: got %#v, want %#v", m, want.Meta)
			}
			if got.ID() != want.ID() || len(got.ID()) != 64 {
				t.Errorf("ID: got %q, want %q (64 hex digits)", got.ID(), want.ID())
			}
			if !got.Expires().Equal(testIssued.Add(15 * time.Minute)) {
				t.Errorf("Expires: got %s", got.Expires())
			}
		})
	}
}

// TestTokenLayout checks the CBOR against PubNub's own tokens: byte-string
// keys v, t, ttl, res, pat, meta, uuid, sig; res and pat with chan, grp,
// usr, spc, uuid; sig the HMAC of the rest in deterministic CBOR.
func TestTokenLayout(t *testing.T) {
	tok := sampleToken()
	s := mustSign(t, tok, testSecret)
	b, err := base64.URLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	var top map[cbor.ByteString]cbor.RawMessage
	if err := cbor.Unmarshal(b, &top); err != nil {
		t.Fatalf("top level is not a map with byte-string keys: %v", err)
	}
	var keys []string
	for k := range top {
		keys = append(keys, string(k))
	}
	if want := []string{"meta", "pat", "res", "sig", "t", "ttl", "uuid", "v"}; !sameSet(keys, want) {
		t.Errorf("keys: got %v, want %v", keys, want)
	}
	for _, k := range []cbor.ByteString{"res", "pat"} {
		var inner map[cbor.ByteString]map[string]uint32
		if err := cbor.Unmarshal(top[k], &inner); err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		var got []string
		for k := range inner {
			got = append(got, string(k))
		}
		if want := []string{"chan", "grp", "usr", "spc", "uuid"}; !sameSet(got, want) {
			t.Errorf("%s keys: got %v, want %v", k, got, want)
		}
	}
	var v, ttl int
	var ts int64
	var sig []byte
	mustUnmarshal(t, top["v"], &v)
	mustUnmarshal(t, top["t"], &ts)
	mustUnmarshal(t, top["ttl"], &ttl)
	mustUnmarshal(t, top["sig"], &sig)
	if v != 2 || ts != testIssued.Unix() || ttl != 15 {
		t.Errorf("v, t, ttl: got %d %d %d, want 2 %d 15", v, ts, ttl, testIssued.Unix())
	}
	if hex.EncodeToString(sig) != tok.ID() {
		t.Errorf("ID %s is not the hex of sig %x", tok.ID(), sig)
	}
	// The signature is over the deterministic encoding without sig.
	delete(top, "sig")
	rest, err := cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		t.Fatal(err)
	}
	unsigned, err := rest.Marshal(top)
	if err != nil {
		t.Fatal(err)
	}
	if got := mac(testSecret, string(unsigned)); !reflect.DeepEqual(got, sig) {
		t.Errorf("sig %x is not HMAC-SHA256 of the unsigned map (%x)", sig, got)
	}
}

func mustUnmarshal(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := cbor.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]int{}
	for _, x := range a {
		m[x]++
	}
	for _, x := range b {
		m[x]--
	}
	for _, n := range m {
		if n != 0 {
			return false
		}
	}
	return true
}

// Tokens made by PubNub itself (from its SDKs' test suites).
const (
	pubnubTokenMeta    = "qEF2AkF0GmFLd-NDdHRsGQWgQ3Jlc6VEY2hhbqFjY2gxGP9DZ3JwoWNjZzEY_0N1c3KgQ3NwY6BEdXVpZKFldXVpZDEY_0NwYXSlRGNoYW6gQ2dycKBDdXNyoENzcGOgRHV1aWShYl4kAURtZXRho2VzY29yZRhkZWNvbG9yY3JlZGZhdXRob3JlcGFuZHVEdXVpZGtteWF1dGh1dWlkMUNzaWdYIP2vlxHik0EPZwtgYxAW3-LsBaX_WgWdYvtAXpYbKll3"
	pubnubTokenPattern = "qEF2AkF0Gmgi5mVDdHRsGQU5Q3Jlc6VEY2hhbqFnc3BhY2UwMQhDZ3JwoENzcGOgQ3VzcqBEdXVpZKFmdXNlcjAxGCBDcGF0pURjaGFuoWdzcGFjZS4qAUNncnCgQ3NwY6BDdXNyoER1dWlkoWZ1c2VyLioYIERtZXRhoER1dWlkbmF1dGhvcml6ZWRVc2VyQ3NpZ1ggkOSK0vQY5LFE5IHctQ6rGokqHbRH8EopbQRGAbU7Zfo="
)

func TestParsePubNubTokens(t *testing.T) {
	tok, err := ParseToken(pubnubTokenMeta)
	if err != nil {
		t.Fatal(err)
	}
	if tok.Issued.Unix() != 1632335843 || tok.TTL != 1440*time.Minute || tok.AuthorizedUUID != "myauthuuid1" {
		t.Errorf("got t=%d ttl=%s uuid=%q, want 1632335843 24h0m0s myauthuuid1", tok.Issued.Unix(), tok.TTL, tok.AuthorizedUUID)
	}
	if got, want := tok.Resources, (Grants{Channels: map[string]Perm{"ch1": 255}, Groups: map[string]Perm{"cg1": 255}, UUIDs: map[string]Perm{"uuid1": 255}}); !reflect.DeepEqual(got, want) {
		t.Errorf("resources: got %v, want %v", got, want)
	}
	if got, want := normMeta(tok.Meta), map[string]any{"score": int64(100), "color": "red", "author": "pandu"}; !reflect.DeepEqual(got, want) {
		t.Errorf("meta: got %v, want %v", got, want)
	}
	if !tok.Allows(Need{UUID, "", Read}) || tok.Allows(Need{UUID, "x", Read}) {
		t.Error("pattern ^$ on uuids: want it to match only the empty uuid")
	}
	if _, err := VerifyToken(pubnubTokenMeta, testSecret, tok.Issued); !errors.Is(err, ErrTokenSignature) {
		t.Errorf("VerifyToken with another secret: got %v, want ErrTokenSignature", err)
	}

	tok, err = ParseToken(pubnubTokenPattern)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := tok.Patterns.Channels, map[string]Perm{"space.*": Read}; !reflect.DeepEqual(got, want) {
		t.Errorf("patterns: got %v, want %v", got, want)
	}
	if !tok.Allows(Need{Channel, "space42", Read}) || tok.Allows(Need{Channel, "space01", Read}) || !tok.Allows(Need{Channel, "space01", Delete}) {
		t.Error("space01 is named (delete only): the name, not the pattern, decides")
	}
}

func TestVerifyTokenErrors(t *testing.T) {
	s := mustSign(t, sampleToken(), testSecret)
	expires := testIssued.Add(15 * time.Minute)
	if _, err := VerifyToken(s, testSecret, expires.Add(-time.Second)); err != nil {
		t.Fatalf("a second before expiry: %v", err)
	}
	other := sampleToken()
	other.Resources.Channels["ch-1"] = Read | Write | Manage
	forged := mustSign(t, other, "another-secret")

	cases := []struct {
		name  string
		token string
		want  error
	}{
		{"expired", s, ErrTokenExpired},
		{"another keyset's", forged, ErrTokenSignature},
		{"sig of another token", spliceSig(t, forged, s), ErrTokenSignature},
		{"empty", "", ErrBadToken},
		{"too long", strings.Repeat("A", MaxTokenLen+1), ErrBadToken},
		{"not base64", "qEF2!!!", ErrBadToken},
		{"not CBOR", base64.URLEncoding.EncodeToString([]byte{0xff, 0x00}), ErrBadToken},
		{"trailing data", reencode(t, s, func(b []byte) []byte { return append(b, 0) }), ErrBadToken},
		{"CBOR array", cborToken(t, []int{1, 2}), ErrBadToken},
		{"version 3", cborToken(t, map[cbor.ByteString]any{"v": 3, "t": 1, "ttl": 1, "sig": make([]byte, 32)}), ErrBadToken},
		{"no ttl", cborToken(t, map[cbor.ByteString]any{"v": 2, "t": 1, "sig": make([]byte, 32)}), ErrBadToken},
		{"short sig", cborToken(t, map[cbor.ByteString]any{"v": 2, "t": 1, "ttl": 1, "sig": make([]byte, 31)}), ErrBadToken},
		{"unknown field", cborToken(t, map[cbor.ByteString]any{"v": 2, "t": 1, "ttl": 1, "sig": make([]byte, 32), "x": 1}), ErrBadToken},
		{"too many resources", cborToken(t, map[cbor.ByteString]any{"v": 2, "t": 1, "ttl": 1, "sig": make([]byte, 32),
			"res": map[cbor.ByteString]any{"chan": names(150), "grp": names(51)}}), ErrBadToken},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := VerifyToken(c.token, testSecret, expires)
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			for _, e := range []error{ErrBadToken, ErrTokenSignature, ErrTokenExpired} {
				if e != c.want && errors.Is(err, e) {
					t.Errorf("%v also wraps %v", err, e)
				}
			}
		})
	}
	// Every single-character change of the token is refused.
	for i := range s {
		for _, c := range []byte{'A', 'g', '_'} {
			if s[i] == c || s[i] == '=' {
				continue
			}
			b := []byte(s)
			b[i] = c
			if _, err := VerifyToken(string(b), testSecret, testIssued); err == nil {
				t.Fatalf("token with char %d changed to %q verified", i, c)
			}
		}
	}
}

func names(n int) map[string]int {
	m := map[string]int{}
	for i := range n {
		m[strings.Repeat("x", i+1)] = 1
	}
	return m
}

func cborToken(t *testing.T, v any) string {
	t.Helper()
	b, err := cbor.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return base64.URLEncoding.EncodeToString(b)
}

func reencode(t *testing.T, s string, f func([]byte) []byte) string {
	t.Helper()
	b, err := base64.URLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return base64.URLEncoding.EncodeToString(f(b))
}

// spliceSig returns token body's content with sig's signature.
func spliceSig(t *testing.T, body, sig string) string {
	t.Helper()
	var w map[cbor.ByteString]cbor.RawMessage
	mustUnmarshal(t, mustB64(t, body), &w)
	var s map[cbor.ByteString]cbor.RawMessage
	mustUnmarshal(t, mustB64(t, sig), &s)
	w["sig"] = s["sig"]
	b, err := cbor.Marshal(w)
	if err != nil {
		t.Fatal(err)
	}
	return base64.URLEncoding.EncodeToString(b)
}

func mustB64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.URLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestParseTokenEncodings: ParseToken reads a token however it is spelled;
// VerifyToken accepts only the spelling Sign made, so that one token is one
// entry in a cache of verified tokens.
func TestParseTokenEncodings(t *testing.T) {
	s := mustSign(t, sampleToken(), testSecret)
	b := mustB64(t, s)
	if _, err := VerifyToken(s, testSecret, testIssued); err != nil {
		t.Fatalf("as signed: %v", err)
	}
	for name, enc := range map[string]string{
		"unpadded base64url": base64.RawURLEncoding.EncodeToString(b),
		"standard base64":    base64.StdEncoding.EncodeToString(b),
		"extra padding":      s + "==",
	} {
		if _, err := ParseToken(enc); err != nil {
			t.Errorf("ParseToken, %s: %v", name, err)
		}
		if enc == s { // this token's length needs no padding
			continue
		}
		if _, err := VerifyToken(enc, testSecret, testIssued); !errors.Is(err, ErrBadToken) {
			t.Errorf("VerifyToken, %s: %v, want ErrBadToken", name, err)
		}
	}
	// The same map with its keys in another order: the HMAC (over the
	// canonical encoding) matches, the spelling does not.
	var m map[cbor.ByteString]cbor.RawMessage
	if err := cbor.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	em, err := cbor.EncOptions{Sort: cbor.SortNone}.EncMode()
	if err != nil {
		t.Fatal(err)
	}
	for range 20 { // map order is random: some orders differ from the canonical one
		other, err := em.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if string(other) == string(b) {
			continue
		}
		if _, err := VerifyToken(base64.URLEncoding.EncodeToString(other), testSecret, testIssued); !errors.Is(err, ErrBadToken) {
			t.Fatalf("reordered CBOR: %v, want ErrBadToken", err)
		}
		return
	}
	t.Fatal("no reordering of the token's map differed from the canonical encoding")
}

func TestSignErrors(t *testing.T) {
	for name, f := range map[string]func(*Token){
		"no issue time":    func(t *Token) { t.Issued = time.Time{} },
		"ttl not minutes":  func(t *Token) { t.TTL = 90 * time.Second },
		"ttl zero":         func(t *Token) { t.TTL = 0 },
		"version 3":        func(t *Token) { t.Version = 3 },
		"meta not encoded": func(t *Token) { t.Meta = map[string]any{"c": make(chan int)} },
	} {
		tok := sampleToken()
		f(tok)
		if s, err := tok.Sign(testSecret); err == nil {
			t.Errorf("%s: signed %q, want an error", name, s)
		}
	}
	if s, err := sampleToken().Sign(""); err == nil {
		t.Errorf("empty secret: signed %q, want an error", s)
	}
}

func TestAllows(t *testing.T) {
	tok := sampleToken()
	cases := []struct {
		need Need
		want bool
	}{
		{Need{Channel, "ch-1", Read}, true},
		{Need{Channel, "ch-1", Write}, true},
		{Need{Channel, "ch-1", Read | Write}, true},
		{Need{Channel, "ch-1", Manage}, false},
		{Need{Channel, "ch 2,ü", Read}, true},
		{Need{Channel, "ch 2,ü", Write}, false},
		{Need{Channel, "ch-3", Read}, false},
		{Need{Channel, "room-7", Write}, true},
		{Need{Channel, "room-1", Read}, true},
		{Need{Channel, "room-1", Write}, false}, // named: the pattern does not add to it
		{Need{Channel, "room-", Read}, true},
		{Need{Channel, "a-room-7", Read}, false},
		{Need{Channel, "room-7", Delete}, false},
		{Need{Group, "cg-1", Manage}, true},
		{Need{Group, "cg-1", Write}, false},
		{Need{Group, "room-7", Read}, false}, // the pattern is for channels
		{Need{UUID, "u-1", Update}, true},
		{Need{UUID, "u-1", Read}, false},
		{Need{UUID, "bot-12", Get}, true},
		{Need{UUID, "bot-12x", Get}, false},
		{Need{Kind(9), "ch-1", Read}, false},
	}
	for _, c := range cases {
		if got := tok.Allows(c.need); got != c.want {
			t.Errorf("Allows(%+v): got %v, want %v", c.need, got, c.want)
		}
	}
}

func TestAllowsBadPattern(t *testing.T) {
	tok := &Token{Patterns: Grants{Channels: map[string]Perm{"(": Read, ".*": Write}}}
	if tok.Allows(Need{Channel, "x", Read}) || !tok.Allows(Need{Channel, "x", Write}) {
		t.Error("a pattern that does not compile must match nothing, and not stop the others")
	}
}

func TestTokenCache(t *testing.T) {
	c := NewTokenCache(10)
	s := mustSign(t, sampleToken(), testSecret)
	now := testIssued.Add(time.Minute)
	a, err := c.Verify(s, testSecret, now)
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Verify(s, testSecret, now)
	if err != nil || a != b {
		t.Fatalf("second Verify: got %p, %v; want the cached %p", b, err, a)
	}
	if _, err := c.Verify(s, "rotated-secret", now); !errors.Is(err, ErrTokenSignature) {
		t.Errorf("another secret: got %v, want ErrTokenSignature", err)
	}
	if _, err := c.Verify(s, testSecret, a.Expires()); !errors.Is(err, ErrTokenExpired) {
		t.Errorf("at expiry: got %v, want ErrTokenExpired", err)
	}
	if _, err := c.Verify(s, testSecret, now); err != nil {
		t.Errorf("an earlier now after expiry was seen: %v (the cache must not remember errors)", err)
	}
	bad := s[:len(s)-8] + "AAAAAAA="
	for range 2 {
		if _, err := c.Verify(bad, testSecret, now); err == nil {
			t.Fatal("a tampered token verified")
		}
	}
}

// TestTokenCacheCopiesItsKey: the HTTP layer passes a token that aliases
// the request's buffer, which the next request overwrites; the cache must
// keep its own copy of the key, or the entry would change under it: found
// by neither token, or by the wrong one.
func TestTokenCacheCopiesItsKey(t *testing.T) {
	c := NewTokenCache(10)
	s := mustSign(t, sampleToken(), testSecret)
	now := testIssued.Add(time.Minute)
	buf := []byte(s)
	a, err := c.Verify(unsafe.String(unsafe.SliceData(buf), len(buf)), testSecret, now)
	if err != nil {
		t.Fatal(err)
	}
	bad := s[:len(s)-8] + "AAAAAAA="
	copy(buf, bad) // the next request, in the same buffer
	if _, err := c.Verify(bad, testSecret, now); err == nil {
		t.Fatal("a tampered token verified")
	}
	b, err := c.Verify(s, testSecret, now)
	if err != nil || a != b {
		t.Fatalf("the first token again: got %p, %v; want the cached %p (the cache's key changed with the caller's buffer)", b, err, a)
	}
}

func BenchmarkVerifyUncached(b *testing.B) {
	s := mustSign(b, sampleToken(), testSecret)
	now := testIssued.Add(time.Minute)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := VerifyToken(s, testSecret, now); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyCached(b *testing.B) {
	s := mustSign(b, sampleToken(), testSecret)
	now := testIssued.Add(time.Minute)
	c := NewTokenCache(0)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Verify(s, testSecret, now); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkAllowsPattern(b *testing.B) {
	tok := sampleToken()
	n := Need{Channel, "room-42", Write}
	b.ReportAllocs()
	for b.Loop() {
		if !tok.Allows(n) {
			b.Fatal("denied")
		}
	}
}

func FuzzParseToken(f *testing.F) {
	tok := sampleToken()
	f.Add(mustSign(f, tok, testSecret))
	f.Add(pubnubTokenMeta)
	f.Add(pubnubTokenPattern)
	f.Add("")
	f.Add("qEF2Ag==")
	f.Add(base64.URLEncoding.EncodeToString([]byte{0xa1, 0x41, 'v', 0x02}))
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := ParseToken(s)
		if err != nil {
			if !errors.Is(err, ErrBadToken) {
				t.Fatalf("error %v does not wrap ErrBadToken", err)
			}
			return
		}
		if len(tok.ID()) != 64 {
			t.Fatalf("ID %q: want 64 hex digits", tok.ID())
		}
		if tok.Resources.Len()+tok.Patterns.Len() > MaxTokenResources {
			t.Fatalf("%d resources passed the bound", tok.Resources.Len()+tok.Patterns.Len())
		}
		tok.Allows(Need{Channel, "room-1", Read})
		// Only the seed was signed with testSecret: a token that verifies
		// (another encoding of the same content may) carries its signature.
		if v, err := VerifyToken(s, testSecret, tok.Issued); err == nil && v.ID() != seedID {
			t.Fatalf("forged: %q verified with ID %s", s, v.ID())
		}
	})
}

var seedID = func() string {
	tok := sampleToken()
	if _, err := tok.Sign(testSecret); err != nil {
		panic(err)
	}
	return tok.ID()
}()
