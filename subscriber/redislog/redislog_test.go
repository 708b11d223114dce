package redislog_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/groupcast/groupcast/channelgroups"
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

// TestReplicatedSurvivesRestart: the replication marks are in Redis, so a
// replicator that restarts (a new client on the same Redis) resumes from
// them and copies nothing twice.
func TestReplicatedSurvivesRestart(t *testing.T) {
	addr := testenv.RedisAddr(t)
	prefix := fmt.Sprintf("gctest:%d", time.Now().UnixNano())
	dropKeys(t, addr, prefix)
	open := func() *redislog.Log {
		l, err := redislog.New(redislog.Config{Addr: addr, Shards: 2, Prefix: prefix, Region: 3})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	first := open()
	origin := channelgroups.Position{Ms: 1 << 60, Seq: 9}
	pos, ok, err := first.AppendReplica(t.Context(), 1, 2, origin, []byte("copy"))
	if err != nil || !ok {
		t.Fatalf("AppendReplica = %v, %v, %v; want appended", pos, ok, err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}

	again := open()
	defer again.Close()
	marks, err := again.Replicated(t.Context(), 1)
	if err != nil || len(marks) != 1 || marks[2] != origin {
		t.Fatalf("Replicated after a restart = %v, %v; want region 2 at %v", marks, err, origin)
	}
	if p, ok, err := again.AppendReplica(t.Context(), 1, 2, origin, []byte("copy")); err != nil || ok {
		t.Fatalf("AppendReplica of the same origin after a restart = %v, %v, %v; want not appended", p, ok, err)
	}
	es, err := again.Range(t.Context(), 1, channelgroups.Position{}, 10)
	if err != nil || len(es) != 1 || es[0].Pos != pos || string(es[0].Data) != "copy" {
		t.Fatalf("shard 1 after a restart: %+v, %v; want the one copy at %v", es, err, pos)
	}
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

// BenchmarkAppendReplica copies 1 KiB records into one shard of a log
// trimming to 1,000 entries: BenchmarkAppend's script plus the check and
// move of the region's mark.
func BenchmarkAppendReplica(b *testing.B) {
	prefix := fmt.Sprintf("gcbench:%d", time.Now().UnixNano())
	dropKeys(b, testenv.RedisAddr(b), prefix)
	l, err := redislog.New(redislog.Config{Addr: testenv.RedisAddr(b), Shards: 1, MaxLen: 1000, Prefix: prefix})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	rec := make([]byte, 1024)
	b.ReportAllocs()
	var seq uint64
	for b.Loop() {
		seq++
		if _, ok, err := l.AppendReplica(b.Context(), 0, 2, channelgroups.Position{Ms: 1, Seq: seq}, rec); err != nil || !ok {
			b.Fatal(ok, err)
		}
	}
}
