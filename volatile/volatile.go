// Package volatile is the overlay of recent membership changes: every change
// a node applies from its shard log is kept here, timestamped, until a
// storage snapshot confirms it. A group's view is its storage snapshot with
// these entries merged in (channelgroups.Merge), so a change is visible the
// moment its log entry is applied, long before storage is re-read.
//
// An entry is dropped as soon as a snapshot confirms it. One whose TTL
// passes unconfirmed is reported by Expired so the caller re-reads storage,
// and counted: since the overlay only holds changes already durable in
// storage, that means replication lag, not a lost write. The overlay is
// bounded by an LRU over groups; an evicted group is reported to OnEvict so
// the caller drops whatever view relied on it.
package volatile

import (
	"container/list"
	"errors"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/groupcast/groupcast/channelgroups"
)

// Config tunes an Overlay.
type Config struct {
	// TTL is how long an entry waits for confirmation before Expired
	// reports it; zero means 4s.
	TTL time.Duration
	// MaxGroups bounds how many groups hold entries; zero means 100,000.
	MaxGroups int
	// Enabled says whether an account uses the overlay; nil means all do.
	// Changes of other accounts are ignored (their reads go to storage).
	Enabled func(channelgroups.Account) bool
	// OnEvict is called, outside the overlay's lock, with each group evicted
	// by the LRU bound; nil means nobody is told.
	OnEvict func(channelgroups.GroupKey)
	// Now is the clock for TTLs; nil means time.Now.
	Now func() time.Time
	// Registerer receives the metrics; nil means none.
	Registerer prometheus.Registerer
}

type entry struct {
	channelgroups.Entry
	since time.Time // when added, or last reported by Expired
}

type group struct {
	key          channelgroups.GroupKey
	entries      map[channelgroups.Channel]entry
	cleared      channelgroups.Timetoken
	clearedSince time.Time
}

func (g *group) empty() bool { return len(g.entries) == 0 && g.cleared == 0 }

// Overlay holds recent changes per group. It is safe for concurrent use.
type Overlay struct {
	cfg    Config
	mu     sync.Mutex
	groups map[channelgroups.GroupKey]*list.Element
	lru    *list.List // front = most recently changed
	size   int        // entries + clears held

	entries     prometheus.Gauge
	confirmed   prometheus.Counter
	unconfirmed prometheus.Counter
	evictions   prometheus.Counter
}

// New returns an empty overlay.
func New(cfg Config) (*Overlay, error) {
	if cfg.TTL < 0 || cfg.MaxGroups < 0 {
		return nil, errors.New("volatile: TTL and MaxGroups must be >= 0")
	}
	if cfg.TTL == 0 {
		cfg.TTL = 4 * time.Second
	}
	if cfg.MaxGroups == 0 {
		cfg.MaxGroups = 100_000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	o := &Overlay{
		cfg:    cfg,
		groups: map[channelgroups.GroupKey]*list.Element{},
		lru:    list.New(),
		entries: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "groupcast_overlay_entries", Help: "Changes held in the volatile overlay, waiting for storage to confirm them.",
		}),
		confirmed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "groupcast_overlay_confirmed_total", Help: "Overlay entries dropped because a storage snapshot confirmed them.",
		}),
		unconfirmed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "groupcast_overlay_unconfirmed_expiries_total", Help: "Overlay entries whose TTL passed before storage confirmed them (each forces a storage re-read).",
		}),
		evictions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "groupcast_overlay_evictions_total", Help: "Groups evicted from the overlay by its size bound.",
		}),
	}
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{o.entries, o.confirmed, o.unconfirmed, o.evictions} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return o, nil
}

// Enabled reports whether account a uses the overlay.
func (o *Overlay) Enabled(a channelgroups.Account) bool {
	return o.cfg.Enabled == nil || o.cfg.Enabled(a)
}

