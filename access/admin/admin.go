// Package admin is groupcast's admin API, served on a node's admin listener
// (not the public one): keysets are created, listed, given a new secret
// key and deleted here, and the node's Prometheus metrics (/metrics) and
// Go profiler (/debug/pprof/) are served beside them.
//
// Every API answer is JSON; an error is {"status":N,"error":true,
// "message":"…"}. With Config.Token set, every request (metrics and
// profiler included) needs "Authorization: Bearer <token>".
//
//	POST   /v1/keysets                      {"pam":bool} → 201, the new keyset
//	GET    /v1/keysets                      → {"keysets":[…]} as this node knows them
//	GET    /v1/keysets/{sub}                → the keyset
//	POST   /v1/keysets/{sub}/rotate-secret  → the keyset with a new secret key
//	DELETE /v1/keysets/{sub}                → {"deleted":"<sub>"}
package admin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/groupcast/groupcast/access"
)

// Store is where keysets are kept, shared by every node (access.Store
// satisfies it).
type Store interface {
	PutKeyset(ctx context.Context, k access.Keyset) error
	DeleteKeyset(ctx context.Context, subscribeKey string) error
	Keysets(ctx context.Context) ([]access.Keyset, error)
}

// Registry is the node's in-memory view of the keysets (*access.Registry
// satisfies it). After a change the handler refreshes it, so that this
// node sees the change at once; the others see it within their poll.
type Registry interface {
	Refresh(ctx context.Context) error
	Keysets() []access.Keyset
}

// Config configures a Handler.
type Config struct {
	// Token, when not empty, is required of every request as
	// "Authorization: Bearer <Token>"; empty means no check (the listener
	// must then be on loopback, which the caller enforces).
	Token string
	// Gatherer is served on /metrics; nil means /metrics answers 404.
	Gatherer prometheus.Gatherer
	// Now is the clock new keysets are stamped with; nil means time.Now.
	Now func() time.Time
	// Logger receives a line per change; nil means none.
	Logger *slog.Logger
}

// Handler serves the admin API. It is an http.Handler.
type Handler struct {
	store   Store
	reg     Registry
	cfg     Config
	token   [sha256.Size]byte
	metrics http.Handler // nil without a Gatherer
}

// maxBody bounds a request body: the API's bodies are a few bytes.
const maxBody = 4 << 10

