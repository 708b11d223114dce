package access

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// RegistryConfig tunes a Registry.
type RegistryConfig struct {
	// Poll is how often Run reads the store's Version; zero means 250ms.
	Poll time.Duration
	// Reload is how often Run reloads everything even though Version has
	// not changed: in Cassandra another datacenter's version row may arrive
	// before the rows it announces, and a version bump can be lost when a
	// write fails halfway. Zero means 5s.
	Reload time.Duration
	// Now is the clock that ages revocations out and times reloads; nil
	// means time.Now.
	Now func() time.Time
	// Logger receives storage errors; nil discards them.
	Logger *slog.Logger
	// Registerer receives groupcast_access_keysets,
	// groupcast_access_revocations and groupcast_access_reloads_total;
	// nil means no metrics.
	Registerer prometheus.Registerer
}

// Registry is a node's in-memory copy of the keysets and revocations in a
// Store. Its lookups read an immutable snapshot without locks or storage
// reads; Run keeps the snapshot current, Refresh reloads it at once.
type Registry struct {
	store Store
	cfg   RegistryConfig
	snap  atomic.Pointer[snapshot]

	loadMu   sync.Mutex // serialises loads, so a snapshot never replaces a newer one
	lastFull time.Time  // when the last successful load began; guarded by loadMu

	reloads *prometheus.CounterVec
}

// snapshot is one load of the store; never changed once published.
type snapshot struct {
	version string
	bySub   map[string]Keyset
	byPub   map[string]Keyset
	sorted  []Keyset
	revoked map[revocationKey]time.Time // → Until
}

type revocationKey struct{ sub, token string }

// NewRegistry makes a registry over s. It starts no goroutine and reads
// nothing: Ready is false until Run or Refresh has loaded the store once.
func NewRegistry(s Store, cfg RegistryConfig) (*Registry, error) {
	if s == nil {
		return nil, errors.New("access: NewRegistry needs a Store")
	}
	if cfg.Poll < 0 || cfg.Reload < 0 {
		return nil, errors.New("access: Poll and Reload must be >= 0")
	}
	if cfg.Poll == 0 {
		cfg.Poll = 250 * time.Millisecond
	}
	if cfg.Reload == 0 {
		cfg.Reload = 5 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Registry{
		store: s,
		cfg:   cfg,
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "groupcast_access_reloads_total",
			Help: "Loads of keysets and revocations from the store, by result (ok, error).",
		}, []string{"result"}),
	}
	r.reloads.WithLabelValues("ok")
	r.reloads.WithLabelValues("error")
	if reg := cfg.Registerer; reg != nil {
		for _, c := range []prometheus.Collector{
			r.reloads,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "groupcast_access_keysets",
				Help: "Keysets this node knows.",
			}, func() float64 { return float64(len(r.load().sorted)) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "groupcast_access_revocations",
				Help: "Revoked tokens this node refuses (until they would have expired).",
			}, func() float64 { return float64(len(r.load().revoked)) }),
		} {
			if err := reg.Register(c); err != nil {
				return nil, errors.Join(errors.New("access: registering metrics"), err)
			}
		}
	}
	return r, nil
}

var emptySnapshot = &snapshot{}

// load returns the current snapshot, an empty one before the first load.
func (r *Registry) load() *snapshot {
	if s := r.snap.Load(); s != nil {
		return s
	}
	return emptySnapshot
}

// Ready reports whether the store has been loaded at least once.
func (r *Registry) Ready() bool { return r.snap.Load() != nil }

// Keyset returns the keyset with subscribe key subKey.
func (r *Registry) Keyset(subKey string) (Keyset, bool) {
	k, ok := r.load().bySub[subKey]
	return k, ok
}

// ByPublishKey returns the keyset with publish key pubKey. A publish key
// that two keysets share (the store does not prevent it) finds neither.
func (r *Registry) ByPublishKey(pubKey string) (Keyset, bool) {
	k, ok := r.load().byPub[pubKey]
	return k, ok
}

// Revoked reports whether the token tokenID of keyset subKey is revoked.
// A revocation is forgotten at the first load after its Until, when the
// token has expired anyway.
func (r *Registry) Revoked(subKey, tokenID string) bool {
	_, ok := r.load().revoked[revocationKey{subKey, tokenID}]
	return ok
}

// Keysets returns every keyset, by subscribe key; the slice is the
// caller's.
func (r *Registry) Keysets() []Keyset { return slices.Clone(r.load().sorted) }

