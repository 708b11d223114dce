package redislog_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/groupcast/groupcast/internal/testenv"
	"github.com/groupcast/groupcast/subscriber"
	"github.com/groupcast/groupcast/subscriber/logtest"
	"github.com/groupcast/groupcast/subscriber/redislog"
)

func TestConformance(t *testing.T) {
	addr := testenv.RedisAddr(t)
	logtest.Run(t, func(t *testing.T, shards int) subscriber.Log {
		l, err := redislog.New(redislog.Config{Addr: addr, Shards: shards, Prefix: fmt.Sprintf("gctest:%d", time.Now().UnixNano())})
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
