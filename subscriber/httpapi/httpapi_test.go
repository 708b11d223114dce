package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/groupcast/groupcast/channelgroups"
	"github.com/groupcast/groupcast/channelgroups/bolt"
	"github.com/groupcast/groupcast/internal/metrictest"
	"github.com/groupcast/groupcast/internal/nodetest"
	"github.com/groupcast/groupcast/subscriber"
	"github.com/groupcast/groupcast/subscriber/httpapi"
)

type harness struct {
	t      *testing.T
	client *fasthttp.Client
	store  channelgroups.Store
	reg    *prometheus.Registry
}

func embedded(t testing.TB, reg *prometheus.Registry) (*bolt.Store, httpapi.Config) {
	return nodetest.Embedded(t, reg, subscriber.Config{})
}

func embeddedWith(t testing.TB, reg *prometheus.Registry, ncfg subscriber.Config) (*bolt.Store, httpapi.Config) {
	return nodetest.Embedded(t, reg, ncfg)
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	return newHarnessWith(t, subscriber.Config{})
}

func newHarnessWith(t *testing.T, ncfg subscriber.Config) *harness {
	t.Helper()
	return newHarnessAPI(t, ncfg, nil)
}

// newHarnessAPI is newHarnessWith with the API's Config changed by mod.
func newHarnessAPI(t *testing.T, ncfg subscriber.Config, mod func(*bolt.Store, *httpapi.Config)) *harness {
	t.Helper()
	reg := prometheus.NewRegistry()
	st, cfg := embeddedWith(t, reg, ncfg)
	if mod != nil {
		mod(st, &cfg)
	}
	api, err := httpapi.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln := fasthttputil.NewInmemoryListener()
	srv := httpapi.NewServer(api)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		if err := srv.Shutdown(); err != nil {
			t.Error(err)
		}
		<-done
	})
	return &harness{
		t:     t,
		store: st,
		reg:   reg,
		client: &fasthttp.Client{
			Dial:                   func(string) (net.Conn, error) { return ln.Dial() },
			ReadBufferSize:         256 << 10,
			DisablePathNormalizing: true,
		},
	}
}

type reply struct {
	status      int
	contentType string
	body        []byte
	headers     map[string]string
}

func (h *harness) do(method, uri string) reply {
	h.t.Helper()
	return h.send(method, uri, nil, nil)
}

// send sends a request with a body and headers (pairs of name, value).
func (h *harness) send(method, uri string, body []byte, headers []string) reply {
	h.t.Helper()
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://groupcast" + uri)
	req.URI().DisablePathNormalizing = true
	req.Header.SetMethod(method)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	if body != nil {
		req.SetBody(body)
	}
	if err := h.client.Do(req, resp); err != nil {
		h.t.Fatalf("%s %s: %v", method, uri, err)
	}
	r := reply{status: resp.StatusCode(), contentType: string(resp.Header.ContentType()), body: append([]byte(nil), resp.Body()...), headers: map[string]string{}}
	for k, v := range resp.Header.All() {
		r.headers[string(k)] = string(v)
	}
	return r
}

func (h *harness) get(uri string) reply { h.t.Helper(); return h.do("GET", uri) }

func decode(t *testing.T, r reply) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body %q is not a JSON object: %v", r.body, err)
	}
	return m
}

const cg = "/v1/channel-registration/sub-key/demo/channel-group"

