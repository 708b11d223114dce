package subscriber

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/groupcast/groupcast/channelgroups"
)

// chanKey names one channel of one account.
type chanKey struct {
	Account channelgroups.Account
	Channel channelgroups.Channel
}

// ringEntry is one message kept for delivery and history, with the tracked
// groups that held its channel when it was applied: membership as it stood
// at that point of the log, which is what G3 is about.
type ringEntry struct {
	msg    *Message
	groups []channelgroups.Group
}

// ring holds a channel's recent messages, oldest first.
type ring struct {
	entries []ringEntry
}

// trackedGroup is a group with subscribers on this node (or recently so).
// After since, every message applied records whether the group held its
// channel.
type trackedGroup struct {
	since    channelgroups.Position
	channels map[channelgroups.Channel]struct{}
	// left holds the channels that left the group, each with the shard's
	// applied position just before it left. A subscriber whose cursor is at
	// or before that position may still be owed messages published on the
	// channel while it was in the group (G3), so collect scans it too.
	left     map[channelgroups.Channel]channelgroups.Position
	waiters  map[*Parked]struct{}
	lastUsed time.Time
}

// ErrEmptyGroup reports a subscription to a group with no channels.
var ErrEmptyGroup = fmt.Errorf("subscriber: channel group is empty: %w", ErrBadRequest)

// ErrShardBlocked reports a publish to a shard whose earlier edits are not
// announced yet: appending now would put the message before them.
var ErrShardBlocked = fmt.Errorf("subscriber: the account's log is catching up on unannounced edits: %w", channelgroups.ErrUnavailable)

// ErrLogUnavailable reports a failed append of a message.
var ErrLogUnavailable = fmt.Errorf("subscriber: the account's log is unavailable: %w", channelgroups.ErrUnavailable)

// ErrNotFresh reports a token this node could not catch up with in time.
var ErrNotFresh = fmt.Errorf("subscriber: this node has not caught up with the token yet: %w", channelgroups.ErrUnavailable)

// Publish appends a message to its account's shard log and returns its
// timetoken. With a token, the node first waits until it has applied
// everything the token covers, so the message sorts after those edits.
func (n *Node) Publish(ctx context.Context, m *Message, tok *channelgroups.Token) (channelgroups.Timetoken, error) {
	shard := channelgroups.ShardOf(m.Account, len(n.shards))
	if tok != nil {
		if tok.Shard != shard {
			return 0, fmt.Errorf("token is for another shard: %w", channelgroups.ErrInvalidToken)
		}
		if ok, _ := n.catchUp(ctx, tok); !ok {
			return 0, ErrNotFresh
		}
	}
	s := n.shards[shard]
	s.announceMu.Lock()
	defer s.announceMu.Unlock()
	if s.blocked {
		n.kickDispatcher()
		return 0, ErrShardBlocked
	}
	pos, err := n.log.Append(ctx, shard, encodeMessage(m))
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrLogUnavailable, err)
	}
	n.m.published.Inc()
	return CursorOf(pos), nil
}

// wakeup names the polls a newly applied message concerns: those on its
// channel and those of the tracked groups that held the channel.
type wakeup struct {
	key    chanKey
	groups []channelgroups.Group
}

// applyMessage puts a message into its channel's ring, annotated with the
// tracked groups that hold its channel now, and returns whom to wake once
// the shard's applied position has moved past it (nil for a retry).
func (n *Node) applyMessage(m *Message) *wakeup {
	key := chanKey{Account: m.Account, Channel: m.Channel}
	n.msgMu.Lock()
	defer n.msgMu.Unlock()
	s := n.shards[channelgroups.ShardOf(m.Account, len(n.shards))]
	if s.annotated.Less(m.Pos) {
		s.annotated = m.Pos
	}
	r := n.rings[key]
	if r == nil {
		r = &ring{}
		n.rings[key] = r
	}
	if m.Key != "" {
		for _, e := range r.entries {
			if e.msg.Key == m.Key && e.msg.Publisher == m.Publisher {
				return nil // a retried publish: delivered once
			}
		}
	}
	var groups []channelgroups.Group
	for g := range n.containing[key] {
		groups = append(groups, g)
	}
	slices.Sort(groups)
	if len(r.entries) >= n.cfg.RingSize {
		r.entries = slices.Delete(r.entries, 0, len(r.entries)-n.cfg.RingSize+1)
	}
	r.entries = append(r.entries, ringEntry{msg: m, groups: groups})
	return &wakeup{key: key, groups: groups}
}

