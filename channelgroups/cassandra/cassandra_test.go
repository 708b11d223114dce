package cassandra

import (
	"testing"
	"time"

	"github.com/gocql/gocql"

	"github.com/groupcast/groupcast/channelgroups"
	"github.com/groupcast/groupcast/channelgroups/storetest"
	"github.com/groupcast/groupcast/internal/testenv"
)

// newStore opens a store on the real Cassandra in a keyspace private to the
// test, dropped when the test ends.
func newStore(t *testing.T) *Store {
	t.Helper()
	s, err := New(t.Context(), Config{Hosts: testenv.CassandraHosts(t), Keyspace: testenv.Keyspace(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	s := newStore(t) // one keyspace for the suite: each test uses its own accounts
	storetest.Run(t, func(*testing.T) storetest.Store { return s }, storetest.Options{Interleavings: 1000})
}

// TestTieRule proves, against a real server, the rule Entry.Supersedes and
// Snapshot.Apply rely on for equal write timestamps.
func TestTieRule(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	at := channelgroups.TimetokenFromMicros(time.Now().UnixMicro())
	ch := []channelgroups.Channel{"c"}
	edit := func(g string, op channelgroups.Op) channelgroups.Edit {
		return channelgroups.Edit{Account: "tie", Group: channelgroups.Group(g), Op: op, Channels: ch, At: at}
	}
	add, rm, clr := channelgroups.OpAdd, channelgroups.OpRemove, channelgroups.OpClear
	for _, tc := range []struct {
		name string
		ops  []channelgroups.Op
		want channelgroups.State
		gone bool // no row at all
	}{
		{"add then remove", []channelgroups.Op{add, rm}, channelgroups.Removed, false},
		{"remove then add", []channelgroups.Op{rm, add}, channelgroups.Removed, false},
		{"add then add", []channelgroups.Op{add, add}, channelgroups.Added, false},
		{"delete then add", []channelgroups.Op{clr, add}, 0, true},
		{"add then delete", []channelgroups.Op{add, clr}, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := tc.name
			var model channelgroups.Snapshot
			for _, op := range tc.ops {
				e := edit(g, op)
				if op == clr {
					e.Channels = nil
				}
				if err := s.Write(ctx, e); err != nil {
					t.Fatal(err)
				}
				model.Apply(e)
			}
			var state int8
			var wt int64
			err := s.s.Query(`SELECT state, WRITETIME(state) FROM `+s.cfg.Keyspace+`.members WHERE account = 'tie' AND grp = ? AND channel = 'c'`, g).
				WithContext(ctx).Scan(&state, &wt)
			if tc.gone {
				if err != gocql.ErrNotFound {
					t.Fatalf("Cassandra has state=%d wt=%d (err %v), want no row: a delete wins a tie", state, wt, err)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				if channelgroups.State(state) != tc.want || wt != at.Micros() {
					t.Fatalf("Cassandra stored state=%d at %d, want %v at %d", state, wt, tc.want, at.Micros())
				}
			}
			_, inModel := model.Lookup("c")
			if e, _ := model.Lookup("c"); inModel == tc.gone || (!tc.gone && e.State != tc.want) {
				t.Fatalf("Go model gives %+v (present %v); Cassandra's answer differs", e, inModel)
			}
		})
	}
	// Why removes carry a TTL: between two plain cells Cassandra breaks a tie
	// by the greater value, and an add (1) would beat a remove (0).
	t.Run("without TTL the add would win", func(t *testing.T) {
		q := `INSERT INTO ` + s.cfg.Keyspace + `.members (account, grp, channel, state) VALUES ('tie', 'nottl', 'c', ?) USING TIMESTAMP ?`
		for _, st := range []int8{1, 0} {
			if err := s.s.Query(q, st, at.Micros()).WithContext(ctx).Exec(); err != nil {
				t.Fatal(err)
			}
		}
		var state int8
		if err := s.s.Query(`SELECT state FROM ` + s.cfg.Keyspace + `.members WHERE account = 'tie' AND grp = 'nottl' AND channel = 'c'`).
			WithContext(ctx).Scan(&state); err != nil {
			t.Fatal(err)
		}
		if state != 1 {
			t.Fatalf("plain cells tie: state %d won; the TTL on removes may no longer be needed", state)
		}
	})
}

func TestConfigValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"no hosts", Config{}},
		{"bad keyspace", Config{Hosts: []string{"h"}, Keyspace: "drop table x"}},
		{"bad replication", Config{Hosts: []string{"h"}, Replication: map[string]int{"dc1": 0}}},
		{"tiny remove TTL", Config{Hosts: []string{"h"}, RemoveTTL: time.Millisecond}},
		{"negative region", Config{Hosts: []string{"h"}, Region: -1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(t.Context(), tc.cfg); err == nil {
				t.Fatal("New accepted an invalid config")
			}
		})
	}
}
