// Package access is groupcast's access control: keysets (a publish key, a
// subscribe key and a secret key; the subscribe key is the account), request
// signatures made with a keyset's secret key, and Access Manager tokens in
// PubNub's v3 layout, which grant permissions on channels, channel groups and
// uuids by name or by pattern.
//
// Keysets and revoked tokens live in the store every node and region shares
// (Store); each node keeps them in memory (Registry), so checking a request
// reads no storage.
package access

import (
	"context"
	"errors"
	"time"
)

// Keyset is one application's keys. The subscribe key names the account
// whose channel groups, channels and messages the keyset reaches.
type Keyset struct {
	SubscribeKey string `json:"subscribe_key"`
	PublishKey   string `json:"publish_key"`
	SecretKey    string `json:"secret_key"`
	// PAM turns Access Manager on: every request needs a token (auth=)
	// carrying the permission it needs, or a signature.
	PAM     bool      `json:"pam"`
	Created time.Time `json:"created"`
}

// equal reports whether k and o are the same keyset (Created compared as
// instants). A field added to Keyset must be compared here too
// (TestKeysetEqualComparesEveryField).
func (k Keyset) equal(o Keyset) bool {
	return k.SubscribeKey == o.SubscribeKey && k.PublishKey == o.PublishKey && k.SecretKey == o.SecretKey &&
		k.PAM == o.PAM && k.Created.Equal(o.Created)
}

// Revocation records a revoked token until it would have expired anyway.
type Revocation struct {
	SubscribeKey string    `json:"subscribe_key"`
	TokenID      string    `json:"token_id"` // TokenID of the token
	Until        time.Time `json:"until"`
}

// Store keeps keysets and revocations durably, shared by every node and
// region. All methods are safe for concurrent use.
type Store interface {
	// PutKeyset creates or replaces the keyset with k.SubscribeKey.
	PutKeyset(ctx context.Context, k Keyset) error
	// DeleteKeyset removes a keyset; removing one that does not exist is
	// not an error.
	DeleteKeyset(ctx context.Context, subscribeKey string) error
	// Keysets returns every keyset, by subscribe key.
	Keysets(ctx context.Context) ([]Keyset, error)
	// Revoke records a revocation; it is kept at least until r.Until.
	Revoke(ctx context.Context, r Revocation) error
	// Revocations returns the revocations not yet past Until (ones past it
	// may be returned too).
	Revocations(ctx context.Context) ([]Revocation, error)
	// Version returns a value that changes whenever a keyset is put or
	// deleted or a token revoked, so that a node polls one small read.
	Version(ctx context.Context) (string, error)
}

// Perm is PubNub's permission bit mask, as tokens carry it.
type Perm uint32

// PubNub's permission bits.
const (
	Read   Perm = 1
	Write  Perm = 2
	Manage Perm = 4
	Delete Perm = 8
	Create Perm = 16 // legacy; never required
	Get    Perm = 32
	Update Perm = 64
	Join   Perm = 128
)

// Kind is a kind of resource a token grants on.
type Kind int

// The resources of a token: channels ("chan"), channel groups ("grp") and
// uuids ("uuid").
const (
	Channel Kind = iota
	Group
	UUID
)

// Need is one permission a request needs.
type Need struct {
	Kind Kind
	Name string
	Perm Perm
}

// ErrUnknownKeyset: no keyset has the request's subscribe key.
var ErrUnknownKeyset = errors.New("access: unknown subscribe key")