// wake signals the polls a message concerns. It runs after the shard's
// applied position has moved past the message: a poll registered before
// is found here, one registered after finds the message on its first check.
func (n *Node) wake(w *wakeup) {
	if w == nil {
		return
	}
	var ws []*Parked
	n.msgMu.Lock()
	for p := range n.byChannel[w.key] {
		ws = append(ws, p)
	}
	for _, g := range w.groups {
		if tg := n.tracked[channelgroups.GroupKey{Account: w.key.Account, Group: g}]; tg != nil {
			for p := range tg.waiters {
				ws = append(ws, p)
			}
		}
	}
	n.msgMu.Unlock()
	for _, p := range ws {
		p.signal()
	}
}

// trackLocked keeps the reverse index (channel → tracked groups holding it)
// in step with a rebuilt view and wakes the group's parked subscribers when
// its membership changed, so they re-expand at once. viewMu is held.
func (n *Node) trackLocked(key channelgroups.GroupKey, v *channelgroups.View) {
	n.msgMu.Lock()
	tg := n.tracked[key]
	if tg == nil {
		n.msgMu.Unlock()
		return
	}
	changed := n.setChannelsLocked(key, tg, v)
	var wake []*Parked
	if changed {
		for w := range tg.waiters {
			wake = append(wake, w)
		}
	}
	n.msgMu.Unlock()
	for _, w := range wake {
		w.signal()
	}
}

// setChannelsLocked updates a tracked group's channels and the reverse
// index; msgMu is held.
func (n *Node) setChannelsLocked(key channelgroups.GroupKey, tg *trackedGroup, v *channelgroups.View) bool {
	changed := false
	now := make(map[channelgroups.Channel]struct{}, len(v.Channels))
	for _, c := range v.Channels {
		now[c] = struct{}{}
		if _, ok := tg.channels[c]; !ok {
			changed = true
			delete(tg.left, c)
			ck := chanKey{Account: key.Account, Channel: c}
			if n.containing[ck] == nil {
				n.containing[ck] = map[channelgroups.Group]struct{}{}
			}
			n.containing[ck][key.Group] = struct{}{}
		}
	}
	for c := range tg.channels {
		if _, ok := now[c]; !ok {
			changed = true
			if tg.left == nil {
				tg.left = map[channelgroups.Channel]channelgroups.Position{}
			}
			tg.left[c] = n.applied(channelgroups.ShardOf(key.Account, len(n.shards)))
			n.uncontainLocked(chanKey{Account: key.Account, Channel: c}, key.Group)
		}
	}
	tg.channels = now
	return changed
}

func (n *Node) uncontainLocked(ck chanKey, g channelgroups.Group) {
	if set := n.containing[ck]; set != nil {
		delete(set, g)
		if len(set) == 0 {
			delete(n.containing, ck)
		}
	}
}

// PollRequest is one subscribe call.
type PollRequest struct {
	Account  channelgroups.Account
	Channels []channelgroups.Channel
	Groups   []channelgroups.Group
	// Cursor is the timetoken to deliver after; 0 is the handshake.
	Cursor      channelgroups.Timetoken
	Token       *channelgroups.Token
	Consistency Consistency
	// Hold is the longest the call parks; zero means the node's PollHold.
	Hold time.Duration
	// UUID is the subscriber's user id: it joins the channels' presence.
	UUID string
	// Heartbeat is the presence timeout the client asked for; zero means
	// the node's PresenceTimeout.
	Heartbeat time.Duration
}

// Delivery is one message for a subscriber, and the group it came through
// ("" for a channel subscribed directly).
type Delivery struct {
	Msg   *Message
	Group channelgroups.Group
}

// PollResult is a subscribe answer: the next cursor and the messages.
type PollResult struct {
	Cursor     channelgroups.Timetoken
	Deliveries []Delivery
}

// MaxDeliveries is the most messages one answer carries (PubNub SDKs report
// an error at 100 or more).
const MaxDeliveries = 99

// Poll serves a subscribe and waits for its answer: see StartPoll. ctx
// bounds the group expansion and the wait; when it ends first, Poll returns
// its error.
func (n *Node) Poll(ctx context.Context, req PollRequest) (PollResult, error) {
	type outcome struct {
		res PollResult
		err error
	}
	ch := make(chan outcome, 1)
	w := n.StartPoll(ctx, req, func(res PollResult, err error) { ch <- outcome{res, err} })
	select {
	case o := <-ch:
		return o.res, o.err
	case <-ctx.Done():
		w.expire()
		<-ch // the poll is unregistered once it has answered
		return PollResult{}, ctx.Err()
	}
}

