package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
)

// Region is one region of the geo scenario on this machine: the Cassandra
// host of its datacenter, that datacenter's name and its own Redis.
type Region struct {
	N         int
	Cassandra string // host[:port]
	DC        string
	Redis     string // host:port
}

// ParseRegion reads a region as given to `groupcast bench suite --region`:
// N=CASSANDRA,DC,REDIS (e.g. 2=127.0.0.2,dc2,127.0.0.2:6390).
func ParseRegion(s string) (Region, error) {
	n, rest, ok := strings.Cut(s, "=")
	parts := strings.Split(rest, ",")
	if !ok || len(parts) != 3 {
		return Region{}, fmt.Errorf("bench: region %q: want N=CASSANDRA,DC,REDIS", s)
	}
	num, err := strconv.Atoi(n)
	if err != nil || num < 1 {
		return Region{}, fmt.Errorf("bench: region %q: number must be >= 1", s)
	}
	r := Region{N: num, Cassandra: parts[0], DC: parts[1], Redis: parts[2]}
	if r.Cassandra == "" || r.DC == "" || r.Redis == "" {
		return Region{}, fmt.Errorf("bench: region %q: empty Cassandra, DC or Redis", s)
	}
	if _, _, err := net.SplitHostPort(r.Redis); err != nil {
		return Region{}, fmt.Errorf("bench: region %q: Redis: %w", s, err)
	}
	return r, nil
}

// RegionsFromEnv reads regions 1, 2, … from GROUPCAST_R<N>_CASSANDRA,
// GROUPCAST_R<N>_DC and GROUPCAST_R<N>_REDIS (what `scripts/infra up
// --regions N` prints), stopping at the first region not fully set.
func RegionsFromEnv(getenv func(string) string) []Region {
	var out []Region
	for n := 1; ; n++ {
		v := func(k string) string { return getenv(fmt.Sprintf("GROUPCAST_R%d_%s", n, k)) }
		r := Region{N: n, Cassandra: v("CASSANDRA"), DC: v("DC"), Redis: v("REDIS")}
		if r.Cassandra == "" || r.DC == "" || r.Redis == "" {
			return out
		}
		out = append(out, r)
	}
}

// GeoOneWay is the latency the geo scenario injects on the link between
// the regions, each way.
const GeoOneWay = 40 * time.Millisecond

// GeoResult is what the geo scenario measured between two regions whose
// link to each other's Redis carries OneWay of latency each way.
type GeoResult struct {
	OneWay time.Duration
	// Refresh is the baseline's --refresh-every: how often a node re-reads
	// the groups read since the last round from storage.
	Refresh time.Duration
	// Edit: from an add returning in region 1 until a group read in
	// region 2 (no token) lists the channel, with replication on.
	Edit Latencies
	// Message: from a publish being sent in region 1 until a long-poll
	// subscriber of the channel's group in region 2 has it.
	Message Latencies
	// MessageQuiet is Message on a quiet link: samples up to QuietGap
	// apart, so that a replicator's blocking read of the other region's
	// log may time out and be re-issued between them, as between sparse
	// entries.
	MessageQuiet Latencies
	QuietGap     time.Duration
	// MessageAcked is Message from the publish's answer instead, as Edit
	// is from the add's.
	MessageAcked Latencies `json:",omitempty"`
	// MessageDuplicates counts messages the subscriber got more than once.
	MessageDuplicates int
	// LoadBefore and LoadAfter are the machine's load averages (1, 5 and
	// 15 minutes, /proc/loadavg) as the replicated measurements began and
	// ended: other work on the machine shows in the tails.
	LoadBefore, LoadAfter string `json:",omitempty"`
	// Replicated is region 2's groupcast_replicated_entries_total after
	// both measurements: evidence the entries came by replication.
	Replicated float64
	// EditEarly counts edits region 2 listed sooner after the add was
	// sent than the one-way latency: not carried over the link (region 2
	// read them from its datacenter, whose link to region 1's carries no
	// injected latency).
	EditEarly int
	// Baseline is Edit with replication off: region 2 learns region 1's
	// edits only from its datacenter, re-read every Refresh.
	Baseline Latencies
}

