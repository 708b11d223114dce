// Package httpapi serves groupcast's PubNub-compatible REST API over
// fasthttp: channel registration, publish and subscribe, history, presence,
// time, health, readiness, metrics and the cluster's state. In a cluster it
// forwards a request for an account shard another node owns to that node.
//
// Every response, errors included, carries Content-Type: application/json
// (PubNub SDKs fail to parse an error without it), and CORS headers for the
// configured origins. With an access.Guard, every request naming a
// subscribe key is checked (access.go) before it is served or forwarded.
// Metrics are not served here: cmd/groupcastd serves them on its admin
// listener.
package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/groupcast/groupcast/access"
	"github.com/groupcast/groupcast/archive"
	"github.com/groupcast/groupcast/channelgroups"
	"github.com/groupcast/groupcast/subscriber"
)

// Config wires the API to its domain services.
type Config struct {
	// Groups carries out channel-group edits; required.
	Groups *channelgroups.Service
	// Views serves group reads at a consistency; required.
	Views Viewer
	// Tokens signs and verifies causal tokens; required.
	Tokens *channelgroups.TokenKey
	// Replays keeps answers for Idempotency-Key retries; required.
	Replays channelgroups.Replays
	// Pubsub publishes, delivers and keeps messages; required.
	Pubsub Pubsub
	// Region is this region's number, sent in subscribe cursors; zero means 1.
	Region int
	// Ready reports whether the back ends answer; nil means always ready.
	Ready func(ctx context.Context) error
	// Registerer receives the HTTP metrics; nil means no metrics.
	Registerer prometheus.Registerer
	// Access checks keys, signatures and Access Manager tokens, and issues
	// and revokes tokens; nil means any keys are accepted and the grant
	// endpoints answer 404.
	Access *access.Guard
	// CORSOrigins are the browser origins whose pages may use the API
	// ("*": any); empty means none (no CORS headers, and cross-site
	// browser requests are refused).
	CORSOrigins []string
	// Logger receives server errors; nil discards them.
	Logger *slog.Logger
	// ReadyTimeout bounds one readiness check; zero means 2s.
	ReadyTimeout time.Duration
	// RequestTimeout bounds the storage work of one request; zero means 10s.
	// A forwarded request other than a subscribe waits RequestTimeout plus
	// ForwardMargin for the owner's answer.
	RequestTimeout time.Duration

	// Router says which node serves a request's account shard; nil means
	// this node serves every request itself (one node, or embedded mode).
	Router Router
	// Shards is the number of account shards the Router is asked about; it
	// must match the cluster's. Zero means channelgroups.DefaultShards.
	Shards int
	// Node names this node in the Groupcast-Forwarded header of the requests
	// it forwards; empty means the host name.
	Node string
	// ForwardTimeout bounds how long a forwarded subscribe long-poll waits
	// for the owner's answer; zero means 300s (longer than a parked poll).
	ForwardTimeout time.Duration
	// Cluster returns the cluster's state, served JSON-encoded on GET
	// /cluster; nil means /cluster answers 404.
	Cluster func() any
}

// API is the request handler.
type API struct {
	cfg      Config
	draining atomic.Bool // parked and forwarded polls are being released
	unready  atomic.Bool // /readyz answers 503
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	// server is the fasthttp server from NewServer: parked long-polls hand
	// their connections back to it.
	server *fasthttp.Server
	// handedOff counts hijacked polls whose answer is not written yet.
	handedOff atomic.Int64
	// guard enforces the server's Limits, watches parked connections and
	// counts panics (limits.go); nil without NewServer.
	guard *guard
	// lp is what answering parked polls reuses (longpoll.go).
	lp longPollState

	forwards       *prometheus.CounterVec // by result; nil without a Registerer
	forwardLatency prometheus.Histogram
	mu             sync.Mutex
	upstreams      map[string]*upstream   // by address, guarded by mu
	pollConns      map[*pollConn]struct{} // forwarded subscribes' connections, guarded by mu
}

