package channelgroups

import (
	"context"
	"errors"
)

// Store keeps group membership durably. Implementations must give exactly
// the answers of Snapshot.Apply for the same edits, in any order; the
// conformance suite in channelgroups/storetest checks it. All methods are
// safe for concurrent use.
type Store interface {
	// Write applies an edit durably: when it returns nil the edit survives
	// the crash of any one process.
	Write(ctx context.Context, e Edit) error
	// Read returns the group's snapshot; a group never written reads as the
	// zero Snapshot.
	Read(ctx context.Context, a Account, g Group) (Snapshot, error)
	// Groups lists the account's groups that exist (Snapshot.Exists), in name order.
	Groups(ctx context.Context, a Account) ([]Group, error)
}

// Pinger is implemented by stores that can tell whether their back end answers.
type Pinger interface {
	Ping(ctx context.Context) error
}

// ErrUnavailable wraps a store failure that a retry may cure (timeouts,
// unreachable replicas). The HTTP layer answers 503 with Retry-After.
var ErrUnavailable = errors.New("channelgroups: storage unavailable")
