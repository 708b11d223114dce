// Package memlog is the in-process shard log of the embedded single-node
// mode: the same contract as the Redis log, checked by the same suite.
package memlog

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/groupcast/groupcast/channelgroups"
	"github.com/groupcast/groupcast/subscriber"
)

// Config tunes a Log.
type Config struct {
	// Shards is the number of shard logs; zero means channelgroups.DefaultShards.
	Shards int
	// MaxLen is how many entries each shard keeps; zero means 100,000.
	MaxLen int
	// Now stamps positions; nil means time.Now.
	Now func() time.Time
}

// Log is an in-process subscriber.Log.
type Log struct {
	cfg     Config
	mu      sync.Mutex
	shards  [][]subscriber.LogEntry
	last    []channelgroups.Position
	changed chan struct{} // closed and replaced on every append
}

// New returns an empty log.
func New(cfg Config) (*Log, error) {
	if cfg.Shards < 0 || cfg.MaxLen < 0 {
		return nil, errors.New("memlog: Shards and MaxLen must be >= 0")
	}
	if cfg.Shards == 0 {
		cfg.Shards = channelgroups.DefaultShards
	}
	if cfg.MaxLen == 0 {
		cfg.MaxLen = 100_000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Log{cfg: cfg, shards: make([][]subscriber.LogEntry, cfg.Shards), last: make([]channelgroups.Position, cfg.Shards), changed: make(chan struct{})}, nil
}

var errShard = errors.New("memlog: shard out of range")

// Append implements subscriber.Log.
func (l *Log) Append(ctx context.Context, shard int, rec []byte) (channelgroups.Position, error) {
	if shard < 0 || shard >= l.cfg.Shards {
		return channelgroups.Position{}, errShard
	}
	if err := ctx.Err(); err != nil {
		return channelgroups.Position{}, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	p := channelgroups.Position{Ms: uint64(l.cfg.Now().UnixMilli())}
	if last := l.last[shard]; !last.Less(p) {
		p = channelgroups.Position{Ms: last.Ms, Seq: last.Seq + 1}
	}
	l.last[shard] = p
	s := append(l.shards[shard], subscriber.LogEntry{Shard: shard, Pos: p, Data: slices.Clone(rec)})
	if len(s) > l.cfg.MaxLen {
		s = slices.Delete(s, 0, len(s)-l.cfg.MaxLen)
	}
	l.shards[shard] = s
	close(l.changed)
	l.changed = make(chan struct{})
	return p, nil
}

// Read implements subscriber.Log.
func (l *Log) Read(ctx context.Context, cursors []subscriber.Cursor, max int, block time.Duration) ([]subscriber.LogEntry, error) {
	for _, c := range cursors {
		if c.Shard < 0 || c.Shard >= l.cfg.Shards {
			return nil, errShard
		}
	}
	timer := time.NewTimer(block)
	defer timer.Stop()
	for {
		l.mu.Lock()
		var out []subscriber.LogEntry
		for _, c := range cursors {
			s := l.shards[c.Shard]
			i, _ := slices.BinarySearchFunc(s, c.After, func(e subscriber.LogEntry, p channelgroups.Position) int {
				if e.Pos.Less(p) || e.Pos == p {
					return -1
				}
				return 1
			})
			for ; i < len(s) && len(out) < max; i++ {
				out = append(out, s[i])
			}
		}
		changed := l.changed
		l.mu.Unlock()
		if len(out) > 0 {
			return out, nil
		}
		select {
		case <-changed:
		case <-timer.C:
			return nil, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Last implements subscriber.Log.
func (l *Log) Last(ctx context.Context, shard int) (channelgroups.Position, error) {
	if shard < 0 || shard >= l.cfg.Shards {
		return channelgroups.Position{}, errShard
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last[shard], ctx.Err()
}

// Range implements subscriber.Log.
func (l *Log) Range(ctx context.Context, shard int, after channelgroups.Position, max int) ([]subscriber.LogEntry, error) {
	if shard < 0 || shard >= l.cfg.Shards {
		return nil, errShard
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []subscriber.LogEntry
	for _, e := range l.shards[shard] {
		if after.Less(e.Pos) && len(out) < max {
			out = append(out, e)
		}
	}
	return out, ctx.Err()
}
