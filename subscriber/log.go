package subscriber

import (
	"context"
	"time"

	"github.com/groupcast/groupcast/channelgroups"
)

// Log is a region's ordered logs, one per shard. Membership changes (and,
// later, messages) of one shard are appended to one log in the order they
// were acknowledged, and every node applies them in that order. All methods
// are safe for concurrent use.
type Log interface {
	// Append adds rec to shard's log and returns its position, greater than
	// every earlier position of that shard.
	Append(ctx context.Context, shard int, rec []byte) (channelgroups.Position, error)
	// Read returns up to max entries after each cursor's position in its
	// shard's log, for the shards the cursors name (a node follows only the
	// shards it owns), in log order within each shard, waiting up to block
	// for the first one; none when block passes.
	Read(ctx context.Context, cursors []Cursor, max int, block time.Duration) ([]LogEntry, error)
	// Last returns the position of shard's newest entry; zero if empty.
	Last(ctx context.Context, shard int) (channelgroups.Position, error)
	// Range returns up to max of shard's entries after `after`, in order,
	// without waiting: what a node replays into its message rings at start.
	Range(ctx context.Context, shard int, after channelgroups.Position, max int) ([]LogEntry, error)
}

// Cursor is where a reader of one shard's log is: entries after After.
type Cursor struct {
	Shard int
	After channelgroups.Position
}

// LogEntry is one record read from a shard log.
type LogEntry struct {
	Shard int
	Pos   channelgroups.Position
	Data  []byte
}
