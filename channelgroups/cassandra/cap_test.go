package cassandra

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/groupcast/groupcast/channelgroups"
)

func capChannels(prefix string, n int) []channelgroups.Channel {
	out := make([]channelgroups.Channel, n)
	for i := range out {
		out[i] = channelgroups.Channel(fmt.Sprintf("%s-%d", prefix, i))
	}
	return out
}

// raceAdds runs issue 10's probe against the real Cassandra: 20 adds of 200
// distinct channels to one group, all at once, spread over the services
// (nodes); it returns the group's final count and how many adds were
// accepted, and fails on any error other than ErrTooManyChannels.
func raceAdds(t *testing.T, s *Store, nodes int) (count, accepted int) {
	t.Helper()
	svcs := make([]*channelgroups.Service, nodes)
	for i := range svcs {
		var err error
		if svcs[i], err = channelgroups.NewService(s, channelgroups.NewClock(nil, 0), channelgroups.ServiceConfig{}); err != nil {
			t.Fatal(err)
		}
	}
	acct := channelgroups.Account(fmt.Sprint("cap", time.Now().UnixNano()))
	const adders, each = 20, channelgroups.MaxChannelsPerEdit
	errs := make([]error, adders)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range adders {
		wg.Go(func() {
			<-start
			_, errs[i] = svcs[i%nodes].Add(t.Context(), acct, "g", capChannels(fmt.Sprint("c", i), each), channelgroups.IfMatch{})
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		switch {
		case err == nil:
			accepted++
		case !errors.Is(err, channelgroups.ErrTooManyChannels):
			t.Fatalf("add %d: %v, want nil or ErrTooManyChannels", i, err)
		}
	}
	snap, err := s.Read(t.Context(), acct, "g")
	if err != nil {
		t.Fatal(err)
	}
	return snap.Count(), accepted
}

// TestCapOneNode: through one node the cap is exact.
func TestCapOneNode(t *testing.T) {
	s := newStore(t)
	count, accepted := raceAdds(t, s, 1)
	if max := channelgroups.MaxChannelsPerGroup; count != max || accepted != max/channelgroups.MaxChannelsPerEdit {
		t.Fatalf("group holds %d channels after %d accepted adds; want %d", count, accepted, max)
	}
}

// TestCapTwoNodes: through two nodes the group stays within the documented
// bound, cap + (N−1)·MaxChannelsPerEdit with N = 2 and no timeouts.
func TestCapTwoNodes(t *testing.T) {
	s := newStore(t)
	count, accepted := raceAdds(t, s, 2)
	bound := channelgroups.MaxChannelsPerGroup + channelgroups.MaxChannelsPerEdit
	t.Logf("two nodes: %d channels after %d accepted adds (bound %d)", count, accepted, bound)
	if count > bound || count != accepted*channelgroups.MaxChannelsPerEdit {
		t.Fatalf("group holds %d channels after %d accepted adds; the bound is %d", count, accepted, bound)
	}
}

// TestCapOverflowRepairable: a group over the cap (as racing nodes can
// leave it; made here by writing past the Service) reads with its true
// count, takes no add, and gives way to removes, after which it takes adds.
func TestCapOverflowRepairable(t *testing.T) {
	s := newStore(t)
	svc, err := channelgroups.NewService(s, channelgroups.NewClock(nil, 0), channelgroups.ServiceConfig{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	over := channelgroups.MaxChannelsPerGroup + channelgroups.MaxChannelsPerEdit
	at := channelgroups.TimetokenOf(time.Now().Add(-time.Minute))
	for i := range over / channelgroups.MaxChannelsPerEdit {
		e := channelgroups.Edit{Account: "over", Group: "g", Op: channelgroups.OpAdd, Channels: capChannels(fmt.Sprint("c", i), channelgroups.MaxChannelsPerEdit), At: at + channelgroups.Timetoken(i*10)}
		if err := s.Write(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	count := func() int {
		t.Helper()
		snap, err := svc.Read(ctx, "over", "g")
		if err != nil {
			t.Fatal(err)
		}
		return snap.Count()
	}
	if n := count(); n != over {
		t.Fatalf("read %d channels, want the true count %d", n, over)
	}
	for _, chs := range [][]channelgroups.Channel{{"new"}, {"c0-0"}} {
		if _, err := svc.Add(ctx, "over", "g", chs, channelgroups.IfMatch{}); !errors.Is(err, channelgroups.ErrTooManyChannels) {
			t.Fatalf("add %v to a group over the cap: %v, want ErrTooManyChannels", chs, err)
		}
	}
	if _, err := svc.Remove(ctx, "over", "g", capChannels("c0", channelgroups.MaxChannelsPerEdit), channelgroups.IfMatch{}); err != nil {
		t.Fatalf("remove from a group over the cap: %v", err)
	}
	if _, err := svc.Remove(ctx, "over", "g", []channelgroups.Channel{"c1-0"}, channelgroups.IfMatch{}); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != channelgroups.MaxChannelsPerGroup-1 {
		t.Fatalf("after removes: %d channels, want %d", n, channelgroups.MaxChannelsPerGroup-1)
	}
	if _, err := svc.Add(ctx, "over", "g", []channelgroups.Channel{"new"}, channelgroups.IfMatch{}); err != nil {
		t.Fatalf("add once back under the cap: %v", err)
	}
}

// TestNoConditionalTimestamp backs the package comment's reason for not
// using a lightweight transaction: Cassandra refuses USING TIMESTAMP on a
// conditional write.
func TestNoConditionalTimestamp(t *testing.T) {
	s := newStore(t)
	q := `INSERT INTO ` + s.cfg.Keyspace + `.members (account, grp, channel, state) VALUES ('lwt', 'g', 'c', 1) IF NOT EXISTS USING TIMESTAMP 1`
	err := s.s.Query(q).WithContext(t.Context()).Exec()
	t.Log(err)
	if err == nil || !strings.Contains(strings.ToLower(err.Error()), "timestamp") {
		t.Fatalf("conditional insert USING TIMESTAMP: %v, want Cassandra to refuse it", err)
	}
}

// TestMembersGCGrace backs bolt.Config.TombstoneRetention's default (10
// days): the members table keeps Cassandra's default gc_grace_seconds, so an
// expired remove shadows older adds for that long.
func TestMembersGCGrace(t *testing.T) {
	s := newStore(t)
	var grace int
	err := s.s.Query(`SELECT gc_grace_seconds FROM system_schema.tables WHERE keyspace_name = ? AND table_name = 'members'`, s.cfg.Keyspace).
		WithContext(t.Context()).Scan(&grace)
	if err != nil {
		t.Fatal(err)
	}
	if want := int((10 * 24 * time.Hour).Seconds()); grace != want {
		t.Fatalf("members gc_grace_seconds = %d, want %d (bolt's TombstoneRetention default mirrors it)", grace, want)
	}
}
