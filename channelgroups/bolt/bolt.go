// Package bolt is the embedded channel-group store: one bbolt file, every
// write fsynced before it returns. It gives the same answers as the
// Cassandra store (checked by channelgroups/storetest), so a single node
// needs neither Cassandra nor Redis.
//
// Damage. bbolt pages carry no checksums and bbolt answers a damaged page
// with a panic (or, for a page past the end of a truncated file, a memory
// fault), so Open checks the file before it serves (see Open) and returns a
// *CorruptError naming the file. After Open every call runs under a guard
// that turns such a panic or fault, or a row of the wrong shape, into a
// *CorruptError instead of taking the process down or answering an empty
// group; once one is seen the store refuses writes.
//
// Group cap. Write counts a group's channels inside its own transaction and
// refuses an add that would take the group past Config.MaxChannelsPerGroup
// with channelgroups.ErrTooManyChannels, so racing adds cannot overshoot it.
//
// Garbage. A remove stays readable for RemoveTTL, as Cassandra's TTL on
// remove rows; its row is then hidden but kept TombstoneRetention longer, so
// that an add carrying an older timetoken still loses to it, and then
// purged. Idempotency replays are kept until their TTL. Both are found
// through expiry indexes ordered by time and swept by writes in bounded
// batches, so no write scans live rows.
package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync/atomic"
	"time"

	bbolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/groupcast/groupcast/channelgroups"
)

// Config tunes a Store.
type Config struct {
	// RemoveTTL is how long a remove stays readable, as Cassandra's TTL on
	// remove rows. Zero means 24h.
	RemoveTTL time.Duration
	// TombstoneRetention is how long a remove's row is kept after RemoveTTL
	// has hidden it, so that a late add with an older timetoken still loses
	// to it; after that the row is purged. Zero means 10 days: Cassandra
	// keeps an expired remove as a tombstone for gc_grace_seconds (10 days
	// by default, the setting of the members table) before compaction may
	// drop it, so both stores shadow late adds for the same time.
	TombstoneRetention time.Duration
	// MaxChannelsPerGroup is the most channels Write lets an add leave in a
	// group; zero means channelgroups.MaxChannelsPerGroup.
	MaxChannelsPerGroup int
	// CheckBytes bounds Open's consistency check: a file up to this size is
	// walked in full (every row of every bucket, then bbolt's own check of
	// pages and freelist; about a second per GiB); a larger one gets only the
	// cheap checks. Zero means 1 GiB; negative means only the cheap checks.
	CheckBytes int64
	// Now is the clock that ages removes and replays; nil means time.Now.
	Now func() time.Time
	// OpenTimeout bounds waiting for the file lock held by another process;
	// zero means 5s.
	OpenTimeout time.Duration
}

// Store is a channelgroups.Store on a bbolt file.
type Store struct {
	db     *bbolt.DB
	path   string
	cfg    Config
	broken atomic.Pointer[CorruptError] // the first damage seen after Open
}

// ErrCorrupt is wrapped by every *CorruptError.
var ErrCorrupt = errors.New("bolt: data file is corrupt")

// CorruptError reports damage found in the data file, by Open or by a later
// call. Its message is addressed to the operator: it names the file and
// says what to do.
type CorruptError struct {
	Path string
	Err  error // what was found
}

func (e *CorruptError) Error() string {
	return "data file " + e.Path + " is corrupt: " + e.Err.Error() + "; restore it from a backup or move it away"
}

// Unwrap returns ErrCorrupt and what was found.
func (e *CorruptError) Unwrap() []error { return []error{ErrCorrupt, e.Err} }

// damageError reports damage seen in the file's content; guard turns it
// into a *CorruptError.
type damageError struct{ msg string }

func (e *damageError) Error() string { return e.msg }

func damage(format string, args ...any) error {
	return &damageError{fmt.Sprintf(format, args...)}
}

