package access

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Mode is how a node checks requests.
type Mode int

const (
	// Open accepts any keys, as a node without keysets does; a request
	// naming a keyset is checked as in Keysets mode, and grants and
	// revokes need one.
	Open Mode = iota
	// Keysets requires a known subscribe key and its publish key, and,
	// for keysets with Access Manager on, a token or a signature.
	Keysets
)

// ParseMode parses "open" or "keysets".
func ParseMode(s string) (Mode, error) {
	switch s {
	case "open":
		return Open, nil
	case "keysets":
		return Keysets, nil
	}
	return Open, fmt.Errorf("access mode %q: want open or keysets", s)
}

func (m Mode) String() string {
	if m == Keysets {
		return "keysets"
	}
	return "open"
}

// DefaultSkew is how far a signed request's timestamp may be from the
// node's clock.
const DefaultSkew = 60 * time.Second

// GuardConfig configures a Guard.
type GuardConfig struct {
	Mode Mode
	// Store records revocations; required for Revoke.
	Store Store
	// Skew bounds a signature's timestamp; zero means DefaultSkew.
	Skew time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// CacheSize bounds the verified tokens kept; zero means 100,000.
	CacheSize int
	// Registerer receives the guard's metrics; nil means none.
	Registerer prometheus.Registerer
}

// Guard decides whether a request may be served. It reads keysets and
// revocations from its Registry's memory and verified tokens from a cache:
// no storage read on a request's path.
type Guard struct {
	reg    *Registry
	cfg    GuardConfig
	tokens *TokenCache
	denied *prometheus.CounterVec
}

// NewGuard returns a Guard over reg.
func NewGuard(reg *Registry, cfg GuardConfig) (*Guard, error) {
	if cfg.Skew == 0 {
		cfg.Skew = DefaultSkew
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = 100_000
	}
	g := &Guard{reg: reg, cfg: cfg, tokens: NewTokenCache(cfg.CacheSize)}
	if cfg.Registerer != nil {
		g.denied = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "groupcast_access_denied_total",
			Help: "Requests refused by access control, by reason: keyset (unknown subscribe key or foreign publish key), signature (bad or stale), token (missing, malformed, expired, revoked, another keyset's, another uuid's), permission (the token lacks a permission the request needs), unsigned (an operation only a signed request may do).",
		}, []string{"reason"})
		for _, r := range []string{"keyset", "signature", "token", "permission", "unsigned"} {
			g.denied.WithLabelValues(r)
		}
		if err := cfg.Registerer.Register(g.denied); err != nil {
			return nil, fmt.Errorf("access: %w", err)
		}
	}
	return g, nil
}

// Keyset returns the keyset with the subscribe key, from memory.
func (g *Guard) Keyset(subscribeKey string) (Keyset, bool) { return g.reg.Keyset(subscribeKey) }

// Mode is the guard's mode.
func (g *Guard) Mode() Mode { return g.cfg.Mode }

// Request is what the guard needs to know about a request.
type Request struct {
	SubscribeKey string
	// PublishKey is the key a publish or signal names; empty elsewhere.
	PublishKey string
	// Signed is the request as sent, for its signature (query "signature").
	Signed SignedRequest
	// Signature is the request's signature parameter; empty if unsigned.
	Signature string
	// Auth is the request's auth parameter (an Access Manager token).
	// Auth and UUID may alias the caller's request buffer (the HTTP layer
	// passes them without copying: a token is a few hundred bytes on every
	// request): Check reads them and keeps neither past its return.
	Auth string
	// UUID is the request's uuid parameter.
	UUID string
	// Needs are the permissions the request needs with Access Manager on.
	Needs []Need
	// SignedOnly: with Access Manager on, only a signed request may do
	// this (list an account's groups).
	SignedOnly bool
	// Issuing: a grant or revoke: only a signed request of a known keyset,
	// in either mode.
	Issuing bool

	// Until is set by Check when it allows the request through a token:
	// the token's expiry, after which the same request is no longer
	// allowed. Zero otherwise.
	Until time.Time
}