// Refresh loads the store now, whatever its Version: the admin API calls it
// after a change so that this node sees it at once. On error the previous
// snapshot stays.
func (r *Registry) Refresh(ctx context.Context) error {
	r.loadMu.Lock()
	defer r.loadMu.Unlock()
	return r.reload(ctx)
}

// Run polls the store every Poll until ctx ends: a changed Version, or
// Reload since the last load, loads everything. Storage errors are logged
// and counted; the last good snapshot stays. It returns nil when ctx ends.
func (r *Registry) Run(ctx context.Context) error {
	t := time.NewTicker(r.cfg.Poll)
	defer t.Stop()
	for {
		r.poll(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// poll is one step of Run.
func (r *Registry) poll(ctx context.Context) {
	r.loadMu.Lock()
	defer r.loadMu.Unlock()
	if ctx.Err() != nil {
		return
	}
	cur := r.snap.Load()
	if cur != nil && r.cfg.Now().Sub(r.lastFull) < r.cfg.Reload {
		v, err := r.store.Version(ctx)
		if err != nil {
			r.failed(ctx, "version", err)
			return
		}
		if v == cur.version {
			return
		}
	}
	_ = r.reload(ctx) // logged and counted
}

// reload loads everything; the caller holds loadMu.
func (r *Registry) reload(ctx context.Context) error {
	start := r.cfg.Now()
	// Version first: a change after it is read makes the next poll load
	// again, so no change is missed.
	v, err := r.store.Version(ctx)
	if err != nil {
		return r.failed(ctx, "version", err)
	}
	ks, err := r.store.Keysets(ctx)
	if err != nil {
		return r.failed(ctx, "keysets", err)
	}
	rs, err := r.store.Revocations(ctx)
	if err != nil {
		return r.failed(ctx, "revocations", err)
	}
	// A reload that finds what the node already has keeps its snapshot:
	// a new one would void every connection's Memo (Guard.Recall), and
	// every Reload all parked subscribers would check their tokens again
	// at once.
	if s := r.build(v, ks, rs, start); !s.same(r.snap.Load()) {
		r.snap.Store(s)
	}
	r.lastFull = start
	r.reloads.WithLabelValues("ok").Inc()
	return nil
}

// failed logs and counts a failed read, unless ctx has ended (shutdown).
func (r *Registry) failed(ctx context.Context, what string, err error) error {
	if ctx.Err() == nil {
		r.reloads.WithLabelValues("error").Inc()
		r.cfg.Logger.Warn("access: loading "+what+" failed; keeping the last keysets and revocations", "err", err)
	}
	return err
}

// same reports whether s holds what o holds (o may be nil).
func (s *snapshot) same(o *snapshot) bool {
	return o != nil && s.version == o.version &&
		maps.EqualFunc(s.bySub, o.bySub, Keyset.equal) &&
		maps.EqualFunc(s.revoked, o.revoked, time.Time.Equal)
}

func (r *Registry) build(version string, ks []Keyset, rs []Revocation, now time.Time) *snapshot {
	s := &snapshot{
		version: version,
		bySub:   make(map[string]Keyset, len(ks)),
		byPub:   make(map[string]Keyset, len(ks)),
		revoked: make(map[revocationKey]time.Time, len(rs)),
	}
	for _, k := range ks {
		s.bySub[k.SubscribeKey] = k
	}
	s.sorted = make([]Keyset, 0, len(s.bySub))
	for _, k := range s.bySub {
		s.sorted = append(s.sorted, k)
	}
	slices.SortFunc(s.sorted, func(a, b Keyset) int { return strings.Compare(a.SubscribeKey, b.SubscribeKey) })
	shared := map[string]bool{}
	for _, k := range s.sorted {
		if _, dup := s.byPub[k.PublishKey]; dup {
			shared[k.PublishKey] = true
		}
		s.byPub[k.PublishKey] = k
	}
	for pub := range shared {
		delete(s.byPub, pub)
		r.cfg.Logger.Error("access: several keysets have the same publish key; ByPublishKey finds none of them", "publish_key", pub)
	}
	for _, rv := range rs {
		if !rv.Until.After(now) {
			continue
		}
		k := revocationKey{rv.SubscribeKey, rv.TokenID}
		if old, ok := s.revoked[k]; !ok || rv.Until.After(old) {
			s.revoked[k] = rv.Until
		}
	}
	return s
}
