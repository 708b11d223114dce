package bench

import (
	"bufio"
	"context"
	"encoding/json"
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

// FanoutConfig describes a fanout run: Subscribers long-polls parked on one
// channel of one node, a publisher publishing back to back for Duration.
type FanoutConfig struct {
	Origin      string // base URL of the node
	Subscribers int
	Duration    time.Duration
	Account     string
}

// FanoutResult is what a fanout run measured.
type FanoutResult struct {
	Subscribers      int
	Parked           int   // long-polls the node held when its memory was read
	Failures         int64 // subscriber polls that failed
	Published        int64
	Delivered        int64
	DeliveredPerSec  float64
	Latency          Latencies // publish → deliver
	BytesPerParked   float64   // node RSS growth per parked long-poll
	CeilingReqPerSec float64   // a fasthttp hello-world server, same client concurrency
	RatioToCeiling   float64
}

func (r FanoutResult) String() string {
	return fmt.Sprintf("subscribers=%d parked=%d poll_failures=%d published=%d delivered=%d delivered/s=%.0f ceiling req/s=%.0f ratio=%.2f memory/parked=%.1f KiB publish→deliver %s",
		r.Subscribers, r.Parked, r.Failures, r.Published, r.Delivered, r.DeliveredPerSec, r.CeilingReqPerSec, r.RatioToCeiling, r.BytesPerParked/1024, r.Latency)
}

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

// rss scrapes the node's resident memory from its /metrics.
func rss(origin string) (float64, error) { return scrape(origin, "process_resident_memory_bytes") }

// scrape reads one sample from the node's /metrics.
func scrape(origin, sample string) (float64, error) {
	resp, err := http.Get(origin + "/metrics")
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
	return 0, fmt.Errorf("%s/metrics has no %s", origin, sample)
}

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

type fanoutAnswer struct {
	T struct {
		T string `json:"t"`
	} `json:"t"`
	M []struct {
		D int64 `json:"d"`
	} `json:"m"`
}

// Fanout parks cfg.Subscribers long-polls on one channel, measures the
// node's memory per parked poll, then publishes back to back for
// cfg.Duration (each message carries its publish time) and measures
// deliveries and publish→deliver latency.
func Fanout(ctx context.Context, cfg FanoutConfig) (FanoutResult, error) {
	res := FanoutResult{Subscribers: cfg.Subscribers}
	addr := hostOf(cfg.Origin)
	hc := newHostClient(addr, cfg.Subscribers)
	channel := fmt.Sprintf("fan-%d", time.Now().UnixNano())
	subURL := fmt.Sprintf("%s/v2/subscribe/%s/%s/0", cfg.Origin, cfg.Account, channel)
	before, err := rss(cfg.Origin)
	if err != nil {
		return res, err
	}
	var hs fanoutAnswer
	if err := fastGet(hc, subURL, &hs); err != nil {
		return res, err
	}
	var (
		failures  atomic.Int64
		delivered atomic.Int64
		mu        sync.Mutex
		hist      = hdrhistogram.New(1, 60_000_000, 3)
	)
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	for i := range cfg.Subscribers {
		go func() {
			cursor := hs.T.T
			for runCtx.Err() == nil {
				var a fanoutAnswer
				if err := fastGet(hc, fmt.Sprintf("%s?uuid=s%d&tt=%s", subURL, i, cursor), &a); err != nil {
					failures.Add(1)
					<-time.After(10 * time.Millisecond)
					continue
				}
				now := time.Now().UnixMicro()
				mu.Lock()
				for _, m := range a.M {
					_ = hist.RecordValue(max(1, now-m.D))
				}
				mu.Unlock()
				delivered.Add(int64(len(a.M)))
				cursor = a.T.T
			}
		}()
		if i%500 == 499 { // do not overflow the listen backlog
			<-time.After(20 * time.Millisecond)
		}
	}
	// Wait until every poll has reached the node and parked (or a minute
	// passed), then read its memory.
	parkDeadline := time.Now().Add(time.Minute)
	for ctx.Err() == nil {
		n, err := scrape(cfg.Origin, "groupcast_parked_polls")
		if err != nil {
			return res, err
		}
		res.Parked = int(n)
		if res.Parked >= cfg.Subscribers || time.Now().After(parkDeadline) {
			break
		}
		<-time.After(50 * time.Millisecond)
	}
	after, err := rss(cfg.Origin)
	if err != nil {
		return res, err
	}
	res.BytesPerParked = (after - before) / float64(max(1, res.Parked))

	pubURL := fmt.Sprintf("%s/publish/bench/%s/0/%s/0/", cfg.Origin, cfg.Account, channel)
	pc := newHostClient(addr, 1)
	start := time.Now()
	deadline := start.Add(cfg.Duration)
	var published int64
	for time.Now().Before(deadline) && ctx.Err() == nil {
		var r []any
		if err := fastGet(pc, pubURL+strconv.FormatInt(time.Now().UnixMicro(), 10), &r); err != nil {
			return res, err
		}
		published++
	}
	elapsed := time.Since(start)
	// Give the last deliveries a moment, then stop counting. Subscribers
	// parked in a poll stay there until the node's hold ends; the caller's
	// process exit (or the node's shutdown) ends them, so do not wait.
	<-time.After(500 * time.Millisecond)
	stop()
	res.Published = published
	res.Delivered = delivered.Load()
	res.DeliveredPerSec = float64(res.Delivered) / elapsed.Seconds()
	mu.Lock()
	res.Latency = summarise(hist, 0)
	mu.Unlock()
	res.Failures = failures.Load()
	return res, nil
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
