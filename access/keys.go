package access

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// ErrInvalid is wrapped by the errors of Keyset.Validate and
// Revocation.Validate: bad input, which the HTTP layer answers with a 400.
var ErrInvalid = errors.New("access: invalid keyset or revocation")

// Limits on the values a Store keeps.
const (
	// MaxKeyLen is the longest publish, subscribe or secret key, in bytes
	// (the subscribe key is also an account name, whose limit this is).
	MaxKeyLen = 92
	// MaxTokenIDLen is the longest revocation token id, in bytes.
	MaxTokenIDLen = 512
)

// NewKeyset makes a keyset with fresh random keys in PubNub's shapes:
// "pub-c-<uuid>", "sub-c-<uuid>" and "sec-c-<base64url of 32 random
// bytes>". Created is now, to the millisecond (what the stores keep).
func NewKeyset(pam bool, now time.Time) (Keyset, error) {
	pub, err := randomUUID()
	if err != nil {
		return Keyset{}, err
	}
	sub, err := randomUUID()
	if err != nil {
		return Keyset{}, err
	}
	sec, err := newSecret()
	if err != nil {
		return Keyset{}, err
	}
	return Keyset{
		PublishKey:   "pub-c-" + pub,
		SubscribeKey: "sub-c-" + sub,
		SecretKey:    sec,
		PAM:          pam,
		Created:      now.UTC().Truncate(time.Millisecond),
	}, nil
}

// RotateSecret returns k with a fresh secret key; tokens signed with the old
// one no longer verify once the result is stored.
func RotateSecret(k Keyset) (Keyset, error) {
	sec, err := newSecret()
	if err != nil {
		return Keyset{}, err
	}
	k.SecretKey = sec
	return k, nil
}

func newSecret() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("access: random secret: %w", err)
	}
	return "sec-c-" + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// randomUUID returns a random (version 4) UUID in its canonical text form.
func randomUUID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("access: random uuid: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // RFC 9562 variant
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:]), nil
}

// pathUnsafe are the characters a publish or subscribe key may not hold:
// both are path segments of PubNub's URLs, and the subscribe key is an
// account name (channelgroups forbids ",:*/\\ " in names).
const pathUnsafe = "/\\?#%,:*"

// Validate checks that k can be stored: each key 1 to MaxKeyLen bytes of
// printable ASCII (no space), the publish and subscribe keys without URL or
// name delimiters (/ \ ? # % , : *). It does not check PubNub's shapes:
// keys brought from elsewhere are fine.
func (k Keyset) Validate() error {
	for _, f := range []struct {
		name, v  string
		pathSafe bool
	}{
		{"subscribe key", k.SubscribeKey, true},
		{"publish key", k.PublishKey, true},
		{"secret key", k.SecretKey, false},
	} {
		if err := checkKey(f.name, f.v, f.pathSafe); err != nil {
			return err
		}
	}
	return nil
}

// ValidateSubscribeKey checks a subscribe key as Keyset.Validate does.
func ValidateSubscribeKey(s string) error { return checkKey("subscribe key", s, true) }

func checkKey(name, v string, pathSafe bool) error {
	switch {
	case v == "":
		return fmt.Errorf("%s is empty: %w", name, ErrInvalid)
	case len(v) > MaxKeyLen:
		return fmt.Errorf("%s is %d bytes, at most %d: %w", name, len(v), MaxKeyLen, ErrInvalid)
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c <= ' ' || c > '~' {
			return fmt.Errorf("%s holds byte %#x: only printable ASCII: %w", name, c, ErrInvalid)
		}
		if pathSafe {
			for j := 0; j < len(pathUnsafe); j++ {
				if c == pathUnsafe[j] {
					return fmt.Errorf("%s holds %q: %w", name, c, ErrInvalid)
				}
			}
		}
	}
	return nil
}

// Validate checks that r can be stored: a valid subscribe key, a token id
// of 1 to MaxTokenIDLen bytes of UTF-8 without control characters, and a
// non-zero Until.
func (r Revocation) Validate() error {
	if err := ValidateSubscribeKey(r.SubscribeKey); err != nil {
		return err
	}
	switch {
	case r.TokenID == "":
		return fmt.Errorf("token id is empty: %w", ErrInvalid)
	case len(r.TokenID) > MaxTokenIDLen:
		return fmt.Errorf("token id is %d bytes, at most %d: %w", len(r.TokenID), MaxTokenIDLen, ErrInvalid)
	case !utf8.ValidString(r.TokenID):
		return fmt.Errorf("token id is not UTF-8: %w", ErrInvalid)
	case r.Until.IsZero():
		return fmt.Errorf("revocation of %q has no Until: %w", r.TokenID, ErrInvalid)
	}
	for _, c := range r.TokenID {
		if c < ' ' || c == 0x7f || (c >= 0x80 && c < 0xa0) {
			return fmt.Errorf("token id holds control character %#x: %w", c, ErrInvalid)
		}
	}
	return nil
}
