package bench

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fastjson"
)

// Cursor is where a subscriber's next long-poll starts. Its meaning is the
// target's: groupcast keeps the timetoken in A; Nchan keeps Last-Modified
// in A and the Etag in B.
type Cursor struct{ A, B string }

// Target is a pub/sub server the fanout scenario drives over HTTP:
// groupcast, or a peer such as Nchan. Every message is one integer, the
// time (µs since the epoch) it was due to be published, so the subscriber
// can compute publish→deliver latency.
type Target interface {
	// Name labels the target in results ("groupcast", "nchan").
	Name() string
	// Addr is the host:port the clients connect to.
	Addr() string
	// Handshake returns the cursor a new subscriber of channel starts after.
	Handshake(ctx context.Context, c *fasthttp.HostClient, channel string) (Cursor, error)
	// Poll long-polls channel after cursor and returns the messages and
	// the next cursor. The messages are decoded into msgs's array, whose
	// contents are overwritten: a subscriber passes its last answer's, so
	// that the client allocates nothing per answer for them.
	// The poll goes over sc, the subscriber's own connection.
	Poll(ctx context.Context, sc *SubConn, channel string, cur Cursor, msgs []int64) ([]int64, Cursor, error)
	// Publish sends one message to channel.
	Publish(ctx context.Context, c *fasthttp.HostClient, channel string, msg int64) error
	// Parked is how many long-polls the server holds now.
	Parked(ctx context.Context) (int, error)
	// Memory is the server's memory in bytes: the proportional set size of
	// its processes, so that pages shared between them count once.
	Memory() (float64, error)
}

// Groupcast drives a groupcastd node through its PubNub-compatible API.
type Groupcast struct {
	Origin  string // base URL
	Admin   string // base URL of the node's admin listener, whose /metrics Parked (and Memory without PIDs) read
	Account string // subscribe key
	// PublishKey is the key publishes name; empty means "bench" (with
	// --access open any key is accepted).
	PublishKey string
	// Auth, if set, is the Access Manager token every subscribe and
	// publish carries (auth=); empty adds nothing to the requests.
	Auth string
	PIDs []int // the node's processes, for Memory; empty means scrape /metrics (RSS)

	authOnce  sync.Once
	authQuery string    // "auth=" and the escaped token, made once
	paths     pathCache // subscribePath's and publishPath's
}

// query is the auth parameter the requests carry, after sep ('?' or '&'):
// empty without a token. The token is escaped once, not per request: the
// load generator's core is what the access scenario's two cases share.
func (g *Groupcast) query(sep string) string {
	if g.Auth == "" {
		return ""
	}
	g.authOnce.Do(func() { g.authQuery = "auth=" + url.QueryEscape(g.Auth) })
	return sep + g.authQuery
}

func (g *Groupcast) Name() string { return "groupcast" }
func (g *Groupcast) Addr() string { return hostOf(g.Origin) }

type subscribeAnswer struct {
	T struct {
		T string `json:"t"`
	} `json:"t"`
	M []struct {
		D json.RawMessage `json:"d"`
	} `json:"m"`
}

func (g *Groupcast) Handshake(ctx context.Context, c *fasthttp.HostClient, channel string) (Cursor, error) {
	var a subscribeAnswer
	err := fastGet(c, fmt.Sprintf("%s/v2/subscribe/%s/%s/0%s", g.Origin, g.Account, channel, g.query("?")), &a)
	return Cursor{A: a.T.T}, err
}

func (g *Groupcast) Poll(ctx context.Context, sc *SubConn, channel string, cur Cursor, msgs []int64) ([]int64, Cursor, error) {
	var buf [256]byte
	t := append(buf[:0], g.subscribePath(channel)...)
	t = append(t, "?tt="...)
	t = append(t, cur.A...)
	return g.poll(sc, g.appendAuth(t, '&'), cur, msgs)
}

// pathKey names one of a channel's paths.
type pathKey struct {
	channel string
	publish bool
}

// pathCache keeps the paths the load generator sends, made once per
// channel: a re-poll's or a publish's request is built with no allocation.
type pathCache struct {
	mu sync.RWMutex
	m  map[pathKey]string
}

// get returns k's path, made by mk the first time.
func (c *pathCache) get(k pathKey, mk func() string) string {
	c.mu.RLock()
	p, ok := c.m[k]
	c.mu.RUnlock()
	if ok {
		return p
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[pathKey]string{}
	}
	p = mk()
	c.m[k] = p
	return p
}

// subscribePath is channel's subscribe path.
func (g *Groupcast) subscribePath(channel string) string {
	return g.paths.get(pathKey{channel, false}, func() string { return "/v2/subscribe/" + g.Account + "/" + channel + "/0" })
}

// appendAuth appends sep and the token's query argument to t when the
// target has a token.
func (g *Groupcast) appendAuth(t []byte, sep byte) []byte {
	if g.Auth == "" {
		return t
	}
	return append(append(t, sep), g.query("")...)
}

// poll runs one subscribe long-poll of target over sc.
func (g *Groupcast) poll(sc *SubConn, target []byte, cur Cursor, msgs []int64) ([]int64, Cursor, error) {
	status, body, err := sc.Get(target, nil)
	if err != nil {
		return msgs[:0], cur, err
	}
	if status != 200 {
		return msgs[:0], cur, fmt.Errorf("%s: %d %.200s", string(target), status, body) // a copy: target stays on the caller's stack
	}
	msgs, tt, err := decodeSubscribe(body, msgs)
	if err != nil {
		return msgs[:0], cur, err
	}
	return msgs, Cursor{A: tt}, nil
}