var (
	bucketMembers    = []byte("members")     // account 0 group 0 channel → state(1) at(8) expires(8)
	bucketGroups     = []byte("groups")      // account 0 group → version(8) cleared(8) count(8)
	bucketOutbox     = []byte("outbox")      // shard(4) at(8) account 0 group → op(1) channels joined by 0
	bucketReplays    = []byte("replays")     // account 0 key → JSON replay
	bucketTombstones = []byte("tombstones")  // expires(8) member key → empty: remove rows by expiry
	bucketReplayTTL  = []byte("replay-ttls") // expires(8) replay key → empty: replays by expiry
	bucketMeta       = []byte("meta")        // "schema" → version(1)
	allBuckets       = append([][]byte{bucketMembers, bucketGroups, bucketOutbox, bucketReplays, bucketTombstones, bucketReplayTTL, bucketMeta, bucketAccess}, archiveBuckets...)
	keySchema        = []byte("schema")
)

// schema is the layout version this code writes: 2 added the channel count
// to group rows and the two expiry indexes.
const schema = 2

// Sweep batches: a Write purges up to len(channels)+sweepBatch expired
// tombstones (more than it can create, so a backlog shrinks), a Remember up
// to sweepBatch expired replays (it creates one).
const sweepBatch = 64

// Open opens or creates the store in file path, creating its directory.
//
// An existing file is first opened read-only and checked: its size must
// cover every page bbolt's meta page says it holds (a truncated file fails
// here, before any page past its end is touched); then, if it is at most
// Config.CheckBytes long, every row of every bucket is read and its shape
// checked (bbolt has no page checksums: a damaged page shows as a panic, a
// key out of order or a row of the wrong length), and bbolt's Tx.Check
// verifies the freelist and that every page is reachable exactly once. The
// walk runs first, under the guard, because Tx.Check runs on a goroutine of
// its own where a fault could not be recovered; a check of the whole file is
// linear in its size, which is what CheckBytes bounds. Damage is reported as
// a *CorruptError, which Open returns. (Damage the check did not look for
// can still make bbolt panic while Open opens the file for writing; that is
// recovered and reported the same way, but leaves the file descriptor open:
// the caller is expected to exit.)
func Open(path string, cfg Config) (*Store, error) {
	if cfg.RemoveTTL < 0 || cfg.TombstoneRetention < 0 || cfg.MaxChannelsPerGroup < 0 {
		return nil, errors.New("bolt: RemoveTTL, TombstoneRetention and MaxChannelsPerGroup must be >= 0")
	}
	if cfg.RemoveTTL == 0 {
		cfg.RemoveTTL = 24 * time.Hour
	}
	if cfg.TombstoneRetention == 0 {
		cfg.TombstoneRetention = 10 * 24 * time.Hour
	}
	if cfg.MaxChannelsPerGroup == 0 {
		cfg.MaxChannelsPerGroup = channelgroups.MaxChannelsPerGroup
	}
	if cfg.CheckBytes == 0 {
		cfg.CheckBytes = 1 << 30
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
	s := &Store{path: path, cfg: cfg}
	if err := s.check(); err != nil {
		return nil, err
	}
	err := s.guard(func() error {
		db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: cfg.OpenTimeout})
		s.db = db
		return err
	})
	if err != nil {
		return nil, s.openError(err)
	}
	if err := s.update(s.init); err != nil {
		return nil, errors.Join(fmt.Errorf("bolt: init %s: %w", path, err), s.db.Close())
	}
	return s, nil
}

// openError classifies an error of bbolt.Open: a file bbolt cannot read as a
// database is corrupt; a lock timeout or any other error (flock or mmap
// failing, the file too large) is not, and the file is not blamed for it.
func (s *Store) openError(err error) error {
	switch {
	case errors.Is(err, ErrCorrupt):
		return err
	case errors.Is(err, bolterrors.ErrInvalid), errors.Is(err, bolterrors.ErrVersionMismatch), errors.Is(err, bolterrors.ErrChecksum):
		return &CorruptError{Path: s.path, Err: err}
	case errors.Is(err, bolterrors.ErrTimeout):
		return fmt.Errorf("bolt: open %s: another process holds its lock: %w", s.path, err)
	}
	return fmt.Errorf("bolt: open %s: %w", s.path, err)
}

