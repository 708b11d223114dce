package admin_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/groupcast/groupcast/access"
	"github.com/groupcast/groupcast/access/accesstest"
	"github.com/groupcast/groupcast/access/admin"
)

// memStore is a keyset store in memory; fail, when set, is every call's
// error.
type memStore struct {
	mu   sync.Mutex
	ks   map[string]access.Keyset
	fail error
}

func (m *memStore) PutKeyset(_ context.Context, k access.Keyset) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	m.ks[k.SubscribeKey] = k
	return nil
}

func (m *memStore) DeleteKeyset(_ context.Context, sub string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	delete(m.ks, sub)
	return nil
}

func (m *memStore) Keysets(context.Context) ([]access.Keyset, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return nil, m.fail
	}
	return slices.Collect(maps.Values(m.ks)), nil
}

// memRegistry copies the store on Refresh, as access.Registry does.
type memRegistry struct {
	store     *memStore
	mu        sync.Mutex
	ks        []access.Keyset
	refreshes int
}

func (r *memRegistry) Refresh(ctx context.Context) error {
	ks, err := r.store.Keysets(ctx)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.refreshes++
	if err == nil {
		r.ks = ks
	}
	return err
}

func (r *memRegistry) Keysets() []access.Keyset {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.ks)
}

func (r *memRegistry) refreshed() int { r.mu.Lock(); defer r.mu.Unlock(); return r.refreshes }

type fixture struct {
	t     *testing.T
	store *memStore
	reg   *memRegistry
	h     *admin.Handler
	token string // sent as the bearer token when not empty
}

func newFixture(t *testing.T, cfg admin.Config) *fixture {
	t.Helper()
	store := &memStore{ks: map[string]access.Keyset{}}
	reg := &memRegistry{store: store}
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC) }
	}
	h, err := admin.New(store, reg, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, store: store, reg: reg, h: h}
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

func (f *fixture) do(method, path, body string) answer {
	f.t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Host = "127.0.0.1:8081" // the admin API answers loopback hosts only (without a token)
	if f.token != "" {
		req.Header.Set("Authorization", "Bearer "+f.token)
	}
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	return answer{rec.Code, rec.Header(), rec.Body.Bytes()}
}

// keyset decodes a keyset answer, failing unless it has status want.
func (a answer) keyset(t *testing.T, want int) access.Keyset {
	t.Helper()
	a.json(t, want)
	var k access.Keyset
	if err := json.Unmarshal(a.body, &k); err != nil {
		t.Fatalf("%s is not a keyset: %v", a.body, err)
	}
	return k
}

// json fails unless the answer is JSON with status want.
func (a answer) json(t *testing.T, want int) {
	t.Helper()
	if a.status != want {
		t.Fatalf("status %d (%s), want %d", a.status, a.body, want)
	}
	if ct := a.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("content type %q, want application/json", ct)
	}
	if !json.Valid(a.body) {
		t.Fatalf("%q is not JSON", a.body)
	}
}

