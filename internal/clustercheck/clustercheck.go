// Package clustercheck is the history checker of a multi-node cluster:
// concurrent clients spread over the current nodes edit channel groups,
// read them back with their causal tokens, run G3 add/publish/remove trials
// and publish to channels that subscribers follow with their cursors, while
// the test kills, stops, restarts and adds nodes. Every request goes to a
// random node of the current pool. What was acknowledged is recorded and,
// at the end, checked against what was read and delivered:
//
//   - ryw_violations (G2): a list carrying the editor's latest token that
//     contradicts the editor's own channels' acknowledged state.
//   - edits_lost (G1, G5): a final fully consistent list of a group that
//     contradicts the last acknowledged edit of a channel.
//   - g3_missed, g3_leaked (G3): a message published after its channel's add
//     returned (with the add's token) and acknowledged before the remove was
//     issued, not delivered through the watched group to a subscriber whose
//     first cursor precedes it; a message published after the remove
//     returned, delivered through the group (or one delivered through a
//     group that never held its channel).
//   - lost, duplicated (G6): an acknowledged message a subscriber should
//     have got (its channel followed, published after the subscriber's first
//     cursor) never delivered, or delivered more than once; deliveries are
//     matched by publish timetoken and payload id.
//
// RunRegions (regions.go) is the two-region checker: conflicting edits of
// the same channels from both regions, reads in one region carrying the
// other's tokens, G3 trials across regions, subscribers in both regions
// following messages from both, convergence to each datacenter's answer;
// CheckReplication (replication.go) reads both regions' logs and checks
// every entry was copied exactly once.
//
// Client-visible errors are counted by class: client_errors (anything but
// a 503 with Retry-After or a connection error; must be 0), unavailable
// (503 + Retry-After, allowed) and conn_errors (no HTTP answer, which a
// client of a dying node sees).
package clustercheck

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"
)

// Config describes one run. Zero values mean the documented defaults.
type Config struct {
	// Nodes returns the current pool of base URLs; it is called for every
	// request and may change during the run. Required.
	Nodes func() []string
	// Clients is the number of concurrent clients, split into editors (1/5),
	// G3 workers (1/5), publishers (1/10) and subscribers (the rest); zero
	// means 20, the least accepted.
	Clients int
	// Duration is how long editors, G3 workers and publishers run; zero
	// means 10s. Subscribers then follow until they have caught up.
	Duration time.Duration
	// Account is the subscribe key every request uses; it should be
	// private to the run. Required.
	Account string
	// Drain bounds the end of the run: subscribers catching up with the
	// final markers, and each final read; zero means 30s.
	Drain time.Duration
	// PublishEvery paces each publisher, which publishes to its 4 channels
	// in turn; zero means 100ms (2.5 messages/s per channel, so a subscriber
	// away for 15 s stays well inside a 100-message window).
	PublishEvery time.Duration
	// TrialEvery paces each G3 worker (4 requests, 2 messages a trial);
	// zero means 700ms (under 3 messages/s on a re-used channel).
	TrialEvery time.Duration
	// EditEvery paces each editor (an edit and a list); zero means 20ms.
	EditEvery time.Duration
	// RequestTimeout bounds a request other than a long-poll; zero means 10s.
	RequestTimeout time.Duration
	// PollTimeout bounds a subscribe long-poll on the client; zero means 60s.
	PollTimeout time.Duration
	// Seed seeds the clients' random choices; zero means the clock.
	Seed uint64
}

func (c Config) validate() (Config, error) {
	if c.Nodes == nil {
		return c, errors.New("clustercheck: Nodes is required")
	}
	if c.Account == "" {
		return c, errors.New("clustercheck: Account is required")
	}
	if c.Clients == 0 {
		c.Clients = 20
	}
	if c.Clients < 20 {
		return c, fmt.Errorf("clustercheck: Clients = %d, want at least 20", c.Clients)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.Duration, 10*time.Second)
	def(&c.Drain, 30*time.Second)
	def(&c.PublishEvery, 100*time.Millisecond)
	def(&c.TrialEvery, 700*time.Millisecond)
	def(&c.EditEvery, 20*time.Millisecond)
	def(&c.RequestTimeout, 10*time.Second)
	def(&c.PollTimeout, 60*time.Second)
	if c.Seed == 0 {
		c.Seed = uint64(time.Now().UnixNano())
	}
	return c, nil
}

