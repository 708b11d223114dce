// Package archive is groupcast's Message Persistence contract: the durable
// store that history, message counts, delete-messages and message actions
// read, and that the archiver (which follows each shard's log on the shard's
// primary) writes into.
//
// Store is implemented by the embedded bbolt store (channelgroups/bolt), by
// the Cassandra store (channelgroups/cassandra) and by Memory here; the
// conformance suite in archive/archivetest checks that all three give the
// same answers.
//
// # Ranges
//
// Messages, Delete and Actions take PubNub's pair of timetokens: start is
// exclusive, end inclusive, both optional (zero means not given). Bounds
// turns them into one closed interval [lo, hi]:
//
//	neither        every timetoken
//	start only     tt < start
//	end only       tt >= end
//	start > end    end <= tt < start   (the usual slice, start the newer)
//	start < end    start < tt <= end   (PubNub accepts this order too)
//	start == end   nothing
//
// # Order and paging
//
// Messages returns at most Query.Max messages of the range, always in
// timetoken order (oldest first), as PubNub's history answers are. Without
// Reverse they are the newest Max of the range; with Reverse the oldest Max.
// more is true exactly when the range holds messages that were not returned.
// To page a channel newest to oldest, call again with Start set to the
// first (oldest) returned timetoken; oldest to newest, call with Reverse and
// End set to the last (newest) returned timetoken + 1. Each message is then
// returned exactly once.
//
// # Idempotence, replay and deletes
//
// The archiver writes a batch and then its checkpoint, and after a crash
// writes again from the checkpoint: so Append of a message already stored
// (same account, channel and timetoken) stores it once, and a message that
// was deleted stays deleted when it is appended again. Delete removes the
// range's messages up to the deleting store's clock (messages cannot be
// published in the future) and remembers the range it removed, so a replay
// does not bring them back; a message published after the Delete is not
// covered by it.
//
// # Expiry
//
// A message or action whose Expires has passed is never returned or
// counted; stores drop it in the background (Cassandra's TTL) or in bounded
// sweeps (bbolt).
package archive

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/groupcast/groupcast/channelgroups"
)

// MessageType is PubNub's message type as history reports it. Signals are
// never stored.
type MessageType int8

const (
	TypeMessage MessageType = 0 // a published message
	TypeFile    MessageType = 4 // a file message
)

// Message is one stored message.
type Message struct {
	Account   channelgroups.Account
	Channel   channelgroups.Channel
	Timetoken channelgroups.Timetoken // identifies the message in its channel
	Payload   json.RawMessage         // the JSON as published; required
	Publisher string                  // the publisher's uuid
	Meta      json.RawMessage         // publish meta; nil when none
	// CustomType is the publish's custom_message_type.
	CustomType string
	Type       MessageType
	// Expires is when the message stops being stored (the publish ttl or the
	// account's retention); the zero time keeps it until deleted. Stores keep
	// it to the second (Cassandra's TTL resolution) or better.
	Expires time.Time
}

// Action is a message action (a reaction, a receipt…) added to a stored
// message. Account, Channel, Message and Timetoken identify it.
type Action struct {
	Account   channelgroups.Account
	Channel   channelgroups.Channel
	Message   channelgroups.Timetoken // the message's timetoken
	Timetoken channelgroups.Timetoken // the action's own timetoken
	Type      string
	Value     string
	Publisher string // the uuid that added it
	// Expires is when the action stops being stored (normally its message's
	// Expires); the zero time keeps it until removed.
	Expires time.Time
}

// Query selects messages of one channel; see the package comment for the
// meaning of Start, End and Reverse.
type Query struct {
	Account    channelgroups.Account
	Channel    channelgroups.Channel
	Start, End channelgroups.Timetoken
	Max        int // at most this many; must be 1 to MaxQuery
	Reverse    bool
}

// MaxQuery is the largest Query.Max and Actions limit a store serves in one
// call (PubNub's own pages are at most 100).
const MaxQuery = 1000

