package subscriber

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/groupcast/groupcast/channelgroups"
	"github.com/groupcast/groupcast/storagecache"
	"github.com/groupcast/groupcast/volatile"
)

// Store is the channel-group storage a node needs: groups and the outbox.
type Store interface {
	channelgroups.Store
	channelgroups.Outbox
}

// Config tunes a Node.
type Config struct {
	// Region is this region's number; zero means 1.
	Region int
	// Shards is the number of account shards; zero means channelgroups.DefaultShards.
	Shards int
	// FreshWait bounds how long a read whose token is ahead of this node
	// waits for the log before it reads storage; zero means 250ms.
	FreshWait time.Duration
	// SweepEvery is how often every shard's outbox is checked for edits a
	// crashed node left unannounced; zero means 30s.
	SweepEvery time.Duration
	// RefreshEvery is how often the groups read since the last round are
	// re-read from storage, repairing any drift; zero means 30s.
	RefreshEvery time.Duration
	// RegionStores reads a group in another region's datacenter, by region
	// number (LOCAL_QUORUM there). A token carrying an edit of a region not
	// listed, other than this one, cannot be honoured: its reads fail with
	// ErrUnavailable rather than risk a stale answer.
	RegionStores map[int]channelgroups.Store
	// RingSize is how many messages each channel keeps; zero means 100.
	RingSize int
	// RingAge is how long messages are kept; zero means 20m.
	RingAge time.Duration
	// PollHold is how long a subscribe parks at most; zero means 280s.
	PollHold time.Duration
	// TrackIdle is how long a group with no subscribers stays tracked;
	// zero means 5m.
	TrackIdle time.Duration
	// PresenceTimeout is how long a user who sent no subscribe or heartbeat
	// stays present when the request did not say (heartbeat=); zero means 300s.
	PresenceTimeout time.Duration
	// Logger receives operational messages; nil discards them.
	Logger *slog.Logger
	// Registerer receives the node's metrics; nil means none.
	Registerer prometheus.Registerer
}

// Consistency is what a read asks of the node (SpiceDB's modes).
type Consistency int

// The read consistency modes.
const (
	// MinimizeLatency serves from memory: the default without a token.
	MinimizeLatency Consistency = iota
	// AtLeastAsFresh reflects everything the request's token covers.
	AtLeastAsFresh
	// FullyConsistent always reads storage.
	FullyConsistent
)

// ParseConsistency reads the consistency query parameter ("" is the default
// for the presence of a token).
func ParseConsistency(s string, hasToken bool) (Consistency, error) {
	switch s {
	case "":
		if hasToken {
			return AtLeastAsFresh, nil
		}
		return MinimizeLatency, nil
	case "minimize_latency":
		return MinimizeLatency, nil
	case "at_least_as_fresh":
		if !hasToken {
			return 0, fmt.Errorf("consistency=at_least_as_fresh needs a token: %w", ErrBadRequest)
		}
		return AtLeastAsFresh, nil
	case "fully_consistent":
		return FullyConsistent, nil
	}
	return 0, fmt.Errorf("unknown consistency %q (minimize_latency, at_least_as_fresh, fully_consistent): %w", s, ErrBadRequest)
}

// ErrBadRequest wraps request errors the HTTP layer answers with 400.
var ErrBadRequest = errors.New("subscriber: bad request")

// Node is one groupcast node: it applies its region's shard logs in order,
// keeps group views (storage cache ⊕ volatile overlay) current, announces
// edits, and serves reads at the consistency they ask for.
type Node struct {
	cfg     Config
	log     Log
	store   Store
	cache   *storagecache.Cache
	overlay *volatile.Overlay
	clock   *channelgroups.Clock

	viewMu sync.Mutex // serialises view rebuilds with overlay changes and snapshot installs
	shards []*shard
	kick   chan struct{}
	m      nodeMetrics

	// Lock order: viewMu, then msgMu, then a shard's mu.
	msgMu      sync.Mutex
	rings      map[chanKey]*ring
	byChannel  map[chanKey]map[*Parked]struct{}
	tracked    map[channelgroups.GroupKey]*trackedGroup
	containing map[chanKey]map[channelgroups.Group]struct{}
	present    map[chanKey]map[string]struct{} // occupancy, from the log's presence events
	seen       map[chanKey]map[string]seenUser // users this node served, for timeouts

	release     chan struct{}
	workers     *workers
	releaseOnce sync.Once
}

