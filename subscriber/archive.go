package subscriber

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/groupcast/groupcast/archive"
	"github.com/groupcast/groupcast/channelgroups"
)

// The archiver: Message Persistence. On every shard it is the primary of,
// a node follows the shard's log with a reader of its own (not the consume
// loop's: storing history never holds up delivery; a publish is
// acknowledged once it is in the log) and stores the published messages it
// finds (kind "m", not signals, not store=0) in Config.Archive, in batches
// of at most ArchiveBatch messages and archiveBatchBytes of payload,
// written at the latest ArchiveFlush after the first of them was read, and the message actions added and removed
// (kind "a", actions.go) with them, in log order. After each batch it records how far it got
// (Store.SetCheckpoint, or in the batch's own write when the store is an
// archive.AppendThrougher); a node that becomes a shard's primary starts from
// the shard's checkpoint. Whatever was stored between the last checkpoint
// and a crash or a hand-over is stored again, which Append ignores.
//
// A gap in the log (the archiver fell further behind than the log keeps)
// loses its messages to history: it is counted and logged. At shutdown the
// archiver stores what it read and what the log still holds, within
// archiveDrain.

// archiveDrain bounds the final flush at shutdown.
const archiveDrain = 5 * time.Second

// checkpointEvery is how often a shard's checkpoint moves when only entries
// that are not stored (edits, presence) went by.
const checkpointEvery = time.Second

// archiver stores the messages of the shards this node is the primary of.
// Only its run goroutine touches its fields (the metrics aside).
type archiver struct {
	n     *Node
	store archive.Store
	m     archiveMetrics

	// cursor is, per shard this node archives, the position of the newest
	// entry read; saved, the checkpoint last stored for it.
	cursor, saved map[int]channelgroups.Position
	pending       []archive.Message
	pendingBytes  int // payload and meta bytes of pending
	// acts are the action adds and removes read, in log order, stored
	// after pending's messages.
	acts []actionOp
	// flushAt is when the pending messages must be stored at the latest.
	flushAt        time.Time
	lastCheckpoint time.Time
	cursors        []Cursor // reused by every read
}

// actionOp is an action added (remove false) or removed.
type actionOp struct {
	act    archive.Action
	remove bool
}

// npending is how many messages and action changes wait to be stored.
func (ar *archiver) npending() int { return len(ar.pending) + len(ar.acts) }

// archiveBatchBytes bounds the payload and meta bytes of one batch, besides
// ArchiveBatch's count: a batch is held twice while it is written (here and
// in the store's transaction), and 500 messages of 32 KiB would be 16 MiB.
const archiveBatchBytes = 4 << 20

// archiveRead is the most log entries one read brings in: the rest of a
// burst is read after the batch is stored, not held meanwhile.
const archiveRead = 128

// archiveLinger is how long the archiver waits, once a batch has begun,
// before reading a log that gave it fewer than archiveRead entries: a
// read returns as soon as one entry is there, so without it the archiver
// would wake up for every message published (and take the node's CPU
// from delivering them) only to add one message to a batch it stores
// later anyway. What accumulates in the meantime is a few milliseconds of
// the log, which keeps far more.
const archiveLinger = 5 * time.Millisecond

// full reports whether the pending batch is to be stored before more is
// read: ArchiveBatch entries or archiveBatchBytes bytes.
func (ar *archiver) full() bool {
	return ar.npending() >= ar.n.cfg.ArchiveBatch || ar.pendingBytes >= archiveBatchBytes
}

type archiveMetrics struct {
	archived prometheus.Counter
	batches  prometheus.Counter
	lag      prometheus.Histogram
	errors   prometheus.Counter
	gaps     prometheus.Counter
	actions  prometheus.Counter
}

