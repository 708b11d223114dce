// Package nodetest wires single groupcast nodes for tests the way groupcastd
// does without flags: a bbolt store, the in-process log, the storage cache
// and the overlay, and the HTTP API on a loopback port.
package nodetest

import (
	"context"
	"net"
	"path/filepath"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/groupcast/groupcast/channelgroups"
	"github.com/groupcast/groupcast/channelgroups/bolt"
	"github.com/groupcast/groupcast/storagecache"
	"github.com/groupcast/groupcast/subscriber"
	"github.com/groupcast/groupcast/subscriber/httpapi"
	"github.com/groupcast/groupcast/subscriber/memlog"
	"github.com/groupcast/groupcast/volatile"
)

// Secret signs the tokens of nodes made here.
const Secret = "test-secret-0123456789"

// Node starts a node over store with its own in-process log, running until
// the test ends.
func Node(t testing.TB, store subscriber.Store, cfg subscriber.Config) (*subscriber.Node, *memlog.Log) {
	t.Helper()
	return NodeWith(t, store, cfg, nil)
}

// NodeWith is Node with a hook that sees the node before it starts.
func NodeWith(t testing.TB, store subscriber.Store, cfg subscriber.Config, before func(*subscriber.Node)) (*subscriber.Node, *memlog.Log) {
	t.Helper()
	lg, err := memlog.New(memlog.Config{Shards: cfg.Shards})
	if err != nil {
		t.Fatal(err)
	}
	return Run(t, lg, store, channelgroups.NewClock(nil, 0), cfg, before), lg
}

// Run wires a node over log and store with its own storage cache and
// overlay, lets before (if not nil) see it, starts it and runs it until the
// test ends.
func Run(t testing.TB, log subscriber.Log, store subscriber.Store, clock *channelgroups.Clock, cfg subscriber.Config, before func(*subscriber.Node)) *subscriber.Node {
	t.Helper()
	return RunOverlay(t, log, store, clock, cfg, volatile.Config{}, before)
}

// RunOverlay is Run with the overlay's config (its OnEvict is the node's
// storage cache's).
func RunOverlay(t testing.TB, log subscriber.Log, store subscriber.Store, clock *channelgroups.Clock, cfg subscriber.Config, ovCfg volatile.Config, before func(*subscriber.Node)) *subscriber.Node {
	t.Helper()
	cache, err := storagecache.New(store, storagecache.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cache.Close)
	ovCfg.OnEvict = cache.Invalidate
	ov, err := volatile.New(ovCfg)
	if err != nil {
		t.Fatal(err)
	}
	n, err := subscriber.NewNode(log, store, cache, ov, clock, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if before != nil {
		before(n)
	}
	if err := n.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- n.Run(ctx) }()
	t.Cleanup(func() { n.ReleasePolls(); cancel(); <-done })
	return n
}

// Embedded returns a running embedded node's store and the API config
// serving it; reg, if not nil, receives the metrics.
func Embedded(t testing.TB, reg *prometheus.Registry, cfg subscriber.Config) (*bolt.Store, httpapi.Config) {
	t.Helper()
	return embedded(t, reg, cfg, false)
}

// EmbeddedArchived is Embedded with Message Persistence: the node's
// archiver stores messages in the same bbolt file (as groupcastd's
// embedded default does).
func EmbeddedArchived(t testing.TB, reg *prometheus.Registry, cfg subscriber.Config) (*bolt.Store, httpapi.Config) {
	t.Helper()
	return embedded(t, reg, cfg, true)
}

func embedded(t testing.TB, reg *prometheus.Registry, cfg subscriber.Config, archived bool) (*bolt.Store, httpapi.Config) {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "g.db"), bolt.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if archived {
		cfg.Archive = st
	}
	node, _ := Node(t, st, cfg)
	clock := channelgroups.NewClock(nil, 0)
	svc, err := channelgroups.NewService(st, clock, channelgroups.ServiceConfig{Announcer: node, Shards: cfg.Shards})
	if err != nil {
		t.Fatal(err)
	}
	tokens, err := channelgroups.NewTokenKey([]byte(Secret), 0)
	if err != nil {
		t.Fatal(err)
	}
	api := httpapi.Config{Groups: svc, Views: node, Tokens: tokens, Replays: st, Pubsub: node}
	if reg != nil {
		api.Registerer = reg
	}
	return st, api
}

// Serve serves cfg on a loopback port until the test ends and returns its
// base URL.
func Serve(t testing.TB, cfg httpapi.Config) string {
	t.Helper()
	base, _ := ServeWith(t, cfg, nil)
	return base
}

// ServeWith is Serve with the server changed by mod (if not nil) before it
// serves; stop drains the API and shuts the server down, once, whether the
// test calls it or it ends.
func ServeWith(t testing.TB, cfg httpapi.Config, mod func(*httpapi.Server)) (base string, stop func()) {
	t.Helper()
	api, err := httpapi.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := httpapi.NewServer(api)
	if mod != nil {
		mod(srv)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			api.Drain(0) // parked polls answer, or Shutdown would wait for them
			if err := srv.Shutdown(); err != nil {
				t.Error(err)
			}
			<-done
		})
	}
	t.Cleanup(stop)
	return "http://" + ln.Addr().String(), stop
}
