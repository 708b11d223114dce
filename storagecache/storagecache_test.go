package storagecache_test

import (
	"context"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/groupcast/groupcast/channelgroups"
	"github.com/groupcast/groupcast/channelgroups/bolt"
	"github.com/groupcast/groupcast/storagecache"
)

// counting counts reads of the store under it.
type counting struct {
	channelgroups.Store
	reads atomic.Int64
}

func (c *counting) Read(ctx context.Context, a channelgroups.Account, g channelgroups.Group) (channelgroups.Snapshot, error) {
	c.reads.Add(1)
	return c.Store.Read(ctx, a, g)
}

func setup(t *testing.T) (*storagecache.Cache, *counting) {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "g.db"), bolt.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cs := &counting{Store: st}
	c, err := storagecache.New(cs, storagecache.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c, cs
}

var key = channelgroups.GroupKey{Account: "a", Group: "g"}

func write(t *testing.T, s channelgroups.Store, at channelgroups.Timetoken, chs ...channelgroups.Channel) {
	t.Helper()
	if err := s.Write(t.Context(), channelgroups.Edit{Account: key.Account, Group: key.Group, Op: channelgroups.OpAdd, Channels: chs, At: at}); err != nil {
		t.Fatal(err)
	}
}

func TestGetLoadsOnceAndCaches(t *testing.T) {
	c, st := setup(t)
	write(t, st, 100, "x")
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			g, err := c.Get(t.Context(), key)
			if err != nil || !slices.Equal(g.Snapshot.Channels(), []channelgroups.Channel{"x"}) {
				t.Errorf("Get = %+v, %v", g, err)
			}
		})
	}
	wg.Wait()
	if n := st.reads.Load(); n != 1 {
		t.Fatalf("16 concurrent Gets read the store %d times, want 1", n)
	}
	if _, ok := c.Peek(key); !ok {
		t.Fatal("Peek after Get: not cached")
	}
}

func TestRefreshPicksUpWrites(t *testing.T) {
	c, st := setup(t)
	write(t, st, 100, "x")
	if _, err := c.Get(t.Context(), key); err != nil {
		t.Fatal(err)
	}
	write(t, st, 200, "y")
	done := make(chan error, 1)
	c.Refresh(key, func(err error) { done <- err })
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("refresh did not complete")
	}
	g, _ := c.Peek(key)
	if g.Snapshot.Version != 200 || g.Snapshot.Count() != 2 {
		t.Fatalf("after refresh: %+v", g.Snapshot)
	}
}

func TestOfferKeepsNewer(t *testing.T) {
	c, st := setup(t)
	write(t, st, 300, "x")
	if _, err := c.Get(t.Context(), key); err != nil {
		t.Fatal(err)
	}
	older := &channelgroups.Snapshot{Version: 200}
	if g := c.Offer(key, older); g.Snapshot.Version != 300 {
		t.Fatalf("Offer of an older snapshot replaced the cached one: %+v", g.Snapshot)
	}
	newer := &channelgroups.Snapshot{Version: 400}
	if g := c.Offer(key, newer); g.Snapshot != newer {
		t.Fatalf("Offer of a newer snapshot was refused")
	}
	if g, _ := c.Peek(key); g.Snapshot != newer || g.View() != nil {
		t.Fatalf("Peek after Offer: %+v", g)
	}
}
