package redislog_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/groupcast/groupcast/internal/testenv"
	"github.com/groupcast/groupcast/subscriber"
	"github.com/groupcast/groupcast/subscriber/logtest"
	"github.com/groupcast/groupcast/subscriber/redislog"
)

// dropKeys deletes the keys under prefix when the test ends.
func dropKeys(tb testing.TB, addr, prefix string) {
	tb.Cleanup(func() {
		rdb := redis.NewClient(&redis.Options{Addr: addr})
		defer rdb.Close()
		ctx := context.Background()
		keys, err := rdb.Keys(ctx, prefix+":*").Result()
		if err == nil && len(keys) > 0 {
			err = rdb.Del(ctx, keys...).Err()
		}
		if err != nil {
			tb.Errorf("deleting the keys under %s: %v", prefix, err)
		}
	})
}

func TestConformance(t *testing.T) {
	addr := testenv.RedisAddr(t)
	logtest.Run(t, func(t *testing.T, shards, maxLen int) subscriber.Log {
		prefix := fmt.Sprintf("gctest:%d", time.Now().UnixNano())
		dropKeys(t, addr, prefix)
		l, err := redislog.New(redislog.Config{Addr: addr, Shards: shards, MaxLen: int64(maxLen), Prefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := l.Close(); err != nil {
				t.Error(err)
			}
		})
		if err := l.Ping(t.Context()); err != nil {
			t.Fatalf("redis at %s: %v", addr, err)
		}
		return l
	})
}

func TestUnreachable(t *testing.T) {
	l, err := redislog.New(redislog.Config{Addr: "127.0.0.1:1", Shards: 1, Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := l.Append(t.Context(), 0, []byte("x")); err == nil {
		t.Fatal("Append to an unreachable Redis succeeded")
	}
}

// BenchmarkAppend appends 1 KiB records to one shard of a log trimming
// to 1,000 entries (a script that links each entry to the one before it).
func BenchmarkAppend(b *testing.B) {
	prefix := fmt.Sprintf("gcbench:%d", time.Now().UnixNano())
	dropKeys(b, testenv.RedisAddr(b), prefix)
	l, err := redislog.New(redislog.Config{Addr: testenv.RedisAddr(b), Shards: 1, MaxLen: 1000, Prefix: prefix})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	rec := make([]byte, 1024)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := l.Append(b.Context(), 0, rec); err != nil {
			b.Fatal(err)
		}
	}
}
