// Package redislog is the production shard log on Redis Streams: one stream
// per (region, shard); XADD returns the position, XREAD follows every shard
// in order. Streams are trimmed to about MaxLen entries; every entry carries
// the ID of the entry before it, so a reader whose cursor the trimming passed
// sees that the first entry it got does not follow its cursor and reports a
// gap, at no extra round trip. Entries copied from another region's log
// (AppendReplica) go into the same stream; beside it a hash
// (<stream key>:repl) maps each origin region to the position of the newest
// entry copied from it, checked and moved in the same script as the XADD, so
// a copy is appended once however often it is retried. It is the only
// package that imports go-redis.
package redislog

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/groupcast/groupcast/channelgroups"
	"github.com/groupcast/groupcast/subscriber"
)

// Config selects and tunes the log.
type Config struct {
	// Addr is the Redis address; required.
	Addr string
	// Prefix starts every key; empty means "groupcast".
	Prefix string
	// Region is this region's number; streams are per region. Zero means 1.
	Region int
	// Shards is the number of shard logs; zero means channelgroups.DefaultShards.
	Shards int
	// MaxLen is how many entries a stream keeps, at least: it is trimmed
	// (XADD MAXLEN ~) in whole nodes of up to 100 entries, so it keeps up to
	// about 100 more. Zero means 100,000.
	MaxLen int64
	// Timeout bounds one command (not a blocking read); zero means 1s.
	Timeout time.Duration
}

// Log is a subscriber.Log on Redis Streams.
type Log struct {
	cfg  Config
	rdb  *redis.Client
	keys []string
}

// New returns a log over a new client; it does not connect yet.
func New(cfg Config) (*Log, error) {
	if cfg.Addr == "" {
		return nil, errors.New("redislog: Addr is required")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "groupcast"
	}
	if cfg.Region == 0 {
		cfg.Region = 1
	}
	if cfg.Shards == 0 {
		cfg.Shards = channelgroups.DefaultShards
	}
	if cfg.MaxLen == 0 {
		cfg.MaxLen = 100_000
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = time.Second
	}
	if cfg.Shards < 0 || cfg.MaxLen < 0 || cfg.Region < 0 || cfg.Timeout < 0 {
		return nil, errors.New("redislog: Shards, MaxLen, Region and Timeout must be >= 0")
	}
	l := &Log{cfg: cfg, rdb: redis.NewClient(&redis.Options{
		Addr:         cfg.Addr,
		DialTimeout:  cfg.Timeout,
		ReadTimeout:  cfg.Timeout,
		WriteTimeout: cfg.Timeout,
		// An XADD retried after a lost reply could append twice; the node
		// retries through its outbox instead.
		MaxRetries: -1,
	})}
	for s := range cfg.Shards {
		l.keys = append(l.keys, fmt.Sprintf("%s:r%d:s%d", cfg.Prefix, cfg.Region, s))
	}
	return l, nil
}

// Close closes the client.
func (l *Log) Close() error { return l.rdb.Close() }

// Ping checks that Redis answers.
func (l *Log) Ping(ctx context.Context) error { return l.rdb.Ping(ctx).Err() }

func (l *Log) key(shard int) (string, error) {
	if shard < 0 || shard >= len(l.keys) {
		return "", fmt.Errorf("redislog: shard %d out of range", shard)
	}
	return l.keys[shard], nil
}

// appendScript appends a record (field r) with the ID of the stream's
// entry before it (field p; 0-0 for the first), trimming the stream to
// about ARGV[1] entries, in one atomic step.
var appendScript = redis.NewScript(`
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local prev = '0-0'
if #last > 0 then prev = last[1][1] end
return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'r', ARGV[2], 'p', prev)
`)

// Append implements subscriber.Log with XADD MAXLEN ~ (in a script that
// links the entry to the one before it).
func (l *Log) Append(ctx context.Context, shard int, rec []byte) (channelgroups.Position, error) {
	key, err := l.key(shard)
	if err != nil {
		return channelgroups.Position{}, err
	}
	id, err := appendScript.Run(ctx, l.rdb, []string{key}, l.cfg.MaxLen, rec).Text()
	if err != nil {
		return channelgroups.Position{}, fmt.Errorf("redislog: append: %w", err)
	}
	return channelgroups.ParsePosition(id)
}

