package httpapi

import (
	"errors"
	"net"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/groupcast/groupcast/channelgroups"
	"github.com/groupcast/groupcast/subscriber"
)

// Router says where a request for an account shard is served.
type Router interface {
	// Route returns nil when this node serves the request itself; otherwise the
	// HTTP addresses (host:port) of the shard's owners to try, in order (write:
	// the primary first). An empty non-nil slice: no owner reachable.
	Route(shard int, write bool) []string
	// Refused tells the router a forward to addr could not connect.
	Refused(addr string)
}

// ForwardedHeader marks a forwarded request with the node that forwarded
// it; a request carrying it is never forwarded again.
const ForwardedHeader = "Groupcast-Forwarded"

// Forwarding limits, per owner address.
const (
	// ForwardMaxConns bounds the pooled connections for requests other than
	// subscribes; a request waits up to ForwardConnWait for a free one.
	ForwardMaxConns = 512
	ForwardConnWait = time.Second
	// ForwardMaxPolls bounds the connections held by forwarded subscribe
	// long-polls, one each while the owner holds the poll.
	ForwardMaxPolls = 50_000
	// ForwardDialTimeout bounds connecting to an owner.
	ForwardDialTimeout = 2 * time.Second
	// ForwardMargin is added to RequestTimeout for a forwarded request other
	// than a subscribe, so that the owner's own answer (a 503 when its
	// storage timed out) arrives before the forwarder gives up.
	ForwardMargin = time.Second
)

// hopHeaders are meaningful for one connection only and are not passed on
// (RFC 9110 §7.6.1).
var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// upstream holds the connection pools to one owner: one for subscribes,
// which hold a connection while the owner keeps the poll parked, and one for
// everything else, so that parked polls cannot starve edits.
type upstream struct {
	short, poll *fasthttp.HostClient
}

// dialError marks a failure to connect: nothing was sent.
type dialError struct{ err error }

