package subscriber

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/groupcast/groupcast/channelgroups"
)

// Presence, as PubNub has it: a user who subscribes to a channel (or
// heartbeats, or sets state on it) joins it; one who leaves or is not seen
// for its heartbeat timeout leaves it, and its state there goes with it. A
// user may keep a state (a JSON object) per channel; changing it is a
// "state-change" event. The events go through the account's shard log
// like messages, so every node serving the shard counts the same occupancy
// and state and delivers the events, on "<channel>-pnpres", in the same
// order.
//
// Presence is per region: presence events are not copied between regions
// (replicate.go), so here-now, where-now and state answer for the users
// of the region asked, and a "-pnpres" subscriber hears only them.

// PresenceSuffix marks a presence channel.
const PresenceSuffix = "-pnpres"

// MaxUUIDBytes is the longest uuid presence keeps (PubNub's limit): the
// book holds one record per channel per uuid, and every join travels
// through the log.
const MaxUUIDBytes = 92

// MaxStateBytes is the largest presence state (a JSON object, compacted)
// kept for one user on one channel: ours, as large as a message may be. A
// larger one is refused (ErrStateTooLarge, a bad request).
const MaxStateBytes = 32 << 10

// stateBytesPerRecord sizes the presence states a node keeps altogether:
// PresenceMax times this (64 MB at the default PresenceMax). A state that
// would take the node past it is refused with ErrPresenceFull.
const stateBytesPerRecord = 64

// ErrUUIDTooLong reports a uuid longer than MaxUUIDBytes.
var ErrUUIDTooLong = fmt.Errorf("subscriber: uuid longer than %d bytes: %w", MaxUUIDBytes, ErrBadRequest)

// ErrBadState reports a presence state that is not a JSON object.
var ErrBadState = fmt.Errorf("subscriber: presence state must be a JSON object: %w", ErrBadRequest)

// ErrStateTooLarge reports a presence state longer than MaxStateBytes.
var ErrStateTooLarge = fmt.Errorf("subscriber: presence state longer than %d bytes: %w", MaxStateBytes, ErrBadRequest)

// ErrPresenceFull reports a subscribe or heartbeat refused because this
// node keeps Config.PresenceMax presence records already (or as much state
// as it may): the client should retry later, or on another node.
var ErrPresenceFull = fmt.Errorf("subscriber: this node keeps as many presence records as it may: %w", channelgroups.ErrUnavailable)

// PresenceState is a user's presence state by channel; each value is a
// JSON object.
type PresenceState map[channelgroups.Channel]json.RawMessage

// Occupant is a user present on a channel and its state there (nil if
// none).
type Occupant struct {
	UUID  string
	State json.RawMessage
}

// presenceBook keeps occupancy and state (from the log's presence events)
// and the users this node served (for timeouts), each at most PresenceMax
// records. Its mu comes before hub.mu.
type presenceBook struct {
	n  *Node
	mu sync.Mutex
	// present holds, per account and channel, the users there and their
	// state (nil: none); where holds the same per account and user.
	present map[channelgroups.Account]map[channelgroups.Channel]map[string]json.RawMessage
	where   map[channelgroups.Account]map[string]map[channelgroups.Channel]struct{}
	served  map[chanKey]map[string]seenUser
	// nPresent and nServed count the (channel, uuid) records of present
	// and served; stateBytes the bytes of the states in present.
	nPresent, nServed, stateBytes int
	m                             presenceMetrics
}

type presenceMetrics struct {
	records    prometheus.Gauge
	stateBytes prometheus.Gauge
	refused    prometheus.Counter
}

type seenUser struct {
	last    time.Time
	timeout time.Duration
}

