package subscriber

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/groupcast/groupcast/channelgroups"
)

// Presence is minimal but real: a user who subscribes to a channel joins it,
// one who leaves or is not seen for its heartbeat timeout leaves it. The
// events go through the account's shard log like messages, so every node
// serving the shard counts the same occupancy and delivers the events, on
// "<channel>-pnpres", in the same order.

// PresenceSuffix marks a presence channel.
const PresenceSuffix = "-pnpres"

// MaxUUIDBytes is the longest uuid presence keeps (PubNub's limit): the
// book holds one record per channel per uuid, and every join travels
// through the log.
const MaxUUIDBytes = 92

// ErrUUIDTooLong reports a uuid longer than MaxUUIDBytes.
var ErrUUIDTooLong = fmt.Errorf("subscriber: uuid longer than %d bytes: %w", MaxUUIDBytes, ErrBadRequest)

// ErrPresenceFull reports a subscribe or heartbeat refused because this
// node keeps Config.PresenceMax presence records already: the client
// should retry later, or on another node.
var ErrPresenceFull = fmt.Errorf("subscriber: this node keeps as many presence records as it may: %w", channelgroups.ErrUnavailable)

// presenceBook keeps occupancy (from the log's presence events) and the
// users this node served (for timeouts), each at most PresenceMax records.
// Its mu comes before hub.mu.
type presenceBook struct {
	n       *Node
	mu      sync.Mutex
	present map[chanKey]map[string]struct{}
	served  map[chanKey]map[string]seenUser
	// nPresent and nServed count the (channel, uuid) records of present
	// and served.
	nPresent, nServed int
	m                 presenceMetrics
}

type presenceMetrics struct {
	records prometheus.Gauge
	refused prometheus.Counter
}

type seenUser struct {
	last    time.Time
	timeout time.Duration
}

func newPresenceBook(n *Node) (*presenceBook, error) {
	p := &presenceBook{n: n, present: map[chanKey]map[string]struct{}{}, served: map[chanKey]map[string]seenUser{}}
	p.m.records = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "groupcast_presence_records",
		Help: "Presence records, one per (channel, uuid), this node keeps for the users it serves (at most --presence-max).",
	})
	p.m.refused = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "groupcast_presence_refused_total",
		Help: "Subscribes and heartbeats refused (503) because this node kept --presence-max presence records.",
	})
	if reg := n.cfg.Registerer; reg != nil {
		for _, c := range []prometheus.Collector{p.m.records, p.m.refused} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("subscriber: %w", err)
			}
		}
	}
	return p, nil
}

// Heartbeat records that uuid is active on channels (a subscribe or
// heartbeat), announcing a join where it is not present yet. It refuses a
// uuid longer than MaxUUIDBytes (ErrUUIDTooLong, a bad request) and, when
// the node keeps PresenceMax records already, any new one
// (ErrPresenceFull, unavailable): then nothing is recorded. Refreshing
// records the node keeps is never refused.
func (n *Node) Heartbeat(a channelgroups.Account, chs []channelgroups.Channel, uuid string, timeout time.Duration) error {
	return n.pres.seen(a, chs, uuid, timeout)
}

// checkUUID refuses a uuid presence does not keep.
func checkUUID(uuid string) error {
	if len(uuid) > MaxUUIDBytes {
		return fmt.Errorf("uuid of %d bytes: %w", len(uuid), ErrUUIDTooLong)
	}
	return nil
}

func (p *presenceBook) seen(a channelgroups.Account, chs []channelgroups.Channel, uuid string, timeout time.Duration) error {
	if uuid == "" {
		return nil
	}
	if err := checkUUID(uuid); err != nil {
		return err
	}
	if timeout <= 0 {
		timeout = p.n.cfg.PresenceTimeout
	}
	now := p.n.now()
	var joins []channelgroups.Channel
	p.mu.Lock()
	fresh := 0 // records to add (a channel named twice counts twice: an upper bound)
	for _, c := range chs {
		if _, ok := p.served[chanKey{Account: a, Channel: c}][uuid]; !ok && !strings.HasSuffix(string(c), PresenceSuffix) {
			fresh++
		}
	}
	if max := p.n.cfg.PresenceMax; fresh > 0 && (p.nServed+fresh > max || p.nPresent >= max) {
		p.mu.Unlock()
		p.m.refused.Inc()
		return ErrPresenceFull
	}
	for _, c := range chs {
		if strings.HasSuffix(string(c), PresenceSuffix) {
			continue
		}
		ck := chanKey{Account: a, Channel: c}
		users := p.served[ck]
		if users == nil {
			users = map[string]seenUser{}
			p.served[ck] = users
		}
		if _, ok := users[uuid]; !ok {
			p.nServed++
		}
		users[uuid] = seenUser{last: now, timeout: timeout}
		if _, ok := p.present[ck][uuid]; !ok {
			joins = append(joins, c)
		}
	}
	p.m.records.Set(float64(p.nServed))
	p.mu.Unlock()
	for _, c := range joins {
		p.announce(context.Background(), presence{Account: a, Channel: c, Action: "join", UUID: uuid, When: now.Unix()})
	}
	return nil
}

// forgetLocked deletes a served record, if kept; mu is held.
func (p *presenceBook) forgetLocked(ck chanKey, users map[string]seenUser, uuid string) {
	if _, ok := users[uuid]; !ok {
		return
	}
	delete(users, uuid)
	p.nServed--
	if len(users) == 0 {
		delete(p.served, ck)
	}
}

