package subscriber

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/groupcast/groupcast/archive"
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
	// Remotes are the other regions' logs, by region number: the primary of
	// each shard copies their entries into this region's log (see
	// replicate.go). None means this region runs alone.
	Remotes map[int]Log
	// RingSize is how many messages each channel keeps; zero means 100.
	RingSize int
	// RingAge is how long messages are kept; zero means 20m.
	RingAge time.Duration
	// RingBytes bounds what the rings of all channels hold together:
	// payloads, meta, names and about 256 bytes per message (the encoding
	// built for subscribers once a message is delivered comes on top).
	// Past it the oldest messages go first, whichever their channel; a
	// subscriber whose cursor is before them gets what is left, as when a
	// ring wraps. Zero means 256 MiB.
	RingBytes int64
	// PollHold is how long a subscribe parks at most; zero means 280s.
	PollHold time.Duration
	// TrackIdle is how long a group with no subscribers stays tracked;
	// zero means 5m.
	TrackIdle time.Duration
	// PresenceTimeout is how long a user who sent no subscribe or heartbeat
	// stays present when the request did not say (heartbeat=); zero means 300s.
	PresenceTimeout time.Duration
	// PresenceMax bounds the presence records, one per (channel, uuid),
	// this node keeps: of the users it serves, and of its shards' occupancy.
	// At it, a subscribe or heartbeat that would add a record is refused
	// with ErrPresenceFull. Zero means 1,000,000.
	PresenceMax int
	// Ownership says which shards this node serves and of which it is the
	// primary; nil means every shard (one node, embedded mode).
	Ownership Ownership
	// ReleaseSpread is how long a node that loses shards spreads the
	// answers of their parked polls over, so that their clients do not all
	// come back at once; zero means 1s.
	ReleaseSpread time.Duration
	// Archive is the durable message store (Message Persistence): the
	// primary of each shard stores the shard's messages in it (see
	// archive.go) and history, message counts and deletes read and change
	// it. Nil means history is what the rings hold.
	Archive archive.Store
	// HistoryRetention is how long Archive keeps a message published
	// without a ttl; zero means 7 days, a negative value until deleted.
	HistoryRetention time.Duration
	// ArchiveBatch is the most messages the archiver stores at once; zero
	// means 500.
	ArchiveBatch int
	// ArchiveFlush is how long a message the archiver read waits for
	// others to share its batch; zero means 50ms.
	ArchiveFlush time.Duration
	// Now is the node's wall clock; nil means time.Now.
	Now func() time.Time
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

// DefaultHistoryRetention is how long history keeps a message published
// without a ttl when Config.HistoryRetention is zero: a week, PubNub's
// most common keyset retention, long enough for a chat backlog and short
// enough that a channel's stored history stays a handful of day buckets.
const DefaultHistoryRetention = 7 * 24 * time.Hour

// ErrBadRequest wraps request errors the HTTP layer answers with 400.
var ErrBadRequest = errors.New("subscriber: bad request")

// ErrNotServing reports a request for a shard this node does not serve (yet):
// it lost the shard, or is still rebuilding it after gaining it.
var ErrNotServing = fmt.Errorf("subscriber: this node does not serve the account's shard now: %w", channelgroups.ErrUnavailable)

// Node is one groupcast node. It follows the logs of the shards it owns, in
// order, and wires the parts that act on each entry:
//
//   - views: group views (storage cache ⊕ volatile overlay) and causal reads;
//   - announcer: appends edits to their shard's log, drains the outbox;
//   - hub: message rings, parked polls and the G3 tracking of groups;
//   - presence: who is on which channel.
//
// Lock order: views.mu, then hub.mu, then a shard's mu; presence.mu before
// hub.mu. A node that gains a shard rebuilds its state from the log and
// storage before it serves it; one that loses a shard answers the shard's
// parked polls and drops its state. One that finds a gap in a shard's log
// (it fell further behind than the log keeps) drops the shard's state the
// same way before it applies what follows (gap.go).
type Node struct {
	cfg    Config
	now    func() time.Time
	log    Log
	clock  *channelgroups.Clock
	own    Ownership
	shards []*shard
	m      nodeMetrics
	gapm   gapMetrics

	views *views
	ann   *announcer
	repl  *replicas
	hub   *hub
	pres  *presenceBook
	arch  *archiver // nil without Config.Archive
	// archived is, per shard, the newest archive checkpoint this node knows
	// of (its archiver's, or one a history read fetched): see awaitArchived.
	archivedMu sync.Mutex
	archived   map[int]channelgroups.Position
	// hidden are the recent deletions of history, which the rings' copies
	// of the deleted messages must not serve.
	hidden hiddenRanges

	// Only the consume goroutine (and Start, before it) touch these.
	assigned *Assignment
	retry    bool
}

