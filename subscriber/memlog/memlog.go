// Package memlog is the in-process shard log of the embedded single-node
// mode: the same contract as the Redis log, checked by the same suite. Each
// shard keeps at most MaxLen entries and all shards together at most
// MaxBytes; the oldest entries are dropped first, and a reader whose cursor
// they passed gets a gap entry (subscriber.LogEntry.Gap). Copies of other
// regions' entries (AppendReplica) are checked against per-shard marks
// kept in memory, for the log's lifetime.
package memlog

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"maps"
	"sort"
	"sync"
	"time"

	"github.com/groupcast/groupcast/channelgroups"
	"github.com/groupcast/groupcast/subscriber"
)

// Config tunes a Log.
type Config struct {
	// Shards is the number of shard logs; zero means channelgroups.DefaultShards.
	Shards int
	// MaxLen is how many entries each shard keeps; zero means 100,000.
	MaxLen int
	// MaxBytes bounds what all shards keep together: the bytes of their
	// records plus EntryOverhead per entry. An append that goes over it
	// drops the oldest entries of any shard (never the entry just
	// appended). Zero means 8 MiB: the in-process log only carries entries
	// from the API to the node's own consumer (one node, nothing replays it
	// after start), so it needs to hold what that consumer may lag by —
	// about 40,000 entries of 200 bytes.
	MaxBytes int64
	// Now stamps positions; nil means time.Now.
	Now func() time.Time
}

// EntryOverhead is what one entry counts towards MaxBytes besides its
// record: about what the log's bookkeeping of it takes.
const EntryOverhead = 64

// Log is an in-process subscriber.Log.
type Log struct {
	cfg     Config
	mu      sync.Mutex
	shards  []*shardLog
	byAge   byAge // the shards holding entries, by their oldest entry
	seq     uint64
	bytes   int64
	count   int
	changed chan struct{} // closed and replaced on an append once a reader waits on it
	watched bool          // a reader took changed since it was made
}

