package cassandra

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gocql/gocql"

	"github.com/groupcast/groupcast/access"
)

// The store is also an access.Store, in three tables of the same keyspace
// (so replicated to every region's datacenter; New creates them with the
// others), read and written at LOCAL_QUORUM like the rest:
//
//	keysets (subscribe_key) → publish_key, secret_key, pam, created
//	revocations ((subscribe_key), token_id) → until, USING TTL until Until
//	    plus revocationMargin (their tombstones need no long gc_grace: a
//	    row that only expires cannot be resurrected)
//	access_version (id = 0) → changes counter, incremented after each change
//
// The version is a counter, not a timestamped value, so that two changes
// on nodes whose clocks disagree still both change it. It is a second
// statement after the change (Cassandra does not batch counters with other
// tables): if it fails the change is made but the caller gets the error, and
// registries see the change at their next full reload. In another
// datacenter the counter may arrive before the rows it counts; registries
// reload in full now and then for that reason too.

// revocationMargin is how long a revocation is kept past its Until, for
// nodes whose clocks lag.
const revocationMargin = 10 * time.Minute

// maxTTL is Cassandra's largest TTL (20 years).
const maxTTL = 630_720_000 * time.Second

var _ access.Store = (*Store)(nil)

// bumpAccess increments the access version.
func (s *Store) bumpAccess(ctx context.Context) error {
	q := `UPDATE ` + s.cfg.Keyspace + `.access_version SET changes = changes + 1 WHERE id = 0`
	return wrap("access version bump", s.s.Query(q).WithContext(ctx).Consistency(gocql.LocalQuorum).Exec())
}

// PutKeyset implements access.Store.
func (s *Store) PutKeyset(ctx context.Context, k access.Keyset) error {
	if err := k.Validate(); err != nil {
		return fmt.Errorf("cassandra: %w", err)
	}
	q := `INSERT INTO ` + s.cfg.Keyspace + `.keysets (subscribe_key, publish_key, secret_key, pam, created) VALUES (?, ?, ?, ?, ?)`
	var created any // null for a zero time
	if !k.Created.IsZero() {
		created = k.Created
	}
	err := s.s.Query(q, k.SubscribeKey, k.PublishKey, k.SecretKey, k.PAM, created).WithContext(ctx).Consistency(gocql.LocalQuorum).Exec()
	if err != nil {
		return wrap("put keyset", err)
	}
	return s.bumpAccess(ctx)
}

// DeleteKeyset implements access.Store. The keyset's revocations stay until
// they expire.
func (s *Store) DeleteKeyset(ctx context.Context, subscribeKey string) error {
	if err := access.ValidateSubscribeKey(subscribeKey); err != nil {
		return fmt.Errorf("cassandra: %w", err)
	}
	q := `DELETE FROM ` + s.cfg.Keyspace + `.keysets WHERE subscribe_key = ?`
	if err := s.s.Query(q, subscribeKey).WithContext(ctx).Consistency(gocql.LocalQuorum).Exec(); err != nil {
		return wrap("delete keyset", err)
	}
	return s.bumpAccess(ctx)
}

// Keysets implements access.Store.
func (s *Store) Keysets(ctx context.Context) ([]access.Keyset, error) {
	q := `SELECT subscribe_key, publish_key, secret_key, pam, created FROM ` + s.cfg.Keyspace + `.keysets`
	iter := s.s.Query(q).WithContext(ctx).Consistency(gocql.LocalQuorum).Iter()
	var (
		out []access.Keyset
		k   access.Keyset
	)
	for iter.Scan(&k.SubscribeKey, &k.PublishKey, &k.SecretKey, &k.PAM, &k.Created) {
		if !k.Created.IsZero() {
			k.Created = k.Created.UTC()
		}
		out = append(out, k)
		k = access.Keyset{}
	}
	if err := iter.Close(); err != nil {
		return nil, wrap("list keysets", err)
	}
	slices.SortFunc(out, func(a, b access.Keyset) int { return strings.Compare(a.SubscribeKey, b.SubscribeKey) })
	return out, nil
}

// Revoke implements access.Store: the row lives until r.Until plus
// revocationMargin. Revoking a token again replaces its Until (a token has
// one expiry).
func (s *Store) Revoke(ctx context.Context, r access.Revocation) error {
	if err := r.Validate(); err != nil {
		return fmt.Errorf("cassandra: %w", err)
	}
	ttl := time.Until(r.Until) + revocationMargin
	if ttl > maxTTL {
		return fmt.Errorf("cassandra: revocation until %s is past Cassandra's longest TTL (20 years): %w", r.Until.Format(time.RFC3339), access.ErrInvalid)
	}
	if ttl < time.Second {
		ttl = time.Second // long expired: kept briefly, registries drop it
	}
	q := `INSERT INTO ` + s.cfg.Keyspace + `.revocations (subscribe_key, token_id, until) VALUES (?, ?, ?) USING TTL ?`
	err := s.s.Query(q, r.SubscribeKey, r.TokenID, r.Until, int(ttl/time.Second)).WithContext(ctx).Consistency(gocql.LocalQuorum).Exec()
	if err != nil {
		return wrap("revoke", err)
	}
	return s.bumpAccess(ctx)
}

// Revocations implements access.Store.
func (s *Store) Revocations(ctx context.Context) ([]access.Revocation, error) {
	q := `SELECT subscribe_key, token_id, until FROM ` + s.cfg.Keyspace + `.revocations`
	iter := s.s.Query(q).WithContext(ctx).Consistency(gocql.LocalQuorum).Iter()
	var (
		out []access.Revocation
		r   access.Revocation
	)
	for iter.Scan(&r.SubscribeKey, &r.TokenID, &r.Until) {
		r.Until = r.Until.UTC()
		out = append(out, r)
	}
	if err := iter.Close(); err != nil {
		return nil, wrap("list revocations", err)
	}
	return out, nil
}

// Version implements access.Store: the change counter, "0" before any
// change.
func (s *Store) Version(ctx context.Context) (string, error) {
	q := `SELECT changes FROM ` + s.cfg.Keyspace + `.access_version WHERE id = 0`
	var n int64
	err := s.s.Query(q).WithContext(ctx).Consistency(gocql.LocalQuorum).Scan(&n)
	if errors.Is(err, gocql.ErrNotFound) {
		return "0", nil
	}
	if err != nil {
		return "", wrap("access version", err)
	}
	return strconv.FormatInt(n, 10), nil
}
