// Package testenv tells integration tests where the real servers started by
// scripts/infra are (the GROUPCAST_CASSANDRA and GROUPCAST_REDIS lines it
// prints). A missing server fails the test: integration tests never skip.
// Run them with `make test`, which starts the servers.
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

func require(t testing.TB, name string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		t.Fatalf("%s is not set: integration tests need the real servers; run `make test`, or `eval \"$(scripts/infra up)\"` first", name)
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
