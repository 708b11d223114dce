package httpapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/groupcast/groupcast/channelgroups"
)

// Limits bound what a Server holds at once, so that a flood of clients gets
// clear refusals instead of running the process out of file descriptors or
// memory. A refusal is a JSON error with Retry-After: 503 when the node is
// full, 429 when one client address holds its share; each is counted in
// groupcast_http_limited_total by reason.
type Limits struct {
	// MaxConns bounds the open client connections, those of parked
	// long-polls included (fasthttp stops counting a connection once it is
	// hijacked; the Server's listener does not). A connection past it is
	// answered 503 and closed. Zero means the default (DefaultLimits);
	// negative means no bound.
	MaxConns int
	// MaxParked bounds the subscribes served at once (parked long-polls,
	// mostly); one past it is answered 503. Zero means nine tenths of
	// MaxConns, so that parked polls leave connections for publishes and
	// edits; negative means no bound.
	MaxParked int
	// MaxParkedPerIP bounds the subscribes served at once for one client
	// address (an IPv6 client's /64); one past it is answered 429. Loopback
	// is exempt: a client on the node's own host is a local proxy (which
	// should be trusted, below) or a tool such as the benchmarks. Zero
	// means a tenth of MaxParked, at least 1,000 (users behind one NAT) and
	// at most 10,000; negative means no bound.
	MaxParkedPerIP int
	// TrustedProxies are the peers whose X-Forwarded-For header names the
	// client (load balancers, and in a cluster the other nodes, which
	// forward subscribes with it): the client address is the right-most
	// entry that is not a trusted proxy. Empty trusts no one: the client is
	// the connection's peer.
	TrustedProxies []netip.Prefix
}

// LimitRetryAfter is the Retry-After of a refusal by a limit.
const LimitRetryAfter = 5 * time.Second

// DefaultLimits returns the limits of a node whose process may open nofile
// descriptors (RLIMIT_NOFILE; Go raises the soft limit to the hard one at
// start). A reserve of a sixteenth (at least 32, at most 4,096) is kept
// for the stores, the logs, the cluster's gossip and the process itself;
// in a cluster (cluster true) half of the rest is kept for the connections
// of forwarded subscribes to their owners, one per forwarded client
// connection. The rest is MaxConns: a node serving 100k long-polls needs
// nofile above about 110k (215k in a cluster), which containers' usual
// 1,048,576 gives. A parked poll costs under 1 KiB of Go heap (about 0.8
// KiB measured, its client's side included) besides its descriptor and the
// kernel's socket buffers, so descriptors, not memory, bound MaxParked
// (nine tenths of MaxConns) on any usual machine. nofile zero (unknown)
// leaves connections unbounded.
func DefaultLimits(nofile uint64, cluster bool) Limits {
	if nofile == 0 {
		return Limits{MaxConns: -1}.withDefaults(0, false)
	}
	reserve := min(max(nofile/16, 32), 4096)
	avail := nofile / 2
	if nofile > 2*reserve {
		avail = nofile - reserve
	}
	if cluster {
		avail /= 2
	}
	avail = max(avail, 1)
	return Limits{MaxConns: int(min(avail, 1<<31-1))}.withDefaults(0, false)
}

// withDefaults fills zero fields, taking MaxConns from DefaultLimits(nofile, cluster).
func (l Limits) withDefaults(nofile uint64, cluster bool) Limits {
	if l.MaxConns == 0 {
		l.MaxConns = DefaultLimits(nofile, cluster).MaxConns
	}
	if l.MaxParked == 0 {
		if l.MaxConns > 0 {
			l.MaxParked = max(l.MaxConns*9/10, 1)
		} else {
			l.MaxParked = -1
		}
	}
	if l.MaxParkedPerIP == 0 {
		if l.MaxParked > 0 {
			l.MaxParkedPerIP = min(max(l.MaxParked/10, 1000), 10_000)
		} else {
			l.MaxParkedPerIP = 10_000
		}
	}
	return l
}

