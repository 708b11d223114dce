package channelgroups

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// Announcer puts a durable edit into its shard's log and returns the
// position it was appended at. It fails with ErrUnannounced when the edit
// could not be appended (it stays in the outbox and is announced later).
type Announcer interface {
	Announce(ctx context.Context, e Edit) (Position, error)
}

// ErrUnannounced wraps an Announcer's failure: the edit is durable, but not
// in the log yet.
var ErrUnannounced = errors.New("channelgroups: edit not announced yet")

// Service carries out channel-group edits and reads: it assigns each edit
// its timetoken, enforces the group limits, writes through the Store,
// announces the edit in its shard's log and hands back a causal token.
type Service struct {
	store     Store
	clock     *Clock
	announcer Announcer
	cfg       ServiceConfig
	adding    groupLocks // one add per group at a time in this process
}

// ServiceConfig tunes a Service. The zero value is usable.
type ServiceConfig struct {
	// MaxChannelsPerGroup caps a group's size; zero means MaxChannelsPerGroup.
	// The Service checks it before writing, with adds to one group taken one
	// at a time in this process; a store may enforce a cap of its own inside
	// the write (channelgroups/bolt does), which then holds across processes
	// too. See Add.
	MaxChannelsPerGroup int
	// Shards is the number of account shards; zero means DefaultShards.
	Shards int
	// Region is this region's number, recorded in tokens; zero means 1.
	Region int
	// Announcer puts edits into the shard logs; nil means edits are only
	// stored (and their tokens are marked unannounced).
	Announcer Announcer
}

// Result is the outcome of an edit.
type Result struct {
	// At is the timetoken the edit was written at.
	At Timetoken
	// Token covers the edit (and nothing else yet: merge the client's
	// previous token into it).
	Token Token
}

// NewService returns a service writing to store with timetokens from clock.
func NewService(store Store, clock *Clock, cfg ServiceConfig) (*Service, error) {
	if store == nil {
		return nil, fmt.Errorf("channelgroups: NewService requires a store")
	}
	if clock == nil {
		return nil, fmt.Errorf("channelgroups: NewService requires a clock")
	}
	if cfg.MaxChannelsPerGroup < 0 {
		return nil, fmt.Errorf("channelgroups: MaxChannelsPerGroup must be >= 0")
	}
	if cfg.MaxChannelsPerGroup == 0 {
		cfg.MaxChannelsPerGroup = MaxChannelsPerGroup
	}
	if cfg.Shards == 0 {
		cfg.Shards = DefaultShards
	}
	if cfg.Region == 0 {
		cfg.Region = 1
	}
	if cfg.Shards < 0 || cfg.Region < 0 {
		return nil, fmt.Errorf("channelgroups: Shards and Region must be >= 0")
	}
	return &Service{store: store, clock: clock, announcer: cfg.Announcer, cfg: cfg}, nil
}

// Clock returns the service's clock.
func (s *Service) Clock() *Clock { return s.clock }

// Shard returns the shard of account a.
func (s *Service) Shard(a Account) int { return ShardOf(a, s.cfg.Shards) }

// ErrVersionMismatch is wrapped by *VersionMismatchError.
var ErrVersionMismatch = errors.New("channelgroups: group version does not match")

// VersionMismatchError reports a failed If-Match: the group's version is not
// the one the client based its edit on.
type VersionMismatchError struct {
	Want, Current Timetoken
}

func (e *VersionMismatchError) Error() string {
	return fmt.Sprintf("group version is %s, not %s", e.Current, e.Want)
}

func (e *VersionMismatchError) Unwrap() error { return ErrVersionMismatch }

// IfMatch makes an edit conditional on the group's current version (its
// Snapshot.Version as storage holds it). The check and the write are not
// atomic: two conditional edits racing within one storage round trip can
// both pass.
type IfMatch struct {
	Version Timetoken
	Set     bool
}

func (s *Service) check(ctx context.Context, a Account, g Group, pre IfMatch, snap *Snapshot) error {
	if !pre.Set {
		return nil
	}
	if snap == nil {
		got, err := s.store.Read(ctx, a, g)
		if err != nil {
			return err
		}
		snap = &got
	}
	if snap.Version != pre.Version {
		return &VersionMismatchError{Want: pre.Version, Current: snap.Version}
	}
	return nil
}

