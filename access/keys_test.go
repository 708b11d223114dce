package access

import (
	"encoding/base64"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

var (
	uuidShape   = `[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}`
	pubShape    = regexp.MustCompile(`^pub-c-` + uuidShape + `$`)
	subShape    = regexp.MustCompile(`^sub-c-` + uuidShape + `$`)
	secretShape = regexp.MustCompile(`^sec-c-[A-Za-z0-9_-]{43}$`)
)

func TestNewKeyset(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 678_901_234, time.FixedZone("X", 3600))
	k, err := NewKeyset(true, now)
	if err != nil {
		t.Fatal(err)
	}
	if !pubShape.MatchString(k.PublishKey) || !subShape.MatchString(k.SubscribeKey) || !secretShape.MatchString(k.SecretKey) {
		t.Fatalf("NewKeyset = %+v; want PubNub's shapes pub-c-<uuid>, sub-c-<uuid>, sec-c-<43 base64url>", k)
	}
	if raw, err := base64.RawURLEncoding.DecodeString(k.SecretKey[len("sec-c-"):]); err != nil || len(raw) != 32 {
		t.Fatalf("secret %q holds %d bytes (%v), want 32", k.SecretKey, len(raw), err)
	}
	if !k.PAM {
		t.Fatal("NewKeyset(true, …).PAM is false")
	}
	if want := now.Truncate(time.Millisecond); !k.Created.Equal(want) || k.Created.Location() != time.UTC {
		t.Fatalf("Created = %v, want %v in UTC", k.Created, want)
	}
	if err := k.Validate(); err != nil {
		t.Fatalf("a new keyset does not validate: %v", err)
	}
	other, err := NewKeyset(false, now)
	if err != nil {
		t.Fatal(err)
	}
	if other.PAM || other.PublishKey == k.PublishKey || other.SubscribeKey == k.SubscribeKey || other.SecretKey == k.SecretKey {
		t.Fatalf("two new keysets share keys or PAM: %+v and %+v", k, other)
	}
}

func TestRotateSecret(t *testing.T) {
	k, err := NewKeyset(true, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	r, err := RotateSecret(k)
	if err != nil {
		t.Fatal(err)
	}
	if r.SecretKey == k.SecretKey || !secretShape.MatchString(r.SecretKey) {
		t.Fatalf("rotated secret %q (was %q); want a new one in shape", r.SecretKey, k.SecretKey)
	}
	r.SecretKey = k.SecretKey
	if r != k {
		t.Fatalf("RotateSecret changed more than the secret: %+v, was %+v", r, k)
	}
}

func TestValidate(t *testing.T) {
	good := Keyset{SubscribeKey: "sub-c-1", PublishKey: "pub-c-1", SecretKey: "sec-c-a/b+c="}
	if err := good.Validate(); err != nil {
		t.Fatalf("%+v: %v", good, err)
	}
	for _, tc := range []struct {
		name string
		k    Keyset
	}{
		{"empty subscribe key", Keyset{PublishKey: "p", SecretKey: "s"}},
		{"empty publish key", Keyset{SubscribeKey: "s", SecretKey: "s"}},
		{"empty secret key", Keyset{SubscribeKey: "s", PublishKey: "p"}},
		{"slash", Keyset{SubscribeKey: "s/x", PublishKey: "p", SecretKey: "s"}},
		{"comma", Keyset{SubscribeKey: "s", PublishKey: "p,q", SecretKey: "s"}},
		{"percent", Keyset{SubscribeKey: "s%2F", PublishKey: "p", SecretKey: "s"}},
		{"space", Keyset{SubscribeKey: "s", PublishKey: "p", SecretKey: "s s"}},
		{"non-ASCII", Keyset{SubscribeKey: "sü", PublishKey: "p", SecretKey: "s"}},
		{"NUL", Keyset{SubscribeKey: "s", PublishKey: "p", SecretKey: "s\x00"}},
		{"too long", Keyset{SubscribeKey: strings.Repeat("s", MaxKeyLen+1), PublishKey: "p", SecretKey: "s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.k.Validate(); !errors.Is(err, ErrInvalid) {
				t.Fatalf("Validate(%+v) = %v, want ErrInvalid", tc.k, err)
			}
		})
	}
	until := time.Now()
	if err := (Revocation{SubscribeKey: "sub-c-1", TokenID: "p0F2AkF0Gm", Until: until}).Validate(); err != nil {
		t.Fatal(err)
	}
	for _, r := range []Revocation{
		{SubscribeKey: "", TokenID: "t", Until: until},
		{SubscribeKey: "s", TokenID: "", Until: until},
		{SubscribeKey: "s", TokenID: "t"},
		{SubscribeKey: "s", TokenID: "t\x00", Until: until},
		{SubscribeKey: "s", TokenID: "\xff", Until: until},
		{SubscribeKey: "s", TokenID: strings.Repeat("t", MaxTokenIDLen+1), Until: until},
	} {
		if err := r.Validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("Validate(%+v) = %v, want ErrInvalid", r, err)
		}
	}
}

// FuzzValidate: whatever Validate accepts is what the stores can keep and
// the URLs can carry: short printable ASCII, no delimiters in the publish and
// subscribe keys, a token id without control characters.
func FuzzValidate(f *testing.F) {
	f.Add("sub-c-1", "pub-c-1", "sec-c-x", "tok")
	f.Add("", "p", "s", "")
	f.Add("s/x", "p?q", "s s", "t\x00")
	f.Add("sü", "p", "s", "\xff")
	f.Fuzz(func(t *testing.T, sub, pub, sec, token string) {
		k := Keyset{SubscribeKey: sub, PublishKey: pub, SecretKey: sec}
		if err := k.Validate(); err == nil {
			for _, v := range []string{sub, pub, sec} {
				if v == "" || len(v) > MaxKeyLen || strings.ContainsFunc(v, func(r rune) bool { return r <= ' ' || r > '~' }) {
					t.Fatalf("Validate accepted key %q", v)
				}
			}
			for _, v := range []string{sub, pub} {
				if strings.ContainsAny(v, pathUnsafe) {
					t.Fatalf("Validate accepted a delimiter in %q", v)
				}
			}
		} else if !errors.Is(err, ErrInvalid) {
			t.Fatalf("Validate error %v does not wrap ErrInvalid", err)
		}
		r := Revocation{SubscribeKey: sub, TokenID: token, Until: time.Unix(1, 0)}
		if err := r.Validate(); err == nil {
			if ValidateSubscribeKey(sub) != nil || token == "" || len(token) > MaxTokenIDLen || !utf8.ValidString(token) ||
				strings.ContainsFunc(token, func(r rune) bool { return r < ' ' || r == 0x7f || (r >= 0x80 && r < 0xa0) }) {
				t.Fatalf("Validate accepted revocation %+v", r)
			}
		} else if !errors.Is(err, ErrInvalid) {
			t.Fatalf("Validate error %v does not wrap ErrInvalid", err)
		}
	})
}
