package cluster

import (
	"slices"
	"strconv"
)

// Status is what GET /cluster shows: this node's view of the cluster.
type Status struct {
	// Self is this node's name.
	Self string `json:"self"`
	// RingVersion is the version of the ring over the region's active
	// members (see Ring.Version).
	RingVersion uint64 `json:"ring_version"`
	// Replicas is the configured number of owners per shard.
	Replicas int `json:"replicas"`
	// Members are the live members this node knows, sorted by name.
	Members []Member `json:"members"`
	// Owners maps every shard, as a decimal string, to its owners'
	// names, primary first.
	Owners map[string][]string `json:"owners"`
}

// Status returns this node's view of the cluster.
func (c *Cluster) Status() Status {
	v := c.view.Load()
	s := Status{
		Self:        c.cfg.Name,
		RingVersion: v.ring.Version(),
		Replicas:    c.cfg.Replicas,
		Members:     slices.Clone(v.members),
		Owners:      make(map[string][]string, c.cfg.Shards),
	}
	for shard := range c.cfg.Shards {
		owners := v.ring.Owners(shard)
		if owners == nil {
			owners = []string{}
		}
		s.Owners[strconv.Itoa(shard)] = owners
	}
	return s
}
