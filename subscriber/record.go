package subscriber

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/groupcast/groupcast/channelgroups"
	"github.com/groupcast/groupcast/subscriber/filter"
)

// record is one shard-log entry: kind "e" is a membership edit, kind "m" a
// published message, kind "p" a presence event, kind "d" a deletion of
// messages from history (every node hides them from its rings), kind "a" a
// message action added or removed (actions.go). All kinds of one account
// share its shard's log, in the order they were acknowledged. Kind "g" is
// written only by a replicator: entries of another region's log were lost
// before they could be copied (see replicate.go).
//
// An entry copied from another region's log (edits and messages) carries
// its origin: the region (Origin) and its position there (OriginPos); a
// message keeps its original timetoken on the wire. Deps are the other
// regions' positions a message was published, or an edit made, under (its
// token's), which a replicator copies only after it has copied those.
type record struct {
	Kind      string                  `json:"k"`
	Origin    int                     `json:"or,omitempty"`
	OriginPos string                  `json:"op,omitempty"`
	Deps      []string                `json:"dp,omitempty"` // "region:ms-seq"
	Account   channelgroups.Account   `json:"a"`
	Group     channelgroups.Group     `json:"g,omitempty"`
	Op        channelgroups.Op        `json:"o,omitempty"`
	Channels  []channelgroups.Channel `json:"c,omitempty"`
	At        channelgroups.Timetoken `json:"t,omitempty"`
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
	TTL        int64                 `json:"tl,omitempty"` // seconds; -1: kept until deleted

	// A deletion of a channel's messages from history: timetokens Lo to Hi.
	Lo channelgroups.Timetoken `json:"lo,omitempty"`
	Hi channelgroups.Timetoken `json:"hi,omitempty"`

	// A message action (kind "a"): added to message MsgTT with type AType
	// and value AValue, or, when RemovesTT is set, the removal of action
	// RemovesTT of message MsgTT. The publisher (i) is who added or removed it.
	MsgTT     channelgroups.Timetoken `json:"mt,omitempty"`
	RemovesTT channelgroups.Timetoken `json:"rt,omitempty"`
	AType     string                  `json:"aty,omitempty"`
	AValue    string                  `json:"av,omitempty"`

	Action string          `json:"pa,omitempty"` // presence: join, leave, timeout, state-change
	UUID   string          `json:"pu,omitempty"`
	When   int64           `json:"pw,omitempty"` // unix seconds
	State  json.RawMessage `json:"ps,omitempty"` // presence: the user's state (a JSON object) on a join or state-change
}

// presence is a presence event from the log.
type presence struct {
	Account channelgroups.Account
	Channel channelgroups.Channel
	Action  string
	UUID    string
	When    int64
	State   json.RawMessage
}

func encodePresence(p presence) []byte {
	b, _ := json.Marshal(record{Kind: "p", Account: p.Account, Channel: p.Channel, Action: p.Action, UUID: p.UUID, When: p.When, State: p.State})
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
	// TTL is how long history keeps the message (the publish's ttl): zero
	// means the node's Config.HistoryRetention, a negative value until it
	// is deleted (PubNub's ttl=0).
	TTL time.Duration
	// Deps are the positions in other regions' logs the publisher's token
	// covered: the message is copied to a third region only after them.
	Deps []channelgroups.RegionPosition
	// Pos is where the message is in its shard's log; set when applied.
	Pos channelgroups.Position
	// Origin and OriginPos say, for a message copied from another region's
	// log, which region it was published in and where in that region's log;
	// zero for a message published in this region.
	Origin    int
	OriginPos channelgroups.Position
	// Action is set when this is not a published message but a message
	// action added or removed (actions.go): subscribers get it as an action
	// event; history and message counts skip it (it is NoStore).
	Action *ActionEvent

	wire    atomic.Pointer[[]byte]
	subject atomic.Pointer[filter.Subject]
}

