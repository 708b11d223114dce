package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/valyala/fasthttp"
)

func hostOf(origin string) string {
	return strings.TrimPrefix(strings.TrimPrefix(origin, "http://"), "https://")
}

func newHostClient(addr string, conns int) *fasthttp.HostClient {
	return &fasthttp.HostClient{
		Addr: addr, MaxConns: conns + 16, ReadTimeout: 5 * time.Minute, WriteTimeout: 30 * time.Second,
		MaxIdleConnDuration: time.Minute, ReadBufferSize: 16 << 10,
		Dial: func(a string) (net.Conn, error) { return fasthttp.DialTimeout(a, 30*time.Second) },
	}
}

// rss scrapes the node's resident memory from its /metrics; admin is the
// base URL of the node's admin listener.
func rss(admin string) (float64, error) { return scrape(admin, "process_resident_memory_bytes") }

// scrape reads one sample from the node's /metrics; admin is the base URL
// of the node's admin listener, which serves it.
func scrape(admin, sample string) (float64, error) {
	resp, err := http.Get(admin + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), sample+" "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, fmt.Errorf("%s/metrics: %s: %w", admin, sample, errNoSample)
}

// errNoSample reports a metric with no sample yet (a labelled counter that
// has not counted).
var errNoSample = errors.New("no such sample")

// HelloServer serves a minimal fasthttp hello-world on ln until it fails:
// the physical reference the fanout is compared with. Run it in its own
// process, as the node under test is.
func HelloServer(ln net.Listener) error {
	srv := &fasthttp.Server{Handler: func(c *fasthttp.RequestCtx) { c.SetContentType("application/json"); c.SetBodyString(`"hello"`) }}
	return srv.Serve(ln)
}

