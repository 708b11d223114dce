package subscriber

// Ownership tells a node which account shards it serves. In a cluster,
// subscriber/cluster implements it over memberlist; a nil Ownership in
// Config means the node owns every shard and is the primary of each (one
// node, embedded mode).
//
// Implementations are safe for concurrent use and never block.
type Ownership interface {
	// Assignment returns the current assignment of shards to this node;
	// never nil. It is immutable: a change makes a new one.
	Assignment() *Assignment
	// Changed returns a channel that is closed when the assignment
	// changes; call Assignment (and Changed again) after it fires.
	Changed() <-chan struct{}
	// Ready reports that this node now serves every shard it owns under
	// the assignment with this version (its rings and views are rebuilt),
	// so that a draining peer knows the hand-over is complete.
	Ready(version uint64)
}

// Assignment is which shards this node owns, and of which it is the
// primary (the one node that appends the shard's edits and messages and
// drains its outbox), under one version of the cluster's ring.
type Assignment struct {
	// Version identifies the ring this assignment comes from; every node
	// computes the same version from the same membership.
	Version uint64
	// Owned and Primary are indexed by shard; Primary[i] implies Owned[i].
	Owned, Primary []bool
}

// All is the assignment of a node that owns every one of shards shards.
func All(shards int) *Assignment {
	a := &Assignment{Owned: make([]bool, shards), Primary: make([]bool, shards)}
	for i := range shards {
		a.Owned[i], a.Primary[i] = true, true
	}
	return a
}

// Owns reports whether this node is one of the shard's owners.
func (a *Assignment) Owns(shard int) bool {
	return shard >= 0 && shard < len(a.Owned) && a.Owned[shard]
}

// IsPrimary reports whether this node is the shard's primary.
func (a *Assignment) IsPrimary(shard int) bool {
	return shard >= 0 && shard < len(a.Primary) && a.Primary[shard]
}

// Count returns how many shards this node owns.
func (a *Assignment) Count() int {
	n := 0
	for _, o := range a.Owned {
		if o {
			n++
		}
	}
	return n
}
