package subscriber

import (
	"cmp"
	"container/heap"
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/groupcast/groupcast/archive"
	"github.com/groupcast/groupcast/channelgroups"
	"github.com/groupcast/groupcast/internal/pollyield"
	"github.com/groupcast/groupcast/subscriber/filter"
)

// hub holds what subscribe needs: each channel's recent messages (rings),
// the parked polls indexed by channel and by group, and the G3 tracking of
// the groups with subscribers on this node. Messages and membership changes
// reach it in log order, so every message is annotated with the groups that
// held its channel at that point of the log.
//
// The rings together hold at most RingBytes: past it, the entry put in
// first, whichever its channel, goes first (see evictLocked). A ring
// emptied that way is dropped with its map entry.
type hub struct {
	n  *Node
	mu sync.Mutex

	rings map[chanKey]*ring
	// order holds every ring (none is empty) by the insertion sequence of
	// its oldest entry: order[0] holds the oldest entry of all.
	order ringOrder
	seq   uint64 // the insertion sequence of the newest entry
	bytes int64  // what the rings hold, as ringEntry.size and ringOverhead count it
	m     hubMetrics

	byChannel map[chanKey]map[*Parked]struct{}
	// byPrefix holds the polls of wildcard subscriptions by the wildcard's
	// prefix ("a." for a.*); wildRings the channels with a ring by the
	// wildcard prefixes they fall under (wildPrefixes).
	byPrefix   map[chanKey]map[*Parked]struct{}
	wildRings  map[chanKey]map[channelgroups.Channel]struct{}
	tracked    map[channelgroups.GroupKey]*trackedGroup
	containing map[chanKey]map[channelgroups.Group]struct{}
	// annotated is, per shard, the newest message put into a ring, with the
	// tracked groups that held its channel. A group tracked from now on is
	// judged by annotations only after it.
	annotated []channelgroups.Position
	// dropped is, per shard, the newest position a ring dropped (by count,
	// age or bytes) while this node served the shard: history reads wait
	// until the archive holds everything up to it (awaitArchived), so that
	// a message dropped from a ring before it was stored is not skipped.
	dropped []channelgroups.Position
	// edits holds each group's recent edits as the log brought them (the
	// retention window, at most maxGroupEdits per group), for every group of
	// the shards served: the membership a message was published under, for
	// messages applied before the group was tracked here (a subscriber that
	// moves between nodes, a shard that moved).
	edits map[channelgroups.GroupKey][]loggedEdit
	// gen counts, per shard, the times its state was dropped; a poll
	// registered before answers with its own cursor rather than scan rings
	// that are gone.
	gen []atomic.Uint64 // changed under mu, read anywhere

	release     chan struct{}
	releaseOnce sync.Once
	workers     *workers
	// parkSeq numbers polls as they register: the order their wake-ups
	// answer them in (oldest first).
	parkSeq uint64

	// afterInsert, if set (tests), runs between a message's ring insert and
	// the advance of its shard's applied position: the seam where a poll
	// registering must not miss the wake-up.
	afterInsert func(channelgroups.Position)
	// beforeApply, if set (tests), runs before a log entry is applied.
	beforeApply func(channelgroups.Position)
}

// hubMetrics are the rings' metrics; the counters are resolved once (the
// message path increments them).
type hubMetrics struct {
	bytes                   prometheus.Gauge
	evictions               *prometheus.CounterVec
	byBytes, byCount, byAge prometheus.Counter
	// wakeups counts the passes that answer the polls a message concerns;
	// woken the polls such passes checked, answered those they answered.
	wakeups, woken, answered prometheus.Counter
}

// newHub makes the node's hub and registers its metrics with the node's
// Registerer.
func newHub(n *Node) (*hub, error) {
	h := &hub{n: n, rings: map[chanKey]*ring{}, byChannel: map[chanKey]map[*Parked]struct{}{},
		byPrefix: map[chanKey]map[*Parked]struct{}{}, wildRings: map[chanKey]map[channelgroups.Channel]struct{}{},
		tracked: map[channelgroups.GroupKey]*trackedGroup{}, edits: map[channelgroups.GroupKey][]loggedEdit{}, containing: map[chanKey]map[channelgroups.Group]struct{}{},
		annotated: make([]channelgroups.Position, n.cfg.Shards), gen: make([]atomic.Uint64, n.cfg.Shards),
		dropped: make([]channelgroups.Position, n.cfg.Shards),
		release: make(chan struct{}), workers: newWorkers(2 * time.Second)}
	h.m.bytes = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "groupcast_ring_bytes",
		Help: "Bytes of messages this node keeps for subscribe cursors and history, all channels together (payloads, names and a per-message overhead; at most --ring-bytes).",
	})
	h.m.evictions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "groupcast_ring_evictions_total",
		Help: "Messages dropped from the channels' rings, by reason: bytes (the node-wide --ring-bytes), count (a channel's --ring-size), age (--ring-age).",
	}, []string{"reason"})
	h.m.byBytes = h.m.evictions.WithLabelValues("bytes")
	h.m.byCount = h.m.evictions.WithLabelValues("count")
	h.m.byAge = h.m.evictions.WithLabelValues("age")
	h.m.wakeups = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "groupcast_wakeups_total",
		Help: "Passes over the parked subscribes a newly applied message concerns (one per message with any parked subscriber): each checks them oldest first and writes their answers.",
	})
	h.m.woken = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "groupcast_wakeup_polls_total",
		Help: "Parked subscribes the wake-up passes checked; over groupcast_wakeups_total, the average batch of a wake-up.",
	})
	h.m.answered = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "groupcast_wakeup_answers_total",
		Help: "Parked subscribes the wake-up passes answered.",
	})
	if reg := n.cfg.Registerer; reg != nil {
		for _, c := range []prometheus.Collector{h.m.bytes, h.m.evictions, h.m.wakeups, h.m.woken, h.m.answered} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("subscriber: %w", err)
			}
		}
	}
	return h, nil
}

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
	seq    uint64 // the hub's insertion sequence: what the byte cap evicts by
}

// entryOverhead approximates what a kept message costs besides its
// payload and strings: the Message, its ring slot, allocation rounding.
const entryOverhead = 256

// ringOverhead approximates what a channel's ring costs while it holds
// anything: the ring, its map entry, its place in the hub's order.
const ringOverhead = 128

// size is what the entry counts for against RingBytes.
func (e ringEntry) size() int64 {
	m := e.msg
	return int64(entryOverhead + len(m.Payload) + len(m.Meta) + len(m.Publisher) + len(m.CustomType) + len(m.Key) +
		len(m.Account) + len(m.Channel) + 16*len(e.groups))
}

// ring holds a channel's recent messages, oldest first.
type ring struct {
	key     chanKey
	entries []ringEntry
	index   int // in hub.order
}

// ringOrder is a min-heap of rings by their oldest entry's sequence.
type ringOrder []*ring