func TestChannelGroupSequence(t *testing.T) {
	h := newHarness(t)
	r := h.get(cg + "/family?add=news%2Csports%2Cnews&uuid=u1&pnsdk=x")
	m := decode(t, r)
	if r.status != 200 || m["status"] != 200.0 || m["message"] != "OK" || m["service"] != "channel-registry" || m["error"] != false {
		t.Fatalf("add: %d %s", r.status, r.body)
	}
	tt, _ := m["timetoken"].(string)
	if _, err := channelgroups.ParseTimetoken(tt); err != nil || len(tt) != 17 {
		t.Fatalf("add timetoken %q: %v", tt, err)
	}
	// Lists carry the edit's token: without one a list is served from
	// memory as it is, which may not have applied the edit yet.
	tok := url.QueryEscape(m["token"].(string))

	r = h.get(cg + "/family?token=" + tok)
	m = decode(t, r)
	payload := m["payload"].(map[string]any)
	if !reflect.DeepEqual(payload["channels"], []any{"news", "sports"}) || payload["group"] != "family" || payload["version"] != tt {
		t.Fatalf("list: %s", r.body)
	}

	r = h.get(cg)
	m = decode(t, r)
	payload = m["payload"].(map[string]any)
	if !reflect.DeepEqual(payload["groups"], []any{"family"}) || payload["sub_key"] != "demo" {
		t.Fatalf("list groups: %s", r.body)
	}

	r = h.get(cg + "/family?remove=news")
	if m = decode(t, r); r.status != 200 || m["timetoken"].(string) <= tt {
		t.Fatalf("remove: %d %s", r.status, r.body)
	}
	r = h.get(cg + "/family?token=" + url.QueryEscape(m["token"].(string)))
	if payload = decode(t, r)["payload"].(map[string]any); !reflect.DeepEqual(payload["channels"], []any{"sports"}) {
		t.Fatalf("list after remove: %s", r.body)
	}

	r = h.get(cg + "/family/remove")
	if m = decode(t, r); r.status != 200 || m["message"] != "OK" {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	tok = url.QueryEscape(m["token"].(string))
	r = h.get(cg)
	if payload = decode(t, r)["payload"].(map[string]any); !reflect.DeepEqual(payload["groups"], []any{}) {
		t.Fatalf("groups after delete: %s", r.body)
	}
	r = h.get(cg + "/family?token=" + tok)
	if payload = decode(t, r)["payload"].(map[string]any); !reflect.DeepEqual(payload["channels"], []any{}) {
		t.Fatalf("channels after delete: %s", r.body)
	}
}

func TestEncodedNames(t *testing.T) {
	h := newHarness(t)
	// PubNub SDKs percent-encode names in paths and lists as a whole.
	r := h.get(cg + "/gr%C3%BCn?add=%C3%A9t%C3%A9%2Cwinter")
	if r.status != 200 {
		t.Fatalf("add: %d %s", r.status, r.body)
	}
	r = h.get(cg + "/gr%C3%BCn")
	payload := decode(t, r)["payload"].(map[string]any)
	if !reflect.DeepEqual(payload["channels"], []any{"winter", "été"}) || payload["group"] != "grün" {
		t.Fatalf("list: %s", r.body)
	}
}

func TestTime(t *testing.T) {
	h := newHarness(t)
	r := h.get("/time/0")
	// A JSON number, as PubNub answers: the Python SDK refuses a string.
	var v []int64
	if err := json.Unmarshal(r.body, &v); err != nil || len(v) != 1 || len(strconv.FormatInt(v[0], 10)) != 17 || r.contentType != "application/json" {
		t.Fatalf("time: %d %q %s (%v)", r.status, r.contentType, r.body, err)
	}
}

func TestCORSPreflight(t *testing.T) {
	h := newHarnessAPI(t, subscriber.Config{}, func(_ *bolt.Store, cfg *httpapi.Config) { cfg.CORSOrigins = []string{"*"} })
	r := h.do("OPTIONS", cg+"/g?add=x")
	if r.status != 200 || r.headers["Access-Control-Allow-Origin"] != "*" || r.contentType != "application/json" {
		t.Fatalf("preflight: %d %v", r.status, r.headers)
	}
	if gs, _ := h.store.Groups(t.Context(), "demo"); len(gs) != 0 {
		t.Fatalf("preflight changed the store: %v", gs)
	}
}

// TestBadInput: every bad request gets a 4xx JSON error with a content type
// and leaves the store as it was.
func TestBadInput(t *testing.T) {
	h := newHarness(t)
	if r := h.get(cg + "/keep?add=a%2Cb"); r.status != 200 {
		t.Fatalf("setup: %d %s", r.status, r.body)
	}
	before, err := h.store.Read(t.Context(), "demo", "keep")
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", 93)
	list := func(n int) string {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = fmt.Sprintf("c%d", i)
		}
		return strings.Join(parts, "%2C")
	}
	for _, tc := range []struct {
		name, method, uri string
		status            int
	}{
		{"group with comma", "GET", cg + "/a%2Cb?add=x", 400},
		{"group with colon", "GET", cg + "/a:b?add=x", 400},
		{"group with wildcard", "GET", cg + "/a*?add=x", 400},
		{"group with encoded slash", "GET", cg + "/a%2Fb?add=x", 400},
		{"group with space", "GET", cg + "/a%20b?add=x", 400},
		{"group with control char", "GET", cg + "/a%01b?add=x", 400},
		{"group too long", "GET", cg + "/" + long + "?add=x", 400},
		{"bad utf-8 group", "GET", cg + "/a%FFb?add=x", 400},
		{"bad escape", "GET", cg + "/a%zzb?add=x", 400},
		{"bad account", "GET", "/v1/channel-registration/sub-key/a:b/channel-group/keep?add=x", 400},
		{"channel with colon", "GET", cg + "/keep?add=ok%2Cbad:name", 400},
		{"channel too long", "GET", cg + "/keep?add=" + long, 400},
		{"empty add", "GET", cg + "/keep?add=", 400},
		{"empty remove", "GET", cg + "/keep?remove=", 400},
		{"empty item", "GET", cg + "/keep?add=a%2C%2Cb", 400},
		{"add and remove", "GET", cg + "/keep?add=x&remove=a", 400},
		{"201 channels", "GET", cg + "/keep?add=" + list(201), 400},
		{"unknown path", "GET", "/v1/nothing/here", 404},
		{"unknown deeper path", "GET", cg + "/keep/remove/extra", 404},
		{"root", "GET", "/", 404},
		{"wrong method", "POST", cg + "/keep?add=x", 405},
		{"delete method", "DELETE", cg + "/keep", 405},
		{"oversized query", "GET", cg + "/keep?add=" + strings.Repeat("y", httpapi.MaxRequestHeaderBytes+10), 431},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.do(tc.method, tc.uri)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d (%s)", r.status, tc.status, r.body)
			}
			if r.contentType != "application/json" {
				t.Fatalf("content type %q", r.contentType)
			}
			m := decode(t, r)
			if m["error"] != true || m["status"] != float64(tc.status) || m["message"] == "" {
				t.Fatalf("body %s is not a PubNub error", r.body)
			}
		})
	}
	after, err := h.store.Read(t.Context(), "demo", "keep")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(before, after) {
		t.Fatalf("bad input changed the group: before %+v, after %+v", before, after)
	}
	if gs, _ := h.store.Groups(t.Context(), "demo"); !reflect.DeepEqual(gs, []channelgroups.Group{"keep"}) {
		t.Fatalf("bad input created groups: %v", gs)
	}
}

