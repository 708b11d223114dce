package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Soak defaults: half the fan-out maximum. The benchmark's fanout kept up
// with about 120,000 deliveries/s at 1,000 subscribers (README,
// "Performance"), so a soak runs 1,000 subscribers at 60 publishes/s:
// 60,000 deliveries/s.
const (
	SoakSubscribers = 1000
	SoakRate        = 60
)

// SoakConfig describes a soak run: Subscribers long-polls on one channel of
// the node at Origin, each living about Lifetime before it vanishes and a
// new one takes its place, while Rate messages a second are published to
// the channel; the node's RSS, goroutines, descriptors and parked polls
// are read from its /metrics every Every.
type SoakConfig struct {
	Origin      string
	Admin       string        // base URL of the node's admin listener, whose /metrics is sampled
	Account     string        // empty means "soak"
	Subscribers int           // zero means SoakSubscribers
	Rate        float64       // publishes/s; zero means SoakRate
	Duration    time.Duration // zero means 10 minutes
	Every       time.Duration // zero means 10 s
	// Lifetime is a subscriber's mean life (uniform in [Lifetime/2,
	// 3·Lifetime/2]); zero means 30 s. A third of them vanish with a reset
	// while parked, a third with a FIN while parked, a third leave cleanly
	// (a leave, then a close).
	Lifetime time.Duration
	// Rows, if set, receives each sample's row as it is taken.
	Rows io.Writer
}

// SoakSample is one reading of the node and of the clients' counters.
type SoakSample struct {
	At         time.Duration // since the start
	RSS        float64       // bytes (process_resident_memory_bytes)
	HeapGoal   float64       // bytes (go_memstats_next_gc_bytes: twice the live heap at GOGC=100)
	Goroutines float64       // go_goroutines
	FDs        float64       // process_open_fds
	Parked     float64       // groupcast_parked_polls
	Delivered  int64         // messages received by subscribers, so far
	Published  int64
	Vanished   int64 // subscribers that went away, so far
	Failures   int64 // polls and publishes that failed, so far
	// P50 and P99 are the publish→deliver latencies (ms) of the messages
	// delivered since the previous sample; zero when none were.
	P50, P99 float64
}

// Trend is a line through one series over the last 2/3 of a soak: its
// slope, the change it amounts to over that window, and whether that change
// stays within the tolerance (flat: it does not grow past it).
type Trend struct {
	Series      string
	Unit        string
	Mean        float64
	PerMinute   float64
	Change      float64 // over the window
	Tolerance   float64
	Flat        bool
	Window      time.Duration
	SampleCount int
}

// SoakResult is a soak's samples, its final reading after every client
// left, and its verdict.
type SoakResult struct {
	Config  SoakConfig
	Samples []SoakSample
	After   *SoakSample // 2·Every after the clients left
	Trends  []Trend
}

// Flat reports whether every series was flat.
func (r SoakResult) Flat() bool {
	if len(r.Trends) == 0 {
		return false
	}
	for _, t := range r.Trends {
		if !t.Flat {
			return false
		}
	}
	return true
}

