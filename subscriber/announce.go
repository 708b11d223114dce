package subscriber

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/groupcast/groupcast/channelgroups"
)

// announcer appends durable edits to their shard's log (it is the node's
// channelgroups.Announcer) and drains the outbox of edits that could not be
// appended. Nothing new is appended to a shard while it has unannounced
// edits, so the log order keeps matching the order edits were acknowledged
// in. In a cluster only a shard's primary appends its edits and messages
// (requests are forwarded to it), so one node's outbox orders the shard.
type announcer struct {
	n      *Node
	store  Store
	kick   chan struct{}
	shards []*announceShard
}

type announceShard struct {
	mu      sync.Mutex
	blocked bool // an edit of this shard is not announced yet: append nothing new

	// cleanMu guards the announced-through watermark: every edit of the
	// shard at or before cleanThrough was appended at or before cleanLast.
	cleanMu      sync.Mutex
	cleanThrough channelgroups.Timetoken
	cleanLast    channelgroups.Position
	cleanTried   time.Time

	// appendedMu guards appended, the newest position this node appended
	// to the shard's log (appendRecord): a history read waits until it is
	// applied, so a publish's acknowledgement is in the history that
	// follows it (Node.awaitOwnAppends).
	appendedMu sync.Mutex
	appended   channelgroups.Position
}

func newAnnouncer(n *Node, store Store) *announcer {
	a := &announcer{n: n, store: store, kick: make(chan struct{}, 1)}
	for range n.cfg.Shards {
		a.shards = append(a.shards, &announceShard{})
	}
	return a
}

// Announce implements channelgroups.Announcer: it appends a durable edit to
// its shard's log. When the append fails, or an earlier edit of the shard is
// still unannounced, the edit is left in the outbox for the dispatcher and
// ErrUnannounced is returned.
func (n *Node) Announce(ctx context.Context, e channelgroups.Edit) (channelgroups.Position, error) {
	return n.ann.announce(ctx, e)
}

func (a *announcer) announce(ctx context.Context, e channelgroups.Edit) (channelgroups.Position, error) {
	n := a.n
	s := a.shards[e.Shard]
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.blocked {
		n.m.announced.WithLabelValues("deferred").Inc()
		a.kickDispatcher()
		return channelgroups.Position{}, channelgroups.ErrUnannounced
	}
	pos, err := n.log.Append(ctx, e.Shard, encodeEdit(e, depsOf(ctx)))
	if err != nil {
		s.blocked = true
		n.m.announced.WithLabelValues("deferred").Inc()
		n.cfg.Logger.Warn("appending an edit failed; it stays in the outbox", "shard", e.Shard, "err", err)
		a.kickDispatcher()
		return channelgroups.Position{}, fmt.Errorf("%w: %w", channelgroups.ErrUnannounced, err)
	}
	n.m.announced.WithLabelValues("direct").Inc()
	a.markAnnounced(e)
	return pos, nil
}

// appendRecord appends a message or presence record to a shard's log unless
// the shard is blocked on unannounced edits (then ErrShardBlocked).
func (a *announcer) appendRecord(ctx context.Context, shard int, rec []byte) (channelgroups.Position, error) {
	s := a.shards[shard]
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.blocked {
		a.kickDispatcher()
		return channelgroups.Position{}, ErrShardBlocked
	}
	pos, err := a.n.log.Append(ctx, shard, rec)
	if err != nil {
		return channelgroups.Position{}, fmt.Errorf("%w: %w", ErrLogUnavailable, err)
	}
	s.appendedMu.Lock()
	if s.appended.Less(pos) {
		s.appended = pos
	}
	s.appendedMu.Unlock()
	return pos, nil
}

// appendedThrough is the newest position this node appended to shard's
// log (zero if none).
func (a *announcer) appendedThrough(shard int) channelgroups.Position {
	s := a.shards[shard]
	s.appendedMu.Lock()
	defer s.appendedMu.Unlock()
	return s.appended
}

// takeOver is called when this node becomes a shard's primary: if the
// shard's outbox holds edits (a previous primary acknowledged them but could
// not append them), the shard is blocked until the dispatcher has appended
// them, so nothing this node appends overtakes them.
func (a *announcer) takeOver(ctx context.Context, shard int) error {
	s := a.shards[shard]
	s.mu.Lock()
	defer s.mu.Unlock()
	pending, err := a.store.Pending(ctx, shard, 1)
	if err != nil {
		return err
	}
	if len(pending) > 0 && !s.blocked {
		s.blocked = true
		a.n.cfg.Logger.Info("took over a shard with unannounced edits; appending them first", "shard", shard)
		a.kickDispatcher()
	}
	return nil
}

// markAnnounced removes the edit's outbox record. A failure only means the
// edit may be announced twice, which is harmless: edits are idempotent.
func (a *announcer) markAnnounced(e channelgroups.Edit) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.store.Announced(ctx, e); err != nil {
		a.n.cfg.Logger.Warn("clearing an outbox record failed", "shard", e.Shard, "err", err)
	}
}