type shard struct {
	mu      sync.Mutex
	applied channelgroups.Position
	changed chan struct{} // closed and replaced when applied advances

	// annotated is the newest message put into a ring, with the tracked
	// groups that held its channel; guarded by Node.msgMu. A group tracked
	// from now on is judged by annotations only after it.
	annotated channelgroups.Position

	announceMu sync.Mutex
	blocked    bool // an edit of this shard is not announced yet: append nothing new

	// cleanMu guards the announced-through watermark: every edit of the
	// shard at or before cleanThrough was appended at or before cleanLast.
	cleanMu      sync.Mutex
	cleanThrough channelgroups.Timetoken
	cleanLast    channelgroups.Position
	cleanTried   time.Time
}

type nodeMetrics struct {
	published prometheus.Counter
	parked    prometheus.Gauge
	lag       prometheus.Histogram
	reads     *prometheus.CounterVec
	fastReads prometheus.Counter // reads.WithLabelValues("fast"), resolved once: the hot path
	applied   prometheus.Counter
	announced *prometheus.CounterVec
}

// NewNode wires a node. It starts nothing: call Start, then Run.
func NewNode(log Log, store Store, cache *storagecache.Cache, overlay *volatile.Overlay, clock *channelgroups.Clock, cfg Config) (*Node, error) {
	if log == nil || store == nil || cache == nil || overlay == nil || clock == nil {
		return nil, errors.New("subscriber: NewNode needs a log, store, cache, overlay and clock")
	}
	if cfg.Region == 0 {
		cfg.Region = 1
	}
	if cfg.Shards == 0 {
		cfg.Shards = channelgroups.DefaultShards
	}
	if cfg.FreshWait == 0 {
		cfg.FreshWait = 250 * time.Millisecond
	}
	if cfg.SweepEvery == 0 {
		cfg.SweepEvery = 30 * time.Second
	}
	if cfg.RefreshEvery == 0 {
		cfg.RefreshEvery = 30 * time.Second
	}
	if cfg.RingSize == 0 {
		cfg.RingSize = 100
	}
	if cfg.RingAge == 0 {
		cfg.RingAge = 20 * time.Minute
	}
	if cfg.PollHold == 0 {
		cfg.PollHold = 280 * time.Second
	}
	if cfg.TrackIdle == 0 {
		cfg.TrackIdle = 5 * time.Minute
	}
	if cfg.PresenceTimeout == 0 {
		cfg.PresenceTimeout = 300 * time.Second
	}
	if cfg.Region < 0 || cfg.Shards < 0 || cfg.FreshWait < 0 || cfg.SweepEvery < 0 || cfg.RingSize < 0 || cfg.RingAge < 0 || cfg.PollHold < 0 || cfg.TrackIdle < 0 {
		return nil, errors.New("subscriber: Region, Shards, FreshWait and SweepEvery must be >= 0")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	n := &Node{cfg: cfg, log: log, store: store, cache: cache, overlay: overlay, clock: clock, kick: make(chan struct{}, 1),
		rings: map[chanKey]*ring{}, byChannel: map[chanKey]map[*Parked]struct{}{}, tracked: map[channelgroups.GroupKey]*trackedGroup{},
		containing: map[chanKey]map[channelgroups.Group]struct{}{}, release: make(chan struct{}), workers: newWorkers(2 * time.Second),
		present: map[chanKey]map[string]struct{}{}, seen: map[chanKey]map[string]seenUser{}}
	for range cfg.Shards {
		n.shards = append(n.shards, &shard{changed: make(chan struct{})})
	}
	n.m = nodeMetrics{
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "groupcast_propagation_lag_seconds",
			Help:    "Age of a log entry (from its append) when this node applied it.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18),
		}),
		reads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "groupcast_group_reads_total",
			Help: "Token-carrying group reads by path: fast (memory), waited (memory after waiting for the log), slow (storage), failed; fully consistent reads count as slow.",
		}, []string{"path"}),
		applied: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "groupcast_log_entries_applied_total", Help: "Shard log entries applied by this node.",
		}),
		parked: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "groupcast_parked_polls", Help: "Subscribe long-polls parked on this node now.",
		}),
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "groupcast_messages_published_total", Help: "Messages appended to the shard logs by this node.",
		}),
		announced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "groupcast_edits_announced_total",
			Help: "Edits appended to their shard log, by how: direct, or later from the outbox; and edits left unannounced.",
		}, []string{"how"}),
	}
	n.m.fastReads = n.m.reads.WithLabelValues("fast")
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{n.m.lag, n.m.reads, n.m.applied, n.m.announced, n.m.published, n.m.parked} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("subscriber: %w", err)
			}
		}
	}
	return n, nil
}

