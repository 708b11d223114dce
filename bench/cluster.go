package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/groupcast/groupcast/channelgroups"
)

// ClusterResult is what the cluster scenario measured: per-node memory as
// the cluster grows, the cost of one forward, and the delivery gap when a
// shard owner dies.
type ClusterResult struct {
	// Shards is the number of account shards the nodes ran with.
	Shards int
	// Memory holds one run per cluster size, in growing order, each on
	// fresh processes with --replicas 1 (so that per-node state can fall
	// with the number of nodes).
	Memory   []ClusterMemory
	Forward  *ForwardResult  `json:",omitempty"`
	Failover *FailoverResult `json:",omitempty"`
}

// ClusterMemory is one memory run: the same state for Accounts accounts
// created on a cluster of Nodes nodes, then every node's memory.
type ClusterMemory struct {
	Nodes, Replicas, Accounts int
	// Requests sent to create the state (spread round-robin over the
	// nodes), how many failed, and how long they took.
	Requests, Errors int
	Seconds          float64
	PerNode          []NodeMemory
}

// NodeMemory is one node's memory before and after the state was created,
// each after a forced GC.
type NodeMemory struct {
	Node string
	// ShardsServing is groupcast_shards_serving: the shards whose log the
	// node follows.
	ShardsServing float64
	// IdleHeap and Heap are go_memstats_heap_inuse_bytes before and after.
	IdleHeap, Heap float64
	// IdleLive and Live are go_memstats_heap_alloc_bytes (the bytes of
	// live objects, without the spans' free slots) before and after.
	IdleLive, Live float64
	// IdlePss and Pss are the process's proportional set size before and
	// after (/proc/PID/smaps_rollup).
	IdlePss, Pss float64
}

// State is the heap the workload left on the node; LiveState the same in
// live objects.
func (n NodeMemory) State() float64     { return n.Heap - n.IdleHeap }
func (n NodeMemory) LiveState() float64 { return n.Live - n.IdleLive }

// MeanState and MaxState are the state over the run's nodes.
func (m ClusterMemory) MeanState() float64 {
	if len(m.PerNode) == 0 {
		return 0
	}
	var sum float64
	for _, n := range m.PerNode {
		sum += n.State()
	}
	return sum / float64(len(m.PerNode))
}

func (m ClusterMemory) MaxState() float64 {
	var top float64
	for _, n := range m.PerNode {
		top = max(top, n.State())
	}
	return top
}

func (m ClusterMemory) maxOf(f func(NodeMemory) float64) float64 {
	var top float64
	for _, n := range m.PerNode {
		top = max(top, f(n))
	}
	return top
}

// Memory returns the run on n nodes.
func (c *ClusterResult) memory(n int) (ClusterMemory, bool) {
	for _, m := range c.Memory {
		if m.Nodes == n {
			return m, true
		}
	}
	return ClusterMemory{}, false
}

// StateRatio compares the per-node state on n nodes with the state of one
// node holding everything: the mean and the largest node's. Ideal is 1/n.
func (c *ClusterResult) StateRatio(n int) (mean, largest float64, ok bool) {
	one, ok1 := c.memory(1)
	m, okn := c.memory(n)
	if !ok1 || !okn || one.MeanState() <= 0 {
		return 0, 0, false
	}
	return m.MeanState() / one.MeanState(), m.MaxState() / one.MeanState(), true
}

// ForwardResult compares a group list sent to an owner of the account's
// shard with the same list sent to a node that owns none of it (which
// forwards it once).
type ForwardResult struct {
	Account           string
	Shard             int
	Owner, NonOwner   string
	Direct, Forwarded Latencies
}

// Added is the forward's cost at the median and at p99, in µs.
func (f ForwardResult) Added() (p50, p99 float64) {
	return f.Forwarded.P50 - f.Direct.P50, f.Forwarded.P99 - f.Direct.P99
}

// FailoverResult is the failover scenario: subscribers through a node
// that survives, of accounts whose shards the killed node owned, while a
// publisher publishes to each of their channels every Every.
type FailoverResult struct {
	Subscribers int
	// Primary and Second count the subscribers whose shard the killed node
	// was the primary, or the second owner, of.
	Primary, Second int
	Killed          string
	Every           time.Duration
	// Gap is the distribution, over subscribers, of each one's longest
	// time without a delivery from a second before the kill to the end
	// of publishing (µs).
	Gap Latencies
	// Silent counts subscribers that got nothing after the kill.
	Silent int
	// RingAfter is how long after the kill the subscribers' node showed a
	// ring without the killed node, every member ready (s); 0 if never.
	RingAfter float64
	// Published counts acknowledged publishes; Unavailable the publishes
	// answered 503, Failed any other failure, and Failures those by
	// status code or "timeout" / "error" (no answer).
	Published, Unavailable, Failed int64
	Failures                       map[string]int64 `json:",omitempty"`
	// Lost counts acknowledged messages some subscriber never received;
	// PollErrors the subscribe requests that failed.
	Lost, PollErrors int64
}