func newArchiver(n *Node) (*archiver, error) {
	ar := &archiver{n: n, store: n.cfg.Archive, cursor: map[int]channelgroups.Position{}, saved: map[int]channelgroups.Position{}}
	ar.m = archiveMetrics{
		archived: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "groupcast_archived_messages_total", Help: "Messages this node stored for history (replays after a hand-over included).",
		}),
		batches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "groupcast_archive_batches_total", Help: "Batches of messages this node stored for history.",
		}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "groupcast_archive_lag_seconds",
			Help:    "Age (from its append to the log) of the oldest message of a batch when the batch was stored for history.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "groupcast_archive_errors_total", Help: "Failed log reads, stores and checkpoints of the archiver (retried), and messages the store refused (dropped).",
		}),
		actions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "groupcast_archived_actions_total", Help: "Message actions this node added to or removed from the store (replays after a hand-over included).",
		}),
		gaps: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "groupcast_archive_gaps_total", Help: "Gaps in a shard log the archiver met: entries dropped from the log before they were archived, their messages lost to history.",
		}),
	}
	if reg := n.cfg.Registerer; reg != nil {
		for _, c := range []prometheus.Collector{ar.m.archived, ar.m.batches, ar.m.lag, ar.m.errors, ar.m.gaps, ar.m.actions} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("subscriber: %w", err)
			}
		}
	}
	return ar, nil
}

// run archives until ctx ends, then drains.
func (ar *archiver) run(ctx context.Context) {
	n := ar.n
	backoff := 50 * time.Millisecond
	fail := func(what string, err error) {
		ar.m.errors.Inc()
		n.cfg.Logger.Warn("archive: "+what+" failed; retrying", "err", err, "backoff", backoff)
		wait(ctx, backoff)
		backoff = min(2*backoff, 2*time.Second)
	}
	for ctx.Err() == nil {
		if err := ar.follow(ctx); err != nil {
			fail("reading a checkpoint", err)
			continue
		}
		if len(ar.cursor) == 0 {
			wait(ctx, 250*time.Millisecond)
			continue
		}
		if !ar.full() {
			block := time.Second
			if ar.npending() > 0 {
				block = max(time.Until(ar.flushAt), time.Millisecond)
			}
			ar.cursors = ar.appendCursors(ar.cursors[:0])
			entries, err := n.log.Read(ctx, ar.cursors, min(n.cfg.ArchiveBatch, archiveRead), block)
			if err != nil {
				if ctx.Err() == nil {
					fail("reading the shard logs", err)
				}
				continue
			}
			ar.take(entries)
			if len(entries) < archiveRead && ar.npending() > 0 && !ar.full() {
				wait(ctx, min(archiveLinger, time.Until(ar.flushAt)))
			}
		}
		if ar.full() || ar.npending() > 0 && !time.Now().Before(ar.flushAt) ||
			ar.npending() == 0 && time.Since(ar.lastCheckpoint) >= checkpointEvery {
			if err := ar.flush(ctx); err != nil {
				if ctx.Err() == nil {
					fail("storing messages", err)
				}
				continue
			}
		}
		backoff = 50 * time.Millisecond
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), archiveDrain)
	defer cancel()
	if err := ar.drain(dctx); err != nil {
		ar.m.errors.Inc()
		n.cfg.Logger.Warn("archive: storing the last messages at shutdown failed; the next primary stores them from the checkpoint", "err", err)
	}
}

// follow starts archiving the shards this node became the primary of, from
// their checkpoints, and stops archiving those it no longer is.
func (ar *archiver) follow(ctx context.Context) error {
	a := ar.n.own.Assignment()
	for shard := range ar.cursor {
		if !a.IsPrimary(shard) {
			delete(ar.cursor, shard)
			delete(ar.saved, shard)
		}
	}
	for shard := range ar.n.shards {
		if _, ok := ar.cursor[shard]; ok || !a.IsPrimary(shard) {
			continue
		}
		c, err := ar.store.Checkpoint(ctx, shard)
		if err != nil {
			return fmt.Errorf("shard %d: %w", shard, err)
		}
		ar.cursor[shard], ar.saved[shard] = c, c
	}
	return nil
}

func (ar *archiver) appendCursors(out []Cursor) []Cursor {
	for shard, c := range ar.cursor {
		out = append(out, Cursor{Shard: shard, After: c})
	}
	return out
}