// Start sets every shard's applied position to the end of its log: what is
// before it is already in storage (an edit is stored before it is appended),
// what follows is applied by Run. It also replays the retention window's
// messages into the rings, so cursors from before the start are served.
// Call it once, before serving.
func (n *Node) Start(ctx context.Context) error {
	for i, s := range n.shards {
		p, err := n.log.Last(ctx, i)
		if err != nil {
			return fmt.Errorf("subscriber: start: %w", err)
		}
		s.applied = p
	}
	return n.replay(ctx)
}

// Run applies the shard logs, re-reads storage for unconfirmed overlay
// entries and announces outbox edits, until ctx ends.
func (n *Node) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { n.consume(ctx) })
	wg.Go(func() { n.janitor(ctx) })
	wg.Go(func() { n.dispatch(ctx) })
	wg.Wait()
	return nil
}

func (n *Node) cursors() []channelgroups.Position {
	out := make([]channelgroups.Position, len(n.shards))
	for i := range n.shards {
		out[i] = n.applied(i)
	}
	return out
}

func (n *Node) consume(ctx context.Context) {
	cursors := n.cursors()
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		entries, err := n.log.Read(ctx, cursors, 512, time.Second)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			n.cfg.Logger.Warn("reading the shard logs failed; retrying", "err", err, "backoff", backoff)
			wait(ctx, backoff)
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		for _, e := range entries {
			n.apply(e)
			cursors[e.Shard] = e.Pos
		}
	}
}

func wait(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// apply applies one log entry: the overlay first (so the view has the change
// before anyone can learn the position is applied), then the position.
func (n *Node) apply(le LogEntry) {
	d, err := decodeRecord(le.Data, le.Shard)
	var wake *wakeup
	switch e := d.edit; {
	case err != nil:
		n.cfg.Logger.Error("skipping a log entry", "shard", le.Shard, "pos", le.Pos, "err", err)
	case d.msg != nil:
		d.msg.Pos = le.Pos
		wake = n.applyMessage(d.msg)
	case d.presence != nil:
		wake = n.applyPresence(d.presence, le.Pos)
	default:
		_ = n.clock.Witness(e.At) // a far-future timetoken is not witnessed; the change still applies
		key := channelgroups.GroupKey{Account: e.Account, Group: e.Group}
		n.viewMu.Lock()
		overlaid := n.overlay.Apply(*e)
		if overlaid {
			n.buildLocked(key)
		}
		n.viewMu.Unlock()
		if overlaid {
			// Storage already has the change: refresh the snapshot so the
			// overlay entry is confirmed and dropped.
			n.cache.Refresh(key, func(err error) { n.rebuild(key, err) })
		}
		// A storage-only account (overlay off) sees the change at the next
		// periodic refresh, as a cache polling storage would.
	}
	s := n.shards[le.Shard]
	s.mu.Lock()
	if s.applied.Less(le.Pos) {
		s.applied = le.Pos
		close(s.changed)
		s.changed = make(chan struct{})
	}
	s.mu.Unlock()
	// After the position moved: a poll found now has a cut that includes
	// the message, and one registered later sees it on its first check.
	n.wake(wake)
	n.m.applied.Inc()
	n.m.lag.Observe(time.Since(time.UnixMilli(int64(le.Pos.Ms))).Seconds())
}

// rebuild re-merges a group's view after its snapshot was refreshed.
func (n *Node) rebuild(key channelgroups.GroupKey, err error) {
	if err != nil {
		n.cfg.Logger.Warn("refreshing a group from storage failed", "account", key.Account, "group", key.Group, "err", err)
		return
	}
	n.viewMu.Lock()
	defer n.viewMu.Unlock()
	n.buildLocked(key)
}

// buildLocked rebuilds the view of the group cached now: it drops the overlay
// entries that group's snapshot confirms, merges the rest in and publishes
// the group. If the group is no longer cached its published view is
// withdrawn, so a view can never outlive the snapshot it was built on while
// changes keep arriving. viewMu is held: confirmations, builds and publishes
// happen in one order.
func (n *Node) buildLocked(key channelgroups.GroupKey) *channelgroups.View {
	g, ok := n.cache.Peek(key)
	if !ok {
		n.cache.Unpublish(key)
		return nil
	}
	n.overlay.Confirm(key, g.Snapshot)
	entries, cleared := n.overlay.Entries(key)
	v := channelgroups.Merge(g.Snapshot, entries, cleared)
	g.SetView(v)
	n.cache.Publish(key, g)
	n.trackLocked(key, v)
	return v
}

// janitor re-reads the groups whose overlay entries outlived the TTL
// unconfirmed, and, every RefreshEvery, the groups read since the last round.
func (n *Node) janitor(ctx context.Context) {
	expire := time.NewTicker(500 * time.Millisecond)
	defer expire.Stop()
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	refresh := time.NewTicker(n.cfg.RefreshEvery)
	defer refresh.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-refresh.C:
			n.cache.Touched(func(key channelgroups.GroupKey) {
				n.cache.Refresh(key, func(err error) { n.rebuild(key, err) })
			})
			n.sweepMessages(now)
		case now := <-t.C:
			n.presenceTimeouts(ctx, now)
		case <-expire.C:
			for _, key := range n.overlay.Expired() {
				if _, ok := n.cache.Peek(key); ok {
					n.cache.Refresh(key, func(err error) { n.rebuild(key, err) })
					continue
				}
				// Not cached: load it, which confirms against a fresh read.
				if _, err := n.cache.Get(ctx, key); err == nil {
					n.rebuild(key, nil)
				}
			}
		}
	}
}

