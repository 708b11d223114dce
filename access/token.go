package access

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/maypok86/otter/v2"
)

// Token errors. VerifyToken's errors wrap exactly one of them; the message
// after the prefix says what is wrong.
var (
	// ErrBadToken: the token is not a PubNub v3 token (bad base64 or CBOR,
	// a field missing or out of range, too large).
	ErrBadToken = errors.New("access: malformed token")
	// ErrTokenSignature: the token was not signed with the keyset's secret
	// key (tampered, or another keyset's, or made before the secret was
	// rotated).
	ErrTokenSignature = errors.New("access: token signature does not match")
	// ErrTokenExpired: the token's ttl has run out.
	ErrTokenExpired = errors.New("access: token expired")
)

// Token limits: a token longer than MaxTokenLen characters, or granting on
// more than MaxTokenResources names and patterns in all, is refused.
const (
	MaxTokenLen       = 32 << 10
	MaxTokenResources = 200
)

// TokenVersion is the version of PubNub's token layout ("v") that ParseToken
// reads and Sign writes.
const TokenVersion = 2

// Grants are permissions by resource name, or by pattern (a Go regexp,
// matched unanchored as PubNub does: `^room-.*`).
type Grants struct {
	Channels map[string]Perm
	Groups   map[string]Perm
	UUIDs    map[string]Perm
}

// Len is the number of names in g.
func (g Grants) Len() int { return len(g.Channels) + len(g.Groups) + len(g.UUIDs) }

func (g Grants) of(k Kind) map[string]Perm {
	switch k {
	case Channel:
		return g.Channels
	case Group:
		return g.Groups
	case UUID:
		return g.UUIDs
	}
	return nil
}

// Token is an Access Manager v3 token: permissions on channels, channel
// groups and uuids, by name and by pattern, for TTL from Issued. A token
// comes from ParseGrant (then Sign), ParseToken or VerifyToken; use it by
// pointer, and do not change it once signed or verified.
type Token struct {
	Version   int // TokenVersion
	Issued    time.Time
	TTL       time.Duration // whole minutes, as the token carries it
	Resources Grants
	Patterns  Grants
	// Meta is the grant's meta: string, number (int64, uint64 or float64),
	// bool or nil values.
	Meta map[string]any
	// AuthorizedUUID, when set, is the only uuid that may use the token.
	AuthorizedUUID string

	sig  []byte
	id   string // hex of sig, made with it: ID is on every request's path
	pats atomic.Pointer[compiledPatterns]
}

// ID identifies the token for revocation: the hex of its signature. It is
// empty until the token is signed or parsed.
func (t *Token) ID() string { return t.id }

// Expires is when the token stops being valid: Issued plus TTL.
func (t *Token) Expires() time.Time { return t.Issued.Add(t.TTL) }

// Allows reports whether the token grants n: the permissions given to
// n.Name by name if the token names it, else those of a pattern matching
// n.Name. Every bit of n.Perm must be granted.
func (t *Token) Allows(n Need) bool {
	if p, ok := t.Resources.of(n.Kind)[n.Name]; ok {
		return p&n.Perm == n.Perm
	}
	for _, cp := range t.compiled().of(n.Kind) {
		if cp.perm&n.Perm == n.Perm && cp.re.MatchString(n.Name) {
			return true
		}
	}
	return false
}

type compiledPattern struct {
	re   *regexp.Regexp
	perm Perm
}

type compiledPatterns struct{ chans, groups, uuids []compiledPattern }

func (c *compiledPatterns) of(k Kind) []compiledPattern {
	switch k {
	case Channel:
		return c.chans
	case Group:
		return c.groups
	case UUID:
		return c.uuids
	}
	return nil
}

// compiled returns the token's patterns compiled, compiling them on first
// use. A pattern that does not compile matches nothing (ParseGrant refuses
// such patterns, so signed tokens have none).
func (t *Token) compiled() *compiledPatterns {
	if c := t.pats.Load(); c != nil {
		return c
	}
	compile := func(m map[string]Perm) []compiledPattern {
		var out []compiledPattern
		for p, perm := range m {
			if re, err := regexp.Compile(p); err == nil {
				out = append(out, compiledPattern{re: re, perm: perm})
			}
		}
		return out
	}
	c := &compiledPatterns{
		chans:  compile(t.Patterns.Channels),
		groups: compile(t.Patterns.Groups),
		uuids:  compile(t.Patterns.UUIDs),
	}
	if t.pats.CompareAndSwap(nil, c) {
		return c
	}
	return t.pats.Load()
}