// StartPoll serves a subscribe without holding a goroutine while it is
// parked: done is called exactly once with the answer, either before
// StartPoll returns (a handshake, messages already there, an error) or
// later from a short-lived goroutine. The handshake answers with the
// current cursor; otherwise the answer carries the messages after the
// cursor on the subscribed channels and groups, and the poll parks until
// there are some, until Hold passes, or until ReleasePolls. ctx bounds the
// expansion of the groups. The returned Parked can end the poll early.
func (n *Node) StartPoll(ctx context.Context, req PollRequest, done func(PollResult, error)) *Parked {
	shard := channelgroups.ShardOf(req.Account, len(n.shards))
	w := &Parked{n: n, req: req, shard: shard, done: done}
	w.state.Store(stateChecking) // the caller's own check below comes first
	if req.Token != nil && req.Token.Shard != shard {
		w.finish(PollResult{}, fmt.Errorf("token is for another shard: %w", channelgroups.ErrInvalidToken))
		return w
	}
	views := make([]*channelgroups.View, len(req.Groups))
	for i, g := range req.Groups {
		v, err := n.View(ctx, channelgroups.GroupKey{Account: req.Account, Group: g}, req.Token, req.Consistency)
		if err == nil && len(v.Channels) == 0 {
			err = fmt.Errorf("group %q: %w", g, ErrEmptyGroup)
		}
		if err != nil {
			w.finish(PollResult{}, err)
			return w
		}
		views[i] = v
	}
	n.register(req, views, w)
	w.registered = true
	n.Seen(req.Account, req.Channels, req.UUID, req.Heartbeat)
	if req.Cursor == 0 {
		w.finish(PollResult{Cursor: handshakeCursor(n.applied(shard))}, nil)
		return w
	}
	hold := req.Hold
	if hold <= 0 {
		hold = n.cfg.PollHold
	}
	w.after = PositionOf(req.Cursor)
	n.m.parked.Inc()
	w.timer = time.AfterFunc(hold, w.expire)
	select {
	case <-n.release:
		w.expired.Store(true) // registered after ReleasePolls collected the waiters
	default:
	}
	w.check()
	return w
}

// Parked is a subscribe in progress. While it waits it is only this
// struct, its timer and its index entries: no goroutine.
type Parked struct {
	n     *Node
	req   PollRequest
	shard int
	done  func(PollResult, error)
	timer *time.Timer
	// after is where the next scan starts; only the checking goroutine
	// (state stateChecking or stateAgain) touches it.
	after      channelgroups.Position
	state      atomic.Int32
	expired    atomic.Bool
	registered bool
}

// A Parked's state: one goroutine at a time checks it; a wake-up during a
// check makes that goroutine check again, so none is lost.
const (
	stateIdle     = iota // parked, nobody checking
	stateChecking        // a goroutine is checking
	stateAgain           // checking, and woken again meanwhile
	stateDone            // answered
)

// signal wakes the poll: it is checked again soon on a worker, off the
// caller's goroutine (the log consumer wakes many polls at once).
func (w *Parked) signal() {
	for {
		switch s := w.state.Load(); s {
		case stateIdle:
			if w.state.CompareAndSwap(stateIdle, stateChecking) {
				w.n.workers.Go(w.check)
				return
			}
		case stateChecking:
			if w.state.CompareAndSwap(stateChecking, stateAgain) {
				return
			}
		default:
			return
		}
	}
}

// expire makes the poll answer with what it has (nothing) at its next check.
func (w *Parked) expire() {
	w.expired.Store(true)
	w.signal()
}

// check scans for deliveries until it answers or nothing more woke it.
func (w *Parked) check() {
	for !w.try() {
		if w.state.CompareAndSwap(stateChecking, stateIdle) {
			return
		}
		w.state.Store(stateChecking) // woken meanwhile: look again
	}
}

// try answers the poll if there is something to deliver or it expired.
func (w *Parked) try() bool {
	n := w.n
	cut := n.applied(w.shard)
	if ds := n.collect(w.req, w.after, cut); len(ds) > 0 {
		res := PollResult{Cursor: CursorOf(cut), Deliveries: ds}
		if len(ds) > MaxDeliveries {
			res.Deliveries = ds[:MaxDeliveries]
			res.Cursor = CursorOf(ds[MaxDeliveries-1].Msg.Pos)
		}
		w.finish(res, nil)
		return true
	}
	if w.after.Less(cut) {
		w.after = cut // nothing for us up to cut: later scans start there
	}
	if w.expired.Load() {
		w.finish(PollResult{Cursor: CursorOf(w.after)}, nil)
		return true
	}
	return false
}