// View returns the group's view at the requested consistency. With
// AtLeastAsFresh the view reflects every change tok covers, or the read
// fails with channelgroups.ErrUnavailable; it is never silently stale.
func (n *Node) View(ctx context.Context, key channelgroups.GroupKey, tok *channelgroups.Token, mode Consistency) (*channelgroups.View, error) {
	switch {
	case mode == FullyConsistent:
		return n.slow(ctx, key, tok)
	case mode == MinimizeLatency || tok == nil:
		// Not counted: the path metric is about reads that carry a token,
		// and this is the hot path (HTTP request metrics count every read).
		return n.fast(ctx, key)
	case !n.overlay.Enabled(key.Account):
		return n.slow(ctx, key, tok)
	}
	switch ok, waited := n.catchUp(ctx, tok); {
	case ok && !waited:
		n.m.fastReads.Inc()
		return n.fast(ctx, key)
	case ok:
		n.m.reads.WithLabelValues("waited").Inc()
		return n.fast(ctx, key)
	}
	return n.slow(ctx, key, tok)
}

// catchUp reports whether this node has applied everything tok covers: its
// positions in this region and, for a pending edit, the log position that
// proves it was announced (announcedThrough). It waits on the shard's signal
// up to FreshWait; waited tells whether it had to.
func (n *Node) catchUp(ctx context.Context, tok *channelgroups.Token) (ok, waited bool) {
	if tok.Pending != 0 {
		last, ok := n.announcedThrough(ctx, tok.Shard, tok.Pending)
		if !ok {
			return false, false
		}
		t := tok.Merge(channelgroups.Token{Shard: tok.Shard, Positions: []channelgroups.RegionPosition{{Region: n.cfg.Region, Pos: last}}})
		tok = &t
	}
	if n.covers(tok) {
		return true, false
	}
	return n.await(ctx, tok), true
}

// ErrNoRoute reports a token naming a region this node cannot read.
var ErrNoRoute = fmt.Errorf("subscriber: no storage route to a region the token names: %w", channelgroups.ErrUnavailable)