// check is Open's read-only examination of an existing file.
func (s *Store) check() error {
	info, err := os.Stat(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("bolt: %w", err)
	}
	if info.Size() == 0 {
		return nil // bbolt initialises an empty file
	}
	var db *bbolt.DB
	err = s.guard(func() error {
		var err error
		db, err = bbolt.Open(s.path, 0o600, &bbolt.Options{Timeout: s.cfg.OpenTimeout, ReadOnly: true})
		return err
	})
	if err != nil {
		return s.openError(err)
	}
	err = s.guard(func() error {
		return db.View(func(tx *bbolt.Tx) error {
			if need := tx.Size(); need > info.Size() {
				return damage("the file is %d bytes but its pages reach byte %d (truncated?)", info.Size(), need)
			}
			if s.cfg.CheckBytes < 0 || info.Size() > s.cfg.CheckBytes {
				return nil
			}
			if err := walk(tx); err != nil {
				return err
			}
			var first error
			n := 0
			for err := range tx.Check() { // drain: Check's goroutine waits on every send
				if first == nil {
					first = err
				}
				n++
			}
			if first != nil {
				return damage("bbolt check found %d problems, the first: %s", n, first.Error())
			}
			return nil
		})
	})
	return errors.Join(err, db.Close())
}

// walk reads every row of our buckets and checks its shape and order.
func walk(tx *bbolt.Tx) error {
	shapes := map[string]func(k, v []byte) bool{
		string(bucketMembers): func(k, v []byte) bool { return bytes.Count(k, []byte{0}) == 2 && len(v) == 17 },
		string(bucketGroups):  func(k, v []byte) bool { return bytes.Count(k, []byte{0}) == 1 && (len(v) == 16 || len(v) == 24) },
		string(bucketOutbox):  func(k, v []byte) bool { return len(k) > 12 && bytes.IndexByte(k[12:], 0) >= 0 && len(v) >= 1 },
		string(bucketReplays): func(k, v []byte) bool { return bytes.IndexByte(k, 0) >= 0 && json.Valid(v) },
		string(bucketTombstones): func(k, v []byte) bool {
			return len(k) > 8 && bytes.Count(k[8:], []byte{0}) == 2 && len(v) == 0
		},
		string(bucketReplayTTL): func(k, v []byte) bool { return len(k) > 8 && bytes.IndexByte(k[8:], 0) >= 0 && len(v) == 0 },
		string(bucketMeta):      func(k, v []byte) bool { return true },
	}
	return tx.ForEach(func(name []byte, b *bbolt.Bucket) error {
		shape, ours := shapes[string(name)]
		if !ours {
			return nil
		}
		var prev []byte
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if v == nil {
				return damage("bucket %s: nested bucket %q", name, k)
			}
			if prev != nil && bytes.Compare(prev, k) >= 0 {
				return damage("bucket %s: key %q after %q, out of order", name, k, prev)
			}
			if !shape(k, v) {
				return damage("bucket %s: malformed row %q", name, k)
			}
			prev = k
		}
		return nil
	})
}

// init creates the buckets and brings an older file's layout up to schema.
func (s *Store) init(tx *bbolt.Tx) error {
	for _, b := range allBuckets {
		if _, err := tx.CreateBucketIfNotExists(b); err != nil {
			return err
		}
	}
	meta := tx.Bucket(bucketMeta)
	if v := meta.Get(keySchema); len(v) == 1 && v[0] == schema {
		return nil
	} else if len(v) == 1 && v[0] > schema {
		// Written by a newer groupcast: its rows may not mean what this
		// version reads them as, and a write would damage them.
		return fmt.Errorf("the file has schema %d, newer than this groupcast's %d: run the newer version", v[0], schema)
	}
	if err := migrate(tx); err != nil {
		return err
	}
	return meta.Put(keySchema, []byte{schema})
}