// Apply records an edit. It returns false when the account does not use the
// overlay.
func (o *Overlay) Apply(e channelgroups.Edit) bool {
	if !o.Enabled(e.Account) {
		return false
	}
	var evicted []channelgroups.GroupKey
	defer func() {
		for _, k := range evicted {
			o.cfg.OnEvict(k)
		}
	}()
	now := o.cfg.Now()
	o.mu.Lock()
	defer o.mu.Unlock()
	key := channelgroups.GroupKey{Account: e.Account, Group: e.Group}
	el, ok := o.groups[key]
	if !ok {
		el = o.lru.PushFront(&group{key: key, entries: map[channelgroups.Channel]entry{}})
		o.groups[key] = el
	} else {
		o.lru.MoveToFront(el)
	}
	g := el.Value.(*group)
	before := g.size()
	if e.Op == channelgroups.OpClear {
		if e.At > g.cleared {
			g.cleared, g.clearedSince = e.At, now
			for c, x := range g.entries {
				if x.At <= e.At {
					delete(g.entries, c)
				}
			}
		}
	} else if e.At > g.cleared {
		st := channelgroups.Added
		if e.Op == channelgroups.OpRemove {
			st = channelgroups.Removed
		}
		for _, c := range e.Channels {
			n := channelgroups.Entry{Channel: c, State: st, At: e.At}
			if old, ok := g.entries[c]; !ok || n.Supersedes(old.Entry) {
				g.entries[c] = entry{Entry: n, since: now}
			}
		}
	}
	o.add(g.size() - before)
	for len(o.groups) > o.cfg.MaxGroups {
		last := o.lru.Back()
		lg := last.Value.(*group)
		o.remove(last)
		o.evictions.Inc()
		if o.cfg.OnEvict != nil {
			evicted = append(evicted, lg.key)
		}
	}
	return true
}

func (g *group) size() int {
	n := len(g.entries)
	if g.cleared != 0 {
		n++
	}
	return n
}

func (o *Overlay) add(n int) {
	o.size += n
	o.entries.Set(float64(o.size))
}

func (o *Overlay) remove(el *list.Element) {
	g := el.Value.(*group)
	o.add(-g.size())
	o.lru.Remove(el)
	delete(o.groups, g.key)
}

// Entries returns a copy of the group's entries and its latest delete (0 if
// none), ready for channelgroups.Merge.
func (o *Overlay) Entries(key channelgroups.GroupKey) ([]channelgroups.Entry, channelgroups.Timetoken) {
	o.mu.Lock()
	defer o.mu.Unlock()
	el, ok := o.groups[key]
	if !ok {
		return nil, 0
	}
	g := el.Value.(*group)
	out := make([]channelgroups.Entry, 0, len(g.entries))
	for _, x := range g.entries {
		out = append(out, x.Entry)
	}
	return out, g.cleared
}

// Confirm drops the group's entries the snapshot already reflects: its
// stored write of the channel is the same write or one that wins over it
// (Entry.Supersedes), or a stored delete covers it. It returns how many
// entries remain.
func (o *Overlay) Confirm(key channelgroups.GroupKey, snap *channelgroups.Snapshot) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	el, ok := o.groups[key]
	if !ok {
		return 0
	}
	g := el.Value.(*group)
	before := g.size()
	for c, x := range g.entries {
		if confirms(snap, x.Entry) {
			delete(g.entries, c)
		}
	}
	if g.cleared != 0 && snap.Cleared >= g.cleared {
		g.cleared = 0
	}
	n := before - g.size()
	o.confirmed.Add(float64(n))
	o.add(-n)
	if g.empty() {
		o.remove(el)
		return 0
	}
	return g.size()
}

func confirms(snap *channelgroups.Snapshot, e channelgroups.Entry) bool {
	if snap.Cleared >= e.At {
		return true
	}
	s, ok := snap.Lookup(e.Channel)
	// Not merely s.At >= e.At: a stored add does not confirm a remove at
	// the same timetoken, which wins over it.
	return ok && !e.Supersedes(s)
}

// Expired returns the groups holding entries whose TTL has passed
// unconfirmed, counting each such entry; the caller should re-read them from
// storage and Confirm. An entry is reported again only after another TTL.
func (o *Overlay) Expired() []channelgroups.GroupKey {
	now := o.cfg.Now()
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []channelgroups.GroupKey
	for key, el := range o.groups {
		g := el.Value.(*group)
		n := 0
		for c, x := range g.entries {
			if now.Sub(x.since) >= o.cfg.TTL {
				x.since = now
				g.entries[c] = x
				n++
			}
		}
		if g.cleared != 0 && now.Sub(g.clearedSince) >= o.cfg.TTL {
			g.clearedSince = now
			n++
		}
		if n > 0 {
			o.unconfirmed.Add(float64(n))
			out = append(out, key)
		}
	}
	return out
}

// Len returns how many entries (and deletes) the overlay holds.
func (o *Overlay) Len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.size
}
