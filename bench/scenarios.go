package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// GroupsConfig describes the groups scenario: subscribers of one group on
// node B while the group's membership changes EditsPerSec times a second
// on node A; after every edit a message is published on B to the channel
// just added or removed, carrying the edit's token, so it sorts after it.
type GroupsConfig struct {
	A, B        string // base URLs
	BAdmin      string // base URL of B's admin listener (/metrics)
	Account     string
	Subscribers int
	EditsPerSec float64
	Duration    time.Duration
	Pool        int // channels that come and go
	Progress    *Progress
}

// GroupsResult counts what the group's subscribers got. Every message on a
// channel just added must arrive, once, at every subscriber; none on a
// channel just removed may.
type GroupsResult struct {
	Subscribers int
	Edits       int
	EditsPerSec float64
	Expected    int   // messages each subscriber must receive
	Missed      int64 // over all subscribers
	Leaked      int64
	Duplicates  int64
	Latency     Latencies // publish → deliver of the expected messages
}

type groupMsg struct {
	K  int   `json:"k"`
	In bool  `json:"in"`
	T  int64 `json:"t"`
}

type editAnswer struct {
	Token string `json:"token"`
}

// Groups runs the groups scenario.
func Groups(ctx context.Context, cfg GroupsConfig) (GroupsResult, error) {
	res := GroupsResult{Subscribers: cfg.Subscribers}
	group := fmt.Sprintf("grp%d", time.Now().UnixNano())
	cg := fmt.Sprintf("/v1/channel-registration/sub-key/%s/channel-group/%s", cfg.Account, group)
	ac := newHostClient(hostOf(cfg.A), 4)
	bc := newHostClient(hostOf(cfg.B), cfg.Subscribers+4)
	// An anchor channel keeps the group from ever being empty.
	var ed editAnswer
	if err := fastGet(ac, cfg.A+cg+"?add=anchor", &ed); err != nil {
		return res, err
	}
	subURL := fmt.Sprintf("%s/v2/subscribe/%s/,/0?channel-group=%s", cfg.B, cfg.Account, group)
	var hs subscribeAnswer
	if err := fastGet(bc, subURL+"&token="+url.QueryEscape(ed.Token), &hs); err != nil {
		return res, fmt.Errorf("groups handshake: %w", err)
	}
	var (
		mu       sync.Mutex
		received = make([]map[int]int, cfg.Subscribers) // per subscriber: message → times
		leaked   atomic.Int64
		hist     = newHistogram()
		failures atomic.Int64
	)
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	for i := range cfg.Subscribers {
		received[i] = map[int]int{}
		go func() {
			cursor := hs.T.T
			for runCtx.Err() == nil {
				var a struct {
					T struct {
						T string `json:"t"`
					} `json:"t"`
					M []struct {
						D groupMsg `json:"d"`
					} `json:"m"`
				}
				if err := fastGet(bc, subURL+"&tt="+cursor, &a); err != nil {
					failures.Add(1)
					<-time.After(10 * time.Millisecond)
					continue
				}
				now := time.Now().UnixMicro()
				mu.Lock()
				for _, m := range a.M {
					received[i][m.D.K]++
					if !m.D.In {
						leaked.Add(1)
					} else if received[i][m.D.K] == 1 {
						_ = hist.RecordValue(max(1, now-m.D.T))
					}
				}
				mu.Unlock()
				cursor = a.T.T
			}
		}()
	}
	b := &Groupcast{Origin: cfg.B, Admin: cfg.BAdmin, Account: cfg.Account}
	for deadline := time.Now().Add(30 * time.Second); ; {
		n, err := b.Parked(ctx)
		if err != nil {
			return res, err
		}
		if n >= cfg.Subscribers {
			break
		}
		if time.Now().After(deadline) {
			return res, fmt.Errorf("groups: %d of %d subscribers parked after 30s", n, cfg.Subscribers)
		}
		<-time.After(20 * time.Millisecond)
	}

	var edits atomic.Int64
	if cfg.Progress != nil {
		cfg.Progress.Scenario(fmt.Sprintf("groups %d subscribers, %.0f edits/s", cfg.Subscribers, cfg.EditsPerSec), "edits", func() float64 { return float64(edits.Load()) })
	}
	member := make([]bool, cfg.Pool)
	var expected []int
	begin := time.Now()
	for k := 0; ctx.Err() == nil; k++ {
		due := begin.Add(time.Duration(float64(k) / cfg.EditsPerSec * float64(time.Second)))
		if due.Sub(begin) >= cfg.Duration {
			break
		}
		if wait := time.Until(due); wait > 0 {
			<-time.After(wait)
		}
		c := rand.IntN(cfg.Pool)
		op := "add"
		if member[c] {
			op = "remove"
		}
		member[c] = !member[c]
		ch := fmt.Sprintf("gc%d", c)
		if err := fastGet(ac, cfg.A+cg+"?"+op+"="+ch, &ed); err != nil {
			return res, fmt.Errorf("groups edit: %w", err)
		}
		edits.Add(1)
		body, _ := json.Marshal(groupMsg{K: k, In: member[c], T: time.Now().UnixMicro()})
		var r []any
		if err := fastGet(bc, fmt.Sprintf("%s/publish/bench/%s/0/%s/0/%s?token=%s", cfg.B, cfg.Account, ch, url.PathEscape(string(body)), url.QueryEscape(ed.Token)), &r); err != nil {
			return res, fmt.Errorf("groups publish: %w", err)
		}
		if member[c] {
			expected = append(expected, k)
		}
	}
	res.Edits = int(edits.Load())
	res.EditsPerSec = float64(res.Edits) / time.Since(begin).Seconds()
	res.Expected = len(expected)
	// Wait until every subscriber has every expected message, or 10s.
	missing := func() int64 {
		mu.Lock()
		defer mu.Unlock()
		var n int64
		for _, got := range received {
			for _, k := range expected {
				if got[k] == 0 {
					n++
				}
			}
		}
		return n
	}
	for deadline := time.Now().Add(10 * time.Second); missing() > 0 && time.Now().Before(deadline); {
		<-time.After(50 * time.Millisecond)
	}
	res.Missed = missing()
	res.Leaked = leaked.Load()
	mu.Lock()
	for _, got := range received {
		for _, n := range got {
			res.Duplicates += int64(max(0, n-1))
		}
	}
	res.Latency = summarise(hist, int(failures.Load()))
	mu.Unlock()
	return res, nil
}

