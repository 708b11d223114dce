// Package logtest is the conformance suite every subscriber.Log must pass;
// it runs against the in-process log and against a real Redis.
package logtest

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/groupcast/groupcast/channelgroups"
	"github.com/groupcast/groupcast/subscriber"
)

// Run runs the suite. newLog returns an empty log with the given number of
// shards, private to the calling test, that keeps at least maxLen entries
// per shard (zero: its default) and drops older ones.
func Run(t *testing.T, newLog func(t *testing.T, shards, maxLen int) subscriber.Log) {
	t.Run("AppendOrder", func(t *testing.T) { t.Parallel(); testAppendOrder(t, newLog(t, 4, 0)) })
	t.Run("ReadAfterCursor", func(t *testing.T) { t.Parallel(); testReadAfterCursor(t, newLog(t, 4, 0)) })
	t.Run("ReadWaitsForAppend", func(t *testing.T) { t.Parallel(); testReadWaits(t, newLog(t, 4, 0)) })
	t.Run("ReadTimesOut", func(t *testing.T) { t.Parallel(); testReadTimesOut(t, newLog(t, 4, 0)) })
	t.Run("ConcurrentAppends", func(t *testing.T) { t.Parallel(); testConcurrentAppends(t, newLog(t, 2, 0)) })
	t.Run("BadShard", func(t *testing.T) { t.Parallel(); testBadShard(t, newLog(t, 2, 0)) })
	t.Run("Range", func(t *testing.T) { t.Parallel(); testRange(t, newLog(t, 2, 0)) })
	t.Run("ReadSubset", func(t *testing.T) { t.Parallel(); testReadSubset(t, newLog(t, 4, 0)) })
	t.Run("GapAfterTrim", func(t *testing.T) { t.Parallel(); testGapAfterTrim(t, newLog(t, 4, 10)) })
	t.Run("NoGapKeepingUp", func(t *testing.T) { t.Parallel(); testNoGapKeepingUp(t, newLog(t, 2, 10)) })
	t.Run("ReplicaAppendsOnce", func(t *testing.T) { t.Parallel(); testReplicaAppendsOnce(t, newLog(t, 2, 0)) })
	t.Run("ReplicaExactOrder", func(t *testing.T) { t.Parallel(); testReplicaExactOrder(t, newLog(t, 1, 0)) })
	t.Run("ReplicaMarksIndependent", func(t *testing.T) { t.Parallel(); testReplicaMarksIndependent(t, newLog(t, 3, 0)) })
	t.Run("ConcurrentReplicas", func(t *testing.T) { t.Parallel(); testConcurrentReplicas(t, newLog(t, 1, 0)) })
	t.Run("ReplicaInterleaves", func(t *testing.T) { t.Parallel(); testReplicaInterleaves(t, newLog(t, 2, 0)) })
	t.Run("ReplicaGapAfterTrim", func(t *testing.T) { t.Parallel(); testReplicaGapAfterTrim(t, newLog(t, 2, 10)) })
}