func (e *dialError) Error() string { return "connecting: " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

func dialOwner(addr string) (net.Conn, error) {
	c, err := fasthttp.DialTimeout(addr, ForwardDialTimeout)
	if err != nil {
		return nil, &dialError{err}
	}
	return c, nil
}

// pollConn is a connection forwarded subscribes use; Drain closes them all,
// so that a node stopping does not wait for other nodes' parked polls.
type pollConn struct {
	net.Conn
	a    *API
	once sync.Once
}

func (c *pollConn) Close() error {
	c.once.Do(func() {
		c.a.mu.Lock()
		delete(c.a.pollConns, c)
		c.a.mu.Unlock()
	})
	return c.Conn.Close()
}

func (a *API) dialPoll(addr string) (net.Conn, error) {
	c, err := dialOwner(addr)
	if err != nil {
		return nil, err
	}
	pc := &pollConn{Conn: c, a: a}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.draining.Load() {
		c.Close()
		return nil, errDraining
	}
	a.pollConns[pc] = struct{}{}
	return pc, nil
}

var errDraining = errors.New("httpapi: draining")

// cutForwardedPolls closes the connections of forwarded subscribes, spread
// evenly over spread: each is answered as Drain answers a parked poll (see
// releasedPoll).
func (a *API) cutForwardedPolls(spread time.Duration) {
	a.mu.Lock()
	conns := make([]*pollConn, 0, len(a.pollConns))
	for c := range a.pollConns {
		conns = append(conns, c)
	}
	a.mu.Unlock()
	if len(conns) == 0 {
		return
	}
	t := time.NewTicker(max(spread/time.Duration(len(conns)), time.Microsecond))
	defer t.Stop()
	for i, c := range conns {
		if i > 0 && spread > 0 {
			<-t.C
		}
		c.Close()
	}
}

// releasedPoll answers a forwarded subscribe cut by Drain like a released
// parked poll: no messages, the cursor it came with, so that the client
// polls again (elsewhere). Without a cursor it answers 503.
func (a *API) releasedPoll(ctx *fasthttp.RequestCtx) {
	tt, err := channelgroups.ParseTimetoken(string(ctx.QueryArgs().Peek("tt")))
	if err != nil || tt == 0 {
		ctx.Response.Header.Set("Retry-After", "1")
		writeError(ctx, fasthttp.StatusServiceUnavailable, "subscribe", "draining, retry")
		return
	}
	a.answerSubscribe(ctx, "", subscriber.PollResult{Cursor: tt}, nil)
}

// upstream returns the pools to addr, creating them on first use.
func (a *API) upstream(addr string) *upstream {
	a.mu.Lock()
	defer a.mu.Unlock()
	if u, ok := a.upstreams[addr]; ok {
		return u
	}
	client := func(maxConns int, timeout time.Duration, dial fasthttp.DialFunc) *fasthttp.HostClient {
		return &fasthttp.HostClient{
			Addr:               addr,
			Dial:               dial,
			MaxConns:           maxConns,
			MaxConnWaitTimeout: ForwardConnWait,
			ReadTimeout:        timeout,
			WriteTimeout:       a.cfg.RequestTimeout,
			// Owners answer with small headers; a long request (a GET
			// publish carries its message in the path) is written through
			// the buffer, not limited by it. Per pooled connection, so small.
			ReadBufferSize:           forwardBufferSize,
			WriteBufferSize:          forwardBufferSize,
			NoDefaultUserAgentHeader: true,
			DisablePathNormalizing:   true,
			// Retries are ours: a write must not be sent twice.
			MaxIdemponentCallAttempts: 1,
			// The default idle time (10s) is well under the owner's
			// IdleTimeout, so a pooled connection is not closed under a
			// request by the owner.
		}
	}
	u := &upstream{
		short: client(ForwardMaxConns, a.cfg.RequestTimeout+ForwardMargin, dialOwner),
		poll:  client(ForwardMaxPolls, a.cfg.ForwardTimeout, a.dialPoll),
	}
	a.upstreams[addr] = u
	return u
}

// CloseIdleForwards closes the idle pooled connections to other nodes.
func (a *API) CloseIdleForwards() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, u := range a.upstreams {
		u.short.CloseIdleConnections()
		u.poll.CloseIdleConnections()
	}
}

// forward asks the Router where the request for rawAccount is served; when
// that is another node, it proxies the request there (or refuses a second
// hop) and reports true. An account that does not parse is served here,
// which answers 400.
func (a *API) forward(ctx *fasthttp.RequestCtx, ep endpoint, rawAccount string) bool {
	acct, err := channelgroups.ParseAccount(rawAccount)
	if err != nil {
		return false
	}
	shard := channelgroups.ShardOf(acct, a.cfg.Shards)
	addrs := a.cfg.Router.Route(shard, ep.write)
	if addrs == nil {
		return false
	}
	if from := ctx.Request.Header.Peek(ForwardedHeader); len(from) > 0 {
		// The sender saw this node as an owner: the two views of the ring
		// differ, which gossip settles within moments (a node joined, died
		// or is draining). Wait for this node's view to make it an owner
		// before calling it a loop.
		if a.awaitRoute(shard, ep.write) {
			return false
		}
		a.forwarded("loop")
		ctx.Response.Header.Set("Retry-After", "1")
		a.cfg.Logger.Warn("forwarded request would be forwarded again", "from", string(from), "to", addrs, "path", string(ctx.Path()))
		writeError(ctx, fasthttp.StatusLoopDetected, "groupcast",
			"request forwarded by "+string(from)+" is not served here either; the nodes disagree on the shard's owners, retry")
		return true
	}
	start := time.Now()
	result := a.proxy(ctx, ep, addrs)
	a.forwarded(result)
	if ep.name != "subscribe" && a.forwardLatency != nil {
		a.forwardLatency.Observe(time.Since(start).Seconds())
	}
	return true
}