// clusterStatus is GET /cluster.
type clusterStatus struct {
	Self        string `json:"self"`
	RingVersion uint64 `json:"ring_version"`
	Replicas    int    `json:"replicas"`
	Members     []struct {
		Node         string `json:"node"`
		HTTP         string `json:"http"`
		State        string `json:"state"`
		ReadyVersion uint64 `json:"ready_version"`
	} `json:"members"`
	Owners map[string][]string `json:"owners"`
}

// owners returns the owners of account's shard, primary first.
func (s clusterStatus) owners(account string, shards int) []string {
	return s.Owners[strconv.Itoa(channelgroups.ShardOf(channelgroups.Account(account), shards))]
}

// settled reports whether a node's view has exactly the named members,
// each active and ready for its ring.
func (s clusterStatus) settled(names []string) bool {
	if s.RingVersion == 0 || len(s.Members) != len(names) {
		return false
	}
	for _, m := range s.Members {
		if !slices.Contains(names, m.Node) || m.State != "active" || m.ReadyVersion != s.RingVersion {
			return false
		}
	}
	return true
}

// agreed reports whether every node's view is settled on the same ring.
func agreed(sts []clusterStatus, names []string) bool {
	for _, s := range sts {
		if !s.settled(names) || s.RingVersion != sts[0].RingVersion {
			return false
		}
	}
	return len(sts) > 0
}

var statusClient = &http.Client{Timeout: 2 * time.Second}

func getStatus(base string) (clusterStatus, error) {
	var s clusterStatus
	resp, err := statusClient.Get(base + "/cluster")
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		return s, fmt.Errorf("%s/cluster: %d %s", base, resp.StatusCode, b)
	}
	return s, json.NewDecoder(resp.Body).Decode(&s)
}

// waitAgreed polls GET /cluster on every node until they agree on a ring
// of exactly names, or timeout passes; it returns the first node's view.
func waitAgreed(ctx context.Context, bases, names []string, timeout time.Duration) (clusterStatus, error) {
	deadline := time.Now().Add(timeout)
	for {
		sts := make([]clusterStatus, 0, len(bases))
		var err error
		for _, b := range bases {
			var s clusterStatus
			if s, err = getStatus(b); err != nil {
				break
			}
			sts = append(sts, s)
		}
		if err == nil && agreed(sts, names) {
			return sts[0], nil
		}
		if time.Now().After(deadline) {
			return clusterStatus{}, fmt.Errorf("nodes %v did not agree on a ring within %v (last error: %v, views: %+v)", names, timeout, err, sts)
		}
		select {
		case <-ctx.Done():
			return clusterStatus{}, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// forceGC has the node collect garbage: its profiler's heap profile with
// gc=1 runs a GC first.
func forceGC(debugBase string) error {
	resp, err := statusClient.Get(debugBase + "/debug/pprof/heap?gc=1")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	if err == nil && resp.StatusCode != 200 {
		err = fmt.Errorf("%s/debug/pprof/heap: %d", debugBase, resp.StatusCode)
	}
	return err
}

// StateConfig describes the state the memory runs create: per account,
// one edit adding a channel to a group, Publishes messages to that
// channel, and one list of the group (so its view is cached). Requests go
// round-robin over Nodes.
type StateConfig struct {
	Nodes     []string // base URLs
	Accounts  int
	Publishes int
	Workers   int
	Progress  *Progress
}

// CreateState runs the workload and returns the requests sent and how many
// failed. It fails only if every request of the first accounts did.
func CreateState(ctx context.Context, cfg StateConfig) (requests, failed int, err error) {
	clients := make([]*fasthttp.HostClient, len(cfg.Nodes))
	for i, n := range cfg.Nodes {
		clients[i] = newHostClient(hostOf(n), cfg.Workers)
		defer clients[i].CloseIdleConnections()
	}
	var next, sent, errs atomic.Int64
	var firstErr atomic.Value
	if cfg.Progress != nil {
		cfg.Progress.Scenario(fmt.Sprintf("cluster state: %d accounts on %d node(s)", cfg.Accounts, len(cfg.Nodes)), "requests", func() float64 { return float64(sent.Load()) })
	}
	do := func(k int, path string) {
		i := k % len(cfg.Nodes)
		var into any
		if err := fastGet(clients[i], cfg.Nodes[i]+path, &into); err != nil {
			errs.Add(1)
			firstErr.CompareAndSwap(nil, err.Error())
		}
		sent.Add(1)
	}
	var wg sync.WaitGroup
	for range cfg.Workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				a := int(next.Add(1)) - 1
				if a >= cfg.Accounts {
					return
				}
				acct := fmt.Sprintf("acct%05d", a)
				k := a * (cfg.Publishes + 2) // spreads every account's requests over the nodes
				cg := fmt.Sprintf("/v1/channel-registration/sub-key/%s/channel-group/g", acct)
				do(k, cg+"?add=c")
				for j := range cfg.Publishes {
					do(k+1+j, fmt.Sprintf("/publish/bench/%s/0/c/0/%d", acct, j))
				}
				do(k+1+cfg.Publishes, cg)
			}
		})
	}
	wg.Wait()
	requests, failed = int(sent.Load()), int(errs.Load())
	if ctx.Err() != nil {
		return requests, failed, ctx.Err()
	}
	if requests > 0 && failed == requests {
		return requests, failed, fmt.Errorf("every request failed, the first: %v", firstErr.Load())
	}
	return requests, failed, nil
}