func appendN(t *testing.T, l subscriber.Log, shard, n int, prefix string) []channelgroups.Position {
	t.Helper()
	var out []channelgroups.Position
	for i := range n {
		p, err := l.Append(t.Context(), shard, fmt.Appendf(nil, "%s%d", prefix, i))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

// every returns a cursor for each shard, after the given positions.
func every(after []channelgroups.Position) []subscriber.Cursor {
	out := make([]subscriber.Cursor, len(after))
	for i, p := range after {
		out[i] = subscriber.Cursor{Shard: i, After: p}
	}
	return out
}

// readAll reads until it has want entries, failing after a deadline.
func readAll(t *testing.T, l subscriber.Log, cursors []channelgroups.Position, want int) []subscriber.LogEntry {
	t.Helper()
	var out []subscriber.LogEntry
	deadline := time.Now().Add(10 * time.Second)
	cur := append([]channelgroups.Position(nil), cursors...)
	for len(out) < want {
		if time.Now().After(deadline) {
			t.Fatalf("read %d of %d entries before the deadline", len(out), want)
		}
		es, err := l.Read(t.Context(), every(cur), 100, 100*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			cur[e.Shard] = e.Pos
		}
		out = append(out, es...)
	}
	return out
}

func testAppendOrder(t *testing.T, l subscriber.Log) {
	ps := appendN(t, l, 1, 50, "m")
	for i := 1; i < len(ps); i++ {
		if !ps[i-1].Less(ps[i]) {
			t.Fatalf("position %d (%v) not after %d (%v)", i, ps[i], i-1, ps[i-1])
		}
	}
	last, err := l.Last(t.Context(), 1)
	if err != nil || last != ps[len(ps)-1] {
		t.Fatalf("Last = %v, %v; want %v", last, err, ps[len(ps)-1])
	}
	if empty, err := l.Last(t.Context(), 0); err != nil || !empty.IsZero() {
		t.Fatalf("Last of an empty shard = %v, %v", empty, err)
	}
	es := readAll(t, l, make([]channelgroups.Position, 4), 50)
	for i, e := range es {
		if e.Shard != 1 || e.Pos != ps[i] || string(e.Data) != fmt.Sprintf("m%d", i) {
			t.Fatalf("entry %d = %+v, want shard 1 %v m%d", i, e, ps[i], i)
		}
	}
}

func testReadAfterCursor(t *testing.T, l subscriber.Log) {
	a := appendN(t, l, 0, 5, "a")
	b := appendN(t, l, 3, 3, "b")
	cursors := make([]channelgroups.Position, 4)
	cursors[0] = a[2]
	cursors[3] = b[2] // nothing after it
	es := readAll(t, l, cursors, 2)
	if len(es) != 2 || es[0].Pos != a[3] || es[1].Pos != a[4] || string(es[1].Data) != "a4" {
		t.Fatalf("after cursor: %+v", es)
	}
}

func testReadWaits(t *testing.T, l subscriber.Log) {
	got := make(chan []subscriber.LogEntry, 1)
	errs := make(chan error, 1)
	go func() {
		es, err := l.Read(t.Context(), every(make([]channelgroups.Position, 4)), 10, 10*time.Second)
		errs <- err
		got <- es
	}()
	// Appends until the blocked reader returns: it must see the first one
	// that lands after it started, long before its 10 s block ends.
	start := time.Now()
	for i := 0; ; i++ {
		appendN(t, l, 2, 1, fmt.Sprint("w", i))
		select {
		case err := <-errs:
			es := <-got
			if err != nil || len(es) == 0 || es[0].Shard != 2 {
				t.Fatalf("blocked Read returned %+v, %v", es, err)
			}
			if time.Since(start) > 5*time.Second {
				t.Fatalf("blocked Read took %v to see an append", time.Since(start))
			}
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func testReadTimesOut(t *testing.T, l subscriber.Log) {
	es, err := l.Read(t.Context(), every(make([]channelgroups.Position, 4)), 10, 50*time.Millisecond)
	if err != nil || len(es) != 0 {
		t.Fatalf("Read of empty logs = %+v, %v; want nothing", es, err)
	}
}

func testConcurrentAppends(t *testing.T, l subscriber.Log) {
	const writers, each = 8, 25
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				if _, err := l.Append(t.Context(), w%2, fmt.Appendf(nil, "%d-%d", w, i)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	es := readAll(t, l, make([]channelgroups.Position, 2), writers*each)
	seen := map[string]bool{}
	last := make([]channelgroups.Position, 2)
	for _, e := range es {
		if seen[string(e.Data)] {
			t.Fatalf("%s read twice", e.Data)
		}
		seen[string(e.Data)] = true
		if !last[e.Shard].Less(e.Pos) {
			t.Fatalf("shard %d out of order: %v after %v", e.Shard, e.Pos, last[e.Shard])
		}
		last[e.Shard] = e.Pos
	}
	if len(seen) != writers*each {
		t.Fatalf("read %d distinct entries, want %d", len(seen), writers*each)
	}
}

func testBadShard(t *testing.T, l subscriber.Log) {
	if _, err := l.Append(t.Context(), 2, []byte("x")); err == nil {
		t.Fatal("Append to shard 2 of 2 succeeded")
	}
	if _, err := l.Read(t.Context(), []subscriber.Cursor{{Shard: 2}}, 1, time.Millisecond); err == nil {
		t.Fatal("Read of shard 2 of 2 succeeded")
	}
	one := channelgroups.Position{Ms: 1}
	if _, _, err := l.AppendReplica(t.Context(), 2, 2, one, []byte("x")); err == nil {
		t.Fatal("AppendReplica to shard 2 of 2 succeeded")
	}
	if _, err := l.Replicated(t.Context(), 2); err == nil {
		t.Fatal("Replicated of shard 2 of 2 succeeded")
	}
	if _, _, err := l.AppendReplica(t.Context(), 0, 0, one, []byte("x")); err == nil {
		t.Fatal("AppendReplica from region 0 succeeded")
	}
	if _, _, err := l.AppendReplica(t.Context(), 0, 2, channelgroups.Position{}, []byte("x")); err == nil {
		t.Fatal("AppendReplica at origin 0-0 (before every entry) succeeded")
	}
	if es, _ := l.Range(t.Context(), 0, channelgroups.Position{}, 10); len(es) != 0 {
		t.Fatalf("shard 0 holds %+v after refused appends", es)
	}
}

// testReadSubset: a reader that names some shards gets only their entries.
func testReadSubset(t *testing.T, l subscriber.Log) {
	appendN(t, l, 0, 3, "zero")
	two := appendN(t, l, 2, 2, "two")
	es, err := l.Read(t.Context(), []subscriber.Cursor{{Shard: 2}, {Shard: 3}}, 100, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 2 || es[0].Shard != 2 || es[0].Pos != two[0] || es[1].Pos != two[1] {
		t.Fatalf("Read of shards 2 and 3 = %+v, want the two entries of shard 2 only", es)
	}
}

func testRange(t *testing.T, l subscriber.Log) {
	ps := appendN(t, l, 1, 10, "r")
	appendN(t, l, 0, 3, "other")
	got, err := l.Range(t.Context(), 1, ps[3], 4)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 || got[0].Pos != ps[4] || got[3].Pos != ps[7] || string(got[0].Data) != "r4" {
		t.Fatalf("Range after %v = %+v", ps[3], got)
	}
	all, err := l.Range(t.Context(), 1, channelgroups.Position{}, 100)
	if err != nil || len(all) != 10 {
		t.Fatalf("Range from the start: %d entries, %v", len(all), err)
	}
	none, err := l.Range(t.Context(), 1, ps[9], 100)
	if err != nil || len(none) != 0 {
		t.Fatalf("Range after the end: %+v, %v", none, err)
	}
}

// trimmedPast appends to shard until the log has dropped the entries after
// cursor (Range from it starts with a gap), and returns every position
// appended.
func trimmedPast(t *testing.T, l subscriber.Log, shard int, cursor channelgroups.Position, ps []channelgroups.Position) []channelgroups.Position {
	t.Helper()
	return trimmedPastBy(t, l, shard, cursor, ps, func(prefix string) []channelgroups.Position {
		return appendN(t, l, shard, 50, prefix)
	})
}

// trimmedPastBy is trimmedPast with add appending 50 records.
func trimmedPastBy(t *testing.T, l subscriber.Log, shard int, cursor channelgroups.Position, ps []channelgroups.Position, add func(prefix string) []channelgroups.Position) []channelgroups.Position {
	t.Helper()
	for i := 0; ; i++ {
		if i == 100 {
			t.Fatalf("Range from %v reports no gap after %d appends to a log that keeps 10 entries", cursor, len(ps))
		}
		ps = append(ps, add(fmt.Sprintf("new%d-", i))...)
		es, err := l.Range(t.Context(), shard, cursor, 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(es) > 0 && es[0].Gap {
			return ps
		}
	}
}

// checkGap checks that es (one shard's entries after cursor) is a gap
// entry naming exactly the newest position lost, followed by every
// appended entry after it.
func checkGap(t *testing.T, what string, es []subscriber.LogEntry, shard int, cursor channelgroups.Position, ps []channelgroups.Position) {
	t.Helper()
	if len(es) < 2 || !es[0].Gap || es[0].Shard != shard || es[0].Data != nil {
		t.Fatalf("%s: got %d entries starting %+v; want a gap entry of shard %d, then records", what, len(es), es[0], shard)
	}
	k := slices.Index(ps, es[1].Pos)
	if k < 1 {
		t.Fatalf("%s: first record after the gap at %v, not an appended position", what, es[1].Pos)
	}
	if es[0].Pos != ps[k-1] || !cursor.Less(es[0].Pos) {
		t.Fatalf("%s: gap through %v; want %v, the position before the first record kept (cursor %v)", what, es[0].Pos, ps[k-1], cursor)
	}
	for i, e := range es[1:] {
		if e.Gap || e.Shard != shard || k+i >= len(ps) || e.Pos != ps[k+i] {
			t.Fatalf("%s: entry %d after the gap = %+v; want the record at %v", what, i, e, ps[min(k+i, len(ps)-1)])
		}
	}
	if k+len(es)-1 != len(ps) {
		t.Fatalf("%s: %d records after the gap; want the %d kept", what, len(es)-1, len(ps)-k)
	}
}

// testGapAfterTrim: a reader whose cursor the log trimmed past gets a gap
// entry, exact both ways: it names the newest position lost, and readers
// the trimming did not pass (at the gap's end, after it, at the tail) get
// none.
func testGapAfterTrim(t *testing.T, l subscriber.Log) {
	ps := appendN(t, l, 1, 5, "old")
	cursor := ps[2]
	ps = trimmedPast(t, l, 1, cursor, ps)
	appendN(t, l, 3, 2, "other")

	es, err := l.Read(t.Context(), []subscriber.Cursor{{Shard: 1, After: cursor}, {Shard: 0}}, 10_000, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	checkGap(t, "Read", es, 1, cursor, ps)
	got, err := l.Range(t.Context(), 1, cursor, 10_000)
	if err != nil {
		t.Fatal(err)
	}
	checkGap(t, "Range", got, 1, cursor, ps)
	fromStart, err := l.Range(t.Context(), 1, channelgroups.Position{}, 10_000)
	if err != nil {
		t.Fatal(err)
	}
	checkGap(t, "Range from the start", fromStart, 1, channelgroups.Position{}, ps)

	// A reader at the gap's end lost nothing, nor does one further on.
	gapEnd, first := es[0].Pos, es[1].Pos
	for _, c := range []channelgroups.Position{gapEnd, first} {
		es, err := l.Read(t.Context(), []subscriber.Cursor{{Shard: 1, After: c}, {Shard: 3}}, 10_000, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			if e.Gap {
				t.Fatalf("Read after %v (the log keeps everything after it) reported a gap: %+v", c, e)
			}
		}
		if want := len(ps) - slices.Index(ps, c) - 1 + 2; len(es) != want {
			t.Fatalf("Read after %v: %d entries, want %d", c, len(es), want)
		}
	}
	tail, err := l.Read(t.Context(), []subscriber.Cursor{{Shard: 1, After: ps[len(ps)-1]}}, 10, 50*time.Millisecond)
	if err != nil || len(tail) != 0 {
		t.Fatalf("Read at the tail = %+v, %v; want nothing", tail, err)
	}
}

// testNoGapKeepingUp: a reader that keeps up with a log trimming all the
// time never sees a gap.
func testNoGapKeepingUp(t *testing.T, l subscriber.Log) {
	var cur channelgroups.Position
	for i := range 300 {
		p := appendN(t, l, 1, 1, fmt.Sprint("k", i))[0]
		es, err := l.Read(t.Context(), []subscriber.Cursor{{Shard: 1, After: cur}}, 10, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if len(es) != 1 || es[0].Gap || es[0].Pos != p {
			t.Fatalf("append %d: Read after %v = %+v; want just the record at %v", i, cur, es, p)
		}
		cur = p
	}
}

// replicate calls AppendReplica and fails the test on an error; it checks
// that a refused copy reports no position.
func replicate(t *testing.T, l subscriber.Log, shard, region int, origin channelgroups.Position, rec string) (channelgroups.Position, bool) {
	t.Helper()
	p, ok, err := l.AppendReplica(t.Context(), shard, region, origin, []byte(rec))
	if err != nil {
		t.Fatalf("AppendReplica(shard %d, region %d, %v): %v", shard, region, origin, err)
	}
	if !ok && !p.IsZero() {
		t.Fatalf("AppendReplica(shard %d, region %d, %v) appended nothing but returned position %v", shard, region, origin, p)
	}
	return p, ok
}

// replicateN copies n entries of region, at origins 1-0, 2-0, ... (after
// from), and returns their local positions.
func replicateN(t *testing.T, l subscriber.Log, shard, region int, from uint64, n int, prefix string) []channelgroups.Position {
	t.Helper()
	var out []channelgroups.Position
	for i := range n {
		origin := channelgroups.Position{Ms: from + uint64(i) + 1}
		p, ok := replicate(t, l, shard, region, origin, fmt.Sprintf("%s%d", prefix, i))
		if !ok {
			t.Fatalf("AppendReplica of region %d at %v, after the newest copied, appended nothing", region, origin)
		}
		out = append(out, p)
	}
	return out
}

func checkReplicated(t *testing.T, l subscriber.Log, shard int, want map[int]channelgroups.Position) {
	t.Helper()
	got, err := l.Replicated(t.Context(), shard)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) || !maps.Equal(got, want) {
		t.Fatalf("Replicated(%d) = %v, want %v", shard, got, want)
	}
}

// checkShard checks that shard's log holds exactly the records data, in
// that order, at positions ps, through both Range and Read.
func checkShard(t *testing.T, l subscriber.Log, shard int, ps []channelgroups.Position, data []string) {
	t.Helper()
	got, err := l.Range(t.Context(), shard, channelgroups.Position{}, 1000)
	if err != nil {
		t.Fatal(err)
	}
	read, err := l.Read(t.Context(), []subscriber.Cursor{{Shard: shard}}, 1000, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for what, es := range map[string][]subscriber.LogEntry{"Range": got, "Read": read} {
		if len(es) != len(data) {
			t.Fatalf("%s of shard %d: %d entries, want %d: %+v", what, shard, len(es), len(data), es)
		}
		for i, e := range es {
			if e.Gap || e.Shard != shard || e.Pos != ps[i] || string(e.Data) != data[i] {
				t.Fatalf("%s of shard %d: entry %d = %+v, want %q at %v", what, shard, i, e, data[i], ps[i])
			}
		}
	}
	last, err := l.Last(t.Context(), shard)
	if want := ps[len(ps)-1]; err != nil || last != want {
		t.Fatalf("Last(%d) = %v, %v; want %v", shard, last, err, want)
	}
}

// testReplicaAppendsOnce: copies append at increasing local positions; a
// copy of an origin at or before the newest copied from its region appends
// nothing and leaves the log as it was.
func testReplicaAppendsOnce(t *testing.T, l subscriber.Log) {
	const shard, region = 1, 2
	ps := replicateN(t, l, shard, region, 0, 3, "c")
	for i := 1; i < len(ps); i++ {
		if !ps[i-1].Less(ps[i]) {
			t.Fatalf("copy %d at %v, not after copy %d at %v", i, ps[i], i-1, ps[i-1])
		}
	}
	data := []string{"c0", "c1", "c2"}
	checkShard(t, l, shard, ps, data)
	newest := channelgroups.Position{Ms: 3}
	checkReplicated(t, l, shard, map[int]channelgroups.Position{region: newest})
	for _, origin := range []channelgroups.Position{newest, {Ms: 2}, {Ms: 1}, {Ms: 2, Seq: 7}} {
		if p, ok := replicate(t, l, shard, region, origin, "again"); ok {
			t.Fatalf("AppendReplica at %v after copying through %v: appended twice, at %v", origin, newest, p)
		}
	}
	checkShard(t, l, shard, ps, data)
	checkReplicated(t, l, shard, map[int]channelgroups.Position{region: newest})
	// The next origin, by sequence within the same millisecond.
	p, ok := replicate(t, l, shard, region, channelgroups.Position{Ms: 3, Seq: 1}, "c3")
	if !ok || !ps[2].Less(p) {
		t.Fatalf("AppendReplica at 3-1 after 3-0 = %v, %v; want appended after %v", p, ok, ps[2])
	}
	checkShard(t, l, shard, append(ps, p), append(data, "c3"))
	checkReplicated(t, l, shard, map[int]channelgroups.Position{region: {Ms: 3, Seq: 1}})
	if es, _ := l.Range(t.Context(), 0, channelgroups.Position{}, 10); len(es) != 0 {
		t.Fatalf("shard 0 holds %+v; copies went to shard 1 only", es)
	}
}

// testReplicaExactOrder: origins are compared exactly, as uint64 pairs,
// whatever their size: never through floating point (exact only to 2^53)
// or as strings (where "999" > "1000").
func testReplicaExactOrder(t *testing.T, l subscriber.Log) {
	const big = 1 << 53
	for i, tc := range []struct {
		origin channelgroups.Position
		want   bool
	}{
		{channelgroups.Position{Ms: 999, Seq: 7}, true},
		{channelgroups.Position{Ms: 1000}, true},
		{channelgroups.Position{Ms: 999, Seq: 8}, false},
		{channelgroups.Position{Ms: big + 1}, true},
		{channelgroups.Position{Ms: big, Seq: 5}, false}, // as doubles big+1 == big
		{channelgroups.Position{Ms: big + 1, Seq: 1}, true},
		{channelgroups.Position{Ms: big + 2, Seq: math.MaxUint64 - 1}, true},
		{channelgroups.Position{Ms: big + 2, Seq: math.MaxUint64 - 2}, false},
		{channelgroups.Position{Ms: big + 2, Seq: math.MaxUint64}, true},
		{channelgroups.Position{Ms: big + 2, Seq: math.MaxUint64}, false},
		{channelgroups.Position{Ms: math.MaxUint64, Seq: 0}, true},
		{channelgroups.Position{Ms: math.MaxUint64 - 1, Seq: math.MaxUint64}, false},
	} {
		if _, ok := replicate(t, l, 0, 2, tc.origin, fmt.Sprint("e", i)); ok != tc.want {
			t.Fatalf("step %d: AppendReplica at %v appended %v, want %v", i, tc.origin, ok, tc.want)
		}
	}
	checkReplicated(t, l, 0, map[int]channelgroups.Position{2: {Ms: math.MaxUint64}})
}

// testReplicaMarksIndependent: each (shard, region) has its own mark.
func testReplicaMarksIndependent(t *testing.T, l subscriber.Log) {
	at := func(ms uint64) channelgroups.Position { return channelgroups.Position{Ms: ms} }
	checkReplicated(t, l, 0, nil)
	for i, tc := range []struct {
		shard, region int
		origin        uint64
		want          bool
	}{
		{0, 2, 10, true},
		{1, 2, 10, true},  // another shard, same region and origin
		{0, 3, 10, true},  // another region, same shard and origin
		{0, 3, 5, false},  // older than region 3's mark
		{0, 2, 10, false}, // region 2 of shard 0 is still at 10
		{1, 3, 1, true},   // region 3's mark of shard 0 does not hold in shard 1
		{0, 2, 11, true},
	} {
		if _, ok := replicate(t, l, tc.shard, tc.region, at(tc.origin), fmt.Sprint("e", i)); ok != tc.want {
			t.Fatalf("step %d: AppendReplica(shard %d, region %d, %v) appended %v, want %v", i, tc.shard, tc.region, at(tc.origin), ok, tc.want)
		}
	}
	checkReplicated(t, l, 0, map[int]channelgroups.Position{2: at(11), 3: at(10)})
	checkReplicated(t, l, 1, map[int]channelgroups.Position{2: at(10), 3: at(1)})
	checkReplicated(t, l, 2, nil)
}

// testConcurrentReplicas: replicators racing over the same entries (two
// primaries during a handover, a retry after a lost reply) copy each
// exactly once, in origin order.
func testConcurrentReplicas(t *testing.T, l subscriber.Log) {
	const replicators, entries = 8, 30
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		appended = make(map[int]int) // by origin
	)
	start := make(chan struct{})
	for range replicators {
		wg.Go(func() {
			<-start
			for i := range entries {
				_, ok, err := l.AppendReplica(t.Context(), 0, 2, channelgroups.Position{Ms: 100, Seq: uint64(i)}, fmt.Appendf(nil, "m%d", i))
				if err != nil {
					t.Error(err)
					return
				}
				if ok {
					mu.Lock()
					appended[i]++
					mu.Unlock()
				}
			}
		})
	}
	close(start)
	wg.Wait()
	for i := range entries {
		if appended[i] != 1 {
			t.Fatalf("entry %d: appended %d times by %d replicators, want once", i, appended[i], replicators)
		}
	}
	es, err := l.Range(t.Context(), 0, channelgroups.Position{}, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != entries {
		t.Fatalf("log holds %d entries after copying %d", len(es), entries)
	}
	for i, e := range es {
		if string(e.Data) != fmt.Sprint("m", i) {
			t.Fatalf("entry %d = %q, want m%d: copies out of origin order", i, e.Data, i)
		}
	}
	checkReplicated(t, l, 0, map[int]channelgroups.Position{2: {Ms: 100, Seq: entries - 1}})
}

// testReplicaInterleaves: copies and local appends share one order, and
// Read and Range return copies like any entry.
func testReplicaInterleaves(t *testing.T, l subscriber.Log) {
	var (
		ps   []channelgroups.Position
		data []string
	)
	for i := range 4 {
		ps = append(ps, appendN(t, l, 1, 1, fmt.Sprint("local", i))...)
		data = append(data, fmt.Sprintf("local%d0", i))
		p, ok := replicate(t, l, 1, 2+i%2, channelgroups.Position{Ms: uint64(i + 1)}, fmt.Sprint("copy", i))
		if !ok {
			t.Fatalf("copy %d appended nothing", i)
		}
		ps = append(ps, p)
		data = append(data, fmt.Sprint("copy", i))
	}
	for i := 1; i < len(ps); i++ {
		if !ps[i-1].Less(ps[i]) {
			t.Fatalf("entry %d (%s) at %v, not after entry %d at %v", i, data[i], ps[i], i-1, ps[i-1])
		}
	}
	checkShard(t, l, 1, ps, data)
	// A reader keeping up sees each kind as it lands, and no gap.
	cur := ps[len(ps)-1]
	for i := range 3 {
		p, ok := replicate(t, l, 1, 2, channelgroups.Position{Ms: uint64(10 + i)}, "late")
		if !ok {
			t.Fatal("late copy appended nothing")
		}
		es, err := l.Read(t.Context(), []subscriber.Cursor{{Shard: 1, After: cur}}, 10, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if len(es) != 1 || es[0].Gap || es[0].Pos != p {
			t.Fatalf("Read after %v = %+v; want just the copy at %v", cur, es, p)
		}
		cur = p
	}
}

// testReplicaGapAfterTrim: a log made of copies reports gaps exactly, like
// one of local appends, and its marks outlive the entries trimmed: an entry
// whose copy was trimmed is still not copied again.
func testReplicaGapAfterTrim(t *testing.T, l subscriber.Log) {
	const shard, region = 1, 2
	ps := replicateN(t, l, shard, region, 0, 5, "old")
	cursor := ps[2]
	var from uint64 = 5
	ps = trimmedPastBy(t, l, shard, cursor, ps, func(prefix string) []channelgroups.Position {
		out := replicateN(t, l, shard, region, from, 50, prefix)
		from += 50
		return out
	})
	got, err := l.Range(t.Context(), shard, cursor, 10_000)
	if err != nil {
		t.Fatal(err)
	}
	checkGap(t, "Range", got, shard, cursor, ps)
	es, err := l.Read(t.Context(), []subscriber.Cursor{{Shard: shard, After: cursor}}, 10_000, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	checkGap(t, "Read", es, shard, cursor, ps)
	if es, _ := l.Range(t.Context(), shard, es[0].Pos, 10_000); len(es) == 0 || es[0].Gap {
		t.Fatalf("Range from the gap's end starts %+v; want no gap", es[:min(1, len(es))])
	}
	if p, ok := replicate(t, l, shard, region, channelgroups.Position{Ms: 1}, "trimmed"); ok {
		t.Fatalf("the copy of origin 1-0, trimmed from the log, was appended twice, at %v", p)
	}
	checkReplicated(t, l, shard, map[int]channelgroups.Position{region: {Ms: from}})
}
