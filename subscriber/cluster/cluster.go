package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/groupcast/groupcast/subscriber"
)

var _ subscriber.Ownership = (*Cluster)(nil)

// ErrShutdown is returned by Join after Shutdown.
var ErrShutdown = errors.New("cluster: shut down")

// Cluster is this node's membership in a groupcast cluster. It implements
// subscriber.Ownership for this node, and the routing of requests to the
// owners of a shard. See the package comment for its concurrency contract.
//
// Lock order: lifeMu, updateMu, memberlist's own locks (its callbacks run
// under them), then mu or qmu, which are leaves: nothing is called with
// them held but NewRing and the metrics.
type Cluster struct {
	cfg        Config // defaults filled; never changed after New
	log        *slog.Logger
	metrics    *metrics
	ml         *memberlist.Memberlist
	gossipAddr string

	view atomic.Pointer[view]

	mu       sync.Mutex        // guards the fields below; a leaf lock
	members  map[string]Member // live members as gossiped, by name
	draining bool
	ready    uint64
	frozen   *subscriber.Assignment // the assignment when draining began

	qmu        sync.Mutex // serialises writers of quarantine; a leaf lock
	quarantine atomic.Pointer[map[string]time.Time]

	updateMu sync.Mutex // serialises re-advertising this node's metadata
	stopped  bool       // under updateMu: no more metadata updates

	lifeMu sync.Mutex // serialises Leave and Shutdown
	left   bool
	shut   bool
}

// view is what a node knows at one moment, published whole so that
// readers never lock. It is never modified once published.
type view struct {
	members    []Member          // live members, sorted by name; this node as it is locally
	http       map[string]string // node name → HTTP address
	ring       *Ring             // over the active members of this region
	assignment *subscriber.Assignment
	changed    chan struct{} // closed when a later view has another assignment
	updated    chan struct{} // closed when a later view is published
}

// New checks cfg, binds the gossip address and starts memberlist: from
// here memberlist's goroutines answer probes and gossip until Shutdown.
// It does not contact cfg.Join; call Join for that.
func New(cfg Config) (*Cluster, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	c := &Cluster{
		cfg:     cfg,
		log:     cfg.Logger,
		metrics: m,
		members: make(map[string]Member),
	}
	c.quarantine.Store(&map[string]time.Time{})
	c.mu.Lock()
	c.members[cfg.Name] = c.localLocked()
	c.publishLocked()
	c.mu.Unlock()

	mc := cfg.memberlistConfig()
	mc.Delegate = delegate{c}
	mc.Events = events{c}
	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("cluster: starting memberlist on %s: %w", cfg.BindAddr, err)
	}
	c.ml = ml
	self := ml.LocalNode()
	c.gossipAddr = net.JoinHostPort(self.Addr.String(), strconv.Itoa(int(self.Port)))
	c.log.Info("cluster: gossip started", "node", cfg.Name, "gossip", c.gossipAddr, "http", cfg.HTTPAddr)
	return c, nil
}

// Join contacts the seeds of Config.Join, retrying with a growing pause
// until one of them answers or ctx ends. With no seeds it returns nil at
// once: this is the first node.
func (c *Cluster) Join(ctx context.Context) error {
	seeds := c.cfg.Join
	if len(seeds) == 0 {
		return nil
	}
	pause := 50 * time.Millisecond
	for {
		c.updateMu.Lock()
		stopped := c.stopped
		c.updateMu.Unlock()
		if stopped {
			return ErrShutdown
		}
		n, err := c.ml.Join(seeds)
		if n > 0 {
			c.log.Info("cluster: joined", "node", c.cfg.Name, "contacted", n)
			return nil
		}
		c.log.Debug("cluster: join failed; retrying", "seeds", seeds, "err", err, "pause", pause)
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("cluster: joining %s: %w", strings.Join(seeds, ","), errors.Join(err, ctx.Err()))
		case <-t.C:
		}
		pause = min(2*pause, time.Second)
	}
}

// Self returns this node's name.
func (c *Cluster) Self() string { return c.cfg.Name }

// HTTPAddr returns this node's public HTTP address.
func (c *Cluster) HTTPAddr() string { return c.cfg.HTTPAddr }