// ForwardConfig describes the forward scenario.
type ForwardConfig struct {
	// Owner is a node owning the account's shard; NonOwner one that does not.
	Owner, NonOwner string // base URLs
	Account         string
	Samples         int
}

// Forward lists one group Samples times through each node, alternating,
// one request at a time.
func Forward(ctx context.Context, cfg ForwardConfig) (direct, forwarded Latencies, err error) {
	oc, fc := newHostClient(hostOf(cfg.Owner), 1), newHostClient(hostOf(cfg.NonOwner), 1)
	defer oc.CloseIdleConnections()
	defer fc.CloseIdleConnections()
	cg := fmt.Sprintf("/v1/channel-registration/sub-key/%s/channel-group/fwd", url.PathEscape(cfg.Account))
	var ed editAnswer
	if err := fastGet(oc, cfg.Owner+cg+"?add=c", &ed); err != nil {
		return direct, forwarded, err
	}
	var list struct {
		Payload struct {
			Channels []string `json:"channels"`
		} `json:"payload"`
	}
	// Warm both paths (the view, the forwarder's connection) unmeasured.
	for range 20 {
		if err := fastGet(oc, cfg.Owner+cg, &list); err != nil {
			return direct, forwarded, err
		}
		if err := fastGet(fc, cfg.NonOwner+cg, &list); err != nil {
			return direct, forwarded, err
		}
	}
	dh, fh := newHistogram(), newHistogram()
	for i := 0; i < cfg.Samples && ctx.Err() == nil; i++ {
		for _, p := range []struct {
			c    *fasthttp.HostClient
			base string
			h    interface{ RecordValue(int64) error }
		}{{oc, cfg.Owner, dh}, {fc, cfg.NonOwner, fh}} {
			start := time.Now()
			if err := fastGet(p.c, p.base+cg, &list); err != nil {
				return summarise(dh, 0), summarise(fh, 0), err
			}
			_ = p.h.RecordValue(max(1, time.Since(start).Microseconds()))
			if !slices.Contains(list.Payload.Channels, "c") {
				return summarise(dh, 0), summarise(fh, 0), fmt.Errorf("forward: %s lists %v, want [c]", p.base, list.Payload.Channels)
			}
		}
	}
	return summarise(dh, 0), summarise(fh, 0), ctx.Err()
}

// FailoverConfig describes the failover scenario.
type FailoverConfig struct {
	// Subscribe and Publish are the base URLs of surviving nodes the
	// subscribers and the publisher use.
	Subscribe, Publish string
	// Accounts get one subscriber each, on channel "c".
	Accounts []string
	// Every is the publisher's interval per channel.
	Every time.Duration
	// Before is how long deliveries run before Kill; After how long the
	// publisher goes on after it.
	Before, After time.Duration
	// Kill kills the node; Gone reports whether a view of the cluster no
	// longer has it and is settled.
	Kill func() error
	Gone func(clusterStatus) bool
}

