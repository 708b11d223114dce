package volatile_test

import (
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/groupcast/groupcast/channelgroups"
	"github.com/groupcast/groupcast/volatile"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

var key = channelgroups.GroupKey{Account: "a", Group: "g"}

func edit(op channelgroups.Op, at channelgroups.Timetoken, chs ...channelgroups.Channel) channelgroups.Edit {
	return channelgroups.Edit{Account: key.Account, Group: key.Group, Op: op, Channels: chs, At: at}
}

func newOverlay(t *testing.T, cfg volatile.Config) (*volatile.Overlay, *clock, *prometheus.Registry) {
	t.Helper()
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	reg := prometheus.NewRegistry()
	cfg.Now, cfg.Registerer = c.now, reg
	o, err := volatile.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return o, c, reg
}

func metric(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			if m.Counter != nil {
				return m.Counter.GetValue()
			}
			return m.Gauge.GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func TestConfirmEarly(t *testing.T) {
	o, _, reg := newOverlay(t, volatile.Config{})
	o.Apply(edit(channelgroups.OpAdd, 100, "x", "y"))
	o.Apply(edit(channelgroups.OpRemove, 110, "z"))
	if o.Len() != 3 {
		t.Fatalf("Len = %d, want 3", o.Len())
	}
	// A snapshot that has x at 100 and y at an older write confirms only x.
	snap := &channelgroups.Snapshot{Entries: []channelgroups.Entry{
		{Channel: "x", State: channelgroups.Added, At: 100},
		{Channel: "y", State: channelgroups.Removed, At: 50},
	}}
	if left := o.Confirm(key, snap); left != 2 {
		t.Fatalf("Confirm left %d entries, want 2 (y and z)", left)
	}
	entries, _ := o.Entries(key)
	slices.SortFunc(entries, func(a, b channelgroups.Entry) int { return int(a.At - b.At) })
	if len(entries) != 2 || entries[0].Channel != "y" || entries[1].Channel != "z" {
		t.Fatalf("entries = %+v", entries)
	}
	// A later stored write confirms too (it supersedes the entry); a delete covers everything before it.
	snap = &channelgroups.Snapshot{Cleared: 105, Entries: []channelgroups.Entry{{Channel: "z", State: channelgroups.Added, At: 200}}}
	if left := o.Confirm(key, snap); left != 0 || o.Len() != 0 {
		t.Fatalf("left %d, Len %d; want the overlay empty", left, o.Len())
	}
	if got := metric(t, reg, "groupcast_overlay_confirmed_total"); got != 3 {
		t.Fatalf("confirmed_total = %v, want 3", got)
	}
}

func TestUnconfirmedExpiry(t *testing.T) {
	o, c, reg := newOverlay(t, volatile.Config{TTL: 4 * time.Second})
	o.Apply(edit(channelgroups.OpAdd, 100, "x"))
	c.advance(3 * time.Second)
	o.Apply(edit(channelgroups.OpAdd, 200, "y"))
	if got := o.Expired(); len(got) != 0 {
		t.Fatalf("Expired before the TTL = %v", got)
	}
	c.advance(time.Second) // x is 4 s old, y 1 s
	if got := o.Expired(); !slices.Equal(got, []channelgroups.GroupKey{key}) {
		t.Fatalf("Expired = %v, want [%v]", got, key)
	}
	if got := metric(t, reg, "groupcast_overlay_unconfirmed_expiries_total"); got != 1 {
		t.Fatalf("unconfirmed expiries = %v, want 1", got)
	}
	// The entry stays until storage confirms it, and is not re-reported at once.
	if o.Len() != 2 || len(o.Expired()) != 0 {
		t.Fatalf("after expiry: Len %d", o.Len())
	}
	c.advance(4 * time.Second) // both unconfirmed for another TTL
	if got := o.Expired(); len(got) != 1 {
		t.Fatalf("second Expired = %v", got)
	}
	if got := metric(t, reg, "groupcast_overlay_unconfirmed_expiries_total"); got != 3 {
		t.Fatalf("unconfirmed expiries = %v, want 3", got)
	}
	o.Confirm(key, &channelgroups.Snapshot{Version: 200, Entries: []channelgroups.Entry{
		{Channel: "x", State: channelgroups.Added, At: 100}, {Channel: "y", State: channelgroups.Added, At: 200}}})
	if o.Len() != 0 {
		t.Fatalf("Len after confirmation = %d", o.Len())
	}
}

func TestClearShadowsOlderEntries(t *testing.T) {
	o, _, _ := newOverlay(t, volatile.Config{})
	o.Apply(edit(channelgroups.OpAdd, 100, "old"))
	o.Apply(edit(channelgroups.OpAdd, 300, "new"))
	o.Apply(edit(channelgroups.OpClear, 200))
	o.Apply(edit(channelgroups.OpAdd, 150, "late-but-older")) // shadowed by the delete
	entries, cleared := o.Entries(key)
	if cleared != 200 || len(entries) != 1 || entries[0].Channel != "new" {
		t.Fatalf("entries %+v cleared %v", entries, cleared)
	}
	v := channelgroups.Merge(&channelgroups.Snapshot{Version: 90, Entries: []channelgroups.Entry{{Channel: "stored", State: channelgroups.Added, At: 90}}}, entries, cleared)
	if !slices.Equal(v.Channels, []channelgroups.Channel{"new"}) || v.Version != 300 {
		t.Fatalf("view %+v", v)
	}
}

func TestSupersedingEntryKept(t *testing.T) {
	o, _, _ := newOverlay(t, volatile.Config{})
	o.Apply(edit(channelgroups.OpAdd, 100, "x"))
	o.Apply(edit(channelgroups.OpRemove, 100, "x")) // tie: remove wins
	o.Apply(edit(channelgroups.OpAdd, 90, "x"))     // older: ignored
	entries, _ := o.Entries(key)
	if len(entries) != 1 || entries[0].State != channelgroups.Removed || entries[0].At != 100 {
		t.Fatalf("entries = %+v", entries)
	}
}

func TestLRUBound(t *testing.T) {
	var evicted []channelgroups.GroupKey
	o, _, reg := newOverlay(t, volatile.Config{MaxGroups: 2, OnEvict: func(k channelgroups.GroupKey) { evicted = append(evicted, k) }})
	for _, g := range []channelgroups.Group{"g1", "g2", "g1", "g3"} {
		o.Apply(channelgroups.Edit{Account: "a", Group: g, Op: channelgroups.OpAdd, Channels: []channelgroups.Channel{"c"}, At: 100})
	}
	if !slices.Equal(evicted, []channelgroups.GroupKey{{Account: "a", Group: "g2"}}) {
		t.Fatalf("evicted %v, want the least recently changed g2", evicted)
	}
	if o.Len() != 2 || metric(t, reg, "groupcast_overlay_evictions_total") != 1 {
		t.Fatalf("Len %d", o.Len())
	}
}

func TestDisabledAccount(t *testing.T) {
	o, _, _ := newOverlay(t, volatile.Config{Enabled: func(a channelgroups.Account) bool { return a != "off" }})
	if o.Apply(channelgroups.Edit{Account: "off", Group: "g", Op: channelgroups.OpAdd, Channels: []channelgroups.Channel{"c"}, At: 1}) {
		t.Fatal("Apply for a disabled account returned true")
	}
	if o.Len() != 0 {
		t.Fatalf("disabled account's change was kept")
	}
}

// TestTieNotConfirmedByLoser: a snapshot holding an add at the same
// timetoken as the overlay's remove does not confirm the remove (the remove
// wins the tie; storage simply has not seen it yet).
func TestTieNotConfirmedByLoser(t *testing.T) {
	o, _, _ := newOverlay(t, volatile.Config{})
	o.Apply(edit(channelgroups.OpRemove, 100, "x"))
	loser := &channelgroups.Snapshot{Version: 100, Entries: []channelgroups.Entry{{Channel: "x", State: channelgroups.Added, At: 100}}}
	if left := o.Confirm(key, loser); left != 1 {
		t.Fatalf("a losing stored add confirmed the remove (left %d)", left)
	}
	entries, cleared := o.Entries(key)
	if v := channelgroups.Merge(loser, entries, cleared); len(v.Channels) != 0 {
		t.Fatalf("view %v, want x removed", v.Channels)
	}
	winner := &channelgroups.Snapshot{Version: 100, Entries: []channelgroups.Entry{{Channel: "x", State: channelgroups.Removed, At: 100}}}
	if left := o.Confirm(key, winner); left != 0 {
		t.Fatalf("the stored remove did not confirm (left %d)", left)
	}
}