// take adds what entries hold for history to the pending batch and moves
// the cursors past them.
func (ar *archiver) take(entries []LogEntry) {
	for _, le := range entries {
		if ar.full() {
			return // the rest is read again once the batch is stored
		}
		c, ok := ar.cursor[le.Shard]
		if !ok || !c.Less(le.Pos) {
			continue // a shard given up since the read, or an entry already read
		}
		ar.cursor[le.Shard] = le.Pos
		if le.Gap {
			ar.m.gaps.Inc()
			ar.n.cfg.Logger.Warn("archive: the shard log dropped entries before they were archived; their messages are lost to history",
				"shard", le.Shard, "after", c, "lost_through", le.Pos)
			continue
		}
		m, op, ok := ar.message(le)
		if !ok {
			continue
		}
		if ar.npending() == 0 {
			ar.flushAt = time.Now().Add(ar.n.cfg.ArchiveFlush)
		}
		if op != nil {
			ar.acts = append(ar.acts, *op)
			continue
		}
		ar.pending = append(ar.pending, m)
		ar.pendingBytes += len(m.Payload) + len(m.Meta)
	}
}

// message returns the stored form of a log entry that is a message kept
// for history, or of an action added or removed (op set).
func (ar *archiver) message(le LogEntry) (_ archive.Message, op *actionOp, ok bool) {
	d, err := decodeRecord(le.Data, le.Shard)
	if err != nil || d.msg == nil || d.msg.Signal {
		return archive.Message{}, nil, false
	}
	m := d.msg
	m.Pos = le.Pos
	if e := m.Action; e != nil {
		act := archive.Action{Account: m.Account, Channel: m.Channel, Message: e.Message, Timetoken: e.actionTimetoken(m),
			Type: e.Type, Value: e.Value, Publisher: m.Publisher, Expires: expiresAt(e.Message, 0, ar.n.cfg.HistoryRetention)}
		return archive.Message{}, &actionOp{act: act, remove: e.Removes != 0}, true
	}
	if m.NoStore {
		return archive.Message{}, nil, false
	}
	tt := m.Timetoken()
	return archive.Message{
		Account: m.Account, Channel: m.Channel, Timetoken: tt, Payload: m.Payload, Publisher: m.Publisher,
		Meta: m.Meta, CustomType: m.CustomType, Type: archive.TypeMessage,
		Expires: expiresAt(tt, m.TTL, ar.n.cfg.HistoryRetention),
	}, nil, true
}

// expiresAt is when a message published at tt stops being kept: after its
// own ttl (a negative one: never), or without one after retention
// (negative: never).
func expiresAt(tt channelgroups.Timetoken, ttl, retention time.Duration) time.Time {
	keep := retention
	if ttl != 0 {
		keep = ttl
	}
	if keep < 0 {
		return time.Time{}
	}
	return time.UnixMilli(int64(PositionOf(tt).Ms)).Add(keep)
}

// flush stores the pending messages, then the checkpoints of the shards
// whose cursors moved (those that only passed other entries at most every
// checkpointEvery).
func (ar *archiver) flush(ctx context.Context) error {
	stored := ar.npending() > 0
	through, _ := ar.store.(archive.AppendThrougher)
	for len(ar.pending) > 0 {
		n := min(len(ar.pending), ar.n.cfg.ArchiveBatch)
		batch := ar.pending[:n]
		size := 0
		for _, m := range batch {
			size += len(m.Payload) + len(m.Meta)
		}
		// The last batch carries the checkpoints when no action is stored
		// after it: one write instead of two.
		var moved map[int]channelgroups.Position
		if through != nil && n == len(ar.pending) && len(ar.acts) == 0 {
			moved = ar.moved()
		}
		err := ar.append(ctx, through, batch, moved)
		if errors.Is(err, archive.ErrInvalid) {
			batch = ar.dropInvalid(batch)
			err = ar.append(ctx, through, batch, moved)
		}
		if err != nil {
			return err
		}
		if len(batch) > 0 {
			oldest := batch[0].Timetoken
			for _, m := range batch {
				oldest = min(oldest, m.Timetoken)
			}
			ar.m.archived.Add(float64(len(batch)))
			ar.m.batches.Inc()
			ar.m.lag.Observe(time.Since(time.UnixMilli(int64(PositionOf(oldest).Ms))).Seconds())
		}
		ar.pending, ar.pendingBytes = ar.pending[n:], ar.pendingBytes-size
		for shard, c := range moved {
			ar.checkpointed(shard, c)
		}
	}
	ar.pending, ar.pendingBytes = nil, 0 // let the stored batch's array go
	if err := ar.storeActions(ctx); err != nil {
		return err
	}
	if !stored && time.Since(ar.lastCheckpoint) < checkpointEvery {
		return nil
	}
	for shard, c := range ar.moved() {
		if err := ar.store.SetCheckpoint(ctx, shard, c); err != nil {
			return err
		}
		ar.checkpointed(shard, c)
	}
	ar.lastCheckpoint = time.Now()
	return nil
}

