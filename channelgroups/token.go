package channelgroups

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Token is a causal token (a Zanzibar "zookie"): proof of the log positions
// a client's edits were announced at. A read carrying a token reflects every
// change at or before those positions, on any node, or fails. Clients see
// only its opaque, signed text form.
type Token struct {
	// Shard is the account shard whose logs the positions are in.
	Shard int
	// Positions holds, per region, the log position the token covers.
	Positions []RegionPosition
	// Pending is the timetoken of the newest covered edit that was durable
	// but not yet in the log when the token was issued (0 if none). A reader
	// honours it from memory only once it knows every edit of the shard up to
	// Pending has been announced and applied; otherwise it reads storage.
	Pending Timetoken
	// At is the timetoken of the newest edit the token covers.
	At Timetoken
	// Origin is the region where that edit was written (its storage DC).
	Origin int
}

// RegionPosition is a log position in one region.
type RegionPosition struct {
	Region int
	Pos    Position
}

// Position returns the token's position in region r (zero if none).
func (t Token) Position(r int) Position {
	for _, rp := range t.Positions {
		if rp.Region == r {
			return rp.Pos
		}
	}
	return Position{}
}

// Merge returns a token covering everything t and u cover. Tokens of
// different shards do not merge; t wins then.
func (t Token) Merge(u Token) Token {
	if t.Shard != u.Shard {
		return t
	}
	out := Token{Shard: t.Shard, Pending: max(t.Pending, u.Pending), At: max(t.At, u.At), Origin: t.Origin}
	if u.At > t.At {
		out.Origin = u.Origin
	}
	out.Positions = append(out.Positions, t.Positions...)
	for _, rp := range u.Positions {
		i := slices.IndexFunc(out.Positions, func(x RegionPosition) bool { return x.Region == rp.Region })
		if i < 0 {
			out.Positions = append(out.Positions, rp)
		} else {
			out.Positions[i].Pos = MaxPosition(out.Positions[i].Pos, rp.Pos)
		}
	}
	slices.SortFunc(out.Positions, func(a, b RegionPosition) int { return a.Region - b.Region })
	return out
}

// ErrInvalidToken is wrapped by every token decoding failure: malformed,
// tampered, signed for another account, or from the future.
var ErrInvalidToken = errors.New("channelgroups: invalid token")

// TokenKey signs and verifies tokens with the cluster secret.
type TokenKey struct {
	secret  []byte
	maxSkew time.Duration
}

const (
	tokenVersion = 1
	tokenMACLen  = 16
	maxRegions   = 64
)

// NewTokenKey returns a key for a secret of at least 16 bytes. maxSkew (0
// means DefaultMaxSkew) bounds how far in the future a token may point.
func NewTokenKey(secret []byte, maxSkew time.Duration) (*TokenKey, error) {
	if len(secret) < 16 {
		return nil, errors.New("channelgroups: token secret must be at least 16 bytes")
	}
	if maxSkew <= 0 {
		maxSkew = DefaultMaxSkew
	}
	return &TokenKey{secret: slices.Clone(secret), maxSkew: maxSkew}, nil
}

func (k *TokenKey) mac(a Account, payload []byte) []byte {
	h := hmac.New(sha256.New, k.secret)
	h.Write([]byte("groupcast-token\x00"))
	h.Write([]byte(a))
	h.Write([]byte{0})
	h.Write(payload)
	return h.Sum(nil)[:tokenMACLen]
}

// Encode returns the token's text form, bound to account a.
func (k *TokenKey) Encode(a Account, t Token) string {
	b := make([]byte, 0, 32+len(t.Positions)*24)
	b = append(b, tokenVersion)
	b = binary.AppendUvarint(b, uint64(t.Shard))
	b = binary.AppendUvarint(b, uint64(t.Pending))
	b = binary.AppendUvarint(b, uint64(t.At))
	b = binary.AppendUvarint(b, uint64(t.Origin))
	b = binary.AppendUvarint(b, uint64(len(t.Positions)))
	for _, rp := range t.Positions {
		b = binary.AppendUvarint(b, uint64(rp.Region))
		b = binary.AppendUvarint(b, rp.Pos.Ms)
		b = binary.AppendUvarint(b, rp.Pos.Seq)
	}
	b = append(b, k.mac(a, b)...)
	return base64.RawURLEncoding.EncodeToString(b)
}

// Decode verifies s for account a and returns the token. It fails with
// ErrInvalidToken for anything not signed by this key for this account, and
// for positions or timetokens more than the skew bound past now.
func (k *TokenKey) Decode(a Account, s string, now time.Time) (Token, error) {
	bad := func(why string) (Token, error) { return Token{}, fmt.Errorf("%s: %w", why, ErrInvalidToken) }
	if len(s) > 2048 {
		return bad("too long")
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return bad("not base64url")
	}
	if len(b) < 1+tokenMACLen {
		return bad("truncated")
	}
	payload, sum := b[:len(b)-tokenMACLen], b[len(b)-tokenMACLen:]
	if !hmac.Equal(sum, k.mac(a, payload)) {
		return bad("signature does not match (tampered, or issued for another account or cluster)")
	}
	if payload[0] != tokenVersion {
		return bad(fmt.Sprintf("unknown version %d", payload[0]))
	}
	var t Token
	r := payload[1:]
	next := func() (uint64, bool) {
		v, n := binary.Uvarint(r)
		if n <= 0 {
			return 0, false
		}
		r = r[n:]
		return v, true
	}
	shard, ok1 := next()
	pending, ok0 := next()
	at, ok2 := next()
	origin, ok3 := next()
	n, ok4 := next()
	if !ok0 || !ok1 || !ok2 || !ok3 || !ok4 || n > maxRegions || shard > 1<<20 || origin > 1<<20 || at > 1<<62 || pending > 1<<62 {
		return bad("malformed")
	}
	t.Shard, t.Pending, t.At, t.Origin = int(shard), Timetoken(pending), Timetoken(at), int(origin)
	limit := now.Add(k.maxSkew)
	for range n {
		region, ok1 := next()
		ms, ok2 := next()
		seq, ok3 := next()
		if !ok1 || !ok2 || !ok3 || region > 1<<20 {
			return bad("malformed position")
		}
		if ms > uint64(limit.UnixMilli()) {
			return bad("position in the future")
		}
		t.Positions = append(t.Positions, RegionPosition{Region: int(region), Pos: Position{Ms: ms, Seq: seq}})
	}
	if len(r) != 0 {
		return bad("trailing bytes")
	}
	if t.At.Micros() > limit.UnixMicro() || t.Pending.Micros() > limit.UnixMicro() {
		return bad("timetoken in the future")
	}
	return t, nil
}
