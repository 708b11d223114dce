package subscriber_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/groupcast/groupcast/archive"
	"github.com/groupcast/groupcast/channelgroups"
	"github.com/groupcast/groupcast/channelgroups/bolt"
	"github.com/groupcast/groupcast/internal/nodetest"
	"github.com/groupcast/groupcast/storagecache"
	"github.com/groupcast/groupcast/subscriber"
	"github.com/groupcast/groupcast/subscriber/memlog"
	"github.com/groupcast/groupcast/volatile"
)

// recording is an archive.Store that remembers every timetoken appended.
type recording struct {
	archive.Store
	mu       sync.Mutex
	appended []channelgroups.Timetoken
	fail     atomic.Int32 // Appends to fail before one succeeds
}

func (r *recording) Append(ctx context.Context, msgs []archive.Message) error {
	if r.fail.Load() > 0 {
		r.fail.Add(-1)
		return fmt.Errorf("injected: %w", channelgroups.ErrUnavailable)
	}
	r.mu.Lock()
	for _, m := range msgs {
		r.appended = append(r.appended, m.Timetoken)
	}
	r.mu.Unlock()
	return r.Store.Append(ctx, msgs)
}

func (r *recording) seen() []channelgroups.Timetoken {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.appended)
}

func stored(t *testing.T, st archive.Store, a channelgroups.Account, c channelgroups.Channel) []archive.Message {
	t.Helper()
	ms, _, err := st.Messages(t.Context(), archive.Query{Account: a, Channel: c, Max: archive.MaxQuery})
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

func put(t *testing.T, n *subscriber.Node, m *subscriber.Message) channelgroups.Timetoken {
	t.Helper()
	tt, err := n.Publish(t.Context(), m, nil)
	if err != nil {
		t.Fatal(err)
	}
	return tt
}

// TestArchiverStores: messages reach the store with their fields and
// expiry (the publish ttl, else the retention); signals and store=0
// messages do not; the checkpoint moves past them.
func TestArchiverStores(t *testing.T) {
	st := archive.NewMemory(nil)
	n, _ := node(t, openBolt(t), subscriber.Config{Shards: 2, Archive: st, HistoryRetention: 48 * time.Hour})
	a := channelgroups.Account("acct")
	t1 := put(t, n, &subscriber.Message{Account: a, Channel: "c", Payload: json.RawMessage(`{"n":1}`), Publisher: "u1",
		Meta: json.RawMessage(`{"m":true}`), CustomType: "chat"})
	put(t, n, &subscriber.Message{Account: a, Channel: "c", Payload: json.RawMessage(`"sig"`), Signal: true})
	put(t, n, &subscriber.Message{Account: a, Channel: "c", Payload: json.RawMessage(`"nostore"`), NoStore: true})
	t4 := put(t, n, &subscriber.Message{Account: a, Channel: "c", Payload: json.RawMessage(`4`), TTL: 3 * time.Hour})
	t5 := put(t, n, &subscriber.Message{Account: a, Channel: "c", Payload: json.RawMessage(`5`), TTL: -1})
	eventually(t, "three messages stored", func() bool { return len(stored(t, st, a, "c")) >= 3 })
	got := stored(t, st, a, "c")
	want := []archive.Message{
		{Account: a, Channel: "c", Timetoken: t1, Payload: json.RawMessage(`{"n":1}`), Publisher: "u1", Meta: json.RawMessage(`{"m":true}`),
			CustomType: "chat", Expires: time.UnixMilli(int64(subscriber.PositionOf(t1).Ms)).Add(48 * time.Hour)},
		{Account: a, Channel: "c", Timetoken: t4, Payload: json.RawMessage(`4`), Expires: time.UnixMilli(int64(subscriber.PositionOf(t4).Ms)).Add(3 * time.Hour)},
		{Account: a, Channel: "c", Timetoken: t5, Payload: json.RawMessage(`5`)},
	}
	if len(got) != len(want) {
		t.Fatalf("stored %d messages: %+v, want %d", len(got), got, len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Timetoken != w.Timetoken || string(g.Payload) != string(w.Payload) || g.Publisher != w.Publisher ||
			string(g.Meta) != string(w.Meta) || g.CustomType != w.CustomType || !g.Expires.Equal(w.Expires) {
			t.Errorf("stored[%d] = %+v, want %+v", i, g, w)
		}
	}
	shard := channelgroups.ShardOf(a, 2)
	eventually(t, "checkpoint past the last message", func() bool {
		c, err := st.Checkpoint(t.Context(), shard)
		return err == nil && !c.Less(subscriber.PositionOf(t5))
	})
}

// TestArchiverRetriesAndResumes: a failed Append is retried (the batch is
// stored, once the store is back); a node that takes over the shard starts
// at the checkpoint, so what was archived is not archived again, and what
// was not is.
func TestArchiverRetriesAndResumes(t *testing.T) {
	mem := archive.NewMemory(nil)
	rec := &recording{Store: mem}
	rec.fail.Store(2)
	lg, err := memlog.New(memlog.Config{Shards: 1})
	if err != nil {
		t.Fatal(err)
	}
	groups := openBolt(t)
	cfg := subscriber.Config{Shards: 1, Archive: rec}
	first, stop := runNode(t, lg, groups, cfg)
	a := channelgroups.Account("acct")
	var tts []channelgroups.Timetoken
	for i := range 5 {
		tts = append(tts, put(t, first, &subscriber.Message{Account: a, Channel: "c", Payload: json.RawMessage(fmt.Sprint(i))}))
	}
	eventually(t, "five stored", func() bool { return len(stored(t, mem, a, "c")) == 5 })
	stop() // the first node stops (and flushes; nothing is left)
	eventually(t, "checkpoint at the fifth", func() bool {
		c, _ := mem.Checkpoint(t.Context(), 0)
		return c == subscriber.PositionOf(tts[4])
	})
	second, _ := runNode(t, lg, groups, cfg)
	tts = append(tts, put(t, second, &subscriber.Message{Account: a, Channel: "c", Payload: json.RawMessage(`5`)}))
	eventually(t, "six stored", func() bool { return len(stored(t, mem, a, "c")) == 6 })
	if got := rec.seen(); !slices.Equal(got, tts) {
		t.Errorf("appended %v, want each of %v once", got, tts)
	}
}

// throughStore is an archive.Store with AppendThrough: Append then
// SetCheckpoints under one lock, counting the calls of each kind.
type throughStore struct {
	archive.Store
	mu                    sync.Mutex
	throughs, checkpoints int
}

func (s *throughStore) AppendThrough(ctx context.Context, msgs []archive.Message, cps map[int]channelgroups.Position) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.throughs++
	if err := s.Store.Append(ctx, msgs); err != nil {
		return err
	}
	for shard, c := range cps {
		if err := s.Store.SetCheckpoint(ctx, shard, c); err != nil {
			return err
		}
	}
	return nil
}

func (s *throughStore) SetCheckpoint(ctx context.Context, shard int, pos channelgroups.Position) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checkpoints++
	return s.Store.SetCheckpoint(ctx, shard, pos)
}

