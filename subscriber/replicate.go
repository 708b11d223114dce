package subscriber

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/groupcast/groupcast/channelgroups"
)

// Replication between regions. Each region's logs live in its own Redis.
// For every other region (Config.Remotes), the primary of each shard reads
// that region's log of the shard and copies every edit, message, message
// action and history deletion into this region's log of the shard
// (Log.AppendReplica), tagged with its origin region and position (a copied
// action keeps its origin timetoken, as a message does; a copied deletion
// hides the range in this region's rings too); presence events stay in their
// region, and entries
// that are themselves copies are not copied again (every region pulls every
// other region directly). AppendReplica checks and records how far each
// region's log was copied in one atomic step, so a replicator that dies at
// any point and a new primary that takes over copy every entry exactly once,
// in order, from where the last one stopped.
//
// The nodes of this region apply the copies like any entry of their log: a
// copied edit joins the overlay and the views (last writer wins by
// timetoken, remove winning ties, exactly as in storage, whichever order
// edits of different regions arrive in); a copied message reaches the
// rings with its original timetoken. A node records, per shard and origin
// region, the origin position of the newest copy it applied: that is how a
// token naming another region's position is covered from memory (covers).
//
// Causal order with more than two regions: a message published in region B
// under a token naming region A's position p carries the dependency A:p. A
// replicator in region C copies it only after it has copied A's log up to p,
// so C's log holds A's edit before B's message, and every node of C applies
// them in that order. Until then the shard's copying from B waits.
//
// If the other region's log was trimmed past the replicator's position (a
// partition longer than the log keeps), the lost entries cannot be copied:
// the replicator appends a gap record ("g") with the newest lost origin
// position; nodes applying it drop the shard's cached groups (re-read from
// storage, which Cassandra replicates between datacenters by itself) and do
// not cover a token at or before that position from memory (a node that
// gains the shard later knows of the gaps its replay window holds).
//
// Entries not copied on purpose: presence events (presence is per region),
// entries that are themselves copies, and, when a region's log is copied
// for the first time, messages older than the retention window (RingAge).

// replicator copies one other region's logs into this region's.
type replicator struct {
	n      *Node
	region int
	remote Log
	// cursor is, per shard this node copies, the origin position of the
	// newest entry copied or skipped; loaded from Log.Replicated when the
	// node becomes the shard's primary.
	cursor map[int]channelgroups.Position
	// held maps a shard whose copying waits for a dependency to it.
	held map[int]channelgroups.RegionPosition
}

// replicas is the state shared by a node's replicators.
type replicas struct {
	mu sync.Mutex
	// copied is, per (origin region, shard), how far this node's
	// replicators copied; a replicator waiting on a dependency reads it.
	copied map[[2]int]channelgroups.Position

	lag      *prometheus.GaugeVec
	entries  *prometheus.CounterVec
	gaps     *prometheus.CounterVec
	failures *prometheus.CounterVec
	waits    *prometheus.CounterVec
	waited   atomic.Int64 // waits, all regions: for tests
}

func newReplicas(reg prometheus.Registerer) (*replicas, error) {
	r := &replicas{
		copied: map[[2]int]channelgroups.Position{},
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "groupcast_replication_lag_seconds",
			Help: "Age (from its append in its region) of the newest entry of another region's shard log copied into this region's by this node.",
		}, []string{"region", "shard"}),
		entries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "groupcast_replicated_entries_total",
			Help: "Entries of other regions' shard logs copied into this region's by this node, by origin region and kind (edit, message, action, deletion, gap).",
		}, []string{"region", "kind"}),
		gaps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "groupcast_replication_gaps_total",
			Help: "Times another region's shard log was trimmed past where this node had copied it: entries lost to this region.",
		}, []string{"region"}),
		waits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "groupcast_replication_waits_total",
			Help: "Times an entry of another region's log waited to be copied until the entries of a third region it depends on were copied, by origin region.",
		}, []string{"region"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "groupcast_replication_errors_total",
			Help: "Failed reads of another region's logs and failed copies into this region's, by origin region (retried).",
		}, []string{"region"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{r.lag, r.entries, r.gaps, r.failures, r.waits} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("subscriber: %w", err)
			}
		}
	}
	return r, nil
}