// shard is this node's state of one account shard's log.
type shard struct {
	mu      sync.Mutex
	applied channelgroups.Position
	changed chan struct{} // closed and replaced when applied advances
	serving atomic.Bool   // owned and rebuilt: the node follows its log
	ready   chan struct{} // closed while serving; replaced when lost; guarded by mu
	// gap is the newest position of the shard's log this node lost to a
	// gap (see gap.go); zero if none.
	gap channelgroups.Position
	// remote is, per other region, the origin position of the newest entry
	// of that region's log applied here (copied into this log, see
	// replicate.go); lost is the newest such position whose entries a
	// replicator could not copy (the other region's log was trimmed first).
	// Both are guarded by mu and advance with applied.
	remote map[int]channelgroups.Position
	lost   map[int]channelgroups.Position
}

type nodeMetrics struct {
	lag       prometheus.Histogram
	applied   prometheus.Counter
	moves     *prometheus.CounterVec
	rebuild   prometheus.Histogram
	serving   prometheus.Gauge
	reads     *prometheus.CounterVec
	fastReads prometheus.Counter // reads.WithLabelValues("fast"), resolved once: the hot path
	published prometheus.Counter
	parked    prometheus.Gauge
	announced *prometheus.CounterVec
	// historyIncomplete counts history reads served without waiting any
	// longer for the archive to hold what the rings dropped.
	historyIncomplete prometheus.Counter
}

// fixed is the Ownership of a node that owns every shard.
type fixed struct{ a *Assignment }

func (f fixed) Assignment() *Assignment  { return f.a }
func (f fixed) Changed() <-chan struct{} { return nil }
func (f fixed) Ready(uint64)             {}