// Sign signs the token with a keyset's secret key and returns it in
// PubNub's form: base64url, with padding (PubNub's own tokens keep it, and
// the Python SDK needs it), of the CBOR map {v, t, ttl, res, pat, meta,
// uuid (when set), sig}, whose keys are CBOR byte strings as in PubNub's
// tokens. sig is HMAC-SHA256 under the secret of the map without sig, in
// CBOR's core deterministic encoding. The token's ID is set.
func (t *Token) Sign(secret string) (string, error) {
	if secret == "" {
		return "", errors.New("access: sign a token: empty secret key")
	}
	if t.Issued.IsZero() {
		return "", errors.New("access: sign a token: Issued is not set")
	}
	w, err := t.wire()
	if err != nil {
		return "", err
	}
	if w.Sig, err = w.mac(secret); err != nil {
		return "", fmt.Errorf("access: sign a token: %w", err)
	}
	b, err := w.encode(true)
	if err != nil {
		return "", fmt.Errorf("access: sign a token: %w", err)
	}
	s := base64.URLEncoding.EncodeToString(b)
	if len(s) > MaxTokenLen {
		return "", fmt.Errorf("access: sign a token: the token would be %d characters, at most %d", len(s), MaxTokenLen)
	}
	t.sig, t.id = w.Sig, hex.EncodeToString(w.Sig)
	return s, nil
}

// ParseToken reads a token without verifying its signature (to show what it
// grants, or to find its ID). It accepts base64url or standard base64,
// padded or not. Errors wrap ErrBadToken.
func ParseToken(s string) (*Token, error) {
	w, err := parseWire(s)
	if err != nil {
		return nil, err
	}
	return w.token(), nil
}

// VerifyToken parses a token and checks that it was signed with secret and
// has not expired at now. Errors wrap ErrBadToken, ErrTokenSignature or
// ErrTokenExpired. Revocation is not its business: check the token's ID
// against the revoked set.
func VerifyToken(s, secret string, now time.Time) (*Token, error) {
	w, err := parseWire(s)
	if err != nil {
		return nil, err
	}
	if secret == "" {
		return nil, ErrTokenSignature
	}
	if mac, err := w.mac(secret); err != nil || !hmac.Equal(mac, w.Sig) {
		return nil, ErrTokenSignature
	}
	// Only the exact string Sign made verifies: padding, the base64
	// alphabet and the CBOR encoding admit many spellings of one token,
	// and each would be a separate entry in a cache of verified tokens.
	if b, err := w.encode(true); err != nil || base64.URLEncoding.EncodeToString(b) != s {
		return nil, badToken("not in the form this service issues tokens in")
	}
	t := w.token()
	if exp := t.Expires(); !now.Before(exp) {
		return nil, fmt.Errorf("%w: at %s", ErrTokenExpired, exp.UTC().Format(time.RFC3339))
	}
	return t, nil
}

// wireToken is a token as its CBOR carries it.
type wireToken struct {
	V    int            `cbor:"v"`
	T    int64          `cbor:"t"`
	TTL  int64          `cbor:"ttl"`
	Res  wireGrants     `cbor:"res"`
	Pat  wireGrants     `cbor:"pat"`
	Meta map[string]any `cbor:"meta"`
	UUID string         `cbor:"uuid"`
	Sig  []byte         `cbor:"sig"`
}

// wireGrants are a token's res or pat. usr and spc are the names an early
// PubNub Objects API gave uuids and channels; tokens still carry them,
// empty.
type wireGrants struct {
	Chan map[string]Perm `cbor:"chan"`
	Grp  map[string]Perm `cbor:"grp"`
	Usr  map[string]Perm `cbor:"usr"`
	Spc  map[string]Perm `cbor:"spc"`
	UUID map[string]Perm `cbor:"uuid"`
}