// forwardBufferSize is the read and write buffer of a pooled connection to
// an owner.
const forwardBufferSize = 8 << 10

// LoopWait bounds how long a forwarded request that this node would forward
// again waits for its view of the ring to make it an owner.
const LoopWait = time.Second

// awaitRoute reports whether, within LoopWait, the Router comes to say the
// shard is served here.
func (a *API) awaitRoute(shard int, write bool) bool {
	deadline := time.Now().Add(LoopWait)
	for time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // the Router has no change signal; its view changes by gossip
		if a.cfg.Router.Route(shard, write) == nil {
			return true
		}
	}
	return false
}

func (a *API) forwarded(result string) {
	if a.forwards != nil {
		a.forwards.WithLabelValues(result).Inc()
	}
}

// proxy sends the request to the first owner in addrs that takes it and
// relays the answer, and returns the result for metrics.
//
// An owner that cannot be connected to is reported to the Router and the
// next one is tried. A read whose connection broke before its answer came
// (say the owner was stopped while a subscribe was parked on it) is sent
// once more to the same owner, which may only have closed a pooled
// connection, and then to the next. A write that may have been sent is never
// sent again: it answers 503, and the client retries (with its
// Idempotency-Key, if it gave one).
func (a *API) proxy(ctx *fasthttp.RequestCtx, ep endpoint, addrs []string) string {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	ctx.Request.Header.CopyTo(&req.Header) // the raw request URI included
	for _, h := range hopHeaders {
		req.Header.Del(h)
	}
	req.Header.ResetConnectionClose()
	req.Header.Set(ForwardedHeader, a.cfg.Node)
	req.Header.Add("X-Forwarded-For", ctx.RemoteIP().String())
	req.UseHostHeader = true
	req.SetBody(ctx.Request.Body())

	result := "refused"
	for _, addr := range addrs {
		u := a.upstream(addr)
		hc := u.short
		if ep.name == "subscribe" {
			hc = u.poll
		}
		err := a.send(hc, req, resp, !ep.write)
		var de *dialError
		switch {
		case err != nil && ep.name == "subscribe" && a.draining.Load():
			a.releasedPoll(ctx)
			return "ok"
		case err == nil:
			relay(ctx, resp)
			return "ok"
		case errors.As(err, &de):
			a.cfg.Router.Refused(addr)
			a.cfg.Logger.Warn("owner refused a forward", "addr", addr, "err", err)
			continue
		case errors.Is(err, fasthttp.ErrNoFreeConns):
			a.cfg.Logger.Warn("no free connection to owner", "addr", addr)
			continue
		}
		a.cfg.Logger.Warn("forward failed", "addr", addr, "path", string(ctx.Path()), "write", ep.write, "err", err)
		result = "failed"
		if ep.write || isTimeout(err) {
			break
		}
	}
	ctx.Response.Header.Set("Retry-After", "1")
	writeError(ctx, fasthttp.StatusServiceUnavailable, "groupcast", "owner unreachable, retry")
	return result
}

// send sends req to one owner: twice for a read whose connection broke
// (the first may have been a pooled connection the owner had closed).
func (a *API) send(hc *fasthttp.HostClient, req *fasthttp.Request, resp *fasthttp.Response, read bool) error {
	err := hc.Do(req, resp)
	var de *dialError
	if err != nil && read && !isTimeout(err) && !errors.As(err, &de) && !errors.Is(err, fasthttp.ErrNoFreeConns) {
		err = hc.Do(req, resp)
	}
	return err
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

// relay writes the owner's answer as this node's: status, headers and body
// as they came, but for the headers that belong to the connection.
func relay(ctx *fasthttp.RequestCtx, resp *fasthttp.Response) {
	resp.Header.CopyTo(&ctx.Response.Header)
	for _, h := range hopHeaders {
		ctx.Response.Header.Del(h)
	}
	ctx.Response.Header.ResetConnectionClose()
	ctx.Response.SetBody(resp.Body())
}
