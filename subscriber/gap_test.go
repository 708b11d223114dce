package subscriber_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/groupcast/groupcast/channelgroups"
	"github.com/groupcast/groupcast/channelgroups/bolt"
	"github.com/groupcast/groupcast/internal/metrictest"
	"github.com/groupcast/groupcast/internal/nodetest"
	"github.com/groupcast/groupcast/subscriber"
	"github.com/groupcast/groupcast/subscriber/memlog"
)

// heldLog lets a test hold a node's log consumer back: while held, Read
// waits at its start (after telling waiting) until released.
type heldLog struct {
	subscriber.Log
	mu      sync.Mutex
	gate    chan struct{} // non-nil while held; closed on release
	waiting chan struct{}
}

func (l *heldLog) Read(ctx context.Context, cursors []subscriber.Cursor, max int, block time.Duration) ([]subscriber.LogEntry, error) {
	l.mu.Lock()
	gate := l.gate
	l.mu.Unlock()
	if gate != nil {
		select {
		case l.waiting <- struct{}{}:
		default:
		}
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return l.Log.Read(ctx, cursors, max, block)
}

// hold holds the consumer and returns once it waits at the gate: no read
// is in flight, so nothing appended from now on is read before release.
func (l *heldLog) hold(t *testing.T) {
	t.Helper()
	l.mu.Lock()
	l.gate = make(chan struct{})
	l.mu.Unlock()
	select {
	case <-l.waiting:
	case <-time.After(10 * time.Second):
		t.Fatal("the consumer did not come back to the log within 10s")
	}
}

func (l *heldLog) release() {
	l.mu.Lock()
	close(l.gate)
	l.gate = nil
	l.mu.Unlock()
}

// gapNode starts a 4-shard node over st and lg, running until the test ends.
func gapNode(t *testing.T, st subscriber.Store, lg subscriber.Log, reg *prometheus.Registry) *subscriber.Node {
	t.Helper()
	return nodetest.Run(t, lg, st, channelgroups.NewClock(nil, 0),
		subscriber.Config{Shards: 4, Registerer: reg, RefreshEvery: time.Hour, FreshWait: 10 * time.Second}, nil)
}

// pollAcross parks a poll on channel z from cursor, publishes a message to
// z and returns the poll's answer.
func pollAcross(t *testing.T, n *subscriber.Node, acct channelgroups.Account, cursor channelgroups.Timetoken) subscriber.PollResult {
	t.Helper()
	res := make(chan subscriber.PollResult, 1)
	go func() {
		r, err := n.Poll(t.Context(), subscriber.PollRequest{Account: acct, Channels: []channelgroups.Channel{"z"}, Cursor: cursor})
		if err != nil {
			t.Error(err)
		}
		res <- r
	}()
	if _, err := n.Publish(t.Context(), &subscriber.Message{Account: acct, Channel: "z", Payload: json.RawMessage(`"hi"`), Publisher: "p"}, nil); err != nil {
		t.Fatal(err)
	}
	return <-res
}

// TestGapInReplay: a node that takes up a shard whose log was trimmed
// within the retention window cannot serve cursors before the trim in
// full, and says so to a poll from such a cursor.
func TestGapInReplay(t *testing.T) {
	st, err := bolt.Open(filepath.Join(t.TempDir(), "g.db"), bolt.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	lg, err := memlog.New(memlog.Config{Shards: 4, MaxLen: 2})
	if err != nil {
		t.Fatal(err)
	}
	acct := channelgroups.Account("replayacct")
	shard := channelgroups.ShardOf(acct, 4)
	var ps []channelgroups.Position
	for i := range 5 {
		e := channelgroups.Edit{Account: acct, Group: "g", Shard: shard, Op: channelgroups.OpAdd, Channels: []channelgroups.Channel{"c"}, At: channelgroups.TimetokenOf(time.Now()) + channelgroups.Timetoken(i)}
		p, err := lg.Append(t.Context(), shard, subscriber.EncodeEdit(e))
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	reg := prometheus.NewRegistry()
	n := gapNode(t, st, lg, reg)
	if r := pollAcross(t, n, acct, subscriber.CursorOf(ps[1])); !r.Gap || len(r.Deliveries) != 1 {
		t.Fatalf("poll from before the trim: %d deliveries, gap %v; want the message and gap true", len(r.Deliveries), r.Gap)
	}
	if r := pollAcross(t, n, acct, subscriber.CursorOf(ps[4])); r.Gap {
		t.Fatal("poll from after the trim: gap true")
	}
	if got := metrictest.Value(t, reg, "groupcast_log_gaps_total"); got != 0 {
		t.Fatalf("groupcast_log_gaps_total = %v; want 0: the node missed nothing it had applied", got)
	}
}

// TestGapRepair: a node held back while its shard's log is trimmed past its
// position detects the gap, counts it, and re-reads the shard's groups: a
// token read of an edit it never saw is answered from storage, not from
// the view it had cached. A subscriber whose cursor is before the gap is
// told its answer crosses it.
func TestGapRepair(t *testing.T) {
	const shards = 4
	st, err := bolt.Open(filepath.Join(t.TempDir(), "g.db"), bolt.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ml, err := memlog.New(memlog.Config{Shards: shards, MaxLen: 4})
	if err != nil {
		t.Fatal(err)
	}
	lg := &heldLog{Log: ml, waiting: make(chan struct{}, 1)}
	reg := prometheus.NewRegistry()
	n := gapNode(t, st, lg, reg)

	acct := channelgroups.Account("gapacct")
	shard := channelgroups.ShardOf(acct, shards)
	key := channelgroups.GroupKey{Account: acct, Group: "g"}
	base := channelgroups.TimetokenOf(time.Now())
	edit := func(op channelgroups.Op, g channelgroups.Group, c channelgroups.Channel, at channelgroups.Timetoken) *channelgroups.Token {
		t.Helper()
		e := channelgroups.Edit{Account: acct, Group: g, Shard: shard, Op: op, Channels: []channelgroups.Channel{c}, At: at}
		if err := st.Write(t.Context(), e); err != nil {
			t.Fatal(err)
		}
		p, err := lg.Append(t.Context(), shard, subscriber.EncodeEdit(e))
		if err != nil {
			t.Fatal(err)
		}
		return &channelgroups.Token{Shard: shard, Positions: []channelgroups.RegionPosition{{Region: 1, Pos: p}}}
	}
	view := func(tok *channelgroups.Token) []channelgroups.Channel {
		t.Helper()
		v, err := n.View(t.Context(), key, tok, subscriber.AtLeastAsFresh)
		if err != nil {
			t.Fatal(err)
		}
		return v.Channels
	}

	tok := edit(channelgroups.OpAdd, "g", "a", base+10)
	if got := view(tok); !slices.Equal(got, []channelgroups.Channel{"a"}) {
		t.Fatalf("before the gap: %v, want [a]", got)
	}
	before := tok.Positions[0].Pos

	lg.hold(t)
	edit(channelgroups.OpRemove, "g", "a", base+20)
	tok = edit(channelgroups.OpAdd, "g", "b", base+30)
	var last *channelgroups.Token
	for i := range 10 { // other groups' edits push the two out of the log
		last = edit(channelgroups.OpAdd, "other", channelgroups.Channel(rune('k'+i)), base+40)
	}
	lg.release()
	// A token read of the last one waits (FreshWait is long) until the node
	// applied it: then the gap is behind it.
	if _, err := n.View(t.Context(), channelgroups.GroupKey{Account: acct, Group: "other"}, last, subscriber.AtLeastAsFresh); err != nil {
		t.Fatal(err)
	}
	if got, want := subscriber.Applied(n, shard), last.Positions[0].Pos; got.Less(want) {
		t.Fatalf("the node applied up to %v, not %v, within FreshWait", got, want)
	}

	if got := view(tok); !slices.Equal(got, []channelgroups.Channel{"b"}) {
		t.Fatalf("token read after the gap = %v; want [b], as storage holds: the cached view missed the trimmed edits", got)
	}
	if got := metrictest.Value(t, reg, "groupcast_log_gaps_total", "shard", strconv.Itoa(shard)); got != 1 {
		t.Fatalf("groupcast_log_gaps_total{shard=%d} = %v, want 1", shard, got)
	}

	// A poll from before the gap is answered with what came after it, and
	// told it crossed the gap; one from after it is not.
	poll := func(cursor channelgroups.Timetoken) subscriber.PollResult { return pollAcross(t, n, acct, cursor) }
	r := poll(subscriber.CursorOf(before))
	if !r.Gap || len(r.Deliveries) == 0 {
		t.Fatalf("poll from before the gap: %d deliveries, gap %v; want the message and gap true", len(r.Deliveries), r.Gap)
	}
	if r2 := poll(r.Cursor); r2.Gap || len(r2.Deliveries) != 1 {
		t.Fatalf("poll from after the gap: %d deliveries, gap %v; want one and gap false", len(r2.Deliveries), r2.Gap)
	}
	if got := metrictest.Value(t, reg, "groupcast_polls_across_gap_total"); got != 1 {
		t.Fatalf("groupcast_polls_across_gap_total = %v, want 1", got)
	}
}
