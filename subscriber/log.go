package subscriber

import (
	"context"
	"time"

	"github.com/groupcast/groupcast/channelgroups"
)

// Log is a region's ordered logs, one per shard. Membership changes,
// messages and presence events of one shard are appended to one log in the
// order they were acknowledged, and every node applies them in that order.
// All methods are safe for concurrent use.
//
// A log keeps a bounded number of entries per shard and drops the oldest
// first. A reader that falls so far behind that entries after its cursor
// were dropped before it read them is told: the shard's first entry in the
// answer is then a gap (LogEntry.Gap), never a silent jump. Gaps are exact:
// a log reports every entry lost after a cursor and never one that was not.
type Log interface {
	// Append adds rec to shard's log and returns its position, greater than
	// every earlier position of that shard. It keeps no reference to rec
	// once it returns: a publish encodes into a buffer it reuses.
	Append(ctx context.Context, shard int, rec []byte) (channelgroups.Position, error)
	// Read returns up to max entries after each cursor's position in its
	// shard's log, for the shards the cursors name (a node follows only the
	// shards it owns), in log order within each shard, waiting up to block
	// for the first one; none when block passes. If entries after a cursor
	// were dropped unread, the shard's entries in the answer start with a
	// gap entry (which does not count towards max). Read does not keep
	// cursors after it returns: its callers reuse the slice.
	Read(ctx context.Context, cursors []Cursor, max int, block time.Duration) ([]LogEntry, error)
	// Last returns the position of shard's newest entry; zero if empty.
	Last(ctx context.Context, shard int) (channelgroups.Position, error)
	// Range returns up to max of shard's entries after `after`, in order,
	// without waiting: what a node replays into its message rings at start.
	// Like Read, it starts with a gap entry if entries after `after` were
	// dropped.
	Range(ctx context.Context, shard int, after channelgroups.Position, max int) ([]LogEntry, error)

	// AppendReplica appends rec to shard's log as the copy of the entry at
	// origin in region's log for the same shard, unless an entry of that
	// region at or after origin was already copied into this shard's log:
	// then it appends nothing and returns appended false. The check, the
	// append and the record of how far region's log was copied are one
	// atomic step that survives restarts, so a replicator that dies at any
	// point and starts again from Replicated never copies an entry twice and
	// never skips one.
	AppendReplica(ctx context.Context, shard, region int, origin channelgroups.Position, rec []byte) (pos channelgroups.Position, appended bool, err error)
	// Replicated returns, for each region whose log was copied into shard's
	// log, the origin position of the newest entry copied.
	Replicated(ctx context.Context, shard int) (map[int]channelgroups.Position, error)
}

// Cursor is where a reader of one shard's log is: entries after After.
type Cursor struct {
	Shard int
	After channelgroups.Position
}

// LogEntry is one record read from a shard log, or a gap in it.
type LogEntry struct {
	Shard int
	// Pos is the record's position; for a gap, the newest position lost.
	Pos  channelgroups.Position
	Data []byte
	// Gap marks an entry that is not a record (Data is nil) but a hole:
	// the shard's entries after the reader's cursor, up to and including
	// Pos, were dropped (the log was trimmed past the cursor, or lost) before
	// the reader read them. A reader that applies the log must treat what it
	// built from the shard as incomplete. It comes before the shard's other
	// entries in the same answer, and every one of them is after Pos.
	Gap bool
}
