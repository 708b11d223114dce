package cassandra

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/gocql/gocql"

	"github.com/groupcast/groupcast/channelgroups"
	"github.com/groupcast/groupcast/internal/testenv"
)

// TestOutboxPerRegion: the keyspace is replicated to both regions'
// datacenters, but each region's outbox holds only the edits written there.
// Region 2 never sees region 1's pending edit (else its shard primary would
// announce it into region 2's log and delete it, and region 1 would never
// announce its own edit), and clearing an edit in region 2 leaves region 1's
// record alone.
func TestOutboxPerRegion(t *testing.T) {
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
	const shard = 3
	acct := channelgroups.Account(fmt.Sprint("regions", time.Now().UnixNano()))
	at := channelgroups.TimetokenFromMicros(time.Now().UnixMicro())
	e := channelgroups.Edit{Account: acct, Group: "g", Shard: shard, Op: channelgroups.OpAdd,
		Channels: []channelgroups.Channel{"c"}, At: at}
	if err := stores[1].Write(ctx, e); err != nil {
		t.Fatal(err)
	}
	pending := func(region int) []channelgroups.Edit {
		t.Helper()
		es, err := stores[region].Pending(ctx, shard, 10)
		if err != nil {
			t.Fatal(err)
		}
		return es
	}
	if got := pending(1); !slices.ContainsFunc(got, sameEdit(e)) {
		t.Fatalf("region 1's Pending = %+v; want the edit written there, %+v", got, e)
	}

	// Wait until region 2's datacenter has the edit: its members row, and
	// the row region 1's outbox keeps for it, so that an outbox read in
	// region 2 that looked at other regions' records would find it.
	eventually(t, "region 2 reads region 1's edit and its outbox row", func() (bool, error) {
		snap, err := stores[2].Read(ctx, acct, "g")
		if err != nil || snap.Count() != 1 {
			return false, err
		}
		return outboxRow(stores[2], 1, e)
	})
	if got := pending(2); len(got) != 0 {
		t.Fatalf("region 2's Pending = %+v; want nothing: the edit was written in region 1", got)
	}

	// Region 2 clearing the edit (as its primary would after announcing it)
	// does not clear region 1's record, even once region 2's writes since
	// have reached region 1.
	if err := stores[2].Announced(ctx, e); err != nil {
		t.Fatal(err)
	}
	marker := channelgroups.Edit{Account: acct, Group: "marker", Shard: shard, Op: channelgroups.OpAdd,
		Channels: []channelgroups.Channel{"c"}, At: at + 1}
	if err := stores[2].Write(ctx, marker); err != nil {
		t.Fatal(err)
	}
	eventually(t, "region 1 reads region 2's later write", func() (bool, error) {
		return outboxRow(stores[1], 2, marker)
	})
	if got := pending(1); !slices.ContainsFunc(got, sameEdit(e)) {
		t.Fatalf("region 1's Pending after Announced in region 2 = %+v; want it to still hold %+v", got, e)
	}
	if got := pending(2); len(got) != 1 || !sameEdit(marker)(got[0]) {
		t.Fatalf("region 2's Pending = %+v; want only its own edit %+v", got, marker)
	}
	if err := stores[1].Announced(ctx, e); err != nil {
		t.Fatal(err)
	}
	if got := pending(1); len(got) != 0 {
		t.Fatalf("region 1's Pending after Announced there = %+v; want nothing", got)
	}
}

// sameEdit returns a test for an edit equal to e.
func sameEdit(e channelgroups.Edit) func(channelgroups.Edit) bool {
	return func(f channelgroups.Edit) bool {
		return f.Account == e.Account && f.Group == e.Group && f.Shard == e.Shard && f.Op == e.Op && f.At == e.At &&
			slices.Equal(f.Channels, e.Channels)
	}
}

// outboxRow tells whether s's datacenter holds region's outbox record of e
// (read at LOCAL_QUORUM there).
func outboxRow(s *Store, region int, e channelgroups.Edit) (bool, error) {
	var at int64
	err := s.s.Query(`SELECT at FROM `+s.cfg.Keyspace+`.outbox_by_region WHERE region = ? AND shard = ? AND at = ? AND account = ? AND grp = ?`,
		region, e.Shard, int64(e.At), string(e.Account), string(e.Group)).Scan(&at)
	if errors.Is(err, gocql.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// eventually polls cond until it holds, failing the test after a deadline.
func eventually(t *testing.T, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok, err := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 30s (last error: %v)", what, err)
		}
		select {
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
