package subscriber

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/groupcast/groupcast/channelgroups"
	"github.com/groupcast/groupcast/storagecache"
	"github.com/groupcast/groupcast/volatile"
)

// views keeps group views (storage snapshot ⊕ volatile overlay) current and
// serves reads at the consistency they ask for. Its mu serialises view
// builds with overlay changes and snapshot installs; a build tells the hub,
// so that parked subscribers of a group re-expand at once.
type views struct {
	n       *Node
	mu      sync.Mutex
	store   Store
	cache   *storagecache.Cache
	overlay *volatile.Overlay
}

// applyEdit applies an edit read from the log: into the overlay and the
// group's view, and into the G3 tracking of the group, in log order.
func (v *views) applyEdit(e channelgroups.Edit) {
	key := channelgroups.GroupKey{Account: e.Account, Group: e.Group}
	v.mu.Lock()
	overlaid := v.overlay.Apply(e)
	var view *channelgroups.View
	if overlaid {
		view = v.buildLocked(key)
	} else {
		// A storage-only account's published view predates the edit
		// until the next storage read: the tracking judges by the
		// snapshot and the log's edits instead (G3: a remove that
		// returned stops the channel's next message).
		snap := &channelgroups.Snapshot{}
		if g, ok := v.cache.Peek(key); ok && g.Snapshot != nil {
			snap = g.Snapshot
		}
		view = v.n.hub.logView(key, snap)
	}
	if view == nil {
		if g, ok := v.cache.Published(key); ok {
			view = g.View()
		}
	}
	if view == nil && overlaid {
		// Not cached: the overlay alone says whether the edit won (an
		// older edit copied from another region after a newer one loses).
		entries, cleared := v.overlay.Entries(key)
		view = channelgroups.Merge(&channelgroups.Snapshot{}, entries, cleared)
	}
	v.n.hub.trackEdit(key, e, view)
	v.mu.Unlock()
	if overlaid {
		// Storage already has the change: refresh the snapshot so the
		// overlay entry is confirmed and dropped.
		v.cache.Refresh(key, func(err error) { v.rebuild(key, err) })
	}
	// A storage-only account (overlay off) reads the change at the next
	// periodic refresh, as a cache polling storage would; only its G3
	// tracking has it at once (above).
}