// New validates cfg and returns the API.
func New(cfg Config) (*API, error) {
	if cfg.Groups == nil || cfg.Views == nil || cfg.Tokens == nil || cfg.Replays == nil || cfg.Pubsub == nil {
		return nil, errors.New("httpapi: Config.Groups, Views, Tokens, Replays and Pubsub are required")
	}
	if cfg.Region == 0 {
		cfg.Region = 1
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = 2 * time.Second
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = 10 * time.Second
	}
	if cfg.Shards < 0 || cfg.ForwardTimeout < 0 {
		return nil, errors.New("httpapi: Config.Shards and ForwardTimeout must be >= 0")
	}
	if cfg.Shards == 0 {
		cfg.Shards = channelgroups.DefaultShards
	}
	if cfg.ForwardTimeout == 0 {
		cfg.ForwardTimeout = 300 * time.Second
	}
	if cfg.Node == "" {
		cfg.Node, _ = os.Hostname()
		if cfg.Node == "" {
			cfg.Node = serverName
		}
	}
	a := &API{cfg: cfg, upstreams: map[string]*upstream{}, pollConns: map[*pollConn]struct{}{}}
	if cfg.Registerer != nil {
		a.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "groupcast_http_requests_total",
			Help: "HTTP requests by endpoint and status code.",
		}, []string{"endpoint", "code"})
		a.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "groupcast_http_request_duration_seconds",
			Help:    "HTTP request latency by endpoint.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}, []string{"endpoint"})
		a.forwards = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "groupcast_forwards_total",
			Help: "Requests forwarded to the owner of their account shard, by result: ok (the owner's answer was relayed), refused (no owner could be connected to), failed (the connection broke or timed out after the request was sent), loop (the request had been forwarded already).",
		}, []string{"result"})
		for _, r := range []string{"ok", "refused", "failed", "loop"} {
			a.forwards.WithLabelValues(r)
		}
		a.forwardLatency = prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "groupcast_forward_duration_seconds",
			Help:    "Latency of forwarded requests other than subscribes, retries included.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18),
		})
		for _, c := range []prometheus.Collector{a.requests, a.latency, a.forwards, a.forwardLatency} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("httpapi: %w", err)
			}
		}
	}
	return a, nil
}

// Pubsub is the messaging side of a node; *subscriber.Node is one.
type Pubsub interface {
	// Publish keeps neither m nor anything m points to once it returns:
	// the API reuses m, and m's Payload and Meta are the request's bytes.
	Publish(ctx context.Context, m *subscriber.Message, tok *channelgroups.Token) (channelgroups.Timetoken, error)
	StartPoll(ctx context.Context, req subscriber.PollRequest, done func(subscriber.PollResult, error)) *subscriber.Parked
	// HistoryPage returns a page of a channel's history and whether its
	// range holds more (subscriber.Node.HistoryPage).
	HistoryPage(ctx context.Context, q archive.Query) ([]*subscriber.Message, bool, error)
	// MessageCount counts a channel's history after a timetoken.
	MessageCount(ctx context.Context, a channelgroups.Account, c channelgroups.Channel, after channelgroups.Timetoken) (int64, error)
	// DeleteHistory deletes a channel's history in a range (archive.Bounds).
	DeleteHistory(ctx context.Context, a channelgroups.Account, c channelgroups.Channel, start, end channelgroups.Timetoken) error
	ReleasePollsOver(d time.Duration)
	// AddAction, RemoveAction, Actions and MessageActions are message
	// actions (subscriber.Node.AddAction and the rest).
	AddAction(ctx context.Context, act archive.Action) (archive.Action, error)
	RemoveAction(ctx context.Context, a channelgroups.Account, c channelgroups.Channel, message, action channelgroups.Timetoken, uuid string) error
	Actions(ctx context.Context, a channelgroups.Account, c channelgroups.Channel, start, end channelgroups.Timetoken, limit int) ([]archive.Action, bool, error)
	MessageActions(ctx context.Context, a channelgroups.Account, c channelgroups.Channel, first, last channelgroups.Timetoken) ([]archive.Action, error)
	// Heartbeat records uuid as present; it refuses a join past the node's
	// presence cap (unavailable) and a uuid presence does not keep.
	Heartbeat(a channelgroups.Account, chs []channelgroups.Channel, uuid string, timeout time.Duration) error
	Leave(ctx context.Context, a channelgroups.Account, chs []channelgroups.Channel, uuid string)
	Occupancy(ctx context.Context, a channelgroups.Account, c channelgroups.Channel) ([]string, error)
	// SetState is Heartbeat that also sets uuid's state on the channels st
	// names; a bad state is a bad request.
	SetState(a channelgroups.Account, chs []channelgroups.Channel, uuid string, timeout time.Duration, st subscriber.PresenceState) error
	// HereNow returns the users on each of chs that has any (every channel
	// of the account with none given).
	HereNow(ctx context.Context, a channelgroups.Account, chs []channelgroups.Channel) (map[channelgroups.Channel][]subscriber.Occupant, error)
	WhereNow(ctx context.Context, a channelgroups.Account, uuid string) ([]channelgroups.Channel, error)
	State(ctx context.Context, a channelgroups.Account, chs []channelgroups.Channel, uuid string) (subscriber.PresenceState, error)
}