// Denied is a refusal, in PubNub's Access Manager terms.
type Denied struct {
	Status  int
	Message string
	// Channels, Groups and UUIDs name the resources the token lacked
	// permission on (PubNub's 403 payload).
	Channels, Groups, UUIDs []string
	reason                  string
}

func (d *Denied) Error() string { return d.Message }

// Check decides r: nil means serve it, and the Keyset it names (zero in
// open mode for an unknown key).
func (g *Guard) Check(r *Request) (Keyset, *Denied) {
	ks, known := g.reg.Keyset(r.SubscribeKey)
	if !known {
		if g.cfg.Mode == Open && !r.Issuing {
			return Keyset{}, nil
		}
		return Keyset{}, g.deny(http.StatusBadRequest, "keyset", "Invalid Subscribe Key")
	}
	if r.PublishKey != "" && r.PublishKey != ks.PublishKey {
		return ks, g.deny(http.StatusBadRequest, "keyset", "Invalid Publish Key")
	}
	if r.Signature != "" {
		r.Signed.Signature = r.Signature
		if err := VerifySignature(r.Signed, ks, g.cfg.Now(), g.cfg.Skew); err != nil {
			if errors.Is(err, ErrSignatureStale) {
				return ks, g.deny(http.StatusForbidden, "signature", "Request timestamp is outside the allowed skew")
			}
			return ks, g.deny(http.StatusForbidden, "signature", "Signature Does Not Match")
		}
		return ks, nil // the server's own request: every permission
	}
	if r.Issuing {
		return ks, g.unsigned()
	}
	if !ks.PAM {
		return ks, nil
	}
	if r.SignedOnly {
		return ks, g.unsigned()
	}
	// A request needing no permission (leave) still needs a valid token,
	// used by its authorized uuid: otherwise anyone knowing the subscribe
	// key could make any uuid leave.
	if r.Auth == "" {
		return ks, g.denyNeeds(r.Needs, "token", "Forbidden: no auth token")
	}
	tok, err := g.tokens.Verify(r.Auth, ks.SecretKey, g.cfg.Now())
	switch {
	case errors.Is(err, ErrTokenExpired):
		return ks, g.denyNeeds(r.Needs, "token", "Token is expired.")
	case err != nil:
		return ks, g.denyNeeds(r.Needs, "token", "Invalid token: "+err.Error())
	case g.reg.Revoked(ks.SubscribeKey, tok.ID()):
		return ks, g.denyNeeds(r.Needs, "token", "Token is revoked.")
	case tok.AuthorizedUUID != "" && tok.AuthorizedUUID != r.UUID:
		return ks, g.denyNeeds(r.Needs, "token", "Token is for another uuid.")
	}
	var lacking []Need
	for _, n := range r.Needs {
		if !tok.Allows(n) {
			lacking = append(lacking, n)
		}
	}
	if len(lacking) > 0 {
		return ks, g.denyNeeds(lacking, "permission", "Forbidden")
	}
	r.Until = tok.Expires()
	return ks, nil
}

// Memo remembers the last request a Guard allowed on one client
// connection, so that the client's next identical request (a long-poll's
// re-poll, which differs only in its cursor) is allowed by comparing bytes
// instead of checking again. The decision is recalled only while nothing
// it rests on changed: the same keysets and revocations (the registry's
// snapshot, replaced when a load finds anything different; a full reload
// that finds the same keysets and revocations keeps it), the token not yet
// expired, and the same request parts. Its
// zero value remembers nothing. A Memo is not safe for concurrent use:
// requests on one connection come one at a time.
type Memo struct {
	snap  *snapshot
	until time.Time
	parts [memoParts][]byte
}

// memoParts is how many byte strings identify a remembered request.
const memoParts = 4

