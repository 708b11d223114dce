// Package logtest is the conformance suite every subscriber.Log must pass;
// it runs against the in-process log and against a real Redis.
package logtest

import (
	"fmt"
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
	for i := 0; ; i++ {
		if i == 100 {
			t.Fatalf("Range from %v reports no gap after %d appends to a log that keeps 10 entries", cursor, len(ps))
		}
		ps = append(ps, appendN(t, l, shard, 50, fmt.Sprintf("new%d-", i))...)
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