// Viewer serves group views; *subscriber.Node is one.
type Viewer interface {
	View(ctx context.Context, key channelgroups.GroupKey, tok *channelgroups.Token, mode subscriber.Consistency) (*channelgroups.View, error)
	// CatchUp waits until an edit made now sorts after everything tok
	// covers (subscriber.Node.CatchUp); an edit carrying a token calls it
	// before it is made, with the context it returns.
	CatchUp(ctx context.Context, tok *channelgroups.Token) (context.Context, error)
}

// SetDraining turns readiness off, so that load balancers stop sending new
// requests; everything else is still served.
func (a *API) SetDraining() { a.unready.Store(true) }

// Drain turns readiness off and answers every parked long-poll, so its
// client reconnects elsewhere, and so are the subscribes this node forwarded
// to other nodes; the answers are spread evenly over spread (all at once if
// zero), so that the clients do not all come back at the same moment. It
// returns once those answers are written (they are not on fasthttp's
// connections any more, so Server.Shutdown would not wait for them), or
// DrainTimeout after the spread.
func (a *API) Drain(spread time.Duration) {
	a.unready.Store(true)
	a.mu.Lock()
	a.draining.Store(true) // under mu: no forwarded poll dials after the cut
	a.mu.Unlock()
	var wg sync.WaitGroup
	wg.Go(func() { a.cutForwardedPolls(spread) })
	wg.Go(func() { a.cfg.Pubsub.ReleasePollsOver(spread) })
	wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), DrainTimeout)
	defer cancel()
	a.waitHandedOff(ctx)
}

// DrainTimeout bounds how long Drain waits for parked polls' answers.
const DrainTimeout = 5 * time.Second

const serverName = "groupcast"

// MaxRequestHeaderBytes bounds the request line and headers (and so the
// query string, which carries a GET publish's message: 32 KiB of JSON
// percent-encoded); a longer request gets 431 with a JSON body. The read
// buffer is released while a request is being handled (ReduceMemoryUsage),
// so parked long-polls do not hold it.
const MaxRequestHeaderBytes = 128 << 10

// answerWriteBuffer is the server's write buffer: a subscribe answer of a
// few dozen messages fits, so it is one write(2), not a buffer's worth and
// then the rest.
const answerWriteBuffer = 32 << 10

// NewServer returns a Server for the API with JSON error answers for
// requests fasthttp itself rejects, under the default Limits
// (DefaultLimits of the process's RLIMIT_NOFILE).
// A server serves one API: its parked long-polls go back to it.
func NewServer(a *API) *Server {
	s, err := NewLimitedServer(a, Limits{})
	if err != nil {
		panic(err) // zero Limits are valid
	}
	return s
}