// TestArchiverCheckpointsWithTheBatch: with a store that takes a batch and
// the checkpoints in one write (archive.AppendThrougher), the archiver
// moves the checkpoint with the batch, never in a write of its own.
func TestArchiverCheckpointsWithTheBatch(t *testing.T) {
	mem := archive.NewMemory(nil)
	st := &throughStore{Store: mem}
	n, _ := node(t, openBolt(t), subscriber.Config{Shards: 1, Archive: st})
	a := channelgroups.Account("acct")
	var last channelgroups.Timetoken
	for i := range 20 {
		last = put(t, n, &subscriber.Message{Account: a, Channel: "c", Payload: json.RawMessage(fmt.Sprint(i))})
	}
	eventually(t, "checkpoint at the last message", func() bool {
		c, err := mem.Checkpoint(t.Context(), 0)
		return err == nil && c == subscriber.PositionOf(last)
	})
	if got := len(stored(t, mem, a, "c")); got != 20 {
		t.Fatalf("stored %d messages, want 20", got)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.throughs == 0 || st.checkpoints != 0 {
		t.Fatalf("%d batches with their checkpoints, %d checkpoints written alone; want all with the batches", st.throughs, st.checkpoints)
	}
}

// runNode runs a node over lg until stop (or the test's end).
func runNode(t *testing.T, lg subscriber.Log, groups subscriber.Store, cfg subscriber.Config) (n *subscriber.Node, stop func()) {
	t.Helper()
	cache, err := storagecache.New(groups, storagecache.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cache.Close)
	ov, err := volatile.New(volatile.Config{OnEvict: cache.Invalidate})
	if err != nil {
		t.Fatal(err)
	}
	if n, err = subscriber.NewNode(lg, groups, cache, ov, channelgroups.NewClock(nil, 0), cfg); err != nil {
		t.Fatal(err)
	}
	if err := n.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- n.Run(ctx) }()
	var once sync.Once
	stop = func() { once.Do(func() { n.ReleasePolls(); cancel(); <-done }) }
	t.Cleanup(stop)
	return n, stop
}

