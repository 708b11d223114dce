package channelgroups

import (
	"context"
	"errors"
	"time"
)

// Store keeps group membership durably. Implementations must give exactly
// the answers of Snapshot.Apply for the same edits, in any order; the
// conformance suite in channelgroups/storetest checks it. All methods are
// safe for concurrent use.
type Store interface {
	// Write applies an edit durably, together with an outbox record of it
	// (see Outbox): when it returns nil both survive the crash of any one
	// process.
	Write(ctx context.Context, e Edit) error
	// Read returns the group's snapshot; a group never written reads as the
	// zero Snapshot.
	Read(ctx context.Context, a Account, g Group) (Snapshot, error)
	// Groups lists the account's groups that exist (Snapshot.Exists), in name order.
	Groups(ctx context.Context, a Account) ([]Group, error)
}

// Outbox holds the durable edits that may not have been announced in their
// shard's log yet. Every Store.Write records one; it is removed once the
// edit's log append succeeded. A node that failed to append, or that takes
// over after a crash, announces what is pending, oldest first, as storage
// holds the channels a record names (Snapshot.Restate): a record is keyed by
// shard, timetoken and group, so edits of one group at one timetoken share
// one (Cassandra merges their channels under the larger op, bbolt keeps the
// last). A region's edits of a shard are made by its primary, whose clock
// never repeats a timetoken, so only a hand-over or a writer bypassing the
// service can make two such edits.
type Outbox interface {
	// Pending returns up to limit outbox records of shard, oldest first.
	Pending(ctx context.Context, shard, limit int) ([]Edit, error)
	// Announced removes e's outbox record.
	Announced(ctx context.Context, e Edit) error
}

// Pinger is implemented by stores that can tell whether their back end answers.
type Pinger interface {
	Ping(ctx context.Context) error
}

// ErrUnavailable wraps a store failure that a retry may cure (timeouts,
// unreachable replicas). The HTTP layer answers 503 with Retry-After.
var ErrUnavailable = errors.New("channelgroups: storage unavailable")

// Replays remembers the answers to edits sent with an Idempotency-Key, so
// that a retry within the retention gets the first answer and writes nothing
// twice.
type Replays interface {
	// Recall returns the remembered fingerprint and answer for the account's key.
	Recall(ctx context.Context, a Account, key string) (fingerprint string, answer []byte, found bool, err error)
	// Remember stores an answer for ttl.
	Remember(ctx context.Context, a Account, key, fingerprint string, answer []byte, ttl time.Duration) error
}
