// Package httpapi serves groupcast's PubNub-compatible REST API over
// fasthttp: channel registration, time, health, readiness and metrics.
//
// Every response, errors included, carries Content-Type: application/json
// and CORS headers: PubNub SDKs fail to parse an error without the content
// type, and browsers need the CORS headers.
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"

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
	// Gatherer is served on /metrics; nil means /metrics answers 404.
	Gatherer prometheus.Gatherer
	// Logger receives server errors; nil discards them.
	Logger *slog.Logger
	// ReadyTimeout bounds one readiness check; zero means 2s.
	ReadyTimeout time.Duration
	// RequestTimeout bounds the storage work of one request; zero means 10s.
	RequestTimeout time.Duration
}

// API is the request handler.
type API struct {
	cfg      Config
	draining atomic.Bool
	metrics  fasthttp.RequestHandler
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	// server is the fasthttp server from NewServer: parked long-polls hand
	// their connections back to it.
	server *fasthttp.Server
	// handedOff counts hijacked polls whose answer is not written yet.
	handedOff atomic.Int64
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
	a := &API{cfg: cfg}
	if cfg.Gatherer != nil {
		a.metrics = fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{}))
	}
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
		for _, c := range []prometheus.Collector{a.requests, a.latency} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("httpapi: %w", err)
			}
		}
	}
	return a, nil
}

// Pubsub is the messaging side of a node; *subscriber.Node is one.
type Pubsub interface {
	Publish(ctx context.Context, m *subscriber.Message, tok *channelgroups.Token) (channelgroups.Timetoken, error)
	StartPoll(ctx context.Context, req subscriber.PollRequest, done func(subscriber.PollResult, error)) *subscriber.Parked
	History(a channelgroups.Account, c channelgroups.Channel, start, end channelgroups.Timetoken, max int) []*subscriber.Message
	ReleasePolls()
	Seen(a channelgroups.Account, chs []channelgroups.Channel, uuid string, timeout time.Duration)
	Leave(ctx context.Context, a channelgroups.Account, chs []channelgroups.Channel, uuid string)
	Occupancy(a channelgroups.Account, c channelgroups.Channel) []string
}

// Viewer serves group views; *subscriber.Node is one.
type Viewer interface {
	View(ctx context.Context, key channelgroups.GroupKey, tok *channelgroups.Token, mode subscriber.Consistency) (*channelgroups.View, error)
}