// OverOneWay is how far a distribution's p50 and p99 lie above the
// injected one-way latency, in µs: what replication itself adds.
func (g GeoResult) OverOneWay(l Latencies) (p50, p99 float64) {
	ow := float64(g.OneWay.Microseconds())
	return l.P50 - ow, l.P99 - ow
}

// GeoConfig describes one geo measurement between a node of region 1 and
// a node of region 2.
type GeoConfig struct {
	R1, R2  string // base URLs
	Account string
	Samples int
	// Timeout bounds the wait for one sample; zero means 10s. A sample
	// that times out counts as an error.
	Timeout time.Duration
	// Idle is the least pause between samples and Jitter the most added to
	// it at random: samples do not fall in step with anything periodic (a
	// replicator re-issuing its read, a refresh round), and each starts
	// with the link idle. Zero means none.
	Idle, Jitter time.Duration
	// Poll is the pause between two reads of region 2 while an edit is
	// awaited; zero means back to back (the resolution is then one
	// loopback request).
	Poll time.Duration
	// Floor is the link's one-way latency: an edit listed by R2 sooner
	// after its add was sent to R1 cannot have come over the link, and
	// GeoEdits counts it. Zero counts none.
	Floor time.Duration
	// Keep leaves each added channel in the group. Otherwise it is
	// removed again in region 1 and the next sample waits (unmeasured,
	// within Timeout) until region 2 no longer lists it.
	Keep bool
	// Warm is how many samples go first unmeasured: the path's first
	// entries after the nodes start are not its steady state.
	Warm     int
	Progress *Progress
	// Name labels the progress line.
	Name string
}

func (c GeoConfig) pause(ctx context.Context) error {
	d := c.Idle
	if c.Jitter > 0 {
		d += rand.N(c.Jitter)
	}
	if d <= 0 {
		return ctx.Err()
	}
	return sleepCtx(ctx, d)
}

type groupList struct {
	Payload struct {
		Channels []string `json:"channels"`
	} `json:"payload"`
}

// GeoEdits measures, per sample, the time from an add returning on R1 to
// the channel being listed by R2 (a read without a token: what any reader
// in region 2 sees), reading R2 every Poll. It returns the distribution
// and how many samples R2 listed within cfg.Floor of the add being sent.
func GeoEdits(ctx context.Context, cfg GeoConfig) (Latencies, int, error) {
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	group := fmt.Sprintf("geo%d", time.Now().UnixNano())
	path := fmt.Sprintf("/v1/channel-registration/sub-key/%s/channel-group/%s", url.PathEscape(cfg.Account), group)
	c1, c2 := newHostClient(hostOf(cfg.R1), 1), newHostClient(hostOf(cfg.R2), 1)
	defer c1.CloseIdleConnections()
	defer c2.CloseIdleConnections()
	var ed editAnswer
	// waitFor reads R2 until the channel is listed (or not, when !in).
	waitFor := func(ch string, in bool, timeout time.Duration) (bool, error) {
		var list groupList
		for deadline := time.Now().Add(timeout); ; {
			if err := fastGet(c2, cfg.R2+path, &list); err != nil {
				return false, err
			}
			if slices.Contains(list.Payload.Channels, ch) == in {
				return true, nil
			}
			if time.Now().After(deadline) {
				return false, ctx.Err()
			}
			if cfg.Poll > 0 {
				if err := sleepCtx(ctx, cfg.Poll); err != nil {
					return false, err
				}
			} else if ctx.Err() != nil {
				return false, ctx.Err()
			}
		}
	}
	// An anchor keeps the group from being empty; R2 reading it once
	// caches the group's view there, as a live reader's would be.
	if err := fastGet(c1, cfg.R1+path+"?add=anchor", &ed); err != nil {
		return Latencies{}, 0, fmt.Errorf("geo edit: %w", err)
	}
	if ok, err := waitFor("anchor", true, max(cfg.Timeout, 40*time.Second)); err != nil || !ok {
		return Latencies{}, 0, fmt.Errorf("geo edit: region 2 (%s) never listed region 1's first edit (%v)", cfg.R2, err)
	}
	h := newHistogram()
	errs, early := 0, 0
	var done atomic.Int64
	if cfg.Progress != nil {
		cfg.Progress.Scenario(cfg.Name, "edits", func() float64 { return float64(done.Load()) })
	}
	for i := -cfg.Warm; i < cfg.Samples; i++ {
		if err := cfg.pause(ctx); err != nil {
			return summarise(h, errs), early, err
		}
		ch := fmt.Sprintf("g%d", i)
		sent := time.Now()
		if err := fastGet(c1, cfg.R1+path+"?add="+ch, &ed); err != nil {
			return summarise(h, errs), early, fmt.Errorf("geo edit: %w", err)
		}
		start := time.Now()
		ok, err := waitFor(ch, true, cfg.Timeout)
		if err != nil {
			return summarise(h, errs), early, fmt.Errorf("geo edit: %w", err)
		}
		switch now := time.Now(); {
		case i < 0: // warming up
		case ok:
			_ = h.RecordValue(max(1, now.Sub(start).Microseconds()))
			if now.Sub(sent) < cfg.Floor {
				early++
			}
			done.Add(1)
		default:
			errs++
			done.Add(1)
		}
		if cfg.Keep {
			continue
		}
		if err := fastGet(c1, cfg.R1+path+"?remove="+ch, &ed); err != nil {
			return summarise(h, errs), early, fmt.Errorf("geo edit: %w", err)
		}
		if _, err := waitFor(ch, false, cfg.Timeout); err != nil {
			return summarise(h, errs), early, fmt.Errorf("geo edit: %w", err)
		}
	}
	return summarise(h, errs), early, nil
}