// NewLimitedServer is NewServer under lim; its zero fields take their
// defaults.
func NewLimitedServer(a *API, lim Limits) (*Server, error) {
	if err := lim.validate(); err != nil {
		return nil, err
	}
	lim = lim.withDefaults(openFileLimit(), a.cfg.Router != nil)
	a.server = &fasthttp.Server{
		// fasthttp's own complaints (a body over the limit, a read
		// timeout) go to the node's log, not to stderr unformatted.
		Logger:         printfLogger{a.cfg.Logger},
		Handler:        a.Handle,
		ErrorHandler:   a.handleTransportError,
		Name:           serverName,
		ReadBufferSize: MaxRequestHeaderBytes,
		// An answer of up to this much goes out in one write(2); fasthttp
		// holds the buffer only while it writes (ReduceMemoryUsage).
		WriteBufferSize:       answerWriteBuffer,
		ReadTimeout:           30 * time.Second,
		WriteTimeout:          30 * time.Second,
		IdleTimeout:           2 * time.Minute,
		MaxRequestBodySize:    1 << 20,
		NoDefaultContentType:  true,
		NoDefaultServerHeader: false,
		CloseOnShutdown:       true,
		ReduceMemoryUsage:     true,
		// Long-polls end in bursts; idle worker goroutines go soon after.
		MaxIdleWorkerDuration: 2 * time.Second,
		// Parked long-polls hijack their connections and give them back
		// (see longpoll.go).
		KeepHijackedConns: true,
	}
	if lim.MaxConns > 0 {
		// The listener bounds connections (and answers those past the
		// bound); fasthttp's own bound, on the ones it serves, must not
		// come first.
		a.server.Concurrency = lim.MaxConns + MaxRefusing
	}
	a.guard = newGuard(a, lim)
	return &Server{Server: a.server, g: a.guard}, nil
}

func (a *API) handleTransportError(ctx *fasthttp.RequestCtx, err error) {
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		writeError(ctx, fasthttp.StatusRequestEntityTooLarge, "groupcast", "request body too large")
	case strings.Contains(err.Error(), "small read buffer") || strings.Contains(err.Error(), "too big"):
		writeError(ctx, fasthttp.StatusRequestHeaderFieldsTooLarge, "groupcast",
			fmt.Sprintf("request line and headers exceed %d bytes", MaxRequestHeaderBytes))
	default:
		writeError(ctx, fasthttp.StatusBadRequest, "groupcast", "malformed HTTP request")
	}
}

// Handle serves one request. A panic is recovered and answered 500
// (recover.go).
func (a *API) Handle(ctx *fasthttp.RequestCtx) {
	start := time.Now()
	defer a.recoverRequest(ctx, start)
	a.setHeaders(&ctx.Response.Header, ctx.Request.Header.Peek("Origin"), ctx.IsOptions())
	if a.guard != nil && a.guard.refuseConn(ctx) {
		a.observe("limited", ctx.Response.StatusCode(), start)
		return
	}
	endpoint := a.route(ctx)
	if !ctx.Hijacked() { // a parked poll is counted when it answers
		a.observe(endpoint, ctx.Response.StatusCode(), start)
	}
}

// setCommonHeaders sets the content type and, for a request from a
// configured origin (any with "*"), the CORS headers.
func (a *API) setCommonHeaders(h *fasthttp.ResponseHeader, origin []byte) {
	a.setHeaders(h, origin, false)
}