// Result is what the checker found. The violation counters must be 0.
type Result struct {
	RYWViolations int // lists with the editor's token contradicting its own channels
	G3Missed      int // (subscriber, message) pairs owed through a watched group, not delivered
	G3Leaked      int // (subscriber, message) pairs delivered through a group that did not hold the channel
	Lost          int // (subscriber, acknowledged message) pairs owed and never delivered
	Duplicated    int // (subscriber, message) pairs delivered more than once
	EditsLost     int // channels whose final fully consistent state contradicts their last acknowledged edit

	FailoverGapP99, FailoverGapMax time.Duration // longest gap between answers per subscriber, over subscribers

	ClientErrors int // answers other than 200 and 503 + Retry-After (must be 0)
	Unavailable  int // 503 with Retry-After
	ConnErrors   int // no HTTP answer (a node died or is restarting)

	Edits, Reads, Trials, Published, Delivered, Subscribers int // volume
	Undrained                                               int // subscribers that had not caught up when Drain ran out

	First          string   // the first violation, human readable
	Examples       []string // the first few violations
	FirstError     string   // the first client error
	FirstConnError string   // the first connection error
}

// String is the one-line report, starting with "ryw_violations=".
func (r Result) String() string {
	return fmt.Sprintf("ryw_violations=%d g3_missed=%d g3_leaked=%d lost=%d duplicated=%d edits_lost=%d failover_gap_p99=%v client_errors=%d unavailable=%d conn_errors=%d failover_gap_max=%v edits=%d reads=%d g3_trials=%d published=%d delivered=%d subscribers=%d undrained=%d",
		r.RYWViolations, r.G3Missed, r.G3Leaked, r.Lost, r.Duplicated, r.EditsLost,
		r.FailoverGapP99.Round(time.Millisecond), r.ClientErrors, r.Unavailable, r.ConnErrors,
		r.FailoverGapMax.Round(time.Millisecond), r.Edits, r.Reads, r.Trials, r.Published, r.Delivered, r.Subscribers, r.Undrained)
}

// Failed reports whether any guarantee was violated or a client saw an
// error other than unavailability.
func (r Result) Failed() bool {
	return r.RYWViolations+r.G3Missed+r.G3Leaked+r.Lost+r.Duplicated+r.EditsLost+r.ClientErrors > 0
}

// Group names of a run (all in cfg.Account).
const (
	staticGroup = "static" // publisher channels, never edited after set-up
	editorGroup = "ed"     // + editor % 2
	watchGroup  = "watch"  // + worker % 2; G3 trials
)

// run is the shared state of one Run.
type run struct {
	cfg Config
	c   *caller

	mu        sync.Mutex
	pubs      map[string]*pubRec           // payload id → publish
	final     map[string]map[string]*state // group → channel → last acknowledged state
	ryw       int
	edits     int
	reads     int
	trials    int
	first     string
	examples  []string
	editedAt  map[string]time.Time // G3 message id → when its trial's edit returned
	pubChans  []string             // every publisher channel
	staticChs []string             // the static group's channels
}

// state is a channel's last acknowledged membership; unknown after an edit
// whose outcome the client could not learn.
type state struct {
	present, unknown bool
}

// pubKind says what a published message is owed as.
type pubKind int

const (
	plain     pubKind = iota // publisher message: owed to followers of its channel
	marker                   // end-of-run marker: likewise
	g3In                     // published between add and remove: owed through the group
	g3Out                    // published after the remove returned: forbidden through the group
	g3Unknown                // published in a trial whose state is unknown: neither
)

type pubRec struct {
	id      string
	channel string
	group   string // watched group, for g3 kinds
	kind    pubKind
	acked   bool
	tt      int64
	node    string    // that acknowledged it
	at      time.Time // when it was acknowledged
}

func (r *run) violation(format string, args ...any) {
	if r.first == "" {
		r.first = fmt.Sprintf(format, args...)
	}
	if len(r.examples) < maxExamples {
		r.examples = append(r.examples, fmt.Sprintf(format, args...))
	}
}