func (o ringOrder) Len() int           { return len(o) }
func (o ringOrder) Less(i, j int) bool { return o[i].entries[0].seq < o[j].entries[0].seq }
func (o ringOrder) Swap(i, j int) {
	o[i], o[j] = o[j], o[i]
	o[i].index, o[j].index = i, j
}
func (o *ringOrder) Push(x any) {
	r := x.(*ring)
	r.index = len(*o)
	*o = append(*o, r)
}
func (o *ringOrder) Pop() any {
	old := *o
	r := old[len(old)-1]
	old[len(old)-1] = nil
	*o = old[:len(old)-1]
	return r
}

// trimLocked removes a ring's k oldest entries, counting them in why. The
// caller restores the ring's place in order (or drops the ring).
func (h *hub) trimLocked(r *ring, k int, why prometheus.Counter) {
	for _, e := range r.entries[:k] {
		h.bytes -= e.size()
		h.noteDroppedLocked(r, e.msg.Pos)
	}
	why.Add(float64(k))
	r.entries = slices.Delete(r.entries, 0, k)
	if c := cap(r.entries); c > 16 && len(r.entries) <= c/4 {
		r.entries = slices.Clone(r.entries) // a ring that shrank lets its array go
	}
}

// noteDroppedLocked records that r dropped its entry at pos; mu is held.
func (h *hub) noteDroppedLocked(r *ring, pos channelgroups.Position) {
	shard := channelgroups.ShardOf(r.key.Account, len(h.dropped))
	if h.dropped[shard].Less(pos) {
		h.dropped[shard] = pos
	}
}

// droppedThrough is the newest position a ring of shard dropped.
func (h *hub) droppedThrough(shard int) channelgroups.Position {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.dropped[shard]
}

// dropRingLocked forgets a ring and what it holds.
func (h *hub) dropRingLocked(r *ring) {
	for _, e := range r.entries {
		h.bytes -= e.size()
		h.noteDroppedLocked(r, e.msg.Pos)
	}
	h.bytes -= ringOverhead
	heap.Remove(&h.order, r.index)
	delete(h.rings, r.key)
	ps, np := wildPrefixes(r.key.Channel)
	for _, p := range ps[:np] {
		pk := chanKey{Account: r.key.Account, Channel: channelgroups.Channel(p)}
		if set := h.wildRings[pk]; set != nil {
			delete(set, r.key.Channel)
			if len(set) == 0 {
				delete(h.wildRings, pk)
			}
		}
	}
}

// wildPrefixes returns the prefixes of the wildcards that can match c: "a."
// and "a.b." for a.b.c (a wildcard has at most two dots). A presence
// channel matches none: wildcards have no presence here.
func wildPrefixes(c channelgroups.Channel) (ps [channelgroups.MaxWildcardDots]string, n int) {
	if strings.HasSuffix(string(c), PresenceSuffix) {
		return ps, 0
	}
	for i := 0; i < len(c)-1 && n < len(ps); i++ {
		if c[i] == '.' {
			ps[n] = string(c[:i+1])
			n++
		}
	}
	return ps, n
}

// evictLocked drops the oldest entries of all rings until they hold at most
// RingBytes, but never keep, the entry just inserted (a message larger
// than RingBytes is kept alone). A poll whose cursor is before a ring's oldest
// entry then gets what the ring still holds, as when the ring wraps by
// RingSize; a ring emptied is dropped, as when it ages out.
func (h *hub) evictLocked(keep *Message) {
	for h.bytes > h.n.cfg.RingBytes && len(h.order) > 0 {
		r := h.order[0]
		if r.entries[0].msg == keep {
			return
		}
		if len(r.entries) == 1 {
			h.m.byBytes.Inc()
			h.dropRingLocked(r)
			continue
		}
		h.trimLocked(r, 1, h.m.byBytes)
		heap.Fix(&h.order, 0)
	}
}

// leaveGrace is how long a tracked group keeps a channel that storage no
// longer shows before the log's remove of it has been applied. Storage can
// be ahead of the log (an edit is stored before it is appended), and a
// message published before the remove was acknowledged is owed to the
// group's subscribers (G3); the remove reaches the log within this, unless
// the shard's outbox is blocked.
const leaveGrace = 10 * time.Second