func TestGroupLimit(t *testing.T) {
	h := newHarness(t)
	for batch := range 10 {
		parts := make([]string, 200)
		for i := range parts {
			parts[i] = fmt.Sprintf("c%d", batch*200+i)
		}
		if r := h.get(cg + "/big?add=" + strings.Join(parts, "%2C")); r.status != 200 {
			t.Fatalf("batch %d: %d %s", batch, r.status, r.body)
		}
	}
	r := h.get(cg + "/big?add=one-more")
	if r.status != 400 || decode(t, r)["error"] != true {
		t.Fatalf("2001st channel: %d %s", r.status, r.body)
	}
	snap, _ := h.store.Read(t.Context(), "demo", "big")
	if snap.Count() != 2000 {
		t.Fatalf("group holds %d channels, want 2000", snap.Count())
	}
}

func TestHealthAndMetrics(t *testing.T) {
	h := newHarness(t)
	if r := h.get("/healthz"); r.status != 200 || r.contentType != "application/json" {
		t.Fatalf("healthz: %d", r.status)
	}
	if r := h.get("/readyz"); r.status != 200 {
		t.Fatalf("readyz: %d %s", r.status, r.body)
	}
	h.get(cg + "/g?add=x")
	if v := metrictest.Value(t, h.reg, "groupcast_http_requests_total", "code", "200", "endpoint", "cg_add"); v != 1 {
		t.Fatalf("groupcast_http_requests_total{cg_add,200} = %v, want 1", v)
	}
	// Metrics are on the admin listener, not the public one.
	if r := h.get("/metrics"); r.status != 404 || r.contentType != "application/json" {
		t.Fatalf("public /metrics: %d %s", r.status, r.body)
	}
}

