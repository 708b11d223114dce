package clustercheck

// The two-region history checker (RunRegions): the same client model as
// Run, with every request sent to a random node of one region's pool, and
// the cross-region guarantees of DESIGN §7a checked on the history:
//
//   - ryw_violations: an editor's list in the OTHER region, carrying the
//     token of its latest edit, that contradicts its own channels.
//   - g3_missed, g3_leaked: trials that add a channel in one region (A),
//     publish in the other (B) with the add's token, remove it in B with
//     the add's token and publish in A with the remove's token;
//     subscribers of the group in both regions are owed the first message
//     and must not get the second through the group. In both regions' logs
//     the add comes before the first message, which comes before the
//     remove (the remove and the first message are appended in B's order
//     and copied in that order). Every third trial publishes no first
//     message, so that nothing makes B wait for the add before the remove.
//   - lost, duplicated: every acknowledged message, published in either
//     region, is owed exactly once to every subscriber of its channel in
//     both regions; deliveries are matched by payload id, publish timetoken
//     (p.t) and origin region (p.r).
//   - views_diverged: at the end, for every group edited (concurrent
//     conflicting edits of the same channels come from both regions), the
//     store's answers in both regions' datacenters (RegionsConfig.Stored)
//     agree, and a plain list on every node of both regions equals them,
//     each within Settle.
//   - edits_lost: a channel of the checker's own whose final answer
//     contradicts its last acknowledged edit.
//   - unavailable, retry_after_missing: 503 answers with and without
//     Retry-After (the latter must be 0), counted on the wire.
//   - local_failures: failed attempts of purely local operations (edits
//     with the region's own tokens, publishes without a token).

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// RegionsConfig describes one run of RunRegions. Zero values mean the
// documented defaults.
type RegionsConfig struct {
	// Regions returns each region's current pool of base URLs:
	// Regions[0] is region 1, Regions[1] region 2. Each is called for every
	// request and may change during the run. Exactly two are required.
	Regions []func() []string
	// Account is the subscribe key every request uses; it should be private
	// to the run. Required.
	Account string
	// Duration is how long editors, G3 workers and publishers run; zero
	// means 15s.
	Duration time.Duration
	// Drain bounds the end: subscribers catching up with the final markers
	// from both regions, and each final read; zero means 60s.
	Drain time.Duration
	// Settle bounds how long the store's answers in the two regions may take to
	// agree and every node's plain list to equal them; zero means 10s.
	Settle time.Duration
	// EditEvery paces each of the 4 editors (2 per region); zero means 200ms.
	EditEvery time.Duration
	// TrialEvery paces each of the 2 G3 workers (one per direction); zero
	// means 500ms.
	TrialEvery time.Duration
	// PublishEvery paces each region's publisher; zero means 100ms.
	PublishEvery time.Duration
	// RequestTimeout bounds a request other than a long-poll; zero means 10s.
	RequestTimeout time.Duration
	// PollTimeout bounds a subscribe long-poll on the client; zero means 60s.
	PollTimeout time.Duration
	// Seed seeds the clients' random choices; zero means the clock.
	Seed uint64
	// Stored, if not nil, reads a group of the account as region's
	// datacenter of the store holds it, directly (not through a node): the
	// answer every view must converge to. Nil means a fully consistent read
	// through a node of the region, which merges what the node holds in
	// memory over the store's answer.
	Stored func(ctx context.Context, region int, account, group string) ([]string, error)
	// BeforeCheck, if not nil, is called once the subscribers have caught
	// up (or Drain ran out), before the final reads: a test's hook to
	// inject a fault the final reads must see.
	BeforeCheck func()
	// IgnoreTokens is a deliberate client fault, to show the checker can
	// fail: cross-region reads drop the token and ask for minimize_latency,
	// and the G3 trials' publishes and remove carry no token.
	IgnoreTokens bool
}