func (r *replicas) progress(region, shard int) channelgroups.Position {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.copied[[2]int{region, shard}]
}

func (r *replicas) advance(region, shard int, p channelgroups.Position) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := [2]int{region, shard}
	r.copied[k] = channelgroups.MaxPosition(r.copied[k], p)
}

func (r *replicas) forget(region, shard int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.copied, [2]int{region, shard})
	r.lag.DeleteLabelValues(strconv.Itoa(region), strconv.Itoa(shard))
}

// Reading another region takes a WAN round trip: an entry appended while
// a reader's next read is on its way waits for that read, up to one more
// round trip. So two readers take turns: while one is between reads, the
// other is waiting at the other region. A reader with nothing new comes
// back after blockBase, blockBase+blockSpread or blockBase+2×blockSpread,
// whichever ends at least blockSpread away from when the other reader's
// read ends (one of the three always does): their returns with nothing
// never meet, for round trips under blockSpread. Both come back at once
// only with an entry (both fetch it); the next one waits at most a round
// trip.
const (
	blockBase   = time.Second
	blockSpread = 300 * time.Millisecond
)

// readerTurns keeps when each of the two readers' current read ends.
type readerTurns struct{ ends [2]atomic.Int64 }

// block returns how long reader i's read starting at now blocks, and
// records when it ends.
func (t *readerTurns) block(i int, now time.Time) time.Duration {
	other := time.Unix(0, t.ends[1-i].Load())
	b := blockBase
	for range 2 {
		if d := now.Add(b).Sub(other); d >= blockSpread || d <= -blockSpread {
			break
		}
		b += blockSpread
	}
	t.ends[i].Store(now.Add(b).UnixNano())
	return b
}

// readSet is what the readers read next.
type readSet struct {
	cursors []Cursor
	held    bool          // a shard waits for a dependency: come back soon
	stale   chan struct{} // closed once a newer set is out
}

// readBudget bounds the entries one read asks for, all shards together
// (the log's max is per shard): a backlog after a partition comes in
// pieces, not all at once.
const readBudget = 8192

type readResult struct {
	entries []LogEntry
	err     error
}

// replicate copies region's logs until ctx ends: two readers fetch, this
// goroutine copies, in order, what is past its cursors.
func (n *Node) replicate(ctx context.Context, region int, remote Log) {
	rp := &replicator{n: n, region: region, remote: remote, cursor: map[int]channelgroups.Position{}, held: map[int]channelgroups.RegionPosition{}}
	var (
		next    atomic.Pointer[readSet]
		results = make(chan readResult)
		wg      sync.WaitGroup
	)
	defer wg.Wait()
	var turns readerTurns
	for i := range 2 {
		wg.Go(func() { rp.read(ctx, i, &turns, &next, results) })
	}
	failures := n.repl.failures.WithLabelValues(strconv.Itoa(region))
	backoff := 50 * time.Millisecond
	fail := func(what string, err error) {
		failures.Inc()
		n.cfg.Logger.Warn("replication: "+what+" failed; retrying", "region", region, "err", err, "backoff", backoff)
		wait(ctx, backoff)
		backoff = min(2*backoff, 2*time.Second)
	}
	recheck := time.NewTicker(250 * time.Millisecond) // assignment changes, held shards
	defer recheck.Stop()
	publish := func(rs *readSet) {
		if old := next.Swap(rs); old != nil {
			close(old.stale)
		}
	}
	for ctx.Err() == nil {
		cursors, err := rp.cursors(ctx)
		if err != nil {
			fail("reading how far the logs were copied", err)
			continue
		}
		publish(&readSet{cursors: cursors, held: len(rp.held) > 0, stale: make(chan struct{})})
		select {
		case <-ctx.Done():
		case <-recheck.C:
		case r := <-results:
			if r.err != nil {
				failures.Inc() // the reader backs off and logs
				continue
			}
			if err := rp.copy(ctx, r.entries); err != nil {
				fail("copying into this region's log", err)
				continue
			}
			backoff = 50 * time.Millisecond
		}
	}
}