func newPresenceBook(n *Node) (*presenceBook, error) {
	p := &presenceBook{n: n, present: map[channelgroups.Account]map[channelgroups.Channel]map[string]json.RawMessage{},
		where: map[channelgroups.Account]map[string]map[channelgroups.Channel]struct{}{}, served: map[chanKey]map[string]seenUser{}}
	p.m.records = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "groupcast_presence_records",
		Help: "Presence records, one per (channel, uuid), this node keeps for the users it serves (at most --presence-max).",
	})
	p.m.stateBytes = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "groupcast_presence_state_bytes",
		Help: "Bytes of presence state (the JSON objects users set per channel) this node keeps for its shards (at most 64 bytes times --presence-max).",
	})
	p.m.refused = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "groupcast_presence_refused_total",
		Help: "Subscribes, heartbeats and state changes refused (503) because this node kept --presence-max presence records, or as much state as it may.",
	})
	if reg := n.cfg.Registerer; reg != nil {
		for _, c := range []prometheus.Collector{p.m.records, p.m.stateBytes, p.m.refused} {
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
	return n.pres.seenState(a, chs, uuid, timeout, nil)
}

// SetState is Heartbeat that also sets uuid's state on the channels st
// names (those of chs; others are ignored): a user not present there joins
// with it, one present with another state gets a "state-change" event. An
// empty object clears the state. A state that is not a JSON object
// (ErrBadState) or is longer than MaxStateBytes (ErrStateTooLarge) is a bad
// request, and one that would take the node past its state budget is
// refused with ErrPresenceFull; then nothing is recorded.
func (n *Node) SetState(a channelgroups.Account, chs []channelgroups.Channel, uuid string, timeout time.Duration, st PresenceState) error {
	return n.pres.seenState(a, chs, uuid, timeout, st)
}

// checkUUID refuses a uuid presence does not keep.
func checkUUID(uuid string) error {
	if len(uuid) > MaxUUIDBytes {
		return fmt.Errorf("uuid of %d bytes: %w", len(uuid), ErrUUIDTooLong)
	}
	return nil
}

// NormalizeState checks a presence state and returns it compacted; an
// empty object comes back nil (no state).
func NormalizeState(s json.RawMessage) (json.RawMessage, error) {
	var buf bytes.Buffer
	if err := json.Compact(&buf, s); err != nil || buf.Len() == 0 || buf.Bytes()[0] != '{' {
		return nil, ErrBadState
	}
	if buf.Len() > MaxStateBytes {
		return nil, fmt.Errorf("state of %d bytes: %w", buf.Len(), ErrStateTooLarge)
	}
	if buf.String() == "{}" {
		return nil, nil
	}
	return buf.Bytes(), nil
}

// seen is Heartbeat, for the hub.
func (p *presenceBook) seen(a channelgroups.Account, chs []channelgroups.Channel, uuid string, timeout time.Duration) error {
	return p.seenState(a, chs, uuid, timeout, nil)
}

func (p *presenceBook) seenState(a channelgroups.Account, chs []channelgroups.Channel, uuid string, timeout time.Duration, st PresenceState) error {
	if uuid == "" {
		return nil
	}
	if err := checkUUID(uuid); err != nil {
		return err
	}
	norm := make(map[channelgroups.Channel]json.RawMessage, len(st))
	for c, s := range st {
		v, err := NormalizeState(s)
		if err != nil {
			return fmt.Errorf("state on %q: %w", c, err)
		}
		norm[c] = v
	}
	if timeout <= 0 {
		timeout = p.n.cfg.PresenceTimeout
	}
	now := p.n.now()
	var out []presence
	p.mu.Lock()
	fresh, grow := 0, 0 // records to add (a channel named twice counts twice: an upper bound), state bytes to add
	for _, c := range chs {
		if strings.HasSuffix(string(c), PresenceSuffix) {
			continue
		}
		if _, ok := p.served[chanKey{Account: a, Channel: c}][uuid]; !ok {
			fresh++
		}
		if s, ok := norm[c]; ok {
			grow += len(s) - len(p.present[a][c][uuid])
		}
	}
	max := p.n.cfg.PresenceMax
	if (fresh > 0 && (p.nServed+fresh > max || p.nPresent >= max)) || (grow > 0 && p.stateBytes+grow > max*stateBytesPerRecord) {
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
		s, set := norm[c]
		cur, present := p.present[a][c][uuid]
		switch {
		case !present:
			out = append(out, presence{Account: a, Channel: c, Action: "join", UUID: uuid, When: now.Unix(), State: s})
		case set && !bytes.Equal(cur, s):
			out = append(out, presence{Account: a, Channel: c, Action: "state-change", UUID: uuid, When: now.Unix(), State: orEmpty(s)})
		}
	}
	p.m.records.Set(float64(p.nServed))
	p.mu.Unlock()
	for _, e := range out {
		p.announce(context.Background(), e)
	}
	return nil
}

// refresh marks uuid seen now on the channels of chs it is still served
// on; it adds no record and announces nothing (a poll's end, see
// Parked.finish).
func (p *presenceBook) refresh(a channelgroups.Account, chs []channelgroups.Channel, uuid string) {
	if uuid == "" {
		return
	}
	now := p.n.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range chs {
		users := p.served[chanKey{Account: a, Channel: c}]
		if u, ok := users[uuid]; ok {
			u.last = now
			users[uuid] = u
		}
	}
}

// orEmpty is s, or the empty object for no state.
func orEmpty(s json.RawMessage) json.RawMessage {
	if s == nil {
		return json.RawMessage("{}")
	}
	return s
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
		_, present := p.present[a][c][uuid]
		p.mu.Unlock()
		if present || served {
			p.announce(ctx, presence{Account: a, Channel: c, Action: "leave", UUID: uuid, When: now.Unix()})
		}
	}
}

