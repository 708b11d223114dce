package clustercheck

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// outcome classifies one request as the client saw it.
type outcome int

const (
	ok          outcome = iota
	connErr             // no HTTP answer: refused, reset, EOF, client timeout
	unavailable         // 503 with Retry-After: allowed, never stale
	clientErr           // any other answer than 200, or a 200 we cannot read
	canceled            // the run's own context ended
)

// caller sends the run's requests to random current nodes and counts what
// went wrong, by class.
type caller struct {
	nodes func() []string
	hc    *http.Client // edits, lists, publishes
	poll  *http.Client // subscribe long-polls

	clientErrors, unavailable, connErrors atomic.Int64

	mu             sync.Mutex
	firstError     string
	firstConnError string
}

func newCaller(cfg Config) *caller {
	tr := &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 256, IdleConnTimeout: 30 * time.Second}
	return &caller{
		nodes: cfg.Nodes,
		hc:    &http.Client{Timeout: cfg.RequestTimeout, Transport: tr},
		poll:  &http.Client{Timeout: cfg.PollTimeout, Transport: tr},
	}
}

func (c *caller) close() { c.hc.Transport.(*http.Transport).CloseIdleConnections() }

// node picks a random current node other than except (when there is
// another), waiting while the pool is empty; "" once ctx ends.
func (c *caller) node(ctx context.Context, rnd *rand.Rand, except string) string {
	for {
		ns := c.nodes()
		if len(ns) > 1 && except != "" {
			ns = slices.DeleteFunc(slices.Clone(ns), func(n string) bool { return n == except })
		}
		if len(ns) > 0 {
			return ns[rnd.IntN(len(ns))]
		}
		if !pause(ctx, 20*time.Millisecond) {
			return ""
		}
	}
}

// get sends GET base+path and decodes a 200 answer into into.
func (c *caller) get(ctx context.Context, hc *http.Client, base, path string, into any) outcome {
	if base == "" {
		return canceled
	}
	u := base + path
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		c.clientError(u, err.Error())
		return clientErr
	}
	resp, err := hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return canceled
		}
		c.connError(err)
		return connErr
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		if ctx.Err() != nil {
			return canceled
		}
		c.connError(fmt.Errorf("GET %s: reading the answer: %w", u, err))
		return connErr
	}
	switch {
	case resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") != "":
		c.unavailable.Add(1)
		return unavailable
	case resp.StatusCode != http.StatusOK:
		c.clientError(u, fmt.Sprintf("%d %s", resp.StatusCode, body))
		return clientErr
	}
	if err := json.Unmarshal(body, into); err != nil {
		c.clientError(u, fmt.Sprintf("200 with %q: %s", body, err))
		return clientErr
	}
	return ok
}

func (c *caller) connError(err error) {
	c.connErrors.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.firstConnError == "" {
		c.firstConnError = err.Error()
	}
}

func (c *caller) clientError(u, what string) {
	c.clientErrors.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.firstError == "" {
		c.firstError = "GET " + u + ": " + what
	}
}

// pause waits d (pacing a client's loop after an error); false if ctx ended.
func pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// backoff is the pause after an outcome other than ok.
func backoff(o outcome) time.Duration {
	if o == unavailable {
		return 100 * time.Millisecond
	}
	return 20 * time.Millisecond
}
