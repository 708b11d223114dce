package bolt_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/groupcast/groupcast/channelgroups"
	"github.com/groupcast/groupcast/channelgroups/bolt"
	"github.com/groupcast/groupcast/channelgroups/storetest"
)

func open(t *testing.T, cfg bolt.Config) *bolt.Store {
	t.Helper()
	s, err := bolt.Open(filepath.Join(t.TempDir(), "groups.db"), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Store { return open(t, bolt.Config{}) }, storetest.Options{})
}

func TestRemovesAgeOut(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	s := open(t, bolt.Config{RemoveTTL: time.Hour, Now: func() time.Time { return now }})
	at := channelgroups.TimetokenOf(now)
	for _, e := range []channelgroups.Edit{
		{Account: "a", Group: "g", Op: channelgroups.OpAdd, Channels: []channelgroups.Channel{"x", "y"}, At: at},
		{Account: "a", Group: "g", Op: channelgroups.OpRemove, Channels: []channelgroups.Channel{"x"}, At: at + 10},
	} {
		if err := s.Write(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
	read := func() channelgroups.Snapshot {
		snap, err := s.Read(t.Context(), "a", "g")
		if err != nil {
			t.Fatal(err)
		}
		return snap
	}
	if got := read(); len(got.Entries) != 2 {
		t.Fatalf("within the TTL: %d entries, want 2 (the remove is still readable)", len(got.Entries))
	}
	now = now.Add(time.Hour)
	got := read()
	if len(got.Entries) != 1 || got.Entries[0].Channel != "y" {
		t.Fatalf("after the TTL: entries %+v, want only y", got.Entries)
	}
	// The aged-out remove still shadows an older add, as a Cassandra tombstone does.
	if err := s.Write(t.Context(), channelgroups.Edit{Account: "a", Group: "g", Op: channelgroups.OpAdd, Channels: []channelgroups.Channel{"x"}, At: at + 5}); err != nil {
		t.Fatal(err)
	}
	if e, ok := read().Lookup("x"); ok {
		t.Fatalf("older add resurrected x: %+v", e)
	}
}

func TestReopenKeepsData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "groups.db")
	s, err := bolt.Open(path, bolt.Config{})
	if err != nil {
		t.Fatal(err)
	}
	e := channelgroups.Edit{Account: "a", Group: "g", Op: channelgroups.OpAdd, Channels: []channelgroups.Channel{"x"}, At: 170000000000000000}
	if err := s.Write(t.Context(), e); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = bolt.Open(path, bolt.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.Read(t.Context(), "a", "g")
	if err != nil {
		t.Fatal(err)
	}
	if ch := got.Channels(); len(ch) != 1 || ch[0] != "x" {
		t.Fatalf("after reopen: %v, want [x]", ch)
	}
}

func TestReplaysExpire(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	s := open(t, bolt.Config{Now: func() time.Time { return now }})
	if err := s.Remember(t.Context(), "a", "k", "fp", []byte("answer"), 10*time.Minute); err != nil {
		t.Fatal(err)
	}
	now = now.Add(9 * time.Minute)
	if _, _, found, _ := s.Recall(t.Context(), "a", "k"); !found {
		t.Fatal("replay gone before its TTL")
	}
	now = now.Add(time.Minute)
	if _, _, found, _ := s.Recall(t.Context(), "a", "k"); found {
		t.Fatal("replay still there after its TTL")
	}
}