func (c RegionsConfig) validate() (RegionsConfig, error) {
	if len(c.Regions) != 2 || c.Regions[0] == nil || c.Regions[1] == nil {
		return c, errors.New("clustercheck: RegionsConfig.Regions needs a pool for region 1 and one for region 2")
	}
	if c.Account == "" {
		return c, errors.New("clustercheck: RegionsConfig.Account is required")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.Duration, 15*time.Second)
	def(&c.Drain, 60*time.Second)
	def(&c.Settle, 10*time.Second)
	def(&c.EditEvery, 200*time.Millisecond)
	def(&c.TrialEvery, 500*time.Millisecond)
	def(&c.PublishEvery, 100*time.Millisecond)
	def(&c.RequestTimeout, 10*time.Second)
	def(&c.PollTimeout, 60*time.Second)
	if c.Seed == 0 {
		c.Seed = uint64(time.Now().UnixNano())
	}
	return c, nil
}

// RegionsResult is what RunRegions found. The violation counters, client
// errors and 503s without Retry-After must be 0.
type RegionsResult struct {
	ViewsDiverged int // (group, node) lists not equal to the store's answer (agreed by both regions) within Settle; groups whose regions never agreed
	RYWViolations int // cross-region lists with an editor's token contradicting its own channels
	G3Missed      int // (subscriber, message) pairs owed through a watched group, not delivered
	G3Leaked      int // (subscriber, message) pairs delivered through a group that did not hold the channel
	Lost          int // (subscriber, acknowledged message) pairs owed and never delivered
	Duplicated    int // (subscriber, message) pairs delivered more than once
	EditsLost     int // own channels whose final state contradicts their last acknowledged edit

	Unavailable       int // 503 with Retry-After
	RetryAfterMissing int // 503 without Retry-After (must be 0)
	LocalFailures     int // failed attempts of operations that need no other region
	ClientErrors      int // answers other than 200 and 503 + Retry-After (must be 0)
	ConnErrors        int // no HTTP answer (a node died or is restarting)

	Edits, ConflictEdits, EqualTimetokens, CrossReads, Trials int // volume; EqualTimetokens: conflicting edits of both regions that got the same timetoken
	Published, CrossPublishes, Delivered, Subscribers, Groups int
	Undrained                                                 int // subscribers that had not caught up when Drain ran out

	First          string   // the first violation, human readable
	Examples       []string // the first few violations of each kind
	FirstError     string   // the first client error
	FirstConnError string   // the first connection error
}

// String is the one-line report, starting with "views_diverged=".
func (r RegionsResult) String() string {
	return fmt.Sprintf("views_diverged=%d ryw_violations=%d g3_missed=%d g3_leaked=%d lost=%d duplicated=%d edits_lost=%d unavailable=%d retry_after_missing=%d local_failures=%d client_errors=%d conn_errors=%d edits=%d conflict_edits=%d equal_timetokens=%d cross_reads=%d g3_trials=%d messages=%d cross_publishes=%d delivered=%d subscribers=%d groups=%d undrained=%d",
		r.ViewsDiverged, r.RYWViolations, r.G3Missed, r.G3Leaked, r.Lost, r.Duplicated, r.EditsLost,
		r.Unavailable, r.RetryAfterMissing, r.LocalFailures, r.ClientErrors, r.ConnErrors,
		r.Edits, r.ConflictEdits, r.EqualTimetokens, r.CrossReads, r.Trials, r.Published, r.CrossPublishes, r.Delivered, r.Subscribers, r.Groups, r.Undrained)
}

// Failed reports whether a guarantee was violated, or a client saw an error
// other than unavailability or a lost connection, or a 503 came without
// Retry-After. LocalFailures is the caller's to judge (a killed node fails
// the requests it had).
func (r RegionsResult) Failed() bool {
	return r.ViewsDiverged+r.RYWViolations+r.G3Missed+r.G3Leaked+r.Lost+r.Duplicated+r.EditsLost+r.RetryAfterMissing+r.ClientErrors > 0
}

// Group and channel names of a regions run. The prefixes of channel names
// say what they are for: e (an editor's own), x (edited from both
// regions), t (a G3 trial), p (publishers'), base (a watched group's
// permanent member).
const (
	conflictChannels = 4
	regionPubChans   = 4
)

// geoRun is the shared state of one RunRegions.
type geoRun struct {
	cfg     RegionsConfig
	c       [2]*caller
	tr      *http.Transport
	missing atomic.Int64 // 503s without Retry-After

	mu       sync.Mutex
	pubs     map[string]*geoPub
	final    map[string]map[string]*state // group → own channel → last acknowledged state
	touched  map[string]bool              // every group edited
	editTT   map[int64]int                // conflict edit timetoken → bit per region that got it
	ryw      int
	local    int
	edits    int
	conflict int
	reads    int
	trials   int
	first    string
	examples []string
	kinds    map[string]int // examples kept, by kind
}