// unavailable is a store whose back end is down.
type unavailable struct{}

func (unavailable) Write(context.Context, channelgroups.Edit) error {
	return channelgroups.ErrUnavailable
}
func (unavailable) Read(context.Context, channelgroups.Account, channelgroups.Group) (channelgroups.Snapshot, error) {
	return channelgroups.Snapshot{}, fmt.Errorf("timeout: %w", channelgroups.ErrUnavailable)
}
func (unavailable) Groups(context.Context, channelgroups.Account) ([]channelgroups.Group, error) {
	return nil, channelgroups.ErrUnavailable
}

// downViews is a read path whose storage is down.
type downViews struct{}

func (downViews) View(context.Context, channelgroups.GroupKey, *channelgroups.Token, subscriber.Consistency) (*channelgroups.View, error) {
	return nil, channelgroups.ErrUnavailable
}

func (downViews) CatchUp(ctx context.Context, _ *channelgroups.Token) (context.Context, error) {
	return ctx, channelgroups.ErrUnavailable
}

func TestStoreUnavailable(t *testing.T) {
	svc, err := channelgroups.NewService(unavailable{}, channelgroups.NewClock(nil, 0), channelgroups.ServiceConfig{})
	if err != nil {
		t.Fatal(err)
	}
	_, cfg := embedded(t, nil)
	cfg.Groups, cfg.Views = svc, downViews{}
	cfg.Ready = func(context.Context) error { return errors.New("cassandra down") }
	api, err := httpapi.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, uri := range []string{cg + "/g?add=x", cg + "/g?remove=x", cg + "/g", cg, cg + "/g/remove", "/readyz"} {
		var ctx fasthttp.RequestCtx
		ctx.Request.SetRequestURI(uri)
		api.Handle(&ctx)
		if ctx.Response.StatusCode() != 503 || string(ctx.Response.Header.ContentType()) != "application/json" {
			t.Fatalf("%s: %d %s", uri, ctx.Response.StatusCode(), ctx.Response.Body())
		}
		if uri != "/readyz" && string(ctx.Response.Header.Peek("Retry-After")) == "" {
			t.Fatalf("%s: 503 without Retry-After", uri)
		}
	}
}

func TestDrainTurnsReadinessOff(t *testing.T) {
	_, cfg := embedded(t, nil)
	api, err := httpapi.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	status := func() int {
		var ctx fasthttp.RequestCtx
		ctx.Request.SetRequestURI("/readyz")
		api.Handle(&ctx)
		return ctx.Response.StatusCode()
	}
	if got := status(); got != 200 {
		t.Fatalf("before Drain: %d", got)
	}
	api.Drain(0)
	if got := status(); got != 503 {
		t.Fatalf("after Drain: %d, want 503", got)
	}
}

func jsonDecode(resp *http.Response, into any) error {
	if resp.StatusCode != 200 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return json.NewDecoder(resp.Body).Decode(into)
}
