package bolt_test

import (
	"path/filepath"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/groupcast/groupcast/access"
	"github.com/groupcast/groupcast/access/accesstest"
	"github.com/groupcast/groupcast/channelgroups/bolt"
)

func TestAccessConformance(t *testing.T) {
	accesstest.Run(t, func(t *testing.T) access.Store { return open(t, bolt.Config{}) })
}

// TestAccessReopen: keysets, revocations and the version survive a restart,
// and the version goes on changing after it.
func TestAccessReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "groups.db")
	s, err := bolt.Open(path, bolt.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	k, err := access.NewKeyset(true, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	r := access.Revocation{SubscribeKey: k.SubscribeKey, TokenID: "tok", Until: time.Now().Add(time.Hour).Truncate(time.Millisecond)}
	if err := s.PutKeyset(ctx, k); err != nil {
		t.Fatal(err)
	}
	if err := s.Revoke(ctx, r); err != nil {
		t.Fatal(err)
	}
	v, err := s.Version(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := bolt.Open(path, bolt.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	ks, err := s2.Keysets(ctx)
	if err != nil || len(ks) != 1 || ks[0].SecretKey != k.SecretKey || ks[0].PublishKey != k.PublishKey || !ks[0].Created.Equal(k.Created) {
		t.Fatalf("after reopen Keysets = %+v, %v; want [%+v]", ks, err, k)
	}
	rs, err := s2.Revocations(ctx)
	if err != nil || len(rs) != 1 || !rs[0].Until.Equal(r.Until) || rs[0].TokenID != r.TokenID {
		t.Fatalf("after reopen Revocations = %+v, %v; want [%+v]", rs, err, r)
	}
	if got, err := s2.Version(ctx); err != nil || got != v {
		t.Fatalf("after reopen Version = %q, %v; want %q", got, err, v)
	}
	if err := s2.DeleteKeyset(ctx, k.SubscribeKey); err != nil {
		t.Fatal(err)
	}
	if got, _ := s2.Version(ctx); got == v {
		t.Fatalf("Version after a delete is %q, unchanged", got)
	}
}

// TestAccessOnOlderFile: a file written before the access bucket existed
// opens with no keysets, and takes them.
func TestAccessOnOlderFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "groups.db")
	s, err := bolt.Open(path, bolt.Config{})
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
	if err := db.Update(func(tx *bbolt.Tx) error { return tx.DeleteBucket([]byte("access")) }); err != nil {
		t.Fatalf("removing the access bucket: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = bolt.Open(path, bolt.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if ks, err := s.Keysets(t.Context()); err != nil || len(ks) != 0 {
		t.Fatalf("Keysets = %+v, %v; want none", ks, err)
	}
	k, _ := access.NewKeyset(false, time.Now())
	if err := s.PutKeyset(t.Context(), k); err != nil {
		t.Fatal(err)
	}
}

// TestRevocationsPurged: a revocation is kept past its Until for a grace
// period (clocks of other nodes may lag), then purged by a later Revoke.
func TestRevocationsPurged(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	s := open(t, bolt.Config{Now: func() time.Time { return now }})
	ctx := t.Context()
	old := access.Revocation{SubscribeKey: "sub-c-a", TokenID: "old", Until: now.Add(time.Minute)}
	if err := s.Revoke(ctx, old); err != nil {
		t.Fatal(err)
	}
	tokens := func() []string {
		t.Helper()
		rs, err := s.Revocations(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range rs {
			out = append(out, r.TokenID)
		}
		return out
	}
	now = now.Add(5 * time.Minute) // past Until, within the grace
	if err := s.Revoke(ctx, access.Revocation{SubscribeKey: "sub-c-a", TokenID: "new1", Until: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if got := tokens(); len(got) != 2 {
		t.Fatalf("within the grace: revoked %v, want old and new1", got)
	}
	now = now.Add(time.Hour)
	if err := s.Revoke(ctx, access.Revocation{SubscribeKey: "sub-c-a", TokenID: "new2", Until: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if got := tokens(); len(got) != 2 || got[0] != "new1" || got[1] != "new2" {
		t.Fatalf("after the grace: revoked %v, want [new1 new2]", got)
	}
}
