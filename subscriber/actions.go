package subscriber

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/groupcast/groupcast/archive"
	"github.com/groupcast/groupcast/channelgroups"
)

// Message actions (PubNub's reactions, receipts…). Adding or removing one
// appends a record (kind "a") to the account's shard log, like a publish:
// every node puts it into the channel's ring as an action event, which
// subscribers of the channel (directly, through a group or a wildcard) get,
// and the archiver stores it (Store.AddAction, RemoveAction). An action's
// timetoken is its record's, as a message's is.
//
// Reads (Actions, MessageActions) are the store's answer with the action
// events still in the channel's ring applied over it, in log order: the
// archiver stores within ArchiveFlush, the ring keeps events for RingAge,
// so an action is seen from the moment it is acknowledged. AddAction and
// RemoveAction answer once this node has applied their record, so a read
// that follows on the node (every request for an account goes to the node
// serving its shard) sees it.
//
// As PubNub's, adding an action does not check that the message is stored;
// adding the same type and value to a message twice as the same uuid is
// refused (ErrActionExists). Removing an action that is not there changes
// nothing and is not an error. An action is kept as long as a message
// published at its message's timetoken without a ttl
// (Config.HistoryRetention), and DeleteHistory removes the actions of the
// messages it deletes.

// ActionEvent is a message action added or removed, as subscribers get it.
type ActionEvent struct {
	Message channelgroups.Timetoken // the message's timetoken
	// Removes is, for a removal, the removed action's timetoken; zero for
	// an added action, whose timetoken is its event's (Message.Timetoken).
	Removes     channelgroups.Timetoken
	Type, Value string // an added action's
}

// Action limits. PubNub's SDKs refuse a type longer than 15 characters;
// PubNub bounds the value only by the request size.
const (
	MaxActionType       = 15       // characters
	MaxActionValueBytes = 32 << 10 // bytes
)

// ErrActionExists is returned by AddAction for an action that uuid already
// added to the message (same type and value).
var ErrActionExists = errors.New("subscriber: action already added")

// ActionTimetoken is the timetoken of the action an action event adds or
// removes.
func (e *ActionEvent) actionTimetoken(m *Message) channelgroups.Timetoken {
	if e.Removes != 0 {
		return e.Removes
	}
	return m.Timetoken()
}

// ActionTimetoken is, for an action event, the timetoken of the action it
// adds or removes; zero for a message.
func (m *Message) ActionTimetoken() channelgroups.Timetoken {
	if m.Action == nil {
		return 0
	}
	return m.Action.actionTimetoken(m)
}

// CheckAction refuses, wrapping ErrBadRequest, an action type or value
// that is empty, too long or not UTF-8.
func CheckAction(typ, value string) error {
	switch {
	case typ == "" || value == "":
		return fmt.Errorf("action type and value are required: %w", ErrBadRequest)
	case !utf8.ValidString(typ) || !utf8.ValidString(value):
		return fmt.Errorf("action type and value must be UTF-8: %w", ErrBadRequest)
	case utf8.RuneCountInString(typ) > MaxActionType:
		return fmt.Errorf("action type is longer than %d characters: %w", MaxActionType, ErrBadRequest)
	case len(value) > MaxActionValueBytes:
		return fmt.Errorf("action value is longer than %d bytes: %w", MaxActionValueBytes, ErrBadRequest)
	}
	return nil
}

