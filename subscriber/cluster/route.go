package cluster

import (
	"maps"
	"time"
)

// Route tells the HTTP layer where a request for shard goes: nil when this
// node serves it itself (a write: this node is the shard's primary; a
// read: one of its owners; either way not draining). Otherwise, for a
// write, the primary's HTTP address alone (a write goes nowhere else: the
// other owners would forward it back); for a read, the shard's other
// owners, primary first, in rendezvous order; either way without those in
// quarantine (see Refused). The slice is empty, not nil, when no owner is
// reachable: the caller answers 503 at once.
func (c *Cluster) Route(shard int, write bool) []string {
	v := c.view.Load()
	owners := v.ring.row(shard)
	self := c.cfg.Name
	// v.ring leaves this node out once it drains, so it is then never
	// found among the owners.
	for i, o := range owners {
		if o == self && (i == 0 || !write) {
			return nil
		}
	}
	q := *c.quarantine.Load()
	now := c.cfg.Now()
	out := make([]string, 0, len(owners))
	if write && len(owners) > 0 {
		owners = owners[:1]
	}
	for _, o := range owners {
		addr := v.http[o]
		if o == self || addr == "" {
			continue
		}
		if until, ok := q[addr]; ok && now.Before(until) {
			continue
		}
		out = append(out, addr)
	}
	return out
}

// Refused reports that a forward to httpAddr was refused or could not
// connect: Route leaves that address out for Config.Quarantine, or until
// gossip brings the node back under another address or after it was
// declared dead. Ownership is unaffected: every node's ring follows gossip
// alone, so that all nodes agree on it.
func (c *Cluster) Refused(httpAddr string) {
	now := c.cfg.Now()
	c.qmu.Lock()
	defer c.qmu.Unlock()
	old := *c.quarantine.Load()
	q := make(map[string]time.Time, len(old)+1)
	for addr, until := range old {
		if now.Before(until) {
			q[addr] = until
		}
	}
	q[httpAddr] = now.Add(c.cfg.Quarantine)
	c.quarantine.Store(&q)
}

// unquarantine ends httpAddr's quarantine, if any.
func (c *Cluster) unquarantine(httpAddr string) {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	old := *c.quarantine.Load()
	if _, ok := old[httpAddr]; !ok {
		return
	}
	q := maps.Clone(old)
	delete(q, httpAddr)
	c.quarantine.Store(&q)
}