// apiError fails unless the answer is the error shape with status want.
func (a answer) apiError(t *testing.T, want int) string {
	t.Helper()
	a.json(t, want)
	var e struct {
		Status  int    `json:"status"`
		Error   bool   `json:"error"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal(a.body, &e); err != nil || e.Status != want || !e.Error || e.Message == "" {
		t.Fatalf("error answer %s, want {status:%d, error:true, message:…}", a.body, want)
	}
	return e.Message
}

func TestKeysetLifecycle(t *testing.T) {
	f := newFixture(t, admin.Config{})
	k := f.do("POST", "/v1/keysets", `{"pam":true}`).keyset(t, http.StatusCreated)
	if !k.PAM || !strings.HasPrefix(k.SubscribeKey, "sub-c-") || !strings.HasPrefix(k.PublishKey, "pub-c-") || !strings.HasPrefix(k.SecretKey, "sec-c-") {
		t.Fatalf("created %+v, want PAM on and keys in PubNub's shapes", k)
	}
	if !k.Created.Equal(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)) {
		t.Fatalf("created at %v, want the injected clock's time", k.Created)
	}
	if got := f.store.ks[k.SubscribeKey]; got != k {
		t.Fatalf("stored %+v, want %+v", got, k)
	}
	if f.reg.refreshed() != 1 {
		t.Fatalf("registry refreshed %d times after a create, want 1", f.reg.refreshed())
	}
	plain := f.do("POST", "/v1/keysets", "").keyset(t, http.StatusCreated) // an empty body: no Access Manager
	if plain.PAM || plain.SubscribeKey == k.SubscribeKey {
		t.Fatalf("second keyset %+v: want PAM off and a new subscribe key", plain)
	}

	a := f.do("GET", "/v1/keysets", "")
	a.json(t, http.StatusOK)
	var list struct {
		Keysets []access.Keyset `json:"keysets"`
	}
	if err := json.Unmarshal(a.body, &list); err != nil {
		t.Fatal(err)
	}
	want := []access.Keyset{k, plain}
	slices.SortFunc(want, func(a, b access.Keyset) int { return strings.Compare(a.SubscribeKey, b.SubscribeKey) })
	if !slices.Equal(list.Keysets, want) {
		t.Fatalf("list %+v, want %+v", list.Keysets, want)
	}
	if got := f.do("GET", "/v1/keysets/"+k.SubscribeKey, "").keyset(t, http.StatusOK); got != k {
		t.Fatalf("get %+v, want %+v", got, k)
	}

	rotated := f.do("POST", "/v1/keysets/"+k.SubscribeKey+"/rotate-secret", "").keyset(t, http.StatusOK)
	if rotated.SecretKey == k.SecretKey || rotated.SubscribeKey != k.SubscribeKey || rotated.PublishKey != k.PublishKey || rotated.PAM != k.PAM {
		t.Fatalf("rotated %+v from %+v: want only the secret changed", rotated, k)
	}
	if got := f.store.ks[k.SubscribeKey]; got != rotated {
		t.Fatalf("stored after rotation %+v, want %+v", got, rotated)
	}

	a = f.do("DELETE", "/v1/keysets/"+k.SubscribeKey, "")
	a.json(t, http.StatusOK)
	if _, ok := f.store.ks[k.SubscribeKey]; ok {
		t.Fatal("deleted keyset still stored")
	}
	if f.reg.refreshed() != 4 {
		t.Fatalf("registry refreshed %d times after 4 changes, want 4", f.reg.refreshed())
	}
	f.do("DELETE", "/v1/keysets/"+k.SubscribeKey, "").apiError(t, http.StatusNotFound)
	f.do("GET", "/v1/keysets/"+k.SubscribeKey, "").apiError(t, http.StatusNotFound)
}

func TestBadRequests(t *testing.T) {
	f := newFixture(t, admin.Config{})
	sub := f.do("POST", "/v1/keysets", "{}").keyset(t, http.StatusCreated).SubscribeKey
	for _, c := range []struct {
		method, path, body string
		want               int
	}{
		{"POST", "/v1/keysets", `{"pam":`, 400},
		{"POST", "/v1/keysets", `{"pm":true}`, 400}, // a typo must not make a keyset without Access Manager
		{"POST", "/v1/keysets", `{"pam":"yes"}`, 400},
		{"POST", "/v1/keysets", `[true]`, 400},
		{"POST", "/v1/keysets", `{"pam":true} {"pam":false}`, 400},
		{"POST", "/v1/keysets", `{"pam":true,"x":"` + strings.Repeat("a", 5000) + `"}`, 400},
		{"PUT", "/v1/keysets", `{}`, 405},
		{"DELETE", "/v1/keysets", ``, 405},
		{"PUT", "/v1/keysets/" + sub, ``, 405},
		{"GET", "/v1/keysets/" + sub + "/rotate-secret", ``, 405},
		{"POST", "/v1/keysets/" + sub + "/rotate-secret", `{"secret":"mine"}`, 400},
		{"POST", "/v1/keysets/sub-c-nope/rotate-secret", ``, 404},
		{"DELETE", "/v1/keysets/sub-c-nope", ``, 404},
		{"GET", "/v1/keysets/" + sub + "/other", ``, 404},
		{"GET", "/v1/keysets/", ``, 404},
		{"GET", "/v1/keyset", ``, 404},
		{"GET", "/", ``, 404},
		{"GET", "/metrics", ``, 404}, // no Gatherer
		{"GET", "/v1/keysets/../metrics", ``, 404},
	} {
		t.Run(c.method+" "+c.path, func(t *testing.T) {
			a := f.do(c.method, c.path, c.body)
			msg := a.apiError(t, c.want)
			if c.want == 405 && a.header.Get("Allow") == "" {
				t.Error("405 without Allow")
			}
			t.Logf("%d %s", c.want, msg)
		})
	}
	if len(f.store.ks) != 1 {
		t.Fatalf("%d keysets stored after bad requests, want 1", len(f.store.ks))
	}
}

func TestStoreErrors(t *testing.T) {
	f := newFixture(t, admin.Config{})
	sub := f.do("POST", "/v1/keysets", "").keyset(t, http.StatusCreated).SubscribeKey
	f.store.fail = fmt.Errorf("put: %w", access.ErrInvalid)
	f.do("POST", "/v1/keysets", "").apiError(t, http.StatusBadRequest)
	f.store.fail = errors.New("cassandra: timeout")
	for _, r := range [][2]string{{"POST", "/v1/keysets"}, {"POST", "/v1/keysets/" + sub + "/rotate-secret"}, {"DELETE", "/v1/keysets/" + sub}, {"GET", "/v1/keysets/" + sub}} {
		if msg := f.do(r[0], r[1], "").apiError(t, http.StatusServiceUnavailable); !strings.Contains(msg, "timeout") {
			t.Errorf("%s %s: message %q does not say why", r[0], r[1], msg)
		}
	}
}

func TestBearerToken(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "admin_test_total", Help: "a sample"}))
	f := newFixture(t, admin.Config{Token: "0123456789abcdef-admin", Gatherer: reg})
	for _, tok := range []string{"", "wrong", "0123456789abcdef-admin ", "0123456789abcdef-admi"} {
		f.token = tok
		for _, p := range []string{"/v1/keysets", "/metrics", "/debug/pprof/"} {
			a := f.do("GET", p, "")
			a.apiError(t, http.StatusUnauthorized)
			if a.header.Get("WWW-Authenticate") == "" {
				t.Errorf("401 on %s without WWW-Authenticate", p)
			}
		}
		f.do("POST", "/v1/keysets", "").apiError(t, http.StatusUnauthorized)
	}
	if len(f.store.ks) != 0 {
		t.Fatal("a keyset was created without the token")
	}
	// "Basic" is not "Bearer", even with the right token.
	req := httptest.NewRequest("GET", "/v1/keysets", nil)
	req.Header.Set("Authorization", "Basic 0123456789abcdef-admin")
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	if rec.Code != http.StatusUnauthorized {
		t.Fatalf("Basic auth: status %d, want 401", rec.Code)
	}

	f.token = "0123456789abcdef-admin"
	f.do("POST", "/v1/keysets", "").keyset(t, http.StatusCreated)
	f.do("GET", "/v1/keysets", "").json(t, http.StatusOK)
	m := f.do("GET", "/metrics", "")
	if m.status != 200 || !strings.Contains(string(m.body), "admin_test_total 0") {
		t.Fatalf("/metrics: %d %.200s", m.status, m.body)
	}
	if p := f.do("GET", "/debug/pprof/", ""); p.status != 200 || !strings.Contains(string(p.body), "goroutine") {
		t.Fatalf("/debug/pprof/: %d %.200s", p.status, p.body)
	}
	if p := f.do("GET", "/debug/pprof/goroutine?debug=1", ""); p.status != 200 {
		t.Fatalf("/debug/pprof/goroutine: %d", p.status)
	}
}

func TestNewNeedsStoreAndRegistry(t *testing.T) {
	if _, err := admin.New(nil, nil, admin.Config{}); err == nil {
		t.Fatal("New(nil, nil) accepted")
	}
}

// FuzzAdmin: whatever the method, path and body, an API answer is JSON,
// an error one in the error shape, and the handler does not panic.
func FuzzAdmin(f *testing.F) {
	for _, s := range []struct{ m, p, b string }{
		{"POST", "/v1/keysets", `{"pam":true}`},
		{"POST", "/v1/keysets", `{"pam":tru`},
		{"GET", "/v1/keysets", ``},
		{"DELETE", "/v1/keysets/sub-c-1", ``},
		{"POST", "/v1/keysets/sub-c-1/rotate-secret", `{}`},
		{"POST", "/v1/keysets//rotate-secret", ``},
		{"PATCH", "/v1/keysets/%00", `null`},
	} {
		f.Add(s.m, s.p, s.b)
	}
	fx := &fixture{store: &memStore{ks: map[string]access.Keyset{"sub-c-1": {SubscribeKey: "sub-c-1", PublishKey: "pub-c-1", SecretKey: "sec-c-1"}}}}
	fx.reg = &memRegistry{store: fx.store}
	h, err := admin.New(fx.store, fx.reg, admin.Config{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, method, path, body string) {
		if !strings.HasPrefix(path, "/v1/") {
			path = "/v1/" + path
		}
		req, err := http.NewRequest(method, "http://admin"+path, strings.NewReader(body))
		if err != nil {
			return // not a request a client could send
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		got, _ := io.ReadAll(rec.Body)
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" || !json.Valid(got) {
			t.Fatalf("%s %s: %d %q %q: not JSON", method, path, rec.Code, ct, got)
		}
		if rec.Code >= 400 {
			var e struct {
				Status int  `json:"status"`
				Error  bool `json:"error"`
			}
			if json.Unmarshal(got, &e) != nil || e.Status != rec.Code || !e.Error {
				t.Fatalf("%s %s: error answer %s", method, path, got)
			}
		}
	})
}

// TestBrowsersRefused: a page in an operator's browser cannot use the admin
// API (a simple cross-site POST, or DNS rebinding to read the secrets).
func TestBrowsersRefused(t *testing.T) {
	st := accesstest.NewMemory()
	reg, err := access.NewRegistry(st, access.RegistryConfig{})
	if err != nil {
		t.Fatal(err)
	}
	h, err := admin.New(st, reg, admin.Config{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, host string
		headers    map[string]string
		want       int
	}{
		{"cli", "127.0.0.1:8081", nil, 201},
		{"localhost", "localhost:8081", nil, 201},
		{"cross-site form", "127.0.0.1:8081", map[string]string{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}, 403},
		{"origin only", "127.0.0.1:8081", map[string]string{"Origin": "http://evil.example"}, 403},
		{"rebound name", "rebind.evil.example:8081", nil, 403},
	} {
		r := httptest.NewRequest("POST", "/v1/keysets", strings.NewReader(`{"pam":false}`))
		r.Host = c.host
		for k, v := range c.headers {
			r.Header.Set(k, v)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != c.want || w.Header().Get("Content-Type") != "application/json" {
			t.Errorf("%s: %d %q %s, want %d", c.name, w.Code, w.Header().Get("Content-Type"), w.Body, c.want)
		}
	}
	if ks := reg.Keysets(); len(ks) != 2 {
		t.Fatalf("%d keysets after the refused requests, want the 2 created", len(ks))
	}
}