// TestArchiverGap: entries the log dropped before the archiver read them
// are counted as a gap; what follows is stored.
func TestArchiverGap(t *testing.T) {
	mem := archive.NewMemory(nil)
	lg, err := memlog.New(memlog.Config{Shards: 1, MaxLen: 10})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	a := channelgroups.Account("acct")
	cfg := subscriber.Config{Shards: 1, Archive: mem, Registerer: reg}
	var tts []channelgroups.Timetoken
	nodetest.Run(t, lg, openBolt(t), channelgroups.NewClock(nil, 0), cfg, func(n *subscriber.Node) {
		for i := range 30 { // before the node runs: the log keeps the last 10
			tts = append(tts, put(t, n, &subscriber.Message{Account: a, Channel: "c", Payload: json.RawMessage(fmt.Sprint(i))}))
		}
	})
	eventually(t, "the last ten stored", func() bool { return len(stored(t, mem, a, "c")) == 10 })
	var got []channelgroups.Timetoken
	for _, m := range stored(t, mem, a, "c") {
		got = append(got, m.Timetoken)
	}
	if !slices.Equal(got, tts[20:]) {
		t.Errorf("stored %v, want %v", got, tts[20:])
	}
	if g := counter(t, reg, "groupcast_archive_gaps_total"); g != 1 {
		t.Errorf("gaps = %v, want 1", g)
	}
}

