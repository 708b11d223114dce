package memlog_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/groupcast/groupcast/channelgroups"
	"github.com/groupcast/groupcast/internal/testenv"
	"github.com/groupcast/groupcast/subscriber"
	"github.com/groupcast/groupcast/subscriber/logtest"
	"github.com/groupcast/groupcast/subscriber/memlog"
)

func TestConformance(t *testing.T) {
	logtest.Run(t, func(t *testing.T, shards, maxLen int) subscriber.Log {
		l, err := memlog.New(memlog.Config{Shards: shards, MaxLen: maxLen})
		if err != nil {
			t.Fatal(err)
		}
		return l
	})
}

// TestMaxBytes: the byte bound drops the oldest entries of any shard first,
// never the one just appended, and a reader they passed gets a gap.
func TestMaxBytes(t *testing.T) {
	const rec = 1000
	l, err := memlog.New(memlog.Config{Shards: 4, MaxBytes: 10 * (rec + memlog.EntryOverhead)})
	if err != nil {
		t.Fatal(err)
	}
	data := func(b byte) []byte { return bytes.Repeat([]byte{b}, rec) }
	// Shards 0, 1, 2 in turn: 12 entries, two over the bound.
	var ps []channelgroups.Position
	for i := range 12 {
		p, err := l.Append(t.Context(), i%3, data(byte(i)))
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	if got, want := l.Bytes(), int64(10*(rec+memlog.EntryOverhead)); got != want {
		t.Fatalf("Bytes = %d, want %d", got, want)
	}
	// The two oldest (shard 0's first, shard 1's first) are gone: readers
	// of those shards from the start get a gap, shard 2's reader none.
	for shard, want := range map[int]struct {
		gap   bool
		first byte
	}{0: {true, 3}, 1: {true, 4}, 2: {false, 2}} {
		es, err := l.Read(t.Context(), []subscriber.Cursor{{Shard: shard}}, 100, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		recs := es
		if want.gap {
			if len(es) == 0 || !es[0].Gap || es[0].Pos != ps[shard] {
				t.Fatalf("shard %d from the start: %+v; want a gap through %v", shard, es[:1], ps[shard])
			}
			recs = es[1:]
		}
		if len(recs) == 0 || recs[0].Gap || recs[0].Data[0] != want.first {
			t.Fatalf("shard %d: first record %+v, want the one appended %dth", shard, recs[:1], want.first)
		}
	}
	// One entry larger than the bound stays until the next append.
	big, err := l.Append(t.Context(), 3, bytes.Repeat([]byte{'x'}, 20*rec))
	if err != nil {
		t.Fatal(err)
	}
	es, err := l.Range(t.Context(), 3, channelgroups.Position{}, 10)
	if err != nil || len(es) != 1 || es[0].Pos != big {
		t.Fatalf("shard 3 after an entry over the bound: %+v, %v; want just that entry", es, err)
	}
	for shard := range 3 {
		if es, _ := l.Range(t.Context(), shard, ps[3+shard], 10); len(es) != 1 || !es[0].Gap || es[0].Pos != ps[9+shard] {
			t.Fatalf("shard %d: %+v; want only a gap through %v: the big entry pushed out everything else", shard, es, ps[9+shard])
		}
	}
}

// TestMaxBytesReplicas: copies of other regions' entries count towards the
// byte bound like local appends, and drop the oldest entries first.
func TestMaxBytesReplicas(t *testing.T) {
	const rec = 1000
	l, err := memlog.New(memlog.Config{Shards: 2, MaxBytes: 10 * (rec + memlog.EntryOverhead)})
	if err != nil {
		t.Fatal(err)
	}
	first, err := l.Append(t.Context(), 0, bytes.Repeat([]byte{'l'}, rec))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		_, ok, err := l.AppendReplica(t.Context(), 1, 2, channelgroups.Position{Ms: uint64(i + 1)}, bytes.Repeat([]byte{'r'}, rec))
		if err != nil || !ok {
			t.Fatalf("copy %d: %v, %v", i, ok, err)
		}
	}
	if got, want := l.Bytes(), int64(10*(rec+memlog.EntryOverhead)); got != want {
		t.Fatalf("Bytes = %d, want %d", got, want)
	}
	if es, _ := l.Range(t.Context(), 0, channelgroups.Position{}, 10); len(es) != 1 || !es[0].Gap || es[0].Pos != first {
		t.Fatalf("shard 0 = %+v; want only a gap through %v: the copies pushed out the oldest entry", es, first)
	}
	if es, _ := l.Range(t.Context(), 1, channelgroups.Position{}, 100); len(es) != 10 {
		t.Fatalf("shard 1 holds %d entries, want the 10 copies", len(es))
	}
}

// BenchmarkAppendFull appends to a shard that already holds MaxLen entries:
// every append evicts the oldest one.
func BenchmarkAppendFull(b *testing.B) {
	const maxLen = 100_000
	l, err := memlog.New(memlog.Config{Shards: 1, MaxLen: maxLen})
	if err != nil {
		b.Fatal(err)
	}
	rec := make([]byte, 100)
	for range maxLen {
		if _, err := l.Append(b.Context(), 0, rec); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := l.Append(b.Context(), 0, rec); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppendFullBytes appends across 64 shards to a log at its byte
// bound: every append drops the oldest entry of whichever shard holds it.
func BenchmarkAppendFullBytes(b *testing.B) {
	l, err := memlog.New(memlog.Config{Shards: 64, MaxBytes: 1 << 20})
	if err != nil {
		b.Fatal(err)
	}
	rec := make([]byte, 100)
	for i := range 20_000 {
		if _, err := l.Append(b.Context(), i%64, rec); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if _, err := l.Append(b.Context(), (i*7)%64, rec); err != nil {
			b.Fatal(err)
		}
	}
}

// TestRecordsStayPut: a record read keeps its bytes while later appends
// fill (and grow) the storage it was read from, over several chunks, and
// a reader appending to what it got does not write over the next record.
// The appended record's own buffer is not kept either.
func TestRecordsStayPut(t *testing.T) {
	l, err := memlog.New(memlog.Config{Shards: 1, MaxLen: 10_000})
	if err != nil {
		t.Fatal(err)
	}
	rec := func(i int) []byte { return bytes.Repeat([]byte{byte(i)}, 1+i%700) } // sizes vary, so a chunk's storage grows
	var held []subscriber.LogEntry
	buf := make([]byte, 0, 1024)
	after := channelgroups.Position{}
	for i := range 2000 {
		buf = append(buf[:0], rec(i)...)
		if _, err := l.Append(t.Context(), 0, buf); err != nil {
			t.Fatal(err)
		}
		clear(buf) // the caller reuses its buffer: the log has its own copy
		if i == 0 {
			continue
		}
		// Record i-1 is read once record i is behind it.
		es, err := l.Read(t.Context(), []subscriber.Cursor{{Shard: 0, After: after}}, 1, time.Second)
		if err != nil || len(es) != 1 {
			t.Fatalf("read of record %d: %d entries, %v", i-1, len(es), err)
		}
		after = es[0].Pos
		_ = append(es[0].Data, 0xff, 0xff) // a careless reader
		held = append(held, es[0])
	}
	for i, e := range held {
		if !bytes.Equal(e.Data, rec(i)) {
			t.Fatalf("record %d read back as %d bytes starting %v, want %d bytes of %d", i, len(e.Data), e.Data[:min(4, len(e.Data))], len(rec(i)), byte(i))
		}
	}
	es, err := l.Range(t.Context(), 0, channelgroups.Position{}, 3000)
	if err != nil || len(es) != 2000 {
		t.Fatalf("Range: %d entries, %v; want 2000", len(es), err)
	}
	for i, e := range es {
		if !bytes.Equal(e.Data, rec(i)) {
			t.Fatalf("record %d in the log is %d bytes, want %d bytes of %d", i, len(e.Data), len(rec(i)), byte(i))
		}
	}
}

// TestWaitingReadsWakeOnAppend: a read waiting on an empty shard returns
// the entry appended meanwhile, round after round (a waiting read is what
// makes an append signal), and a read given up by its block returns
// nothing.
func TestWaitingReadsWakeOnAppend(t *testing.T) {
	l, err := memlog.New(memlog.Config{Shards: 2, MaxLen: 1000})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	var after channelgroups.Position
	for round := range 50 {
		got := make(chan []subscriber.LogEntry, 1)
		go func() {
			es, err := l.Read(ctx, []subscriber.Cursor{{Shard: 1, After: after}}, 10, time.Minute)
			if err != nil {
				t.Error(err)
			}
			got <- es
		}()
		if round%2 == 1 { // an append to the other shard wakes it for nothing
			if _, err := l.Append(ctx, 0, []byte("other")); err != nil {
				t.Fatal(err)
			}
		}
		pos, err := l.Append(ctx, 1, []byte{byte(round)})
		if err != nil {
			t.Fatal(err)
		}
		select {
		case es := <-got:
			if len(es) == 0 {
				t.Fatalf("round %d: the read returned nothing", round)
			}
			after = es[len(es)-1].Pos
			if after != pos {
				// the read may have run before the append: then it returned
				// it after waiting, or found it at once; either way it is the one
				t.Fatalf("round %d: read up to %v, appended %v", round, after, pos)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: the waiting read did not wake on the append", round)
		}
	}
	if es, err := l.Read(ctx, []subscriber.Cursor{{Shard: 1, After: after}}, 10, time.Millisecond); err != nil || len(es) != 0 {
		t.Fatalf("a read past the end with a 1 ms block: %v, %v", es, err)
	}
}

// TestUnwatchedAppendAllocs: an append nobody waits for allocates nothing
// (no wake-up channel).
func TestUnwatchedAppendAllocs(t *testing.T) {
	testenv.CountAllocs(t)
	l, err := memlog.New(memlog.Config{Shards: 2, MaxLen: 1000})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	rec := make([]byte, 100)
	if n := testing.AllocsPerRun(1000, func() {
		if _, err := l.Append(ctx, 0, rec); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("an append nobody waits for: %.0f allocations, want 0", n)
	}
}
