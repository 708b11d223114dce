package archive

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"

	"github.com/groupcast/groupcast/channelgroups"
)

// Memory is a Store in memory, for tests of code that uses one (the
// archiver, the HTTP handlers). It passes archivetest.Run. Reads scan and
// sort a channel's messages, so it is not for large channels.
type Memory struct {
	now func() time.Time

	mu          sync.Mutex
	msgs        map[chanKey]map[channelgroups.Timetoken]Message
	deleted     map[chanKey][][2]channelgroups.Timetoken // closed ranges removed by Delete
	actions     map[chanKey]map[[2]channelgroups.Timetoken]Action
	checkpoints map[int]channelgroups.Position
}

type chanKey struct {
	a channelgroups.Account
	c channelgroups.Channel
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty store on the clock now (nil means time.Now),
// which decides expiry and how far a Delete reaches.
func NewMemory(now func() time.Time) *Memory {
	if now == nil {
		now = time.Now
	}
	return &Memory{
		now:         now,
		msgs:        map[chanKey]map[channelgroups.Timetoken]Message{},
		deleted:     map[chanKey][][2]channelgroups.Timetoken{},
		actions:     map[chanKey]map[[2]channelgroups.Timetoken]Action{},
		checkpoints: map[int]channelgroups.Position{},
	}
}

// Append implements Store.
func (m *Memory) Append(ctx context.Context, msgs []Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, msg := range msgs {
		if err := msg.Validate(); err != nil {
			return err
		}
	}
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, msg := range msgs {
		k := chanKey{msg.Account, msg.Channel}
		if Expired(msg.Expires, now) || m.isDeleted(k, msg.Timetoken) {
			continue
		}
		ch := m.msgs[k]
		if ch == nil {
			ch = map[channelgroups.Timetoken]Message{}
			m.msgs[k] = ch
		}
		msg.Payload = slices.Clone(msg.Payload)
		msg.Meta = slices.Clone(msg.Meta)
		ch[msg.Timetoken] = msg
	}
	return nil
}

func (m *Memory) isDeleted(k chanKey, tt channelgroups.Timetoken) bool {
	for _, r := range m.deleted[k] {
		if r[0] <= tt && tt <= r[1] {
			return true
		}
	}
	return false
}

// live returns the channel's unexpired messages in [lo, hi], oldest first;
// m.mu is held.
func (m *Memory) live(k chanKey, lo, hi channelgroups.Timetoken) []Message {
	now := m.now()
	var out []Message
	for tt, msg := range m.msgs[k] {
		if lo <= tt && tt <= hi && !Expired(msg.Expires, now) {
			out = append(out, msg)
		}
	}
	slices.SortFunc(out, func(a, b Message) int { return cmp.Compare(a.Timetoken, b.Timetoken) })
	return out
}

// Messages implements Store.
func (m *Memory) Messages(ctx context.Context, q Query) ([]Message, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	if err := q.Validate(); err != nil {
		return nil, false, err
	}
	lo, hi, ok := Bounds(q.Start, q.End)
	if !ok {
		return nil, false, nil
	}
	m.mu.Lock()
	all := m.live(chanKey{q.Account, q.Channel}, lo, hi)
	m.mu.Unlock()
	page, more := pick(all, q.Max, q.Reverse)
	return slices.Clone(page), more, nil
}

// pick takes max items from the newest end of sorted (the oldest with
// reverse), and reports whether any were left.
func pick[T any](sorted []T, max int, reverse bool) ([]T, bool) {
	if len(sorted) <= max {
		return sorted, false
	}
	if reverse {
		return sorted[:max], true
	}
	return sorted[len(sorted)-max:], true
}

// Count implements Store.
func (m *Memory) Count(ctx context.Context, a channelgroups.Account, c channelgroups.Channel, after channelgroups.Timetoken) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if err := CheckChannel(a, c); err != nil {
		return 0, err
	}
	if err := CheckRange(after, 0); err != nil {
		return 0, err
	}
	if after == MaxTimetoken {
		return 0, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return int64(len(m.live(chanKey{a, c}, after+1, MaxTimetoken))), nil
}

// Delete implements Store.
func (m *Memory) Delete(ctx context.Context, a channelgroups.Account, c channelgroups.Channel, start, end channelgroups.Timetoken) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := CheckChannel(a, c); err != nil {
		return err
	}
	if err := CheckRange(start, end); err != nil {
		return err
	}
	lo, hi, ok := DeleteBounds(start, end, m.now())
	if !ok {
		return nil
	}
	k := chanKey{a, c}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.deleted[k] = append(m.deleted[k], [2]channelgroups.Timetoken{lo, hi})
	for tt := range m.msgs[k] {
		if lo <= tt && tt <= hi {
			delete(m.msgs[k], tt)
		}
	}
	for id := range m.actions[k] {
		if lo <= id[0] && id[0] <= hi {
			delete(m.actions[k], id)
		}
	}
	return nil
}