// migrate adds, once, what schema 2 keeps that schema 1 did not: the count
// of channels in each group row, and the expiry indexes of remove rows and
// replays. It reads every row, as the one-off price of the upgrade.
func migrate(tx *bbolt.Tx) error {
	b := buckets(tx)
	counts := map[string]uint64{}
	var tombs [][]byte
	c := b.members.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		r, err := decodeMember(v)
		if err != nil {
			return err
		}
		i := bytes.LastIndexByte(k, 0)
		if i < 0 {
			return damage("member row %q", k)
		}
		switch {
		case r.state == channelgroups.Added:
			counts[string(k[:i])]++
		case r.expires != 0:
			tombs = append(tombs, expiryKey(r.expires, k))
		}
	}
	type groupUpdate struct{ k, v []byte }
	var groups []groupUpdate
	c = b.groups.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if len(v) != 16 {
			continue
		}
		r := groupRow{
			version: channelgroups.Timetoken(binary.BigEndian.Uint64(v)),
			cleared: channelgroups.Timetoken(binary.BigEndian.Uint64(v[8:])),
			count:   counts[string(k)],
		}
		groups = append(groups, groupUpdate{bytes.Clone(k), r.encode()})
	}
	var replays [][]byte
	c = b.replays.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		var r replay
		if err := json.Unmarshal(v, &r); err != nil {
			return damage("replay %q", k)
		}
		replays = append(replays, expiryKey(r.Expires, k))
	}
	for _, g := range groups {
		if err := b.groups.Put(g.k, g.v); err != nil {
			return err
		}
	}
	for _, k := range tombs {
		if err := b.tombstones.Put(k, nil); err != nil {
			return err
		}
	}
	for _, k := range replays {
		if err := b.replayTTL.Put(k, nil); err != nil {
			return err
		}
	}
	return nil
}

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }

// Ping reports whether the file is open and undamaged as far as seen.
func (s *Store) Ping(context.Context) error {
	if err := s.writable(); err != nil {
		return err
	}
	return s.view(func(*bbolt.Tx) error { return nil })
}

// guard runs fn, turning a panic (bbolt's answer to a damaged page), a fault
// on the mapped file, or a *damageError into a *CorruptError,
// and remembering it: a store found damaged refuses writes.
func (s *Store) guard(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = s.damaged(fmt.Errorf("bbolt panicked: %v", r))
		} else if d := (*damageError)(nil); errors.As(err, &d) && !errors.Is(err, ErrCorrupt) {
			err = s.damaged(err)
		}
	}()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	return fn()
}

func (s *Store) damaged(err error) *CorruptError {
	ce := &CorruptError{Path: s.path, Err: err}
	s.broken.CompareAndSwap(nil, ce)
	return ce
}

// writable returns the damage seen so far, if any.
func (s *Store) writable() error {
	if ce := s.broken.Load(); ce != nil {
		return ce
	}
	return nil
}

func (s *Store) view(fn func(*bbolt.Tx) error) error {
	return s.guard(func() error { return s.db.View(fn) })
}

func (s *Store) update(fn func(*bbolt.Tx) error) error {
	if err := s.writable(); err != nil {
		return err
	}
	return s.guard(func() error { return s.db.Update(fn) })
}

// bucketSet holds a transaction's buckets.
type bucketSet struct {
	members, groups, outbox, replays, tombstones, replayTTL *bbolt.Bucket
}