// Store is the durable message store. All methods are safe for concurrent
// use. Errors a retry may cure wrap channelgroups.ErrUnavailable; input the
// store refuses wraps ErrInvalid and changes nothing.
type Store interface {
	// Append stores messages (any accounts and channels). It is idempotent:
	// a message with the account, channel and timetoken of one already
	// stored replaces it, so a replayed batch is stored once; a message in a
	// range deleted by Delete is dropped. A message already expired is not
	// stored. On error some of the batch may be stored.
	Append(ctx context.Context, msgs []Message) error
	// Messages returns the query's messages in timetoken order and whether
	// the range holds more than were returned.
	Messages(ctx context.Context, q Query) (msgs []Message, more bool, err error)
	// Count returns how many stored messages of the channel have a timetoken
	// strictly after after (PubNub's message counts).
	Count(ctx context.Context, a channelgroups.Account, c channelgroups.Channel, after channelgroups.Timetoken) (int64, error)
	// Delete removes the channel's messages in the range of start and end
	// (see Bounds; neither means all), up to the store's current time, and
	// their actions.
	Delete(ctx context.Context, a channelgroups.Account, c channelgroups.Channel, start, end channelgroups.Timetoken) error

	// AddAction stores an action; adding one with the account, channel,
	// message and action timetoken of a stored one replaces it.
	AddAction(ctx context.Context, act Action) error
	// RemoveAction removes the action with these timetokens; removing one
	// that is not stored is not an error.
	RemoveAction(ctx context.Context, a channelgroups.Account, c channelgroups.Channel, message, action channelgroups.Timetoken) error
	// Actions returns the channel's actions whose action timetoken is in the
	// range of start and end (see Bounds), the newest limit of them in
	// action-timetoken order (oldest first), and whether the range holds
	// more (PubNub's get-message-actions).
	Actions(ctx context.Context, a channelgroups.Account, c channelgroups.Channel, start, end channelgroups.Timetoken, limit int) (acts []Action, more bool, err error)
	// MessageActions returns the actions of the channel's messages with
	// timetokens from first to last, both included, ordered by message and
	// then action timetoken: called with the first and last timetokens a
	// Messages call returned, it gives history-with-actions.
	MessageActions(ctx context.Context, a channelgroups.Account, c channelgroups.Channel, first, last channelgroups.Timetoken) ([]Action, error)

	// Checkpoint returns how far the archiver of shard's log in this store's
	// region got; the zero Position if it never set one.
	Checkpoint(ctx context.Context, shard int) (channelgroups.Position, error)
	// SetCheckpoint records pos as shard's checkpoint in this region.
	SetCheckpoint(ctx context.Context, shard int, pos channelgroups.Position) error
}

// AppendThrougher is a Store that can store a batch and move shards'
// checkpoints in one write: for the embedded store, one transaction and
// its fsyncs instead of one per call. The archiver uses it when its store
// has it.
type AppendThrougher interface {
	// AppendThrough is Append followed by SetCheckpoint for every shard of
	// checkpoints, as one write: on error no checkpoint moved and nothing
	// of the batch is stored.
	AppendThrough(ctx context.Context, msgs []Message, checkpoints map[int]channelgroups.Position) error
}

// ErrInvalid is wrapped by the errors for input a store refuses.
var ErrInvalid = errors.New("archive: invalid input")

// MaxTimetoken is the largest timetoken.
const MaxTimetoken = channelgroups.Timetoken(math.MaxInt64)

// Bounds returns the closed interval [lo, hi] of timetokens that PubNub's
// start (exclusive) and end (inclusive) select, zero meaning not given; ok
// is false when it is empty (start == end, or a bound that leaves nothing).
func Bounds(start, end channelgroups.Timetoken) (lo, hi channelgroups.Timetoken, ok bool) {
	switch {
	case start == 0 && end == 0:
		lo, hi = 0, MaxTimetoken
	case end == 0:
		lo, hi = 0, start-1
	case start == 0:
		lo, hi = end, MaxTimetoken
	case start > end:
		lo, hi = end, start-1
	default: // start <= end; start == end gives lo > hi
		lo, hi = start+1, end
	}
	return lo, hi, lo <= hi
}

