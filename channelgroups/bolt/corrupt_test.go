package bolt_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bbolt "go.etcd.io/bbolt"

	"github.com/groupcast/groupcast/channelgroups"
	"github.com/groupcast/groupcast/channelgroups/bolt"
)

// populate writes 100 groups of 50 channels to a new file at path, enough
// for the members bucket to span many pages.
func populate(t *testing.T, path string) {
	t.Helper()
	s, err := bolt.Open(path, bolt.Config{})
	if err != nil {
		t.Fatal(err)
	}
	for g := range 100 {
		chs := make([]channelgroups.Channel, 50)
		for c := range chs {
			chs[c] = channelgroups.Channel(fmt.Sprintf("channel-%04d-%04d", g, c))
		}
		e := channelgroups.Edit{Account: "a", Group: groupName(g), Op: channelgroups.OpAdd, Channels: chs, At: channelgroups.Timetoken(17e15 + g)}
		if err := s.Write(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func groupName(g int) channelgroups.Group { return channelgroups.Group(fmt.Sprintf("g%03d", g)) }

// leafHolding returns the numbers of the leaf pages holding member rows of
// group g, and the page size. A stale copy of a page (freed, or pending
// free) can hold the same rows and still say it is a leaf: damaging only
// the first match then damaged nothing live now and then (1 run in 40), so
// the tests damage every match.
func leafHolding(t *testing.T, path string, g int) ([]int, int) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, PreLoadFreelist: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	size := db.Info().PageSize
	needle := fmt.Appendf(nil, "channel-%04d-", g)
	var found []int
	err = db.View(func(tx *bbolt.Tx) error {
		for id := 2; ; id++ {
			p, err := tx.Page(id)
			if err != nil || p == nil {
				return err
			}
			if p.Type == "leaf" && bytes.Contains(raw[id*size:(id+1)*size], needle) {
				found = append(found, id)
			}
		}
	})
	if err != nil || len(found) == 0 {
		t.Fatalf("no leaf page holds group %d (err %v)", g, err)
	}
	return found, size
}

// scribble writes n garbage bytes at byte off of page id.
func scribble(t *testing.T, path string, id, size, off, n int) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	garbage := make([]byte, n)
	for i := range garbage {
		garbage[i] = byte(i*131 + 7)
	}
	if _, err := f.WriteAt(garbage, int64(id*size+off)); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// wantCorrupt checks that err reports path as corrupt, in words an operator
// can act on.
func wantCorrupt(t *testing.T, err error, path string) {
	t.Helper()
	var ce *bolt.CorruptError
	if !errors.As(err, &ce) || !errors.Is(err, bolt.ErrCorrupt) {
		t.Fatalf("err = %v, want a *bolt.CorruptError", err)
	}
	t.Log(err)
	msg := err.Error()
	if !strings.Contains(msg, "data file "+path+" is corrupt") || !strings.HasSuffix(msg, "restore it from a backup or move it away") {
		t.Fatalf("message %q does not name the file and say what to do", msg)
	}
}

func TestOpenTruncatedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "groups.db")
	populate(t, path)
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, info.Size()/2); err != nil {
		t.Fatal(err)
	}
	s, err := bolt.Open(path, bolt.Config{})
	if err == nil {
		s.Close()
		t.Fatal("Open of a file truncated to half succeeded")
	}
	wantCorrupt(t, err, path)
	if !strings.Contains(err.Error(), "truncated") {
		t.Errorf("message %q does not say the file looks truncated", err)
	}
}

func TestOpenTinyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "groups.db")
	populate(t, path)
	if err := os.Truncate(path, 100); err != nil {
		t.Fatal(err)
	}
	_, err := bolt.Open(path, bolt.Config{})
	wantCorrupt(t, err, path)
}

func TestOpenDamagedPage(t *testing.T) {
	for _, tc := range []struct {
		name   string
		off, n int // where the garbage goes in the page
	}{
		{"whole page", 0, 4096},
		{"header intact", 16, 64}, // element table: what bbolt's own assertions miss
		{"keys", 1000, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "groups.db")
			populate(t, path)
			ids, size := leafHolding(t, path, 50)
			for _, id := range ids {
				scribble(t, path, id, size, tc.off, min(tc.n, size-tc.off))
			}
			s, err := bolt.Open(path, bolt.Config{})
			if err == nil {
				defer s.Close()
				// Not found at Open: then reading the damaged group must fail, not answer empty.
				snap, err := s.Read(t.Context(), "a", groupName(50))
				if err == nil {
					t.Fatalf("Open and Read of a damaged page both succeeded; read %d channels", snap.Count())
				}
			}
			wantCorrupt(t, err, path)
		})
	}
}

// TestDamageWhileOpen: a page damaged under a running store (the check at
// Open cannot see it) makes the calls that touch it fail with a
// *CorruptError, never panic nor answer an empty group, and the store then
// refuses writes.
func TestDamageWhileOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "groups.db")
	populate(t, path)
	ids, size := leafHolding(t, path, 50)
	s, err := bolt.Open(path, bolt.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, id := range ids {
		scribble(t, path, id, size, 0, size) // the mapping is shared: the store sees it at once
	}
	snap, err := s.Read(t.Context(), "a", groupName(50))
	if err == nil {
		t.Fatalf("Read of a damaged page succeeded with %d channels", snap.Count())
	}
	wantCorrupt(t, err, path)
	add := channelgroups.Edit{Account: "a", Group: groupName(1), Op: channelgroups.OpAdd, Channels: []channelgroups.Channel{"new"}, At: 18e15}
	wantCorrupt(t, s.Write(t.Context(), add), path)
	wantCorrupt(t, s.Ping(t.Context()), path)
	// Reads of undamaged groups still work.
	if snap, err := s.Read(t.Context(), "a", groupName(0)); err != nil || snap.Count() != 50 {
		t.Fatalf("Read of an undamaged group: %d channels, %v; want 50", snap.Count(), err)
	}
}

// TestOpenUncheckedThenRead: with the walk turned off, damage is found by
// the first read instead.
func TestOpenUncheckedThenRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "groups.db")
	populate(t, path)
	ids, size := leafHolding(t, path, 50)
	for _, id := range ids {
		scribble(t, path, id, size, 0, size)
	}
	s, err := bolt.Open(path, bolt.Config{CheckBytes: -1})
	if err != nil {
		wantCorrupt(t, err, path)
		return
	}
	defer s.Close()
	_, err = s.Read(t.Context(), "a", groupName(50))
	wantCorrupt(t, err, path)
}
