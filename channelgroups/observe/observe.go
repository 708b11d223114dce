// Package observe decorates a channelgroups.Store with Prometheus metrics:
// latency and outcome of every store call.
package observe

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/groupcast/groupcast/channelgroups"
)

// Store wraps a store with its outbox; it implements both and passes Ping through.
type Store struct {
	next    Outbox
	latency *prometheus.HistogramVec
}

// New wraps next, registering groupcast_store_duration_seconds{op,outcome}
// with reg.
func New(next Outbox, reg prometheus.Registerer) (*Store, error) {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "groupcast_store_duration_seconds",
		Help:    "Latency of channel-group store calls by operation and outcome (ok, error).",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
	}, []string{"op", "outcome"})
	if err := reg.Register(h); err != nil {
		return nil, err
	}
	return &Store{next: next, latency: h}, nil
}

func (s *Store) observe(op string, start time.Time, err error) {
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	s.latency.WithLabelValues(op, outcome).Observe(time.Since(start).Seconds())
}

// Write implements channelgroups.Store.
func (s *Store) Write(ctx context.Context, e channelgroups.Edit) (err error) {
	defer func(start time.Time) { s.observe("write", start, err) }(time.Now())
	return s.next.Write(ctx, e)
}

// Read implements channelgroups.Store.
func (s *Store) Read(ctx context.Context, a channelgroups.Account, g channelgroups.Group) (snap channelgroups.Snapshot, err error) {
	defer func(start time.Time) { s.observe("read", start, err) }(time.Now())
	return s.next.Read(ctx, a, g)
}

// Groups implements channelgroups.Store.
func (s *Store) Groups(ctx context.Context, a channelgroups.Account) (gs []channelgroups.Group, err error) {
	defer func(start time.Time) { s.observe("groups", start, err) }(time.Now())
	return s.next.Groups(ctx, a)
}

// Ping passes through to the wrapped store when it is a channelgroups.Pinger.
func (s *Store) Ping(ctx context.Context) error {
	if p, ok := s.next.(channelgroups.Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}

// Outbox is a store with its outbox and replays, as the node needs it.
type Outbox interface {
	channelgroups.Store
	channelgroups.Outbox
	channelgroups.Replays
}

// Recall implements channelgroups.Replays.
func (s *Store) Recall(ctx context.Context, a channelgroups.Account, key string) (fp string, answer []byte, found bool, err error) {
	defer func(start time.Time) { s.observe("recall", start, err) }(time.Now())
	return s.next.Recall(ctx, a, key)
}

// Remember implements channelgroups.Replays.
func (s *Store) Remember(ctx context.Context, a channelgroups.Account, key, fp string, answer []byte, ttl time.Duration) (err error) {
	defer func(start time.Time) { s.observe("remember", start, err) }(time.Now())
	return s.next.Remember(ctx, a, key, fp, answer, ttl)
}

// Pending implements channelgroups.Outbox.
func (s *Store) Pending(ctx context.Context, shard, limit int) (es []channelgroups.Edit, err error) {
	defer func(start time.Time) { s.observe("outbox_pending", start, err) }(time.Now())
	return s.next.Pending(ctx, shard, limit)
}

// Announced implements channelgroups.Outbox.
func (s *Store) Announced(ctx context.Context, e channelgroups.Edit) (err error) {
	defer func(start time.Time) { s.observe("outbox_announced", start, err) }(time.Now())
	return s.next.Announced(ctx, e)
}
