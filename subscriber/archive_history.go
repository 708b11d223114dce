package subscriber

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/groupcast/groupcast/archive"
	"github.com/groupcast/groupcast/channelgroups"
)

// History served from the store. Config.Archive is the source of truth for
// what it holds; the rings add the newest messages, which the archiver may
// not have stored yet (it writes within ArchiveFlush of the log, and after
// a failure from its checkpoint). The two are merged by timetoken, each
// message once. Deletions go to the store and, through the shard's log, to
// every node's rings, which then hide the deleted messages (hiddenRanges).

// HistoryPage returns the messages of q's range (see package archive for
// Start, End, Max and Reverse) in timetoken order, and whether the range
// holds more than were returned: page on with Start (or, with Reverse, End)
// as package archive says. ErrNotServing when this node does not serve the
// account's shard (yet); a bad query wraps ErrBadRequest.
func (n *Node) HistoryPage(ctx context.Context, q archive.Query) ([]*Message, bool, error) {
	if err := q.Validate(); err != nil {
		return nil, false, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	if !n.serve(ctx, channelgroups.ShardOf(q.Account, len(n.shards))) {
		return nil, false, ErrNotServing
	}
	lo, hi, ok := archive.Bounds(q.Start, q.End)
	if !ok {
		return nil, false, nil
	}
	key := chanKey{Account: q.Account, Channel: q.Channel}
	n.awaitOwnAppends(ctx, channelgroups.ShardOf(q.Account, len(n.shards)))
	// The rings first, then the store once it holds everything the rings
	// had dropped when they were read (a ring drops by count and bytes too,
	// and a burst can push messages out before the archiver stored them):
	// every message is then in one of the two answers.
	ring, dropped := n.ringHistory(key, lo, hi)
	var (
		stored []archive.Message
		more   bool
	)
	if st := n.cfg.Archive; st != nil {
		n.awaitArchived(ctx, channelgroups.ShardOf(q.Account, len(n.shards)), dropped)
		var err error
		if stored, more, err = st.Messages(ctx, q); err != nil {
			return nil, false, fmt.Errorf("subscriber: reading history: %w", err)
		}
	}
	out := make([]*Message, 0, len(stored)+len(ring))
	for i := range stored {
		out = append(out, fromStored(&stored[i]))
	}
	out = append(out, ring...)
	slices.SortStableFunc(out, func(a, b *Message) int { return cmp.Compare(a.Timetoken(), b.Timetoken()) })
	out = slices.CompactFunc(out, func(a, b *Message) bool { return a.Timetoken() == b.Timetoken() })
	// Whatever of the range is in neither answer is in the store beyond
	// the end it cut at: older than the page (newer with Reverse).
	if len(out) > q.Max {
		more = true
		if q.Reverse {
			out = out[:q.Max]
		} else {
			out = out[len(out)-q.Max:]
		}
	}
	return out, more, nil
}

// awaitOwnAppends waits, never longer than FreshWait, until this node has
// applied everything it appended to shard's log: a message (or deletion)
// acknowledged by this node is then in the rings a history read looks at,
// though the node's consumer applies it a moment after the append. A
// shard's publishes are appended by its primary, which serves its history
// too, so this holds in a cluster as well.
func (n *Node) awaitOwnAppends(ctx context.Context, shard int) {
	n.awaitApplied(ctx, shard, n.ann.appendedThrough(shard))
}

// archiveWait bounds how long a history read waits for the archive to
// hold what the rings dropped (awaitArchived).
const archiveWait = 2 * time.Second

// awaitArchived waits until the archive's checkpoint of shard is at or
// after pos (nothing to wait for when pos is zero), for at most
// archiveWait or ctx: the store then holds every message a ring dropped up
// to pos. Past the bound it gives up (the archive is failing or far
// behind; groupcast_history_incomplete_total counts it) and the read
// serves what it has.
func (n *Node) awaitArchived(ctx context.Context, shard int, pos channelgroups.Position) {
	if pos.IsZero() || !n.archivedThrough(shard).Less(pos) {
		return
	}
	deadline := n.now().Add(archiveWait)
	for wait := time.Millisecond; ; wait = min(2*wait, 50*time.Millisecond) {
		if cp, err := n.cfg.Archive.Checkpoint(ctx, shard); err == nil {
			n.noteArchived(shard, cp)
			if !cp.Less(pos) {
				return
			}
		}
		if ctx.Err() != nil || !n.now().Before(deadline) {
			n.m.historyIncomplete.Inc()
			return
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
		}
	}
}

// archivedThrough is the newest checkpoint of shard this node knows of.
func (n *Node) archivedThrough(shard int) channelgroups.Position {
	n.archivedMu.Lock()
	defer n.archivedMu.Unlock()
	return n.archived[shard]
}

// noteArchived records a checkpoint of shard (the archiver's, or one read).
func (n *Node) noteArchived(shard int, pos channelgroups.Position) {
	n.archivedMu.Lock()
	defer n.archivedMu.Unlock()
	if n.archived == nil {
		n.archived = map[int]channelgroups.Position{}
	}
	if n.archived[shard].Less(pos) {
		n.archived[shard] = pos
	}
}

// fromStored is a stored message as the rings hold messages.
func fromStored(m *archive.Message) *Message {
	return &Message{Account: m.Account, Channel: m.Channel, Payload: m.Payload, Publisher: m.Publisher, Meta: m.Meta,
		CustomType: m.CustomType, Pos: PositionOf(m.Timetoken)}
}

// MessageCount returns how many messages of a channel's history have
// timetokens after `after` (PubNub's message counts): those stored, and
// those of the ring newer than the newest stored.
func (n *Node) MessageCount(ctx context.Context, a channelgroups.Account, c channelgroups.Channel, after channelgroups.Timetoken) (int64, error) {
	if err := archive.CheckChannel(a, c); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	if after < 0 {
		return 0, fmt.Errorf("negative timetoken %d: %w", after, ErrBadRequest)
	}
	if !n.serve(ctx, channelgroups.ShardOf(a, len(n.shards))) {
		return 0, ErrNotServing
	}
	key := chanKey{Account: a, Channel: c}
	n.awaitOwnAppends(ctx, channelgroups.ShardOf(a, len(n.shards)))
	ring, dropped := n.ringHistory(key, after+1, archive.MaxTimetoken)
	st := n.cfg.Archive
	if st == nil {
		return int64(len(ring)), nil
	}
	n.awaitArchived(ctx, channelgroups.ShardOf(a, len(n.shards)), dropped)
	count, err := st.Count(ctx, a, c, after)
	if err != nil {
		return 0, fmt.Errorf("subscriber: counting messages: %w", err)
	}
	newest, _, err := st.Messages(ctx, archive.Query{Account: a, Channel: c, Max: 1})
	if err != nil {
		return 0, fmt.Errorf("subscriber: counting messages: %w", err)
	}
	for _, m := range ring {
		if len(newest) == 0 || m.Timetoken() > newest[0].Timetoken {
			count++
		}
	}
	return count, nil
}

// DeleteHistory deletes a channel's messages in the range of start and end
// (see archive.Bounds; neither means all) published up to now: from the
// store, and from what every node's rings serve as history (a deletion
// record in the shard's log). Subscribers who already got them keep them.
func (n *Node) DeleteHistory(ctx context.Context, a channelgroups.Account, c channelgroups.Channel, start, end channelgroups.Timetoken) error {
	if err := archive.CheckChannel(a, c); err != nil {
		return fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	if err := archive.CheckRange(start, end); err != nil {
		return fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	shard := channelgroups.ShardOf(a, len(n.shards))
	if !n.serve(ctx, shard) {
		return ErrNotServing
	}
	lo, hi, ok := archive.DeleteBounds(start, end, n.now())
	if !ok {
		return nil
	}
	if st := n.cfg.Archive; st != nil {
		if err := st.Delete(ctx, a, c, start, end); err != nil {
			if errors.Is(err, archive.ErrInvalid) {
				return fmt.Errorf("%w: %w", ErrBadRequest, err)
			}
			return fmt.Errorf("subscriber: deleting messages: %w", err)
		}
	}
	d := deletion{Account: a, Channel: c, Lo: lo, Hi: hi}
	n.hidden.add(d, n.now(), n.cfg.RingAge) // this node at once, the others from the log
	if _, err := n.ann.appendRecord(ctx, shard, encodeDeletion(d)); err != nil {
		return err
	}
	return nil
}

// hiddenRanges are the deletions of the last RingAge, by channel: the
// rings may still hold messages they cover.
type hiddenRanges struct {
	mu     sync.Mutex
	ranges map[chanKey][]hiddenRange
}

type hiddenRange struct {
	lo, hi channelgroups.Timetoken
	at     time.Time // when it was applied; dropped after the ring age
}

// add records a deletion applied at now and drops those older than age.
func (h *hiddenRanges) add(d deletion, now time.Time, age time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ranges == nil {
		h.ranges = map[chanKey][]hiddenRange{}
	}
	for k, rs := range h.ranges {
		rs = slices.DeleteFunc(rs, func(r hiddenRange) bool { return now.Sub(r.at) > age })
		if len(rs) == 0 {
			delete(h.ranges, k)
		} else {
			h.ranges[k] = rs
		}
	}
	k := chanKey{Account: d.Account, Channel: d.Channel}
	h.ranges[k] = append(h.ranges[k], hiddenRange{lo: d.Lo, hi: d.Hi, at: now})
}

// covers reports whether a deletion covers the channel's message tt.
func (h *hiddenRanges) covers(k chanKey, tt channelgroups.Timetoken) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.ranges[k] {
		if r.lo <= tt && tt <= r.hi {
			return true
		}
	}
	return false
}