// validate fills Config's zero values with their defaults and rejects
// values that cannot work.
func (cfg *Config) validate() error {
	cfg.Region = cmp.Or(cfg.Region, 1)
	cfg.Shards = cmp.Or(cfg.Shards, channelgroups.DefaultShards)
	cfg.FreshWait = cmp.Or(cfg.FreshWait, 250*time.Millisecond)
	cfg.SweepEvery = cmp.Or(cfg.SweepEvery, 30*time.Second)
	cfg.RefreshEvery = cmp.Or(cfg.RefreshEvery, 30*time.Second)
	cfg.RingSize = cmp.Or(cfg.RingSize, 100)
	cfg.RingAge = cmp.Or(cfg.RingAge, 20*time.Minute)
	cfg.RingBytes = cmp.Or(cfg.RingBytes, 256<<20)
	cfg.PresenceMax = cmp.Or(cfg.PresenceMax, 1_000_000)
	cfg.PollHold = cmp.Or(cfg.PollHold, 280*time.Second)
	cfg.TrackIdle = cmp.Or(cfg.TrackIdle, 5*time.Minute)
	cfg.PresenceTimeout = cmp.Or(cfg.PresenceTimeout, 300*time.Second)
	cfg.ReleaseSpread = cmp.Or(cfg.ReleaseSpread, time.Second)
	cfg.HistoryRetention = cmp.Or(cfg.HistoryRetention, DefaultHistoryRetention)
	cfg.ArchiveBatch = cmp.Or(cfg.ArchiveBatch, 500)
	cfg.ArchiveFlush = cmp.Or(cfg.ArchiveFlush, 50*time.Millisecond)
	var errs []error
	if cfg.Region < 1 {
		errs = append(errs, fmt.Errorf("Region must be >= 1, got %d", cfg.Region))
	}
	if cfg.Shards < 1 || cfg.Shards > 1<<16 {
		errs = append(errs, fmt.Errorf("Shards must be between 1 and 65536, got %d", cfg.Shards))
	}
	if cfg.RingSize < 1 {
		errs = append(errs, fmt.Errorf("RingSize must be >= 1, got %d", cfg.RingSize))
	}
	if cfg.RingBytes < 1 {
		errs = append(errs, fmt.Errorf("RingBytes must be >= 1, got %d", cfg.RingBytes))
	}
	if cfg.ArchiveBatch < 1 {
		errs = append(errs, fmt.Errorf("ArchiveBatch must be >= 1, got %d", cfg.ArchiveBatch))
	}
	if cfg.PresenceMax < 1 {
		errs = append(errs, fmt.Errorf("PresenceMax must be >= 1, got %d", cfg.PresenceMax))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"FreshWait", cfg.FreshWait}, {"SweepEvery", cfg.SweepEvery}, {"RefreshEvery", cfg.RefreshEvery},
		{"RingAge", cfg.RingAge}, {"PollHold", cfg.PollHold}, {"TrackIdle", cfg.TrackIdle},
		{"PresenceTimeout", cfg.PresenceTimeout}, {"ReleaseSpread", cfg.ReleaseSpread}, {"ArchiveFlush", cfg.ArchiveFlush},
	} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("%s must be > 0, got %v", d.name, d.v))
		}
	}
	for r, st := range cfg.RegionStores {
		if r < 1 || st == nil {
			errs = append(errs, fmt.Errorf("RegionStores[%d] must be a store of a region >= 1", r))
		}
	}
	for r, l := range cfg.Remotes {
		if r < 1 || r == cfg.Region || l == nil {
			errs = append(errs, fmt.Errorf("Remotes[%d] must be the log of another region >= 1 (this one is %d)", r, cfg.Region))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("subscriber: %w", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return nil
}

// NewNode wires a node. It starts nothing: call Start, then Run.
func NewNode(log Log, store Store, cache *storagecache.Cache, overlay *volatile.Overlay, clock *channelgroups.Clock, cfg Config) (*Node, error) {
	if log == nil || store == nil || cache == nil || overlay == nil || clock == nil {
		return nil, errors.New("subscriber: NewNode needs a log, store, cache, overlay and clock")
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, now: cfg.Now, log: log, clock: clock, own: cfg.Ownership}
	if n.own == nil {
		n.own = fixed{All(cfg.Shards)}
	}
	for range cfg.Shards {
		n.shards = append(n.shards, &shard{changed: make(chan struct{}), ready: make(chan struct{})})
	}
	n.m = nodeMetrics{
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "groupcast_propagation_lag_seconds",
			Help:    "Age of a log entry (from its append) when this node applied it.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18),
		}),
		applied: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "groupcast_log_entries_applied_total", Help: "Shard log entries applied by this node.",
		}),
		moves: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "groupcast_shards_moved_total", Help: "Shards this node started (gained) or stopped (lost) serving.",
		}, []string{"how"}),
		rebuild: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "groupcast_shard_rebuild_seconds",
			Help:    "How long a gained shard took to rebuild (log position, rings from the retention window) before it was served.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		serving: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "groupcast_shards_serving", Help: "Shards whose log this node follows now.",
		}),
		reads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "groupcast_group_reads_total",
			Help: "Token-carrying group reads by path: fast (memory), waited (memory after waiting for the log), slow (storage), failed; fully consistent reads count as slow.",
		}, []string{"path"}),
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
		historyIncomplete: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "groupcast_history_incomplete_total",
			Help: "History reads and message counts served after waiting 2 s for the archive to store what the rings had dropped, without it: they may miss messages (the archive is failing or far behind).",
		}),
	}
	n.m.fastReads = n.m.reads.WithLabelValues("fast")
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{n.m.lag, n.m.applied, n.m.moves, n.m.rebuild, n.m.serving, n.m.reads, n.m.parked, n.m.published, n.m.announced, n.m.historyIncomplete} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("subscriber: %w", err)
			}
		}
	}
	var err error
	if n.hub, err = newHub(n); err != nil {
		return nil, err
	}
	if err := n.initGapMetrics(); err != nil {
		return nil, err
	}
	if n.repl, err = newReplicas(cfg.Registerer); err != nil {
		return nil, err
	}
	n.views = &views{n: n, store: store, cache: cache, overlay: overlay}
	n.ann = newAnnouncer(n, store)
	if n.pres, err = newPresenceBook(n); err != nil {
		return nil, err
	}
	if cfg.Archive != nil {
		if n.arch, err = newArchiver(n); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// Start brings the node to its shards: for each shard it owns it sets the
// applied position to the end of the shard's log (what is before it is
// already in storage: an edit is stored before it is appended; what follows
// is applied by Run) and replays the retention window's messages into the
// rings, so cursors from before the start are served. Call it once, before
// serving.
func (n *Node) Start(ctx context.Context) error {
	if err := n.reconcile(ctx); err != nil {
		return fmt.Errorf("subscriber: start: %w", err)
	}
	return nil
}

// Run follows the logs of the shards this node owns (taking up and giving
// up shards as its Ownership changes), re-reads storage for unconfirmed
// overlay entries, announces outbox edits and archives messages, until ctx
// ends; then it stores the messages read but not archived yet (bounded by
// a few seconds) before it returns.
func (n *Node) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { n.consume(ctx) })
	wg.Go(func() { n.janitor(ctx) })
	wg.Go(func() { n.ann.dispatch(ctx) })
	for region, remote := range n.cfg.Remotes {
		wg.Go(func() { n.replicate(ctx, region, remote) })
	}
	if n.arch != nil {
		wg.Go(func() { n.arch.run(ctx) })
	}
	wg.Wait()
	return nil
}

