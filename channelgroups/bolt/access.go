package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/groupcast/groupcast/access"
)

// The store is also an access.Store: keysets, revocations and their version
// counter live in one bucket of the same file, each change and its version
// bump in one fsynced transaction.
//
//	'k' subscribe key           → JSON keysetRow
//	'r' subscribe key 0 token   → until (unix ms, 8 bytes big-endian)
//	'v'                         → version (8 bytes big-endian)
//
// Revoke purges revocations more than revocationGrace past their Until.
var bucketAccess = []byte("access")

const (
	accessKeyset     = 'k'
	accessRevocation = 'r'
	accessVersion    = 'v'
)

// revocationGrace is how long a revocation is kept past its Until, as the
// Cassandra store's TTL margin: a node whose clock lags still refuses the
// token until it sees it expire.
const revocationGrace = 10 * time.Minute

var _ access.Store = (*Store)(nil)

type keysetRow struct {
	PublishKey string `json:"p"`
	SecretKey  string `json:"s"`
	PAM        bool   `json:"m"`
	Created    int64  `json:"c"` // unix ms; 0 = none
}

func keysetKey(sub string) []byte { return append([]byte{accessKeyset}, sub...) }

func revocationKey(sub, token string) []byte {
	k := make([]byte, 0, 2+len(sub)+len(token))
	k = append(append(append(k, accessRevocation), sub...), 0)
	return append(k, token...)
}

func millis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMillis(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

// accessBucket returns the access bucket, a missing one being damage.
func accessBucket(tx *bbolt.Tx) (*bbolt.Bucket, error) {
	b := tx.Bucket(bucketAccess)
	if b == nil {
		return nil, damage("the %s bucket is missing", bucketAccess)
	}
	return b, nil
}

// changeAccess runs fn in a write transaction and bumps the version in it.
func (s *Store) changeAccess(ctx context.Context, fn func(b *bbolt.Bucket) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.update(func(tx *bbolt.Tx) error {
		b, err := accessBucket(tx)
		if err != nil {
			return err
		}
		if err := fn(b); err != nil {
			return err
		}
		var v uint64
		if old := b.Get([]byte{accessVersion}); old != nil {
			if len(old) != 8 {
				return damage("access version of %d bytes", len(old))
			}
			v = binary.BigEndian.Uint64(old)
		}
		return b.Put([]byte{accessVersion}, binary.BigEndian.AppendUint64(nil, v+1))
	})
}

// PutKeyset implements access.Store.
func (s *Store) PutKeyset(ctx context.Context, k access.Keyset) error {
	if err := k.Validate(); err != nil {
		return fmt.Errorf("bolt: %w", err)
	}
	v, err := json.Marshal(keysetRow{PublishKey: k.PublishKey, SecretKey: k.SecretKey, PAM: k.PAM, Created: millis(k.Created)})
	if err != nil {
		return err
	}
	return s.changeAccess(ctx, func(b *bbolt.Bucket) error { return b.Put(keysetKey(k.SubscribeKey), v) })
}

// DeleteKeyset implements access.Store. The keyset's revocations stay until
// they expire.
func (s *Store) DeleteKeyset(ctx context.Context, subscribeKey string) error {
	if err := access.ValidateSubscribeKey(subscribeKey); err != nil {
		return fmt.Errorf("bolt: %w", err)
	}
	return s.changeAccess(ctx, func(b *bbolt.Bucket) error { return b.Delete(keysetKey(subscribeKey)) })
}

// Keysets implements access.Store.
func (s *Store) Keysets(ctx context.Context) ([]access.Keyset, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []access.Keyset
	err := s.view(func(tx *bbolt.Tx) error {
		b, err := accessBucket(tx)
		if err != nil {
			return err
		}
		prefix := []byte{accessKeyset}
		c := b.Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			var r keysetRow
			if err := json.Unmarshal(v, &r); err != nil {
				return damage("keyset row %q", k)
			}
			out = append(out, access.Keyset{
				SubscribeKey: string(k[1:]), PublishKey: r.PublishKey, SecretKey: r.SecretKey,
				PAM: r.PAM, Created: fromMillis(r.Created),
			})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Revoke implements access.Store. Revoking a token again replaces its Until
// (a token has one expiry), as in Cassandra. It purges revocations more
// than revocationGrace past their Until.
func (s *Store) Revoke(ctx context.Context, r access.Revocation) error {
	if err := r.Validate(); err != nil {
		return fmt.Errorf("bolt: %w", err)
	}
	now := s.cfg.Now()
	return s.changeAccess(ctx, func(b *bbolt.Bucket) error {
		k := revocationKey(r.SubscribeKey, r.TokenID)
		if err := b.Put(k, binary.BigEndian.AppendUint64(nil, uint64(r.Until.UnixMilli()))); err != nil {
			return err
		}
		horizon := now.Add(-revocationGrace).UnixMilli()
		var due [][]byte
		prefix := []byte{accessRevocation}
		c := b.Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if len(v) != 8 {
				return damage("revocation row %q", k)
			}
			if int64(binary.BigEndian.Uint64(v)) < horizon {
				due = append(due, bytes.Clone(k))
			}
		}
		for _, k := range due {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
}

// Revocations implements access.Store: those within revocationGrace of
// their Until or before it.
func (s *Store) Revocations(ctx context.Context) ([]access.Revocation, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []access.Revocation
	err := s.view(func(tx *bbolt.Tx) error {
		b, err := accessBucket(tx)
		if err != nil {
			return err
		}
		prefix := []byte{accessRevocation}
		c := b.Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			sub, token, ok := bytes.Cut(k[1:], []byte{0})
			if !ok || len(v) != 8 {
				return damage("revocation row %q", k)
			}
			out = append(out, access.Revocation{
				SubscribeKey: string(sub), TokenID: string(token),
				Until: time.UnixMilli(int64(binary.BigEndian.Uint64(v))).UTC(),
			})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Version implements access.Store: a counter bumped by every change, in its
// transaction.
func (s *Store) Version(ctx context.Context) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	var v uint64
	err := s.view(func(tx *bbolt.Tx) error {
		b, err := accessBucket(tx)
		if err != nil {
			return err
		}
		raw := b.Get([]byte{accessVersion})
		if raw == nil {
			return nil
		}
		if len(raw) != 8 {
			return damage("access version of %d bytes", len(raw))
		}
		v = binary.BigEndian.Uint64(raw)
		return nil
	})
	if err != nil {
		return "", err
	}
	return strconv.FormatUint(v, 10), nil
}