func (l Limits) validate() error {
	for _, p := range l.TrustedProxies {
		if !p.IsValid() {
			return errors.New("httpapi: Limits.TrustedProxies holds an invalid prefix")
		}
	}
	return nil
}

// ParseTrustedProxies parses a comma-separated list of addresses and CIDR
// prefixes (10.0.0.0/8, 2001:db8::/32, 192.0.2.7); "" and "none" are empty.
func ParseTrustedProxies(s string) ([]netip.Prefix, error) {
	if s == "" || s == "none" {
		return nil, nil
	}
	var out []netip.Prefix
	for part := range bytes.SplitSeq([]byte(s), []byte(",")) {
		p := string(bytes.TrimSpace(part))
		if pr, err := netip.ParsePrefix(p); err == nil {
			out = append(out, pr.Masked())
			continue
		}
		a, err := netip.ParseAddr(p)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q is neither an address nor a CIDR prefix", p)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// guard enforces a Server's limits and keeps its counts: connections
// (listener.go), parked polls by client address, the polls of each
// subscriber uuid (for the presence of dropped polls, longpoll.go) and the
// watcher of parked connections.
type guard struct {
	api *API
	lim Limits
	log *slog.Logger

	conns, refusing atomic.Int64
	// acceptLogged is when an accept error was last logged (UnixNano);
	// acceptUnlogged counts those not logged since.
	acceptLogged, acceptUnlogged atomic.Int64

	mu     sync.Mutex
	parked int                    // subscribes admitted and not answered
	perIP  map[netip.Addr]int     // parked by client address
	polls  map[uuidKey]*uuidPolls // parked by subscriber
	watch  *connWatcher

	acceptErrors prometheus.Counter
	limitedTotal *prometheus.CounterVec
	panics       prometheus.Counter
	dropped      prometheus.Counter
}

func newGuard(a *API, lim Limits) *guard {
	g := &guard{api: a, lim: lim, log: a.cfg.Logger, perIP: map[netip.Addr]int{}, polls: map[uuidKey]*uuidPolls{}}
	g.watch = &connWatcher{log: g.log}
	g.acceptErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "groupcast_accept_errors_total",
		Help: "Errors accepting a connection (such as EMFILE, out of file descriptors); each is retried after a pause.",
	})
	g.limitedTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "groupcast_http_limited_total",
		Help: "Requests refused by a limit, by reason: connections (503, Limits.MaxConns), parked (503, MaxParked), parked_per_ip (429, MaxParkedPerIP).",
	}, []string{"reason"})
	for _, r := range []string{"connections", "parked", "parked_per_ip"} {
		g.limitedTotal.WithLabelValues(r)
	}
	g.panics = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "groupcast_panics_total",
		Help: "Panics recovered while serving a request or writing a parked long-poll's answer (each answered 500 and logged with its stack).",
	})
	g.dropped = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "groupcast_dropped_polls_total",
		Help: "Parked long-polls whose client closed the connection; each was cancelled and its connection closed at once.",
	})
	if r := a.cfg.Registerer; r != nil {
		conns := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "groupcast_http_connections",
			Help: "Open client connections, parked long-polls' included.",
		}, g.connCount)
		for _, c := range []prometheus.Collector{g.acceptErrors, g.limitedTotal, g.panics, g.dropped, conns} {
			if err := r.Register(c); err != nil && !errors.As(err, new(prometheus.AlreadyRegisteredError)) {
				g.log.Warn("registering a server metric", "err", err)
			}
		}
	}
	return g
}

func (g *guard) limited(reason string) { g.limitedTotal.WithLabelValues(reason).Inc() }

// refuse answers a request refused by a limit.
func refuse(ctx *fasthttp.RequestCtx, status int, service, msg string) {
	ctx.Response.Header.Set("Retry-After", strconv.Itoa(int(LimitRetryAfter/time.Second)))
	writeError(ctx, status, service, msg)
}

// refuseConn answers the request of a connection past MaxConns and closes
// the connection after it; false when the connection is not one.
func (g *guard) refuseConn(ctx *fasthttp.RequestCtx) bool {
	tc, ok := ctx.Conn().(*trackedConn)
	if !ok || !tc.refuse {
		return false
	}
	ctx.SetConnectionClose()
	refuse(ctx, fasthttp.StatusServiceUnavailable, serverName,
		fmt.Sprintf("this node has %d connections open, its maximum; retry", g.lim.MaxConns))
	return true
}