// Generation identifies the keysets and revocations a Check decides with.
type Generation struct{ s *snapshot }

// Generation returns the current one: take it before the Check whose
// decision is remembered, so that a change during the Check makes the
// memo stale rather than wrong.
func (g *Guard) Generation() Generation { return Generation{g.reg.load()} }

// Recall reports whether parts (up to four byte strings that, with the
// endpoint, determine the Check: the path, the channel-group list, the auth
// token, the uuid) are those of the request m remembers, and its decision
// still holds.
func (g *Guard) Recall(m *Memo, parts ...[]byte) bool {
	if m.snap == nil || len(parts) > memoParts || m.snap != g.reg.load() || (!m.until.IsZero() && !g.cfg.Now().Before(m.until)) {
		return false
	}
	for i := range memoParts {
		var p []byte
		if i < len(parts) {
			p = parts[i]
		}
		if !bytes.Equal(m.parts[i], p) {
			return false
		}
	}
	return true
}

// Remember records parts as allowed at gen (taken before the Check that
// allowed r) until r.Until. It copies parts.
func (g *Guard) Remember(m *Memo, gen Generation, r *Request, parts ...[]byte) {
	if len(parts) > memoParts {
		m.snap = nil
		return
	}
	m.snap, m.until = gen.s, r.Until
	for i := range memoParts {
		var p []byte
		if i < len(parts) {
			p = parts[i]
		}
		m.parts[i] = append(m.parts[i][:0], p...)
	}
}

func (g *Guard) deny(status int, reason, msg string) *Denied {
	if g.denied != nil {
		g.denied.WithLabelValues(reason).Inc()
	}
	return &Denied{Status: status, Message: msg, reason: reason}
}

func (g *Guard) unsigned() *Denied {
	return g.deny(http.StatusForbidden, "unsigned", "Forbidden: this request must be signed with the keyset's secret key")
}

func (g *Guard) denyNeeds(needs []Need, reason, msg string) *Denied {
	d := g.deny(http.StatusForbidden, reason, msg)
	for _, n := range needs {
		switch n.Kind {
		case Channel:
			d.Channels = append(d.Channels, n.Name)
		case Group:
			d.Groups = append(d.Groups, n.Name)
		case UUID:
			d.UUIDs = append(d.UUIDs, n.Name)
		}
	}
	return d
}

// Grant issues the token a grant request's body asks for, signed with ks's
// secret key.
func (g *Guard) Grant(ks Keyset, body []byte) (string, error) {
	tok, err := ParseGrant(body)
	if err != nil {
		return "", err
	}
	tok.Issued = g.cfg.Now()
	return tok.Sign(ks.SecretKey)
}

// ErrNotRevocable: the token to revoke is not one of the keyset's (bad
// signature or malformed).
var ErrNotRevocable = errors.New("access: not a token of this keyset")

// Revoke records the revocation of token, one of ks's, and makes this
// node's registry see it at once; other nodes see it within their poll.
func (g *Guard) Revoke(ctx context.Context, ks Keyset, token string) error {
	tok, err := VerifyToken(token, ks.SecretKey, g.cfg.Now())
	if errors.Is(err, ErrTokenExpired) {
		return nil // refused anyway: nothing to record
	}
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNotRevocable, err)
	}
	if g.cfg.Store == nil {
		return errors.New("access: no store to record revocations in")
	}
	if err := g.cfg.Store.Revoke(ctx, Revocation{SubscribeKey: ks.SubscribeKey, TokenID: tok.ID(), Until: tok.Expires()}); err != nil {
		return err
	}
	return g.reg.Refresh(ctx)
}

// AllowedOrigin reports whether a browser page from origin may use the API
// given the configured origins ("*" allows any).
func AllowedOrigin(origins []string, origin string) bool {
	for _, o := range origins {
		if o == "*" || strings.EqualFold(o, origin) {
			return true
		}
	}
	return false
}