// GossipAddr returns the gossip address peers reach this node at, with the
// port memberlist picked if Config.BindAddr asked for port 0.
func (c *Cluster) GossipAddr() string { return c.gossipAddr }

// Ring returns the ring every node of the region computes from the current
// membership: over the region's active members, so without this node once
// it drains.
func (c *Cluster) Ring() *Ring { return c.view.Load().ring }

// Assignment returns this node's shards under the current ring. Once the
// node drains it keeps returning the assignment it had just before, so
// that the node goes on answering the polls it has parked until it
// releases them. Never nil; immutable.
func (c *Cluster) Assignment() *subscriber.Assignment { return c.view.Load().assignment }

// Changed returns a channel closed when Assignment changes. Take it before
// calling Assignment so as not to miss a change.
func (c *Cluster) Changed() <-chan struct{} { return c.view.Load().changed }

// Ready advertises that this node serves every shard it owns under the
// assignment with this version. It does not wait for the gossip to go out.
func (c *Cluster) Ready(version uint64) {
	c.mu.Lock()
	if c.ready == version {
		c.mu.Unlock()
		return
	}
	c.ready = version
	c.publishLocked()
	c.mu.Unlock()
	c.advertise()
}

// SetDraining announces that this node is stopping: every ring, this
// node's Route included, leaves it out from now on, while its own
// Assignment stays as it was. It does not wait for the gossip to go out;
// WaitHandover does. Calling it again does nothing.
func (c *Cluster) SetDraining() {
	c.mu.Lock()
	if c.draining {
		c.mu.Unlock()
		return
	}
	c.frozen = c.view.Load().assignment
	c.draining = true
	c.publishLocked()
	c.mu.Unlock()
	c.log.Info("cluster: draining", "node", c.cfg.Name)
	c.advertise()
}

// WaitHandover blocks until every other active member of this region
// reports it is ready for the current ring version, the one without this
// node once it drains, or until ctx ends.
func (c *Cluster) WaitHandover(ctx context.Context) error {
	for {
		v := c.view.Load()
		waiting := v.notReady(c.cfg.Name, c.cfg.Region)
		if len(waiting) == 0 {
			return nil
		}
		select {
		case <-v.updated:
		case <-ctx.Done():
			return fmt.Errorf("cluster: waiting for %s to be ready for ring %d: %w",
				strings.Join(waiting, ","), v.ring.Version(), ctx.Err())
		}
	}
}

// notReady lists the active members of region, self aside, whose ready
// version is not v's ring version.
func (v *view) notReady(self string, region int) []string {
	var out []string
	for _, m := range v.members {
		if m.Node != self && m.Region == region && m.State == Active && m.ReadyVersion != v.ring.Version() {
			out = append(out, m.Node)
		}
	}
	return out
}

// Leave tells the cluster this node is going, waiting at most timeout (0
// means no limit) for the message to go out. Peers then drop the node at
// once instead of after failing to probe it. Only the first call, before
// Shutdown, does anything.
func (c *Cluster) Leave(timeout time.Duration) error {
	c.lifeMu.Lock()
	defer c.lifeMu.Unlock()
	if c.left || c.shut {
		return nil
	}
	c.left = true
	if err := c.ml.Leave(timeout); err != nil {
		return fmt.Errorf("cluster: leave: %w", err)
	}
	return nil
}

// Shutdown stops gossip and memberlist's goroutines; without Leave first,
// peers see this node fail. Only the first call does anything.
func (c *Cluster) Shutdown() error {
	c.lifeMu.Lock()
	defer c.lifeMu.Unlock()
	if c.shut {
		return nil
	}
	c.shut = true
	c.updateMu.Lock()
	c.stopped = true
	c.updateMu.Unlock()
	if err := c.ml.Shutdown(); err != nil {
		return fmt.Errorf("cluster: shutdown: %w", err)
	}
	return nil
}

// advertise re-gossips this node's metadata after a local change.
func (c *Cluster) advertise() {
	c.updateMu.Lock()
	defer c.updateMu.Unlock()
	if c.stopped || c.ml == nil {
		return
	}
	// UpdateNode queues the new alive message before it waits for its
	// first transmission; memberlist's gossip and push/pull carry it from
	// there, so a nanosecond's wait keeps this call from blocking and its
	// timeout error means nothing.
	_ = c.ml.UpdateNode(time.Nanosecond)
}