// admitPoll reserves a place for a subscribe from addr, or answers it 503
// (the node's MaxParked) or 429 (the address's MaxParkedPerIP) and returns
// false. A place taken is given back with releasePoll.
func (g *guard) admitPoll(ctx *fasthttp.RequestCtx, addr netip.Addr) bool {
	g.mu.Lock()
	node := g.lim.MaxParked >= 0 && g.parked >= g.lim.MaxParked
	perIP := !node && g.lim.MaxParkedPerIP >= 0 && g.perIP[addr] >= g.lim.MaxParkedPerIP && !addr.IsLoopback()
	if !node && !perIP {
		g.parked++
		g.perIP[addr]++
	}
	g.mu.Unlock()
	switch {
	case node:
		g.limited("parked")
		refuse(ctx, fasthttp.StatusServiceUnavailable, "subscribe",
			fmt.Sprintf("this node serves %d subscribes, its maximum; retry", g.lim.MaxParked))
		return false
	case perIP:
		g.limited("parked_per_ip")
		refuse(ctx, fasthttp.StatusTooManyRequests, "subscribe",
			fmt.Sprintf("this client address has %d subscribes open, the most one may; retry", g.lim.MaxParkedPerIP))
		return false
	}
	return true
}

// releasePoll gives back a subscribe's place and stops tracking it under
// its uuid.
func (g *guard) releasePoll(p *pendingAnswer) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.parked--
	if n := g.perIP[p.addr] - 1; n > 0 {
		g.perIP[p.addr] = n
	} else {
		delete(g.perIP, p.addr)
	}
	k := uuidKey{p.acct, p.uuid}
	if e := g.polls[k]; e != nil {
		if i := slices.Index(e.active, p); i >= 0 {
			e.active = slices.Delete(e.active, i, i+1)
		}
		if len(e.active) == 0 && e.leaving == 0 {
			delete(g.polls, k)
		}
	}
}

// DroppedLeaveGrace is how long after its poll was dropped a subscriber
// leaves the poll's channels, unless it subscribed again meanwhile: PubNub
// SDKs abort a subscribe to change its channels and send the next at once,
// which must not make the user leave and join again.
const DroppedLeaveGrace = 2 * time.Second

// uuidKey names a subscriber.
type uuidKey struct {
	acct channelgroups.Account
	uuid string
}

// uuidPolls are a subscriber's subscribes in progress on this server.
type uuidPolls struct {
	active  []*pendingAnswer
	started uint64 // subscribes begun while the entry lived
	leaving int    // dropped polls waiting for DroppedLeaveGrace
}

// track counts an admitted subscribe under its uuid.
func (g *guard) track(p *pendingAnswer) {
	if p.uuid == "" || len(p.channels) == 0 {
		return
	}
	k := uuidKey{p.acct, p.uuid}
	g.mu.Lock()
	defer g.mu.Unlock()
	e := g.polls[k]
	if e == nil {
		e = &uuidPolls{}
		g.polls[k] = e
	}
	e.active = append(e.active, p)
	e.started++
	p.startedAt = e.started
}