// New returns an empty log.
func New(cfg Config) (*Log, error) {
	if cfg.Shards < 0 || cfg.MaxLen < 0 || cfg.MaxBytes < 0 {
		return nil, errors.New("memlog: Shards, MaxLen and MaxBytes must be >= 0")
	}
	if cfg.Shards == 0 {
		cfg.Shards = channelgroups.DefaultShards
	}
	if cfg.MaxLen == 0 {
		cfg.MaxLen = 100_000
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = 8 << 20
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	l := &Log{cfg: cfg, changed: make(chan struct{})}
	for range cfg.Shards {
		l.shards = append(l.shards, &shardLog{heapIdx: -1})
	}
	return l, nil
}

var errShard = errors.New("memlog: shard out of range")

// Append implements subscriber.Log. It takes constant time, amortised: a
// full shard drops its oldest entry without moving the others.
func (l *Log) Append(ctx context.Context, shard int, rec []byte) (channelgroups.Position, error) {
	if shard < 0 || shard >= l.cfg.Shards {
		return channelgroups.Position{}, errShard
	}
	if err := ctx.Err(); err != nil {
		return channelgroups.Position{}, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.appendLocked(shard, rec), nil
}

// appendLocked appends rec to shard's log and returns its position; mu is
// held.
func (l *Log) appendLocked(shard int, rec []byte) channelgroups.Position {
	s := l.shards[shard]
	p := channelgroups.Position{Ms: uint64(l.cfg.Now().UnixMilli())}
	if !s.last.Less(p) {
		p = channelgroups.Position{Ms: s.last.Ms, Seq: s.last.Seq + 1}
	}
	s.last = p
	l.seq++
	s.push(p, l.seq, rec)
	l.bytes += int64(len(rec)) + EntryOverhead
	l.count++
	if s.heapIdx < 0 {
		heap.Push(&l.byAge, s)
	}
	if s.n > l.cfg.MaxLen {
		l.drop(s)
	}
	for l.bytes > l.cfg.MaxBytes && l.count > 1 {
		l.drop(l.byAge[0])
	}
	if l.watched { // otherwise nobody waits: no channel per append
		close(l.changed)
		l.changed, l.watched = make(chan struct{}), false
	}
	return p
}

// drop drops shard s's oldest entry; mu is held.
func (l *Log) drop(s *shardLog) {
	it := s.pop()
	l.bytes -= int64(it.n) + EntryOverhead
	l.count--
	if s.n == 0 {
		heap.Remove(&l.byAge, s.heapIdx)
	} else {
		heap.Fix(&l.byAge, s.heapIdx)
	}
}

// Read implements subscriber.Log.
func (l *Log) Read(ctx context.Context, cursors []subscriber.Cursor, max int, block time.Duration) ([]subscriber.LogEntry, error) {
	for _, c := range cursors {
		if c.Shard < 0 || c.Shard >= l.cfg.Shards {
			return nil, errShard
		}
	}
	var timer *time.Timer // taken only when the read has to wait
	defer func() {
		if timer != nil {
			timer.Stop() // its channel is then empty (Go 1.23 timers): reusable
			readTimers.Put(timer)
		}
	}()
	for {
		l.mu.Lock()
		var (
			out  []subscriber.LogEntry
			recs int
		)
		for _, c := range cursors {
			out, recs = l.shards[c.Shard].after(out, recs, c.Shard, c.After, max)
		}
		var changed chan struct{}
		if len(out) == 0 {
			changed, l.watched = l.changed, true
		}
		l.mu.Unlock()
		if len(out) > 0 {
			return out, nil
		}
		if timer == nil {
			timer = readTimer(block)
		}
		select {
		case <-changed:
		case <-timer.C:
			return nil, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// readTimers holds stopped timers for reads that wait: the log's readers
// (a node's consume loop, its archiver) wait thousands of times a second.
var readTimers sync.Pool // *time.Timer

func readTimer(d time.Duration) *time.Timer {
	if t, ok := readTimers.Get().(*time.Timer); ok {
		t.Reset(d)
		return t
	}
	return time.NewTimer(d)
}

// Last implements subscriber.Log.
func (l *Log) Last(ctx context.Context, shard int) (channelgroups.Position, error) {
	if shard < 0 || shard >= l.cfg.Shards {
		return channelgroups.Position{}, errShard
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.shards[shard].last, ctx.Err()
}

// Range implements subscriber.Log.
func (l *Log) Range(ctx context.Context, shard int, after channelgroups.Position, max int) ([]subscriber.LogEntry, error) {
	if shard < 0 || shard >= l.cfg.Shards {
		return nil, errShard
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	out, _ := l.shards[shard].after(nil, 0, shard, after, max)
	return out, ctx.Err()
}

// Bytes returns what the log keeps now, as counted against MaxBytes.
func (l *Log) Bytes() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.bytes
}

// chunkLen is how many entries one chunk of a shard holds.
const chunkLen = 256

// item is one entry of a chunk: its record is data[off:off+n] of the
// chunk. It holds no pointer, so the garbage collector does not look into
// the items, nor follow one pointer per record: at 10,000 publishes a
// second the log holds some 40,000 entries, which it otherwise marks on
// every collection.
type item struct {
	pos    channelgroups.Position
	seq    uint64 // the order of appends across shards: oldest-first eviction
	off, n uint32
}

// chunk is chunkLen entries of a shard and their records, back to back in
// data. Records are only ever appended to data: a reader holds a slice of
// it (capped at its record) after the lock is released, and when data has
// to grow the records are copied to a new array while the readers keep
// the old one.
type chunk struct {
	data  []byte // first: the collector scans a chunk no further than its last pointer
	items [chunkLen]item
}

// shardLog is one shard's entries, oldest first, in chunks of chunkLen: an
// append writes into the last chunk and a drop advances head in the first,
// releasing it once used up, so neither moves the other entries.
type shardLog struct {
	chunks  []*chunk
	head    int // index of the oldest entry in chunks[0]
	n       int // entries kept
	last    channelgroups.Position
	dropped channelgroups.Position // the newest position dropped; zero if none
	heapIdx int                    // in Log.byAge; -1 while empty
	// dataHint is the size the records of the last chunk filled came to:
	// the next chunk's data is made that large (and a little more) at
	// once, not grown by doubling.
	dataHint int
	// replicated maps a region to the origin position of the newest entry
	// of its log copied into this shard (AppendReplica); nil until then.
	replicated map[int]channelgroups.Position
}

func (s *shardLog) at(i int) *item {
	j := s.head + i
	return &s.chunks[j/chunkLen].items[j%chunkLen]
}

// entry is the i-th entry kept, as a reader gets it.
func (s *shardLog) entry(shard, i int) subscriber.LogEntry {
	j := s.head + i
	c := s.chunks[j/chunkLen]
	it := &c.items[j%chunkLen]
	end := it.off + it.n
	return subscriber.LogEntry{Shard: shard, Pos: it.pos, Data: c.data[it.off:end:end]}
}

// minChunkData is the least data a new chunk is made with.
const minChunkData = 4 << 10

func (s *shardLog) push(pos channelgroups.Position, seq uint64, rec []byte) {
	j := s.head + s.n
	if j/chunkLen == len(s.chunks) {
		if k := len(s.chunks); k > 0 {
			s.dataHint = len(s.chunks[k-1].data)
		}
		s.chunks = append(s.chunks, &chunk{data: make([]byte, 0, max(minChunkData, s.dataHint+s.dataHint/8))})
	}
	c := s.chunks[j/chunkLen]
	c.items[j%chunkLen] = item{pos: pos, seq: seq, off: uint32(len(c.data)), n: uint32(len(rec))}
	c.data = append(c.data, rec...)
	s.n++
}

func (s *shardLog) pop() item {
	it := s.chunks[0].items[s.head]
	s.dropped = it.pos
	s.head++
	s.n--
	if s.head == chunkLen || s.n == 0 {
		s.chunks[0] = nil
		s.chunks = s.chunks[1:]
		s.head = 0
		if s.n == 0 {
			s.chunks = nil
		}
	}
	return it
}

// after appends to out the shard's entries after p while out holds fewer
// than max records (recs so far; it returns the new count): first a gap
// entry, which does not count, if entries after p were dropped.
func (s *shardLog) after(out []subscriber.LogEntry, recs, shard int, p channelgroups.Position, max int) ([]subscriber.LogEntry, int) {
	if recs >= max {
		return out, recs
	}
	if p.Less(s.dropped) {
		out = append(out, subscriber.LogEntry{Shard: shard, Pos: s.dropped, Gap: true})
	}
	for i := sort.Search(s.n, func(i int) bool { return p.Less(s.at(i).pos) }); i < s.n && recs < max; i++ {
		out = append(out, s.entry(shard, i))
		recs++
	}
	return out, recs
}

// byAge is a heap of shards by the append order of their oldest entry.
type byAge []*shardLog

func (h byAge) Len() int           { return len(h) }
func (h byAge) Less(i, j int) bool { return h[i].at(0).seq < h[j].at(0).seq }
func (h byAge) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx, h[j].heapIdx = i, j
}
func (h *byAge) Push(x any) {
	s := x.(*shardLog)
	s.heapIdx = len(*h)
	*h = append(*h, s)
}
func (h *byAge) Pop() any {
	old := *h
	s := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	s.heapIdx = -1
	return s
}

// AppendReplica implements subscriber.Log: the region's mark is checked
// and moved under the same lock as the append. The marks live as long as
// the log (the in-process log is not kept across restarts), and count
// nothing towards MaxBytes: one per region and shard.
func (l *Log) AppendReplica(ctx context.Context, shard, region int, origin channelgroups.Position, rec []byte) (channelgroups.Position, bool, error) {
	if shard < 0 || shard >= l.cfg.Shards {
		return channelgroups.Position{}, false, errShard
	}
	if region < 1 || origin.IsZero() {
		return channelgroups.Position{}, false, fmt.Errorf("memlog: append replica: bad origin region %d position %v", region, origin)
	}
	if err := ctx.Err(); err != nil {
		return channelgroups.Position{}, false, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.shards[shard]
	if !s.replicated[region].Less(origin) {
		return channelgroups.Position{}, false, nil
	}
	if s.replicated == nil {
		s.replicated = make(map[int]channelgroups.Position)
	}
	s.replicated[region] = origin
	return l.appendLocked(shard, rec), true, nil
}

// Replicated implements subscriber.Log.
func (l *Log) Replicated(ctx context.Context, shard int) (map[int]channelgroups.Position, error) {
	if shard < 0 || shard >= l.cfg.Shards {
		return nil, errShard
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.shards[shard].replicated), ctx.Err()
}
