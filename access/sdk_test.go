package access

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// The official PubNub SDKs (installed by scripts/test into sdktest/: npm
// pubnub and a Python venv with PyPI pubnub) read our tokens and sign
// requests our VerifySignature accepts. These tests never skip: without the
// SDKs they fail, saying how to install them.

// sdkDir is sdktest/ at the module root.
func sdkDir(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "sdktest")
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the working directory")
		}
		dir = parent
	}
}

type sdk struct {
	name string
	argv func(mode string, args ...string) []string
}

func sdks(t *testing.T) []sdk {
	t.Helper()
	dir := sdkDir(t)
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "pubnub", "package.json")); err != nil {
		t.Fatalf("the PubNub JavaScript SDK is not installed in %s: run `make test` (it runs npm ci there): %v", dir, err)
	}
	python := filepath.Join(dir, ".venv", "bin", "python")
	if out, err := exec.Command(python, "-c", "import pubnub").CombinedOutput(); err != nil {
		t.Fatalf("the PubNub Python SDK is not installed in %s/.venv: run `make test` (it creates the venv from requirements.txt): %v %s", dir, err, out)
	}
	script := func(name string) string {
		p, err := filepath.Abs(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	return []sdk{
		{"js", func(mode string, args ...string) []string {
			return append([]string{"node", script("sdk.mjs"), dir, mode}, args...)
		}},
		{"python", func(mode string, args ...string) []string {
			return append([]string{python, script("sdk.py"), mode}, args...)
		}},
	}
}

// run runs an SDK script and decodes the JSON it prints last.
func (s sdk) run(t *testing.T, v any, mode string, args ...string) {
	t.Helper()
	argv := s.argv(mode, args...)
	cmd := exec.CommandContext(t.Context(), argv[0], argv[1:]...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", s.name, mode, err, out, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), v); err != nil {
		t.Fatalf("%s %s: output %q: %v", s.name, mode, out, err)
	}
}

// sdkView is what both SDKs' parseToken show for tok, with empty maps left
// out (the JavaScript SDK omits them, the Python SDK shows them).
func sdkView(tok *Token) any {
	perms := func(p Perm) map[string]bool {
		return map[string]bool{
			"read": p&Read != 0, "write": p&Write != 0, "manage": p&Manage != 0, "delete": p&Delete != 0,
			"get": p&Get != 0, "update": p&Update != 0, "join": p&Join != 0,
		}
	}
	grants := func(g Grants) map[string]any {
		out := map[string]any{}
		for kind, m := range map[string]map[string]Perm{"channels": g.Channels, "groups": g.Groups, "uuids": g.UUIDs} {
			if len(m) == 0 {
				continue
			}
			k := map[string]any{}
			for name, p := range m {
				k[name] = perms(p)
			}
			out[kind] = k
		}
		return out
	}
	v := map[string]any{
		"version":   tok.Version,
		"timestamp": tok.Issued.Unix(),
		"ttl":       int(tok.TTL / time.Minute),
		"resources": grants(tok.Resources),
		"patterns":  grants(tok.Patterns),
		"meta":      tok.Meta,
	}
	if tok.AuthorizedUUID != "" {
		v["authorized_uuid"] = tok.AuthorizedUUID
	}
	return normJSON(v)
}

// normJSON round-trips v through JSON and prunes empty objects and nulls
// at the top level.
func normJSON(v any) any {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		panic(err)
	}
	for k, x := range m {
		if x == nil {
			delete(m, k)
		}
		if o, ok := x.(map[string]any); ok {
			for kk, y := range o {
				if yo, ok := y.(map[string]any); ok && len(yo) == 0 {
					delete(o, kk)
				}
			}
			if len(o) == 0 {
				delete(m, k)
			}
		}
	}
	return m
}

// TestSDKParseToken: a token we sign reads the same in the SDKs'
// parseToken.
func TestSDKParseToken(t *testing.T) {
	tok := sampleToken()
	tok.Meta = map[string]any{"s": "v ü", "n": int64(-7), "f": 2.5, "b": true}
	s := mustSign(t, tok, testSecret)
	want := sdkView(tok)
	for _, sdk := range sdks(t) {
		t.Run(sdk.name, func(t *testing.T) {
			var got any
			sdk.run(t, &got, "parse", s)
			if got = normJSON(got); !reflect.DeepEqual(got, want) {
				gb, _ := json.Marshal(got)
				wb, _ := json.Marshal(want)
				t.Errorf("parseToken:\n got %s\nwant %s", gb, wb)
			}
		})
	}
}

type captured struct {
	method, uri string
	body        []byte
}

// capture is a stand-in PubNub: it records every request, issues tokens
// for grants with ParseGrant and Sign, and answers the rest as PubNub does
// enough for the SDKs to go on.
type capture struct {
	keys Keyset
	mu   sync.Mutex
	reqs []captured
	errs []error
}