// Drain turns readiness off, so load balancers stop sending new requests,
// and answers every parked long-poll, so its client reconnects elsewhere.
// It returns once those answers are written (they are not on fasthttp's
// connections any more, so Server.Shutdown would not wait for them), or
// after DrainTimeout.
func (a *API) Drain() {
	a.draining.Store(true)
	a.cfg.Pubsub.ReleasePolls()
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

// NewServer returns a fasthttp server for the API with JSON error answers
// for requests fasthttp itself rejects.
// A server serves one API: its parked long-polls go back to it.
func NewServer(a *API) *fasthttp.Server {
	a.server = &fasthttp.Server{
		Handler:               a.Handle,
		ErrorHandler:          a.handleTransportError,
		Name:                  serverName,
		ReadBufferSize:        MaxRequestHeaderBytes,
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
	return a.server
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

// Handle serves one request.
func (a *API) Handle(ctx *fasthttp.RequestCtx) {
	start := time.Now()
	setCommonHeaders(ctx)
	endpoint := a.route(ctx)
	if !ctx.Hijacked() { // a parked poll is counted when it answers
		a.observe(endpoint, ctx.Response.StatusCode(), start)
	}
}

func setCommonHeaders(ctx *fasthttp.RequestCtx) {
	h := &ctx.Response.Header
	h.SetContentType("application/json")
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
	h.Set("Access-Control-Allow-Headers", "Origin, X-Requested-With, Content-Type, Content-Encoding, Accept, If-Match, Idempotency-Key, Groupcast-Token")
	h.Set("Access-Control-Expose-Headers", "Groupcast-Token, Retry-After")
	h.Set("Cache-Control", "no-cache")
}

// route dispatches on the raw path, decoding each segment itself so that an
// encoded "/" in a name cannot change the route. It returns the endpoint
// label for metrics.
func (a *API) route(ctx *fasthttp.RequestCtx) string {
	if ctx.IsOptions() {
		ctx.SetStatusCode(fasthttp.StatusOK)
		ctx.SetBodyString("{}")
		return "options"
	}
	raw := string(ctx.URI().PathOriginal())
	if i := strings.IndexByte(raw, '?'); i >= 0 {
		raw = raw[:i]
	}
	parts := strings.Split(strings.TrimPrefix(raw, "/"), "/")
	for i, p := range parts {
		s, err := url.PathUnescape(p)
		if err != nil {
			writeError(ctx, fasthttp.StatusBadRequest, "groupcast", "malformed path: "+err.Error())
			return "bad_path"
		}
		parts[i] = s
	}
	get := func(endpoint string, h func(*fasthttp.RequestCtx, []string)) string {
		if !ctx.IsGet() {
			ctx.Response.Header.Set("Allow", "GET, OPTIONS")
			writeError(ctx, fasthttp.StatusMethodNotAllowed, "groupcast", "method "+string(ctx.Method())+" not allowed")
			return endpoint
		}
		h(ctx, parts)
		return endpoint
	}
	switch {
	case match(parts, "time", "0"):
		return get("time", a.serveTime)
	case match(parts, "healthz"):
		return get("healthz", func(ctx *fasthttp.RequestCtx, _ []string) { ctx.SetBodyString(`{"status":200,"healthy":true}`) })
	case match(parts, "readyz"):
		return get("readyz", a.serveReady)
	case match(parts, "metrics") && a.metrics != nil:
		return get("metrics", func(ctx *fasthttp.RequestCtx, _ []string) { a.metrics(ctx) })
	case match(parts, "v1", "channel-registration", "sub-key", "*", "channel-group"):
		return get("cg_groups", a.serveListGroups)
	case match(parts, "v1", "channel-registration", "sub-key", "*", "channel-group", "*"):
		switch args := ctx.QueryArgs(); {
		case args.Has("add") && args.Has("remove"):
			writeError(ctx, fasthttp.StatusBadRequest, registry, "give either add or remove, not both")
			return "cg_bad"
		case args.Has("add"):
			return get("cg_add", a.serveEdit)
		case args.Has("remove"):
			return get("cg_remove", a.serveEdit)
		default:
			return get("cg_list", a.serveListChannels)
		}
	case match(parts, "v1", "channel-registration", "sub-key", "*", "channel-group", "*", "remove"):
		return get("cg_delete", a.serveEdit)
	case len(parts) >= 6 && (parts[0] == "publish" || parts[0] == "signal") && parts[3] == "0" && parts[5] == "0":
		if ctx.IsPost() && len(parts) == 6 || ctx.IsGet() && len(parts) >= 7 {
			a.servePublish(ctx, parts)
			return parts[0]
		}
		writeError(ctx, fasthttp.StatusMethodNotAllowed, "groupcast", "publish is GET with the message in the path, or POST with it as the body")
		return parts[0]
	case match(parts, "v2", "subscribe", "*", "*", "0"):
		return get("subscribe", a.serveSubscribe)
	case match(parts, "v3", "history", "sub-key", "*", "channel", "*"):
		return get("history_v3", a.serveHistoryV3)
	case match(parts, "v2", "history", "sub-key", "*", "channel", "*"):
		return get("history_v2", a.serveHistoryV2)
	case match(parts, "v2", "presence", "sub-key", "*", "channel", "*", "heartbeat"):
		return get("heartbeat", a.serveHeartbeat)
	case match(parts, "v2", "presence", "sub-key", "*", "channel", "*", "leave"):
		return get("leave", a.serveLeave)
	case match(parts, "v2", "presence", "sub-key", "*", "channel", "*"):
		return get("here_now", a.serveHereNow)
	}
	writeError(ctx, fasthttp.StatusNotFound, "groupcast", "no such endpoint: "+raw)
	return "not_found"
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
	b := append(ctx.Response.Body()[:0], `["`...)
	b, _ = a.cfg.Groups.Clock().Now().AppendText(b)
	ctx.Response.SetBodyRaw(append(b, `"]`...))
}

func (a *API) serveReady(ctx *fasthttp.RequestCtx, _ []string) {
	if a.draining.Load() {
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