// localLocked returns this node as it is now. c.mu must be held.
func (c *Cluster) localLocked() Member {
	m := Member{Node: c.cfg.Name, HTTP: c.cfg.HTTPAddr, Region: c.cfg.Region, State: Active, ReadyVersion: c.ready}
	if c.draining {
		m.State = Draining
	}
	return m
}

// publishLocked publishes a new view from c.members and this node's local
// state, and wakes whoever waits on the previous one. c.mu must be held.
func (c *Cluster) publishLocked() {
	old := c.view.Load()
	v := &view{
		members: make([]Member, 0, len(c.members)),
		http:    make(map[string]string, len(c.members)),
		updated: make(chan struct{}),
	}
	for name, m := range c.members {
		if name == c.cfg.Name {
			m = c.localLocked()
		}
		v.members = append(v.members, m)
		v.http[name] = m.HTTP
	}
	slices.SortFunc(v.members, func(a, b Member) int { return strings.Compare(a.Node, b.Node) })
	var candidates []string
	for _, m := range v.members {
		if m.Region == c.cfg.Region && m.State == Active {
			candidates = append(candidates, m.Node)
		}
	}
	if old != nil && slices.Equal(old.ring.nodes, candidates) {
		v.ring, v.assignment, v.changed = old.ring, old.assignment, old.changed
	} else {
		v.ring = NewRing(candidates, c.cfg.Shards, c.cfg.Replicas)
		v.assignment = v.ring.Assignment(c.cfg.Name)
	}
	if c.draining {
		v.assignment = c.frozen
	}
	if old == nil || v.assignment != old.assignment {
		v.changed = make(chan struct{})
	} else {
		v.changed = old.changed
	}
	c.view.Store(v)
	c.metrics.observe(old, v)
	if old == nil {
		return
	}
	close(old.updated)
	if v.changed != old.changed {
		close(old.changed)
	}
	if v.ring != old.ring {
		c.log.Info("cluster: ring changed", "node", c.cfg.Name, "version", v.ring.Version(),
			"members", candidates, "owned", v.assignment.Count())
	}
}

// gossiped records member m (as decoded from gossip) and publishes.
func (c *Cluster) gossiped(m Member) {
	c.mu.Lock()
	old, had := c.members[m.Node]
	c.members[m.Node] = m
	c.publishLocked()
	c.mu.Unlock()
	if !had || old.HTTP != m.HTTP {
		c.unquarantine(m.HTTP) // it (re)joined: give it a new chance
	}
}

// delegate answers memberlist's questions about this node. Its methods
// never block.
type delegate struct{ c *Cluster }

// NodeMeta returns this node's metadata, freshly encoded.
func (d delegate) NodeMeta(limit int) []byte {
	d.c.mu.Lock()
	m := d.c.localLocked()
	d.c.mu.Unlock()
	b := encodeMeta(m)
	if len(b) > limit { // cannot happen: Config keeps HTTPAddr short
		d.c.log.Error("cluster: node metadata too long", "bytes", len(b), "limit", limit)
		return nil
	}
	return b
}

func (delegate) NotifyMsg([]byte)                       {}
func (delegate) GetBroadcasts(int, int) [][]byte        { return nil }
func (delegate) LocalState(bool) []byte                 { return nil }
func (delegate) MergeRemoteState(buf []byte, join bool) {}

// events follows memberlist's view of the members. memberlist calls it
// with its node lock held and never concurrently; it never blocks and
// never calls memberlist.
type events struct{ c *Cluster }

func (e events) NotifyJoin(n *memberlist.Node)   { e.update(n) }
func (e events) NotifyUpdate(n *memberlist.Node) { e.update(n) }

func (e events) NotifyLeave(n *memberlist.Node) {
	c := e.c
	c.mu.Lock()
	delete(c.members, n.Name)
	c.publishLocked()
	c.mu.Unlock()
}

func (e events) update(n *memberlist.Node) {
	m, err := decodeMeta(n.Name, n.Meta) // copies out of n.Meta
	if err != nil {
		e.c.log.Warn("cluster: ignoring member", "err", err)
		return
	}
	e.c.gossiped(m)
}