// Serving reports how many shards this node serves now.
func (n *Node) Serving() int {
	c := 0
	for _, s := range n.shards {
		if s.serving.Load() {
			c++
		}
	}
	return c
}

// reconcile takes up the shards the current assignment gives this node and
// gives up the ones it took away. It reports the assignment's version as
// ready once every owned shard is served. Only the consume goroutine (and
// Start, before it runs) calls it.
func (n *Node) reconcile(ctx context.Context) error {
	a := n.own.Assignment()
	if a == n.assigned && !n.retry {
		return nil
	}
	errs := n.takeOver(ctx, a)
	var gains []int
	for i, s := range n.shards {
		serving := s.serving.Load()
		switch owns := a.Owns(i); {
		case serving && !owns:
			n.lose(i)
		case !serving && owns:
			gains = append(gains, i)
		}
	}
	// Gained shards rebuild side by side (each replays its own log), so
	// that taking over many shards costs about the longest replay.
	var (
		mu  sync.Mutex
		wg  sync.WaitGroup
		sem = make(chan struct{}, maxParallelGains)
	)
	for _, i := range gains {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := n.gain(ctx, i); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("shard %d: %w", i, err))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	n.assigned, n.retry = a, len(errs) > 0
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	n.m.serving.Set(float64(a.Count()))
	n.own.Ready(a.Version)
	return nil
}

// maxParallelGains bounds how many gained shards rebuild at once.
const maxParallelGains = 8

// takeOver checks the outbox of every shard this node has just become the
// primary of (see announcer.takeOver), a few at a time.
func (n *Node) takeOver(ctx context.Context, a *Assignment) []error {
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
		sem  = make(chan struct{}, 16)
	)
	for i := range n.shards {
		if !a.IsPrimary(i) || (n.assigned != nil && n.assigned.IsPrimary(i) && !n.retry) {
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := n.ann.takeOver(ctx, i); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("shard %d: reading its outbox: %w", i, err))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errs
}

// gain starts serving a shard: its applied position becomes the end of its
// log, the state kept from an earlier time the node served it is dropped,
// cached groups of its accounts are dropped (the node did not follow their
// changes), and the retention window's messages and presence events are
// replayed into fresh rings. Requests for the shard wait until it is done.
func (n *Node) gain(ctx context.Context, i int) error {
	start := n.now()
	// How far other regions' logs were copied, read before the end of the
	// log: every entry copied up to these marks is at or before last.
	remote, err := n.log.Replicated(ctx, i)
	if err != nil {
		return err
	}
	last, err := n.log.Last(ctx, i)
	if err != nil {
		return err
	}
	n.hub.dropShard(i)
	n.pres.dropShard(i)
	n.views.dropShard(i)
	s := n.shards[i]
	s.mu.Lock()
	s.applied = last
	s.remote, s.lost = remote, nil
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	if err := n.replay(ctx, i, last); err != nil {
		n.hub.dropShard(i)
		n.pres.dropShard(i)
		return err
	}
	s.mu.Lock()
	s.serving.Store(true)
	close(s.ready)
	s.mu.Unlock()
	n.m.moves.WithLabelValues("gained").Inc()
	n.m.rebuild.Observe(n.now().Sub(start).Seconds())
	return nil
}