// geoStop is the message that releases GeoMessages' subscriber.
const geoStop = -1

// GeoMessageRun is what GeoMessages measured.
type GeoMessageRun struct {
	// Sent is from each publish being sent, Acked from its answer.
	Sent, Acked Latencies
	// Duplicates counts messages the subscriber got more than once.
	Duplicates int
}

// GeoMessages measures, per sample, the time from a publish being sent on
// R1 to a long-poll subscriber of the channel's group on R2 receiving it.
// The group is made on R2, so the subscriber does not wait for its
// replication. One message is in flight at a time.
func GeoMessages(ctx context.Context, cfg GeoConfig) (GeoMessageRun, error) {
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	id := time.Now().UnixNano()
	group, channel := fmt.Sprintf("geom%d", id), fmt.Sprintf("geoc%d", id)
	acct := url.PathEscape(cfg.Account)
	c1, c2 := newHostClient(hostOf(cfg.R1), 1), newHostClient(hostOf(cfg.R2), 2)
	defer c1.CloseIdleConnections()
	defer c2.CloseIdleConnections()
	var ed editAnswer
	if err := fastGet(c2, fmt.Sprintf("%s/v1/channel-registration/sub-key/%s/channel-group/%s?add=%s", cfg.R2, acct, group, channel), &ed); err != nil {
		return GeoMessageRun{}, fmt.Errorf("geo message: %w", err)
	}
	subURL := fmt.Sprintf("%s/v2/subscribe/%s/,/0?channel-group=%s&uuid=geo", cfg.R2, acct, group)
	var hs subscribeAnswer
	if err := fastGet(c2, subURL+"&token="+url.QueryEscape(ed.Token), &hs); err != nil {
		return GeoMessageRun{}, fmt.Errorf("geo message handshake: %w", err)
	}
	type arrival struct {
		seq int64
		at  time.Time
	}
	arrivals := make(chan arrival, 1024)
	subDone := make(chan error, 1)
	go func() {
		cursor := hs.T.T
		for {
			var a subscribeAnswer
			if err := fastGet(c2, subURL+"&tt="+cursor, &a); err != nil {
				subDone <- err
				return
			}
			now := time.Now()
			for _, m := range a.M {
				seq, err := strconv.ParseInt(string(m.D), 10, 64)
				if err != nil {
					continue // not ours
				}
				if seq == geoStop {
					subDone <- nil
					return
				}
				arrivals <- arrival{seq, now}
			}
			cursor = a.T.T
		}
	}()
	publish := func(base string, c *fasthttp.HostClient, seq int64) error {
		var r []any
		return fastGet(c, fmt.Sprintf("%s/publish/bench/%s/0/%s/0/%d", base, acct, channel, seq), &r)
	}
	defer func() {
		// Release the subscriber (published in its own region, no waiting
		// on the link) and wait a while for it.
		if publish(cfg.R2, c2, geoStop) == nil {
			select {
			case <-subDone:
			case <-time.After(10 * time.Second):
			}
		}
	}()

	h, ha := newHistogram(), newHistogram()
	errs, dups := 0, 0
	run := func() GeoMessageRun {
		return GeoMessageRun{Sent: summarise(h, errs), Acked: summarise(ha, errs), Duplicates: dups}
	}
	got := map[int64]bool{}
	var done atomic.Int64
	if cfg.Progress != nil {
		cfg.Progress.Scenario(cfg.Name, "messages", func() float64 { return float64(done.Load()) })
	}
	for seq := int64(0); seq < int64(cfg.Warm+cfg.Samples); seq++ {
		measured := seq >= int64(cfg.Warm)
		if err := cfg.pause(ctx); err != nil {
			return run(), err
		}
		start := time.Now()
		err := publish(cfg.R1, c1, seq)
		acked := time.Now()
		if err != nil {
			return run(), fmt.Errorf("geo publish: %w", err)
		}
		timeout := time.NewTimer(cfg.Timeout)
	wait:
		for {
			select {
			case a := <-arrivals:
				if got[a.seq] {
					dups++
					continue
				}
				got[a.seq] = true
				if a.seq == seq {
					if measured {
						_ = h.RecordValue(max(1, a.at.Sub(start).Microseconds()))
						_ = ha.RecordValue(max(1, a.at.Sub(acked).Microseconds()))
					}
					break wait
				}
			case err := <-subDone:
				timeout.Stop()
				if err == nil {
					err = errors.New("subscriber stopped")
				}
				subDone <- err // for the deferred release
				return run(), fmt.Errorf("geo message subscriber: %w", err)
			case <-timeout.C:
				if measured {
					errs++
				}
				break wait
			case <-ctx.Done():
				timeout.Stop()
				return run(), ctx.Err()
			}
		}
		timeout.Stop()
		if measured {
			done.Add(1)
		}
	}
	return run(), nil
}