// Failover runs the failover scenario and measures each subscriber's
// longest gap between deliveries around the kill.
func Failover(ctx context.Context, cfg FailoverConfig) (FailoverResult, error) {
	res := FailoverResult{Subscribers: len(cfg.Accounts), Every: cfg.Every}
	n := len(cfg.Accounts)
	sc, pc := newHostClient(hostOf(cfg.Subscribe), n), newHostClient(hostOf(cfg.Publish), n)
	defer sc.CloseIdleConnections()
	defer pc.CloseIdleConnections()

	type sub struct {
		mu       sync.Mutex
		arrivals []time.Time
		got      map[int64]bool
	}
	subs := make([]*sub, n)
	acked := make([][]int64, n)
	var pollErrs, published, unavailable, failed atomic.Int64

	// Every subscriber's cursor first, so that none misses the first messages.
	cursors := make([]string, n)
	for i, a := range cfg.Accounts {
		subs[i] = &sub{got: map[int64]bool{}}
		var hs subscribeAnswer
		if err := fastGet(sc, fmt.Sprintf("%s/v2/subscribe/%s/c/0?tt=0&uuid=s%d", cfg.Subscribe, a, i), &hs); err != nil {
			return res, fmt.Errorf("failover handshake: %w", err)
		}
		cursors[i] = hs.T.T
	}
	pollsEnd := make(chan struct{}) // closed when the subscribers are to stop
	var subsDone sync.WaitGroup
	for i, a := range cfg.Accounts {
		subsDone.Go(func() {
			s, cursor := subs[i], cursors[i]
			for {
				select {
				case <-pollsEnd:
					return
				default:
				}
				var ans subscribeAnswer
				err := pollOnce(sc, fmt.Sprintf("%s/v2/subscribe/%s/c/0?tt=%s&uuid=s%d", cfg.Subscribe, a, cursor, i), time.Second, &ans)
				if errors.Is(err, fasthttp.ErrTimeout) {
					continue // parked with nothing new: poll again (a gap, not an error)
				}
				if err != nil {
					pollErrs.Add(1)
					select {
					case <-pollsEnd:
						return
					case <-time.After(20 * time.Millisecond):
					}
					continue
				}
				now := time.Now()
				s.mu.Lock()
				for _, m := range ans.M {
					if v, err := strconv.ParseInt(string(m.D), 10, 64); err == nil {
						s.got[v] = true
					}
				}
				if len(ans.M) > 0 {
					s.arrivals = append(s.arrivals, now)
				}
				s.mu.Unlock()
				cursor = ans.T.T
			}
		})
	}
	defer func() {
		select {
		case <-pollsEnd:
		default:
			close(pollsEnd)
		}
		subsDone.Wait()
	}()

	pubStop := make(chan struct{})
	var pubsDone sync.WaitGroup
	var ackMu sync.Mutex
	failures := map[string]int64{}
	failure := func(why string) {
		failed.Add(1)
		ackMu.Lock()
		failures[why]++
		ackMu.Unlock()
	}
	for i, a := range cfg.Accounts {
		pubsDone.Go(func() {
			tick := time.NewTicker(cfg.Every)
			defer tick.Stop()
			for seq := int64(0); ; seq++ {
				select {
				case <-pubStop:
					return
				case <-tick.C:
				}
				req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
				req.SetRequestURI(fmt.Sprintf("%s/publish/bench/%s/0/c/0/%d", cfg.Publish, a, seq))
				err := pc.DoTimeout(req, resp, 2*time.Second)
				switch {
				case errors.Is(err, fasthttp.ErrTimeout):
					failure("timeout")
				case err != nil:
					failure("error")
				case resp.StatusCode() == fasthttp.StatusServiceUnavailable:
					unavailable.Add(1)
				case resp.StatusCode() != 200:
					failure(strconv.Itoa(resp.StatusCode()))
				default:
					published.Add(1)
					ackMu.Lock()
					acked[i] = append(acked[i], seq)
					ackMu.Unlock()
				}
				fasthttp.ReleaseRequest(req)
				fasthttp.ReleaseResponse(resp)
			}
		})
	}
	stopPublishing := sync.OnceFunc(func() { close(pubStop); pubsDone.Wait() })
	defer stopPublishing()

	// Warm: every subscriber has had a delivery.
	for deadline := time.Now().Add(15 * time.Second); ; {
		warm := 0
		for _, s := range subs {
			s.mu.Lock()
			if len(s.arrivals) > 0 {
				warm++
			}
			s.mu.Unlock()
		}
		if warm == n {
			break
		}
		if time.Now().After(deadline) {
			return res, fmt.Errorf("failover: %d of %d subscribers had a delivery after 15s", warm, n)
		}
		if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
			return res, err
		}
	}
	if err := sleepCtx(ctx, cfg.Before); err != nil {
		return res, err
	}
	killedAt := time.Now()
	if err := cfg.Kill(); err != nil {
		return res, fmt.Errorf("failover kill: %w", err)
	}
	end := killedAt.Add(cfg.After)
	for time.Now().Before(end) && ctx.Err() == nil {
		if res.RingAfter == 0 {
			if st, err := getStatus(cfg.Subscribe); err == nil && cfg.Gone(st) {
				res.RingAfter = time.Since(killedAt).Seconds()
			}
		}
		_ = sleepCtx(ctx, 25*time.Millisecond)
	}
	stopPublishing()
	// Let the last acknowledged messages arrive, then stop the subscribers.
	missing := func() int64 {
		var lost int64
		for i, s := range subs {
			s.mu.Lock()
			for _, seq := range acked[i] {
				if !s.got[seq] {
					lost++
				}
			}
			s.mu.Unlock()
		}
		return lost
	}
	for deadline := time.Now().Add(3 * time.Second); missing() > 0 && time.Now().Before(deadline); {
		_ = sleepCtx(ctx, 50*time.Millisecond)
	}
	close(pollsEnd)
	subsDone.Wait()

	h := newHistogram()
	for _, s := range subs {
		gap, silent := longestGap(s.arrivals, killedAt.Add(-time.Second), end, killedAt)
		if silent {
			res.Silent++
		}
		_ = h.RecordValue(max(1, gap.Microseconds()))
	}
	res.Gap = summarise(h, res.Silent)
	res.Published, res.Unavailable, res.Failed = published.Load(), unavailable.Load(), failed.Load()
	if len(failures) > 0 {
		res.Failures = failures // the publishers have stopped
	}
	res.Lost, res.PollErrors = missing(), pollErrs.Load()
	return res, ctx.Err()
}

