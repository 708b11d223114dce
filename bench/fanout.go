package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
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

// FanoutConfig describes a fanout run: Subscribers long-polls parked on one
// channel of one target, then a sweep of load steps of length Step.
type FanoutConfig struct {
	Subscribers int
	Step        time.Duration
	// Loads are the offered deliveries/s of the sweep (publishes/s ×
	// subscribers), lowest first. The sweep stops after the first step the
	// target does not keep up with; then one more step runs at half the
	// highest load it kept up with.
	Loads []float64
	// AllLoads runs every load of Loads, kept up with or not, and no half
	// step: runs that are compared with one another step by step.
	AllLoads bool
	// Channel is the channel subscribed and published to; empty means a
	// fresh name (fan<ns>).
	Channel string
	// Progress, if set, shows each step and its delivery rate.
	Progress *Progress
}

// Publishers is how many concurrent publishers a load step uses.
const Publishers = 4

// A target keeps up with a load when it delivers at least KeepUpShare of
// the offered deliveries within the step (and its drain) with a p99
// publish→deliver latency of at most KeepUpP99.
const (
	KeepUpShare = 0.97
	KeepUpP99   = time.Second
)

// FanoutStep is one load step: what was offered and what arrived.
type FanoutStep struct {
	Offered         float64 // deliveries/s asked for: publishes/s × subscribers
	PublishedPerSec float64
	DeliveredPerSec float64 // of this step's messages, per second of the step
	Lost            int64   // deliveries of this step's messages that never arrived
	Latency         Latencies
	KeptUp          bool
	Half            bool // the step at half the highest load kept up with
}