// wan is the link between regions on one machine: for each region, an
// in-process TCP proxy on loopback in front of its Redis that delays every
// byte by the one-way latency in each direction. The other regions' nodes
// reach that Redis through it.
type wan struct {
	proxies map[int]*toxiproxy.Proxy // by the region whose Redis it fronts
}

// startWAN starts one proxy per region, in front of its Redis, on a free
// port of 127.0.0.1.
func startWAN(regions []Region, oneWay time.Duration) (*wan, error) {
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	w := &wan{proxies: map[int]*toxiproxy.Proxy{}}
	for _, r := range regions {
		p := toxiproxy.NewProxy(srv, fmt.Sprintf("redis-r%d", r.N), "127.0.0.1:0", r.Redis)
		if err := p.Start(); err != nil {
			w.Close()
			return nil, fmt.Errorf("bench: proxy in front of region %d's Redis %s: %w", r.N, r.Redis, err)
		}
		w.proxies[r.N] = p
		for _, stream := range []string{"upstream", "downstream"} {
			b, err := json.Marshal(map[string]any{"name": "wan-" + stream, "type": "latency", "stream": stream, "toxicity": 1,
				"attributes": map[string]any{"latency": oneWay.Milliseconds()}})
			if err == nil {
				_, err = p.Toxics.AddToxicJson(bytes.NewReader(b))
			}
			if err != nil {
				w.Close()
				return nil, fmt.Errorf("bench: latency on region %d's link: %w", r.N, err)
			}
		}
	}
	return w, nil
}

// Addr is where the other regions reach region n's Redis through the link.
func (w *wan) Addr(n int) string { return w.proxies[n].Listen }

// Close stops the proxies, closing every connection through them.
func (w *wan) Close() {
	for _, p := range w.proxies {
		p.Stop()
	}
}