func (w *Parked) finish(res PollResult, err error) {
	w.state.Store(stateDone)
	if w.timer != nil { // it parked
		w.timer.Stop()
		w.n.m.parked.Dec()
	}
	if w.registered {
		w.n.unregister(w.req, w)
		w.n.Seen(w.req.Account, w.req.Channels, w.req.UUID, w.req.Heartbeat)
	}
	w.done(res, err)
}

func (n *Node) applied(shard int) channelgroups.Position {
	s := n.shards[shard]
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.applied
}

// handshakeCursor is the cursor a handshake hands out: the applied position,
// or, while the shard's log is still empty, the smallest non-zero cursor
// (zero would make the client handshake again).
func handshakeCursor(applied channelgroups.Position) channelgroups.Timetoken {
	return max(CursorOf(applied), 1)
}

// register indexes a waiter under its channels and groups, tracking the
// groups (from their current views) if they were not tracked yet.
func (n *Node) register(req PollRequest, views []*channelgroups.View, w *Parked) {
	shard := channelgroups.ShardOf(req.Account, len(n.shards))
	n.viewMu.Lock()
	defer n.viewMu.Unlock()
	n.msgMu.Lock()
	defer n.msgMu.Unlock()
	for _, c := range req.Channels {
		ck := chanKey{Account: req.Account, Channel: c}
		if n.byChannel[ck] == nil {
			n.byChannel[ck] = map[*Parked]struct{}{}
		}
		n.byChannel[ck][w] = struct{}{}
	}
	now := time.Now()
	for i, g := range req.Groups {
		key := channelgroups.GroupKey{Account: req.Account, Group: g}
		tg := n.tracked[key]
		if tg == nil {
			// Messages up to since were annotated before the group was
			// tracked; they are judged by its current view.
			since := channelgroups.MaxPosition(n.applied(shard), n.shards[shard].annotated)
			tg = &trackedGroup{since: since, channels: map[channelgroups.Channel]struct{}{}, waiters: map[*Parked]struct{}{}}
			n.tracked[key] = tg
			v := views[i]
			if pg, ok := n.cache.Published(key); ok && pg.View() != nil {
				v = pg.View() // the newest build: later builds diff against it
			}
			n.setChannelsLocked(key, tg, v)
		}
		tg.waiters[w] = struct{}{}
		tg.lastUsed = now
	}
}

func (n *Node) unregister(req PollRequest, w *Parked) {
	n.msgMu.Lock()
	defer n.msgMu.Unlock()
	for _, c := range req.Channels {
		ck := chanKey{Account: req.Account, Channel: c}
		if set := n.byChannel[ck]; set != nil {
			delete(set, w)
			if len(set) == 0 {
				delete(n.byChannel, ck)
			}
		}
	}
	now := time.Now()
	for _, g := range req.Groups {
		if tg := n.tracked[channelgroups.GroupKey{Account: req.Account, Group: g}]; tg != nil {
			delete(tg.waiters, w)
			tg.lastUsed = now
		}
	}
}

// collect returns the deliveries after `after` up to cut, in log order.
func (n *Node) collect(req PollRequest, after, cut channelgroups.Position) []Delivery {
	n.msgMu.Lock()
	defer n.msgMu.Unlock()
	oldest := uint64(time.Now().Add(-n.cfg.RingAge).UnixMilli())
	var out []Delivery
	scan := func(c channelgroups.Channel, via func(ringEntry) (channelgroups.Group, bool)) {
		r := n.rings[chanKey{Account: req.Account, Channel: c}]
		if r == nil {
			return
		}
		i, _ := slices.BinarySearchFunc(r.entries, after, func(e ringEntry, p channelgroups.Position) int {
			if p.Less(e.msg.Pos) {
				return 1
			}
			return -1
		})
		for ; i < len(r.entries); i++ {
			e := r.entries[i]
			if cut.Less(e.msg.Pos) {
				break
			}
			if e.msg.Pos.Ms < oldest {
				continue
			}
			if g, ok := via(e); ok {
				out = append(out, Delivery{Msg: e.msg, Group: g})
			}
		}
	}
	for _, c := range req.Channels {
		scan(c, func(ringEntry) (channelgroups.Group, bool) { return "", true })
	}
	for _, g := range req.Groups {
		tg := n.tracked[channelgroups.GroupKey{Account: req.Account, Group: g}]
		if tg == nil {
			continue
		}
		for c := range tg.channels {
			scan(c, func(e ringEntry) (channelgroups.Group, bool) {
				if !tg.since.Less(e.msg.Pos) {
					return g, true // before tracking began: judged by the current view
				}
				_, held := slices.BinarySearch(e.groups, g)
				return g, held
			})
		}
		for c, at := range tg.left {
			if at.Less(after) {
				continue // it left before the cursor: nothing owed
			}
			scan(c, func(e ringEntry) (channelgroups.Group, bool) {
				if !tg.since.Less(e.msg.Pos) {
					return g, false // before tracking began: judged by the current view, which lacks it
				}
				_, held := slices.BinarySearch(e.groups, g)
				return g, held
			})
		}
	}
	// In log order; a message reached through several routes (directly and
	// through groups) is delivered once, through the first route scanned.
	slices.SortStableFunc(out, func(a, b Delivery) int {
		if a.Msg.Pos == b.Msg.Pos {
			return 0
		}
		if a.Msg.Pos.Less(b.Msg.Pos) {
			return -1
		}
		return 1
	})
	return slices.CompactFunc(out, func(a, b Delivery) bool { return a.Msg == b.Msg })
}