// leaveLater makes a dropped poll's subscriber leave its channels after
// DroppedLeaveGrace, unless the subscriber began another subscribe here
// meanwhile; channels another of its parked polls is on are not left. The
// node's presence would time the subscriber out only after its heartbeat
// timeout (300s by default) otherwise. A Drain cancels the leaves still
// waiting: at shutdown the clients come back elsewhere.
func (g *guard) leaveLater(p *pendingAnswer) {
	if p.uuid == "" || len(p.channels) == 0 || !p.admitted {
		return
	}
	k := uuidKey{p.acct, p.uuid}
	g.mu.Lock()
	e := g.polls[k] // p is still active in it: releasePoll comes after
	if e == nil {
		g.mu.Unlock()
		return
	}
	e.leaving++
	// A subscribe begun after the dropped one (an SDK resending at once,
	// perhaps counted before the drop was noticed) keeps the user.
	mark := p.startedAt
	g.mu.Unlock()
	time.AfterFunc(DroppedLeaveGrace, func() {
		g.mu.Lock()
		e := g.polls[k]
		e.leaving--
		again := e.started != mark
		on := map[channelgroups.Channel]bool{}
		for _, q := range e.active {
			for _, c := range q.channels {
				on[c] = true
			}
		}
		if len(e.active) == 0 && e.leaving == 0 {
			delete(g.polls, k)
		}
		g.mu.Unlock()
		if again || g.api.draining.Load() {
			return
		}
		left := slices.DeleteFunc(slices.Clone(p.channels), func(c channelgroups.Channel) bool { return on[c] })
		if len(left) == 0 {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), g.api.cfg.RequestTimeout)
		defer cancel()
		g.api.cfg.Pubsub.Leave(ctx, p.acct, left, p.uuid)
	})
}

// clientAddr returns the address a request's subscribes are counted
// under: see Limits.TrustedProxies; an IPv6 address counts as its /64.
func (g *guard) clientAddr(ctx *fasthttp.RequestCtx) netip.Addr {
	remote := netip.Addr{}
	if a, ok := ctx.RemoteAddr().(*net.TCPAddr); ok {
		remote = a.AddrPort().Addr()
	}
	remote = remote.Unmap()
	var xff [][]byte
	if trusted(remote, g.lim.TrustedProxies) {
		xff = ctx.Request.Header.PeekAll("X-Forwarded-For")
	}
	a := forwardedClient(remote, xff, g.lim.TrustedProxies)
	if a.Is6() && !a.IsLoopback() { // ::1 cut to its /64 would be ::, not loopback
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

func trusted(a netip.Addr, proxies []netip.Prefix) bool {
	for _, p := range proxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// forwardedClient walks X-Forwarded-For (the values of its headers, in
// order) from the right while the address that handed the request on is a
// trusted proxy, and returns the first that is not, or the left-most; a
// malformed entry ends the walk (no proxy we trust wrote it).
func forwardedClient(remote netip.Addr, xff [][]byte, proxies []netip.Prefix) netip.Addr {
	client := remote
	for i := len(xff) - 1; i >= 0; i-- {
		list := xff[i]
		for len(bytes.TrimSpace(list)) > 0 {
			if !trusted(client, proxies) {
				return client
			}
			j := bytes.LastIndexByte(list, ',')
			entry := bytes.TrimSpace(list[j+1:])
			list = list[:max(j, 0)]
			a, ok := parseForwardedAddr(entry)
			if !ok {
				return client
			}
			client = a
		}
	}
	return client
}

// parseForwardedAddr parses an X-Forwarded-For entry: an address, maybe
// with a port, an IPv6 one maybe in brackets.
func parseForwardedAddr(b []byte) (netip.Addr, bool) {
	s := string(b)
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		return a.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil && ap.Addr().Zone() == "" {
		return ap.Addr().Unmap(), true
	}
	if len(s) > 2 && s[0] == '[' && s[len(s)-1] == ']' {
		if a, err := netip.ParseAddr(s[1 : len(s)-1]); err == nil && a.Is6() && a.Zone() == "" {
			return a.Unmap(), true
		}
	}
	return netip.Addr{}, false
}

// Server is an API's fasthttp server under its Limits. Serve it with Serve,
// which wraps the listener: accept errors such as EMFILE are retried after a
// pause instead of ending Serve, and connections are counted until they
// close (see Limits.MaxConns). The embedded server's ListenAndServe and
// ServeConn bypass the listener, and with it MaxConns.
type Server struct {
	*fasthttp.Server
	g *guard
}

// Serve serves connections from ln until ln closes (or Shutdown).
func (s *Server) Serve(ln net.Listener) error { return s.Server.Serve(s.g.listener(ln)) }

// Limits returns the limits in force, defaults filled in.
func (s *Server) Limits() Limits { return s.g.lim }