// maxExamples bounds Result.Examples.
const maxExamples = 10

// Run runs the clients for cfg.Duration, lets the subscribers catch up,
// reads every group fully consistently and checks the history. A Config
// error is reported as a client error in the Result.
func Run(ctx context.Context, cfg Config) Result {
	cfg, err := cfg.validate()
	if err != nil {
		return Result{ClientErrors: 1, FirstError: err.Error()}
	}
	r := &run{cfg: cfg, c: newCaller(cfg), pubs: map[string]*pubRec{}, editedAt: map[string]time.Time{}, final: map[string]map[string]*state{}}
	defer r.c.close()

	n := cfg.Clients
	editors, workers, publishers := n/5, n/5, n/10
	subs := n - editors - workers - publishers
	for p := range publishers * 4 {
		ch := fmt.Sprintf("p%d", p)
		r.pubChans = append(r.pubChans, ch)
		if p%2 == 0 {
			r.staticChs = append(r.staticChs, ch)
		}
	}
	rnd := r.rand(0)
	setupCtx, cancelSetup := context.WithTimeout(ctx, cfg.Drain)
	r.setup(setupCtx, rnd)
	cancelSetup()

	// Subscribers handshake first, so that everything the workers publish
	// is owed to them.
	subCtx, stopSubs := context.WithCancel(ctx)
	defer stopSubs()
	var subWG sync.WaitGroup
	var followers []*follower
	for i := range subs {
		f := r.newFollower(i)
		followers = append(followers, f)
	}
	hsCtx, cancelHS := context.WithTimeout(ctx, cfg.Drain)
	var hsWG sync.WaitGroup
	for _, f := range followers {
		hsWG.Go(func() { f.handshake(hsCtx, r) })
	}
	hsWG.Wait()
	cancelHS()
	for _, f := range followers {
		if f.start != 0 {
			subWG.Go(func() { f.follow(subCtx, r) })
		}
	}

	active := time.Now()
	wctx, stopWork := context.WithTimeout(ctx, cfg.Duration)
	var wg sync.WaitGroup
	for i := range editors {
		wg.Go(func() { r.editor(wctx, ctx, i) })
	}
	for i := range workers {
		wg.Go(func() { r.g3Worker(wctx, ctx, i, i >= workers/2) })
	}
	for i := range publishers {
		wg.Go(func() { r.publisher(wctx, i) })
	}
	wg.Wait()
	stopWork()
	activeEnd := time.Now()

	// Markers on every followed channel; then wait for every subscriber to
	// have them (or Drain to pass).
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

	fctx, cancelFinal := context.WithTimeout(ctx, cfg.Drain)
	defer cancelFinal()
	res := r.check(fctx, followers, active, activeEnd)
	res.Undrained = undrained
	return res
}

// setup creates the static group (publisher channels) and the watched
// groups (one base channel each, so they are never empty).
func (r *run) setup(ctx context.Context, rnd *rand.Rand) {
	r.acked(ctx, rnd, staticGroup, "add", r.staticChs...)
	for g := range 2 {
		r.acked(ctx, rnd, fmt.Sprintf("%s%d", watchGroup, g), "add", fmt.Sprintf("base%d", g))
	}
}

// acked repeats an edit until it is acknowledged and records the state.
func (r *run) acked(ctx context.Context, rnd *rand.Rand, group, op string, chs ...string) string {
	tok, _, okd := r.edit(ctx, rnd, "", group, op, chs...)
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ch := range chs {
		r.record(group, ch, op == "add", !okd)
	}
	return tok
}

// record sets a channel's last acknowledged state; r.mu held.
func (r *run) record(group, ch string, present, unknown bool) {
	g := r.final[group]
	if g == nil {
		g = map[string]*state{}
		r.final[group] = g
	}
	g[ch] = &state{present: present, unknown: unknown}
}

// percentile of sorted durations.
func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	i := int(float64(len(d))*p+0.999999) - 1
	return d[max(0, min(i, len(d)-1))]
}