// setHeaders is setCommonHeaders; a preflight (OPTIONS) gets the CORS
// headers of "*" even without an Origin. Other requests without one (not
// from a browser) get none: they would be bytes on every answer that no
// client reads.
func (a *API) setHeaders(h *fasthttp.ResponseHeader, origin []byte, preflight bool) {
	h.SetContentType("application/json")
	h.Set("Cache-Control", "no-cache")
	if len(a.cfg.CORSOrigins) == 0 {
		return
	}
	if slices.Contains(a.cfg.CORSOrigins, "*") {
		if len(origin) == 0 && !preflight {
			return
		}
		h.Set("Access-Control-Allow-Origin", "*")
	} else {
		h.Set("Vary", "Origin")
		if len(origin) == 0 || !access.AllowedOrigin(a.cfg.CORSOrigins, string(origin)) {
			return
		}
		h.SetBytesV("Access-Control-Allow-Origin", origin)
	}
	h.Set("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS")
	h.Set("Access-Control-Allow-Headers", "Origin, X-Requested-With, Content-Type, Content-Encoding, Accept, If-Match, Idempotency-Key, Groupcast-Token")
	h.Set("Access-Control-Expose-Headers", "Groupcast-Token, Retry-After")
}

// route dispatches on the raw path, decoding each segment itself so that an
// encoded "/" in a name cannot change the route. A request for an account
// shard another node serves is forwarded there (see forward.go). It returns
// the endpoint label for metrics.
func (a *API) route(ctx *fasthttp.RequestCtx) string {
	if ctx.IsOptions() {
		ctx.SetStatusCode(fasthttp.StatusOK)
		ctx.SetBodyString("{}")
		return "options"
	}
	raw := ctx.URI().PathOriginal()
	if i := bytes.IndexByte(raw, '?'); i >= 0 {
		raw = raw[:i]
	}
	if q := ctx.URI().QueryString(); !validEscapes(q) {
		// fasthttp keeps a bad escape literally: "%ZZ" would become part of
		// a channel's name.
		writeError(ctx, fasthttp.StatusBadRequest, "groupcast", "malformed query: a % not followed by two hex digits")
		return "bad_query"
	}
	parts, ep, ok := a.resolve(ctx, raw)
	if !ok {
		return "bad_path"
	}
	if ep.get && !ctx.IsGet() {
		ctx.Response.Header.Set("Allow", "GET, OPTIONS")
		writeError(ctx, fasthttp.StatusMethodNotAllowed, "groupcast", "method "+string(ctx.Method())+" not allowed")
		return ep.name
	}
	if ep.key > 0 && (a.crossSiteRefused(ctx) || !a.authorize(ctx, ep, parts)) {
		return ep.name
	}
	if ep.account > 0 && a.cfg.Router != nil && a.forward(ctx, ep, parts[ep.account]) {
		return ep.name
	}
	ep.serve(ctx, parts)
	return ep.name
}

// resolve decodes a request's path into its segments and the endpoint they
// name; ok is false (and the client answered 400) for a malformed path.
// A subscribe on a served connection (one handed back after a parked poll)
// is remembered there: its client sends the same path again and again
// with only the query's cursor changed, and the next one reuses the
// segments and the endpoint instead of decoding and matching them again.
// The segments are shared by those requests and never written to.
func (a *API) resolve(ctx *fasthttp.RequestCtx, raw []byte) (parts []string, ep endpoint, ok bool) {
	sc, _ := ctx.Conn().(*servedConn)
	if sc != nil && sc.route != nil && string(raw) == sc.route.path {
		return sc.route.parts, sc.route.ep, true
	}
	path := string(raw)
	parts = strings.Split(strings.TrimPrefix(path, "/"), "/")
	for i, p := range parts {
		s, err := url.PathUnescape(p)
		if err != nil {
			writeError(ctx, fasthttp.StatusBadRequest, "groupcast", "malformed path: "+err.Error())
			return nil, endpoint{}, false
		}
		parts[i] = s
	}
	ep = a.endpoint(ctx, parts)
	if sc != nil && ep.memo {
		sc.route = &routeMemo{path: path, parts: parts, ep: ep}
	}
	return parts, ep, true
}

// routeMemo is a served connection's last subscribe path, resolved.
type routeMemo struct {
	path  string
	parts []string
	ep    endpoint
}

