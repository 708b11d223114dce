// Package storagecache is the bounded cache of group snapshots over the
// channel-group store, built on otter v2: a loader with single-flight, expiry
// after access, periodic refresh of groups still being read (drift repair),
// and a weight bound counted in stored entries.
//
// Each cached Group carries its storage snapshot and, once the node has
// merged the volatile overlay into it, the materialized View served to
// readers. Built groups are published in a lock-free index (xsync) in front
// of otter, so a read hit is one hash lookup and no allocation; otter keeps
// the bound, the loader and the expiry, and removing a group from otter
// removes it from the index in the same atomic step. Reads through the index
// mark the group touched; Touched lets the owner refresh (and so keep) the
// groups read since the last round, which is expiry after access at the
// granularity of that round.
package storagecache

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/maypok86/otter/v2"
	"github.com/maypok86/otter/v2/stats"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/puzpuzpuz/xsync/v4"

	"github.com/groupcast/groupcast/channelgroups"
)

// Group is one cached group: an immutable snapshot and the view built on it.
type Group struct {
	Snapshot *channelgroups.Snapshot
	view     atomic.Pointer[channelgroups.View]
	touched  atomic.Bool
}

// View returns the materialized view, or nil if none was built yet.
func (g *Group) View() *channelgroups.View { return g.view.Load() }

// SetView installs the materialized view.
func (g *Group) SetView(v *channelgroups.View) { g.view.Store(v) }

// Config tunes a Cache.
type Config struct {
	// MaxWeight bounds the cache in stored entries (channels, removes
	// included) plus one per group; zero means 2,000,000.
	MaxWeight uint64
	// ExpireAfterAccess drops groups nobody read for this long; zero means 10m.
	ExpireAfterAccess time.Duration
	// Registerer receives hit/miss/load metrics; nil means none.
	Registerer prometheus.Registerer
}

// Cache caches group snapshots. It is safe for concurrent use.
type Cache struct {
	store  channelgroups.Store
	c      *otter.Cache[channelgroups.GroupKey, *Group]
	index  *xsync.Map[channelgroups.GroupKey, *Group]
	stats  *stats.Counter
	loader otter.Loader[channelgroups.GroupKey, *Group]
}

type loader struct{ store channelgroups.Store }

func (l loader) Load(ctx context.Context, k channelgroups.GroupKey) (*Group, error) {
	snap, err := l.store.Read(ctx, k.Account, k.Group)
	if err != nil {
		return nil, err
	}
	return &Group{Snapshot: &snap}, nil
}

// Reload keeps the old group when the new read is older, so a slow refresh
// can never move a group back in time.
func (l loader) Reload(ctx context.Context, k channelgroups.GroupKey, old *Group) (*Group, error) {
	g, err := l.Load(ctx, k)
	if err != nil {
		return nil, err
	}
	if old != nil && g.Snapshot.Version < old.Snapshot.Version {
		return old, nil
	}
	return g, nil
}