func (g wireGrants) len() int {
	return len(g.Chan) + len(g.Grp) + len(g.Usr) + len(g.Spc) + len(g.UUID)
}

func (g wireGrants) cbor() map[cbor.ByteString]any {
	m := func(x map[string]Perm) map[string]Perm {
		if x == nil {
			return map[string]Perm{}
		}
		return x
	}
	return map[cbor.ByteString]any{
		"chan": m(g.Chan), "grp": m(g.Grp), "usr": m(g.Usr), "spc": m(g.Spc), "uuid": m(g.UUID),
	}
}

// grants folds usr into uuids and spc into channels.
func (g wireGrants) grants() Grants {
	merge := func(a, b map[string]Perm) map[string]Perm {
		out := make(map[string]Perm, len(a)+len(b))
		for k, v := range a {
			out[k] |= v
		}
		for k, v := range b {
			out[k] |= v
		}
		return out
	}
	return Grants{Channels: merge(g.Chan, g.Spc), Groups: merge(g.Grp, nil), UUIDs: merge(g.UUID, g.Usr)}
}

var (
	encMode = func() cbor.EncMode {
		em, err := cbor.CoreDetEncOptions().EncMode()
		if err != nil {
			panic(err)
		}
		return em
	}()
	decMode = func() cbor.DecMode {
		dm, err := cbor.DecOptions{
			DupMapKey:           cbor.DupMapKeyEnforcedAPF,
			IndefLength:         cbor.IndefLengthForbidden,
			TagsMd:              cbor.TagsForbidden,
			MaxNestedLevels:     8,
			MaxArrayElements:    MaxTokenResources,
			MaxMapPairs:         256, // > MaxTokenResources, MaxMetaKeys
			ExtraReturnErrors:   cbor.ExtraDecErrorUnknownField,
			FieldNameByteString: cbor.FieldNameByteStringAllowed,
			ByteStringToString:  cbor.ByteStringToStringAllowed,
			UTF8:                cbor.UTF8RejectInvalid,
		}.DecMode()
		if err != nil {
			panic(err)
		}
		return dm
	}()
)

func (t *Token) wire() (*wireToken, error) {
	if t.Version != 0 && t.Version != TokenVersion {
		return nil, fmt.Errorf("access: sign a token: version %d, want %d", t.Version, TokenVersion)
	}
	if t.TTL < time.Minute || t.TTL%time.Minute != 0 {
		return nil, fmt.Errorf("access: sign a token: ttl %s is not a whole number of minutes >= 1", t.TTL)
	}
	meta := t.Meta
	if meta == nil {
		meta = map[string]any{}
	}
	return &wireToken{
		V:    TokenVersion,
		T:    t.Issued.Unix(),
		TTL:  int64(t.TTL / time.Minute),
		Res:  wireGrants{Chan: t.Resources.Channels, Grp: t.Resources.Groups, UUID: t.Resources.UUIDs},
		Pat:  wireGrants{Chan: t.Patterns.Channels, Grp: t.Patterns.Groups, UUID: t.Patterns.UUIDs},
		Meta: meta,
		UUID: t.AuthorizedUUID,
	}, nil
}

// encode encodes w in PubNub's layout, with sig or without it (what the
// signature is made over).
func (w *wireToken) encode(withSig bool) ([]byte, error) {
	meta := w.Meta
	if meta == nil {
		meta = map[string]any{}
	}
	m := map[cbor.ByteString]any{
		"v": w.V, "t": w.T, "ttl": w.TTL, "res": w.Res.cbor(), "pat": w.Pat.cbor(), "meta": meta,
	}
	if w.UUID != "" {
		m["uuid"] = w.UUID
	}
	if withSig {
		m["sig"] = w.Sig
	}
	return encMode.Marshal(m)
}

// mac is the signature w should carry under secret.
func (w *wireToken) mac(secret string) ([]byte, error) {
	b, err := w.encode(false)
	if err != nil {
		return nil, err
	}
	h := hmac.New(sha256.New, []byte(secret))
	h.Write(b)
	return h.Sum(nil), nil
}

