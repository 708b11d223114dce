// Package testenv tells integration tests where the real servers started by
// scripts/infra are. A missing server fails the test: integration tests
// never skip (run them with `make test`, which starts the servers).
package testenv

import (
	"os"
	"strings"
	"testing"
)

// CassandraHosts returns the contact points in GROUPCAST_TEST_CASSANDRA, or
// fails the test.
func CassandraHosts(t testing.TB) []string {
	t.Helper()
	return strings.Split(require(t, "GROUPCAST_TEST_CASSANDRA"), ",")
}

// RedisAddr returns the address in GROUPCAST_TEST_REDIS, or fails the test.
func RedisAddr(t testing.TB) string {
	t.Helper()
	return require(t, "GROUPCAST_TEST_REDIS")
}

func require(t testing.TB, name string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		t.Fatalf("%s is not set: integration tests need the real servers; run `make test`, or `eval \"$(scripts/infra up)\"` first", name)
	}
	return v
}