// Occupancy returns the users present on a channel, sorted; ErrNotServing
// when this node does not serve the account's shard (yet).
func (n *Node) Occupancy(ctx context.Context, a channelgroups.Account, c channelgroups.Channel) ([]string, error) {
	if !n.serve(ctx, channelgroups.ShardOf(a, len(n.shards))) {
		return nil, ErrNotServing
	}
	p := n.pres
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Sorted(maps.Keys(p.present[a][c])), nil
}

// HereNow returns the users present on each of chs that has any, sorted by
// uuid, with their state; with no channels, on every channel of the
// account that has any. ErrNotServing when this node does not serve the
// account's shard (yet).
func (n *Node) HereNow(ctx context.Context, a channelgroups.Account, chs []channelgroups.Channel) (map[channelgroups.Channel][]Occupant, error) {
	if !n.serve(ctx, channelgroups.ShardOf(a, len(n.shards))) {
		return nil, ErrNotServing
	}
	p := n.pres
	p.mu.Lock()
	defer p.mu.Unlock()
	byChannel := p.present[a]
	if chs == nil {
		chs = slices.Collect(maps.Keys(byChannel))
	}
	out := map[channelgroups.Channel][]Occupant{}
	for _, c := range chs {
		users := byChannel[c]
		if len(users) == 0 {
			continue
		}
		list := make([]Occupant, 0, len(users))
		for _, u := range slices.Sorted(maps.Keys(users)) {
			list = append(list, Occupant{UUID: u, State: users[u]})
		}
		out[c] = list
	}
	return out, nil
}

// WhereNow returns the channels uuid is present on, sorted; ErrNotServing
// when this node does not serve the account's shard (yet).
func (n *Node) WhereNow(ctx context.Context, a channelgroups.Account, uuid string) ([]channelgroups.Channel, error) {
	if !n.serve(ctx, channelgroups.ShardOf(a, len(n.shards))) {
		return nil, ErrNotServing
	}
	p := n.pres
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Sorted(maps.Keys(p.where[a][uuid])), nil
}

