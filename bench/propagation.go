// Package bench is groupcast's black-box load harness: it talks to running
// groupcastd nodes over HTTP only and records latencies in HDR histograms.
package bench

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// PropagationConfig describes a propagation run: edits on node A, reads (no
// token) on node B until the edit is visible.
type PropagationConfig struct {
	A, B    string // base URLs
	Account string
	Group   string
	Samples int
	// Timeout bounds the wait for one edit to show on B; zero means 10s.
	Timeout time.Duration
}

// Latencies summarises a histogram in microseconds.
type Latencies struct {
	Count                    int64
	P50, P90, P99, Max, Mean float64 // µs
	Errors                   int
	// CDF is the distribution at fixed quantiles, for plots.
	CDF []Quantile `json:",omitempty"`
}

// Quantile is one point of a latency distribution.
type Quantile struct {
	Q  float64 // 0..100
	US float64 // µs
}

func (l Latencies) String() string {
	return fmt.Sprintf("n=%d p50=%.0fµs p90=%.0fµs p99=%.0fµs max=%.0fµs mean=%.0fµs errors=%d",
		l.Count, l.P50, l.P90, l.P99, l.Max, l.Mean, l.Errors)
}

// cdfQuantiles are the quantiles kept for plots: dense in the tail.
var cdfQuantiles = []float64{0, 1, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 97, 98, 99, 99.5, 99.9, 99.99, 100}

func summarise(h *hdrhistogram.Histogram, errors int) Latencies {
	l := Latencies{
		Count: h.TotalCount(), P50: float64(h.ValueAtQuantile(50)), P90: float64(h.ValueAtQuantile(90)),
		P99: float64(h.ValueAtQuantile(99)), Max: float64(h.Max()), Mean: h.Mean(), Errors: errors,
	}
	if h.TotalCount() > 0 {
		for _, q := range cdfQuantiles {
			l.CDF = append(l.CDF, Quantile{Q: q, US: float64(h.ValueAtQuantile(q))})
		}
	}
	return l
}

// newHistogram records 1 µs to 10 minutes with 3 significant digits.
func newHistogram() *hdrhistogram.Histogram { return hdrhistogram.New(1, 600_000_000, 3) }

// Propagation measures, per sample, the time from an add returning on A to
// the channel being listed by B (minimize_latency, no token: what any
// reader on B sees). B is polled back to back, so the resolution is one
// loopback request.
func Propagation(ctx context.Context, cfg PropagationConfig) (Latencies, error) {
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	h := newHistogram()
	ac, bc := newHostClient(hostOf(cfg.A), 1), newHostClient(hostOf(cfg.B), 1)
	defer ac.CloseIdleConnections()
	defer bc.CloseIdleConnections()
	path := fmt.Sprintf("/v1/channel-registration/sub-key/%s/channel-group/%s", url.PathEscape(cfg.Account), url.PathEscape(cfg.Group))
	var list struct {
		Payload struct {
			Channels []string `json:"channels"`
		} `json:"payload"`
	}
	// Warm B's cache for the group, as a live reader would have.
	if err := fastGet(bc, cfg.B+path, &list); err != nil {
		return Latencies{}, err
	}
	errors := 0
	for i := range cfg.Samples {
		ch := fmt.Sprintf("p%d-%d", time.Now().UnixNano(), i)
		var edit struct{}
		if err := fastGet(ac, cfg.A+path+"?add="+url.QueryEscape(ch), &edit); err != nil {
			return Latencies{}, err
		}
		start := time.Now()
		deadline := start.Add(cfg.Timeout)
		for {
			if err := fastGet(bc, cfg.B+path, &list); err != nil {
				return Latencies{}, err
			}
			if slices.Contains(list.Payload.Channels, ch) {
				_ = h.RecordValue(time.Since(start).Microseconds())
				break
			}
			if time.Now().After(deadline) {
				errors++
				break
			}
		}
		// Keep the group small: remove the channel again (not measured).
		if err := fastGet(ac, cfg.A+path+"?remove="+url.QueryEscape(ch), &edit); err != nil {
			return Latencies{}, err
		}
		if ctx.Err() != nil {
			return summarise(h, errors), ctx.Err()
		}
	}
	return summarise(h, errors), nil
}