func (c *capture) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	c.mu.Lock()
	c.reqs = append(c.reqs, captured{r.Method, r.RequestURI, body})
	if err != nil {
		c.errs = append(c.errs, err)
	}
	c.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	p := r.URL.Path
	switch {
	case strings.HasPrefix(p, "/publish/"), strings.HasPrefix(p, "/signal/"):
		fmt.Fprint(w, `[1,"Sent","17000000000000000"]`)
	case strings.HasPrefix(p, "/v1/channel-registration/"):
		fmt.Fprint(w, `{"status":200,"message":"OK","service":"channel-registry","error":false}`)
	case strings.HasPrefix(p, "/v3/pam/") && r.Method == http.MethodPost:
		tok, err := ParseGrant(body)
		if err == nil {
			tok.Issued = time.Now()
			var s string
			if s, err = tok.Sign(c.keys.SecretKey); err == nil {
				w.Write(GrantResponse(s))
				return
			}
		}
		c.mu.Lock()
		c.errs = append(c.errs, err)
		c.mu.Unlock()
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, `{"status":400,"error":true,"message":%q,"service":"Access Manager"}`, err.Error())
	case strings.HasPrefix(p, "/v3/pam/") && r.Method == http.MethodDelete:
		fmt.Fprint(w, `{"status":200,"data":{},"service":"Access Manager"}`)
	case strings.HasPrefix(p, "/v2/subscribe/"):
		if tt := r.URL.Query().Get("tt"); tt != "" && tt != "0" {
			<-r.Context().Done() // a long-poll: the SDK exits
			return
		}
		fmt.Fprint(w, `{"t":{"t":"17000000000000000","r":1},"m":[]}`)
	case strings.HasPrefix(p, "/v2/presence/"):
		fmt.Fprint(w, `{"status":200,"message":"OK","action":"leave","service":"Presence"}`)
	default:
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"status":404,"error":true,"message":"not found"}`)
	}
}

// TestSDKSignatures: the requests each SDK signs with the secret key (a
// publish with a JSON path and odd meta, a publish by POST, a signal, a
// channel-group add with commas, a subscribe with a group, a grant with a
// body, a revoke) verify with VerifySignature; each fails to verify under
// another secret or with its path or query changed. The grant, issued by
// ParseGrant and Sign from the SDK's own body, reads back in its
// parseToken with what was asked.
func TestSDKSignatures(t *testing.T) {
	keys := Keyset{SubscribeKey: "sub-c-test", PublishKey: "pub-c-test", SecretKey: "sec-c-secret"}
	wantPaths := []string{
		"GET /publish/pub-c-test/sub-c-test/0/room%201%2C%C3%BC/0/%7B%22a%22%3A",
		"POST /publish/pub-c-test/sub-c-test/0/ch/0",
		"GET /signal/pub-c-test/sub-c-test/0/sig%20ch/0/",
		"GET /v1/channel-registration/sub-key/sub-c-test/channel-group/g%201",
		"POST /v3/pam/sub-c-test/grant",
		"DELETE /v3/pam/sub-c-test/grant/",
		"GET /v2/subscribe/sub-c-test/c%201/0",
	}
	for _, sdk := range sdks(t) {
		t.Run(sdk.name, func(t *testing.T) {
			c := &capture{keys: keys}
			srv := httptest.NewServer(c)
			t.Cleanup(srv.Close)
			var out struct {
				Token  string
				Parsed any
			}
			sdk.run(t, &out, "drive", strings.TrimPrefix(srv.URL, "http://"), keys.PublishKey, keys.SubscribeKey, keys.SecretKey)

			c.mu.Lock()
			reqs := append([]captured(nil), c.reqs...)
			errs := append([]error(nil), c.errs...)
			c.mu.Unlock()
			if len(errs) > 0 {
				t.Errorf("server errors: %v", errs)
			}
			seen := map[string]bool{}
			now := time.Now()
			for _, r := range reqs {
				sr, err := ParseSignedRequest(r.method, r.uri, r.body)
				if err != nil {
					t.Errorf("%s %s: %v", r.method, r.uri, err)
					continue
				}
				if strings.HasPrefix(sr.Path, "/time") {
					continue
				}
				for _, p := range wantPaths {
					if strings.HasPrefix(r.method+" "+r.uri, p) {
						seen[p] = true
					}
				}
				if err := VerifySignature(sr, keys, now, 10*time.Minute); err != nil {
					t.Errorf("%s %s (body %q): %v", r.method, r.uri, r.body, err)
					continue
				}
				t.Logf("verified %s %s", r.method, r.uri)
				for what, bad := range map[string]func(SignedRequest, Keyset) (SignedRequest, Keyset){
					"another secret": func(r SignedRequest, k Keyset) (SignedRequest, Keyset) { k.SecretKey += "x"; return r, k },
					"another path": func(r SignedRequest, k Keyset) (SignedRequest, Keyset) {
						r.Path += "x"
						return r, k
					},
					"another uuid": func(r SignedRequest, k Keyset) (SignedRequest, Keyset) {
						r.Query = cloneValues(r.Query)
						r.Query.Set("uuid", "mallory")
						return r, k
					},
				} {
					br, bk := bad(sr, keys)
					if err := VerifySignature(br, bk, now, 10*time.Minute); !errors.Is(err, ErrSignature) {
						t.Errorf("%s %s with %s: got %v, want ErrSignature", r.method, r.uri, what, err)
					}
				}
			}
			for _, p := range wantPaths {
				if !seen[p] {
					t.Errorf("no request %s...", p)
				}
			}

			tok, err := VerifyToken(out.Token, keys.SecretKey, now)
			if err != nil {
				t.Fatalf("granted token: %v", err)
			}
			want := &Token{
				Version: TokenVersion, Issued: tok.Issued, TTL: 15 * time.Minute, AuthorizedUUID: "alice",
				Resources: Grants{
					Channels: map[string]Perm{"ch-1": Read | Write, "ch 2,ü": Read},
					Groups:   map[string]Perm{"cg-1": Read | Manage},
					UUIDs:    map[string]Perm{"u-1": Get | Update},
				},
				Patterns: Grants{Channels: map[string]Perm{"^room-.*": Read | Write}},
				Meta:     map[string]any{"k": "v", "n": 3},
			}
			if got, want := normJSON(out.Parsed), sdkView(want); !reflect.DeepEqual(got, want) {
				gb, _ := json.Marshal(got)
				wb, _ := json.Marshal(want)
				t.Errorf("parseToken of the granted token:\n got %s\nwant %s", gb, wb)
			}
		})
	}
}