// check reads every group fully consistently and compares the history.
func (r *run) check(ctx context.Context, followers []*follower, from, to time.Time) Result {
	var res Result
	r.mu.Lock()
	groups := make([]string, 0, len(r.final))
	for g := range r.final {
		groups = append(groups, g)
	}
	r.mu.Unlock()
	slices.Sort(groups)
	rnd := r.rand(1 << 20)
	for _, g := range groups {
		got, okd := r.list(ctx, rnd, "", g, "", "fully_consistent", true)
		if !okd {
			r.mu.Lock()
			r.violation("final fully consistent list of %s: no answer within the drain time", g)
			r.mu.Unlock()
			res.EditsLost++
			continue
		}
		r.mu.Lock()
		chs := slices.Sorted(func(yield func(string) bool) {
			for ch := range r.final[g] {
				if !yield(ch) {
					return
				}
			}
		})
		for _, ch := range chs {
			s := r.final[g][ch]
			if s.unknown || got[ch] == s.present {
				continue
			}
			res.EditsLost++
			r.violation("edit lost: the last acknowledged edit left %s present=%v in %s; the final fully consistent list has present=%v", ch, s.present, g, got[ch])
		}
		r.mu.Unlock()
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	res.RYWViolations, res.Edits, res.Reads, res.Trials = r.ryw, r.edits, r.reads, r.trials
	ids := slices.Sorted(func(yield func(string) bool) {
		for id := range r.pubs {
			if !yield(id) {
				return
			}
		}
	})
	for _, id := range ids {
		if r.pubs[id].acked {
			res.Published++
		}
	}
	var gaps []time.Duration
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
				r.violation("duplicate: subscriber %s got %s (tt %d) %d times", f.uuid, k.id, k.tt, n)
			}
		}
		for _, id := range ids {
			p := r.pubs[id]
			switch p.kind {
			case plain, marker:
				if !p.acked || p.tt <= f.start || !f.follows(r, p) {
					continue
				}
				if f.got[delivery{p.id, p.tt}] == 0 {
					res.Lost++
					r.violation("lost: subscriber %s (from cursor %d) never got %s on %s (tt %d, by %s); %s", f.uuid, f.start, p.id, p.channel, p.tt, p.node, f.skipper(p.tt))
				}
			case g3In:
				if !p.acked || p.tt <= f.start || !slices.Contains(f.groups, p.group) {
					continue
				}
				if f.got[delivery{p.id, p.tt}] == 0 {
					res.G3Missed++
					r.violation("g3 missed: subscriber %s of %s (from cursor %d) never got %s, published on %s (tt %d, by %s at %s) after the add returned at %s; %s", f.uuid, p.group, f.start, p.id, p.channel, p.tt, p.node, p.at.Format("15:04:05.000000"), r.editedAt[p.id].Format("15:04:05.000000"), f.skipper(p.tt))
				}
			case g3Out:
				if b, leaked := f.via[p.id]; leaked && b != "" {
					res.G3Leaked++
					r.violation("g3 leaked: subscriber %s got %s on %s through %s, published after the remove returned", f.uuid, p.id, p.channel, b)
				}
			}
			if b, found := f.via[p.id]; found && p.kind != g3Out && b != "" && b != p.group && !(b == staticGroup && slices.Contains(r.staticChs, p.channel)) {
				res.G3Leaked++
				r.violation("leaked: subscriber %s got %s on %s through group %s, which never held it", f.uuid, p.id, p.channel, b)
			}
		}
		gaps = append(gaps, f.gap(from, to))
		f.mu.Unlock()
	}
	slices.SortFunc(gaps, cmp.Compare)
	res.FailoverGapP99 = percentile(gaps, 0.99)
	if len(gaps) > 0 {
		res.FailoverGapMax = gaps[len(gaps)-1]
	}
	res.ClientErrors = int(r.c.clientErrors.Load())
	res.Unavailable = int(r.c.unavailable.Load())
	res.ConnErrors = int(r.c.connErrors.Load())
	res.First, res.Examples = r.first, r.examples
	r.c.mu.Lock()
	res.FirstError, res.FirstConnError = r.c.firstError, r.c.firstConnError
	r.c.mu.Unlock()
	return res
}