// read is reader i: it fetches what is new in the other region's log after
// the latest cursors, blocking for its turn, and hands it over, until ctx
// ends.
func (rp *replicator) read(ctx context.Context, i int, turns *readerTurns, next *atomic.Pointer[readSet], results chan<- readResult) {
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		rs := next.Load()
		if rs == nil {
			wait(ctx, 20*time.Millisecond)
			continue
		}
		if len(rs.cursors) == 0 { // primary of no shard, or every one held
			select {
			case <-rs.stale:
			case <-ctx.Done():
			}
			continue
		}
		b := turns.block(i, time.Now())
		if rs.held {
			b = 20 * time.Millisecond // look at the held shards again soon
		}
		entries, err := rp.remote.Read(ctx, rs.cursors, max(16, readBudget/len(rs.cursors)), b)
		if err != nil && ctx.Err() == nil {
			rp.n.cfg.Logger.Warn("replication: reading another region's log failed; retrying", "region", rp.region, "err", err, "backoff", backoff)
		}
		select {
		case results <- readResult{entries: entries, err: err}:
		case <-ctx.Done():
			return
		}
		// Read again from the cursors this answer moves, not the same
		// ones (that would fetch the same entries once more).
		select {
		case <-rs.stale:
		case <-ctx.Done():
			return
		}
		if err != nil {
			wait(ctx, backoff)
			backoff = min(2*backoff, 2*time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
	}
}

// cursors returns where to read the shards this node is the primary of and
// whose copying is not waiting for a dependency.
func (rp *replicator) cursors(ctx context.Context) ([]Cursor, error) {
	n := rp.n
	a := n.own.Assignment()
	for shard := range rp.cursor {
		if !a.IsPrimary(shard) {
			delete(rp.cursor, shard)
			delete(rp.held, shard)
			n.repl.forget(rp.region, shard)
		}
	}
	var out []Cursor
	for shard := range n.shards {
		if !a.IsPrimary(shard) {
			continue
		}
		c, ok := rp.cursor[shard]
		if !ok {
			marks, err := n.log.Replicated(ctx, shard)
			if err != nil {
				return nil, err
			}
			c = marks[rp.region]
			rp.cursor[shard] = c
			n.repl.advance(rp.region, shard, c)
		}
		if dep, ok := rp.held[shard]; ok {
			if n.repl.progress(dep.Region, shard).Less(dep.Pos) {
				continue
			}
			delete(rp.held, shard)
		}
		out = append(out, Cursor{Shard: shard, After: c})
	}
	return out, nil
}

// copy copies entries read from the other region's log, in order per
// shard. A shard whose entry waits for a dependency, or whose copy failed,
// skips the rest of its entries in this batch (they are read again).
func (rp *replicator) copy(ctx context.Context, entries []LogEntry) error {
	n := rp.n
	region := strconv.Itoa(rp.region)
	stopped := map[int]bool{}
	oldest := uint64(n.now().Add(-n.cfg.RingAge).UnixMilli())
	for _, le := range entries {
		shard := le.Shard
		if stopped[shard] || !rp.after(shard, le.Pos) {
			continue
		}
		var rec record
		if !le.Gap {
			if err := json.Unmarshal(le.Data, &rec); err != nil {
				n.cfg.Logger.Error("replication: skipping an entry that is not a log record", "region", rp.region, "shard", shard, "pos", le.Pos, "err", err)
				rp.skip(shard, le.Pos)
				continue
			}
		}
		switch {
		case le.Gap:
			n.repl.gaps.WithLabelValues(region).Inc()
			n.cfg.Logger.Warn("replication: the other region's log was trimmed past this region's copy; entries lost",
				"region", rp.region, "shard", shard, "after", rp.cursor[shard], "lost_through", le.Pos)
			rec = record{Kind: "g"}
		case rec.Origin != 0, rec.Kind != "e" && rec.Kind != "m" && rec.Kind != "a" && rec.Kind != "d":
			// A copy (its region copies it to us itself) or a presence
			// event (presence is per region). Edits, messages, message
			// actions and history deletions are copied.
			rp.skip(shard, le.Pos)
			continue
		case rec.Kind == "m" && le.Pos.Ms < oldest:
			// Older than the retention window (a region copying a log for
			// the first time): no subscriber's cursor reaches it.
			rp.skip(shard, le.Pos)
			continue
		}
		if dep, ok := rp.waitsFor(shard, rec.Deps); ok {
			if _, already := rp.held[shard]; !already {
				n.repl.waits.WithLabelValues(region).Inc()
				n.repl.waited.Add(1)
			}
			rp.held[shard] = dep
			stopped[shard] = true
			continue
		}
		rec.Origin, rec.OriginPos = rp.region, le.Pos.String()
		b, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		_, appended, err := n.log.AppendReplica(ctx, shard, rp.region, le.Pos, b)
		if err != nil {
			// Whether it was appended is unknown: read the marks again.
			delete(rp.cursor, shard)
			return err
		}
		rp.skip(shard, le.Pos)
		if appended { // else another node (a primary before this one) copied it
			kind := map[string]string{"e": "edit", "m": "message", "a": "action", "d": "deletion", "g": "gap"}[rec.Kind]
			n.repl.entries.WithLabelValues(region, kind).Inc()
			n.repl.lag.WithLabelValues(region, strconv.Itoa(shard)).Set(n.now().Sub(time.UnixMilli(int64(le.Pos.Ms))).Seconds())
		}
	}
	return nil
}

// after reports whether p is past the shard's cursor (a shard dropped since
// the read, or an entry already handled, is not).
func (rp *replicator) after(shard int, p channelgroups.Position) bool {
	c, ok := rp.cursor[shard]
	return ok && c.Less(p)
}

func (rp *replicator) skip(shard int, p channelgroups.Position) {
	rp.cursor[shard] = p
	rp.n.repl.advance(rp.region, shard, p)
}

// waitsFor returns the first of deps (an encoded record's) that this node
// has not copied yet: a position in a third region's log. Dependencies on
// this region's own log are met (the entry is appended after everything
// already in it) and so are those on the origin's log (copied in order); a
// dependency on a region this node does not copy from cannot be waited for
// and is not.
func (rp *replicator) waitsFor(shard int, deps []string) (channelgroups.RegionPosition, bool) {
	if len(deps) == 0 {
		return channelgroups.RegionPosition{}, false
	}
	ds, err := decodeDeps(deps)
	if err != nil {
		return channelgroups.RegionPosition{}, false
	}
	n := rp.n
	for _, d := range ds {
		if d.Region == n.cfg.Region || d.Region == rp.region {
			continue
		}
		if _, ok := n.cfg.Remotes[d.Region]; !ok {
			continue
		}
		if n.repl.progress(d.Region, shard).Less(d.Pos) {
			return d, true
		}
	}
	return channelgroups.RegionPosition{}, false
}

// repairRemoteGap handles a gap record: region's entries of the shard up
// to p were lost before they could be copied. The shard's cached groups
// are dropped (the next read loads them from storage); tokens at or before
// p are not covered from memory any more (see covers).
func (n *Node) repairRemoteGap(shard, region int, p channelgroups.Position) {
	n.cfg.Logger.Warn("entries of another region's log were lost before this region copied them: re-reading the shard's groups from storage",
		"shard", shard, "region", region, "lost_through", p)
	n.views.dropShard(shard)
}