// geoPub is one publish.
type geoPub struct {
	id      string
	channel string
	group   string // watched group, for g3 kinds
	kind    pubKind
	region  int // where it was published (1 or 2)
	cross   bool
	acked   bool
	tt      int64
	node    string
	after   string // for g3 kinds: the edit it was published after
}

// violation records a violation: the first, and a few examples of each
// kind (the words before the first colon); r.mu held.
func (r *geoRun) violation(format string, args ...any) {
	v := fmt.Sprintf(format, args...)
	if r.first == "" {
		r.first = v
	}
	kind, _, _ := strings.Cut(v, ":")
	if r.kinds[kind] < examplesPerKind {
		r.kinds[kind]++
		r.examples = append(r.examples, v)
	}
}

// examplesPerKind bounds RegionsResult.Examples.
const examplesPerKind = 3

func (r *geoRun) rand(i int) *rand.Rand { return rand.New(rand.NewPCG(r.cfg.Seed, uint64(i))) }

// retryAfterCounter counts, on the wire, 503 answers without Retry-After.
type retryAfterCounter struct {
	base    http.RoundTripper
	missing *atomic.Int64
}

func (c retryAfterCounter) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.base.RoundTrip(req)
	if err == nil && resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") == "" {
		c.missing.Add(1)
	}
	return resp, err
}

// RunRegions runs the two-region clients for cfg.Duration, lets every
// subscriber catch up with markers published in both regions, and checks
// the history (see the comment at the top of this file). A Config error is
// reported as a client error in the result.
func RunRegions(ctx context.Context, cfg RegionsConfig) RegionsResult {
	cfg, err := cfg.validate()
	if err != nil {
		return RegionsResult{ClientErrors: 1, FirstError: err.Error()}
	}
	r := &geoRun{cfg: cfg, pubs: map[string]*geoPub{}, final: map[string]map[string]*state{}, touched: map[string]bool{}, editTT: map[int64]int{}, kinds: map[string]int{}}
	r.tr = &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 256, IdleConnTimeout: 30 * time.Second}
	defer r.tr.CloseIdleConnections()
	rt := retryAfterCounter{base: r.tr, missing: &r.missing}
	for i := range r.c {
		r.c[i] = &caller{
			nodes: cfg.Regions[i],
			hc:    &http.Client{Timeout: cfg.RequestTimeout, Transport: rt},
			poll:  &http.Client{Timeout: cfg.PollTimeout, Transport: rt},
		}
	}

	setupCtx, cancelSetup := context.WithTimeout(ctx, cfg.Drain)
	r.setup(setupCtx)
	cancelSetup()

	// Subscribers in both regions handshake first, so that everything
	// published afterwards, in either region, is owed to them.
	var followers []*geoFollower
	for region := 1; region <= 2; region++ {
		for i := range 3 {
			followers = append(followers, r.newFollower(region, i))
		}
	}
	hsCtx, cancelHS := context.WithTimeout(ctx, cfg.Drain)
	var hsWG sync.WaitGroup
	for _, f := range followers {
		hsWG.Go(func() { f.handshake(hsCtx, r) })
	}
	hsWG.Wait()
	cancelHS()
	subCtx, stopSubs := context.WithCancel(ctx)
	defer stopSubs()
	var subWG sync.WaitGroup
	for _, f := range followers {
		if f.start != 0 {
			subWG.Go(func() { f.follow(subCtx, r) })
		}
	}

	wctx, stopWork := context.WithTimeout(ctx, cfg.Duration)
	var wg sync.WaitGroup
	for region := 1; region <= 2; region++ {
		for i := range 2 {
			wg.Go(func() { r.editor(wctx, ctx, region, i) })
		}
		wg.Go(func() { r.publisher(wctx, region) })
		// This region's G3 worker adds here and publishes in the other.
		wg.Go(func() { r.g3Worker(wctx, ctx, region) })
	}
	wg.Wait()
	stopWork()

	dctx, cancelDrain := context.WithTimeout(ctx, cfg.Drain)
	defer cancelDrain()
	r.markers(dctx)
	undrained := 0
	for _, f := range followers {
		if !f.await(dctx, r) {
			undrained++
		}
	}
	stopSubs()
	subWG.Wait()
	cancelDrain()

	if cfg.BeforeCheck != nil {
		cfg.BeforeCheck()
	}
	fctx, cancelFinal := context.WithTimeout(ctx, cfg.Drain)
	defer cancelFinal()
	res := r.check(fctx, followers)
	res.Undrained = undrained
	return res
}