// TokensConfig describes the tokens scenario: an edit on node A, then at
// once a list of the group on node B carrying the edit's token.
type TokensConfig struct {
	A, B     string
	BAdmin   string // base URL of B's admin listener (/metrics)
	Account  string
	Samples  int
	Progress *Progress
}

// TokensResult is the latency of token-carrying reads and how node B
// served them: from memory at once (fast), from memory after waiting for
// its log (waited), or from storage (slow).
type TokensResult struct {
	Samples              int
	Latency              Latencies
	Stale                int // reads that did not reflect the edit: must be 0
	Fast, Waited, Slow   float64
	Failed               float64
	FastShare, SlowShare float64
}

// Tokens runs the tokens scenario. Each sample adds a channel on A and
// lists on B with the token, then removes it on A and lists on B again.
func Tokens(ctx context.Context, cfg TokensConfig) (TokensResult, error) {
	res := TokensResult{}
	group := fmt.Sprintf("tok%d", time.Now().UnixNano())
	cg := fmt.Sprintf("/v1/channel-registration/sub-key/%s/channel-group/%s", cfg.Account, group)
	ac, bc := newHostClient(hostOf(cfg.A), 2), newHostClient(hostOf(cfg.B), 2)
	paths := []string{"fast", "waited", "slow", "failed"}
	counts := func() ([]float64, error) {
		out := make([]float64, len(paths))
		for i, p := range paths {
			v, err := scrape(cfg.BAdmin, fmt.Sprintf(`groupcast_group_reads_total{path=%q}`, p))
			if err != nil && !errors.Is(err, errNoSample) { // a path never taken has no sample yet
				return nil, err
			}
			out[i] = v
		}
		return out, nil
	}
	before, err := counts()
	if err != nil {
		return res, err
	}
	hist := newHistogram()
	var done atomic.Int64
	if cfg.Progress != nil {
		cfg.Progress.Scenario("tokens", "reads", func() float64 { return float64(done.Load()) })
	}
	var list struct {
		Payload struct {
			Channels []string `json:"channels"`
		} `json:"payload"`
	}
	for i := 0; i < cfg.Samples && ctx.Err() == nil; i++ {
		ch := fmt.Sprintf("t%d", i)
		for _, op := range []string{"add", "remove"} {
			var ed editAnswer
			if err := fastGet(ac, cfg.A+cg+"?"+op+"="+ch, &ed); err != nil {
				return res, fmt.Errorf("tokens edit: %w", err)
			}
			start := time.Now()
			if err := fastGet(bc, cfg.B+cg+"?token="+url.QueryEscape(ed.Token), &list); err != nil {
				return res, fmt.Errorf("tokens read: %w", err)
			}
			_ = hist.RecordValue(max(1, time.Since(start).Microseconds()))
			if slices.Contains(list.Payload.Channels, ch) != (op == "add") {
				res.Stale++
			}
			done.Add(1)
		}
	}
	after, err := counts()
	if err != nil {
		return res, err
	}
	res.Samples = int(hist.TotalCount())
	res.Latency = summarise(hist, 0)
	res.Fast, res.Waited, res.Slow, res.Failed = after[0]-before[0], after[1]-before[1], after[2]-before[2], after[3]-before[3]
	if total := res.Fast + res.Waited + res.Slow + res.Failed; total > 0 {
		res.FastShare, res.SlowShare = res.Fast/total, res.Slow/total
	}
	return res, nil
}
