package subscriber

import (
	"fmt"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/groupcast/groupcast/channelgroups"
)

// Gaps in a shard's log. A node that falls further behind a shard's log
// than the log keeps (a stalled process, a slow consumer) finds, when it
// reads again, that entries after its position were trimmed unread: the
// log answers with a gap entry (LogEntry.Gap) before the entries it still
// has. Those lost entries may hold edits that the node's cached views and
// overlay lack, and messages its rings lack. Applying what follows as if
// nothing happened would move the node's position past the lost edits,
// and a token read covering one would then be answered from the stale
// cache: the silent staleness G2 forbids.
//
// So the node repairs the shard first, as if it had lost and regained it:
// it drops the shard's cached groups (the next read of one loads it from
// storage, which holds every acknowledged edit: an edit is stored before it
// is appended), its rings, G3 tracking and presence records, and answers
// its parked polls (their clients come back and re-expand their groups from
// storage). Only then does its position move past the gap, so a token read
// covering a lost edit waits for the repair (or reads storage) rather than
// see the stale cache. Overlay entries are kept: they merge with a fresh
// snapshot by timetoken, as they would with any.
//
// The lost messages cannot be delivered. The node keeps the newest lost
// position of each shard, and a subscribe answer that moves a client from
// before it to after it says so (PollResult.Gap, counted) rather than look
// like an answer that missed nothing. A shard whose replay (on gaining it)
// finds its retention window trimmed is marked the same way.

// gapMetrics count the gaps this node met.
type gapMetrics struct {
	gaps  *prometheus.CounterVec // by shard
	polls prometheus.Counter
}

func (n *Node) initGapMetrics() error {
	n.gapm = gapMetrics{
		gaps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "groupcast_log_gaps_total",
			Help: "Gaps in a shard's log this node met: entries after its position were trimmed before it read them; it re-read the shard's groups from storage.",
		}, []string{"shard"}),
		polls: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "groupcast_polls_across_gap_total",
			Help: "Subscribe answers that moved a client's cursor across a gap in its shard's log: messages between the two may have been lost.",
		}),
	}
	if reg := n.cfg.Registerer; reg != nil {
		for _, c := range []prometheus.Collector{n.gapm.gaps, n.gapm.polls} {
			if err := reg.Register(c); err != nil {
				return fmt.Errorf("subscriber: %w", err)
			}
		}
	}
	return nil
}

// repairGap repairs a shard after a gap in its log (see above): le is the
// gap entry, oldest the position of the next entry the log still has (zero
// if the answer held none). It runs on the consume goroutine, before any
// entry after the gap is applied.
func (n *Node) repairGap(le LogEntry, oldest channelgroups.Position) {
	i := le.Shard
	s := n.shards[i]
	n.gapm.gaps.WithLabelValues(strconv.Itoa(i)).Inc()
	n.cfg.Logger.Warn("a shard's log was trimmed past this node's position: re-reading its groups from storage",
		"shard", i, "cursor", n.applied(i), "lost_through", le.Pos, "oldest", oldest)
	polls := n.hub.dropShard(i)
	n.pres.dropShard(i)
	n.views.dropShard(i)
	s.mu.Lock()
	s.gap = channelgroups.MaxPosition(s.gap, le.Pos)
	if s.applied.Less(le.Pos) {
		s.applied = le.Pos
		close(s.changed)
		s.changed = make(chan struct{})
	}
	s.mu.Unlock()
	n.hub.releaseOver(polls, n.cfg.ReleaseSpread)
}

// markGap records that a shard's messages up to p are lost to this node
// (its replay found them trimmed).
func (n *Node) markGap(shard int, p channelgroups.Position) {
	s := n.shards[shard]
	s.mu.Lock()
	s.gap = channelgroups.MaxPosition(s.gap, p)
	s.mu.Unlock()
}

// acrossGap reports whether a subscribe answer moves a client from cursor
// from to cursor to across a gap in the shard's log, counting it.
func (n *Node) acrossGap(shard int, from, to channelgroups.Timetoken) bool {
	if from == 0 || shard < 0 || shard >= len(n.shards) {
		return false
	}
	s := n.shards[shard]
	s.mu.Lock()
	gap := s.gap
	s.mu.Unlock()
	if gap.IsZero() || !PositionOf(from).Less(gap) || PositionOf(to).Less(gap) {
		return false
	}
	n.gapm.polls.Inc()
	return true
}

// nextOf returns the position of the first of es in shard, zero if none.
func nextOf(es []LogEntry, shard int) channelgroups.Position {
	for _, e := range es {
		if e.Shard == shard && !e.Gap {
			return e.Pos
		}
	}
	return channelgroups.Position{}
}