// checkActionTarget refuses an action on a bad channel, a presence channel
// (its events are the server's) or a message timetoken <= 0.
func checkActionTarget(a channelgroups.Account, c channelgroups.Channel, message channelgroups.Timetoken) error {
	if err := archive.CheckChannel(a, c); err != nil {
		return fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	if strings.HasSuffix(string(c), PresenceSuffix) {
		return fmt.Errorf("%s channels carry presence events, which have no actions: %w", PresenceSuffix, ErrBadRequest)
	}
	if message <= 0 {
		return fmt.Errorf("message timetoken %d must be > 0: %w", message, ErrBadRequest)
	}
	return nil
}

func encodeAction(act archive.Action, removes channelgroups.Timetoken) []byte {
	b, _ := json.Marshal(record{Kind: "a", Account: act.Account, Channel: act.Channel, Publisher: act.Publisher,
		MsgTT: act.Message, RemovesTT: removes, AType: act.Type, AValue: act.Value})
	return b
}

// AddAction adds act (Account, Channel, Message, Type, Value, Publisher;
// Timetoken and Expires are ignored) and returns it with its timetoken
// and expiry.
// Bad input wraps ErrBadRequest; ErrActionExists if act.Publisher added the
// same type and value to the message already; ErrNotServing when this node
// does not serve the account's shard.
func (n *Node) AddAction(ctx context.Context, act archive.Action) (archive.Action, error) {
	if err := checkActionTarget(act.Account, act.Channel, act.Message); err != nil {
		return archive.Action{}, err
	}
	if err := CheckAction(act.Type, act.Value); err != nil {
		return archive.Action{}, err
	}
	if len(act.Publisher) > MaxUUIDBytes || !utf8.ValidString(act.Publisher) {
		return archive.Action{}, fmt.Errorf("uuid longer than %d bytes or not UTF-8: %w", MaxUUIDBytes, ErrBadRequest)
	}
	shard := channelgroups.ShardOf(act.Account, len(n.shards))
	if !n.serve(ctx, shard) {
		return archive.Action{}, ErrNotServing
	}
	have, err := n.MessageActions(ctx, act.Account, act.Channel, act.Message, act.Message)
	if err != nil {
		return archive.Action{}, err
	}
	for _, h := range have {
		if h.Publisher == act.Publisher && h.Type == act.Type && h.Value == act.Value {
			return archive.Action{}, ErrActionExists
		}
	}
	pos, err := n.ann.appendRecord(ctx, shard, encodeAction(act, 0))
	if err != nil {
		return archive.Action{}, err
	}
	n.awaitApplied(ctx, shard, pos)
	act.Timetoken = CursorOf(pos)
	act.Expires = expiresAt(act.Message, 0, n.cfg.HistoryRetention)
	return act, nil
}

// RemoveAction removes the message's action with timetoken action, as uuid.
// Removing an action that is not there changes nothing.
func (n *Node) RemoveAction(ctx context.Context, a channelgroups.Account, c channelgroups.Channel, message, action channelgroups.Timetoken, uuid string) error {
	if err := checkActionTarget(a, c, message); err != nil {
		return err
	}
	if action <= 0 {
		return fmt.Errorf("action timetoken %d must be > 0: %w", action, ErrBadRequest)
	}
	if len(uuid) > MaxUUIDBytes || !utf8.ValidString(uuid) {
		return fmt.Errorf("uuid longer than %d bytes or not UTF-8: %w", MaxUUIDBytes, ErrBadRequest)
	}
	shard := channelgroups.ShardOf(a, len(n.shards))
	if !n.serve(ctx, shard) {
		return ErrNotServing
	}
	have, err := n.MessageActions(ctx, a, c, message, message)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(have, func(h archive.Action) bool { return h.Timetoken == action })
	if i < 0 {
		return nil
	}
	rm := have[i]
	rm.Publisher = uuid
	pos, err := n.ann.appendRecord(ctx, shard, encodeAction(rm, action))
	if err != nil {
		return err
	}
	n.awaitApplied(ctx, shard, pos)
	return nil
}

// Actions returns the channel's actions whose timetokens are in the range
// of start and end (archive.Bounds), the newest limit of them (1 to
// archive.MaxQuery) in timetoken order, and whether the range holds more.
func (n *Node) Actions(ctx context.Context, a channelgroups.Account, c channelgroups.Channel, start, end channelgroups.Timetoken, limit int) ([]archive.Action, bool, error) {
	if err := archive.CheckChannel(a, c); err != nil {
		return nil, false, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	if err := archive.CheckRange(start, end); err != nil {
		return nil, false, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	if err := archive.CheckLimit(limit); err != nil {
		return nil, false, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	if !n.serve(ctx, channelgroups.ShardOf(a, len(n.shards))) {
		return nil, false, ErrNotServing
	}
	lo, hi, ok := archive.Bounds(start, end)
	if !ok {
		return nil, false, nil
	}
	key := chanKey{Account: a, Channel: c}
	events := n.ringActions(key) // before the store: see HistoryPage
	var (
		stored []archive.Action
		more   bool
	)
	if st := n.cfg.Archive; st != nil {
		var err error
		if stored, more, err = st.Actions(ctx, a, c, start, end, limit); err != nil {
			return nil, false, fmt.Errorf("subscriber: reading actions: %w", err)
		}
	}
	out := n.applyActions(key, stored, events, func(act archive.Action) bool { return lo <= act.Timetoken && act.Timetoken <= hi })
	slices.SortFunc(out, func(x, y archive.Action) int { return cmp.Compare(x.Timetoken, y.Timetoken) })
	if len(out) > limit {
		out, more = out[len(out)-limit:], true
	}
	return out, more, nil
}

// MessageActions returns the actions of the channel's messages with
// timetokens from first to last, ordered by message and then action
// timetoken (history with actions).
func (n *Node) MessageActions(ctx context.Context, a channelgroups.Account, c channelgroups.Channel, first, last channelgroups.Timetoken) ([]archive.Action, error) {
	if err := archive.CheckChannel(a, c); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	if err := archive.CheckRange(first, last); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	if !n.serve(ctx, channelgroups.ShardOf(a, len(n.shards))) {
		return nil, ErrNotServing
	}
	key := chanKey{Account: a, Channel: c}
	events := n.ringActions(key)
	var stored []archive.Action
	if st := n.cfg.Archive; st != nil {
		var err error
		if stored, err = st.MessageActions(ctx, a, c, first, last); err != nil {
			return nil, fmt.Errorf("subscriber: reading actions: %w", err)
		}
	}
	out := n.applyActions(key, stored, events, func(act archive.Action) bool { return first <= act.Message && act.Message <= last })
	slices.SortFunc(out, func(x, y archive.Action) int {
		return cmp.Or(cmp.Compare(x.Message, y.Message), cmp.Compare(x.Timetoken, y.Timetoken))
	})
	return out, nil
}

// ringActions returns the action events of a channel's ring, in log order.
func (n *Node) ringActions(key chanKey) []*Message {
	h := n.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.rings[key]
	if r == nil {
		return nil
	}
	var out []*Message
	for _, e := range r.entries {
		if e.msg.Action != nil {
			out = append(out, e.msg)
		}
	}
	return out
}

// applyActions applies action events, in log order, over the stored
// actions, and returns those keep selects that are neither expired nor of
// a deleted message. The store may already hold what an event did: adding
// again replaces, removing again is nothing, so the result is the same.
func (n *Node) applyActions(key chanKey, stored []archive.Action, events []*Message, keep func(archive.Action) bool) []archive.Action {
	type id struct{ msg, act channelgroups.Timetoken }
	byID := make(map[id]archive.Action, len(stored)+len(events))
	for _, act := range stored {
		byID[id{act.Message, act.Timetoken}] = act
	}
	for _, m := range events {
		e := m.Action
		if e.Removes != 0 {
			delete(byID, id{e.Message, e.Removes})
			continue
		}
		tt := m.Timetoken()
		byID[id{e.Message, tt}] = archive.Action{Account: m.Account, Channel: m.Channel, Message: e.Message, Timetoken: tt,
			Type: e.Type, Value: e.Value, Publisher: m.Publisher, Expires: expiresAt(e.Message, 0, n.cfg.HistoryRetention)}
	}
	now := n.now()
	out := make([]archive.Action, 0, len(byID))
	for _, act := range byID {
		if keep(act) && !archive.Expired(act.Expires, now) && !n.hidden.covers(key, act.Message) {
			out = append(out, act)
		}
	}
	return out
}

// awaitApplied waits, never longer than FreshWait, until this node has
// applied shard's log up to pos.
func (n *Node) awaitApplied(ctx context.Context, shard int, pos channelgroups.Position) {
	s := n.shards[shard]
	timer := time.NewTimer(n.cfg.FreshWait)
	defer timer.Stop()
	for {
		s.mu.Lock()
		changed, done := s.changed, !s.applied.Less(pos)
		s.mu.Unlock()
		if done {
			return
		}
		select {
		case <-changed:
		case <-timer.C:
			return
		case <-ctx.Done():
			return
		}
	}
}