// pollOnce is one subscribe request that gives up after d with
// fasthttp.ErrTimeout, so a subscriber can notice that it is to stop.
// Giving up closes the connection; the node's poll ends with it.
func pollOnce(hc *fasthttp.HostClient, u string, d time.Duration, into any) error {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(u)
	if err := hc.DoTimeout(req, resp, d); err != nil {
		return err
	}
	if resp.StatusCode() != 200 {
		return fmt.Errorf("%s: %d %s", u, resp.StatusCode(), resp.Body())
	}
	return json.Unmarshal(resp.Body(), into)
}

// longestGap is the longest time in [from, to] without an arrival: the
// edges count as arrivals, so a subscriber that got nothing has the whole
// window. silent reports that nothing arrived after since.
func longestGap(arrivals []time.Time, from, to, since time.Time) (gap time.Duration, silent bool) {
	prev := from
	silent = true
	for _, a := range arrivals {
		if a.Before(from) || a.After(to) {
			continue
		}
		gap = max(gap, a.Sub(prev))
		prev = a
		if a.After(since) {
			silent = false
		}
	}
	return max(gap, to.Sub(prev)), silent
}

// failoverAccounts picks n accounts (named prefix0, prefix1, …) whose shard
// victim owns, half as its primary and half as its second owner.
func failoverAccounts(st clusterStatus, shards int, victim, prefix string, n int) (accounts []string, primary, second int) {
	wantPrimary := (n + 1) / 2
	for i := 0; len(accounts) < n && i < 1_000_000; i++ {
		a := fmt.Sprintf("%s%d", prefix, i)
		owners := st.owners(a, shards)
		switch {
		case len(owners) > 0 && owners[0] == victim && primary < wantPrimary:
			primary++
		case len(owners) > 1 && owners[1] == victim && second < n-wantPrimary:
			second++
		default:
			continue
		}
		accounts = append(accounts, a)
	}
	return accounts, primary, second
}

// forwardAccount picks an account (prefix0, prefix1, …) whose shard has
// both an owner and a non-owner among names, and returns them.
func forwardAccount(st clusterStatus, shards int, names []string, prefix string) (account, owner, nonOwner string, ok bool) {
	for i := range 10_000 {
		a := fmt.Sprintf("%s%d", prefix, i)
		owners := st.owners(a, shards)
		if len(owners) == 0 {
			continue
		}
		for _, n := range names {
			if !slices.Contains(owners, n) {
				return a, owners[0], n, true
			}
		}
	}
	return "", "", "", false
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

func mib(b float64) string {
	if math.Abs(b) >= 100<<20 {
		return fmt.Sprintf("%.0f MiB", b/(1<<20))
	}
	return fmt.Sprintf("%.1f MiB", b/(1<<20))
}