// FilterSubject is what subscribe filters read of the message: made once,
// and its meta decoded once, for all the subscribers that filter.
func (m *Message) FilterSubject() *filter.Subject {
	if s := m.subject.Load(); s != nil {
		return s
	}
	m.subject.CompareAndSwap(nil, filter.NewSubject(m.Meta, m.Payload))
	return m.subject.Load()
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

// Timetoken is the message's timetoken: its position, as a cursor, in the
// log of the region it was published in. Every region shows the same
// timetoken for a message, whichever region it was published in.
func (m *Message) Timetoken() channelgroups.Timetoken {
	if m.Origin != 0 {
		return CursorOf(m.OriginPos)
	}
	return CursorOf(m.Pos)
}

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
	e := messageEncoders.Get().(*messageEncoder)
	defer e.release()
	return slices.Clone(e.encode(m))
}

// messageEncoder encodes published messages into a buffer it keeps: a
// publish's record is copied into the log and then garbage, so encoding it
// into a fresh slice (json.Marshal's copy, and the record boxed to reach
// it) was most of what a publish allocated.
type messageEncoder struct {
	rec record
	buf bytes.Buffer
	enc *json.Encoder
}

var messageEncoders = sync.Pool{New: func() any {
	e := new(messageEncoder)
	e.enc = json.NewEncoder(&e.buf) // escapes HTML as json.Marshal does: the same bytes
	return e
}}

// encode returns m's record, valid until e is released; json.Marshal of the
// record gives the same bytes (TestMessageEncoderMatchesMarshal).
func (e *messageEncoder) encode(m *Message) []byte {
	e.rec = record{Kind: "m", Account: m.Account, Channel: m.Channel, Payload: m.Payload, Publisher: m.Publisher,
		Meta: m.Meta, CustomType: m.CustomType, Signal: m.Signal, NoStore: m.NoStore, Key: m.Key, Deps: encodeDeps(m.Deps),
		TTL: encodeTTL(m.TTL)}
	e.buf.Reset()
	if err := e.enc.Encode(&e.rec); err != nil {
		// Only a payload or meta that is not JSON fails, and both were
		// checked when published; json.Marshal's result was ignored alike.
		return nil
	}
	b := e.buf.Bytes()
	return b[:len(b)-1] // Encode ends the value with a newline
}

// release gives e back, keeping nothing of the message; a buffer grown past
// a large message's size is let go.
func (e *messageEncoder) release() {
	e.rec = record{}
	if e.buf.Cap() > 64<<10 {
		e.buf = bytes.Buffer{}
		e.enc = json.NewEncoder(&e.buf)
	}
	messageEncoders.Put(e)
}

// encodeTTL renders a message's TTL in whole seconds (at least one),
// keeping its sign.
func encodeTTL(d time.Duration) int64 {
	switch {
	case d < 0:
		return -1
	case d == 0:
		return 0
	}
	return max(int64(d/time.Second), 1)
}

func decodeTTL(s int64) time.Duration {
	if s < 0 {
		return -1
	}
	return time.Duration(s) * time.Second
}

// deletion is a deletion of a channel's history, timetokens lo to hi.
type deletion struct {
	Account channelgroups.Account
	Channel channelgroups.Channel
	Lo, Hi  channelgroups.Timetoken
}

func encodeDeletion(d deletion) []byte {
	b, _ := json.Marshal(record{Kind: "d", Account: d.Account, Channel: d.Channel, Lo: d.Lo, Hi: d.Hi})
	return b
}

func encodeDeps(ds []channelgroups.RegionPosition) []string {
	var out []string
	for _, d := range ds {
		out = append(out, strconv.Itoa(d.Region)+":"+d.Pos.String())
	}
	return out
}

func decodeDeps(ss []string) ([]channelgroups.RegionPosition, error) {
	var out []channelgroups.RegionPosition
	for _, s := range ss {
		r, p, ok := strings.Cut(s, ":")
		region, err := strconv.Atoi(r)
		if !ok || err != nil || region < 1 {
			return nil, fmt.Errorf("subscriber: bad dependency %q in a log record", s)
		}
		pos, err := channelgroups.ParsePosition(p)
		if err != nil {
			return nil, fmt.Errorf("subscriber: bad dependency %q in a log record: %w", s, err)
		}
		out = append(out, channelgroups.RegionPosition{Region: region, Pos: pos})
	}
	return out, nil
}

