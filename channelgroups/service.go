package channelgroups

import (
	"context"
	"fmt"
)

// Service carries out channel-group edits and reads: it assigns each edit
// its timetoken, enforces the group limits and writes through the Store.
type Service struct {
	store Store
	clock *Clock
	cfg   ServiceConfig
}

// ServiceConfig tunes a Service. The zero value is usable.
type ServiceConfig struct {
	// MaxChannelsPerGroup caps a group's size; zero means MaxChannelsPerGroup.
	MaxChannelsPerGroup int
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
	return &Service{store: store, clock: clock, cfg: cfg}, nil
}

// Clock returns the service's clock.
func (s *Service) Clock() *Clock { return s.clock }

// Add adds channels to group g, creating it, and returns the edit's timetoken.
// It fails with ErrTooManyChannels when the group would exceed its limit.
func (s *Service) Add(ctx context.Context, a Account, g Group, chs []Channel) (Timetoken, error) {
	if len(chs) == 0 {
		return 0, ErrNoChannels
	}
	snap, err := s.store.Read(ctx, a, g)
	if err != nil {
		return 0, err
	}
	n := snap.Count()
	for _, c := range chs {
		if e, ok := snap.Lookup(c); !ok || e.State != Added {
			n++
		}
	}
	if n > s.cfg.MaxChannelsPerGroup {
		return 0, fmt.Errorf("group %q would hold %d channels, at most %d: %w", g, n, s.cfg.MaxChannelsPerGroup, ErrTooManyChannels)
	}
	return s.write(ctx, Edit{Account: a, Group: g, Op: OpAdd, Channels: chs})
}

// Remove removes channels from group g and returns the edit's timetoken.
func (s *Service) Remove(ctx context.Context, a Account, g Group, chs []Channel) (Timetoken, error) {
	if len(chs) == 0 {
		return 0, ErrNoChannels
	}
	return s.write(ctx, Edit{Account: a, Group: g, Op: OpRemove, Channels: chs})
}

// Delete removes every channel of group g and the group itself.
func (s *Service) Delete(ctx context.Context, a Account, g Group) (Timetoken, error) {
	return s.write(ctx, Edit{Account: a, Group: g, Op: OpClear})
}

// Read returns group g's snapshot.
func (s *Service) Read(ctx context.Context, a Account, g Group) (Snapshot, error) {
	return s.store.Read(ctx, a, g)
}

// Groups lists the account's groups.
func (s *Service) Groups(ctx context.Context, a Account) ([]Group, error) {
	return s.store.Groups(ctx, a)
}

func (s *Service) write(ctx context.Context, e Edit) (Timetoken, error) {
	e.At = s.clock.Now()
	if err := s.store.Write(ctx, e); err != nil {
		return 0, err
	}
	return e.At, nil
}
