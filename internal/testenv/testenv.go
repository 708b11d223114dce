// Package testenv tells integration tests where the real servers started by
// scripts/infra are (the GROUPCAST_CASSANDRA and GROUPCAST_REDIS lines it
// prints, and with --regions 2 each region's GROUPCAST_R<n>_CASSANDRA,
// GROUPCAST_R<n>_DC and GROUPCAST_R<n>_REDIS). A missing server fails the
// test: integration tests never skip. Run them with `make test`, which starts
// the servers of two regions.
package testenv

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gocql/gocql"
)

// CassandraHosts returns the contact points in GROUPCAST_CASSANDRA, or fails
// the test.
func CassandraHosts(t testing.TB) []string {
	t.Helper()
	return strings.Split(require(t, "GROUPCAST_CASSANDRA"), ",")
}

// RedisAddr returns the address in GROUPCAST_REDIS, or fails the test.
func RedisAddr(t testing.TB) string {
	t.Helper()
	return require(t, "GROUPCAST_REDIS")
}

// RegionEnv is one region's servers: its Cassandra datacenter and its Redis.
type RegionEnv struct {
	Cassandra []string // contact points in the region's datacenter
	DC        string   // the datacenter's name, e.g. "dc1"
	Redis     string   // host:port of the Redis holding the region's shard logs
}

// Region returns region n's servers from GROUPCAST_R<n>_CASSANDRA,
// GROUPCAST_R<n>_DC and GROUPCAST_R<n>_REDIS (`scripts/infra up --regions 2`
// prints them for regions 1 and 2), or fails the test.
func Region(t testing.TB, n int) RegionEnv {
	t.Helper()
	const up = "scripts/infra up --regions 2"
	prefix := fmt.Sprintf("GROUPCAST_R%d_", n)
	return RegionEnv{
		Cassandra: strings.Split(requireFrom(t, prefix+"CASSANDRA", up), ","),
		DC:        requireFrom(t, prefix+"DC", up),
		Redis:     requireFrom(t, prefix+"REDIS", up),
	}
}

func require(t testing.TB, name string) string {
	t.Helper()
	return requireFrom(t, name, "scripts/infra up")
}

// requireFrom returns the variable name, or fails the test saying that the
// command up starts the servers it names.
func requireFrom(t testing.TB, name, up string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		t.Fatalf("%s is not set: integration tests need the real servers; run `make test`, or `eval \"$(%s)\"` first", name, up)
	}
	return v
}

// Keyspace returns a keyspace name unique to this test, dropped when the
// test ends.
func Keyspace(t testing.TB) string {
	t.Helper()
	ks := fmt.Sprintf("gctest_%d_%d", time.Now().UnixNano(), os.Getpid())
	hosts := CassandraHosts(t)
	t.Cleanup(func() {
		c := gocql.NewCluster(hosts...)
		c.ProtoVersion = 4
		c.Timeout = time.Minute
		c.Logger = log.New(io.Discard, "", 0)
		s, err := c.CreateSession()
		if err != nil {
			t.Errorf("drop keyspace %s: %v", ks, err)
			return
		}
		defer s.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := s.Query(`DROP KEYSPACE IF EXISTS ` + ks).WithContext(ctx).Exec(); err != nil {
			t.Errorf("drop keyspace %s: %v", ks, err)
		}
	})
	return ks
}

// CountAllocs skips a test that counts allocations under the race
// detector, which drops pooled items at random and allocates itself: such a
// test is named ...Allocs, and scripts/test runs those again without it.
func CountAllocs(t testing.TB) {
	t.Helper()
	if Race {
		t.Skip("allocations are not counted under the race detector: scripts/test runs the ...Allocs tests without it")
	}
}
