package cassandra

import (
	"context"
	"io"
	"log"
	"slices"
	"testing"
	"time"

	"github.com/gocql/gocql"

	"github.com/groupcast/groupcast/access"
	"github.com/groupcast/groupcast/access/accesstest"
	"github.com/groupcast/groupcast/internal/testenv"
)

func TestAccessConformance(t *testing.T) {
	s := newStore(t) // one keyspace for the suite, which changes nothing but its own keys
	accesstest.Run(t, func(*testing.T) access.Store { return s })
}

// TestAccessRevocationTTL: a revocation's row carries a TTL that ends
// revocationMargin after its Until, so the table holds no dead rows.
func TestAccessRevocationTTL(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	until := time.Now().Add(time.Hour)
	if err := s.Revoke(ctx, access.Revocation{SubscribeKey: "sub-c-ttl", TokenID: "tok", Until: until}); err != nil {
		t.Fatal(err)
	}
	var ttl int
	err := s.s.Query(`SELECT TTL(until) FROM ` + s.cfg.Keyspace + `.revocations WHERE subscribe_key = 'sub-c-ttl' AND token_id = 'tok'`).
		WithContext(ctx).Scan(&ttl)
	if err != nil {
		t.Fatal(err)
	}
	want := time.Until(until.Add(revocationMargin))
	if got := time.Duration(ttl) * time.Second; got > want || got < want-time.Minute {
		t.Fatalf("revocation TTL %v; want about %v (Until + %v)", got, want, revocationMargin)
	}
	far := access.Revocation{SubscribeKey: "sub-c-ttl", TokenID: "far", Until: time.Now().AddDate(25, 0, 0)}
	if err := s.Revoke(ctx, far); err == nil {
		t.Fatal("Revoke with an Until past Cassandra's longest TTL succeeded")
	}
}

// TestAccessAcrossDatacenters: a keyset put and a token revoked through a
// store in region 1's datacenter reach a store, and a Registry over it, in
// region 2's datacenter.
func TestAccessAcrossDatacenters(t *testing.T) {
	ks := testenv.Keyspace(t)
	envs := []testenv.RegionEnv{1: testenv.Region(t, 1), 2: testenv.Region(t, 2)}
	stores := make([]*Store, 3) // by region
	for region := 1; region <= 2; region++ {
		s, err := New(t.Context(), Config{Hosts: envs[region].Cassandra, LocalDC: envs[region].DC, Region: region,
			Keyspace: ks, Replication: map[string]int{envs[1].DC: 1, envs[2].DC: 1}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		stores[region] = s
	}
	ctx := t.Context()
	reg, err := access.NewRegistry(stores[2], access.RegistryConfig{Poll: 20 * time.Millisecond, Reload: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- reg.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})

	k, err := access.NewKeyset(true, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	rv := access.Revocation{SubscribeKey: k.SubscribeKey, TokenID: "tok", Until: time.Now().Add(time.Hour).Truncate(time.Millisecond)}
	if err := stores[1].PutKeyset(ctx, k); err != nil {
		t.Fatal(err)
	}
	if err := stores[1].Revoke(ctx, rv); err != nil {
		t.Fatal(err)
	}
	eventually(t, "region 2's store reads the keyset and the revocation", func() (bool, error) {
		got, err := stores[2].Keysets(ctx)
		if err != nil || !slices.ContainsFunc(got, func(g access.Keyset) bool { return sameKeyset(g, k) }) {
			return false, err
		}
		rs, err := stores[2].Revocations(ctx)
		return slices.ContainsFunc(rs, func(r access.Revocation) bool {
			return r.SubscribeKey == rv.SubscribeKey && r.TokenID == rv.TokenID && r.Until.Equal(rv.Until)
		}), err
	})
	// The stores' host policy may fall back to another datacenter's
	// coordinators; a session confined to region 2's datacenter shows that
	// the rows are replicated there.
	dc2 := confinedSession(t, envs[2])
	eventually(t, "region 2's datacenter alone answers for the keyset at LOCAL_QUORUM", func() (bool, error) {
		var pub string
		err := dc2.Query(`SELECT publish_key FROM `+ks+`.keysets WHERE subscribe_key = ?`, k.SubscribeKey).
			WithContext(ctx).Consistency(gocql.LocalQuorum).Scan(&pub)
		return err == nil && pub == k.PublishKey, err
	})
	eventually(t, "region 2's registry knows the keyset and the revocation", func() (bool, error) {
		got, ok := reg.Keyset(k.SubscribeKey)
		return ok && sameKeyset(got, k) && reg.Revoked(k.SubscribeKey, "tok"), nil
	})

	// A delete in region 2 reaches region 1.
	if err := stores[2].DeleteKeyset(ctx, k.SubscribeKey); err != nil {
		t.Fatal(err)
	}
	eventually(t, "region 1 sees region 2's delete", func() (bool, error) {
		got, err := stores[1].Keysets(ctx)
		return err == nil && !slices.ContainsFunc(got, func(g access.Keyset) bool { return g.SubscribeKey == k.SubscribeKey }), err
	})
}

func sameKeyset(a, b access.Keyset) bool {
	return a.SubscribeKey == b.SubscribeKey && a.PublishKey == b.PublishKey && a.SecretKey == b.SecretKey &&
		a.PAM == b.PAM && a.Created.Equal(b.Created)
}

// confinedSession opens a session whose coordinators are all in region r's
// datacenter.
func confinedSession(t *testing.T, r testenv.RegionEnv) *gocql.Session {
	t.Helper()
	c := gocql.NewCluster(r.Cassandra...)
	c.ProtoVersion = 4
	c.Timeout = 10 * time.Second
	c.Logger = log.New(io.Discard, "", 0)
	c.HostFilter = gocql.DataCentreHostFilter(r.DC)
	c.PoolConfig.HostSelectionPolicy = gocql.DCAwareRoundRobinPolicy(r.DC)
	s, err := c.CreateSession()
	if err != nil {
		t.Fatalf("session in %s: %v", r.DC, err)
	}
	t.Cleanup(s.Close)
	return s
}