// trackedGroup is a group with subscribers on this node (or recently so).
// After since, every message applied records whether the group held its
// channel. Its channels change in log order: a channel joins when an add
// is applied or a view shows it, and leaves when the log's remove (or
// delete) of it is applied — not when a storage read that is ahead of the
// log stops showing it, which only starts the channel's leaveGrace.
type trackedGroup struct {
	since    channelgroups.Position
	channels map[channelgroups.Channel]struct{}
	// left holds the channels that left the group, each with the shard's
	// applied position just before it left. A subscriber whose cursor is at
	// or before that position may still be owed messages published on the
	// channel while it was in the group (G3), so collect scans it too.
	left map[channelgroups.Channel]channelgroups.Position
	// leaving holds the channels a view no longer shows whose remove the log
	// has not brought yet, with when that was first seen.
	leaving  map[channelgroups.Channel]time.Time
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
// everything the token covers, so the message sorts after those edits —
// in other regions' logs too: the message carries the token's positions
// there as its dependencies (see replicate.go). Publish keeps neither m
// nor what it points to once it returns (m.Deps aside, which it sets).
func (n *Node) Publish(ctx context.Context, m *Message, tok *channelgroups.Token) (channelgroups.Timetoken, error) {
	shard := channelgroups.ShardOf(m.Account, len(n.shards))
	if tok != nil {
		if tok.Shard != shard {
			return 0, fmt.Errorf("token is for another shard: %w", channelgroups.ErrInvalidToken)
		}
		if !n.serve(ctx, shard) {
			return 0, ErrNotServing
		}
		if ok, _ := n.catchUp(ctx, tok); !ok {
			return 0, ErrNotFresh
		}
		m.Deps = nil
		for _, rp := range tok.Positions {
			if rp.Region != n.cfg.Region {
				m.Deps = append(m.Deps, rp)
			}
		}
	}
	e := messageEncoders.Get().(*messageEncoder)
	pos, err := n.ann.appendRecord(ctx, shard, e.encode(m)) // the log keeps a copy (Log.Append)
	e.release()
	if err != nil {
		return 0, err
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
func (h *hub) applyMessage(m *Message) *wakeup {
	key := chanKey{Account: m.Account, Channel: m.Channel}
	h.mu.Lock()
	defer h.mu.Unlock()
	shard := channelgroups.ShardOf(m.Account, len(h.annotated))
	if h.annotated[shard].Less(m.Pos) {
		h.annotated[shard] = m.Pos
	}
	r := h.rings[key]
	if r != nil && m.Key != "" {
		for _, e := range r.entries {
			if e.msg.Key == m.Key && e.msg.Publisher == m.Publisher {
				return nil // a retried publish: delivered once
			}
		}
	}
	var groups []channelgroups.Group
	for g := range h.containing[key] {
		groups = append(groups, g)
	}
	slices.Sort(groups)
	h.seq++
	e := ringEntry{msg: m, groups: groups, seq: h.seq}
	h.bytes += e.size()
	switch size := h.n.cfg.RingSize; {
	case r == nil:
		r = &ring{key: key, entries: []ringEntry{e}}
		h.rings[key] = r
		h.bytes += ringOverhead
		heap.Push(&h.order, r)
		ps, np := wildPrefixes(key.Channel)
		for _, p := range ps[:np] {
			pk := chanKey{Account: key.Account, Channel: channelgroups.Channel(p)}
			if h.wildRings[pk] == nil {
				h.wildRings[pk] = map[channelgroups.Channel]struct{}{}
			}
			h.wildRings[pk][key.Channel] = struct{}{}
		}
	case len(r.entries) >= size:
		h.trimLocked(r, len(r.entries)-size+1, h.m.byCount)
		r.entries = append(r.entries, e)
		heap.Fix(&h.order, r.index)
	default:
		r.entries = append(r.entries, e)
	}
	h.evictLocked(m)
	h.m.bytes.Set(float64(h.bytes))
	return &wakeup{key: key, groups: groups}
}

// wake answers the polls a message concerns. It runs after the shard's
// applied position has moved past the message: a poll registered before
// is found here, one registered after finds the message on its first check.
//
// The polls are checked oldest first (by when they registered; a poll
// reached through its channel and a group is checked once) in one pass off
// the caller's goroutine (the log consumer's): a pass writes each answer
// as it finds it, so a wake-up costs one goroutine hop, not one per poll,
// and the polls parked longest are answered first. A wake-up of more than
// wakeStripe polls is split over up to GOMAXPROCS passes, poll i going to
// pass i mod passes, so that several cores write answers, still about
// oldest first.
func (h *hub) wake(w *wakeup) {
	if w == nil {
		return
	}
	h.mu.Lock()
	ws := h.waitersLocked(w)
	h.mu.Unlock()
	if len(ws) == 0 {
		return
	}
	h.m.wakeups.Inc()
	h.m.woken.Add(float64(len(ws)))
	passes := min(runtime.GOMAXPROCS(0), (len(ws)+wakeStripe-1)/wakeStripe)
	for i := range passes {
		h.workers.Go(func() { h.answerPass(ws, i, passes) })
	}
}

// wakeStripe is the fewest polls a wake-up gives each of its passes.
const wakeStripe = 64

// passYield is how many answers a wake-up pass writes between two turns of
// the network poller; a yield costs about 1 us. With one core, 10,000
// subscribers woken by each publish and 1.09 M deliveries/s (bench.Fanout,
// pinned as make bench pins it, with httpapi's re-poll queue), delivery p99
// was 343-355 ms yielding every 16 answers, 475-503 ms every 64.
const passYield = 16

// waitersLocked returns the polls a message concerns, oldest first; mu is
// held.
func (h *hub) waitersLocked(w *wakeup) []*Parked {
	byChan := h.byChannel[w.key]
	n, sources := len(byChan), 0
	if n > 0 {
		sources++
	}
	var byWild [channelgroups.MaxWildcardDots]map[*Parked]struct{}
	ps, np := wildPrefixes(w.key.Channel)
	for i, p := range ps[:np] {
		if set := h.byPrefix[chanKey{Account: w.key.Account, Channel: channelgroups.Channel(p)}]; len(set) > 0 {
			byWild[i] = set
			n += len(set)
			sources++
		}
	}
	var tgs []*trackedGroup
	for _, g := range w.groups {
		if tg := h.tracked[channelgroups.GroupKey{Account: w.key.Account, Group: g}]; tg != nil && len(tg.waiters) > 0 {
			tgs = append(tgs, tg)
			n += len(tg.waiters)
			sources++
		}
	}
	if n == 0 {
		return nil
	}
	ws := make([]*Parked, 0, n)
	for p := range byChan {
		ws = append(ws, p)
	}
	for _, set := range byWild {
		for p := range set {
			ws = append(ws, p)
		}
	}
	for _, tg := range tgs {
		for p := range tg.waiters {
			ws = append(ws, p)
		}
	}
	slices.SortFunc(ws, func(a, b *Parked) int { return cmp.Compare(a.seq, b.seq) })
	if sources > 1 {
		ws = slices.Compact(ws)
	}
	return ws
}

// answerPass checks ws[i], ws[i+step], ... in turn, each on this goroutine
// unless another one is checking it already (which then checks again).
// Every passYield answers it lets the runtime's network poller take a turn
// (pollyield): each answer makes a goroutine runnable (the one that serves
// the connection's next request), and a pass over 10,000 polls would
// otherwise keep the scheduler from seeing new requests, publishes above
// all, until all of them had run.
func (h *hub) answerPass(ws []*Parked, i, step int) {
	answered, since := 0, 0
	for ; i < len(ws); i += step {
		if p := ws[i]; p.claim() && p.check() {
			answered++
			if since++; since == passYield {
				since = 0
				pollyield.Yield()
			}
		}
	}
	h.m.answered.Add(float64(answered))
}

// track brings a tracked group's channels in step with a rebuilt view: a
// channel the view shows joins at once; one it no longer shows starts its
// leaveGrace (the log's remove makes it leave, see trackEdit). The group's
// parked subscribers are woken when its channels changed, so they re-expand
// at once. views.mu is held.
func (h *hub) track(key channelgroups.GroupKey, v *channelgroups.View) {
	h.trackPresenceTwin(key, v)
	h.mu.Lock()
	tg := h.tracked[key]
	if tg == nil {
		h.mu.Unlock()
		return
	}
	changed := false
	now := h.n.now()
	var logged map[channelgroups.Channel]bool
	for _, c := range v.Channels {
		delete(tg.leaving, c)
		if _, ok := tg.channels[c]; !ok {
			// Not when the log's own edits say c is out: the view is then
			// ahead of the log (an add stored, not yet appended) or behind
			// it, and c joins when the log's add comes (trackEdit).
			if logged == nil {
				logged = lastOps(h.edits[key])
			}
			if added, known := logged[c]; known && !added {
				continue
			}
			h.joinLocked(key, tg, c)
			changed = true
		}
	}
	for c := range tg.channels {
		if _, ok := slices.BinarySearch(v.Channels, c); ok {
			continue
		}
		switch since, ok := tg.leaving[c]; {
		case !ok:
			if tg.leaving == nil {
				tg.leaving = map[channelgroups.Channel]time.Time{}
			}
			tg.leaving[c] = now
		case now.Sub(since) > leaveGrace:
			h.leaveLocked(key, tg, c)
			changed = true
		}
	}
	h.wakeGroupLocked(tg, changed)
}

// loggedEdit is an edit of a group at its position in the log.
type loggedEdit struct {
	pos      channelgroups.Position
	at       channelgroups.Timetoken
	op       channelgroups.Op
	channels []channelgroups.Channel // empty for OpClear: it names every channel
	// held: the channels it names that the group held before it, when
	// heldKnown (channelgroups.Edit.Held).
	held      []channelgroups.Channel
	heldKnown bool
}

// maxGroupEdits bounds how many recent edits are kept per group.
const maxGroupEdits = 256

func (e loggedEdit) names(c channelgroups.Channel) bool {
	return e.op == channelgroups.OpClear || slices.Contains(e.channels, c)
}

// recordEdit keeps an edit read from the log (or replayed) in its group's
// recent edits.
func (h *hub) recordEdit(e channelgroups.Edit, pos channelgroups.Position) {
	key := channelgroups.GroupKey{Account: e.Account, Group: e.Group}
	h.mu.Lock()
	defer h.mu.Unlock()
	es := append(h.edits[key], loggedEdit{pos: pos, at: e.At, op: e.Op, channels: e.Channels, held: e.Held, heldKnown: e.HeldKnown})
	if len(es) > maxGroupEdits {
		es = slices.Delete(es, 0, len(es)-maxGroupEdits)
	}
	h.edits[key] = es
}

// heldAt reports whether the group's recent edits say channel c was in it
// at log position p: of the edits before p that name c, the one that wins
// by last-writer-wins (highest timetoken, a remove or delete winning a tie:
// what storage keeps, whatever order the log — which interleaves copies of
// other regions' edits — holds them in) decides (an add: in; a remove or
// delete: out); with none, the first one after p, by what it says the group
// held before it (an edit that does not say is no evidence). ok is false
// when no recent edit decides.
func heldAt(es []loggedEdit, c channelgroups.Channel, p channelgroups.Position) (held, ok bool) {
	i := firstAt(es, p)
	var win *loggedEdit
	for j := range es[:i] {
		if es[j].names(c) && (win == nil || es[j].supersedes(*win)) {
			win = &es[j]
		}
	}
	if win != nil {
		return win.op == channelgroups.OpAdd, true
	}
	for j := i; j < len(es); j++ {
		if es[j].names(c) {
			if !es[j].heldKnown {
				return false, false
			}
			return slices.Contains(es[j].held, c), true
		}
	}
	return false, false
}

// supersedes reports whether e wins over o by last-writer-wins, as
// channelgroups.Entry.Supersedes and Snapshot.Apply decide: the later
// timetoken, and on a tie a remove or delete over an add.
func (e loggedEdit) supersedes(o loggedEdit) bool {
	return e.at > o.at || (e.at == o.at && e.op != channelgroups.OpAdd && o.op == channelgroups.OpAdd)
}

// firstAt returns the index of the first of es (in log order) at or after p.
func firstAt(es []loggedEdit, p channelgroups.Position) int {
	i, _ := slices.BinarySearchFunc(es, p, func(e loggedEdit, p channelgroups.Position) int {
		if e.pos.Less(p) {
			return -1
		}
		return 1
	})
	return i
}

// lastOps returns, for each channel the edits name, whether the edit that
// wins by last-writer-wins (see supersedes; a delete names every channel)
// added it.
func lastOps(es []loggedEdit) map[channelgroups.Channel]bool {
	entries, cleared := logEntries(es)
	out := make(map[channelgroups.Channel]bool, len(entries))
	for _, e := range entries {
		out[e.Channel] = e.State == channelgroups.Added && e.At > cleared
	}
	return out
}

// logEntries returns the edits' winning entry per channel they name, by
// last-writer-wins (Entry.Supersedes, the rule storage applies), and the
// timetoken of their latest delete: what a storage read would add to a
// snapshot that predates them.
func logEntries(es []loggedEdit) ([]channelgroups.Entry, channelgroups.Timetoken) {
	win := map[channelgroups.Channel]channelgroups.Entry{}
	var cleared channelgroups.Timetoken
	for _, e := range es {
		st := channelgroups.Added
		switch e.op {
		case channelgroups.OpClear:
			cleared = max(cleared, e.at)
			continue
		case channelgroups.OpRemove:
			st = channelgroups.Removed
		}
		for _, c := range e.channels {
			n := channelgroups.Entry{Channel: c, State: st, At: e.at}
			if w, ok := win[c]; !ok || n.Supersedes(w) {
				win[c] = n
			}
		}
	}
	entries := make([]channelgroups.Entry, 0, len(win))
	for _, e := range win {
		entries = append(entries, e)
	}
	return entries, cleared
}

// logView returns the group's view as snap (its storage snapshot, empty if
// not cached) merged with the group's edits read from the log so far
// (recordEdit), by last-writer-wins. It is the view after an edit of an
// account that does not use the overlay: that account's published view
// changes at the next storage read, but its G3 tracking follows the log.
func (h *hub) logView(key channelgroups.GroupKey, snap *channelgroups.Snapshot) *channelgroups.View {
	h.mu.Lock()
	entries, cleared := logEntries(h.edits[key])
	h.mu.Unlock()
	return channelgroups.Merge(snap, entries, cleared)
}

// trackEdit applies an edit read from the log to its group's tracking, if
// the group is tracked: this is where channels leave (G3: a message before
// the remove in the log was published while the channel was in the group).
// v is the group's view after the edit (nil if none is built); a channel
// the edit removes but the view still shows (a later add won) stays, and
// one it adds joins when the view shows it or the group's edits read from
// the log so far say the add won (the view can be ahead of the log).
// views.mu is held.
func (h *hub) trackEdit(key channelgroups.GroupKey, e channelgroups.Edit, v *channelgroups.View) {
	h.trackPresenceTwinEdit(key, e, v)
	h.mu.Lock()
	tg := h.tracked[key]
	if tg == nil {
		h.mu.Unlock()
		return
	}
	// Whether c is in the group after e: by the log's own edits so far
	// (recordEdit; e is the last of them), which decide by last-writer-wins
	// as storage does, not by the view, which may be past the log (storage
	// is ahead of it: an edit is stored before it is appended, and a
	// refresh reads it) in either direction. A remove stored but not yet
	// appended must not make c leave before the log says so, nor an add
	// stored but not yet appended make it join: a message in between went
	// to c while the group held it, or did not (G3). Only a key whose edits
	// the log does not record (a presence twin) goes by the view.
	edits := h.edits[key]
	var won map[channelgroups.Channel]bool
	in := func(c channelgroups.Channel) bool {
		if len(edits) == 0 {
			if v == nil {
				return e.Op == channelgroups.OpAdd
			}
			_, ok := slices.BinarySearch(v.Channels, c)
			return ok
		}
		if won == nil {
			won = lastOps(edits)
		}
		return won[c] // a channel no logged edit names after a clear is out
	}
	changed := false
	switch e.Op {
	case channelgroups.OpAdd:
		for _, c := range e.Channels {
			if _, ok := tg.channels[c]; !ok && in(c) {
				h.joinLocked(key, tg, c)
				changed = true
			}
		}
	case channelgroups.OpRemove:
		for _, c := range e.Channels {
			if _, ok := tg.channels[c]; ok && !in(c) {
				h.leaveLocked(key, tg, c)
				changed = true
			}
		}
	case channelgroups.OpClear:
		for c := range tg.channels {
			if !in(c) {
				h.leaveLocked(key, tg, c)
				changed = true
			}
		}
	}
	h.wakeGroupLocked(tg, changed)
}

// wakeGroupLocked unlocks mu and, if changed, wakes the group's waiters.
func (h *hub) wakeGroupLocked(tg *trackedGroup, changed bool) {
	var wake []*Parked
	if changed {
		for w := range tg.waiters {
			wake = append(wake, w)
		}
	}
	h.mu.Unlock()
	for _, w := range wake {
		w.signal()
	}
}

func (h *hub) joinLocked(key channelgroups.GroupKey, tg *trackedGroup, c channelgroups.Channel) {
	tg.channels[c] = struct{}{}
	delete(tg.left, c)
	delete(tg.leaving, c)
	ck := chanKey{Account: key.Account, Channel: c}
	if h.containing[ck] == nil {
		h.containing[ck] = map[channelgroups.Group]struct{}{}
	}
	h.containing[ck][key.Group] = struct{}{}
}

func (h *hub) leaveLocked(key channelgroups.GroupKey, tg *trackedGroup, c channelgroups.Channel) {
	delete(tg.channels, c)
	delete(tg.leaving, c)
	if tg.left == nil {
		tg.left = map[channelgroups.Channel]channelgroups.Position{}
	}
	tg.left[c] = h.n.applied(channelgroups.ShardOf(key.Account, len(h.gen)))
	h.uncontainLocked(chanKey{Account: key.Account, Channel: c}, key.Group)
}

func (h *hub) uncontainLocked(ck chanKey, g channelgroups.Group) {
	if set := h.containing[ck]; set != nil {
		delete(set, g)
		if len(set) == 0 {
			delete(h.containing, ck)
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
	// UUID is the subscriber's user id: it joins the channels' presence;
	// at most MaxUUIDBytes.
	UUID string
	// Heartbeat is the presence timeout the client asked for; zero means
	// the node's PresenceTimeout.
	Heartbeat time.Duration
	// Wildcards are wildcard subscriptions (a.*, a.b.*): every message of
	// every channel under one is delivered, as for a channel group (G3).
	Wildcards []channelgroups.Wildcard
	// Filter, if not nil, is the subscriber's filter-expr: a message it
	// does not match is not delivered, and the cursor moves past it.
	// Presence events (on -pnpres channels) are not filtered.
	Filter *filter.Expr
}

// Delivery is one message for a subscriber, and the group or wildcard it
// came through (both empty for a channel subscribed directly).
type Delivery struct {
	Msg      *Message
	Group    channelgroups.Group
	Wildcard channelgroups.Wildcard
}

// PollResult is a subscribe answer: the next cursor and the messages.
type PollResult struct {
	Cursor     channelgroups.Timetoken
	Deliveries []Delivery
	// Gap reports that the answer moves the client's cursor across a gap
	// in the shard's log (see gap.go): messages published between the
	// request's cursor and this one may never be delivered.
	Gap bool
}

// deliveriesPool holds the arrays of answers' deliveries: under load most
// polls answer at once with tens of messages, and growing a fresh slice for
// each was most of the bytes the node allocated (so most of its GC work).
// The pool holds the arrays themselves (*[pooledDeliveries]Delivery, which
// a slice of that capacity converts to without allocating), not slices: a
// *[]Delivery put back would be a new allocation per answer.
var deliveriesPool sync.Pool // *[pooledDeliveries]Delivery

// pooledDeliveries is the capacity of the pool's arrays, the only one it
// keeps: a full answer (MaxDeliveries) and then some.
const pooledDeliveries = 128

func getDeliveries() []Delivery {
	if p, ok := deliveriesPool.Get().(*[pooledDeliveries]Delivery); ok {
		return p[:0]
	}
	return make([]Delivery, 0, pooledDeliveries)
}

// ReleaseDeliveries gives an answer's deliveries back for reuse, once the
// answer is written: neither the slice nor its array may be used after.
// Releasing is optional (an answer never released is garbage like any
// other) but must happen at most once per answer.
func ReleaseDeliveries(ds []Delivery) {
	if cap(ds) != pooledDeliveries {
		return // not one of the pool's (a grown or a test's array)
	}
	a := (*[pooledDeliveries]Delivery)(ds[:pooledDeliveries])
	clear(a[:]) // keep no message alive from the pool
	deliveriesPool.Put(a)
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
		w.Cancel() // nil if it was answered at once: ch has the answer
		<-ch       // the poll is unregistered once it has answered
		return PollResult{}, ctx.Err()
	}
}

// StartPoll serves a subscribe without holding a goroutine while it is
// parked: done is called exactly once with the answer, either before
// StartPoll returns (a handshake, messages already there, an error) or
// later from a short-lived goroutine. The handshake answers with the
// current cursor; otherwise the answer carries the messages after the
// cursor on the subscribed channels and groups, and the poll parks until
// there are some, until Hold passes, until ReleasePolls, or until the node
// stops serving the account's shard (then it answers with the cursor it was
// given, and the client comes back to the shard's new owners). ctx bounds
// the expansion of the groups. A uuid longer than MaxUUIDBytes is refused
// (ErrUUIDTooLong), and so is a subscribe whose presence records this node
// cannot keep (ErrPresenceFull). The returned Parked can end the poll early;
// it is nil when a poll of plain channels found its messages already there
// and was answered without ever being registered (most re-polls under load:
// nothing is allocated for them), and Cancel on nil does nothing.
func (n *Node) StartPoll(ctx context.Context, req PollRequest, done func(PollResult, error)) *Parked {
	shard := channelgroups.ShardOf(req.Account, len(n.shards))
	fail := func(res PollResult, err error) *Parked {
		w := &Parked{n: n, req: req, shard: shard, done: done}
		w.finish(res, err)
		return w
	}
	if req.Token != nil && req.Token.Shard != shard {
		return fail(PollResult{}, fmt.Errorf("token is for another shard: %w", channelgroups.ErrInvalidToken))
	}
	if err := checkUUID(req.UUID); err != nil {
		return fail(PollResult{}, err)
	}
	if !n.serve(ctx, shard) {
		if req.Cursor == 0 {
			return fail(PollResult{}, ErrNotServing)
		}
		return fail(PollResult{Cursor: req.Cursor}, nil)
	}
	gen := n.hub.generation(shard)
	views := make([]*channelgroups.View, len(req.Groups))
	for i, g := range req.Groups {
		v, err := n.pollView(ctx, req.Account, g, req.Token, req.Consistency)
		if err == nil && len(v.Channels) == 0 {
			err = fmt.Errorf("group %q: %w", g, ErrEmptyGroup)
		}
		if err != nil {
			return fail(PollResult{}, err)
		}
		views[i] = v
	}
	if req.Cursor != 0 && len(req.Groups) == 0 && len(req.Wildcards) == 0 && req.Filter == nil && n.answerAtOnce(req, shard, gen, done) {
		return nil
	}
	w := &Parked{n: n, req: req, shard: shard, done: done}
	w.state.Store(stateChecking) // the caller's own check below comes first
	if !n.register(req, views, w, gen) {
		// The shard was given up (and maybe taken up again) meanwhile: the
		// views and rings this poll would read are not the ones it checked.
		w.finish(PollResult{Cursor: req.Cursor}, nil)
		return w
	}
	w.registered = true
	w.present = presentOn(req, views)
	if err := n.pres.seen(req.Account, w.present, req.UUID, req.Heartbeat); err != nil {
		// ErrPresenceFull: nothing was recorded, and nothing to refresh.
		n.hub.unregister(req, w)
		w.registered = false
		w.finish(PollResult{}, err)
		return w
	}
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
	case <-n.hub.release:
		w.expired.Store(true) // registered after ReleasePolls collected the waiters
	default:
	}
	w.check()
	return w
}

// answerAtOnce answers a poll of plain channels whose messages are
// already there, without a Parked, registering it for wake-ups or starting
// its hold's timer: under load most re-polls find messages waiting. It
// reports false, having changed nothing, when there are none. StartPoll
// sends only polls of plain channels here: a poll through groups registers
// first (its routes are tracked from its registration on), and wildcard and
// filtered polls keep the one path they were proven on (TestWildcardExact,
// the filter's cursor moving past what it drops).
func (n *Node) answerAtOnce(req PollRequest, shard int, gen uint64, done func(PollResult, error)) bool {
	if !n.shards[shard].serving.Load() {
		return false
	}
	cut := n.applied(shard)
	ds, ok := n.hub.collect(req, shard, gen, PositionOf(req.Cursor), cut)
	if !ok || len(ds) == 0 {
		return false // collect takes a pooled slice only to append to it
	}
	if err := n.pres.seen(req.Account, presentOn(req, nil), req.UUID, req.Heartbeat); err != nil {
		ReleaseDeliveries(ds)
		done(PollResult{}, err)
		return true
	}
	res := resultOf(ds, cut)
	res.Gap = n.acrossGap(shard, req.Cursor, res.Cursor)
	done(res, nil)
	return true
}

// Parked is a subscribe in progress. While it waits it is only this
// struct, its timer and its index entries: no goroutine.
type Parked struct {
	n     *Node
	req   PollRequest
	shard int
	gen   uint64 // the shard's generation when the poll registered
	done  func(PollResult, error)
	timer *time.Timer
	// after is where the next scan starts; only the checking goroutine
	// (state stateChecking or stateAgain) touches it.
	after      channelgroups.Position
	seq        uint64                  // the order it registered in (hub.parkSeq), under hub.mu
	present    []channelgroups.Channel // where the user is present: the channels and the groups' (presence.go)
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
// caller's goroutine.
func (w *Parked) signal() {
	if w.claim() {
		w.n.hub.workers.Go(func() { w.check() })
	}
}

// claim reports whether the caller is to check the poll now: it was idle.
// When another goroutine is checking it, that one is made to check again.
func (w *Parked) claim() bool {
	for {
		switch s := w.state.Load(); s {
		case stateIdle:
			if w.state.CompareAndSwap(stateIdle, stateChecking) {
				return true
			}
		case stateChecking:
			if w.state.CompareAndSwap(stateChecking, stateAgain) {
				return false
			}
		default:
			return false
		}
	}
}

// Cancel ends the poll early, as if its hold had passed: it answers with
// what it has (usually nothing) soon, on another goroutine, through the done
// func StartPoll was given. Cancelling an answered poll does nothing.
func (w *Parked) Cancel() {
	if w != nil {
		w.expire()
	}
}

// expire makes the poll answer with what it has (nothing) at its next check.
func (w *Parked) expire() {
	w.expired.Store(true)
	w.signal()
}

// check scans for deliveries until it answers (true) or nothing more woke
// it (false).
func (w *Parked) check() bool {
	for !w.try() {
		if w.state.CompareAndSwap(stateChecking, stateIdle) {
			return false
		}
		w.state.Store(stateChecking) // woken meanwhile: look again
	}
	return true
}

// try answers the poll if there is something to deliver or it expired.
func (w *Parked) try() bool {
	n := w.n
	cut := n.applied(w.shard)
	ds, ok := n.hub.collect(w.req, w.shard, w.gen, w.after, cut)
	if !ok {
		// The shard's state was dropped: answer with where the client is,
		// so it resumes from there on the shard's owners.
		w.finish(PollResult{Cursor: CursorOf(w.after)}, nil)
		return true
	}
	if f := w.req.Filter; f != nil {
		// Outside the hub's lock: a message's meta is decoded once, by the
		// first filter that reads it. What is filtered out moves the cursor
		// (up to cut) like any message; with nothing left the poll parks on.
		// Filters read publish meta: presence and action events pass.
		ds = slices.DeleteFunc(ds, func(d Delivery) bool {
			return !strings.HasSuffix(string(d.Msg.Channel), PresenceSuffix) && d.Msg.Action == nil && !f.Match(d.Msg.FilterSubject())
		})
	}
	if len(ds) > 0 {
		w.answer(ds, cut)
		return true
	}
	ReleaseDeliveries(ds) // all filtered out
	if w.after.Less(cut) {
		w.after = cut // nothing for us up to cut: later scans start there
	}
	if w.expired.Load() {
		w.finish(PollResult{Cursor: CursorOf(w.after)}, nil)
		return true
	}
	return false
}

// answer answers the poll with ds, the deliveries up to cut: at most
// MaxDeliveries of them, the cursor after the last one it carries.
func (w *Parked) answer(ds []Delivery, cut channelgroups.Position) {
	w.finish(resultOf(ds, cut), nil)
}

// resultOf is the answer carrying ds, collected up to cut: at most
// MaxDeliveries of them, the cursor after the last one carried.
func resultOf(ds []Delivery, cut channelgroups.Position) PollResult {
	res := PollResult{Cursor: CursorOf(cut), Deliveries: ds}
	if len(ds) > MaxDeliveries {
		res.Deliveries = ds[:MaxDeliveries]
		res.Cursor = CursorOf(ds[MaxDeliveries-1].Msg.Pos)
	}
	return res
}

func (w *Parked) finish(res PollResult, err error) {
	w.state.Store(stateDone)
	if w.timer != nil { // it parked
		w.timer.Stop()
		w.n.m.parked.Dec()
	}
	if w.registered {
		w.n.hub.unregister(w.req, w)
		// Refreshes the records the poll kept alive. One a leave dropped
		// meanwhile stays dropped: the client left (an unsubscribe aborts
		// its poll and sends the leave, and the abort is often noticed
		// after the leave); its next subscribe joins again.
		w.n.pres.refresh(w.req.Account, w.present, w.req.UUID)
	}
	if err == nil {
		res.Gap = w.n.acrossGap(w.shard, w.req.Cursor, res.Cursor)
	}
	w.done(res, err)
}

// handshakeCursor is the cursor a handshake hands out: the applied position,
// or, while the shard's log is still empty, the smallest non-zero cursor
// (zero would make the client handshake again).
func handshakeCursor(applied channelgroups.Position) channelgroups.Timetoken {
	return max(CursorOf(applied), 1)
}

// generation returns the shard's generation: it changes when the hub drops
// the shard's state.
func (h *hub) generation(shard int) uint64 { return h.gen[shard].Load() }

// register indexes a waiter under its channels and groups, tracking the
// groups (from their current views) if they were not tracked yet. It
// registers nothing and reports false when the shard's generation is no
// longer gen (taken after the shard was found served) or the shard is not
// served any more.
func (n *Node) register(req PollRequest, views []*channelgroups.View, w *Parked, gen uint64) bool {
	n.views.mu.Lock()
	defer n.views.mu.Unlock()
	h := n.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.gen[w.shard].Load() != gen || !n.shards[w.shard].serving.Load() {
		return false
	}
	w.gen = gen
	h.parkSeq++
	w.seq = h.parkSeq
	for _, c := range req.Channels {
		ck := chanKey{Account: req.Account, Channel: c}
		if h.byChannel[ck] == nil {
			h.byChannel[ck] = map[*Parked]struct{}{}
		}
		h.byChannel[ck][w] = struct{}{}
	}
	for _, wc := range req.Wildcards {
		pk := chanKey{Account: req.Account, Channel: channelgroups.Channel(wc.Prefix())}
		if h.byPrefix[pk] == nil {
			h.byPrefix[pk] = map[*Parked]struct{}{}
		}
		h.byPrefix[pk][w] = struct{}{}
	}
	now := n.now()
	for i, g := range req.Groups {
		key := channelgroups.GroupKey{Account: req.Account, Group: g}
		tg := h.tracked[key]
		if tg == nil {
			// Messages up to since were annotated before the group was
			// tracked; they are judged by its current view.
			since := channelgroups.MaxPosition(n.applied(w.shard), h.annotated[w.shard])
			tg = &trackedGroup{since: since, channels: map[channelgroups.Channel]struct{}{}, waiters: map[*Parked]struct{}{}}
			h.tracked[key] = tg
			v := views[i]
			if pg, ok := n.views.cache.Published(key); ok && pg.View() != nil {
				v = pg.View() // the newest build: later builds diff against it
			}
			// The log's own edits decide the channels they name (as in
			// track): one the view shows but whose last edit in the log is
			// a remove is out until the log's add; one whose last edit is
			// an add is in even if the view (read from storage, which can
			// be ahead of the log) lacks it, and leaves when the log's
			// remove comes (or after leaveGrace).
			logged := lastOps(h.edits[key])
			for _, c := range v.Channels {
				if in, known := logged[c]; !known || in {
					h.joinLocked(key, tg, c)
				}
			}
			for c, in := range logged {
				if _, ok := tg.channels[c]; in && !ok {
					h.joinLocked(key, tg, c)
					if tg.leaving == nil {
						tg.leaving = map[channelgroups.Channel]time.Time{}
					}
					tg.leaving[c] = now
				}
			}
		}
		tg.waiters[w] = struct{}{}
		tg.lastUsed = now
	}
	return true
}

func (h *hub) unregister(req PollRequest, w *Parked) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range req.Channels {
		ck := chanKey{Account: req.Account, Channel: c}
		if set := h.byChannel[ck]; set != nil {
			delete(set, w)
			if len(set) == 0 {
				delete(h.byChannel, ck)
			}
		}
	}
	for _, wc := range req.Wildcards {
		pk := chanKey{Account: req.Account, Channel: channelgroups.Channel(wc.Prefix())}
		if set := h.byPrefix[pk]; set != nil {
			delete(set, w)
			if len(set) == 0 {
				delete(h.byPrefix, pk)
			}
		}
	}
	now := h.n.now()
	for _, g := range req.Groups {
		if tg := h.tracked[channelgroups.GroupKey{Account: req.Account, Group: g}]; tg != nil {
			delete(tg.waiters, w)
			tg.lastUsed = now
		}
	}
}

// collect returns the deliveries after `after` up to cut, in log order; ok
// is false when the shard's state was dropped since the poll registered.
// The slice comes from a pool (getDeliveries): whoever is done with an
// answer may give it back with ReleaseDeliveries.
func (h *hub) collect(req PollRequest, shard int, gen uint64, after, cut channelgroups.Position) (_ []Delivery, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.gen[shard].Load() != gen {
		return nil, false
	}
	oldest := uint64(h.n.now().Add(-h.n.cfg.RingAge).UnixMilli())
	var out []Delivery
	var wild channelgroups.Wildcard // the wildcard being scanned, if any
	sources := 0                    // scans that found something
	scan := func(c channelgroups.Channel, via func(ringEntry) (channelgroups.Group, bool)) {
		r := h.rings[chanKey{Account: req.Account, Channel: c}]
		if r == nil {
			return
		}
		before := len(out)
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
				if out == nil {
					out = getDeliveries()
				}
				out = append(out, Delivery{Msg: e.msg, Group: g, Wildcard: wild})
			}
		}
		if len(out) > before {
			sources++
		}
	}
	for _, c := range req.Channels {
		scan(c, func(ringEntry) (channelgroups.Group, bool) { return "", true })
	}
	for _, g := range req.Groups {
		key := channelgroups.GroupKey{Account: req.Account, Group: g}
		tg := h.tracked[key]
		if tg == nil {
			continue
		}
		es := h.edits[key]
		// A message applied after tracking began carries the groups that
		// held its channel; one from before is judged by the group's recent
		// edits in the log, else by its current channels.
		via := func(c channelgroups.Channel) func(ringEntry) (channelgroups.Group, bool) {
			_, now := tg.channels[c]
			return func(e ringEntry) (channelgroups.Group, bool) {
				if tg.since.Less(e.msg.Pos) {
					_, held := slices.BinarySearch(e.groups, g)
					return g, held
				}
				if held, ok := heldAt(es, c, e.msg.Pos); ok {
					return g, held
				}
				return g, now
			}
		}
		// tg.channels and tg.left never share a channel (join and leave
		// keep it so).
		for c := range tg.channels {
			scan(c, via(c))
		}
		for c, at := range tg.left {
			if !at.Less(after) { // else it left before the cursor: nothing owed
				scan(c, via(c))
			}
		}
		// Channels an edit after the cursor names may have been in the group
		// since the cursor; while messages from before tracking began are
		// owed (the cursor is before since), so may any channel the group's
		// recent edits name.
		first := 0
		if !after.Less(tg.since) {
			first = firstAt(es, after)
		}
		var extra map[channelgroups.Channel]bool // allocated only if an edit names another channel
		for _, e := range es[first:] {
			if e.op == channelgroups.OpClear {
				continue
			}
			for _, c := range e.channels {
				_, in := tg.channels[c]
				at, left := tg.left[c]
				if in || (left && !at.Less(after)) || extra[c] {
					continue
				}
				if extra == nil {
					extra = map[channelgroups.Channel]bool{}
				}
				extra[c] = true
				scan(c, via(c))
			}
		}
	}
	// A wildcard's channels are fixed by their names: every message in the
	// ring of a channel under its prefix is owed.
	for _, wc := range req.Wildcards {
		wild = wc
		for c := range h.wildRings[chanKey{Account: req.Account, Channel: channelgroups.Channel(wc.Prefix())}] {
			scan(c, func(ringEntry) (channelgroups.Group, bool) { return "", true })
		}
	}
	// In log order; a message reached through several routes (directly,
	// through groups, through wildcards) is delivered once, through the
	// first route scanned. What one scan found (one ring, in log order,
	// each message once: a subscribe to one channel) is so already.
	if sources <= 1 {
		return out, true
	}
	slices.SortStableFunc(out, func(a, b Delivery) int {
		if a.Msg.Pos == b.Msg.Pos {
			return 0
		}
		if a.Msg.Pos.Less(b.Msg.Pos) {
			return -1
		}
		return 1
	})
	return slices.CompactFunc(out, func(a, b Delivery) bool { return a.Msg == b.Msg }), true
}

// History returns up to max messages of a channel's history with
// timetokens in the range of start and end (see archive.Bounds), the newest
// max of them in timetoken order (oldest first); ErrNotServing when this
// node does not serve the account's shard (yet). HistoryPage says more.
func (n *Node) History(ctx context.Context, a channelgroups.Account, c channelgroups.Channel, start, end channelgroups.Timetoken, max int) ([]*Message, error) {
	msgs, _, err := n.HistoryPage(ctx, archive.Query{Account: a, Channel: c, Start: start, End: end, Max: max})
	return msgs, err
}

// ringHistory returns the messages of a channel's ring that history serves
// with timetokens from lo to hi, in timetoken order: neither signals nor
// store=0 messages, none older than RingAge, expired or deleted; and, read
// with them, the newest position a ring of the channel's shard dropped.
func (n *Node) ringHistory(key chanKey, lo, hi channelgroups.Timetoken) (_ []*Message, dropped channelgroups.Position) {
	now := n.now()
	oldest := uint64(now.Add(-n.cfg.RingAge).UnixMilli())
	h := n.hub
	h.mu.Lock()
	dropped = h.dropped[channelgroups.ShardOf(key.Account, len(h.dropped))]
	r := h.rings[key]
	var out []*Message
	if r != nil {
		for _, e := range r.entries {
			m := e.msg
			tt := m.Timetoken()
			if m.NoStore || m.Signal || m.Pos.Ms < oldest || tt < lo || tt > hi {
				continue
			}
			out = append(out, m)
		}
	}
	h.mu.Unlock()
	out = slices.DeleteFunc(out, func(m *Message) bool {
		return archive.Expired(expiresAt(m.Timetoken(), m.TTL, n.cfg.HistoryRetention), now) || n.hidden.covers(key, m.Timetoken())
	})
	// Copies of other regions' messages sit in the ring in the order they
	// were copied, after local messages with later timetokens: history is
	// in timetoken order, so paging by timetoken misses none.
	slices.SortStableFunc(out, func(a, b *Message) int { return cmp.Compare(a.Timetoken(), b.Timetoken()) })
	return out, dropped
}

// ReleasePolls answers every parked subscribe at once (at shutdown, so that
// clients reconnect elsewhere) and makes later ones return without parking.
func (n *Node) ReleasePolls() { n.ReleasePollsOver(0) }

// ReleasePollsOver makes later subscribes return without parking and
// answers every parked one, spread evenly over d so that their clients do
// not all come back at once; it returns when the last one was released.
func (n *Node) ReleasePollsOver(d time.Duration) {
	h := n.hub
	h.releaseOnce.Do(func() { close(h.release) })
	h.mu.Lock()
	all := h.pollsLocked()
	h.mu.Unlock()
	polls := make([]*Parked, 0, len(all))
	for w := range all {
		polls = append(polls, w)
	}
	done := h.releaseOver(polls, d)
	<-done
}

// releaseOver expires polls evenly over d (all at once if d <= 0); the
// returned channel is closed once the last one was expired.
func (h *hub) releaseOver(polls []*Parked, d time.Duration) <-chan struct{} {
	done := make(chan struct{})
	if d <= 0 || len(polls) < 2 {
		for _, w := range polls {
			w.expire()
		}
		close(done)
		return done
	}
	var left atomic.Int64
	left.Store(int64(len(polls)))
	for i, w := range polls {
		time.AfterFunc(d*time.Duration(i)/time.Duration(len(polls)), func() {
			w.expire()
			if left.Add(-1) == 0 {
				close(done)
			}
		})
	}
	return done
}

// dropShard forgets everything the hub keeps for a shard's accounts and
// returns the shard's parked polls, which must be answered: their state is
// gone, so their next check answers with their own cursor.
func (h *hub) dropShard(shard int) []*Parked {
	shards := len(h.gen)
	of := func(a channelgroups.Account) bool { return channelgroups.ShardOf(a, shards) == shard }
	h.mu.Lock()
	defer h.mu.Unlock()
	h.gen[shard].Add(1)
	h.annotated[shard] = channelgroups.Position{}
	polls := map[*Parked]struct{}{}
	for k, r := range h.rings {
		if of(k.Account) {
			h.dropRingLocked(r)
		}
	}
	h.m.bytes.Set(float64(h.bytes))
	for _, index := range []map[chanKey]map[*Parked]struct{}{h.byChannel, h.byPrefix} {
		for k, set := range index {
			if of(k.Account) {
				for w := range set {
					polls[w] = struct{}{}
				}
				delete(index, k)
			}
		}
	}
	for k, tg := range h.tracked {
		if of(k.Account) {
			for w := range tg.waiters {
				polls[w] = struct{}{}
			}
			delete(h.tracked, k)
		}
	}
	for k := range h.containing {
		if of(k.Account) {
			delete(h.containing, k)
		}
	}
	for k := range h.edits {
		if of(k.Account) {
			delete(h.edits, k)
		}
	}
	out := make([]*Parked, 0, len(polls))
	for w := range polls {
		out = append(out, w)
	}
	return out
}

// sweep drops the messages past the retention (and the rings they empty),
// channels whose leaveGrace passed, and groups nobody subscribed to for a
// while.
func (h *hub) sweep(now time.Time) {
	n := h.n
	oldest := uint64(now.Add(-n.cfg.RingAge).UnixMilli())
	n.views.mu.Lock()
	defer n.views.mu.Unlock()
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.rings {
		// A ring is in log order: its aged entries are a prefix.
		i, _ := slices.BinarySearchFunc(r.entries, oldest, func(e ringEntry, ms uint64) int {
			if e.msg.Pos.Ms < ms {
				return -1
			}
			return 1
		})
		switch {
		case i == len(r.entries):
			h.m.byAge.Add(float64(i))
			h.dropRingLocked(r)
		case i > 0:
			h.trimLocked(r, i, h.m.byAge)
			heap.Fix(&h.order, r.index)
		}
	}
	h.m.bytes.Set(float64(h.bytes))
	for key, es := range h.edits {
		i := 0
		for i < len(es) && es[i].pos.Ms < oldest {
			i++
		}
		if i == len(es) {
			delete(h.edits, key)
		} else if i > 0 {
			h.edits[key] = slices.Clone(es[i:])
		}
	}
	for key, tg := range h.tracked {
		for c, at := range tg.left {
			if at.Ms < oldest {
				delete(tg.left, c) // its messages have left the rings too
			}
		}
		for c, since := range tg.leaving {
			if now.Sub(since) > leaveGrace {
				h.leaveLocked(key, tg, c)
			}
		}
		if len(tg.waiters) == 0 && now.Sub(tg.lastUsed) > n.cfg.TrackIdle {
			for c := range tg.channels {
				h.uncontainLocked(chanKey{Account: key.Account, Channel: c}, key.Group)
			}
			delete(h.tracked, key)
		}
	}
}

// Parked returns how many subscribes are parked on this node now.
func (n *Node) Parked() int {
	h := n.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.pollsLocked())
}

// pollsLocked returns every registered poll; mu is held.
func (h *hub) pollsLocked() map[*Parked]struct{} {
	all := map[*Parked]struct{}{}
	for _, set := range h.byChannel {
		for w := range set {
			all[w] = struct{}{}
		}
	}
	for _, set := range h.byPrefix {
		for w := range set {
			all[w] = struct{}{}
		}
	}
	for _, tg := range h.tracked {
		for w := range tg.waiters {
			all[w] = struct{}{}
		}
	}
	return all
}
