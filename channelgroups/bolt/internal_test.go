package bolt

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/groupcast/groupcast/channelgroups"
)

func openInternal(t *testing.T, path string, cfg Config) *Store {
	t.Helper()
	s, err := Open(path, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// storedCount returns the channel count kept in the group's row.
func storedCount(t *testing.T, s *Store, a channelgroups.Account, g channelgroups.Group) uint64 {
	t.Helper()
	var row groupRow
	err := s.db.View(func(tx *bbolt.Tx) error {
		var err error
		row, err = decodeGroup(tx.Bucket(bucketGroups).Get(groupKey(a, g)))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return row.count
}

// rows returns how many keys a bucket holds.
func rows(t *testing.T, s *Store, bucket []byte) int {
	t.Helper()
	n := 0
	err := s.db.View(func(tx *bbolt.Tx) error {
		n = tx.Bucket(bucket).Stats().KeyN
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestCountFollowsEdits: the count in the group row, which the cap is
// checked against, always equals the snapshot's count, through random adds,
// removes and deletes arriving out of order with timetoken ties.
func TestCountFollowsEdits(t *testing.T) {
	s := openInternal(t, filepath.Join(t.TempDir(), "g.db"), Config{})
	seed := uint64(time.Now().UnixNano())
	r := rand.New(rand.NewPCG(seed, 1))
	pool := []channelgroups.Channel{"a", "b", "c", "d", "e"}
	for i := range 2000 {
		g := channelgroups.Group(fmt.Sprint("g", r.IntN(3)))
		e := channelgroups.Edit{Account: "acct", Group: g, At: channelgroups.Timetoken(17e15 + r.IntN(40))}
		switch x := r.IntN(10); {
		case x < 5:
			e.Op = channelgroups.OpAdd
		case x < 9:
			e.Op = channelgroups.OpRemove
		default:
			e.Op = channelgroups.OpClear
		}
		if e.Op != channelgroups.OpClear {
			for _, c := range pool {
				if r.IntN(2) == 0 {
					e.Channels = append(e.Channels, c)
				}
			}
		}
		if err := s.Write(t.Context(), e); err != nil {
			t.Fatal(err)
		}
		snap, err := s.Read(t.Context(), "acct", g)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := storedCount(t, s, "acct", g), uint64(snap.Count()); got != want {
			t.Fatalf("seed %d, edit %d (%v %v at %v): stored count %d, snapshot count %d", seed, i, e.Op, e.Channels, e.At, got, want)
		}
	}
}

// TestMigrateSchema1 opens a file in the layout before schema 2 (16-byte
// group rows, no expiry indexes) and finds counts and indexes filled in.
func TestMigrateSchema1(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.db")
	now := time.Unix(1_700_000_000, 0)
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	member := func(state channelgroups.State, expires int64) []byte {
		return memberRow{state: state, at: 17e15, expires: expires}.encode()
	}
	rp, _ := json.Marshal(replay{Fingerprint: "fp", Answer: []byte("x"), Expires: now.Add(-time.Minute).UnixMicro()})
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{bucketMembers, bucketGroups, bucketOutbox, bucketReplays} {
			if _, err := tx.CreateBucket(b); err != nil {
				return err
			}
		}
		g := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, 17e15), 0) // version, cleared
		ms := tx.Bucket(bucketMembers)
		return errorsJoin(
			tx.Bucket(bucketGroups).Put(groupKey("a", "g"), g),
			ms.Put([]byte("a\x00g\x00x"), member(channelgroups.Added, 0)),
			ms.Put([]byte("a\x00g\x00y"), member(channelgroups.Added, 0)),
			ms.Put([]byte("a\x00g\x00z"), member(channelgroups.Removed, now.Add(-30*24*time.Hour).UnixMicro())),
			tx.Bucket(bucketReplays).Put(replayKey("a", "k"), rp),
		)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	s := openInternal(t, path, Config{Now: func() time.Time { return now }})
	if n := storedCount(t, s, "a", "g"); n != 2 {
		t.Fatalf("migrated count %d, want 2", n)
	}
	if n, m := rows(t, s, bucketTombstones), rows(t, s, bucketReplayTTL); n != 1 || m != 1 {
		t.Fatalf("migrated indexes hold %d tombstones and %d replays, want 1 and 1", n, m)
	}
	// The old remove is past its retention and the replay past its TTL: the next writes sweep them.
	if err := s.Write(t.Context(), channelgroups.Edit{Account: "a", Group: "h", Op: channelgroups.OpAdd, Channels: []channelgroups.Channel{"c"}, At: 18e15}); err != nil {
		t.Fatal(err)
	}
	if err := s.Remember(t.Context(), "a", "k2", "fp", nil, time.Minute); err != nil {
		t.Fatal(err)
	}
	if n, m := rows(t, s, bucketMembers), rows(t, s, bucketReplays); n != 3 || m != 1 {
		t.Fatalf("after sweeping: %d member rows, %d replays; want 3 (x, y, c) and 1 (k2)", n, m)
	}
}

func errorsJoin(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// TestTombstonesPurged: remove rows are kept RemoveTTL + TombstoneRetention
// after the remove, then purged by later writes; while kept they shadow an
// older add, after it they no longer take space.
func TestTombstonesPurged(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	cfg := Config{RemoveTTL: time.Hour, TombstoneRetention: 48 * time.Hour, Now: func() time.Time { return now }}
	s := openInternal(t, filepath.Join(t.TempDir(), "g.db"), cfg)
	at := channelgroups.TimetokenOf(now)
	write := func(op channelgroups.Op, g channelgroups.Group, at channelgroups.Timetoken, chs ...channelgroups.Channel) {
		t.Helper()
		if err := s.Write(t.Context(), channelgroups.Edit{Account: "a", Group: g, Op: op, Channels: chs, At: at}); err != nil {
			t.Fatal(err)
		}
	}
	var removed []channelgroups.Channel
	for i := range 500 {
		removed = append(removed, channelgroups.Channel(fmt.Sprint("r", i)))
	}
	write(channelgroups.OpAdd, "g", at, removed...)
	write(channelgroups.OpRemove, "g", at+10, removed...)
	if n := rows(t, s, bucketTombstones); n != len(removed) {
		t.Fatalf("%d tombstones indexed, want %d", n, len(removed))
	}
	// Hidden after RemoveTTL, still kept within the retention.
	now = now.Add(time.Hour + 47*time.Hour)
	write(channelgroups.OpAdd, "other", at+20, "x")
	if n := rows(t, s, bucketMembers); n != len(removed)+1 {
		t.Fatalf("within the retention: %d member rows, want %d", n, len(removed)+1)
	}
	write(channelgroups.OpAdd, "g", at+5, "r0") // late and older: loses
	if snap, _ := s.Read(t.Context(), "a", "g"); snap.Count() != 0 {
		t.Fatalf("an older add resurrected %v within the retention", snap.Channels())
	}
	// Past the retention: each write sweeps at least as many as it names, plus a batch.
	now = now.Add(time.Hour)
	for i := 0; rows(t, s, bucketTombstones) > 0; i++ {
		if i == 10 {
			t.Fatalf("10 writes left %d tombstones", rows(t, s, bucketTombstones))
		}
		write(channelgroups.OpAdd, "other", at+30, "x")
	}
	if n := rows(t, s, bucketMembers); n != 1 {
		t.Fatalf("past the retention: %d member rows, want 1 (other/x)", n)
	}
	// A remove superseded by a later add leaves no index entry behind.
	write(channelgroups.OpRemove, "h", at+40, "y")
	write(channelgroups.OpAdd, "h", at+50, "y")
	if n := rows(t, s, bucketTombstones); n != 0 {
		t.Fatalf("%d tombstones indexed after the remove was overwritten, want 0", n)
	}
}

// TestReplaysSweptInBatches: expired replays go through the expiry index, a
// bounded batch per Remember, and a re-remembered key keeps one index entry.
func TestReplaysSweptInBatches(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	s := openInternal(t, filepath.Join(t.TempDir(), "g.db"), Config{Now: func() time.Time { return now }})
	for i := range 200 {
		if err := s.Remember(t.Context(), "a", fmt.Sprint("k", i), "fp", nil, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Remember(t.Context(), "a", "k0", "fp2", nil, time.Hour); err != nil { // re-remembered: outlives the rest
		t.Fatal(err)
	}
	if n, m := rows(t, s, bucketReplays), rows(t, s, bucketReplayTTL); n != 200 || m != 200 {
		t.Fatalf("%d replays, %d index entries; want 200 and 200", n, m)
	}
	now = now.Add(2 * time.Minute)
	if err := s.Remember(t.Context(), "a", "new", "fp", nil, time.Minute); err != nil {
		t.Fatal(err)
	}
	if n := rows(t, s, bucketReplays); n != 201-sweepBatch {
		t.Fatalf("after one Remember: %d replays, want %d (one batch swept)", n, 201-sweepBatch)
	}
	for range 3 {
		if err := s.Remember(t.Context(), "a", "new", "fp", nil, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if n, m := rows(t, s, bucketReplays), rows(t, s, bucketReplayTTL); n != 2 || m != 2 {
		t.Fatalf("after the sweep: %d replays, %d index entries; want 2 and 2 (k0, new)", n, m)
	}
	if fp, _, found, err := s.Recall(t.Context(), "a", "k0"); !found || fp != "fp2" || err != nil {
		t.Fatalf("Recall(k0) = %q %v %v, want the re-remembered answer", fp, found, err)
	}
}

func TestConfigValidation(t *testing.T) {
	for _, cfg := range []Config{{RemoveTTL: -1}, {TombstoneRetention: -1}, {MaxChannelsPerGroup: -1}} {
		if s, err := Open(filepath.Join(t.TempDir(), "g.db"), cfg); err == nil {
			s.Close()
			t.Errorf("Open accepted %+v", cfg)
		}
	}
}

// A file written by a newer schema is refused, not read as this one.
func TestNewerSchemaRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.db")
	s, err := Open(path, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketMeta).Put(keySchema, []byte{schema + 1}) }); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err := Open(path, Config{}); err == nil || !strings.Contains(err.Error(), "newer") {
		if s != nil {
			s.Close()
		}
		t.Fatalf("Open of a schema %d file: %v; want a refusal naming the newer schema", schema+1, err)
	}
}

// Only errors that say the file is not a database blame the file: a failed
// flock or mmap does not.
func TestOpenErrorBlamesOnlyDamage(t *testing.T) {
	s := &Store{path: "/x/g.db"}
	var ce *CorruptError
	for _, err := range []error{syscall.ENOLCK, syscall.ENOMEM, bolterrors.ErrMaxSizeReached} {
		if got := s.openError(err); errors.As(got, &ce) || !strings.Contains(got.Error(), "/x/g.db") {
			t.Errorf("openError(%v) = %v; want a plain error naming the file", err, got)
		}
	}
	for _, err := range []error{bolterrors.ErrInvalid, bolterrors.ErrVersionMismatch, bolterrors.ErrChecksum} {
		if got := s.openError(err); !errors.As(got, &ce) {
			t.Errorf("openError(%v) = %v; want a *CorruptError", err, got)
		}
	}
}