// Expired reports whether something expiring at expires (zero: never) is
// gone at now.
func Expired(expires, now time.Time) bool {
	return !expires.IsZero() && !expires.After(now)
}

// CheckChannel refuses, wrapping ErrInvalid, an account or channel name that
// channelgroups would not accept.
func CheckChannel(a channelgroups.Account, c channelgroups.Channel) error {
	if _, err := channelgroups.ParseAccount(string(a)); err != nil {
		return fmt.Errorf("archive: account: %w: %w", ErrInvalid, err)
	}
	if _, err := channelgroups.ParseChannel(string(c)); err != nil {
		return fmt.Errorf("archive: channel: %w: %w", ErrInvalid, err)
	}
	return nil
}

// CheckRange refuses negative range bounds.
func CheckRange(start, end channelgroups.Timetoken) error {
	if start < 0 || end < 0 {
		return fmt.Errorf("archive: negative timetoken (start %d, end %d): %w", start, end, ErrInvalid)
	}
	return nil
}

// Validate refuses, wrapping ErrInvalid, a message a store must not keep: a
// bad account or channel name, a timetoken <= 0, a payload or meta that is
// not JSON.
func (m Message) Validate() error {
	if err := CheckChannel(m.Account, m.Channel); err != nil {
		return err
	}
	if m.Timetoken <= 0 {
		return fmt.Errorf("archive: message timetoken %d must be > 0: %w", m.Timetoken, ErrInvalid)
	}
	if len(m.Payload) == 0 || !json.Valid(m.Payload) {
		return fmt.Errorf("archive: message %s: payload is not JSON: %w", m.Timetoken, ErrInvalid)
	}
	if m.Meta != nil && !json.Valid(m.Meta) {
		return fmt.Errorf("archive: message %s: meta is not JSON: %w", m.Timetoken, ErrInvalid)
	}
	return nil
}

// Validate refuses, wrapping ErrInvalid, an action a store must not keep.
func (act Action) Validate() error {
	if err := CheckChannel(act.Account, act.Channel); err != nil {
		return err
	}
	if act.Message <= 0 || act.Timetoken <= 0 {
		return fmt.Errorf("archive: action timetokens (message %d, action %d) must be > 0: %w", act.Message, act.Timetoken, ErrInvalid)
	}
	if act.Type == "" || act.Value == "" {
		return fmt.Errorf("archive: action type and value are required: %w", ErrInvalid)
	}
	return nil
}

// Validate refuses, wrapping ErrInvalid, a query no store serves.
func (q Query) Validate() error {
	if err := CheckChannel(q.Account, q.Channel); err != nil {
		return err
	}
	if q.Max < 1 || q.Max > MaxQuery {
		return fmt.Errorf("archive: max %d must be 1 to %d: %w", q.Max, MaxQuery, ErrInvalid)
	}
	return CheckRange(q.Start, q.End)
}

// CheckLimit refuses an Actions limit outside 1 to MaxQuery.
func CheckLimit(limit int) error {
	if limit < 1 || limit > MaxQuery {
		return fmt.Errorf("archive: limit %d must be 1 to %d: %w", limit, MaxQuery, ErrInvalid)
	}
	return nil
}

// CheckShard refuses a negative shard number.
func CheckShard(shard int) error {
	if shard < 0 {
		return fmt.Errorf("archive: shard %d must be >= 0: %w", shard, ErrInvalid)
	}
	return nil
}

// DeleteBounds is the closed interval Delete removes at now: Bounds, with hi
// no later than now. ok is false when nothing is removed.
func DeleteBounds(start, end channelgroups.Timetoken, now time.Time) (lo, hi channelgroups.Timetoken, ok bool) {
	lo, hi, ok = Bounds(start, end)
	hi = min(hi, channelgroups.TimetokenOf(now))
	return lo, hi, ok && lo <= hi
}