func (a *announcer) kickDispatcher() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// dispatch drains the outbox of blocked shards when kicked (retrying every
// second while any is blocked), and sweeps the outbox of every shard this
// node is the primary of now and then, for edits a crashed node left behind.
func (a *announcer) dispatch(ctx context.Context) {
	retry := time.NewTicker(time.Second)
	defer retry.Stop()
	sweep := time.NewTimer(0) // at start: a previous run of this node may have crashed
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.kick:
			a.drainBlocked(ctx)
		case <-retry.C:
			a.drainBlocked(ctx)
		case <-sweep.C:
			own := a.n.own.Assignment()
			for i := range a.shards {
				if own.IsPrimary(i) {
					a.drain(ctx, i, 10*time.Second)
				}
			}
			sweep.Reset(a.n.cfg.SweepEvery)
		}
	}
}

func (a *announcer) drainBlocked(ctx context.Context) {
	for i, s := range a.shards {
		s.mu.Lock()
		blocked := s.blocked
		s.mu.Unlock()
		if blocked {
			a.drain(ctx, i, 0)
		}
	}
}

// drain announces the shard's outbox records older than minAge, oldest
// first, and unblocks the shard once its outbox is empty.
func (a *announcer) drain(ctx context.Context, shard int, minAge time.Duration) {
	n := a.n
	s := a.shards[shard]
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.blocked && minAge == 0 {
		return
	}
	cutoff := channelgroups.TimetokenOf(n.now().Add(-minAge))
	for ctx.Err() == nil {
		pending, err := a.store.Pending(ctx, shard, 256)
		if err != nil {
			n.cfg.Logger.Warn("reading the outbox failed", "shard", shard, "err", err)
			return
		}
		progressed := false
		snaps := map[channelgroups.GroupKey]channelgroups.Snapshot{} // read after pending: each holds its records' rows
		for _, e := range pending {
			if minAge > 0 && !s.blocked && e.At > cutoff {
				break // young: its own node is announcing it right now
			}
			edits, err := a.restate(ctx, e, snaps)
			if err != nil {
				n.cfg.Logger.Warn("reading a group to announce its outbox record failed", "shard", shard, "err", err)
				return
			}
			for _, re := range edits {
				if _, err := n.log.Append(ctx, shard, EncodeEdit(re)); err != nil {
					s.blocked = true
					return
				}
			}
			n.m.announced.WithLabelValues("outbox").Inc()
			a.markAnnounced(e)
			progressed = true
		}
		if len(pending) < 256 || !progressed {
			if s.blocked {
				s.blocked = false
				n.cfg.Logger.Info("shard outbox drained; appending again", "shard", shard)
			}
			return
		}
	}
}

// restate returns the edits an outbox record stands for, as storage holds
// them (channelgroups.Snapshot.Restate: a record can merge two edits of a
// group made at one timetoken, and would be announced as an edit nobody
// made). snaps keeps the groups read in one drain pass.
func (a *announcer) restate(ctx context.Context, e channelgroups.Edit, snaps map[channelgroups.GroupKey]channelgroups.Snapshot) ([]channelgroups.Edit, error) {
	if e.Op == channelgroups.OpClear {
		return []channelgroups.Edit{e}, nil
	}
	key := channelgroups.GroupKey{Account: e.Account, Group: e.Group}
	snap, ok := snaps[key]
	if !ok {
		var err error
		if snap, err = a.store.Read(ctx, e.Account, e.Group); err != nil {
			return nil, err
		}
		snaps[key] = snap
	}
	return snap.Restate(e), nil
}

// announcedThrough tells whether every edit of the shard up to t is known to
// be in the log, and up to which position: then covering that position
// honours a token's pending edit from memory. The proof: read the shard's
// oldest outbox record first (records are removed only after their append),
// then the log's last position. If no record is at or before t, every such
// edit was appended before the second read. Checks are shared per shard and
// not retried within 100ms of a failed one.
func (a *announcer) announcedThrough(ctx context.Context, shard int, t channelgroups.Timetoken) (channelgroups.Position, bool) {
	if shard < 0 || shard >= len(a.shards) {
		return channelgroups.Position{}, false
	}
	n := a.n
	s := a.shards[shard]
	if !s.cleanMu.TryLock() {
		return channelgroups.Position{}, false // another reader is checking: do not queue behind it
	}
	defer s.cleanMu.Unlock()
	if s.cleanThrough >= t {
		return s.cleanLast, true
	}
	now := n.now()
	if now.Sub(s.cleanTried) < 100*time.Millisecond {
		return channelgroups.Position{}, false
	}
	s.cleanTried = now
	start := n.clock.Now()
	oldest, err := a.store.Pending(ctx, shard, 1)
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
