package subscriber

import (
	"encoding/json"
	"fmt"
	"sync/atomic"

	"github.com/groupcast/groupcast/channelgroups"
)

// record is one shard-log entry: kind "e" is a membership edit, kind "m" a
// published message. Both kinds of one account share its shard's log, in
// the order they were acknowledged.
type record struct {
	Kind     string                  `json:"k"`
	Account  channelgroups.Account   `json:"a"`
	Group    channelgroups.Group     `json:"g,omitempty"`
	Op       channelgroups.Op        `json:"o,omitempty"`
	Channels []channelgroups.Channel `json:"c,omitempty"`
	At       channelgroups.Timetoken `json:"t,omitempty"`
	// Held and HeldKnown: which channels of the edit the group held before
	// it (channelgroups.Edit.Held).
	Held      []channelgroups.Channel `json:"h,omitempty"`
	HeldKnown bool                    `json:"hk,omitempty"`

	Channel    channelgroups.Channel `json:"ch,omitempty"`
	Payload    json.RawMessage       `json:"d,omitempty"`
	Publisher  string                `json:"i,omitempty"`
	Meta       json.RawMessage       `json:"u,omitempty"`
	CustomType string                `json:"cmt,omitempty"`
	Signal     bool                  `json:"e,omitempty"`
	NoStore    bool                  `json:"ns,omitempty"`
	Key        string                `json:"ik,omitempty"`

	Action string `json:"pa,omitempty"` // presence: join, leave, timeout
	UUID   string `json:"pu,omitempty"`
	When   int64  `json:"pw,omitempty"` // unix seconds
}

// presence is a presence event from the log.
type presence struct {
	Account channelgroups.Account
	Channel channelgroups.Channel
	Action  string
	UUID    string
	When    int64
}

func encodePresence(p presence) []byte {
	b, _ := json.Marshal(record{Kind: "p", Account: p.Account, Channel: p.Channel, Action: p.Action, UUID: p.UUID, When: p.When})
	return b
}

// Message is a published message.
type Message struct {
	Account    channelgroups.Account
	Channel    channelgroups.Channel
	Payload    json.RawMessage // the JSON as published
	Publisher  string          // the publisher's uuid
	Meta       json.RawMessage // publish meta, if any
	CustomType string
	Signal     bool
	NoStore    bool   // store=0: not kept for history
	Key        string // Idempotency-Key, if the publisher sent one
	// Pos is where the message is in its shard's log; set when applied.
	Pos channelgroups.Position

	wire atomic.Pointer[[]byte]
}

// Wire returns the message's encoding for subscribers, building it with
// build the first time: every subscriber of a channel gets the same bytes,
// so they are encoded once, not once per delivery.
func (m *Message) Wire(build func(*Message) []byte) []byte {
	if b := m.wire.Load(); b != nil {
		return *b
	}
	b := build(m)
	m.wire.Store(&b)
	return b
}

// Timetoken is the message's timetoken: its log position as a cursor.
func (m *Message) Timetoken() channelgroups.Timetoken { return CursorOf(m.Pos) }

// CursorOf renders a log position as a 17-digit PubNub timetoken: the
// millisecond times 10,000 plus the sequence within it. Every node of a
// region hands out the same cursor for the same position, so a subscriber
// can resume on any of them.
func CursorOf(p channelgroups.Position) channelgroups.Timetoken {
	return channelgroups.Timetoken(p.Ms*10000 + min(p.Seq, 9999))
}

// PositionOf is the log position a cursor stands for. A timetoken from
// /time/0 (or any PubNub timetoken) is a valid cursor: "after this time".
func PositionOf(t channelgroups.Timetoken) channelgroups.Position {
	return channelgroups.Position{Ms: uint64(t) / 10000, Seq: uint64(t) % 10000}
}

func encodeMessage(m *Message) []byte {
	b, _ := json.Marshal(record{Kind: "m", Account: m.Account, Channel: m.Channel, Payload: m.Payload, Publisher: m.Publisher,
		Meta: m.Meta, CustomType: m.CustomType, Signal: m.Signal, NoStore: m.NoStore, Key: m.Key})
	return b
}

// EncodeEdit is the log record of an edit, as Announce appends it.
func EncodeEdit(e channelgroups.Edit) []byte {
	b, _ := json.Marshal(record{Kind: "e", Account: e.Account, Group: e.Group, Op: e.Op, Channels: e.Channels, At: e.At, Held: e.Held, HeldKnown: e.HeldKnown})
	return b
}

// decoded is one log record: exactly one field is set.
type decoded struct {
	edit     *channelgroups.Edit
	msg      *Message
	presence *presence
}

// decodeRecord returns the edit, message or presence event a log entry holds.
func decodeRecord(b []byte, shard int) (decoded, error) {
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return decoded{}, fmt.Errorf("subscriber: bad log record: %w", err)
	}
	switch r.Kind {
	case "e":
		return decoded{edit: &channelgroups.Edit{Account: r.Account, Group: r.Group, Shard: shard, Op: r.Op, Channels: r.Channels, At: r.At,
			Held: r.Held, HeldKnown: r.HeldKnown}}, nil
	case "m":
		return decoded{msg: &Message{Account: r.Account, Channel: r.Channel, Payload: r.Payload, Publisher: r.Publisher, Meta: r.Meta,
			CustomType: r.CustomType, Signal: r.Signal, NoStore: r.NoStore, Key: r.Key}}, nil
	case "p":
		return decoded{presence: &presence{Account: r.Account, Channel: r.Channel, Action: r.Action, UUID: r.UUID, When: r.When}}, nil
	}
	return decoded{}, fmt.Errorf("subscriber: unknown log record kind %q", r.Kind)
}