// Soak runs the soak until its duration passes or ctx ends.
func Soak(ctx context.Context, cfg SoakConfig) (SoakResult, error) {
	if cfg.Account == "" {
		cfg.Account = "soak"
	}
	if cfg.Subscribers == 0 {
		cfg.Subscribers = SoakSubscribers
	}
	if cfg.Rate == 0 {
		cfg.Rate = SoakRate
	}
	if cfg.Duration == 0 {
		cfg.Duration = 10 * time.Minute
	}
	if cfg.Every == 0 {
		cfg.Every = 10 * time.Second
	}
	if cfg.Lifetime == 0 {
		cfg.Lifetime = 30 * time.Second
	}
	res := SoakResult{Config: cfg}
	if cfg.Subscribers < 0 || cfg.Rate < 0 || cfg.Every <= 0 || cfg.Duration < cfg.Every {
		return res, errors.New("bench: soak needs subscribers >= 0, rate >= 0 and a duration of at least one sample interval")
	}
	if _, err := scrape(cfg.Admin, "go_goroutines"); err != nil {
		return res, fmt.Errorf("soak: %w", err)
	}
	const channel = "soak"
	var (
		delivered, published, vanished, failures atomic.Int64
	)
	runCtx, stop := context.WithTimeout(ctx, cfg.Duration)
	defer stop()
	var wg sync.WaitGroup
	s := &soaker{origin: cfg.Origin, host: hostOf(cfg.Origin), account: cfg.Account, channel: channel, lifetime: cfg.Lifetime,
		delivered: &delivered, vanished: &vanished, failures: &failures, lat: newHistogram()}
	for i := range cfg.Subscribers {
		wg.Go(func() { s.subscriber(runCtx, i) })
		if i%100 == 99 { // do not overflow the listen backlog
			select {
			case <-runCtx.Done():
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	if cfg.Rate > 0 {
		wg.Go(func() { s.publish(runCtx, cfg.Rate, &published, &failures) })
	}
	sample := func(at time.Duration) (SoakSample, error) {
		sm := SoakSample{At: at, Delivered: delivered.Load(), Published: published.Load(), Vanished: vanished.Load(), Failures: failures.Load()}
		sm.P50, sm.P99 = s.latencies()
		var err error
		for _, m := range []struct {
			name string
			into *float64
		}{{"process_resident_memory_bytes", &sm.RSS}, {"go_memstats_next_gc_bytes", &sm.HeapGoal}, {"go_goroutines", &sm.Goroutines}, {"process_open_fds", &sm.FDs}, {"groupcast_parked_polls", &sm.Parked}} {
			v, e := scrape(cfg.Admin, m.name)
			*m.into, err = v, errors.Join(err, e)
		}
		return sm, err
	}
	var tw *tabwriter.Writer // the rows as they are taken, if asked for
	row := func(line string) {
		if tw != nil {
			fmt.Fprintln(tw, line)
			tw.Flush()
		}
	}
	if cfg.Rows != nil {
		tw = tabwriter.NewWriter(cfg.Rows, 8, 0, 2, ' ', tabwriter.AlignRight)
		row(soakHeader)
	}
	start := time.Now()
	tick := time.NewTicker(cfg.Every)
	defer tick.Stop()
	var prev SoakSample
	for runCtx.Err() == nil {
		select {
		case <-runCtx.Done():
			continue
		case <-tick.C:
		}
		sm, err := sample(time.Since(start).Round(time.Second))
		if err != nil {
			stop()
			wg.Wait()
			return res, fmt.Errorf("soak: reading the node's metrics: %w", err)
		}
		res.Samples = append(res.Samples, sm)
		row(sm.row(prev))
		prev = sm
	}
	wg.Wait()
	if ctx.Err() == nil {
		// Every client has gone: the node should let go of them.
		select {
		case <-ctx.Done():
		case <-time.After(2 * cfg.Every):
			if sm, err := sample(time.Since(start).Round(time.Second)); err == nil {
				res.After = &sm
				row(sm.afterRow())
			}
		}
	}
	res.Trends = trends(res.Samples)
	return res, nil
}

const soakHeader = "time\tRSS MiB\theap goal MiB\tgoroutines\tfds\tparked\tdelivered/s\tpublished/s\tp50 ms\tp99 ms\tvanished\tfailures\t"

func (s SoakSample) row(prev SoakSample) string {
	secs := (s.At - prev.At).Seconds()
	if secs <= 0 {
		secs = 1
	}
	return fmt.Sprintf("%v\t%.1f\t%.1f\t%.0f\t%.0f\t%.0f\t%.0f\t%.1f\t%.2f\t%.2f\t%d\t%d\t", s.At, s.RSS/(1<<20), s.HeapGoal/(1<<20), s.Goroutines, s.FDs, s.Parked,
		float64(s.Delivered-prev.Delivered)/secs, float64(s.Published-prev.Published)/secs, s.P50, s.P99, s.Vanished, s.Failures)
}

// afterRow is the row of the reading after the clients left: no rates.
func (s SoakSample) afterRow() string {
	return fmt.Sprintf("%v\t%.1f\t%.1f\t%.0f\t%.0f\t%.0f\t-\t-\t-\t-\t%d\t%d\t  (clients gone)", s.At, s.RSS/(1<<20), s.HeapGoal/(1<<20), s.Goroutines, s.FDs, s.Parked, s.Vanished, s.Failures)
}

// Table writes the samples as a table, then the verdict.
func (r SoakResult) Table(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 8, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, soakHeader)
	var prev SoakSample
	for _, s := range r.Samples {
		fmt.Fprintln(tw, s.row(prev))
		prev = s
	}
	if r.After != nil {
		fmt.Fprintln(tw, r.After.afterRow())
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintln(w, r.Verdict())
	return err
}

// Verdict is the summary: each series' trend (flat, falling or GROWING)
// and FLAT, or NOT FLAT when a series grows.
func (r SoakResult) Verdict() string {
	if len(r.Trends) == 0 {
		return "soak: too few samples for a verdict (at least 3 in the last 2/3 of the run)"
	}
	var parts []string
	for _, t := range r.Trends {
		v := "flat"
		switch {
		case !t.Flat:
			v = "GROWING"
		case t.Change < -t.Tolerance:
			v = "falling"
		}
		parts = append(parts, fmt.Sprintf("%s %+.1f%s/min (%+.1f over %v, tolerance ±%.1f) %s", t.Series, t.PerMinute, t.Unit, t.Change, t.Window, t.Tolerance, v))
	}
	verdict := "FLAT"
	if !r.Flat() {
		verdict = "NOT FLAT"
	}
	c := r.Config
	return fmt.Sprintf("soak: %d subscribers (mean life %v), %.0f publishes/s, %v; slope over the last 2/3 (%d samples): %s → %s",
		c.Subscribers, c.Lifetime, c.Rate, c.Duration, r.Trends[0].SampleCount, strings.Join(parts, "; "), verdict)
}

// trends fits a line through the last 2/3 of the samples of each series. A
// series is flat when the line's rise over that window is within 10% of
// the series' mean, or within a floor for small values (8 MiB of RSS, 25
// goroutines or descriptors): the garbage collector saws RSS up and down by
// tens of MiB, and subscribers come and go, so the node's counts move by
// that much between samples without growing. A leak of 1 MiB a minute
// shows over a 10-minute soak's window (6.7 minutes) at 60 MiB.
func trends(ss []SoakSample) []Trend {
	from := len(ss) / 3
	tail := ss[from:]
	if len(tail) < 3 {
		return nil
	}
	window := tail[len(tail)-1].At - tail[0].At
	var out []Trend
	for _, s := range []struct {
		name, unit string
		scale      float64
		floor      float64
		get        func(SoakSample) float64
	}{
		{"RSS", " MiB", 1 << 20, 8, func(x SoakSample) float64 { return x.RSS }},
		// The heap goal follows what is live (twice it at GOGC=100): a
		// leak grows it, while RSS also holds what the runtime has not
		// given back yet.
		{"heap goal", " MiB", 1 << 20, 8, func(x SoakSample) float64 { return x.HeapGoal }},
		{"goroutines", "", 1, 25, func(x SoakSample) float64 { return x.Goroutines }},
		{"fds", "", 1, 25, func(x SoakSample) float64 { return x.FDs }},
	} {
		xs, ys := make([]float64, len(tail)), make([]float64, len(tail))
		for i, x := range tail {
			xs[i], ys[i] = x.At.Minutes(), s.get(x)/s.scale
		}
		slope, mean := fitSlope(xs, ys)
		t := Trend{Series: s.name, Unit: s.unit, Mean: mean, PerMinute: slope, Change: slope * window.Minutes(), Window: window, SampleCount: len(tail)}
		t.Tolerance = math.Max(0.10*math.Abs(mean), s.floor)
		t.Flat = t.Change <= t.Tolerance // falling is no leak
		out = append(out, t)
	}
	return out
}

// fitSlope is the Theil–Sen slope of ys over xs (the median of the slopes
// between every two samples: one spike, a GC that came late or a burst of
// worker goroutines at the moment of a sample, does not tilt it), and ys'
// mean.
func fitSlope(xs, ys []float64) (slope, mean float64) {
	var slopes []float64
	for i := range xs {
		mean += ys[i]
		for j := i + 1; j < len(xs); j++ {
			if dx := xs[j] - xs[i]; dx != 0 {
				slopes = append(slopes, (ys[j]-ys[i])/dx)
			}
		}
	}
	mean /= float64(len(ys))
	if len(slopes) == 0 {
		return 0, mean
	}
	slices.Sort(slopes)
	n := len(slopes)
	if n%2 == 1 {
		return slopes[n/2], mean
	}
	return (slopes[n/2-1] + slopes[n/2]) / 2, mean
}

// soaker is the clients of a soak.
type soaker struct {
	origin, host, account, channel string
	lifetime                       time.Duration
	delivered, vanished, failures  *atomic.Int64

	latMu sync.Mutex
	lat   *hdrhistogram.Histogram // µs, since the last sample
}

// record adds the publish→deliver latency of every message of an answer:
// each message's payload is the time (µs) it was due to be published.
func (s *soaker) record(body []byte, now time.Time) {
	at := now.UnixMicro()
	s.latMu.Lock()
	defer s.latMu.Unlock()
	for rest := body; ; {
		i := bytes.Index(rest, []byte(`,"d":`))
		if i < 0 {
			return
		}
		rest = rest[i+len(`,"d":`):]
		j := 0
		for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
			j++
		}
		if due, err := strconv.ParseInt(string(rest[:j]), 10, 64); err == nil && due > 0 {
			_ = s.lat.RecordValue(max(at-due, 1))
		}
	}
}

// latencies returns the p50 and p99 (ms) recorded since the last call and
// starts anew.
func (s *soaker) latencies() (p50, p99 float64) {
	s.latMu.Lock()
	defer s.latMu.Unlock()
	if s.lat.TotalCount() > 0 {
		p50, p99 = float64(s.lat.ValueAtQuantile(50))/1000, float64(s.lat.ValueAtQuantile(99))/1000
	}
	s.lat.Reset()
	return p50, p99
}

// How a subscriber goes away.
const (
	vanishReset = iota // closes with a reset while parked
	vanishFIN          // closes (FIN) while parked
	vanishLeave        // sends a leave after an answer, then closes
)

// subscriber is slot i: one subscriber after another, each living about
// the lifetime, until ctx ends.
func (s *soaker) subscriber(ctx context.Context, i int) {
	for gen := 0; ctx.Err() == nil; gen++ {
		life := s.lifetime/2 + rand.N(s.lifetime+1)
		way := rand.IntN(3)
		uuid := fmt.Sprintf("soak-%d-%d", i, gen)
		if err := s.live(ctx, uuid, time.Now().Add(life), way); err != nil && ctx.Err() == nil {
			s.failures.Add(1)
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		s.vanished.Add(1)
	}
}

// live is one subscriber's life: a handshake, then polls on one
// connection until its end, then the way it goes.
func (s *soaker) live(ctx context.Context, uuid string, end time.Time, way int) error {
	c, err := net.DialTimeout("tcp", s.host, 10*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	defer stop()
	br := bufio.NewReaderSize(c, 16<<10)
	var body []byte
	cursor := "0"
	for {
		if way != vanishLeave {
			_ = c.SetReadDeadline(end) // the client vanishes mid-poll
		} else {
			_ = c.SetReadDeadline(time.Now().Add(6 * time.Minute))
		}
		req := "GET /v2/subscribe/" + s.account + "/" + s.channel + "/0?tt=" + cursor + "&uuid=" + uuid + "&heartbeat=20 HTTP/1.1\r\nHost: " + s.host + "\r\n\r\n"
		if _, err := io.WriteString(c, req); err != nil {
			return err
		}
		var status int
		status, body, err = readSmallResponse(br, body)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() && ctx.Err() == nil && time.Now().After(end) {
			if way == vanishReset {
				if tc, ok := c.(*net.TCPConn); ok {
					_ = tc.SetLinger(0)
				}
			}
			return nil // vanished: the deferred Close
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if status != 200 {
			return fmt.Errorf("subscribe: %d %s", status, body)
		}
		if cursor != "0" {
			s.delivered.Add(int64(bytes.Count(body, []byte(`"p":{`))))
			s.record(body, time.Now())
		}
		next, ok := cursorOf(body)
		if !ok {
			return fmt.Errorf("subscribe: no cursor in %.100s", body)
		}
		cursor = next
		if way == vanishLeave && time.Now().After(end) {
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			req := "GET /v2/presence/sub-key/" + s.account + "/channel/" + s.channel + "/leave?uuid=" + uuid + " HTTP/1.1\r\nHost: " + s.host + "\r\nConnection: close\r\n\r\n"
			if _, err := io.WriteString(c, req); err != nil {
				return err
			}
			if _, _, err := readSmallResponse(br, body); err != nil {
				return err
			}
			return nil
		}
	}
}

// cursorOf finds the cursor in a subscribe answer: {"t":{"t":"<digits>",...
func cursorOf(body []byte) (string, bool) {
	const prefix = `{"t":{"t":"`
	if !bytes.HasPrefix(body, []byte(prefix)) {
		return "", false
	}
	rest := body[len(prefix):]
	i := bytes.IndexByte(rest, '"')
	if i <= 0 {
		return "", false
	}
	return string(rest[:i]), true
}

// readSmallResponse reads an HTTP/1.1 answer with a Content-Length into
// buf (grown as needed): cheaper than net/http for tens of thousands of
// answers a second.
func readSmallResponse(br *bufio.Reader, buf []byte) (int, []byte, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, buf, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, buf, fmt.Errorf("bad status line %q", line)
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, buf, fmt.Errorf("bad status line %q", line)
	}
	length := -1
	for {
		h, err := br.ReadSlice('\n')
		if err != nil {
			return 0, buf, err
		}
		if len(h) <= 2 {
			break
		}
		if name, v, ok := bytes.Cut(h, []byte(":")); ok && bytes.EqualFold(name, []byte("Content-Length")) {
			if length, err = strconv.Atoi(string(bytes.TrimSpace(v))); err != nil {
				return 0, buf, fmt.Errorf("bad Content-Length %q", v)
			}
		}
	}
	if length < 0 {
		return 0, buf, errors.New("answer without Content-Length")
	}
	if cap(buf) < length {
		buf = make([]byte, length)
	}
	buf = buf[:length]
	_, err = io.ReadFull(br, buf)
	return status, buf, err
}

// publish publishes rate messages a second to the channel on 4 keep-alive
// connections, each message the time it was due (µs).
func (s *soaker) publish(ctx context.Context, rate float64, published, failures *atomic.Int64) {
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: Publishers}}
	defer client.CloseIdleConnections()
	begin := time.Now()
	var (
		slot atomic.Int64
		wg   sync.WaitGroup
	)
	for range Publishers {
		wg.Go(func() {
			for ctx.Err() == nil {
				due := begin.Add(time.Duration(float64(slot.Add(1)-1) / rate * float64(time.Second)))
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Until(due)):
				}
				u := fmt.Sprintf("%s/publish/soak/%s/0/%s/0/%d", s.origin, s.account, s.channel, due.UnixMicro())
				req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
				if err != nil {
					failures.Add(1)
					continue
				}
				resp, err := client.Do(req)
				if err != nil {
					if ctx.Err() == nil {
						failures.Add(1)
					}
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failures.Add(1)
					continue
				}
				published.Add(1)
			}
		})
	}
	wg.Wait()
}