// subscribeParsers parse the subscribe answers scanSubscribe leaves:
// fastjson (valyala's, made for reading JSON fast without unmarshalling into
// structs) decodes an envelope about an order of magnitude faster than
// encoding/json, and scanSubscribe a node's own layout 2.4 times faster
// still, so that the client's decoding, on the load generator's one core,
// does not cap what is measured of the server.
var subscribeParsers fastjson.ParserPool

// decodeSubscribe reads a groupcast (PubNub v2) subscribe answer whose
// messages are each one integer: the messages and the next timetoken.
func decodeSubscribe(body []byte, msgs []int64) ([]int64, string, error) {
	if out, tt, ok := scanSubscribe(body, msgs); ok {
		return out, tt, nil
	}
	p := subscribeParsers.Get()
	defer subscribeParsers.Put(p)
	v, err := p.ParseBytes(body)
	if err != nil {
		return nil, "", fmt.Errorf("subscribe answer: %w", err)
	}
	tt := v.GetStringBytes("t", "t")
	if tt == nil {
		return nil, "", fmt.Errorf("subscribe answer without t.t: %.200s", body)
	}
	if m := v.Get("m"); m != nil && m.Type() != fastjson.TypeArray && m.Type() != fastjson.TypeNull {
		return nil, "", fmt.Errorf("subscribe answer whose m is not an array: %.200s", body)
	}
	ms := v.GetArray("m")
	out := msgs[:0]
	for _, m := range ms {
		d := m.Get("d")
		if d == nil || d.Type() != fastjson.TypeNumber {
			return nil, "", fmt.Errorf("message %s: not an integer", m)
		}
		n, err := d.Int64()
		if err != nil {
			return nil, "", fmt.Errorf("message %s: %w", m, err)
		}
		out = append(out, n)
	}
	return out, string(tt), nil
}

// Publish sends msg and checks the node acknowledged it ([1,"Sent",…]).
// The request is built in the pooled request's buffers and the answer read
// without unmarshalling: the publishers share the load generator's core
// with the subscribers, and the same checks cost Nchan's publishes (a
// status code) less.
func (g *Groupcast) Publish(ctx context.Context, c *fasthttp.HostClient, channel string, msg int64) error {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	u := req.URI()
	u.SetScheme("http")
	u.SetHost(hostOf(g.Origin))
	var buf [256]byte
	t := strconv.AppendInt(append(buf[:0], g.publishPath(channel)...), msg, 10)
	u.SetPathBytes(t)
	if q := g.query(""); q != "" { // the same token argument as a poll's
		u.SetQueryString(q)
	}
	if err := c.Do(req, resp); err != nil {
		return err
	}
	if resp.StatusCode() != 200 || !bytes.HasPrefix(resp.Body(), []byte(`[1,"Sent",`)) {
		return fmt.Errorf("%s: %d %s", req.URI(), resp.StatusCode(), resp.Body())
	}
	return nil
}

// publishPath is channel's publish path up to the message.
func (g *Groupcast) publishPath(channel string) string {
	return g.paths.get(pathKey{channel, true}, func() string {
		return "/publish/" + cmp.Or(g.PublishKey, "bench") + "/" + g.Account + "/0/" + channel + "/0/"
	})
}

func (g *Groupcast) Parked(ctx context.Context) (int, error) {
	n, err := scrape(g.Admin, "groupcast_parked_polls")
	return int(n), err
}

func (g *Groupcast) Memory() (float64, error) {
	if len(g.PIDs) == 0 {
		return rss(g.Admin)
	}
	return Pss(g.PIDs...)
}

// Pss sums the proportional set size of processes, from
// /proc/<pid>/smaps_rollup (Linux).
func Pss(pids ...int) (float64, error) {
	var total float64
	for _, pid := range pids {
		f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
		if err != nil {
			return 0, err
		}
		sc := bufio.NewScanner(f)
		found := false
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "Pss:"); ok {
				kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
				if err != nil {
					f.Close()
					return 0, fmt.Errorf("pid %d Pss %q: %w", pid, v, err)
				}
				total += kb * 1024
				found = true
				break
			}
		}
		f.Close()
		if !found {
			return 0, fmt.Errorf("pid %d: no Pss in smaps_rollup", pid)
		}
	}
	return total, nil
}

// MemoryAfterGC has the node collect garbage (its profiler's heap?gc=1 on
// the admin listener) and returns its heap in use plus its goroutine
// stacks (go_memstats_heap_inuse_bytes + go_memstats_stack_inuse_bytes
// from /metrics): the memory the node holds for its state and its parked
// polls, without garbage not yet collected.
func (g *Groupcast) MemoryAfterGC() (float64, error) {
	if err := forceGC(g.Admin); err != nil {
		return 0, err
	}
	heap, err := scrape(g.Admin, "go_memstats_heap_inuse_bytes")
	if err != nil {
		return 0, err
	}
	stacks, err := scrape(g.Admin, "go_memstats_stack_inuse_bytes")
	return heap + stacks, err
}

// MemoryKind says what MemoryAfterGC reads.
func (g *Groupcast) MemoryKind() string { return "Go heap in use + goroutine stacks after a forced GC" }
