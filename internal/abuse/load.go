package abuse

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The probes of volume: many large messages, and a race at a cap.

// FloodPublishes messages of FloodBytes each go to as many channels in the
// publish-flood probe.
const (
	FloodPublishes = 1500
	FloodBytes     = 32 << 10
)

// FloodSecondWaveGrowth bounds how much the node's RSS may grow over a
// second wave of the publish flood, once the first has filled what the node
// keeps (the abuse node runs with retention bounds of 16 MiB for the rings
// and 16 MiB for the log, below one wave's 47 MiB): with its memory bounded,
// more messages evict older ones and take no more. The build with the
// bounds grew by 0 to 4 MiB (its peak is set by the garbage collector's
// headroom over the first wave); the build before them kept every message
// twice and grew by 73 to 132 MiB, about as much as over the first wave.
const FloodSecondWaveGrowth = 32 << 20

func probePublishFlood(ctx context.Context, e *Env) error {
	var f failures
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	defer client.CloseIdleConnections()
	msg := []byte(`"` + strings.Repeat("x", FloodBytes-2) + `"`)
	rss0, _ := RSS(e.Node.PID)
	var peaks [2]int64
	for wave := range 2 {
		start := time.Now()
		f.addErr(publishWave(ctx, e, client, msg, wave))
		took := time.Since(start)
		rss, _ := RSS(e.Node.PID)
		peaks[wave] = rss
		if e.Samples != nil {
			p, _ := e.Samples.Max(start, time.Time{})
			peaks[wave] = max(p, rss)
		}
		e.logf("wave %d: %d publishes of %d KiB in %v; RSS now %s MiB, peak %s MiB (%s MiB before the flood)",
			wave+1, FloodPublishes, FloodBytes>>10, took.Round(time.Millisecond), MiB(rss), MiB(peaks[wave]), MiB(rss0))
	}
	if growth := peaks[1] - peaks[0]; growth > FloodSecondWaveGrowth {
		f.add("RSS grew by %s MiB over a second wave of %d publishes of %d KiB (peak %s → %s MiB), want at most %s MiB (FloodSecondWaveGrowth): the messages kept are not bounded",
			MiB(growth), FloodPublishes, FloodBytes>>10, MiB(peaks[0]), MiB(peaks[1]), MiB(FloodSecondWaveGrowth))
	}
	return f.err()
}

// publishWave publishes FloodPublishes messages to as many new channels,
// on 8 connections; every one must be answered 200.
func publishWave(ctx context.Context, e *Env, client *http.Client, msg []byte, wave int) error {
	var (
		next  atomic.Int64
		ok    atomic.Int64
		mu    sync.Mutex
		wg    sync.WaitGroup
		first []string
	)
	for range 8 {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < FloodPublishes && ctx.Err() == nil; i = next.Add(1) - 1 {
				u := e.Node.URL + publishPath(fmt.Sprintf("flood-%d-%d", wave, i))
				status, body, err := postJSON(ctx, client, u, msg)
				if err == nil && status == 200 {
					ok.Add(1)
					continue
				}
				mu.Lock()
				if len(first) < 5 {
					first = append(first, fmt.Sprintf("flood-%d-%d: %d %s %v", wave, i, status, clip(body), err))
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if n := ok.Load(); n != FloodPublishes {
		return fmt.Errorf("wave %d: %d of %d publishes of %d KiB answered 200, want all; first failures: %s", wave+1, n, FloodPublishes, FloodBytes>>10, strings.Join(first, "; "))
	}
	return nil
}

func postJSON(ctx context.Context, c *http.Client, url string, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBody))
	return resp.StatusCode, b, err
}

// The channel-cap-race probe: CapAdders parallel adds of CapAddSize new
// channels each to one group, CapAdders*CapAddSize > 2,000.
const (
	CapAdders  = 20
	CapAddSize = 200
	maxGroup   = 2000 // channelgroups.MaxChannelsPerGroup
)

func probeChannelCapRace(ctx context.Context, e *Env) error {
	var f failures
	const group = "race"
	answers := make([]Answer, CapAdders)
	errs := make([]error, CapAdders)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range CapAdders {
		chs := make([]string, CapAddSize)
		for j := range chs {
			chs[j] = fmt.Sprintf("r%d-%d", i, j)
		}
		target := cgPath(CapAccount, group) + "?add=" + strings.Join(chs, ",")
		wg.Go(func() {
			<-start
			answers[i], errs[i] = e.get(ctx, target)
		})
	}
	close(start)
	wg.Wait()
	acked := 0
	for i := range CapAdders {
		if f.expect(fmt.Sprintf("add %d of %d (%d channels)", i+1, CapAdders, CapAddSize), answers[i], errs[i], 200, 400) && answers[i].Status == 200 {
			acked++
		}
	}
	stored, _, err := listChannels(ctx, e, CapAccount, group, "consistency=fully_consistent")
	if err != nil {
		f.addErr(err)
		return f.err()
	}
	served, _, err := listChannels(ctx, e, CapAccount, group, "")
	f.addErr(err)
	e.logf("%d of %d adds acknowledged; the group holds %d channels in storage, %d served from memory", acked, CapAdders, len(stored), len(served))
	if len(stored) > maxGroup {
		f.add("the group holds %d channels after %d parallel adds of %d, want at most %d", len(stored), CapAdders, CapAddSize, maxGroup)
	}
	if len(stored) != acked*CapAddSize {
		f.add("the group holds %d channels, want exactly the %d of the %d acknowledged adds", len(stored), acked*CapAddSize, acked)
	}
	if err == nil && len(served) != len(stored) {
		f.add("the group is served with %d channels from memory and %d from storage, want the same", len(served), len(stored))
	}
	return f.err()
}
