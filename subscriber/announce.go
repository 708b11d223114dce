package subscriber

import (
	"context"
	"fmt"
	"time"

	"github.com/groupcast/groupcast/channelgroups"
)

// Announce implements channelgroups.Announcer: it appends a durable edit to
// its shard's log. When the append fails, or an earlier edit of the shard is
// still unannounced, the edit is left in the outbox for the dispatcher and
// ErrUnannounced is returned: nothing new is appended to a shard before its
// outbox is drained, so the log order keeps matching the order edits were
// acknowledged in.
func (n *Node) Announce(ctx context.Context, e channelgroups.Edit) (channelgroups.Position, error) {
	s := n.shards[e.Shard]
	s.announceMu.Lock()
	defer s.announceMu.Unlock()
	if s.blocked {
		n.m.announced.WithLabelValues("deferred").Inc()
		n.kickDispatcher()
		return channelgroups.Position{}, channelgroups.ErrUnannounced
	}
	pos, err := n.log.Append(ctx, e.Shard, EncodeEdit(e))
	if err != nil {
		s.blocked = true
		n.m.announced.WithLabelValues("deferred").Inc()
		n.cfg.Logger.Warn("appending an edit failed; it stays in the outbox", "shard", e.Shard, "err", err)
		n.kickDispatcher()
		return channelgroups.Position{}, fmt.Errorf("%w: %w", channelgroups.ErrUnannounced, err)
	}
	n.m.announced.WithLabelValues("direct").Inc()
	n.markAnnounced(e)
	return pos, nil
}

// markAnnounced removes the edit's outbox record. A failure only means the
// edit may be announced twice, which is harmless: edits are idempotent.
func (n *Node) markAnnounced(e channelgroups.Edit) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := n.store.Announced(ctx, e); err != nil {
		n.cfg.Logger.Warn("clearing an outbox record failed", "shard", e.Shard, "err", err)
	}
}

func (n *Node) kickDispatcher() {
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

// dispatch drains the outbox of blocked shards when kicked (retrying every
// second while any is blocked), and sweeps every shard's outbox now and then
// for edits a crashed node left behind.
func (n *Node) dispatch(ctx context.Context) {
	retry := time.NewTicker(time.Second)
	defer retry.Stop()
	sweep := time.NewTimer(0) // at start: a previous run of this node may have crashed
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.kick:
			n.drainBlocked(ctx)
		case <-retry.C:
			n.drainBlocked(ctx)
		case <-sweep.C:
			for i := range n.shards {
				n.drain(ctx, i, 10*time.Second)
			}
			sweep.Reset(n.cfg.SweepEvery)
		}
	}
}

func (n *Node) drainBlocked(ctx context.Context) {
	for i, s := range n.shards {
		s.announceMu.Lock()
		blocked := s.blocked
		s.announceMu.Unlock()
		if blocked {
			n.drain(ctx, i, 0)
		}
	}
}

// drain announces the shard's outbox records older than minAge, oldest
// first, and unblocks the shard once its outbox is empty.
func (n *Node) drain(ctx context.Context, shard int, minAge time.Duration) {
	s := n.shards[shard]
	s.announceMu.Lock()
	defer s.announceMu.Unlock()
	if !s.blocked && minAge == 0 {
		return
	}
	cutoff := channelgroups.TimetokenOf(time.Now().Add(-minAge))
	for ctx.Err() == nil {
		pending, err := n.store.Pending(ctx, shard, 256)
		if err != nil {
			n.cfg.Logger.Warn("reading the outbox failed", "shard", shard, "err", err)
			return
		}
		progressed := false
		for _, e := range pending {
			if minAge > 0 && !s.blocked && e.At > cutoff {
				break // young: its own node is announcing it right now
			}
			if _, err := n.log.Append(ctx, shard, EncodeEdit(e)); err != nil {
				s.blocked = true
				return
			}
			n.m.announced.WithLabelValues("outbox").Inc()
			n.markAnnounced(e)
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