// setup puts each watched group's permanent channel in, from region 1.
func (r *geoRun) setup(ctx context.Context) {
	rnd := r.rand(0)
	for g := range 2 {
		group, ch := fmt.Sprintf("%s%d", watchGroup, g), fmt.Sprintf("base%d", g)
		_, _, _, acked := r.edit(ctx, rnd, 1, "", group, "add", ch, true)
		r.mu.Lock()
		r.record(group, ch, true, !acked)
		r.mu.Unlock()
	}
}

// record sets an own channel's last acknowledged state; r.mu held.
func (r *geoRun) record(group, ch string, present, unknown bool) {
	g := r.final[group]
	if g == nil {
		g = map[string]*state{}
		r.final[group] = g
	}
	g[ch] = &state{present: present, unknown: unknown}
	r.touched[group] = true
}

// check compares the recorded history with the final reads and what every
// subscriber got.
func (r *geoRun) check(ctx context.Context, followers []*geoFollower) RegionsResult {
	var res RegionsResult
	r.mu.Lock()
	groups := slices.Sorted(func(yield func(string) bool) {
		for g := range r.touched {
			if !yield(g) {
				return
			}
		}
	})
	r.mu.Unlock()
	res.Groups = len(groups)
	for _, g := range groups {
		want, agreed := r.agreed(ctx, g)
		if !agreed {
			res.ViewsDiverged++
			continue
		}
		res.ViewsDiverged += r.settled(ctx, g, want)
		r.mu.Lock()
		for ch, s := range r.final[g] {
			if !s.unknown && want[ch] != s.present {
				res.EditsLost++
				r.violation("edit lost: the last acknowledged edit left %s present=%v in %s; the store's final answer has present=%v", ch, s.present, g, want[ch])
			}
		}
		r.mu.Unlock()
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	res.RYWViolations, res.Edits, res.ConflictEdits, res.CrossReads, res.Trials, res.LocalFailures = r.ryw, r.edits, r.conflict, r.reads, r.trials, r.local
	for _, mask := range r.editTT {
		if mask == 3 {
			res.EqualTimetokens++
		}
	}
	ids := slices.Sorted(func(yield func(string) bool) {
		for id := range r.pubs {
			if !yield(id) {
				return
			}
		}
	})
	for _, id := range ids {
		if p := r.pubs[id]; p.acked {
			res.Published++
			if p.cross {
				res.CrossPublishes++
			}
		}
	}
	for _, f := range followers {
		if f.start == 0 {
			continue
		}
		res.Subscribers++
		f.mu.Lock()
		for k, n := range f.got {
			res.Delivered += n
			if n > 1 {
				res.Duplicated++
				r.violation("duplicate: subscriber %s in region %d got %s (p.t %d, p.r %d) %d times", f.uuid, f.region, k.id, k.tt, k.region, n)
			}
		}
		for _, id := range ids {
			p := r.pubs[id]
			key := geoDelivery{p.id, p.tt, p.region}
			switch p.kind {
			case plain, marker:
				if p.acked && f.follows(p) && f.got[key] == 0 {
					res.Lost++
					r.violation("lost: subscriber %s in region %d never got %s on %s (tt %d, published in region %d by %s)%s", f.uuid, f.region, p.id, p.channel, p.tt, p.region, p.node, f.otherwise(p.id))
				}
			case g3In:
				if p.acked && slices.Contains(f.groups, p.group) && f.got[key] == 0 {
					res.G3Missed++
					r.violation("g3 missed: subscriber %s of %s in region %d never got %s on %s (tt %d, published in region %d by %s with the token of %s)%s", f.uuid, p.group, f.region, p.id, p.channel, p.tt, p.region, p.node, p.after, f.otherwise(p.id))
				}
			case g3Out:
				if b, found := f.via[p.id]; found && b != "" {
					res.G3Leaked++
					r.violation("g3 leaked: subscriber %s in region %d got %s on %s through %s, published in region %d (tt %d, by %s) after %s, with its token", f.uuid, f.region, p.id, p.channel, b, p.region, p.tt, p.node, p.after)
				}
			}
			if b, found := f.via[p.id]; found && p.kind != g3Out && b != "" && b != p.group {
				res.G3Leaked++
				r.violation("leaked: subscriber %s in region %d got %s on %s through group %s, which never held it", f.uuid, f.region, p.id, p.channel, b)
			}
		}
		f.mu.Unlock()
	}
	for _, c := range r.c {
		res.ClientErrors += int(c.clientErrors.Load())
		res.Unavailable += int(c.unavailable.Load())
		res.ConnErrors += int(c.connErrors.Load())
		c.mu.Lock()
		res.FirstError = cmp.Or(res.FirstError, c.firstError)
		res.FirstConnError = cmp.Or(res.FirstConnError, c.firstConnError)
		c.mu.Unlock()
	}
	res.RetryAfterMissing = int(r.missing.Load())
	res.First, res.Examples = r.first, r.examples
	return res
}

// agreed reads g from the store in both regions until the answers agree
// (Cassandra replicates between its datacenters asynchronously) or
// Settle passes.
func (r *geoRun) agreed(ctx context.Context, g string) (map[string]bool, bool) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Settle)
	defer cancel()
	rnd := r.rand(1 << 20)
	var answers [2]map[string]bool
	for {
		for i := range answers {
			got, okd := r.stored(ctx, rnd, i+1, g)
			if !okd {
				r.mu.Lock()
				r.violation("views diverged: no answer from the store for %s in region %d within %v", g, i+1, r.cfg.Settle)
				r.mu.Unlock()
				return nil, false
			}
			answers[i] = got
		}
		if sameSet(answers[0], answers[1]) {
			return answers[0], true
		}
		if !pause(ctx, 50*time.Millisecond) {
			r.mu.Lock()
			r.violation("views diverged: the store's answers for %s still differ after %v: region 1 %v, region 2 %v", g, r.cfg.Settle, keys(answers[0]), keys(answers[1]))
			r.mu.Unlock()
			return nil, false
		}
	}
}