// New returns the admin API over store and reg.
func New(store Store, reg Registry, cfg Config) (*Handler, error) {
	if store == nil || reg == nil {
		return nil, errors.New("admin: a store and a registry are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	h := &Handler{store: store, reg: reg, cfg: cfg, token: sha256.Sum256([]byte(cfg.Token))}
	if cfg.Gatherer != nil {
		h.metrics = promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{})
	}
	return h, nil
}

// ServeHTTP checks the bearer token, then routes.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// No browser page may use the admin API: a page an operator opens
	// could otherwise rotate secrets with a simple POST, or read the
	// keysets through DNS rebinding. Browsers mark their requests (Origin,
	// Sec-Fetch-Site); the CLI, curl and Prometheus send neither.
	if site := r.Header.Get("Sec-Fetch-Site"); r.Header.Get("Origin") != "" || site != "" && site != "none" {
		writeError(w, http.StatusForbidden, "the admin API does not serve browser pages")
		return
	}
	if h.cfg.Token == "" && !loopbackHost(r.Host) {
		writeError(w, http.StatusForbidden, "without --admin-token the admin API answers only requests addressed to a loopback host")
		return
	}
	if h.cfg.Token != "" {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		// Hashes are compared so that the comparison's time says nothing
		// about the token's length either.
		if sum := sha256.Sum256([]byte(got)); !ok || subtle.ConstantTimeCompare(sum[:], h.token[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="groupcast admin"`)
			writeError(w, http.StatusUnauthorized, "the admin API needs Authorization: Bearer <the node's --admin-token>")
			return
		}
	}
	h.route(w, r)
}

// route dispatches on the path. It is written out rather than left to
// http.ServeMux, whose 404, 405 and redirect answers are not JSON.
func (h *Handler) route(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch {
	case p == "/v1/keysets":
		h.collection(w, r)
	case strings.HasPrefix(p, "/v1/keysets/"):
		h.member(w, r)
	case p == "/metrics" && h.metrics != nil:
		h.metrics.ServeHTTP(w, r)
	case p == "/debug/pprof/cmdline":
		pprof.Cmdline(w, r)
	case p == "/debug/pprof/profile":
		pprof.Profile(w, r)
	case p == "/debug/pprof/symbol":
		pprof.Symbol(w, r)
	case p == "/debug/pprof/trace":
		pprof.Trace(w, r)
	case strings.HasPrefix(p, "/debug/pprof/"):
		pprof.Index(w, r) // the index, and each profile by name
	default:
		writeError(w, http.StatusNotFound, fmt.Sprintf("no such endpoint: %s %s", r.Method, p))
	}
}

// collection serves /v1/keysets.
func (h *Handler) collection(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		ks := h.reg.Keysets()
		if ks == nil {
			ks = []access.Keyset{}
		}
		slices.SortFunc(ks, func(a, b access.Keyset) int { return strings.Compare(a.SubscribeKey, b.SubscribeKey) })
		writeJSON(w, http.StatusOK, map[string][]access.Keyset{"keysets": ks})
	case http.MethodPost:
		var body struct {
			PAM bool `json:"pam"`
		}
		if err := decodeBody(w, r, &body); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		k, err := access.NewKeyset(body.PAM, h.cfg.Now())
		if err != nil {
			writeError(w, http.StatusInternalServerError, "creating a keyset: "+err.Error())
			return
		}
		if err := h.store.PutKeyset(r.Context(), k); err != nil {
			writeStoreError(w, "storing the keyset", err)
			return
		}
		h.refresh(r.Context(), "keyset created", k.SubscribeKey, "pam", k.PAM)
		writeJSON(w, http.StatusCreated, k)
	default:
		notAllowed(w, r, "GET, HEAD, POST")
	}
}

// member serves /v1/keysets/{sub} and /v1/keysets/{sub}/rotate-secret.
func (h *Handler) member(w http.ResponseWriter, r *http.Request) {
	rest := strings.TrimPrefix(r.URL.Path, "/v1/keysets/")
	sub, action, _ := strings.Cut(rest, "/")
	if sub == "" || (action != "" && action != "rotate-secret") {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no such endpoint: %s %s", r.Method, r.URL.Path))
		return
	}
	if action == "rotate-secret" {
		if r.Method != http.MethodPost {
			notAllowed(w, r, "POST")
			return
		}
		h.rotate(w, r, sub)
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		k, err := h.find(r.Context(), sub)
		if err != nil {
			writeFindError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, k)
	case http.MethodDelete:
		if _, err := h.find(r.Context(), sub); err != nil {
			writeFindError(w, err)
			return
		}
		if err := h.store.DeleteKeyset(r.Context(), sub); err != nil {
			writeStoreError(w, "deleting the keyset", err)
			return
		}
		h.refresh(r.Context(), "keyset deleted", sub)
		writeJSON(w, http.StatusOK, map[string]string{"deleted": sub})
	default:
		notAllowed(w, r, "GET, HEAD, DELETE")
	}
}

func (h *Handler) rotate(w http.ResponseWriter, r *http.Request, sub string) {
	if err := decodeBody(w, r, &struct{}{}); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	k, err := h.find(r.Context(), sub)
	if err != nil {
		writeFindError(w, err)
		return
	}
	if k, err = access.RotateSecret(k); err != nil {
		writeError(w, http.StatusInternalServerError, "making a secret key: "+err.Error())
		return
	}
	if err := h.store.PutKeyset(r.Context(), k); err != nil {
		writeStoreError(w, "storing the keyset", err)
		return
	}
	h.refresh(r.Context(), "keyset secret rotated", sub)
	writeJSON(w, http.StatusOK, k)
}

// find reads one keyset from the store, not the registry: an edit must
// start from the stored keyset, not from a view that may lag.
func (h *Handler) find(ctx context.Context, sub string) (access.Keyset, error) {
	all, err := h.store.Keysets(ctx)
	if err != nil {
		return access.Keyset{}, err
	}
	for _, k := range all {
		if k.SubscribeKey == sub {
			return k, nil
		}
	}
	return access.Keyset{}, access.ErrUnknownKeyset
}

// refresh makes this node see a change at once. The change is stored
// whether or not this succeeds; a failure only delays it to the
// registry's next poll, so it is logged, not answered.
func (h *Handler) refresh(ctx context.Context, what, sub string, attrs ...any) {
	h.cfg.Logger.Info(what, append([]any{"subscribe_key", sub}, attrs...)...)
	if err := h.reg.Refresh(ctx); err != nil {
		h.cfg.Logger.Warn("refreshing the keysets after a change; the next poll will", "err", err)
	}
}

// decodeBody reads a JSON object into v; an empty body leaves v as it is.
// Unknown fields are refused, so that a typo ("pm": true) is not silently
// a keyset without Access Manager.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return fmt.Errorf("the body is over %d bytes", maxBody)
		}
		return fmt.Errorf("reading the body: %w", err)
	}
	if len(strings.TrimSpace(string(b))) == 0 {
		return nil
	}
	return parseBody(b, v)
}

// parseBody decodes one JSON object into v, refusing unknown fields and
// anything after the object.
func parseBody(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("the body is not a JSON object of this endpoint: %w", err)
	}
	if dec.More() {
		return errors.New("the body has more than one JSON value")
	}
	return nil
}

func writeFindError(w http.ResponseWriter, err error) {
	if errors.Is(err, access.ErrUnknownKeyset) {
		writeError(w, http.StatusNotFound, "no keyset has this subscribe key")
		return
	}
	writeStoreError(w, "reading the keysets", err)
}

// writeStoreError answers a store's error: bad input (access.ErrInvalid)
// is the client's, anything else the store's (503: try again).
func writeStoreError(w http.ResponseWriter, what string, err error) {
	status := http.StatusServiceUnavailable
	if errors.Is(err, access.ErrInvalid) {
		status = http.StatusBadRequest
	}
	writeError(w, status, what+": "+err.Error())
}

func notAllowed(w http.ResponseWriter, r *http.Request, allow string) {
	w.Header().Set("Allow", allow)
	writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("%s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, allow))
}

type errorBody struct {
	Status  int    `json:"status"`
	Error   bool   `json:"error"`
	Message string `json:"message"`
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, errorBody{Status: status, Error: true, Message: msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"status":500,"error":true,"message":"encoding the answer"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// loopbackHost reports whether a request's Host names this machine by a
// loopback address or "localhost" (not a name that could be rebound).
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}
