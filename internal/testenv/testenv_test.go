package testenv_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"strings"
	"testing"
	"time"

	"github.com/gocql/gocql"
	"github.com/redis/go-redis/v9"

	"github.com/groupcast/groupcast/internal/testenv"
)

// TestTwoRegionInfra proves that the servers of `scripts/infra up --regions 2`
// are two real regions: two distinct Redis servers, and two Cassandra
// datacenters that a keyspace NetworkTopologyStrategy {dc1: 1, dc2: 1}
// replicates between. A row written at LOCAL_QUORUM by a session whose
// coordinators are all in one datacenter is read at LOCAL_ONE by a session
// confined to the other one (both ways), which only a replica in each
// datacenter can answer.
func TestTwoRegionInfra(t *testing.T) {
	regions := []testenv.RegionEnv{testenv.Region(t, 1), testenv.Region(t, 2)}
	if regions[0].DC == regions[1].DC {
		t.Fatalf("both regions are in datacenter %s; want one datacenter per region", regions[0].DC)
	}
	ks := testenv.Keyspace(t)
	ctx := t.Context()

	// Redis: each region's answers, and they are two servers (the second
	// SET would overwrite the first on one server).
	key := "testenv:two-regions:" + ks
	clients := make([]*redis.Client, len(regions))
	for i, r := range regions {
		c := redis.NewClient(&redis.Options{Addr: r.Redis})
		t.Cleanup(func() {
			c.Del(context.Background(), key)
			if err := c.Close(); err != nil {
				t.Errorf("close region %d's Redis: %v", i+1, err)
			}
		})
		if err := c.Set(ctx, key, fmt.Sprint(i+1), time.Minute).Err(); err != nil {
			t.Fatalf("region %d's Redis %s: %v", i+1, r.Redis, err)
		}
		clients[i] = c
	}
	for i, c := range clients {
		got, err := c.Get(ctx, key).Result()
		if err != nil {
			t.Fatalf("region %d's Redis %s: %v", i+1, regions[i].Redis, err)
		}
		if want := fmt.Sprint(i + 1); got != want {
			t.Fatalf("region %d's Redis %s holds %s = %q, want %q: the regions share one Redis", i+1, regions[i].Redis, key, got, want)
		}
	}

	// Cassandra: one session per region, its coordinators only in the
	// region's datacenter.
	sessions := make([]*gocql.Session, len(regions))
	for i, r := range regions {
		c := gocql.NewCluster(r.Cassandra...)
		c.ProtoVersion = 4
		c.Timeout = 30 * time.Second
		c.ConnectTimeout = 10 * time.Second
		c.Logger = log.New(io.Discard, "", 0)
		c.HostFilter = gocql.DataCentreHostFilter(r.DC)
		c.PoolConfig.HostSelectionPolicy = gocql.DCAwareRoundRobinPolicy(r.DC)
		s, err := c.CreateSession()
		if err != nil {
			t.Fatalf("region %d's Cassandra %v (%s): %v", i+1, r.Cassandra, r.DC, err)
		}
		t.Cleanup(s.Close)
		var dc string
		if err := s.Query(`SELECT data_center FROM system.local`).WithContext(ctx).Scan(&dc); err != nil {
			t.Fatalf("region %d's Cassandra: %v", i+1, err)
		}
		if dc != r.DC {
			t.Fatalf("region %d's Cassandra %v is in datacenter %s, want %s", i+1, r.Cassandra, dc, r.DC)
		}
		sessions[i] = s
	}
	repl := fmt.Sprintf(`{'class': 'NetworkTopologyStrategy', '%s': 1, '%s': 1}`, regions[0].DC, regions[1].DC)
	for _, q := range []string{
		`CREATE KEYSPACE ` + ks + ` WITH replication = ` + repl,
		`CREATE TABLE ` + ks + `.kv (k text PRIMARY KEY, v text)`,
	} {
		if err := sessions[0].Query(q).WithContext(ctx).Exec(); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	for i, s := range sessions {
		if err := s.AwaitSchemaAgreement(ctx); err != nil {
			t.Fatalf("region %d's Cassandra: schema agreement: %v", i+1, err)
		}
	}
	for w, writer := range sessions {
		k, v := fmt.Sprintf("written-in-%s", regions[w].DC), fmt.Sprint(time.Now().UnixNano())
		if err := writer.Query(`INSERT INTO `+ks+`.kv (k, v) VALUES (?, ?)`, k, v).
			Consistency(gocql.LocalQuorum).WithContext(ctx).Exec(); err != nil {
			t.Fatalf("LOCAL_QUORUM write in %s: %v", regions[w].DC, err)
		}
		for r, reader := range sessions {
			if r == w {
				continue
			}
			// Replication between datacenters is asynchronous: poll.
			eventually(t, fmt.Sprintf("%s's row read at LOCAL_ONE in %s", regions[w].DC, regions[r].DC), func() error {
				var got string
				err := reader.Query(`SELECT v FROM `+ks+`.kv WHERE k = ?`, k).
					Consistency(gocql.LocalOne).WithContext(ctx).Scan(&got)
				if err == nil && got != v {
					err = fmt.Errorf("v = %q, want %q", got, v)
				}
				return err
			})
		}
	}
}

// eventually calls f until it returns nil, failing the test with f's last
// error after 30 s.
func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after 30s: %v", what, err)
		}
		select {
		case <-t.Context().Done():
			t.Fatalf("%s: %v", what, t.Context().Err())
		case <-tick.C:
		}
	}
}

// TestRegionUnset: a region whose variables are unset fails the test, naming
// the variable and the command that starts the servers; it never skips.
func TestRegionUnset(t *testing.T) {
	t.Setenv("GROUPCAST_R7_CASSANDRA", "")
	t.Setenv("GROUPCAST_R7_DC", "")
	t.Setenv("GROUPCAST_R7_REDIS", "")
	rec := &recorder{TB: t}
	testenv.Region(rec, 7)
	if rec.skipped {
		t.Fatal("Region skipped the test; want it failed")
	}
	if len(rec.fatals) == 0 {
		t.Fatal("Region returned with its variables unset; want the test failed")
	}
	want := "GROUPCAST_R7_CASSANDRA is not set: integration tests need the real servers; run `make test`, or `eval \"$(scripts/infra up --regions 2)\"` first"
	if got := rec.fatals[0]; got != want {
		t.Errorf("failure message = %q, want %q", got, want)
	}
	// The other helpers say the same for their variables.
	rec = &recorder{TB: t}
	t.Setenv("GROUPCAST_REDIS", "")
	testenv.RedisAddr(rec)
	if len(rec.fatals) != 1 || !strings.HasPrefix(rec.fatals[0], "GROUPCAST_REDIS is not set: ") {
		t.Errorf("RedisAddr failures = %q, want one about GROUPCAST_REDIS", rec.fatals)
	}
}

// recorder is a testing.TB whose Fatalf and Skip record instead of stopping
// the test.
type recorder struct {
	testing.TB
	fatals  []string
	skipped bool
}

func (r *recorder) Helper() {}

func (r *recorder) Fatalf(format string, args ...any) {
	r.fatals = append(r.fatals, fmt.Sprintf(format, args...))
}

func (r *recorder) Fatal(args ...any) { r.fatals = append(r.fatals, fmt.Sprint(args...)) }

func (r *recorder) Skip(...any) { r.skipped = true }

func (r *recorder) Skipf(string, ...any) { r.skipped = true }

func (r *recorder) SkipNow() { r.skipped = true }