// endpoint is what a request path names.
type endpoint struct {
	name  string // the metrics label
	serve func(*fasthttp.RequestCtx, []string)
	get   bool // GET only: other methods get 405
	// account is the index of the account (subscribe key) among the path
	// segments; zero means the endpoint has no account and is served here.
	account int
	// write: an edit or a publish, served by the shard's primary and never
	// sent twice.
	write bool

	// Access control (access.go): key is the index of the subscribe key
	// the guard checks (zero: none); publishKey that of the publish key;
	// needs the permissions the request needs with Access Manager on;
	// signed that with Access Manager on only a signed request may do it;
	// issuing that it issues or revokes tokens (signed, a known keyset).
	key, publishKey int
	needs           func(*fasthttp.RequestCtx, []string) []access.Need
	signed, issuing bool
	// memo: the check may be remembered per connection (access.Memo), and
	// the path's resolution too (resolve): a subscribe, which its client
	// sends again with only the cursor changed. Only an endpoint that its
	// path alone names (not the method or the query) may set it.
	memo bool
}

// endpoint resolves a request's decoded path segments.
func (a *API) endpoint(ctx *fasthttp.RequestCtx, parts []string) endpoint {
	switch {
	case match(parts, "time", "0"):
		return endpoint{name: "time", serve: a.serveTime, get: true}
	case match(parts, "healthz"):
		return endpoint{name: "healthz", get: true, serve: func(ctx *fasthttp.RequestCtx, _ []string) {
			ctx.SetBodyString(`{"status":200,"healthy":true}`)
		}}
	case match(parts, "readyz"):
		return endpoint{name: "readyz", serve: a.serveReady, get: true}
	case match(parts, "cluster") && a.cfg.Cluster != nil:
		return endpoint{name: "cluster", get: true, serve: func(ctx *fasthttp.RequestCtx, _ []string) { writeJSON(ctx, a.cfg.Cluster()) }}
	case match(parts, "v1", "channel-registration", "sub-key", "*", "channel-group"):
		return endpoint{name: "cg_groups", serve: a.serveListGroups, get: true, account: 3, key: 3, signed: true}
	case match(parts, "v1", "channel-registration", "sub-key", "*", "channel-group", "*"):
		switch args := ctx.QueryArgs(); {
		case args.Has("add") && args.Has("remove"):
			return endpoint{name: "cg_bad", serve: func(ctx *fasthttp.RequestCtx, _ []string) {
				writeError(ctx, fasthttp.StatusBadRequest, registry, "give either add or remove, not both")
			}}
		case args.Has("add"):
			return endpoint{name: "cg_add", serve: a.serveEdit, get: true, account: 3, write: true, key: 3, needs: needsGroupManage}
		case args.Has("remove"):
			return endpoint{name: "cg_remove", serve: a.serveEdit, get: true, account: 3, write: true, key: 3, needs: needsGroupManage}
		default:
			return endpoint{name: "cg_list", serve: a.serveListChannels, get: true, account: 3, key: 3, needs: needsGroupRead}
		}
	case match(parts, "v1", "channel-registration", "sub-key", "*", "channel-group", "*", "remove"):
		return endpoint{name: "cg_delete", serve: a.serveEdit, get: true, account: 3, write: true, key: 3, needs: needsGroupManage}
	case len(parts) >= 6 && (parts[0] == "publish" || parts[0] == "signal") && parts[3] == "0" && parts[5] == "0":
		if ctx.IsPost() && len(parts) == 6 || ctx.IsGet() && len(parts) >= 7 {
			return endpoint{name: parts[0], serve: a.servePublish, account: 2, write: true, key: 2, publishKey: 1, needs: needsPublish}
		}
		return endpoint{name: parts[0], serve: func(ctx *fasthttp.RequestCtx, _ []string) {
			writeError(ctx, fasthttp.StatusMethodNotAllowed, "groupcast", "publish is GET with the message in the path, or POST with it as the body")
		}}
	case match(parts, "v2", "subscribe", "*", "*", "0"):
		return endpoint{name: "subscribe", serve: a.serveSubscribe, get: true, account: 2, key: 2, needs: needsSubscribe, memo: true}
	case match(parts, "v3", "history", "sub-key", "*", "channel", "*") && ctx.IsDelete():
		return endpoint{name: "history_delete", serve: a.serveDeleteMessages, account: 3, write: true, key: 3, needs: needsHistoryDelete}
	case match(parts, "v3", "history", "sub-key", "*", "channel", "*"):
		return endpoint{name: "history_v3", serve: a.serveHistoryV3, get: true, account: 3, key: 3, needs: needsHistory}
	case match(parts, "v3", "history", "sub-key", "*", "message-counts", "*"):
		return endpoint{name: "message_counts", serve: a.serveMessageCounts, get: true, account: 3, key: 3, needs: needsHistory}
	case match(parts, "v3", "history-with-actions", "sub-key", "*", "channel", "*"):
		return endpoint{name: "history_with_actions", serve: a.serveHistoryV3, get: true, account: 3, key: 3, needs: needsHistory}
	case match(parts, "v1", "message-actions", "*", "channel", "*"):
		return endpoint{name: "actions_get", serve: a.serveGetActions, get: true, account: 2, key: 2, needs: needsActionsGet}
	case match(parts, "v1", "message-actions", "*", "channel", "*", "message", "*"):
		return endpoint{name: "actions_add", serve: a.serveAddAction, account: 2, write: true, key: 2, needs: needsActionAdd}
	case match(parts, "v1", "message-actions", "*", "channel", "*", "message", "*", "action", "*"):
		return endpoint{name: "actions_remove", serve: a.serveRemoveAction, account: 2, write: true, key: 2, needs: needsActionRemove}
	case match(parts, "v2", "history", "sub-key", "*", "channel", "*"):
		return endpoint{name: "history_v2", serve: a.serveHistoryV2, get: true, account: 3, key: 3, needs: needsHistory}
	case match(parts, "v2", "presence", "sub-key", "*", "channel", "*", "heartbeat"):
		return endpoint{name: "heartbeat", serve: a.serveHeartbeat, get: true, account: 3, key: 3, needs: needsPresence}
	case match(parts, "v2", "presence", "sub-key", "*", "channel", "*", "leave"):
		return endpoint{name: "leave", serve: a.serveLeave, get: true, account: 3, key: 3}
	case match(parts, "v3", "pam", "*", "grant") && a.cfg.Access != nil:
		return endpoint{name: "pam_grant", serve: a.serveGrant, key: 2, issuing: true}
	case match(parts, "v3", "pam", "*", "grant", "*") && a.cfg.Access != nil:
		return endpoint{name: "pam_revoke", serve: a.serveRevoke, key: 2, issuing: true}
	case match(parts, "v2", "presence", "sub-key", "*", "channel", "*"):
		return endpoint{name: "here_now", serve: a.serveHereNow, get: true, account: 3, key: 3, needs: needsPresence}
	case match(parts, "v2", "presence", "sub-key", "*"):
		// Every channel of the account: with Access Manager on, the server's.
		return endpoint{name: "here_now_global", serve: a.serveHereNow, get: true, account: 3, key: 3, signed: true}
	case match(parts, "v2", "presence", "sub-key", "*", "uuid", "*"):
		return endpoint{name: "where_now", serve: a.serveWhereNow, get: true, account: 3, key: 3}
	case match(parts, "v2", "presence", "sub-key", "*", "channel", "*", "uuid", "*"):
		return endpoint{name: "get_state", serve: a.serveGetState, get: true, account: 3, key: 3, needs: needsPresence}
	case match(parts, "v2", "presence", "sub-key", "*", "channel", "*", "uuid", "*", "data"):
		return endpoint{name: "set_state", serve: a.serveSetState, get: true, account: 3, key: 3, needs: needsPresence}
	}
	return endpoint{name: "not_found", serve: func(ctx *fasthttp.RequestCtx, _ []string) {
		writeError(ctx, fasthttp.StatusNotFound, "groupcast", "no such endpoint: "+string(ctx.URI().PathOriginal()))
	}}
}