// rebuild re-merges a group's view after its snapshot was refreshed.
func (v *views) rebuild(key channelgroups.GroupKey, err error) {
	if err != nil {
		v.n.cfg.Logger.Warn("refreshing a group from storage failed", "account", key.Account, "group", key.Group, "err", err)
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.buildLocked(key)
}

// buildLocked rebuilds the view of the group cached now: it drops the overlay
// entries that group's snapshot confirms, merges the rest in and publishes
// the group. If the group is no longer cached its published view is
// withdrawn, so a view can never outlive the snapshot it was built on while
// changes keep arriving. mu is held: confirmations, builds and publishes
// happen in one order.
func (v *views) buildLocked(key channelgroups.GroupKey) *channelgroups.View {
	g, ok := v.cache.Peek(key)
	if !ok {
		v.cache.Unpublish(key)
		return nil
	}
	v.overlay.Confirm(key, g.Snapshot)
	entries, cleared := v.overlay.Entries(key)
	view := channelgroups.Merge(g.Snapshot, entries, cleared)
	g.SetView(view)
	v.cache.Publish(key, g)
	v.n.hub.track(key, view)
	return view
}

// dropShard drops the cached groups of a shard's accounts.
func (v *views) dropShard(shard int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	shards := len(v.n.shards)
	v.cache.InvalidateIf(func(k channelgroups.GroupKey) bool { return channelgroups.ShardOf(k.Account, shards) == shard })
}

// refreshTouched re-reads the groups read since the last round.
func (v *views) refreshTouched() {
	v.cache.Touched(func(key channelgroups.GroupKey) {
		v.cache.Refresh(key, func(err error) { v.rebuild(key, err) })
	})
}

// refreshExpired re-reads the groups whose overlay entries outlived the TTL
// unconfirmed.
func (v *views) refreshExpired(ctx context.Context) {
	for _, key := range v.overlay.Expired() {
		if _, ok := v.cache.Peek(key); ok {
			v.cache.Refresh(key, func(err error) { v.rebuild(key, err) })
			continue
		}
		// Not cached: load it, which confirms against a fresh read.
		if _, err := v.cache.Get(ctx, key); err == nil {
			v.rebuild(key, nil)
		}
	}
}

// View returns the group's view at the requested consistency. With
// AtLeastAsFresh the view reflects every change tok covers, or the read
// fails with channelgroups.ErrUnavailable; it is never silently stale. A
// group of a shard this node does not serve is read from storage.
func (n *Node) View(ctx context.Context, key channelgroups.GroupKey, tok *channelgroups.Token, mode Consistency) (*channelgroups.View, error) {
	v := n.views
	switch {
	case mode == FullyConsistent:
		return v.slow(ctx, key, tok)
	case !n.serve(ctx, channelgroups.ShardOf(key.Account, len(n.shards))):
		return v.slow(ctx, key, tok)
	case mode == MinimizeLatency || tok == nil:
		// Not counted: the path metric is about reads that carry a token,
		// and this is the hot path (HTTP request metrics count every read).
		return v.fast(ctx, key)
	case !v.overlay.Enabled(key.Account):
		return v.slow(ctx, key, tok)
	}
	switch ok, waited := n.catchUp(ctx, tok); {
	case ok && !waited:
		n.m.fastReads.Inc()
		return v.fast(ctx, key)
	case ok:
		n.m.reads.WithLabelValues("waited").Inc()
		return v.fast(ctx, key)
	}
	return v.slow(ctx, key, tok)
}

// CatchUp makes an edit made now on this node follow everything tok
// covers: it waits (up to FreshWait) until the node has applied the
// token's positions in other regions' logs (copied here), so the edit is
// appended after those copies, and moves the clock past the token's newest
// edit, so the edit wins over the edits the client saw (last writer wins)
// even if this region's clock is behind. This region's own positions need
// no wait: its edits reach the log in the order they were acknowledged (an
// unannounced one first, from the outbox), so an edit made now already
// sorts after them, Redis up or not. It fails with ErrNotServing or
// ErrNotFresh (both ErrUnavailable). An edit that carries a token calls it
// first: a remove made in one region after reading an add made in another
// is appended after that add's copy.
//
// The context it returns carries those other regions' positions: an edit
// made with it is announced with them as its dependencies, so a third
// region copies it only after them (see replicate.go), as a message
// published under the token is.
func (n *Node) CatchUp(ctx context.Context, tok *channelgroups.Token) (context.Context, error) {
	_ = n.clock.Witness(tok.At) // a token's At passed the skew check when it was decoded
	other := channelgroups.Token{Shard: tok.Shard}
	for _, rp := range tok.Positions {
		if rp.Region != n.cfg.Region && !rp.Pos.IsZero() {
			other.Positions = append(other.Positions, rp)
		}
	}
	if len(other.Positions) == 0 {
		return ctx, nil
	}
	if !n.serve(ctx, tok.Shard) {
		return ctx, ErrNotServing
	}
	if ok, _ := n.catchUp(ctx, &other); !ok {
		return ctx, ErrNotFresh
	}
	return context.WithValue(ctx, depsKey{}, other.Positions), nil
}

// depsKey keys an edit's dependencies in its context (see CatchUp).
type depsKey struct{}

func depsOf(ctx context.Context) []channelgroups.RegionPosition {
	ds, _ := ctx.Value(depsKey{}).([]channelgroups.RegionPosition)
	return ds
}

// catchUp reports whether this node has applied everything tok covers: its
// positions in every region (see covers) and, for a pending edit of this
// region, the log position that
// proves it was announced (announcedThrough). It waits on the shard's signal
// up to FreshWait; waited tells whether it had to.
func (n *Node) catchUp(ctx context.Context, tok *channelgroups.Token) (ok, waited bool) {
	if tok.Pending != 0 && tok.Origin != n.cfg.Region {
		// Pending in another region's outbox: no position proves it copied.
		return false, false
	}
	if tok.Pending != 0 {
		last, ok := n.ann.announcedThrough(ctx, tok.Shard, tok.Pending)
		if !ok {
			return false, false
		}
		t := tok.Merge(channelgroups.Token{Shard: tok.Shard, Positions: []channelgroups.RegionPosition{{Region: n.cfg.Region, Pos: last}}})
		tok = &t
	}
	if n.covers(tok) {
		return true, false
	}
	for _, rp := range tok.Positions {
		if _, copied := n.cfg.Remotes[rp.Region]; rp.Region != n.cfg.Region && !copied && !rp.Pos.IsZero() {
			return false, false // a region this one does not copy: waiting cannot help
		}
	}
	return n.await(ctx, tok), true
}

// ErrNoRoute reports a token naming a region this node cannot read.
var ErrNoRoute = fmt.Errorf("subscriber: no storage route to a region the token names: %w", channelgroups.ErrUnavailable)

// read reads the group from this region's storage and from the storage of
// every other region whose edits tok covers, and merges the snapshots.
func (v *views) read(ctx context.Context, key channelgroups.GroupKey, tok *channelgroups.Token) (channelgroups.Snapshot, error) {
	snap, err := v.store.Read(ctx, key.Account, key.Group)
	if err != nil || tok == nil {
		return snap, err
	}
	region := v.n.cfg.Region
	regions := map[int]bool{}
	if tok.Origin != 0 && tok.Origin != region {
		regions[tok.Origin] = true
	}
	for _, rp := range tok.Positions {
		if rp.Region != region {
			regions[rp.Region] = true
		}
	}
	for r := range regions {
		st, ok := v.n.cfg.RegionStores[r]
		if !ok {
			return channelgroups.Snapshot{}, fmt.Errorf("region %d: %w", r, ErrNoRoute)
		}
		remote, err := st.Read(ctx, key.Account, key.Group)
		if err != nil {
			return channelgroups.Snapshot{}, fmt.Errorf("region %d: %w", r, err)
		}
		snap = channelgroups.MergeSnapshots(snap, remote)
	}
	return snap, nil
}

// fast serves from memory: one lock-free lookup on a hit.
func (v *views) fast(ctx context.Context, key channelgroups.GroupKey) (*channelgroups.View, error) {
	if g, ok := v.cache.Published(key); ok {
		if view := g.View(); view != nil {
			return view, nil
		}
	}
	g, err := v.cache.Get(ctx, key)
	if err != nil {
		v.n.m.reads.WithLabelValues("failed").Inc()
		return nil, err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if view := v.buildLocked(key); view != nil {
		return view, nil
	}
	// Evicted between the load and now: serve a merge of what was loaded.
	entries, cleared := v.overlay.Entries(key)
	return channelgroups.Merge(g.Snapshot, entries, cleared), nil
}

// slow reads the group from storage (LOCAL_QUORUM in every region tok's
// edits come from), merges the overlay and offers the snapshot to the cache.
func (v *views) slow(ctx context.Context, key channelgroups.GroupKey, tok *channelgroups.Token) (*channelgroups.View, error) {
	snap, err := v.read(ctx, key, tok)
	if err != nil {
		v.n.m.reads.WithLabelValues("failed").Inc()
		return nil, err
	}
	v.n.m.reads.WithLabelValues("slow").Inc()
	v.mu.Lock()
	defer v.mu.Unlock()
	v.cache.Offer(key, &snap)
	v.buildLocked(key)
	// Serve the merge of the snapshot just read: whatever the cache keeps,
	// this read reflects everything storage held when it was made.
	entries, cleared := v.overlay.Entries(key)
	return channelgroups.Merge(&snap, entries, cleared), nil
}

// covers reports whether this node has applied everything tok covers: its
// position in this region's log, and in each other region's log the
// position up to which this node applied the entries copied from it (see
// replicate.go). A position whose entry a replicator lost to a gap is never
// covered from memory.
func (n *Node) covers(tok *channelgroups.Token) bool {
	if tok.Shard < 0 || tok.Shard >= len(n.shards) {
		return false
	}
	s := n.shards[tok.Shard]
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rp := range tok.Positions {
		switch {
		case rp.Pos.IsZero():
		case rp.Region == n.cfg.Region:
			if s.applied.Less(rp.Pos) {
				return false
			}
		case s.remote[rp.Region].Less(rp.Pos), !s.lost[rp.Region].Less(rp.Pos):
			return false
		}
	}
	return true
}

// await waits, on the shard's signal and never longer than FreshWait, until
// the node covers tok.
func (n *Node) await(ctx context.Context, tok *channelgroups.Token) bool {
	if tok.Shard < 0 || tok.Shard >= len(n.shards) {
		return false
	}
	s := n.shards[tok.Shard]
	timer := time.NewTimer(n.cfg.FreshWait)
	defer timer.Stop()
	for {
		s.mu.Lock()
		changed := s.changed
		s.mu.Unlock()
		if n.covers(tok) {
			return true
		}
		select {
		case <-changed:
		case <-timer.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
}
