package cluster

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/groupcast/groupcast/subscriber"
)

// metrics are the cluster's Prometheus metrics, one set per Cluster.
type metrics struct {
	members     *prometheus.GaugeVec
	ringChanges prometheus.Counter
	shardsOwned prometheus.Gauge
	shardsMoved prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		members: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "groupcast_cluster_members",
			Help: "Live members of the cluster this node knows, by state.",
		}, []string{"state"}),
		ringChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "groupcast_cluster_ring_changes_total",
			Help: "Times this node's ring of the region's active members changed.",
		}),
		shardsOwned: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "groupcast_cluster_shards_owned",
			Help: "Shards this node owns under its current assignment.",
		}),
		shardsMoved: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "groupcast_cluster_shards_moved_total",
			Help: "Shards this node gained or lost as its assignment changed.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.members, m.ringChanges, m.shardsOwned, m.shardsMoved} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("cluster: registering metrics: %w", err)
		}
	}
	return m, nil
}

// observe records a newly published view; old is nil for the first one.
func (m *metrics) observe(old, v *view) {
	counts := map[State]int{Active: 0, Draining: 0}
	for _, mb := range v.members {
		counts[mb.State]++
	}
	for s, n := range counts {
		m.members.WithLabelValues(string(s)).Set(float64(n))
	}
	m.shardsOwned.Set(float64(v.assignment.Count()))
	if old == nil {
		return
	}
	if v.ring != old.ring {
		m.ringChanges.Inc()
	}
	if v.assignment != old.assignment {
		m.shardsMoved.Add(float64(moved(old.assignment, v.assignment)))
	}
}

// moved counts the shards owned under exactly one of a and b.
func moved(a, b *subscriber.Assignment) int {
	n := 0
	for i := range max(len(a.Owned), len(b.Owned)) {
		if a.Owns(i) != b.Owns(i) {
			n++
		}
	}
	return n
}