// lose stops serving a shard: its parked polls answer (spread over
// ReleaseSpread) with the cursor they were given, and its state is dropped.
// Their clients come back through any node to the shard's new owners.
func (n *Node) lose(i int) {
	s := n.shards[i]
	s.mu.Lock()
	s.serving.Store(false)
	s.ready = make(chan struct{})
	s.mu.Unlock()
	polls := n.hub.dropShard(i)
	n.pres.dropShard(i)
	n.views.dropShard(i)
	n.hub.releaseOver(polls, n.cfg.ReleaseSpread)
	n.m.moves.WithLabelValues("lost").Inc()
}

// serve waits, never longer than FreshWait, until the node serves the shard.
func (n *Node) serve(ctx context.Context, i int) bool {
	if i < 0 || i >= len(n.shards) {
		return false
	}
	s := n.shards[i]
	if s.serving.Load() {
		return true
	}
	s.mu.Lock()
	ready := s.ready
	s.mu.Unlock()
	t := time.NewTimer(n.cfg.FreshWait)
	defer t.Stop()
	select {
	case <-ready:
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	return false
}

// appendCursors appends where the node is in each shard it serves to out.
func (n *Node) appendCursors(out []Cursor) []Cursor {
	for i, s := range n.shards {
		if s.serving.Load() {
			out = append(out, Cursor{Shard: i, After: n.applied(i)})
		}
	}
	return out
}

func (n *Node) consume(ctx context.Context) {
	backoff := 50 * time.Millisecond
	// read.ctx ends when the assignment changes (one watcher per change,
	// not per read), interrupting a blocking read so that gained shards
	// are followed at once.
	var read struct {
		ctx  context.Context
		stop context.CancelFunc
	}
	defer func() {
		if read.stop != nil {
			read.stop()
		}
	}()
	var cursors []Cursor // reused: one read per message under load
	for ctx.Err() == nil {
		changed := n.own.Changed()
		if err := n.reconcile(ctx); err != nil && ctx.Err() == nil {
			n.cfg.Logger.Warn("taking up shards failed; retrying", "err", err)
		}
		if read.ctx == nil || read.ctx.Err() != nil {
			read.ctx, read.stop = context.WithCancel(ctx)
			if changed != nil {
				go func(rctx context.Context, stop context.CancelFunc) {
					select {
					case <-changed:
						stop()
					case <-rctx.Done():
					}
				}(read.ctx, read.stop)
			}
		}
		rctx := read.ctx
		cursors = n.appendCursors(cursors[:0])
		if len(cursors) == 0 {
			t := time.NewTimer(time.Second)
			select {
			case <-rctx.Done():
			case <-t.C:
			}
			t.Stop()
			continue
		}
		entries, err := n.log.Read(rctx, cursors, 512, time.Second)
		if err != nil {
			if rctx.Err() != nil {
				continue
			}
			n.cfg.Logger.Warn("reading the shard logs failed; retrying", "err", err, "backoff", backoff)
			wait(ctx, backoff)
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		for i, e := range entries {
			if e.Gap {
				n.repairGap(e, nextOf(entries[i+1:], e.Shard))
				continue
			}
			n.apply(e)
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

// apply applies one log entry: the views first (so a view has the change
// before anyone can learn the position is applied), then the position, then
// the wake-up of the polls a message concerns.
func (n *Node) apply(le LogEntry) {
	if n.hub.beforeApply != nil {
		n.hub.beforeApply(le.Pos)
	}
	d, err := decodeRecord(le.Data, le.Shard)
	var wake *wakeup
	switch {
	case err != nil:
		n.cfg.Logger.Error("skipping a log entry", "shard", le.Shard, "pos", le.Pos, "err", err)
	case d.msg != nil:
		d.msg.Pos = le.Pos
		wake = n.hub.applyMessage(d.msg)
	case d.presence != nil:
		wake = n.pres.apply(d.presence, le.Pos)
	case d.del != nil:
		n.hidden.add(*d.del, n.now(), n.cfg.RingAge)
	case d.gap:
		n.repairRemoteGap(le.Shard, d.origin, d.originPos)
	default:
		_ = n.clock.Witness(d.edit.At) // a far-future timetoken is not witnessed; the change still applies
		n.hub.recordEdit(*d.edit, le.Pos)
		n.views.applyEdit(*d.edit)
	}
	if wake != nil && n.hub.afterInsert != nil {
		n.hub.afterInsert(le.Pos) // a test's seam between the ring insert and the position
	}
	s := n.shards[le.Shard]
	s.mu.Lock()
	if s.applied.Less(le.Pos) {
		s.applied = le.Pos
		if err == nil && d.origin != 0 {
			s.advanceRemote(d.origin, d.originPos, d.gap)
		}
		close(s.changed)
		s.changed = make(chan struct{})
	}
	s.mu.Unlock()
	// After the position moved: a poll found now has a cut that includes
	// the message, and one registered later sees it on its first check.
	n.hub.wake(wake)
	n.m.applied.Inc()
	n.m.lag.Observe(n.now().Sub(time.UnixMilli(int64(le.Pos.Ms))).Seconds())
}

// advanceRemote records that this node applied region's log up to p (lost
// marks a gap up to p: its entries were never copied). s.mu is held.
func (s *shard) advanceRemote(region int, p channelgroups.Position, lost bool) {
	if s.remote == nil {
		s.remote = map[int]channelgroups.Position{}
	}
	s.remote[region] = channelgroups.MaxPosition(s.remote[region], p)
	if lost {
		if s.lost == nil {
			s.lost = map[int]channelgroups.Position{}
		}
		s.lost[region] = channelgroups.MaxPosition(s.lost[region], p)
	}
}

// applied is where the node is in a shard's log.
func (n *Node) applied(shard int) channelgroups.Position {
	s := n.shards[shard]
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.applied
}

// janitor re-reads the groups whose overlay entries outlived the TTL
// unconfirmed, and, every RefreshEvery, the groups read since the last
// round; it times out absent users and sweeps old messages.
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
		case <-refresh.C:
			n.views.refreshTouched()
			n.hub.sweep(n.now())
		case <-t.C:
			n.pres.timeouts(ctx, n.now())
		case <-expire.C:
			n.views.refreshExpired(ctx)
		}
	}
}

// replayOverlay is how far back a gained shard's edits are put into the
// overlay as well as into the groups' recent edits.
const replayOverlay = 10 * time.Second

// replay loads the retention window's messages, presence events and edits
// of a shard's log, up to last, into the rings and the groups' recent
// edits, and the last replayOverlay of edits into the overlay.
func (n *Node) replay(ctx context.Context, shard int, last channelgroups.Position) error {
	now := n.now()
	after := channelgroups.Position{Ms: uint64(now.Add(-n.cfg.RingAge).UnixMilli())}
	recent := uint64(now.Add(-replayOverlay).UnixMilli())
	for after.Less(last) {
		entries, err := n.log.Range(ctx, shard, after, 1000)
		if err != nil {
			return fmt.Errorf("replaying shard %d: %w", shard, err)
		}
		if len(entries) == 0 {
			break
		}
		for _, le := range entries {
			if last.Less(le.Pos) {
				return nil
			}
			if le.Gap {
				// The retention window was trimmed: cursors before the
				// gap cannot be served in full.
				n.markGap(shard, le.Pos)
				after = le.Pos
				continue
			}
			d, err := decodeRecord(le.Data, shard)
			if err == nil && d.gap {
				n.repairRemoteGap(shard, d.origin, d.originPos)
			}
			if err == nil && d.origin != 0 {
				s := n.shards[shard]
				s.mu.Lock()
				s.advanceRemote(d.origin, d.originPos, d.gap)
				s.mu.Unlock()
			}
			if err == nil && d.msg != nil {
				d.msg.Pos = le.Pos
				n.hub.applyMessage(d.msg)
			} else if err == nil && d.presence != nil {
				n.pres.apply(d.presence, le.Pos)
			} else if err == nil && d.del != nil {
				n.hidden.add(*d.del, now, n.cfg.RingAge)
			} else if err == nil && d.edit != nil {
				n.hub.recordEdit(*d.edit, le.Pos)
				if le.Pos.Ms >= recent || d.origin != 0 {
					// Recent edits go into the overlay too: a storage read
					// that was in flight when the shard was gained may
					// predate them, and the overlay is what makes a view
					// reflect the log regardless. So do copies of other
					// regions' edits of the whole window: this region's
					// datacenter may lag their region's (Cassandra copies
					// between datacenters on its own time), and the shard's
					// remote positions, read from the log's marks, say
					// this node has them. (Older than the window, the
					// datacenters are taken to agree.)
					n.views.applyEdit(*d.edit)
				}
			}
			after = le.Pos
		}
	}
	return nil
}