// entries converts a shard's messages read after `after`: a gap entry
// first if the first message's predecessor is after `after` (what came
// between was trimmed), then the records. An entry appended without a
// predecessor (by an older version) is taken to follow on.
func entries(out []subscriber.LogEntry, shard int, after channelgroups.Position, msgs []redis.XMessage) ([]subscriber.LogEntry, error) {
	if len(msgs) > 0 {
		if prev, ok := msgs[0].Values["p"].(string); ok {
			pp, err := channelgroups.ParsePosition(prev)
			if err != nil {
				return nil, fmt.Errorf("redislog: entry %s: %w", msgs[0].ID, err)
			}
			if after.Less(pp) {
				out = append(out, subscriber.LogEntry{Shard: shard, Pos: pp, Gap: true})
			}
		}
	}
	for _, m := range msgs {
		p, err := channelgroups.ParsePosition(m.ID)
		if err != nil {
			return nil, err
		}
		v, _ := m.Values["r"].(string)
		out = append(out, subscriber.LogEntry{Shard: shard, Pos: p, Data: []byte(v)})
	}
	return out, nil
}

// Read implements subscriber.Log with one XREAD over the cursors' streams.
func (l *Log) Read(ctx context.Context, cursors []subscriber.Cursor, max int, block time.Duration) ([]subscriber.LogEntry, error) {
	if len(cursors) == 0 {
		return nil, errors.New("redislog: read with no cursors")
	}
	streams := make([]string, 2*len(cursors))
	after := make(map[int]channelgroups.Position, len(cursors)) // by shard: where a gap would start
	for i, c := range cursors {
		key, err := l.key(c.Shard)
		if err != nil {
			return nil, err
		}
		streams[i], streams[len(cursors)+i] = key, c.After.String()
		after[c.Shard] = c.After
	}
	if block < time.Millisecond {
		block = time.Millisecond // 0 would block forever
	}
	res, err := l.rdb.XRead(ctx, &redis.XReadArgs{Streams: streams, Count: int64(max), Block: block}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("redislog: read: %w", err)
	}
	var out []subscriber.LogEntry
	for _, st := range res {
		shard, err := l.shardOf(st.Stream)
		if err != nil {
			return nil, err
		}
		if out, err = entries(out, shard, after[shard], st.Messages); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (l *Log) shardOf(key string) (int, error) {
	for i := len(key) - 1; i >= 0; i-- {
		if key[i] == 's' {
			n, err := strconv.Atoi(key[i+1:])
			if err == nil && n < len(l.keys) && l.keys[n] == key {
				return n, nil
			}
			break
		}
	}
	return 0, fmt.Errorf("redislog: unexpected stream %q", key)
}

// Last implements subscriber.Log.
func (l *Log) Last(ctx context.Context, shard int) (channelgroups.Position, error) {
	key, err := l.key(shard)
	if err != nil {
		return channelgroups.Position{}, err
	}
	msgs, err := l.rdb.XRevRangeN(ctx, key, "+", "-", 1).Result()
	if err != nil {
		return channelgroups.Position{}, fmt.Errorf("redislog: last: %w", err)
	}
	if len(msgs) == 0 {
		return channelgroups.Position{}, nil
	}
	return channelgroups.ParsePosition(msgs[0].ID)
}

// Range implements subscriber.Log with XRANGE.
func (l *Log) Range(ctx context.Context, shard int, after channelgroups.Position, max int) ([]subscriber.LogEntry, error) {
	key, err := l.key(shard)
	if err != nil {
		return nil, err
	}
	msgs, err := l.rdb.XRangeN(ctx, key, "("+after.String(), "+", int64(max)).Result()
	if err != nil {
		return nil, fmt.Errorf("redislog: range: %w", err)
	}
	return entries(make([]subscriber.LogEntry, 0, len(msgs)+1), shard, after, msgs)
}

// replicaScript is appendScript for a copy of another region's entry:
// KEYS[2] is the shard's replication marks, a hash from origin region
// (ARGV[3]) to the origin position ("ms-seq") of the newest entry copied
// from it. If the origin (ARGV[4]) is not after the region's mark it appends
// nothing and returns {0}; else it appends the record as appendScript does
// and moves the mark, in the same atomic step, and returns {1, id}.
//
// Positions are compared exactly, as decimal strings (the longer number is
// the greater, else the lexically greater), never through Lua's doubles,
// which are exact only up to 2^53.
var replicaScript = redis.NewScript(`
local function parse(p)
  local ms, seq = string.match(p, '^(%d+)-(%d+)$')
  if not ms then return nil end
  ms = string.gsub(ms, '^0+(%d)', '%1')
  seq = string.gsub(seq, '^0+(%d)', '%1')
  return ms, seq
end
local function less(a, b)
  if #a ~= #b then return #a < #b end
  return a < b
end
local oms, oseq = parse(ARGV[4])
if not oms then return redis.error_reply('bad origin position ' .. ARGV[4]) end
local mark = redis.call('HGET', KEYS[2], ARGV[3])
if mark then
  local mms, mseq = parse(mark)
  if not mms then return redis.error_reply('bad replication mark ' .. mark) end
  if not (less(mms, oms) or (mms == oms and less(mseq, oseq))) then return {0} end
end
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local prev = '0-0'
if #last > 0 then prev = last[1][1] end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'r', ARGV[2], 'p', prev)
redis.call('HSET', KEYS[2], ARGV[3], oms .. '-' .. oseq)
return {1, id}
`)

// replSuffix follows a shard's stream key in the key of its replication
// marks.
const replSuffix = ":repl"

// AppendReplica implements subscriber.Log in one script that checks the
// region's mark, appends (XADD MAXLEN ~, linked to the entry before it as
// Append does) and moves the mark. Like every append it is never retried by
// the client; a caller that lost the reply calls again and is told
// appended false if the first call went through.
func (l *Log) AppendReplica(ctx context.Context, shard, region int, origin channelgroups.Position, rec []byte) (channelgroups.Position, bool, error) {
	key, err := l.key(shard)
	if err != nil {
		return channelgroups.Position{}, false, err
	}
	repl := key + replSuffix
	if region < 1 || origin.IsZero() {
		return channelgroups.Position{}, false, fmt.Errorf("redislog: append replica: bad origin region %d position %v", region, origin)
	}
	res, err := replicaScript.Run(ctx, l.rdb, []string{key, repl}, l.cfg.MaxLen, rec, region, origin.String()).Slice()
	if err != nil {
		return channelgroups.Position{}, false, fmt.Errorf("redislog: append replica: %w", err)
	}
	var id string
	switch len(res) {
	case 1:
		if n, _ := res[0].(int64); n == 0 {
			return channelgroups.Position{}, false, nil
		}
	case 2:
		id, _ = res[1].(string)
	}
	if id == "" {
		return channelgroups.Position{}, false, fmt.Errorf("redislog: append replica: unexpected answer %v", res)
	}
	pos, err := channelgroups.ParsePosition(id)
	if err != nil {
		return channelgroups.Position{}, false, fmt.Errorf("redislog: append replica: %w", err)
	}
	return pos, true, nil
}

// Replicated implements subscriber.Log with HGETALL of the shard's marks.
func (l *Log) Replicated(ctx context.Context, shard int) (map[int]channelgroups.Position, error) {
	key, err := l.key(shard)
	if err != nil {
		return nil, err
	}
	key += replSuffix
	h, err := l.rdb.HGetAll(ctx, key).Result()
	if err != nil {
		return nil, fmt.Errorf("redislog: replicated: %w", err)
	}
	out := make(map[int]channelgroups.Position, len(h))
	for f, v := range h {
		region, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("redislog: replicated: bad region %q in %s", f, key)
		}
		if out[region], err = channelgroups.ParsePosition(v); err != nil {
			return nil, fmt.Errorf("redislog: replicated: region %d: %w", region, err)
		}
	}
	return out, nil
}
