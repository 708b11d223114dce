package accesstest

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/groupcast/groupcast/access"
)

// Memory is an access.Store in memory, for tests of code that uses one. It
// passes Run. SetErr makes every call fail, to test how callers ride out a
// storage outage.
type Memory struct {
	mu       sync.Mutex
	keysets  map[string]access.Keyset
	revoked  map[[2]string]time.Time
	version  uint64
	err      error
	keysetsN int // calls of Keysets
}

var _ access.Store = (*Memory)(nil)

// NewMemory returns an empty store.
func NewMemory() *Memory {
	return &Memory{keysets: map[string]access.Keyset{}, revoked: map[[2]string]time.Time{}}
}

// SetErr makes every later call fail with err; nil restores the store.
func (m *Memory) SetErr(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.err = err
}

// KeysetsCalls reports how many times Keysets has been called.
func (m *Memory) KeysetsCalls() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.keysetsN
}

// failure returns the error a call must fail with, if any; m.mu is held.
func (m *Memory) failure(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return m.err
}

// PutKeyset implements access.Store.
func (m *Memory) PutKeyset(ctx context.Context, k access.Keyset) error {
	if err := k.Validate(); err != nil {
		return fmt.Errorf("accesstest: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.failure(ctx); err != nil {
		return err
	}
	if !k.Created.IsZero() {
		k.Created = k.Created.UTC().Truncate(time.Millisecond)
	}
	m.keysets[k.SubscribeKey] = k
	m.version++
	return nil
}

// DeleteKeyset implements access.Store.
func (m *Memory) DeleteKeyset(ctx context.Context, subscribeKey string) error {
	if err := access.ValidateSubscribeKey(subscribeKey); err != nil {
		return fmt.Errorf("accesstest: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.failure(ctx); err != nil {
		return err
	}
	delete(m.keysets, subscribeKey)
	m.version++
	return nil
}

// Keysets implements access.Store.
func (m *Memory) Keysets(ctx context.Context) ([]access.Keyset, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.keysetsN++
	if err := m.failure(ctx); err != nil {
		return nil, err
	}
	return slices.SortedFunc(maps.Values(m.keysets), func(a, b access.Keyset) int {
		return strings.Compare(a.SubscribeKey, b.SubscribeKey)
	}), nil
}

// Revoke implements access.Store.
func (m *Memory) Revoke(ctx context.Context, r access.Revocation) error {
	if err := r.Validate(); err != nil {
		return fmt.Errorf("accesstest: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.failure(ctx); err != nil {
		return err
	}
	m.revoked[[2]string{r.SubscribeKey, r.TokenID}] = r.Until.UTC().Truncate(time.Millisecond)
	m.version++
	return nil
}

// Revocations implements access.Store. It never forgets one.
func (m *Memory) Revocations(ctx context.Context) ([]access.Revocation, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.failure(ctx); err != nil {
		return nil, err
	}
	out := make([]access.Revocation, 0, len(m.revoked))
	for k, until := range m.revoked {
		out = append(out, access.Revocation{SubscribeKey: k[0], TokenID: k[1], Until: until})
	}
	return out, nil
}

// Version implements access.Store.
func (m *Memory) Version(ctx context.Context) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.failure(ctx); err != nil {
		return "", err
	}
	return strconv.FormatUint(m.version, 10), nil
}