// stored is g as region's datacenter holds it (cfg.Stored, or a fully
// consistent read), retried until it answers or ctx ends.
func (r *geoRun) stored(ctx context.Context, rnd *rand.Rand, region int, g string) (map[string]bool, bool) {
	if r.cfg.Stored == nil {
		return r.list(ctx, rnd, region, "", g, "", "fully_consistent", true)
	}
	for {
		chs, err := r.cfg.Stored(ctx, region, r.cfg.Account, g)
		if err == nil {
			got := map[string]bool{}
			for _, c := range chs {
				got[c] = true
			}
			return got, true
		}
		if !pause(ctx, 100*time.Millisecond) {
			return nil, false
		}
	}
}

// settled polls a plain list of g on every node of both regions until each
// equals want or Settle passes, and returns how many did not.
func (r *geoRun) settled(ctx context.Context, g string, want map[string]bool) int {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Settle)
	defer cancel()
	type node struct {
		region int
		url    string
	}
	var pending []node
	for i := range r.c {
		for _, u := range r.c[i].nodes() {
			pending = append(pending, node{i + 1, u})
		}
	}
	last := map[node]map[string]bool{}
	for len(pending) > 0 {
		pending = slices.DeleteFunc(pending, func(n node) bool {
			got, okd := r.listOn(ctx, n.region, n.url, g, "", "")
			if okd {
				last[n] = got
			}
			return okd && sameSet(got, want)
		})
		if len(pending) == 0 || !pause(ctx, 50*time.Millisecond) {
			break
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range pending {
		r.violation("views diverged: %s on %s (region %d) lists %v after %v; the store's answer in both regions is %v", g, n.url, n.region, keys(last[n]), r.cfg.Settle, keys(want))
	}
	return len(pending)
}

func sameSet(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

func keys(m map[string]bool) []string {
	return slices.Sorted(func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	})
}