// Leave announces that uuid left channels.
func (n *Node) Leave(ctx context.Context, a channelgroups.Account, chs []channelgroups.Channel, uuid string) {
	if uuid == "" {
		return
	}
	p := n.pres
	now := n.now()
	for _, c := range chs {
		ck := chanKey{Account: a, Channel: c}
		p.mu.Lock()
		// A user served here may have a join in the log not applied yet:
		// its leave is announced too (a leave of an absent user changes
		// nothing when applied), or the join would outlive the leave.
		_, served := p.served[ck][uuid]
		p.forgetLocked(ck, p.served[ck], uuid)
		p.m.records.Set(float64(p.nServed))
		_, present := p.present[ck][uuid]
		p.mu.Unlock()
		if present || served {
			p.announce(ctx, presence{Account: a, Channel: c, Action: "leave", UUID: uuid, When: now.Unix()})
		}
	}
}

// Occupancy returns the users present on a channel; ErrNotServing when this
// node does not serve the account's shard (yet).
func (n *Node) Occupancy(ctx context.Context, a channelgroups.Account, c channelgroups.Channel) ([]string, error) {
	if !n.serve(ctx, channelgroups.ShardOf(a, len(n.shards))) {
		return nil, ErrNotServing
	}
	p := n.pres
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for u := range p.present[chanKey{Account: a, Channel: c}] {
		out = append(out, u)
	}
	return out, nil
}

// timeouts announces a timeout for every user this node served that was not
// seen within its timeout (a parked subscribe of the user counts as seen).
func (p *presenceBook) timeouts(ctx context.Context, now time.Time) {
	var out []presence
	p.mu.Lock()
	for ck, users := range p.served {
		var polling map[string]struct{} // read once per channel, when a user is due
		for u, s := range users {
			if now.Sub(s.last) < s.timeout {
				continue
			}
			if polling == nil {
				polling = p.n.hub.pollingUsers(ck)
			}
			if _, ok := polling[u]; !ok {
				p.forgetLocked(ck, users, u)
				if _, ok := p.present[ck][u]; ok {
					out = append(out, presence{Account: ck.Account, Channel: ck.Channel, Action: "timeout", UUID: u, When: now.Unix()})
				}
			}
		}
	}
	p.m.records.Set(float64(p.nServed))
	p.mu.Unlock()
	for _, e := range out {
		p.announce(ctx, e)
	}
}

// pollingUsers returns the uuids with a subscribe of the channel parked
// here: they are seen until it returns (and refreshes them). Any other
// user of the channel times out on its own, however busy the channel.
func (h *hub) pollingUsers(ck chanKey) map[string]struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string]struct{}, len(h.byChannel[ck]))
	for w := range h.byChannel[ck] {
		out[w.req.UUID] = struct{}{}
	}
	return out
}

// announce appends a presence event; a best-effort one: if it fails, the
// next subscribe or timeout says it again.
func (p *presenceBook) announce(ctx context.Context, e presence) {
	shard := channelgroups.ShardOf(e.Account, len(p.n.shards))
	if _, err := p.n.ann.appendRecord(ctx, shard, encodePresence(e)); err != nil && !errors.Is(err, ErrShardBlocked) {
		p.n.cfg.Logger.Warn("announcing a presence event failed", "err", err)
	}
}

// apply updates occupancy from a logged event and delivers it on the
// channel's presence channel. A join of a present user, or a leave of an
// absent one, changes nothing and is not delivered; nor does a join whose
// uuid is longer than MaxUUIDBytes (no node announces one), so every node
// of the shard still counts the same.
func (p *presenceBook) apply(e *presence, pos channelgroups.Position) *wakeup {
	ck := chanKey{Account: e.Account, Channel: e.Channel}
	p.mu.Lock()
	users := p.present[ck]
	_, was := users[e.UUID]
	switch {
	case e.Action == "join" && !was && checkUUID(e.UUID) == nil:
		if users == nil {
			users = map[string]struct{}{}
			p.present[ck] = users
		}
		users[e.UUID] = struct{}{}
		p.nPresent++
	case e.Action != "join" && was:
		delete(users, e.UUID)
		p.nPresent--
		if len(users) == 0 {
			delete(p.present, ck)
		}
	default:
		p.mu.Unlock()
		return nil
	}
	occupancy := len(users)
	p.mu.Unlock()
	d, _ := json.Marshal(map[string]any{"action": e.Action, "uuid": e.UUID, "timestamp": e.When, "occupancy": occupancy})
	return p.n.hub.applyMessage(&Message{Account: e.Account, Channel: e.Channel + PresenceSuffix, Payload: d, NoStore: true, Pos: pos})
}

// dropShard forgets the occupancy of a shard's channels (a node that gains
// the shard again rebuilds it from the log) and the users it served there.
func (p *presenceBook) dropShard(shard int) {
	shards := len(p.n.shards)
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, users := range p.present {
		if channelgroups.ShardOf(k.Account, shards) == shard {
			p.nPresent -= len(users)
			delete(p.present, k)
		}
	}
	for k, users := range p.served {
		if channelgroups.ShardOf(k.Account, shards) == shard {
			p.nServed -= len(users)
			delete(p.served, k)
		}
	}
	p.m.records.Set(float64(p.nServed))
}