// match compares path segments with a pattern; "*" matches any one segment.
func match(parts []string, pattern ...string) bool {
	if len(parts) != len(pattern) {
		return false
	}
	for i, p := range pattern {
		if p != "*" && p != parts[i] {
			return false
		}
	}
	return true
}

func (a *API) serveTime(ctx *fasthttp.RequestCtx, _ []string) {
	// A JSON number, as PubNub answers: strict SDKs (Python) refuse a string.
	b := append(ctx.Response.Body()[:0], '[')
	b, _ = a.cfg.Groups.Clock().Now().AppendText(b)
	ctx.Response.SetBodyRaw(append(b, ']'))
}

func (a *API) serveReady(ctx *fasthttp.RequestCtx, _ []string) {
	if a.unready.Load() {
		writeError(ctx, fasthttp.StatusServiceUnavailable, "groupcast", "draining")
		return
	}
	if a.cfg.Ready != nil {
		c, cancel := context.WithTimeout(context.Background(), a.cfg.ReadyTimeout)
		defer cancel()
		if err := a.cfg.Ready(c); err != nil {
			writeError(ctx, fasthttp.StatusServiceUnavailable, "groupcast", "not ready: "+err.Error())
			return
		}
	}
	ctx.SetBodyString(`{"status":200,"ready":true}`)
}