// New returns an empty cache over store.
func New(store channelgroups.Store, cfg Config) (*Cache, error) {
	if store == nil {
		return nil, errors.New("storagecache: store is required")
	}
	if cfg.MaxWeight == 0 {
		cfg.MaxWeight = 2_000_000
	}
	if cfg.ExpireAfterAccess == 0 {
		cfg.ExpireAfterAccess = 10 * time.Minute
	}
	if cfg.ExpireAfterAccess < 0 {
		return nil, errors.New("storagecache: durations must be >= 0")
	}
	counter := stats.NewCounter()
	index := xsync.NewMap[channelgroups.GroupKey, *Group]()
	c, err := otter.New(&otter.Options[channelgroups.GroupKey, *Group]{
		MaximumWeight:    cfg.MaxWeight,
		Weigher:          func(_ channelgroups.GroupKey, g *Group) uint32 { return uint32(1 + len(g.Snapshot.Entries)) },
		ExpiryCalculator: otter.ExpiryAccessing[channelgroups.GroupKey, *Group](cfg.ExpireAfterAccess),
		// Refreshes are requested by the node (on changes and for touched
		// groups); otter only accepts Refresh calls when it has a refresh
		// calculator, so give it one that never fires by itself.
		RefreshCalculator: otter.RefreshWriting[channelgroups.GroupKey, *Group](100 * 365 * 24 * time.Hour),
		StatsRecorder:     counter,
		OnAtomicDeletion: func(e otter.DeletionEvent[channelgroups.GroupKey, *Group]) {
			if e.Cause != otter.CauseReplacement {
				index.Delete(e.Key)
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("storagecache: %w", err)
	}
	cache := &Cache{store: store, c: c, index: index, stats: counter, loader: loader{store: store}}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(collector{cache}); err != nil {
			return nil, fmt.Errorf("storagecache: %w", err)
		}
	}
	return cache, nil
}

// Peek returns the cached group without loading it.
func (c *Cache) Peek(k channelgroups.GroupKey) (*Group, bool) { return c.c.GetIfPresent(k) }

// Published returns the group last published for k, marking it touched:
// the read hit path, one lock-free lookup.
func (c *Cache) Published(k channelgroups.GroupKey) (*Group, bool) {
	g, ok := c.index.Load(k)
	if ok && !g.touched.Load() {
		g.touched.Store(true)
	}
	return g, ok
}

// Publish makes g (with its view built) what Published returns for k. The
// caller serialises Publish and Unpublish per key with its view builds.
func (c *Cache) Publish(k channelgroups.GroupKey, g *Group) { c.index.Store(k, g) }

// Unpublish withdraws k from the index.
func (c *Cache) Unpublish(k channelgroups.GroupKey) { c.index.Delete(k) }

// Touched calls fn with every published group read since the previous call.
func (c *Cache) Touched(fn func(channelgroups.GroupKey)) {
	c.index.Range(func(k channelgroups.GroupKey, g *Group) bool {
		if g.touched.Swap(false) {
			fn(k)
		}
		return true
	})
}

// Get returns the cached group, loading it from storage on a miss; loads of
// the same key are shared.
func (c *Cache) Get(ctx context.Context, k channelgroups.GroupKey) (*Group, error) {
	return c.c.Get(ctx, k, c.loader)
}

// Refresh re-reads a cached group in the background; an uncached group is
// left alone (it will be loaded when read). done, if not nil, is called once
// the refresh completed (with its error, nil on success).
func (c *Cache) Refresh(k channelgroups.GroupKey, done func(error)) {
	if _, ok := c.c.GetIfPresent(k); !ok {
		if done != nil {
			done(nil)
		}
		return
	}
	ch := c.c.Refresh(context.Background(), k, c.loader)
	if done != nil {
		go func() { done((<-ch).Err) }()
	}
}

// Offer installs a snapshot read elsewhere (a slow-path read) unless the
// cache already holds one at least as new. It returns the group now cached.
func (c *Cache) Offer(k channelgroups.GroupKey, snap *channelgroups.Snapshot) *Group {
	g, _ := c.c.Compute(k, func(old *Group, found bool) (*Group, otter.ComputeOp) {
		if found && old.Snapshot.Version >= snap.Version {
			return old, otter.CancelOp
		}
		return &Group{Snapshot: snap}, otter.WriteOp
	})
	return g
}

// Invalidate drops a group; the next read loads it again.
func (c *Cache) Invalidate(k channelgroups.GroupKey) { c.c.Invalidate(k) }

// InvalidateIf drops every cached and published group whose key matches
// and returns how many it dropped: a node that gains an account shard drops
// what it cached while it did not follow that shard's log.
func (c *Cache) InvalidateIf(match func(channelgroups.GroupKey) bool) int {
	n := 0
	for k := range c.c.Keys() {
		if match(k) {
			c.c.Invalidate(k)
			n++
		}
	}
	c.index.Range(func(k channelgroups.GroupKey, _ *Group) bool {
		if match(k) {
			c.index.Delete(k)
		}
		return true
	})
	return n
}

// Close stops the cache's background work.
func (c *Cache) Close() { c.c.StopAllGoroutines() }

type collector struct{ c *Cache }

var (
	descHits   = prometheus.NewDesc("groupcast_storagecache_hits_total", "Group reads served from the storage cache.", nil, nil)
	descMisses = prometheus.NewDesc("groupcast_storagecache_misses_total", "Group reads that loaded from storage.", nil, nil)
	descRatio  = prometheus.NewDesc("groupcast_storagecache_hit_ratio", "Hits / (hits + misses) since start.", nil, nil)
	descWeight = prometheus.NewDesc("groupcast_storagecache_weight", "Entries held by the storage cache.", nil, nil)
	descEvict  = prometheus.NewDesc("groupcast_storagecache_evictions_total", "Groups evicted by the size bound or expiry.", nil, nil)
)

func (collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descHits, descMisses, descRatio, descWeight, descEvict} {
		ch <- d
	}
}

func (x collector) Collect(ch chan<- prometheus.Metric) {
	s := x.c.stats.Snapshot()
	ch <- prometheus.MustNewConstMetric(descHits, prometheus.CounterValue, float64(s.Hits))
	ch <- prometheus.MustNewConstMetric(descMisses, prometheus.CounterValue, float64(s.Misses))
	ch <- prometheus.MustNewConstMetric(descRatio, prometheus.GaugeValue, s.HitRatio())
	ch <- prometheus.MustNewConstMetric(descWeight, prometheus.GaugeValue, float64(x.c.c.WeightedSize()))
	ch <- prometheus.MustNewConstMetric(descEvict, prometheus.CounterValue, float64(s.Evictions))
}