// read reads the group from this region's storage and from the storage of
// every other region whose edits tok covers, and merges the snapshots.
func (n *Node) read(ctx context.Context, key channelgroups.GroupKey, tok *channelgroups.Token) (channelgroups.Snapshot, error) {
	snap, err := n.store.Read(ctx, key.Account, key.Group)
	if err != nil || tok == nil {
		return snap, err
	}
	regions := map[int]bool{}
	if tok.Origin != 0 && tok.Origin != n.cfg.Region {
		regions[tok.Origin] = true
	}
	for _, rp := range tok.Positions {
		if rp.Region != n.cfg.Region {
			regions[rp.Region] = true
		}
	}
	for r := range regions {
		st, ok := n.cfg.RegionStores[r]
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
func (n *Node) fast(ctx context.Context, key channelgroups.GroupKey) (*channelgroups.View, error) {
	if g, ok := n.cache.Published(key); ok {
		if v := g.View(); v != nil {
			return v, nil
		}
	}
	g, err := n.cache.Get(ctx, key)
	if err != nil {
		n.m.reads.WithLabelValues("failed").Inc()
		return nil, err
	}
	n.viewMu.Lock()
	defer n.viewMu.Unlock()
	if v := n.buildLocked(key); v != nil {
		return v, nil
	}
	// Evicted between the load and now: serve a merge of what was loaded.
	entries, cleared := n.overlay.Entries(key)
	return channelgroups.Merge(g.Snapshot, entries, cleared), nil
}

// slow reads the group from storage (LOCAL_QUORUM in every region tok's
// edits come from), merges the overlay and offers the snapshot to the cache.
func (n *Node) slow(ctx context.Context, key channelgroups.GroupKey, tok *channelgroups.Token) (*channelgroups.View, error) {
	snap, err := n.read(ctx, key, tok)
	if err != nil {
		n.m.reads.WithLabelValues("failed").Inc()
		return nil, err
	}
	n.m.reads.WithLabelValues("slow").Inc()
	n.viewMu.Lock()
	defer n.viewMu.Unlock()
	n.cache.Offer(key, &snap)
	n.buildLocked(key)
	// Serve the merge of the snapshot just read: whatever the cache keeps,
	// this read reflects everything storage held when it was made.
	entries, cleared := n.overlay.Entries(key)
	return channelgroups.Merge(&snap, entries, cleared), nil
}

// announcedThrough tells whether every edit of the shard up to t is known to
// be in the log, and up to which position: then covering that position
// honours a token's pending edit from memory. The proof: read the shard's
// oldest outbox record first (records are removed only after their append),
// then the log's last position. If no record is at or before t, every such
// edit was appended before the second read. Checks are shared per shard and
// not retried within 100ms of a failed one.
func (n *Node) announcedThrough(ctx context.Context, shard int, t channelgroups.Timetoken) (channelgroups.Position, bool) {
	if shard < 0 || shard >= len(n.shards) {
		return channelgroups.Position{}, false
	}
	s := n.shards[shard]
	if !s.cleanMu.TryLock() {
		return channelgroups.Position{}, false // another reader is checking: do not queue behind it
	}
	defer s.cleanMu.Unlock()
	if s.cleanThrough >= t {
		return s.cleanLast, true
	}
	if time.Since(s.cleanTried) < 100*time.Millisecond {
		return channelgroups.Position{}, false
	}
	s.cleanTried = time.Now()
	start := n.clock.Now()
	oldest, err := n.store.Pending(ctx, shard, 1)
	if err != nil {
		return channelgroups.Position{}, false
	}
	through := start
	if len(oldest) > 0 {
		through = min(through, oldest[0].At-1)
	}
	last, err := n.log.Last(ctx, shard)
	if err != nil {
		return channelgroups.Position{}, false
	}
	if through > s.cleanThrough {
		s.cleanThrough, s.cleanLast = through, last
	}
	return s.cleanLast, s.cleanThrough >= t
}

// covers reports whether this node has applied everything tok covers in
// this region. Positions in other regions are not followed here yet: a token
// carrying one is not covered.
func (n *Node) covers(tok *channelgroups.Token) bool {
	if tok.Shard < 0 || tok.Shard >= len(n.shards) {
		return false
	}
	s := n.shards[tok.Shard]
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rp := range tok.Positions {
		if rp.Region != n.cfg.Region || s.applied.Less(rp.Pos) {
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
	for _, rp := range tok.Positions {
		if rp.Region != n.cfg.Region {
			return false // another region's log: not followed here
		}
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