// FanoutRun is what a fanout run measured on one target.
type FanoutRun struct {
	Target         string
	Subscribers    int
	Parked         int     // long-polls the target held when its memory was read
	Failures       int64   // subscriber polls that failed
	BytesPerParked float64 // memory growth per parked long-poll, from half to all parked
	Steps          []FanoutStep
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

// stepRecorder collects the latencies of one step's messages: those due
// in [from, to) µs.
type stepRecorder struct {
	from, to int64
	mu       sync.Mutex
	hist     *hdrhistogram.Histogram
	count    atomic.Int64
}

func (r *stepRecorder) record(now int64, msgs []int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range msgs {
		if m >= r.from && m < r.to {
			_ = r.hist.RecordValue(max(1, now-m))
			r.count.Add(1)
		}
	}
}

// Fanout parks cfg.Subscribers long-polls on one channel of t, measures
// t's memory per parked poll, and runs the load steps. Every message
// carries the time it was due, so latency includes any lag of the
// publisher itself (no coordinated omission). Polls still parked when
// Fanout returns end with the target's hold or shutdown.
func Fanout(ctx context.Context, t Target, cfg FanoutConfig) (FanoutRun, error) {
	run := FanoutRun{Target: t.Name(), Subscribers: cfg.Subscribers}
	hc := newHostClient(t.Addr(), cfg.Subscribers)
	channel := cfg.Channel
	if channel == "" {
		channel = fmt.Sprintf("fan%d", time.Now().UnixNano())
	}
	start, err := t.Handshake(ctx, hc, channel)
	if err != nil {
		return run, fmt.Errorf("%s handshake: %w", t.Name(), err)
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
		// Release the parked subscribers with one last message, wait for
		// them (a minute at most), and close their connections: the next
		// run needs the file descriptors.
		stopSubs()
		_ = t.Publish(context.Background(), pc, channel, time.Now().UnixMicro())
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
				cur := start
				for subCtx.Err() == nil {
					msgs, next, err := t.Poll(subCtx, hc, channel, cur)
					if err != nil {
						failures.Add(1)
						<-time.After(10 * time.Millisecond)
						continue
					}
					if rec := current.Load(); rec != nil {
						rec.record(time.Now().UnixMicro(), msgs)
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
	// parked waits until n polls have parked (or a minute passed) and reads
	// the memory.
	parked := func(n int) (float64, error) {
		for deadline := time.Now().Add(time.Minute); ctx.Err() == nil; <-time.After(50 * time.Millisecond) {
			got, err := t.Parked(ctx)
			if err != nil {
				return 0, err
			}
			run.Parked = got
			if got >= n || time.Now().After(deadline) {
				break
			}
		}
		return t.Memory()
	}
	if cfg.Progress != nil {
		cfg.Progress.Scenario(fmt.Sprintf("fanout %s n=%d: parking", t.Name(), cfg.Subscribers), "parked", nil)
	}
	// Memory per parked poll is the slope between half and all of them
	// parked, so the server's fixed costs (runtime, pools, buffers) do not
	// count as per-subscriber.
	half := cfg.Subscribers / 2
	subscribe(0, half)
	m1, err := parked(half)
	if err != nil {
		return run, err
	}
	subscribe(half, cfg.Subscribers)
	m2, err := parked(cfg.Subscribers)
	if err != nil {
		return run, err
	}
	run.BytesPerParked = (m2 - m1) / float64(max(1, cfg.Subscribers-half))

	step := func(load float64, half bool) (FanoutStep, error) {
		if cfg.Progress != nil {
			label := fmt.Sprintf("fanout %s n=%d, %.0f deliveries/s offered", t.Name(), cfg.Subscribers, load)
			if half {
				label += " (half the max)"
			}
			cfg.Progress.Scenario(label, "msgs", func() float64 { return float64(delivered.Load()) })
		}
		st, err := fanoutStep(ctx, t, pc, channel, load/float64(cfg.Subscribers), cfg.Step, &current)
		if err != nil {
			return st, err
		}
		st.Offered, st.Half = load, half
		st.Lost = max(0, int64(st.PublishedPerSec*cfg.Step.Seconds())*int64(cfg.Subscribers)-int64(st.DeliveredPerSec*cfg.Step.Seconds()+0.5))
		st.KeptUp = st.DeliveredPerSec >= KeepUpShare*st.PublishedPerSec*float64(cfg.Subscribers) &&
			st.PublishedPerSec >= KeepUpShare*st.Offered/float64(cfg.Subscribers) &&
			st.Latency.Count > 0 && st.Latency.P99 <= float64(KeepUpP99.Microseconds())
		run.Steps = append(run.Steps, st)
		return st, nil
	}
	for _, load := range cfg.Loads {
		st, err := step(load, false)
		if err != nil {
			return run, err
		}
		if !st.KeptUp && !cfg.AllLoads {
			break
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

// fanoutStep publishes for d at rate publishes/s, waits for the deliveries
// to drain, and summarises them.
func fanoutStep(ctx context.Context, t Target, pc *fasthttp.HostClient, channel string, rate float64, d time.Duration, current *atomic.Pointer[stepRecorder]) (FanoutStep, error) {
	begin := time.Now()
	rec := &stepRecorder{from: begin.UnixMicro(), to: begin.Add(d).UnixMicro(), hist: newHistogram()}
	current.Store(rec)
	defer current.Store(nil)
	// Publishers take turns over the schedule's slots: one sequential
	// publisher would cap the rate at one over the publish latency.
	var (
		published atomic.Int64
		slot      atomic.Int64
		wg        sync.WaitGroup
		failed    atomic.Pointer[error]
	)
	for range Publishers {
		wg.Go(func() {
			for ctx.Err() == nil && failed.Load() == nil {
				k := slot.Add(1) - 1
				due := begin.Add(time.Duration(float64(k) / rate * float64(time.Second)))
				if wait := time.Until(due); wait > 0 {
					select {
					case <-time.After(wait):
					case <-ctx.Done():
					}
				}
				if due.UnixMicro() >= rec.to || time.Now().UnixMicro() >= rec.to {
					return // the step is over, even if the publishers fell behind the schedule
				}
				if err := t.Publish(ctx, pc, channel, due.UnixMicro()); err != nil {
					err = fmt.Errorf("%s publish: %w", t.Name(), err)
					failed.Store(&err)
					return
				}
				published.Add(1)
			}
		})
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		return FanoutStep{}, *err
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
	step := FanoutStep{PublishedPerSec: float64(published.Load()) / secs, DeliveredPerSec: float64(rec.count.Load()) / secs}
	rec.mu.Lock()
	step.Latency = summarise(rec.hist, 0)
	rec.mu.Unlock()
	return step, ctx.Err()
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