// writeDomainError maps domain errors to HTTP statuses in one place.
func (a *API) writeDomainError(ctx *fasthttp.RequestCtx, service string, err error) {
	switch {
	case errors.Is(err, channelgroups.ErrInvalidName),
		errors.Is(err, channelgroups.ErrTooManyChannels),
		errors.Is(err, channelgroups.ErrNoChannels),
		errors.Is(err, channelgroups.ErrInvalidTimetoken),
		errors.Is(err, channelgroups.ErrInvalidToken),
		errors.Is(err, subscriber.ErrBadRequest),
		errors.Is(err, errBadRequest):
		writeError(ctx, fasthttp.StatusBadRequest, service, err.Error())
	case errors.Is(err, channelgroups.ErrVersionMismatch):
		var m *channelgroups.VersionMismatchError
		errors.As(err, &m)
		b, _ := json.Marshal(struct {
			errorBody
			Version string `json:"version"`
		}{errorBody{Status: fasthttp.StatusPreconditionFailed, Error: true, Message: err.Error(), Service: service}, m.Current.String()})
		ctx.Response.Header.Set("ETag", `"`+m.Current.String()+`"`)
		ctx.SetStatusCode(fasthttp.StatusPreconditionFailed)
		ctx.SetBody(b)
	case errors.Is(err, channelgroups.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		a.cfg.Logger.Warn("storage unavailable", "path", string(ctx.Path()), "err", err)
		ctx.Response.Header.Set("Retry-After", "1")
		writeError(ctx, fasthttp.StatusServiceUnavailable, service, "storage unavailable, retry")
	default:
		a.cfg.Logger.Error("request failed", "path", string(ctx.Path()), "err", err)
		writeError(ctx, fasthttp.StatusInternalServerError, service, "internal error")
	}
}

// work returns the context for a request's storage work. It does not derive
// from the RequestCtx: fasthttp cancels that at shutdown, and an edit in
// flight should finish rather than fail half-way.
func (a *API) work() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), a.cfg.RequestTimeout)
}

// validEscapes reports whether every % in a raw query starts an escape of
// two hex digits.
func validEscapes(q []byte) bool {
	for i := 0; i < len(q); i++ {
		if q[i] != '%' {
			continue
		}
		if i+2 >= len(q) || !isHex(q[i+1]) || !isHex(q[i+2]) {
			return false
		}
		i += 2
	}
	return true
}

func isHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }

// printfLogger adapts slog to fasthttp's Logger.
type printfLogger struct{ l *slog.Logger }

func (p printfLogger) Printf(format string, args ...any) {
	p.l.Debug("http server", "msg", fmt.Sprintf(format, args...))
}