// Add adds channels to group g, creating it, and returns the edit's timetoken.
// It fails with ErrTooManyChannels when the group would exceed its limit, or
// when it is already over it (a group pushed past it by racing adds on
// different nodes takes adds again once removes bring it back under).
//
// The check reads the group and the write follows. Adds to one group are
// taken one at a time in this process, so they cannot race each other past
// the limit here; adds racing on other nodes can, unless the store refuses
// them inside its write transaction (see the store's package comment for
// the bound it gives).
func (s *Service) Add(ctx context.Context, a Account, g Group, chs []Channel, pre IfMatch) (Result, error) {
	if len(chs) == 0 {
		return Result{}, ErrNoChannels
	}
	unlock, err := s.adding.lock(ctx, a, g)
	if err != nil {
		return Result{}, err
	}
	defer unlock()
	snap, err := s.store.Read(ctx, a, g)
	if err != nil {
		return Result{}, err
	}
	if err := s.check(ctx, a, g, pre, &snap); err != nil {
		return Result{}, err
	}
	n := snap.Count()
	for _, c := range chs {
		if e, ok := snap.Lookup(c); !ok || e.State != Added {
			n++
		}
	}
	if n > s.cfg.MaxChannelsPerGroup {
		return Result{}, fmt.Errorf("group %q would hold %d channels, at most %d: %w", g, n, s.cfg.MaxChannelsPerGroup, ErrTooManyChannels)
	}
	return s.write(ctx, Edit{Account: a, Group: g, Op: OpAdd, Channels: chs, Held: held(&snap, chs), HeldKnown: true})
}

// groupLocks serialises work on one group within a process: lock waits for
// the group's previous holder (or ctx) and returns the unlock. Entries live
// only while someone holds or waits for them.
type groupLocks struct {
	mu sync.Mutex
	m  map[groupRef]*groupLock
}

type groupRef struct {
	a Account
	g Group
}

type groupLock struct {
	held chan struct{} // capacity 1: full while held
	refs int           // holders and waiters
}

func (l *groupLocks) lock(ctx context.Context, a Account, g Group) (unlock func(), err error) {
	k := groupRef{a, g}
	l.mu.Lock()
	if l.m == nil {
		l.m = map[groupRef]*groupLock{}
	}
	e := l.m[k]
	if e == nil {
		e = &groupLock{held: make(chan struct{}, 1)}
		l.m[k] = e
	}
	e.refs++
	l.mu.Unlock()
	release := func() {
		l.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(l.m, k)
		}
		l.mu.Unlock()
	}
	select {
	case e.held <- struct{}{}:
		return func() { <-e.held; release() }, nil
	case <-ctx.Done():
		release()
		return nil, ctx.Err()
	}
}

// Remove removes channels from group g and returns the edit's timetoken. It
// reads the group first: the log record says which channels it held.
func (s *Service) Remove(ctx context.Context, a Account, g Group, chs []Channel, pre IfMatch) (Result, error) {
	if len(chs) == 0 {
		return Result{}, ErrNoChannels
	}
	snap, err := s.store.Read(ctx, a, g)
	if err != nil {
		return Result{}, err
	}
	if err := s.check(ctx, a, g, pre, &snap); err != nil {
		return Result{}, err
	}
	return s.write(ctx, Edit{Account: a, Group: g, Op: OpRemove, Channels: chs, Held: held(&snap, chs), HeldKnown: true})
}

// Delete removes every channel of group g and the group itself.
func (s *Service) Delete(ctx context.Context, a Account, g Group, pre IfMatch) (Result, error) {
	snap, err := s.store.Read(ctx, a, g)
	if err != nil {
		return Result{}, err
	}
	if err := s.check(ctx, a, g, pre, &snap); err != nil {
		return Result{}, err
	}
	return s.write(ctx, Edit{Account: a, Group: g, Op: OpClear, Held: held(&snap, nil), HeldKnown: true})
}

// Read returns group g's snapshot.
func (s *Service) Read(ctx context.Context, a Account, g Group) (Snapshot, error) {
	return s.store.Read(ctx, a, g)
}

// Groups lists the account's groups.
func (s *Service) Groups(ctx context.Context, a Account) ([]Group, error) {
	return s.store.Groups(ctx, a)
}

// write is the edit path: timetoken → durable write (with its outbox
// record) → append to the shard log → token. A failed append does not fail
// the edit, which is durable: the token records it as pending instead, and
// readers holding it go to storage until the shard's outbox is drained.
func (s *Service) write(ctx context.Context, e Edit) (Result, error) {
	e.At = s.clock.Now()
	e.Shard = ShardOf(e.Account, s.cfg.Shards)
	if err := s.store.Write(ctx, e); err != nil {
		return Result{}, err
	}
	r := Result{At: e.At, Token: Token{Shard: e.Shard, At: e.At, Origin: s.cfg.Region, Pending: e.At}}
	if s.announcer == nil {
		return r, nil
	}
	pos, err := s.announcer.Announce(ctx, e)
	if err != nil {
		if errors.Is(err, ErrUnannounced) {
			return r, nil
		}
		return Result{}, err
	}
	r.Token.Pending = 0
	r.Token.Positions = []RegionPosition{{Region: s.cfg.Region, Pos: pos}}
	return r, nil
}