func (w *wireToken) token() *Token {
	t := &Token{
		Version:        w.V,
		Issued:         time.Unix(w.T, 0),
		TTL:            time.Duration(w.TTL) * time.Minute,
		Resources:      w.Res.grants(),
		Patterns:       w.Pat.grants(),
		Meta:           w.Meta,
		AuthorizedUUID: w.UUID,
		sig:            w.Sig,
		id:             hex.EncodeToString(w.Sig),
	}
	if t.Meta == nil {
		t.Meta = map[string]any{}
	}
	return t
}

func badToken(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrBadToken}, args...)...)
}

// maxTTLMinutes bounds a parsed token's ttl (a year; grants stop at 30 days)
// so that Issued+TTL cannot overflow.
const maxTTLMinutes = 525600

func parseWire(s string) (*wireToken, error) {
	if s == "" {
		return nil, badToken("empty token")
	}
	if len(s) > MaxTokenLen {
		return nil, badToken("%d characters, at most %d", len(s), MaxTokenLen)
	}
	s = strings.TrimRight(s, "=")
	if strings.ContainsAny(s, "+/") {
		s = strings.NewReplacer("+", "-", "/", "_").Replace(s)
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, badToken("not base64: %v", err)
	}
	var w wireToken
	if err := decMode.Unmarshal(b, &w); err != nil {
		return nil, badToken("not a CBOR token map: %v", err)
	}
	switch {
	case w.V != TokenVersion:
		return nil, badToken("version %d, want %d", w.V, TokenVersion)
	case w.T <= 0 || w.T > 1<<40:
		return nil, badToken("issue time %d out of range", w.T)
	case w.TTL <= 0 || w.TTL > maxTTLMinutes:
		return nil, badToken("ttl %d minutes out of range 1..%d", w.TTL, maxTTLMinutes)
	case len(w.Sig) != sha256.Size:
		return nil, badToken("signature is %d bytes, want %d", len(w.Sig), sha256.Size)
	case w.Res.len()+w.Pat.len() > MaxTokenResources:
		return nil, badToken("%d resources and patterns, at most %d", w.Res.len()+w.Pat.len(), MaxTokenResources)
	}
	return &w, nil
}

// TokenCache remembers verified tokens, so that a token seen before costs a
// map lookup and an expiry check instead of base64, CBOR and HMAC. It is
// keyed by token and secret key: rotating a keyset's secret makes its old
// tokens miss, and verification against the new secret fails. Only tokens
// that verified enter it (tokens this service signed, at most MaxTokenLen
// each), and errors are not cached. Safe for concurrent use.
type TokenCache struct {
	c *otter.Cache[tokenKey, *Token]
}

type tokenKey struct{ token, secret string }

// DefaultTokenCacheSize is NewTokenCache's size when given zero.
const DefaultTokenCacheSize = 100_000

// NewTokenCache returns an empty cache of about size tokens of 1 KiB; size
// <= 0 means DefaultTokenCacheSize. Tokens are weighed by their length, so
// larger ones count for more.
func NewTokenCache(size int) *TokenCache {
	if size <= 0 {
		size = DefaultTokenCacheSize
	}
	return &TokenCache{c: otter.Must(&otter.Options[tokenKey, *Token]{
		MaximumWeight: uint64(size) << 10,
		Weigher: func(k tokenKey, t *Token) uint32 {
			return uint32(len(k.token) + 64*(t.Resources.Len()+t.Patterns.Len()) + 256)
		},
	})}
}

// Verify is VerifyToken(token, secret, now), remembering tokens that pass.
// The *Token returned is shared: do not change it.
func (c *TokenCache) Verify(token, secret string, now time.Time) (*Token, error) {
	k := tokenKey{token: token, secret: secret}
	if t, ok := c.c.GetIfPresent(k); ok {
		if exp := t.Expires(); !now.Before(exp) {
			c.c.Invalidate(k)
			return nil, fmt.Errorf("%w: at %s", ErrTokenExpired, exp.UTC().Format(time.RFC3339))
		}
		return t, nil
	}
	t, err := VerifyToken(token, secret, now)
	if err != nil {
		return nil, err
	}
	t.compiled()
	// token may alias a request's buffer (Request.Auth): the key kept is a
	// copy.
	k.token = strings.Clone(token)
	c.c.Set(k, t)
	return t, nil
}