// State returns uuid's state on each of chs where it is present with one;
// ErrNotServing when this node does not serve the account's shard (yet).
func (n *Node) State(ctx context.Context, a channelgroups.Account, chs []channelgroups.Channel, uuid string) (PresenceState, error) {
	shard := channelgroups.ShardOf(a, len(n.shards))
	if !n.serve(ctx, shard) {
		return nil, ErrNotServing
	}
	// A state set through this node is announced in the log and recorded
	// when the node applies it: wait for what the node appended (as a
	// history read does), so that a get after a set reads it. Without the
	// wait the Python SDK's set-then-get through a group read {} once.
	n.awaitOwnAppends(ctx, shard)
	p := n.pres
	p.mu.Lock()
	defer p.mu.Unlock()
	out := PresenceState{}
	for _, c := range chs {
		if s := p.present[a][c][uuid]; s != nil {
			out[c] = s
		}
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
				if _, ok := p.present[ck.Account][ck.Channel][u]; ok {
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
// here, directly or through a group: they are seen until it returns (and refreshes them). Any other
// user of the channel times out on its own, however busy the channel.
func (h *hub) pollingUsers(ck chanKey) map[string]struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string]struct{}, len(h.byChannel[ck]))
	for w := range h.byChannel[ck] {
		out[w.req.UUID] = struct{}{}
	}
	for g := range h.containing[ck] { // subscribers through the groups that hold the channel
		if tg := h.tracked[channelgroups.GroupKey{Account: ck.Account, Group: g}]; tg != nil {
			for w := range tg.waiters {
				out[w.req.UUID] = struct{}{}
			}
		}
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

// presenceEvent is what a "-pnpres" subscriber gets, as PubNub sends it.
type presenceEvent struct {
	Action    string          `json:"action"`
	UUID      string          `json:"uuid"`
	Timestamp int64           `json:"timestamp"`
	Occupancy int             `json:"occupancy"`
	Data      json.RawMessage `json:"data,omitempty"`
}

// apply updates occupancy and state from a logged event and delivers it on
// the channel's presence channel. A join of a present user with the state
// it has, a state change of an absent user or to the state it has, or a
// leave of an absent user changes nothing and is not delivered (a join of
// a present user with another state is a state change); nor does a join
// whose uuid is longer than MaxUUIDBytes, or a state that is not a JSON
// object of at most MaxStateBytes (no node announces one), so every node
// of the shard still counts the same.
func (p *presenceBook) apply(e *presence, pos channelgroups.Position) *wakeup {
	var state json.RawMessage
	if e.State != nil {
		s, err := NormalizeState(e.State)
		if err != nil {
			return nil
		}
		state = s
	}
	p.mu.Lock()
	users := p.present[e.Account][e.Channel]
	cur, was := users[e.UUID]
	action := e.Action
	switch {
	case action == "join" && !was && checkUUID(e.UUID) == nil:
		p.addLocked(e.Account, e.Channel, e.UUID, state)
		users = p.present[e.Account][e.Channel]
	case (action == "join" && was && e.State != nil || action == "state-change" && was) && !bytes.Equal(cur, state):
		action = "state-change"
		users[e.UUID] = state
		p.stateBytes += len(state) - len(cur)
	case (action == "leave" || action == "timeout") && was:
		p.removeLocked(e.Account, e.Channel, e.UUID)
	default:
		p.mu.Unlock()
		return nil
	}
	occupancy := len(users)
	p.m.stateBytes.Set(float64(p.stateBytes))
	p.mu.Unlock()
	ev := presenceEvent{Action: action, UUID: e.UUID, Timestamp: e.When, Occupancy: occupancy, Data: state}
	if action == "state-change" {
		ev.Data = orEmpty(state)
	}
	d, _ := json.Marshal(ev)
	return p.n.hub.applyMessage(&Message{Account: e.Account, Channel: e.Channel + PresenceSuffix, Payload: d, NoStore: true, Pos: pos})
}

// addLocked records a user present on a channel; mu is held.
func (p *presenceBook) addLocked(a channelgroups.Account, c channelgroups.Channel, uuid string, state json.RawMessage) {
	byChannel := p.present[a]
	if byChannel == nil {
		byChannel = map[channelgroups.Channel]map[string]json.RawMessage{}
		p.present[a] = byChannel
	}
	users := byChannel[c]
	if users == nil {
		users = map[string]json.RawMessage{}
		byChannel[c] = users
	}
	users[uuid] = state
	p.nPresent++
	p.stateBytes += len(state)
	byUser := p.where[a]
	if byUser == nil {
		byUser = map[string]map[channelgroups.Channel]struct{}{}
		p.where[a] = byUser
	}
	if byUser[uuid] == nil {
		byUser[uuid] = map[channelgroups.Channel]struct{}{}
	}
	byUser[uuid][c] = struct{}{}
}

// removeLocked forgets a user present on a channel, and its state there;
// mu is held.
func (p *presenceBook) removeLocked(a channelgroups.Account, c channelgroups.Channel, uuid string) {
	users := p.present[a][c]
	p.stateBytes -= len(users[uuid])
	delete(users, uuid)
	p.nPresent--
	if len(users) == 0 {
		delete(p.present[a], c)
		if len(p.present[a]) == 0 {
			delete(p.present, a)
		}
	}
	chs := p.where[a][uuid]
	delete(chs, c)
	if len(chs) == 0 {
		delete(p.where[a], uuid)
		if len(p.where[a]) == 0 {
			delete(p.where, a)
		}
	}
}

// dropShard forgets the occupancy and state of a shard's channels (a node
// that gains the shard again rebuilds them from the log) and the users it
// served there.
func (p *presenceBook) dropShard(shard int) {
	shards := len(p.n.shards)
	p.mu.Lock()
	defer p.mu.Unlock()
	for a, byChannel := range p.present {
		if channelgroups.ShardOf(a, shards) == shard {
			for _, users := range byChannel {
				p.nPresent -= len(users)
				for _, s := range users {
					p.stateBytes -= len(s)
				}
			}
			delete(p.present, a)
			delete(p.where, a)
		}
	}
	for k, users := range p.served {
		if channelgroups.ShardOf(k.Account, shards) == shard {
			p.nServed -= len(users)
			delete(p.served, k)
		}
	}
	p.m.records.Set(float64(p.nServed))
	p.m.stateBytes.Set(float64(p.stateBytes))
}

// Presence through channel groups, as PubNub has it: a subscriber of a
// group is present on the group's channels (StartPoll), and a subscriber
// of "<group>-pnpres" gets the presence events of the group's channels,
// each with the "-pnpres" group as its "b". The hub tracks "<group>-pnpres"
// as a group of its own whose channels are the group's presence channels,
// kept in step with the group's (track, trackEdit).

// presenceGroup reports whether g names the presence events of a group,
// and which group.
func presenceGroup(g channelgroups.Group) (channelgroups.Group, bool) {
	base, ok := strings.CutSuffix(string(g), PresenceSuffix)
	return channelgroups.Group(base), ok && base != ""
}

// presenceKey is the key of a group's presence twin.
func presenceKey(k channelgroups.GroupKey) channelgroups.GroupKey {
	return channelgroups.GroupKey{Account: k.Account, Group: k.Group + PresenceSuffix}
}

// presenceChannels returns the presence channels of chs, sorted.
func presenceChannels(chs []channelgroups.Channel) []channelgroups.Channel {
	out := make([]channelgroups.Channel, len(chs))
	for i, c := range chs {
		out[i] = c + PresenceSuffix
	}
	slices.Sort(out) // a suffix does not keep the order: "a-b" < "a" + PresenceSuffix
	return out
}

// presenceView is a group's view as its presence twin sees it; nil for nil.
func presenceView(v *channelgroups.View) *channelgroups.View {
	if v == nil {
		return nil
	}
	return &channelgroups.View{Channels: presenceChannels(v.Channels), Version: v.Version}
}

// presenceTwinTracked reports whether the presence twin of a group (not
// itself one) is tracked: its tracking then follows the group's.
func (h *hub) presenceTwinTracked(key channelgroups.GroupKey) bool {
	if _, ok := presenceGroup(key.Group); ok {
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.tracked[presenceKey(key)] != nil
}

// trackPresenceTwin brings a group's tracked presence twin in step with
// the group's new view (see track).
func (h *hub) trackPresenceTwin(key channelgroups.GroupKey, v *channelgroups.View) {
	if h.presenceTwinTracked(key) {
		h.track(presenceKey(key), presenceView(v))
	}
}

// trackPresenceTwinEdit applies a group's edit to its tracked presence
// twin (see trackEdit).
func (h *hub) trackPresenceTwinEdit(key channelgroups.GroupKey, e channelgroups.Edit, v *channelgroups.View) {
	if h.presenceTwinTracked(key) {
		e.Group += PresenceSuffix
		e.Channels = presenceChannels(e.Channels)
		h.trackEdit(presenceKey(key), e, presenceView(v))
	}
}

// pollView returns the view a subscribe of group g reads: a presence
// twin's is its group's, mapped to the presence channels.
func (n *Node) pollView(ctx context.Context, a channelgroups.Account, g channelgroups.Group, tok *channelgroups.Token, mode Consistency) (*channelgroups.View, error) {
	base, ok := presenceGroup(g)
	if !ok {
		return n.View(ctx, channelgroups.GroupKey{Account: a, Group: g}, tok, mode)
	}
	v, err := n.View(ctx, channelgroups.GroupKey{Account: a, Group: base}, tok, mode)
	return presenceView(v), err
}

// presentOn returns the channels a subscribe makes its user present on:
// those it names and those of its groups (not of presence twins). Without
// groups it is req.Channels itself (read only, as the request is): most
// polls name channels alone, and copying them was an allocation per poll.
func presentOn(req PollRequest, views []*channelgroups.View) []channelgroups.Channel {
	if len(req.Groups) == 0 {
		return req.Channels
	}
	out := slices.Clone(req.Channels)
	for i, g := range req.Groups {
		if _, ok := presenceGroup(g); !ok && views[i] != nil {
			out = append(out, views[i].Channels...)
		}
	}
	return out
}
