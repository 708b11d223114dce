// Package bolt is the embedded channel-group store: one bbolt file, every
// write fsynced before it returns. It gives the same answers as the
// Cassandra store (checked by channelgroups/storetest), so a single node
// needs neither Cassandra nor Redis.
package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/groupcast/groupcast/channelgroups"
)

// Config tunes a Store.
type Config struct {
	// RemoveTTL is how long a remove stays readable, as Cassandra's TTL on
	// remove rows. Zero means 24h.
	RemoveTTL time.Duration
	// Now is the clock that ages removes; nil means time.Now.
	Now func() time.Time
	// OpenTimeout bounds waiting for the file lock held by another process;
	// zero means 5s.
	OpenTimeout time.Duration
}

// Store is a channelgroups.Store on a bbolt file.
type Store struct {
	db  *bbolt.DB
	cfg Config
}

var (
	bucketMembers = []byte("members") // account 0 group 0 channel → state(1) at(8) expires(8)
	bucketGroups  = []byte("groups")  // account 0 group → version(8) cleared(8)
	bucketOutbox  = []byte("outbox")  // shard(4) at(8) account 0 group → op(1) channels joined by 0
	bucketReplays = []byte("replays") // account 0 key → JSON replay
)

// Open opens or creates the store in file path, creating its directory.
func Open(path string, cfg Config) (*Store, error) {
	if cfg.RemoveTTL < 0 {
		return nil, errors.New("bolt: RemoveTTL must be >= 0")
	}
	if cfg.RemoveTTL == 0 {
		cfg.RemoveTTL = 24 * time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.OpenTimeout == 0 {
		cfg.OpenTimeout = 5 * time.Second
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("bolt: %w", err)
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: cfg.OpenTimeout})
	if err != nil {
		return nil, fmt.Errorf("bolt: open %s: %w", path, err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{bucketMembers, bucketGroups, bucketOutbox, bucketReplays} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("bolt: init %s: %w", path, err), db.Close())
	}
	return &Store{db: db, cfg: cfg}, nil
}

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }

// Ping reports whether the file is open.
func (s *Store) Ping(context.Context) error {
	return s.db.View(func(*bbolt.Tx) error { return nil })
}

func groupKey(a channelgroups.Account, g channelgroups.Group) []byte {
	k := make([]byte, 0, len(a)+len(g)+2)
	k = append(k, a...)
	k = append(k, 0)
	return append(k, g...)
}

// memberPrefix is groupKey + 0; names never contain control characters, so
// 0 separates them unambiguously.
func memberPrefix(a channelgroups.Account, g channelgroups.Group) []byte {
	return append(groupKey(a, g), 0)
}

type groupRow struct{ version, cleared channelgroups.Timetoken }

func decodeGroup(v []byte) groupRow {
	if len(v) != 16 {
		return groupRow{}
	}
	return groupRow{
		version: channelgroups.Timetoken(binary.BigEndian.Uint64(v)),
		cleared: channelgroups.Timetoken(binary.BigEndian.Uint64(v[8:])),
	}
}

func (r groupRow) encode() []byte {
	v := make([]byte, 16)
	binary.BigEndian.PutUint64(v, uint64(r.version))
	binary.BigEndian.PutUint64(v[8:], uint64(r.cleared))
	return v
}

type memberRow struct {
	state   channelgroups.State
	at      channelgroups.Timetoken
	expires int64 // unix µs; 0 = never
}

func decodeMember(v []byte) (memberRow, error) {
	if len(v) != 17 {
		return memberRow{}, fmt.Errorf("bolt: corrupt member row of %d bytes", len(v))
	}
	return memberRow{
		state:   channelgroups.State(v[0]),
		at:      channelgroups.Timetoken(binary.BigEndian.Uint64(v[1:])),
		expires: int64(binary.BigEndian.Uint64(v[9:])),
	}, nil
}

func (r memberRow) encode() []byte {
	v := make([]byte, 17)
	v[0] = byte(r.state)
	binary.BigEndian.PutUint64(v[1:], uint64(r.at))
	binary.BigEndian.PutUint64(v[9:], uint64(r.expires))
	return v
}

// Write applies e in one fsynced transaction.
func (s *Store) Write(ctx context.Context, e channelgroups.Edit) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.Update(func(tx *bbolt.Tx) error {
		if err := tx.Bucket(bucketOutbox).Put(outboxKey(e), outboxValue(e)); err != nil {
			return err
		}
		groups, members := tx.Bucket(bucketGroups), tx.Bucket(bucketMembers)
		gk := groupKey(e.Account, e.Group)
		row := decodeGroup(groups.Get(gk))
		row.version = max(row.version, e.At)
		if e.Op == channelgroups.OpClear {
			if e.At > row.cleared {
				row.cleared = e.At
				if err := s.dropUpTo(members, memberPrefix(e.Account, e.Group), e.At); err != nil {
					return err
				}
			}
			return groups.Put(gk, row.encode())
		}
		if err := groups.Put(gk, row.encode()); err != nil {
			return err
		}
		if e.At <= row.cleared {
			return nil // shadowed by a delete at the same or a later timetoken
		}
		n := memberRow{state: channelgroups.Added, at: e.At}
		if e.Op == channelgroups.OpRemove {
			n.state = channelgroups.Removed
			n.expires = s.cfg.Now().Add(s.cfg.RemoveTTL).UnixMicro()
		}
		prefix := memberPrefix(e.Account, e.Group)
		for _, c := range e.Channels {
			k := append(prefix[:len(prefix):len(prefix)], c...)
			if old := members.Get(k); old != nil {
				o, err := decodeMember(old)
				if err != nil {
					return err
				}
				cur := channelgroups.Entry{State: o.state, At: o.at}
				if !(channelgroups.Entry{State: n.state, At: n.at}).Supersedes(cur) {
					continue
				}
			}
			if err := members.Put(k, n.encode()); err != nil {
				return err
			}
		}
		return nil
	})
}