func buckets(tx *bbolt.Tx) bucketSet {
	return bucketSet{
		members: tx.Bucket(bucketMembers), groups: tx.Bucket(bucketGroups), outbox: tx.Bucket(bucketOutbox),
		replays: tx.Bucket(bucketReplays), tombstones: tx.Bucket(bucketTombstones), replayTTL: tx.Bucket(bucketReplayTTL),
	}
}

// ok reports a missing bucket (a damaged root page) as damage.
func (b bucketSet) ok() error {
	if b.members == nil || b.groups == nil || b.outbox == nil || b.replays == nil || b.tombstones == nil || b.replayTTL == nil {
		return damage("a bucket is missing")
	}
	return nil
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

// expiryKey is an expiry index key: expires (unix µs, big-endian, so the
// index is in time order) followed by the indexed row's key.
func expiryKey(expires int64, k []byte) []byte {
	return append(binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(k)), uint64(expires)), k...)
}

type groupRow struct {
	version, cleared channelgroups.Timetoken
	count            uint64 // channels added and not removed
}

func decodeGroup(v []byte) (groupRow, error) {
	if v == nil {
		return groupRow{}, nil
	}
	if len(v) != 24 {
		return groupRow{}, damage("group row of %d bytes", len(v))
	}
	return groupRow{
		version: channelgroups.Timetoken(binary.BigEndian.Uint64(v)),
		cleared: channelgroups.Timetoken(binary.BigEndian.Uint64(v[8:])),
		count:   binary.BigEndian.Uint64(v[16:]),
	}, nil
}

func (r groupRow) encode() []byte {
	v := make([]byte, 24)
	binary.BigEndian.PutUint64(v, uint64(r.version))
	binary.BigEndian.PutUint64(v[8:], uint64(r.cleared))
	binary.BigEndian.PutUint64(v[16:], r.count)
	return v
}

type memberRow struct {
	state   channelgroups.State
	at      channelgroups.Timetoken
	expires int64 // unix µs; 0 = never
}