// Ceiling drives a hello-world server at addr with `clients` concurrent
// keep-alive clients for d and returns its requests/s: what the machine can
// do at all with this client and this concurrency, the reference for Fanout.
func Ceiling(ctx context.Context, addr string, clients int, d time.Duration) (float64, error) {
	hc := newHostClient(addr, clients)
	defer hc.CloseIdleConnections() // free the descriptors before the fanout dials as many
	var n atomic.Int64
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var wg sync.WaitGroup
	start := time.Now()
	for range clients {
		wg.Go(func() {
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI("http://" + addr + "/hello")
			for ctx.Err() == nil {
				if hc.Do(req, resp) == nil {
					n.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return float64(n.Load()) / time.Since(start).Seconds(), nil
}

// FanoutConfig describes a fanout run: Subscribers long-polls parked on
// Channels channels of one target, then a sweep of load steps of length
// Step.
type FanoutConfig struct {
	Subscribers int
	Step        time.Duration
	// Loads are the offered deliveries/s of the sweep (publishes/s ×
	// subscribers per channel), lowest first, when Sweep is nil. The sweep
	// stops after the first step the target does not keep up with; then
	// one more step runs at half the highest load it kept up with.
	Loads []float64
	// Sweep, if set, chooses the loads instead of Loads: up until the
	// target no longer keeps up, then bisecting to its limit. A step at
	// half the limit follows, as with Loads.
	Sweep *Sweep
	// AllLoads runs every load of Loads, kept up with or not, and no half
	// step: runs that are compared with one another step by step.
	AllLoads bool
	// Channel is the channel subscribed and published to (the prefix of
	// the channels' names if Channels > 1); empty means a fresh name
	// (fan<ns>).
	Channel string
	// Channels spreads the subscribers over this many channels (subscriber
	// i on channel i mod Channels) and the publishes over them in turn;
	// zero means 1.
	Channels int
	// ServerPIDs, if set, lists the target's processes, whose CPU time
	// (/proc/<pid>/stat) each step records.
	ServerPIDs func() ([]int, error)
	// MemoryPoints is at how many subscriber counts (evenly spaced up to
	// Subscribers) the target's memory is read while the subscribers park,
	// for the least-squares fit of memory per parked subscriber; zero
	// means 5.
	MemoryPoints int
	// Progress, if set, shows each step and its delivery rate.
	Progress *Progress
}

// Publishers is how many publishes a load step has in flight at most: the
// timetable starts each publish when it is due, on any publisher not
// waiting for an answer.
const Publishers = 64

// A target keeps up with a load when at least KeepUpShare of the step's
// deliveries arrive (within the step or its drain), with a p99
// publish→deliver latency of at most KeepUpP99, and no publish of the
// timetable had to be skipped.
const (
	KeepUpShare = 0.97
	KeepUpP99   = time.Second
)

// FanoutStep is one load step: what was offered and what arrived.
type FanoutStep struct {
	Offered         float64 // deliveries/s asked for: publishes/s × subscribers per channel
	PublishedPerSec float64 // publishes answered, per second of the step
	Slots           SlotCounts
	// DeliveredPerSec counts the step's messages that arrived within the
	// step, per second of the step; Drained those that arrived in the
	// drain after it, which no rate includes.
	DeliveredPerSec float64
	Drained         int64
	// AnswersPerSec counts the poll answers that brought the step's
	// messages within the step; Batch is deliveries per answer.
	AnswersPerSec float64
	Batch         float64
	// ServerCPU is the CPU time (s) the target's processes used during the
	// step (without its drain); zero if not measured.
	ServerCPU              float64
	DeliveriesPerCPUSecond float64
	// ClientCPU is the CPU time (s) this process, the load generator,
	// used during the step: near the step's length, the client was the
	// limit.
	ClientCPU float64
	Lost      int64 // deliveries of this step's messages that never arrived
	// Duplicates are messages a subscriber got again: not deliveries.
	Duplicates int64 `json:",omitempty"`
	Latency    Latencies
	// SubscriberMeans is the spread of the subscribers' own mean latency
	// (µs): whether the tail falls on some subscribers again and again
	// (a wide spread: an unfair order) or on every one now and then.
	SubscriberMeans Spread `json:",omitzero"`
	KeptUp          bool
	Half            bool // the step at half the highest load kept up with
}

// Spread is the lowest, the 10th, 50th and 90th percentiles and the
// highest of a set of values.
type Spread struct {
	Min, P10, P50, P90, Max float64
}

// spreadOf is the Spread of xs, which it sorts; zero if empty.
func spreadOf(xs []float64) Spread {
	if len(xs) == 0 {
		return Spread{}
	}
	slices.Sort(xs)
	at := func(q float64) float64 { return xs[min(len(xs)-1, int(q*float64(len(xs))))] }
	return Spread{Min: xs[0], P10: at(0.1), P50: at(0.5), P90: at(0.9), Max: xs[len(xs)-1]}
}

// MemoryPoint is the target's memory with Parked long-polls parked, and
// the kernel's TCP socket memory (machine-wide, so both ends of every
// loopback connection) at the same time.
type MemoryPoint struct {
	Parked        int
	Bytes, Socket float64
}

// FanoutRun is what a fanout run measured on one target.
type FanoutRun struct {
	Target      string
	Variant     string `json:",omitempty"` // how the target was configured, when several are compared
	Subscribers int
	Channels    int   `json:",omitempty"`
	Parked      int   // long-polls the target held when its memory was last read
	Failures    int64 // subscriber polls that failed
	// BytesPerParked is the slope of the least-squares line through
	// Memory (bytes against parked long-polls), FitR2 its r²; MemoryKind
	// says what was read. SocketBytesPerParked is the same slope of the
	// kernel's socket memory.
	BytesPerParked       float64
	FitR2                float64       `json:",omitempty"`
	MemoryKind           string        `json:",omitempty"`
	SocketBytesPerParked float64       `json:",omitempty"`
	Memory               []MemoryPoint `json:",omitempty"`
	Steps                []FanoutStep
	// Swept is set when a Sweep chose the loads; SweepCapped when the
	// target kept up with the sweep's highest load.
	Swept, SweepCapped bool `json:",omitempty"`
}

// Max is the step with the most deliveries/s among those the target kept
// up with.
func (r FanoutRun) Max() (FanoutStep, bool) {
	var best FanoutStep
	found := false
	for _, s := range r.Steps {
		if s.KeptUp && !s.Half && (!found || s.DeliveredPerSec > best.DeliveredPerSec) {
			best, found = s, true
		}
	}
	return best, found
}

// Capped reports whether the target kept up with the sweep's highest load:
// its limit is then above Max, which is only a lower bound.
func (r FanoutRun) Capped() bool {
	if r.Swept {
		return r.SweepCapped
	}
	for i := len(r.Steps) - 1; i >= 0; i-- {
		if !r.Steps[i].Half {
			return r.Steps[i].KeptUp
		}
	}
	return false
}

// HalfStep is the step at half the highest load kept up with.
func (r FanoutRun) HalfStep() (FanoutStep, bool) {
	for _, s := range r.Steps {
		if s.Half {
			return s, true
		}
	}
	return FanoutStep{}, false
}

// stepRecorder collects one step's deliveries: those of the messages due
// in [from, to) µs, which is also the step's window. A message a
// subscriber already had counts as a duplicate, not as a delivery.
type stepRecorder struct {
	from, to int64
	rate     float64 // publishes/s: message m is slot (m-from)·rate/1e6
	slots    int
	mu       sync.Mutex
	hist     *hdrhistogram.Histogram
	seen     [][]uint64 // per subscriber, a bit per slot
	// subSum and subN are, per subscriber, the latencies (µs) of its
	// deliveries added up, and how many.
	subSum, subN []int64
	inWindow     int64 // deliveries that arrived before to
	answers      int64 // answers that brought them
	drained      int64 // deliveries that arrived at or after to
	duplicates   int64
	count        atomic.Int64
}

// subscriberMeans is the spread of the subscribers' mean latencies; mu is
// held.
func (r *stepRecorder) subscriberMeans() Spread {
	var means []float64
	for i, n := range r.subN {
		if n > 0 {
			means = append(means, float64(r.subSum[i])/float64(n))
		}
	}
	return spreadOf(means)
}

// record counts an answer of msgs that subscriber sub got at now (µs).
func (r *stepRecorder) record(now int64, sub int, msgs []int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := int64(0)
	for _, m := range msgs {
		if m < r.from || m >= r.to {
			continue
		}
		if k := int(math.Round(float64(m-r.from) * r.rate / 1e6)); k >= 0 && k < r.slots {
			for len(r.seen) <= sub {
				r.seen = append(r.seen, nil)
			}
			if r.seen[sub] == nil {
				r.seen[sub] = make([]uint64, (r.slots+63)/64)
			}
			if r.seen[sub][k/64]&(1<<(k%64)) != 0 {
				r.duplicates++
				continue
			}
			r.seen[sub][k/64] |= 1 << (k % 64)
		}
		_ = r.hist.RecordValue(max(1, now-m))
		for len(r.subN) <= sub {
			r.subSum, r.subN = append(r.subSum, 0), append(r.subN, 0)
		}
		r.subSum[sub] += max(1, now-m)
		r.subN[sub]++
		n++
	}
	if n == 0 {
		return
	}
	if now < r.to {
		r.inWindow += n
		r.answers++
	} else {
		r.drained += n
	}
	r.count.Add(n)
}

// channelName is the name of channel i of a run on prefix.
func channelName(prefix string, i, channels int) string {
	if channels <= 1 {
		return prefix
	}
	return fmt.Sprintf("%s-%d", prefix, i)
}

// Fanout parks cfg.Subscribers long-polls on cfg.Channels channels of t,
// fits t's memory per parked poll, and runs the load steps. Every message
// carries the time it was due, so latency includes any lag of the
// publisher itself (no coordinated omission). Polls still parked when
// Fanout returns end with the target's hold or shutdown.
func Fanout(ctx context.Context, t Target, cfg FanoutConfig) (FanoutRun, error) {
	channels := max(1, cfg.Channels)
	run := FanoutRun{Target: t.Name(), Subscribers: cfg.Subscribers, Swept: cfg.Sweep != nil}
	if channels > 1 {
		run.Channels = channels
	}
	hc := newHostClient(t.Addr(), cfg.Subscribers)
	prefix := cfg.Channel
	if prefix == "" {
		prefix = fmt.Sprintf("fan%d", time.Now().UnixNano())
	}
	// Subscribers per channel, and every channel's starting cursor.
	subsOn := make([]int64, channels)
	for i := range cfg.Subscribers {
		subsOn[i%channels]++
	}
	starts := make([]Cursor, channels)
	{
		var (
			next  atomic.Int64
			wg    sync.WaitGroup
			errp  atomic.Pointer[error]
			conns = min(channels, 32)
		)
		for range conns {
			wg.Go(func() {
				for c := int(next.Add(1) - 1); c < channels && errp.Load() == nil; c = int(next.Add(1) - 1) {
					cur, err := t.Handshake(ctx, hc, channelName(prefix, c, channels))
					if err != nil {
						err = fmt.Errorf("%s handshake: %w", t.Name(), err)
						errp.Store(&err)
						return
					}
					starts[c] = cur
				}
			})
		}
		wg.Wait()
		if err := errp.Load(); err != nil {
			return run, *err
		}
	}
	var (
		failures  atomic.Int64
		delivered atomic.Int64
		current   atomic.Pointer[stepRecorder]
	)
	// Subscribers stop once Fanout returns: each after its poll in flight.
	subCtx, stopSubs := context.WithCancel(ctx)
	var subs sync.WaitGroup
	pc := newHostClient(t.Addr(), Publishers)
	defer func() {
		// Release the parked subscribers with one last message per
		// channel, wait for them (a minute at most), and close their
		// connections: the next run needs the file descriptors.
		stopSubs()
		for c := range channels {
			_ = t.Publish(context.Background(), pc, channelName(prefix, c, channels), time.Now().UnixMicro())
		}
		done := make(chan struct{})
		go func() { subs.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(time.Minute):
		}
		hc.CloseIdleConnections()
		pc.CloseIdleConnections()
	}()
	subscribe := func(from, to int) {
		for i := from; i < to; i++ {
			subs.Add(1)
			go func() {
				defer subs.Done()
				channel := channelName(prefix, i%channels, channels)
				cur := starts[i%channels]
				sc := NewSubConn(t.Addr())
				defer sc.Close()
				var msgs []int64 // reused: the subscriber's answers are decoded into it
				for subCtx.Err() == nil {
					var next Cursor
					var err error
					msgs, next, err = t.Poll(subCtx, sc, channel, cur, msgs[:0])
					if err != nil {
						failures.Add(1)
						<-time.After(10 * time.Millisecond)
						continue
					}
					if rec := current.Load(); rec != nil {
						rec.record(time.Now().UnixMicro(), i, msgs)
					}
					delivered.Add(int64(len(msgs)))
					cur = next
				}
			}()
			if i%500 == 499 { // do not overflow the listen backlog
				<-time.After(20 * time.Millisecond)
			}
		}
	}
	// parked waits until n polls have parked (or a minute passed) and
	// reads the memory: after a forced GC where the target can.
	parked := func(n int) (MemoryPoint, error) {
		for deadline := time.Now().Add(time.Minute); ctx.Err() == nil; <-time.After(50 * time.Millisecond) {
			got, err := t.Parked(ctx)
			if err != nil {
				return MemoryPoint{}, err
			}
			run.Parked = got
			if got >= n || time.Now().After(deadline) {
				break
			}
		}
		p := MemoryPoint{Parked: run.Parked}
		var err error
		if g, ok := t.(gcMemory); ok && run.MemoryKind != memoryKindPss {
			if p.Bytes, err = g.MemoryAfterGC(); err == nil {
				run.MemoryKind = g.MemoryKind()
			} else if run.MemoryKind == "" { // at the first point: a node without pprof or Go metrics
				run.MemoryKind = memoryKindPss
			}
		} else {
			run.MemoryKind = memoryKindPss
		}
		if run.MemoryKind == memoryKindPss {
			p.Bytes, err = t.Memory()
		}
		if err != nil {
			return p, err
		}
		p.Socket, _, err = SocketMemory()
		return p, err
	}
	if cfg.Progress != nil {
		cfg.Progress.Scenario(fmt.Sprintf("fanout %s n=%d: parking", t.Name(), cfg.Subscribers), "parked", nil)
	}
	// Memory per parked poll is the slope of a line fitted through
	// several subscriber counts, so the server's fixed costs (runtime,
	// pools, buffers) do not count as per-subscriber.
	points := cfg.MemoryPoints
	if points <= 0 {
		points = 5
	}
	points = min(points, cfg.Subscribers)
	from := 0
	for i := 1; i <= points; i++ {
		to := cfg.Subscribers * i / points
		subscribe(from, to)
		from = to
		p, err := parked(to)
		if err != nil {
			return run, err
		}
		run.Memory = append(run.Memory, p)
	}
	if len(run.Memory) >= 2 {
		xs, ys, ss := make([]float64, len(run.Memory)), make([]float64, len(run.Memory)), make([]float64, len(run.Memory))
		for i, p := range run.Memory {
			xs[i], ys[i], ss[i] = float64(p.Parked), p.Bytes, p.Socket
		}
		if slope, _, r2, err := fitLine(xs, ys); err == nil {
			run.BytesPerParked, run.FitR2 = slope, r2
		}
		if slope, _, _, err := fitLine(xs, ss); err == nil {
			run.SocketBytesPerParked = slope
		}
	}

	perChannel := float64(cfg.Subscribers) / float64(channels)
	step := func(load float64, half bool) (FanoutStep, error) {
		if cfg.Progress != nil {
			label := fmt.Sprintf("fanout %s n=%d, %.0f deliveries/s offered", t.Name(), cfg.Subscribers, load)
			if half {
				label += " (half the max)"
			}
			cfg.Progress.Scenario(label, "msgs", func() float64 { return float64(delivered.Load()) })
		}
		st, err := fanoutStep(ctx, t, pc, prefix, channels, subsOn, load/perChannel, cfg.Step, cfg.ServerPIDs, &current)
		if err != nil {
			return st, err
		}
		st.Offered, st.Half = load, half
		run.Steps = append(run.Steps, st)
		return st, nil
	}
	if cfg.Sweep != nil {
		var done []sweepPoint
		for {
			load, ok := cfg.Sweep.Next(done)
			if !ok {
				break
			}
			st, err := step(load, false)
			if err != nil {
				return run, err
			}
			done = append(done, sweepPoint{Offered: load, KeptUp: st.KeptUp})
		}
		run.SweepCapped = cfg.Sweep.Capped(done)
	} else {
		for _, load := range cfg.Loads {
			st, err := step(load, false)
			if err != nil {
				return run, err
			}
			if !st.KeptUp && !cfg.AllLoads {
				break
			}
		}
	}
	if best, ok := run.Max(); ok && !cfg.AllLoads {
		if _, err := step(best.Offered/2, true); err != nil {
			return run, err
		}
	}
	run.Failures = failures.Load()
	return run, ctx.Err()
}

// memoryKindPss is what Target.Memory reads, for the report.
const memoryKindPss = "Pss of every process"

// gcMemory is a Target that can read its memory after a forced garbage
// collection (groupcast: the Go heap and stacks), which is steadier than
// the process's resident set.
type gcMemory interface {
	MemoryAfterGC() (float64, error)
	MemoryKind() string // what MemoryAfterGC reads, for the report
}

// publishPool runs a step's publishes: at most Publishers in flight.
type publishPool struct {
	ctx       context.Context
	sem       chan struct{}
	failed    chan struct{}
	failOnce  sync.Once
	err       error
	wg        sync.WaitGroup
	publish   func(k int, due time.Time) error
	published atomic.Int64
}

func (p *publishPool) Acquire() bool {
	select {
	case p.sem <- struct{}{}:
		return true
	case <-p.failed:
		return false
	case <-p.ctx.Done():
		return false
	}
}

func (p *publishPool) Release() { <-p.sem }

func (p *publishPool) Launch(k int, due time.Time) {
	p.wg.Go(func() {
		defer p.Release()
		if err := p.publish(k, due); err != nil {
			p.failOnce.Do(func() { p.err = err; close(p.failed) })
			return
		}
		p.published.Add(1)
	})
}

// fanoutStep publishes for d at rate publishes/s on an open-loop
// timetable, spreading them over the channels in turn, waits for the
// deliveries to drain, and summarises them.
func fanoutStep(ctx context.Context, t Target, pc *fasthttp.HostClient, prefix string, channels int, subsOn []int64, rate float64, d time.Duration,
	serverPIDs func() ([]int, error), current *atomic.Pointer[stepRecorder]) (FanoutStep, error) {
	var expected atomic.Int64 // deliveries the answered publishes owe
	pool := &publishPool{ctx: ctx, sem: make(chan struct{}, Publishers), failed: make(chan struct{})}
	pool.publish = func(k int, due time.Time) error {
		c := k % channels
		if err := t.Publish(ctx, pc, channelName(prefix, c, channels), due.UnixMicro()); err != nil {
			return fmt.Errorf("%s publish: %w", t.Name(), err)
		}
		expected.Add(subsOn[c])
		return nil
	}
	cpu := func() (time.Duration, error) {
		if serverPIDs == nil {
			return 0, nil
		}
		pids, err := serverPIDs()
		if err != nil {
			return 0, err
		}
		return ProcCPU(pids...)
	}
	begin := time.Now().Add(10 * time.Millisecond) // the first slot is due once everything is set
	tt := Timetable{Begin: begin, Rate: rate, Length: d}
	rec := &stepRecorder{from: begin.UnixMicro(), to: tt.End().UnixMicro(), rate: rate, slots: tt.Slots(), hist: newHistogram()}
	current.Store(rec)
	defer current.Store(nil)
	cpu0, err := cpu()
	if err != nil {
		return FanoutStep{}, err
	}
	self0, err := ProcCPU(os.Getpid())
	if err != nil {
		return FanoutStep{}, err
	}
	counts := dispatch(tt, wallClock{}, pool)
	wallClock{}.SleepUntil(tt.End())
	cpu1, err := cpu()
	if err != nil {
		return FanoutStep{}, err
	}
	self1, err := ProcCPU(os.Getpid())
	if err != nil {
		return FanoutStep{}, err
	}
	pool.wg.Wait()
	if pool.err != nil {
		return FanoutStep{}, pool.err
	}
	// Drain: until no delivery of this step's messages for half a second
	// (at most 15 seconds).
	last, quiet := rec.count.Load(), 0
	for deadline := time.Now().Add(15 * time.Second); quiet < 5 && time.Now().Before(deadline) && ctx.Err() == nil; {
		<-time.After(100 * time.Millisecond)
		if n := rec.count.Load(); n == last {
			quiet++
		} else {
			last, quiet = n, 0
		}
	}
	secs := d.Seconds()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	st := FanoutStep{
		PublishedPerSec: float64(pool.published.Load()) / secs, Slots: counts,
		DeliveredPerSec: float64(rec.inWindow) / secs, Drained: rec.drained, Duplicates: rec.duplicates,
		AnswersPerSec: float64(rec.answers) / secs, ServerCPU: (cpu1 - cpu0).Seconds(), ClientCPU: (self1 - self0).Seconds(),
		Latency: summarise(rec.hist, 0), SubscriberMeans: rec.subscriberMeans(),
	}
	if rec.answers > 0 {
		st.Batch = float64(rec.inWindow) / float64(rec.answers)
	}
	if st.ServerCPU > 0 {
		st.DeliveriesPerCPUSecond = float64(rec.inWindow) / st.ServerCPU
	}
	want, got := expected.Load(), rec.inWindow+rec.drained
	st.Lost = max(0, want-got)
	st.KeptUp = keptUp(counts, want, got, st.Latency)
	return st, ctx.Err()
}

// keptUp is whether a step kept up: no slot of its timetable skipped, at
// least KeepUpShare of the deliveries owed (want) arrived, and the p99
// publish→deliver latency is at most KeepUpP99.
func keptUp(counts SlotCounts, want, got int64, l Latencies) bool {
	return counts.Skipped == 0 && want > 0 && float64(got) >= KeepUpShare*float64(want) &&
		l.Count > 0 && l.P99 <= float64(KeepUpP99.Microseconds())
}

func fastGet(hc *fasthttp.HostClient, u string, into any) error {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(u)
	if err := hc.Do(req, resp); err != nil {
		return err
	}
	if resp.StatusCode() != 200 {
		return fmt.Errorf("%s: %d %s", u, resp.StatusCode(), resp.Body())
	}
	return json.Unmarshal(resp.Body(), into)
}