// counter returns the value of the counter called name in reg.
func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// TestHistoryMergesStoreAndRings: history pages through what only the
// store holds (published before the node started) and what the rings hold,
// every message once, in order, both ways; counts and deletes cover both.
func TestHistoryMergesStoreAndRings(t *testing.T) {
	mem := archive.NewMemory(nil)
	a, c := channelgroups.Account("acct"), channelgroups.Channel("c")
	base := channelgroups.TimetokenOf(time.Now().Add(-time.Hour))
	var want []channelgroups.Timetoken
	var old []archive.Message
	for i := range 250 {
		tt := base + channelgroups.Timetoken(i*10000)
		old = append(old, archive.Message{Account: a, Channel: c, Timetoken: tt, Payload: json.RawMessage(fmt.Sprint(i))})
		want = append(want, tt)
	}
	if err := mem.Append(t.Context(), old); err != nil {
		t.Fatal(err)
	}
	// A store the archiver cannot write: the new messages are only in the
	// rings.
	n, _ := node(t, openBolt(t), subscriber.Config{Shards: 1, Archive: readOnly{mem}})
	for i := range 30 {
		want = append(want, put(t, n, &subscriber.Message{Account: a, Channel: c, Payload: json.RawMessage(fmt.Sprint(1000 + i))}))
	}
	eventually(t, "the rings hold the new messages", func() bool {
		ms, _ := n.History(t.Context(), a, c, 0, 0, 30)
		return len(ms) == 30 && ms[29].Timetoken() == want[len(want)-1]
	})
	for _, reverse := range []bool{false, true} {
		t.Run(fmt.Sprint("reverse=", reverse), func(t *testing.T) {
			var got []channelgroups.Timetoken
			q := archive.Query{Account: a, Channel: c, Max: 7, Reverse: reverse}
			for range 100 {
				ms, more, err := n.HistoryPage(t.Context(), q)
				if err != nil {
					t.Fatal(err)
				}
				var page []channelgroups.Timetoken
				for _, m := range ms {
					page = append(page, m.Timetoken())
				}
				if reverse {
					got = append(got, page...)
				} else {
					got = append(page, got...)
				}
				if !more {
					break
				}
				if len(page) == 0 {
					t.Fatalf("an empty page with more (query %+v)", q)
				}
				if reverse {
					q.End = page[len(page)-1] + 1
				} else {
					q.Start = page[0]
				}
			}
			if !slices.Equal(got, want) {
				t.Errorf("paged %d messages, want %d in order (first difference near %d)", len(got), len(want), firstDiff(got, want))
			}
		})
	}
	if cnt, err := n.MessageCount(t.Context(), a, c, want[239]); err != nil || cnt != 40 {
		t.Errorf("count after the 240th = %d, %v; want 40", cnt, err)
	}
	// Delete from the 246th stored to the 5th new one.
	if err := n.DeleteHistory(t.Context(), a, c, want[254]+1, want[245]); err != nil {
		t.Fatal(err)
	}
	ms, err := n.History(t.Context(), a, c, 0, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []channelgroups.Timetoken
	for _, m := range ms {
		got = append(got, m.Timetoken())
	}
	rest := append(slices.Clone(want[:245]), want[255:]...)
	if w := rest[len(rest)-100:]; !slices.Equal(got, w) {
		t.Errorf("after the delete: %v\nwant %v", got, w)
	}
	if cnt, err := n.MessageCount(t.Context(), a, c, want[239]); err != nil || cnt != 30 {
		t.Errorf("count after the 240th, after the delete = %d, %v; want 30", cnt, err)
	}
}

func firstDiff(a, b []channelgroups.Timetoken) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// readOnly is a store whose Appends fail: nothing reaches it from the log.
type readOnly struct{ archive.Store }

func (readOnly) Append(context.Context, []archive.Message) error {
	return errors.New("read-only store")
}

// TestHistoryTTL: a message past its ttl is gone from history, from the
// store and from the rings (bbolt, on an injected clock).
func TestHistoryTTL(t *testing.T) {
	var skew atomic.Int64
	now := func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	st, err := bolt.Open(filepath.Join(t.TempDir(), "h.db"), bolt.Config{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	n, _ := node(t, st, subscriber.Config{Shards: 1, Archive: st, Now: now, RingAge: 24 * time.Hour})
	a, c := channelgroups.Account("acct"), channelgroups.Channel("c")
	short := put(t, n, &subscriber.Message{Account: a, Channel: c, Payload: json.RawMessage(`"1h"`), TTL: time.Hour})
	long := put(t, n, &subscriber.Message{Account: a, Channel: c, Payload: json.RawMessage(`"default"`)})
	eventually(t, "both stored", func() bool { return len(stored(t, st, a, c)) == 2 })
	skew.Store(int64(2 * time.Hour))
	ms, err := n.History(t.Context(), a, c, 0, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 || ms[0].Timetoken() != long {
		t.Errorf("history two hours later: %d messages, want only %s (not %s)", len(ms), long, short)
	}
	if got := stored(t, st, a, c); len(got) != 1 {
		t.Errorf("the store still serves %d messages, want 1", len(got))
	}
}

// gatedStore holds the archiver's writes until a history read asks for
// the checkpoint (once armed): the archive is behind the rings exactly
// while the read runs.
type gatedStore struct {
	archive.Store
	armed atomic.Bool
	open  chan struct{}
	once  sync.Once
}

func (g *gatedStore) Append(ctx context.Context, msgs []archive.Message) error {
	select {
	case <-g.open:
	case <-ctx.Done():
		return ctx.Err()
	}
	return g.Store.Append(ctx, msgs)
}

func (g *gatedStore) Checkpoint(ctx context.Context, shard int) (channelgroups.Position, error) {
	if g.armed.Load() {
		g.once.Do(func() { close(g.open) })
	}
	return g.Store.Checkpoint(ctx, shard)
}

// TestHistoryAfterABurst: a burst pushes messages out of a channel's ring
// (RingSize) before the archiver stored them; history must not skip them:
// it waits for the archive to hold what the rings dropped. The official
// SDKs' paging checks caught the skip (messages 139–159 of 260 missing).
func TestHistoryAfterABurst(t *testing.T) {
	g := &gatedStore{Store: archive.NewMemory(nil), open: make(chan struct{})}
	n, _ := node(t, openBolt(t), subscriber.Config{Shards: 1, RingSize: 10, Archive: g})
	a, c := channelgroups.Account("acct"), channelgroups.Channel("c")
	var want []channelgroups.Timetoken
	for i := range 30 {
		want = append(want, put(t, n, &subscriber.Message{Account: a, Channel: c, Payload: json.RawMessage(fmt.Sprint(i))}))
	}
	eventually(t, "the burst applied", func() bool {
		hs, err := n.Poll(t.Context(), subscriber.PollRequest{Account: a, Channels: []channelgroups.Channel{c}})
		return err == nil && hs.Cursor >= want[len(want)-1]
	})
	g.armed.Store(true)
	ms, more, err := n.HistoryPage(t.Context(), archive.Query{Account: a, Channel: c, Max: 100})
	if err != nil {
		t.Fatal(err)
	}
	var got []channelgroups.Timetoken
	for _, m := range ms {
		got = append(got, m.Timetoken())
	}
	if !slices.Equal(got, want) || more {
		t.Fatalf("history after a burst: %d messages (more %v), want all %d:\n got %v\nwant %v", len(got), more, len(want), got, want)
	}
}

// batchSizes is an archive.Store that records the payload bytes of each
// Append.
type batchSizes struct {
	archive.Store
	mu    sync.Mutex
	sizes []int
}

func (b *batchSizes) Append(ctx context.Context, msgs []archive.Message) error {
	n := 0
	for _, m := range msgs {
		n += len(m.Payload) + len(m.Meta)
	}
	b.mu.Lock()
	b.sizes = append(b.sizes, n)
	b.mu.Unlock()
	return b.Store.Append(ctx, msgs)
}

// TestArchiverBatchBytes: a burst of large messages is stored in batches of
// at most ArchiveBatchBytes (plus the message that crossed it), not in
// ArchiveBatch-message batches of 16 MiB held twice while written.
func TestArchiverBatchBytes(t *testing.T) {
	st := &batchSizes{Store: archive.NewMemory(nil)}
	n, _ := node(t, openBolt(t), subscriber.Config{Shards: 1, Archive: st, ArchiveFlush: time.Hour})
	a, c := channelgroups.Account("acct"), channelgroups.Channel("c")
	payload := json.RawMessage(`"` + strings.Repeat("x", 30<<10) + `"`)
	const burst = 400 // 12 MiB: three batches' worth
	for range burst {
		put(t, n, &subscriber.Message{Account: a, Channel: c, Payload: payload})
	}
	// The flush timer is an hour away: only a full batch is stored before
	// it, and without the byte bound none is (400 is below ArchiveBatch).
	eventually(t, "two full batches stored", func() bool {
		st.mu.Lock()
		defer st.mu.Unlock()
		total := 0
		for _, s := range st.sizes {
			total += s
		}
		return total >= 2*subscriber.ArchiveBatchBytes
	})
	st.mu.Lock()
	defer st.mu.Unlock()
	for i, s := range st.sizes {
		if s > subscriber.ArchiveBatchBytes+len(payload) {
			t.Errorf("batch %d of %d: %d bytes, want at most %d", i, len(st.sizes), s, subscriber.ArchiveBatchBytes+len(payload))
		}
	}
}

// TestHistoryFollowsOwnPublish: a history read on the node that
// acknowledged a publish has the message, though the node's consumer had
// not applied it yet when the read came (it is held before the apply
// here). Without the wait the read answered at once without it (the
// Python SDK's "publish, then fetch" saw an empty history now and then).
func TestHistoryFollowsOwnPublish(t *testing.T) {
	var armed atomic.Bool
	release := make(chan struct{})
	var once sync.Once
	releaseApplies := func() { once.Do(func() { armed.Store(false); close(release) }) }
	n, _ := nodetest.NodeWith(t, openBolt(t), subscriber.Config{Shards: 1, FreshWait: time.Minute}, func(n *subscriber.Node) {
		subscriber.SetBeforeApply(n, func(channelgroups.Position) {
			if armed.Load() {
				<-release
			}
		})
	})
	t.Cleanup(releaseApplies) // registered after the node's: runs before its stop
	a, c := channelgroups.Account("acct"), channelgroups.Channel("c")
	armed.Store(true)
	tt := put(t, n, &subscriber.Message{Account: a, Channel: c, Payload: json.RawMessage(`"m"`)})
	type result struct {
		ms  []*subscriber.Message
		err error
	}
	done := make(chan result, 1)
	go func() {
		ms, err := n.History(context.Background(), a, c, 0, 0, 10)
		done <- result{ms, err}
	}()
	select {
	case r := <-done:
		t.Fatalf("history answered while the acknowledged publish was not applied: %d messages, %v", len(r.ms), r.err)
	case <-time.After(200 * time.Millisecond): // a read that does not wait answers well within this
	}
	releaseApplies()
	r := <-done
	if r.err != nil || len(r.ms) != 1 || r.ms[0].Timetoken() != tt {
		t.Fatalf("history after the apply: %d messages, %v; want the one published (%d)", len(r.ms), r.err, tt)
	}
}