func decodeMember(v []byte) (memberRow, error) {
	if len(v) != 17 {
		return memberRow{}, damage("member row of %d bytes", len(v))
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

// Write applies e in one fsynced transaction. An add that would leave the
// group with more than Config.MaxChannelsPerGroup channels (or with more
// than it had, when it is already over) writes nothing and fails with
// channelgroups.ErrTooManyChannels.
func (s *Store) Write(ctx context.Context, e channelgroups.Edit) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	now := s.cfg.Now()
	return s.update(func(tx *bbolt.Tx) error {
		b := buckets(tx)
		if err := b.ok(); err != nil {
			return err
		}
		if err := b.outbox.Put(outboxKey(e), outboxValue(e)); err != nil {
			return err
		}
		gk := groupKey(e.Account, e.Group)
		row, err := decodeGroup(b.groups.Get(gk))
		if err != nil {
			return err
		}
		row.version = max(row.version, e.At)
		prefix := memberPrefix(e.Account, e.Group)
		switch {
		case e.Op == channelgroups.OpClear:
			if e.At > row.cleared {
				row.cleared = e.At
				dropped, err := dropUpTo(b, prefix, e.At)
				if err != nil {
					return err
				}
				row.count -= min(row.count, dropped)
			}
		case e.At > row.cleared: // else shadowed by a delete at the same or a later timetoken
			before := row.count
			if err := s.apply(b, prefix, e, now, &row); err != nil {
				return err
			}
			if limit := uint64(s.cfg.MaxChannelsPerGroup); e.Op == channelgroups.OpAdd && row.count > before && row.count > limit {
				return fmt.Errorf("bolt: group %q would hold %d channels, at most %d: %w", e.Group, row.count, limit, channelgroups.ErrTooManyChannels)
			}
		}
		if err := b.groups.Put(gk, row.encode()); err != nil {
			return err
		}
		horizon := now.Add(-s.cfg.TombstoneRetention).UnixMicro()
		return sweep(b.tombstones, b.members, horizon, len(e.Channels)+sweepBatch, func(v []byte, expires int64) bool {
			r, err := decodeMember(v)
			return err == nil && r.state == channelgroups.Removed && r.expires == expires
		})
	})
}

// apply writes e's channels (an add or a remove) last-writer-wins, keeping
// row.count and the tombstone index in step.
func (s *Store) apply(b bucketSet, prefix []byte, e channelgroups.Edit, now time.Time, row *groupRow) error {
	n := memberRow{state: channelgroups.Added, at: e.At}
	if e.Op == channelgroups.OpRemove {
		n.state = channelgroups.Removed
		n.expires = now.Add(s.cfg.RemoveTTL).UnixMicro()
	}
	for _, c := range e.Channels {
		k := append(prefix[:len(prefix):len(prefix)], c...)
		if old := b.members.Get(k); old != nil {
			o, err := decodeMember(old)
			if err != nil {
				return err
			}
			if !(channelgroups.Entry{State: n.state, At: n.at}).Supersedes(channelgroups.Entry{State: o.state, At: o.at}) {
				continue
			}
			if o.state == channelgroups.Added {
				row.count--
			}
			if o.expires != 0 {
				if err := b.tombstones.Delete(expiryKey(o.expires, k)); err != nil {
					return err
				}
			}
		}
		if err := b.members.Put(k, n.encode()); err != nil {
			return err
		}
		if n.state == channelgroups.Added {
			row.count++
		} else if err := b.tombstones.Put(expiryKey(n.expires, k), nil); err != nil {
			return err
		}
	}
	return nil
}

// dropUpTo deletes the group's member rows written at or before at and
// returns how many of them were added channels.
func dropUpTo(b bucketSet, prefix []byte, at channelgroups.Timetoken) (uint64, error) {
	var added uint64
	c := b.members.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); {
		r, err := decodeMember(v)
		if err != nil {
			return 0, err
		}
		if r.at <= at {
			k = bytes.Clone(k) // k points into the page being changed
			if err := c.Delete(); err != nil {
				return 0, err
			}
			if r.state == channelgroups.Added {
				added++
			} else if r.expires != 0 {
				if err := b.tombstones.Delete(expiryKey(r.expires, k)); err != nil {
					return 0, err
				}
			}
			k, v = c.Seek(k) // Delete moves the cursor; reposition at the successor
			continue
		}
		k, v = c.Next()
	}
	return added, nil
}