// History returns up to max stored messages of a channel with timetokens in
// [end, start) (zero bounds are open), oldest first.
func (n *Node) History(a channelgroups.Account, c channelgroups.Channel, start, end channelgroups.Timetoken, max int) []*Message {
	n.msgMu.Lock()
	defer n.msgMu.Unlock()
	r := n.rings[chanKey{Account: a, Channel: c}]
	if r == nil {
		return nil
	}
	oldest := uint64(time.Now().Add(-n.cfg.RingAge).UnixMilli())
	var out []*Message
	for _, e := range r.entries {
		m := e.msg
		tt := m.Timetoken()
		if m.NoStore || m.Signal || m.Pos.Ms < oldest || (start != 0 && tt >= start) || (end != 0 && tt < end) {
			continue
		}
		out = append(out, m)
	}
	if len(out) > max {
		out = out[len(out)-max:]
	}
	return out
}

// ReleasePolls answers every parked subscribe at once (at shutdown, so that
// clients reconnect elsewhere) and makes later ones return without parking.
func (n *Node) ReleasePolls() {
	n.releaseOnce.Do(func() { close(n.release) })
	n.msgMu.Lock()
	all := map[*Parked]struct{}{}
	for _, set := range n.byChannel {
		for w := range set {
			all[w] = struct{}{}
		}
	}
	for _, tg := range n.tracked {
		for w := range tg.waiters {
			all[w] = struct{}{}
		}
	}
	n.msgMu.Unlock()
	for w := range all {
		w.expire()
	}
}

// sweepMessages drops rings whose newest message is past the retention and
// groups nobody subscribed to for a while.
func (n *Node) sweepMessages(now time.Time) {
	oldest := uint64(now.Add(-n.cfg.RingAge).UnixMilli())
	n.viewMu.Lock()
	defer n.viewMu.Unlock()
	n.msgMu.Lock()
	defer n.msgMu.Unlock()
	for k, r := range n.rings {
		if len(r.entries) == 0 || r.entries[len(r.entries)-1].msg.Pos.Ms < oldest {
			delete(n.rings, k)
		}
	}
	for key, tg := range n.tracked {
		for c, at := range tg.left {
			if at.Ms < oldest {
				delete(tg.left, c) // its messages have left the rings too
			}
		}
		if len(tg.waiters) == 0 && now.Sub(tg.lastUsed) > n.cfg.TrackIdle {
			for c := range tg.channels {
				n.uncontainLocked(chanKey{Account: key.Account, Channel: c}, key.Group)
			}
			delete(n.tracked, key)
		}
	}
}

// replay loads the recent messages of every shard log into the rings, so a
// node that starts (or restarts) can serve cursors from before it started.
func (n *Node) replay(ctx context.Context) error {
	from := channelgroups.Position{Ms: uint64(time.Now().Add(-n.cfg.RingAge).UnixMilli())}
	for shard := range n.shards {
		after := from
		last := n.applied(shard)
		for after.Less(last) {
			entries, err := n.log.Range(ctx, shard, after, 1000)
			if err != nil {
				return fmt.Errorf("subscriber: replaying shard %d: %w", shard, err)
			}
			if len(entries) == 0 {
				break
			}
			for _, le := range entries {
				if last.Less(le.Pos) {
					break
				}
				if d, err := decodeRecord(le.Data, shard); err == nil && d.msg != nil {
					d.msg.Pos = le.Pos
					n.applyMessage(d.msg)
				} else if err == nil && d.presence != nil {
					n.applyPresence(d.presence, le.Pos)
				}
				after = le.Pos
			}
		}
	}
	return nil
}
