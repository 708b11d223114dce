package abuse

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// WatchFrom is the loopback address the watcher connects from: a client
// of its own, so that caps per client address that the probes run into
// (they connect from 127.0.0.1) are not what it measures.
const WatchFrom = "127.0.0.2"

// FreshFrom is the address a probe's "does a new client still get in"
// checks connect from.
const FreshFrom = "127.0.0.3"

// AnswerWithin is how fast the node should answer GET /time/0 while it is
// being abused. The suite reports the slowest answer against it but does
// not fail on it: a wall-clock bound is not a test's to assert on a shared,
// loaded machine (see Watcher).
const AnswerWithin = 50 * time.Millisecond

// Watcher asks GET /time/0 every interval on one keep-alive connection, as
// a well-behaved client would while the probes run, and records every
// answer's latency and every failure. Its timeout per request is 2 s.
type Watcher struct {
	client *http.Client
	url    string
	stop   context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	samples []watchSample
}

type watchSample struct {
	at  time.Time // when the request was sent
	d   time.Duration
	err error
}

// Watch starts a watcher of origin's /time/0; Stop ends it.
func Watch(origin string, every time.Duration) *Watcher {
	ctx, cancel := context.WithCancel(context.Background())
	w := &Watcher{url: origin + "/time/0", stop: cancel, done: make(chan struct{}), client: &http.Client{
		Timeout: 2 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return dial(ctx, WatchFrom, addr)
			},
			MaxIdleConnsPerHost: 1,
			IdleConnTimeout:     time.Minute,
		},
	}}
	go w.loop(ctx, every)
	return w
}

func (w *Watcher) loop(ctx context.Context, every time.Duration) {
	defer close(w.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		start := time.Now()
		err := w.ask(ctx)
		if ctx.Err() != nil {
			return
		}
		w.mu.Lock()
		w.samples = append(w.samples, watchSample{at: start, d: time.Since(start), err: err})
		w.mu.Unlock()
	}
}

func (w *Watcher) ask(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, "GET", w.url, nil)
	if err != nil {
		return err
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != 200 {
		return fmt.Errorf("%d %s", resp.StatusCode, clip(body))
	}
	return nil
}

// Stop ends the watcher and waits for it.
func (w *Watcher) Stop() {
	w.stop()
	<-w.done
	w.client.CloseIdleConnections()
}

// WatchStats summarises the watcher's answers over a time window.
type WatchStats struct {
	Asked    int
	Failed   []string // "15:04:05.000: why", the first 10
	Failures int
	Slowest  time.Duration // of the answered requests
	P99      time.Duration
	Over     int // answers slower than AnswerWithin
}

func (s WatchStats) String() string {
	return fmt.Sprintf("%d asked, %d failed, slowest %v, p99 %v, %d over %v",
		s.Asked, s.Failures, s.Slowest.Round(100*time.Microsecond), s.P99.Round(100*time.Microsecond), s.Over, AnswerWithin)
}

// Window summarises the requests sent in [from, to]; a zero to means now.
func (w *Watcher) Window(from, to time.Time) WatchStats {
	if to.IsZero() {
		to = time.Now()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	var s WatchStats
	var ds []time.Duration
	for _, x := range w.samples {
		if x.at.Before(from) || x.at.After(to) {
			continue
		}
		s.Asked++
		if x.err != nil {
			s.Failures++
			if len(s.Failed) < 10 {
				s.Failed = append(s.Failed, x.at.Format("15:04:05.000")+": "+x.err.Error())
			}
			continue
		}
		ds = append(ds, x.d)
		s.Slowest = max(s.Slowest, x.d)
		if x.d > AnswerWithin {
			s.Over++
		}
	}
	if len(ds) > 0 {
		slices.Sort(ds)
		s.P99 = ds[min(len(ds)-1, len(ds)*99/100)]
	}
	return s
}

// Sampler reads a process's resident memory (VmRSS) and its open file
// descriptors from /proc every interval. The process may change (a node
// restarted after it died): pid is asked each time.
type Sampler struct {
	pid  func() int
	stop context.CancelFunc
	done chan struct{}

	mu      sync.Mutex
	samples []procSample
}

type procSample struct {
	at  time.Time
	rss int64 // bytes
	fds int
}

// Sample starts a sampler; Stop ends it.
func Sample(pid func() int, every time.Duration) *Sampler {
	ctx, cancel := context.WithCancel(context.Background())
	s := &Sampler{pid: pid, stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			s.Now()
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// Now takes a sample at once and returns it.
func (s *Sampler) Now() (rss int64, fds int) {
	pid := s.pid()
	rss, err := RSS(pid)
	if err != nil {
		return 0, 0 // the process is gone: nothing to record
	}
	fds, _ = FDs(pid)
	s.mu.Lock()
	s.samples = append(s.samples, procSample{at: time.Now(), rss: rss, fds: fds})
	s.mu.Unlock()
	return rss, fds
}

// Stop ends the sampler and waits for it.
func (s *Sampler) Stop() {
	s.stop()
	<-s.done
}

// Max returns the largest RSS (bytes) and descriptor count sampled in
// [from, to]; zero times mean the whole run and now.
func (s *Sampler) Max(from, to time.Time) (rss int64, fds int) {
	if to.IsZero() {
		to = time.Now()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, x := range s.samples {
		if x.at.Before(from) || x.at.After(to) {
			continue
		}
		rss, fds = max(rss, x.rss), max(fds, x.fds)
	}
	return rss, fds
}

// RSS reads a process's resident set size (VmRSS) in bytes.
func RSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("pid %d VmRSS %q: %w", pid, v, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("pid %d: no VmRSS (a zombie?)", pid)
}

// FDs counts a process's open file descriptors.
func FDs(pid int) (int, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	return len(names), err
}

// MiB renders bytes in MiB.
func MiB(b int64) string { return strconv.FormatFloat(float64(b)/(1<<20), 'f', 1, 64) }