// sweep deletes up to limit entries of an expiry index whose time is at or
// before horizon, and the rows they index when match says the row is still
// the one indexed (same expiry).
func sweep(index, rows *bbolt.Bucket, horizon int64, limit int, match func(v []byte, expires int64) bool) error {
	var due [][]byte
	c := index.Cursor()
	for k, _ := c.First(); k != nil && len(due) < limit; k, _ = c.Next() {
		if len(k) < 8 {
			return damage("expiry index key %q", k)
		}
		if int64(binary.BigEndian.Uint64(k)) > horizon {
			break
		}
		due = append(due, bytes.Clone(k))
	}
	for _, k := range due {
		expires, rk := int64(binary.BigEndian.Uint64(k)), k[8:]
		if v := rows.Get(rk); v != nil && match(v, expires) {
			if err := rows.Delete(rk); err != nil {
				return err
			}
		}
		if err := index.Delete(k); err != nil {
			return err
		}
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
	err := s.view(func(tx *bbolt.Tx) error {
		b := buckets(tx)
		if err := b.ok(); err != nil {
			return err
		}
		row, err := decodeGroup(b.groups.Get(groupKey(a, g)))
		if err != nil {
			return err
		}
		snap.Version, snap.Cleared = row.version, row.cleared
		prefix := memberPrefix(a, g)
		var prev []byte
		c := b.members.Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if prev != nil && bytes.Compare(prev, k) >= 0 {
				return damage("member key %q after %q, out of order", k, prev)
			}
			prev = k
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
	if err != nil {
		return channelgroups.Snapshot{}, err
	}
	return snap, nil
}

// Groups lists the account's existing groups in name order.
func (s *Store) Groups(ctx context.Context, a channelgroups.Account) ([]channelgroups.Group, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []channelgroups.Group
	prefix := append([]byte(a), 0)
	err := s.view(func(tx *bbolt.Tx) error {
		b := buckets(tx)
		if err := b.ok(); err != nil {
			return err
		}
		c := b.groups.Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			r, err := decodeGroup(v)
			if err != nil {
				return err
			}
			if r.version > r.cleared {
				out = append(out, channelgroups.Group(k[len(prefix):]))
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
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
	err := s.view(func(tx *bbolt.Tx) error {
		b := buckets(tx)
		if err := b.ok(); err != nil {
			return err
		}
		c := b.outbox.Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && len(out) < limit; k, v = c.Next() {
			if len(k) < 12 {
				return damage("outbox record %q", k)
			}
			a, g, ok := bytes.Cut(k[12:], []byte{0})
			if !ok || len(v) == 0 {
				return damage("outbox record %q", k)
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
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Announced implements channelgroups.Outbox.
func (s *Store) Announced(ctx context.Context, e channelgroups.Edit) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.update(func(tx *bbolt.Tx) error {
		b := buckets(tx)
		if err := b.ok(); err != nil {
			return err
		}
		return b.outbox.Delete(outboxKey(e))
	})
}

type replay struct {
	Fingerprint string `json:"f"`
	Answer      []byte `json:"a"`
	Expires     int64  `json:"e"` // unix µs
}

func replayKey(a channelgroups.Account, key string) []byte {
	return append(append([]byte(a), 0), key...)
}

// Recall implements channelgroups.Replays: one key lookup.
func (s *Store) Recall(ctx context.Context, a channelgroups.Account, key string) (string, []byte, bool, error) {
	if err := ctx.Err(); err != nil {
		return "", nil, false, err
	}
	var r replay
	found := false
	err := s.view(func(tx *bbolt.Tx) error {
		b := buckets(tx)
		if err := b.ok(); err != nil {
			return err
		}
		v := b.replays.Get(replayKey(a, key))
		if v == nil {
			return nil
		}
		if err := json.Unmarshal(v, &r); err != nil {
			return damage("replay of %q", key)
		}
		found = r.Expires > s.cfg.Now().UnixMicro()
		return nil
	})
	if err != nil || !found {
		return "", nil, false, err
	}
	return r.Fingerprint, r.Answer, true, nil
}

// Remember implements channelgroups.Replays: one key write plus its expiry
// index entry; it sweeps a bounded batch of expired replays.
func (s *Store) Remember(ctx context.Context, a channelgroups.Account, key, fingerprint string, answer []byte, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	now := s.cfg.Now()
	expires := now.Add(ttl).UnixMicro()
	v, err := json.Marshal(replay{Fingerprint: fingerprint, Answer: answer, Expires: expires})
	if err != nil {
		return err
	}
	return s.update(func(tx *bbolt.Tx) error {
		b := buckets(tx)
		if err := b.ok(); err != nil {
			return err
		}
		k := replayKey(a, key)
		if old := b.replays.Get(k); old != nil {
			var r replay
			if err := json.Unmarshal(old, &r); err != nil {
				return damage("replay of %q", key)
			}
			if err := b.replayTTL.Delete(expiryKey(r.Expires, k)); err != nil {
				return err
			}
		}
		if err := b.replays.Put(k, v); err != nil {
			return err
		}
		if err := b.replayTTL.Put(expiryKey(expires, k), nil); err != nil {
			return err
		}
		return sweep(b.replayTTL, b.replays, now.UnixMicro(), sweepBatch, func(v []byte, expires int64) bool {
			var r replay
			return json.Unmarshal(v, &r) == nil && r.Expires == expires
		})
	})
}