// AddAction implements Store.
func (m *Memory) AddAction(ctx context.Context, act Action) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := act.Validate(); err != nil {
		return err
	}
	if Expired(act.Expires, m.now()) {
		return nil
	}
	k := chanKey{act.Account, act.Channel}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.actions[k] == nil {
		m.actions[k] = map[[2]channelgroups.Timetoken]Action{}
	}
	m.actions[k][[2]channelgroups.Timetoken{act.Message, act.Timetoken}] = act
	return nil
}

// RemoveAction implements Store.
func (m *Memory) RemoveAction(ctx context.Context, a channelgroups.Account, c channelgroups.Channel, message, action channelgroups.Timetoken) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := CheckChannel(a, c); err != nil {
		return err
	}
	if err := CheckRange(message, action); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.actions[chanKey{a, c}], [2]channelgroups.Timetoken{message, action})
	return nil
}

// liveActions returns the channel's unexpired actions for which keep is
// true; m.mu is held.
func (m *Memory) liveActions(k chanKey, keep func(Action) bool) []Action {
	now := m.now()
	var out []Action
	for _, act := range m.actions[k] {
		if !Expired(act.Expires, now) && keep(act) {
			out = append(out, act)
		}
	}
	return out
}

// Actions implements Store.
func (m *Memory) Actions(ctx context.Context, a channelgroups.Account, c channelgroups.Channel, start, end channelgroups.Timetoken, limit int) ([]Action, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	if err := CheckChannel(a, c); err != nil {
		return nil, false, err
	}
	if err := CheckRange(start, end); err != nil {
		return nil, false, err
	}
	if err := CheckLimit(limit); err != nil {
		return nil, false, err
	}
	lo, hi, ok := Bounds(start, end)
	if !ok {
		return nil, false, nil
	}
	m.mu.Lock()
	all := m.liveActions(chanKey{a, c}, func(act Action) bool { return lo <= act.Timetoken && act.Timetoken <= hi })
	m.mu.Unlock()
	slices.SortFunc(all, func(x, y Action) int {
		return cmp.Or(cmp.Compare(x.Timetoken, y.Timetoken), cmp.Compare(x.Message, y.Message))
	})
	page, more := pick(all, limit, false)
	return page, more, nil
}

// MessageActions implements Store.
func (m *Memory) MessageActions(ctx context.Context, a channelgroups.Account, c channelgroups.Channel, first, last channelgroups.Timetoken) ([]Action, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := CheckChannel(a, c); err != nil {
		return nil, err
	}
	if err := CheckRange(first, last); err != nil {
		return nil, err
	}
	m.mu.Lock()
	out := m.liveActions(chanKey{a, c}, func(act Action) bool { return first <= act.Message && act.Message <= last })
	m.mu.Unlock()
	slices.SortFunc(out, func(x, y Action) int {
		return cmp.Or(cmp.Compare(x.Message, y.Message), cmp.Compare(x.Timetoken, y.Timetoken))
	})
	return out, nil
}

// Checkpoint implements Store.
func (m *Memory) Checkpoint(ctx context.Context, shard int) (channelgroups.Position, error) {
	if err := ctx.Err(); err != nil {
		return channelgroups.Position{}, err
	}
	if err := CheckShard(shard); err != nil {
		return channelgroups.Position{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.checkpoints[shard], nil
}

// SetCheckpoint implements Store.
func (m *Memory) SetCheckpoint(ctx context.Context, shard int, pos channelgroups.Position) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := CheckShard(shard); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.checkpoints[shard] = pos
	return nil
}