// append stores batch, and the checkpoints moved with it when the store
// takes both in one write (through is not nil).
func (ar *archiver) append(ctx context.Context, through archive.AppendThrougher, batch []archive.Message, moved map[int]channelgroups.Position) error {
	if through != nil {
		return through.AppendThrough(ctx, batch, moved)
	}
	return ar.store.Append(ctx, batch)
}

// moved returns the cursors of the shards whose checkpoint is behind them;
// nil when none is.
func (ar *archiver) moved() map[int]channelgroups.Position {
	var m map[int]channelgroups.Position
	for shard, c := range ar.cursor {
		if c == ar.saved[shard] {
			continue
		}
		if m == nil {
			m = map[int]channelgroups.Position{}
		}
		m[shard] = c
	}
	return m
}

// checkpointed notes that shard's checkpoint is stored at c.
func (ar *archiver) checkpointed(shard int, c channelgroups.Position) {
	ar.saved[shard] = c
	ar.n.noteArchived(shard, c)
}

// storeActions stores the pending action changes in log order, dropping
// those the store refuses.
func (ar *archiver) storeActions(ctx context.Context) error {
	for len(ar.acts) > 0 {
		op := ar.acts[0]
		var err error
		if op.remove {
			err = ar.store.RemoveAction(ctx, op.act.Account, op.act.Channel, op.act.Message, op.act.Timetoken)
		} else {
			err = ar.store.AddAction(ctx, op.act)
		}
		switch {
		case errors.Is(err, archive.ErrInvalid):
			ar.m.errors.Inc()
			ar.n.cfg.Logger.Error("archive: dropping a message action the store refuses", "account", op.act.Account, "channel", op.act.Channel,
				"message", op.act.Message, "action", op.act.Timetoken, "err", err)
		case err != nil:
			return err
		default:
			ar.m.actions.Inc()
		}
		ar.acts = ar.acts[1:]
	}
	ar.acts = nil
	return nil
}

// dropInvalid removes from batch (in place) the messages a store refuses;
// they cannot be stored, now or later.
func (ar *archiver) dropInvalid(batch []archive.Message) []archive.Message {
	keep := batch[:0]
	for _, m := range batch {
		if err := m.Validate(); err != nil {
			ar.m.errors.Inc()
			ar.n.cfg.Logger.Error("archive: dropping a message the store refuses", "account", m.Account, "channel", m.Channel, "timetoken", m.Timetoken, "err", err)
			continue
		}
		keep = append(keep, m)
	}
	return keep
}

// drain stores, at shutdown, what was read and what the logs of the shards
// still hold up to their ends.
func (ar *archiver) drain(ctx context.Context) error {
	for shard := range ar.cursor {
		last, err := ar.n.log.Last(ctx, shard)
		if err != nil {
			return err
		}
		for ar.cursor[shard].Less(last) {
			entries, err := ar.n.log.Range(ctx, shard, ar.cursor[shard], min(ar.n.cfg.ArchiveBatch, archiveRead))
			if err != nil {
				return err
			}
			if len(entries) == 0 {
				break
			}
			ar.take(entries)
			if ar.full() {
				if err := ar.flush(ctx); err != nil {
					return err
				}
			}
		}
	}
	ar.lastCheckpoint = time.Time{}
	return ar.flush(ctx)
}