// dropUpTo deletes the group's member rows written at or before at.
func (s *Store) dropUpTo(members *bbolt.Bucket, prefix []byte, at channelgroups.Timetoken) error {
	c := members.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); {
		r, err := decodeMember(v)
		if err != nil {
			return err
		}
		if r.at <= at {
			k = bytes.Clone(k) // k points into the page being changed
			if err := c.Delete(); err != nil {
				return err
			}
			k, v = c.Seek(k) // Delete moves the cursor; reposition at the successor
			continue
		}
		k, v = c.Next()
	}
	return nil
}

// Read returns the group's snapshot; removes past their TTL are left out, as
// Cassandra leaves out expired cells.
func (s *Store) Read(ctx context.Context, a channelgroups.Account, g channelgroups.Group) (channelgroups.Snapshot, error) {
	var snap channelgroups.Snapshot
	if err := ctx.Err(); err != nil {
		return snap, err
	}
	now := s.cfg.Now().UnixMicro()
	err := s.db.View(func(tx *bbolt.Tx) error {
		row := decodeGroup(tx.Bucket(bucketGroups).Get(groupKey(a, g)))
		snap.Version, snap.Cleared = row.version, row.cleared
		prefix := memberPrefix(a, g)
		c := tx.Bucket(bucketMembers).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			r, err := decodeMember(v)
			if err != nil {
				return err
			}
			if r.expires != 0 && r.expires <= now {
				continue
			}
			snap.Entries = append(snap.Entries, channelgroups.Entry{
				Channel: channelgroups.Channel(k[len(prefix):]), State: r.state, At: r.at,
			})
		}
		return nil
	})
	return snap, err
}

// Groups lists the account's existing groups in name order.
func (s *Store) Groups(ctx context.Context, a channelgroups.Account) ([]channelgroups.Group, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []channelgroups.Group
	prefix := append([]byte(a), 0)
	err := s.db.View(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketGroups).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if r := decodeGroup(v); r.version > r.cleared {
				out = append(out, channelgroups.Group(k[len(prefix):]))
			}
		}
		return nil
	})
	return out, err
}

func outboxKey(e channelgroups.Edit) []byte {
	k := make([]byte, 12, 12+len(e.Account)+len(e.Group)+1)
	binary.BigEndian.PutUint32(k, uint32(e.Shard))
	binary.BigEndian.PutUint64(k[4:], uint64(e.At))
	return append(k, groupKey(e.Account, e.Group)...)
}

func outboxValue(e channelgroups.Edit) []byte {
	v := []byte{byte(e.Op)}
	for i, c := range e.Channels {
		if i > 0 {
			v = append(v, 0)
		}
		v = append(v, c...)
	}
	return v
}

// Pending implements channelgroups.Outbox.
func (s *Store) Pending(ctx context.Context, shard, limit int) ([]channelgroups.Edit, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []channelgroups.Edit
	prefix := binary.BigEndian.AppendUint32(nil, uint32(shard))
	err := s.db.View(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketOutbox).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && len(out) < limit; k, v = c.Next() {
			a, g, ok := bytes.Cut(k[12:], []byte{0})
			if !ok || len(v) == 0 {
				return fmt.Errorf("bolt: corrupt outbox record %q", k)
			}
			e := channelgroups.Edit{
				Account: channelgroups.Account(a), Group: channelgroups.Group(g), Shard: shard,
				Op: channelgroups.Op(v[0]), At: channelgroups.Timetoken(binary.BigEndian.Uint64(k[4:12])),
			}
			if len(v) > 1 {
				for c := range bytes.SplitSeq(v[1:], []byte{0}) {
					e.Channels = append(e.Channels, channelgroups.Channel(c))
				}
			}
			out = append(out, e)
		}
		return nil
	})
	return out, err
}

// Announced implements channelgroups.Outbox.
func (s *Store) Announced(ctx context.Context, e channelgroups.Edit) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketOutbox).Delete(outboxKey(e)) })
}

type replay struct {
	Fingerprint string `json:"f"`
	Answer      []byte `json:"a"`
	Expires     int64  `json:"e"` // unix µs
}

func replayKey(a channelgroups.Account, key string) []byte {
	return append(append([]byte(a), 0), key...)
}

// Recall implements channelgroups.Replays.
func (s *Store) Recall(ctx context.Context, a channelgroups.Account, key string) (string, []byte, bool, error) {
	if err := ctx.Err(); err != nil {
		return "", nil, false, err
	}
	var r replay
	found := false
	err := s.db.View(func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucketReplays).Get(replayKey(a, key))
		if v == nil {
			return nil
		}
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("bolt: corrupt replay: %w", err)
		}
		found = r.Expires > s.cfg.Now().UnixMicro()
		return nil
	})
	return r.Fingerprint, r.Answer, found, err
}

// Remember implements channelgroups.Replays. Expired replays are pruned as
// new ones are written.
func (s *Store) Remember(ctx context.Context, a channelgroups.Account, key, fingerprint string, answer []byte, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	now := s.cfg.Now()
	v, err := json.Marshal(replay{Fingerprint: fingerprint, Answer: answer, Expires: now.Add(ttl).UnixMicro()})
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketReplays)
		c := b.Cursor()
		pruned := 0
		for k, old := c.First(); k != nil && pruned < 16; k, old = c.Next() {
			var r replay
			if json.Unmarshal(old, &r) == nil && r.Expires <= now.UnixMicro() {
				if err := c.Delete(); err != nil {
					return err
				}
				pruned++
			}
		}
		return b.Put(replayKey(a, key), v)
	})
}