// EncodeEdit is the log record of an edit, as Announce appends it.
func EncodeEdit(e channelgroups.Edit) []byte { return encodeEdit(e, nil) }

// encodeEdit is EncodeEdit with the other regions' positions the edit was
// made under (see Node.CatchUp).
func encodeEdit(e channelgroups.Edit, deps []channelgroups.RegionPosition) []byte {
	b, _ := json.Marshal(record{Kind: "e", Account: e.Account, Group: e.Group, Op: e.Op, Channels: e.Channels, At: e.At, Held: e.Held,
		HeldKnown: e.HeldKnown, Deps: encodeDeps(deps)})
	return b
}

// decoded is one log record: exactly one of edit, msg (a message or an
// action event), presence, del and gap is set (gap: a replicator lost entries of origin's log up to originPos).
type decoded struct {
	edit     *channelgroups.Edit
	msg      *Message
	presence *presence
	del      *deletion
	gap      bool
	// origin and originPos: where a copied entry comes from (zero if from
	// this region's own log).
	origin    int
	originPos channelgroups.Position
}

// records holds the records decodeRecord decodes into: json.Unmarshal
// would take a new one off the heap for every log entry the node applies.
var records = sync.Pool{New: func() any { return new(record) }}

// decodeRecord returns the edit, message or presence event a log entry holds.
func decodeRecord(b []byte, shard int) (decoded, error) {
	r := records.Get().(*record)
	defer func() {
		*r = record{} // what r held stays with what was decoded from it
		records.Put(r)
	}()
	if err := json.Unmarshal(b, r); err != nil {
		return decoded{}, fmt.Errorf("subscriber: bad log record: %w", err)
	}
	d := decoded{origin: r.Origin}
	if r.Origin != 0 {
		p, err := channelgroups.ParsePosition(r.OriginPos)
		if err != nil || r.Origin < 0 {
			return decoded{}, fmt.Errorf("subscriber: bad origin of a copied log record: %d %q", r.Origin, r.OriginPos)
		}
		d.originPos = p
	}
	switch r.Kind {
	case "e":
		d.edit = &channelgroups.Edit{Account: r.Account, Group: r.Group, Shard: shard, Op: r.Op, Channels: r.Channels, At: r.At,
			Held: r.Held, HeldKnown: r.HeldKnown}
	case "m":
		deps, err := decodeDeps(r.Deps)
		if err != nil {
			return decoded{}, err
		}
		d.msg = &Message{Account: r.Account, Channel: r.Channel, Payload: r.Payload, Publisher: r.Publisher, Meta: r.Meta,
			CustomType: r.CustomType, Signal: r.Signal, NoStore: r.NoStore, Key: r.Key, Deps: deps, Origin: d.origin, OriginPos: d.originPos,
			TTL: decodeTTL(r.TTL)}
	case "p":
		d.presence = &presence{Account: r.Account, Channel: r.Channel, Action: r.Action, UUID: r.UUID, When: r.When, State: r.State}
	case "d":
		d.del = &deletion{Account: r.Account, Channel: r.Channel, Lo: r.Lo, Hi: r.Hi}
	case "a":
		d.msg = &Message{Account: r.Account, Channel: r.Channel, Publisher: r.Publisher, NoStore: true, Origin: d.origin, OriginPos: d.originPos,
			Action: &ActionEvent{Message: r.MsgTT, Removes: r.RemovesTT, Type: r.AType, Value: r.AValue}}
	case "g":
		if r.Origin == 0 {
			return decoded{}, errors.New("subscriber: a replication gap record without its origin")
		}
		d.gap = true
	default:
		return decoded{}, fmt.Errorf("subscriber: unknown log record kind %q", r.Kind)
	}
	return d, nil
}
