package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/groupcast/groupcast/access"
	"github.com/groupcast/groupcast/internal/testenv"
)

// pamAccess is the access mode the Access Manager SDK tests start their
// nodes in. (In open mode every check that expects a 403 fails.)
const pamAccess = "keysets"

// adminKeyset is a keyset as the admin API answers it.
type adminKeyset struct {
	PublishKey   string `json:"publish_key"`
	SubscribeKey string `json:"subscribe_key"`
	SecretKey    string `json:"secret_key"`
	PAM          bool   `json:"pam"`
}

// createKeyset creates a keyset with Access Manager on through the admin
// API at adminURL.
func createKeyset(t *testing.T, adminURL string) adminKeyset {
	t.Helper()
	resp, err := http.Post(adminURL+"/v1/keysets", "application/json", strings.NewReader(`{"pam":true}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	buf.ReadFrom(resp.Body)
	var ks adminKeyset
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST %s/v1/keysets: %s %s; want 201", adminURL, resp.Status, buf.Bytes())
	}
	if err := json.Unmarshal(buf.Bytes(), &ks); err != nil || ks.SubscribeKey == "" || ks.PublishKey == "" || ks.SecretKey == "" || !ks.PAM {
		t.Fatalf("POST %s/v1/keysets answered %s (%v); want a keyset with its three keys and pam", adminURL, buf.Bytes(), err)
	}
	return ks
}

// knowsKeyset reports whether the node whose admin API is at adminURL has
// the keyset in its registry.
func knowsKeyset(t *testing.T, adminURL, sub string) bool {
	t.Helper()
	var list struct {
		Keysets []adminKeyset `json:"keysets"`
	}
	if err := getBody(t.Context(), http.DefaultClient, adminURL+"/v1/keysets", &list); err != nil {
		t.Fatal(err)
	}
	for _, k := range list.Keysets {
		if k.SubscribeKey == sub {
			return true
		}
	}
	return false
}

// signToken signs a token the way the node's grant endpoint does, issued at
// issued: read and write on every channel matching ^room-.*, no authorized
// uuid. With issued two hours ago and a TTL of one hour it is expired and
// that is the only thing wrong with it.
func signToken(t *testing.T, secret string, issued time.Time) string {
	t.Helper()
	tok := &access.Token{
		Version:  access.TokenVersion,
		Issued:   issued,
		TTL:      time.Hour,
		Patterns: access.Grants{Channels: map[string]access.Perm{"^room-.*": access.Read | access.Write}},
		Meta:     map[string]any{"signed-by": "pam_sdk_test"},
	}
	s, err := tok.Sign(secret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var summaryLine = regexp.MustCompile(`^(\d+) passed, (\d+) failed$`)

// runScript runs an SDK script with its JSON configuration as the one
// argument, logs its output and returns its summary counts. A script that
// exits non-zero, or prints no summary, fails the test.
func runScript(t *testing.T, label, interpreter, script string, cfg any) (passed, failed int) {
	t.Helper()
	arg, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, interpreter, script, string(arg))
	cmd.Dir = filepath.Dir(script)
	out, err := cmd.CombinedOutput()
	sc := bufio.NewScanner(bytes.NewReader(out))
	found := false
	for sc.Scan() {
		t.Log(sc.Text())
		if m := summaryLine.FindStringSubmatch(sc.Text()); m != nil {
			passed, _ = strconv.Atoi(m[1])
			failed, _ = strconv.Atoi(m[2])
			found = true
		}
	}
	if !found {
		t.Errorf("%s: no summary line (%v)", label, err)
		return passed, failed + 1
	}
	if err != nil || failed > 0 {
		t.Errorf("%s: %d passed, %d failed (%v)", label, passed, failed, err)
	}
	return passed, failed
}

// npmPackages fails the test unless the npm packages scripts/test installs
// are in sdktest/node_modules: both JavaScript SDKs (pubnub v11 and
// pubnub12 = v12) and puppeteer-core.
func npmPackages(t *testing.T, dir string) {
	t.Helper()
	for _, pkg := range []string{"pubnub", "pubnub12", "puppeteer-core"} {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", pkg, "package.json")); err != nil {
			t.Fatalf("npm package %s is not installed in %s: run `make test` (it runs npm ci there): %v", pkg, dir, err)
		}
	}
}

// pythonSDK returns the python of sdktest/.venv, where scripts/test
// installs the Python SDK, or fails the test.
func pythonSDK(t *testing.T, dir string) string {
	t.Helper()
	python := filepath.Join(dir, ".venv", "bin", "python")
	if out, err := exec.Command(python, "-c", "import pubnub").CombinedOutput(); err != nil {
		t.Fatalf("the PubNub Python SDK is not installed in %s/.venv: run `make test`: %v %s", dir, err, out)
	}
	return python
}

// TestPAMWithSDKs: Access Manager v3 driven by the official SDKs (JavaScript
// v11 and v12, Python) against two nodes sharing the real Cassandra and
// Redis in --access keysets mode. A keyset with Access Manager on is created
// through node A's admin API; each SDK's server client (secret key) grants,
// parses and revokes tokens, and clients without the secret key are denied
// without a token, use the token's grants by name and by pattern, lose it at
// both nodes on revocation and are denied with an expired one:
// sdktest/pam.mjs and sdktest/pam.py.
func TestPAMWithSDKs(t *testing.T) {
	dir := sdkDir(t)
	npmPackages(t, dir)
	python := pythonSDK(t, dir)
	hosts := strings.Join(testenv.CassandraHosts(t), ",")
	shared := []string{"--cassandra", hosts, "--keyspace", testenv.Keyspace(t), "--redis", testenv.RedisAddr(t),
		"--redis-prefix", fmt.Sprintf("gcpam%d", time.Now().UnixNano()), "--secret", "cluster-test-secret-0123456789",
		"--access", pamAccess}
	// Each node has its own admin listener (start puts it on a free port).
	var nodes []*server
	seed := ""
	for i := range 2 {
		g, args := gossipArgs(t, seed)
		if seed == "" {
			seed = g
		}
		args = append(append(args, shared...), "--node", fmt.Sprintf("n%d", i+1), "--data", t.TempDir())
		nodes = append(nodes, start(t, args...))
	}
	for _, n := range nodes {
		if n.admin == "" {
			t.Fatalf("node %s printed no admin listener", n.url)
		}
	}
	agreed(t, nodes, 2)

	ks := createKeyset(t, nodes[0].admin)
	eventually(t, 5*time.Second, "node B knows the keyset created at node A", func() bool { return knowsKeyset(t, nodes[1].admin, ks.SubscribeKey) })
	now := time.Now()
	expired := signToken(t, ks.SecretKey, now.Add(-2*time.Hour))
	current := signToken(t, ks.SecretKey, now)

	type sdk struct{ tag, interpreter, script, module string }
	sdks := []sdk{
		{"js11", "node", filepath.Join(dir, "pam.mjs"), "pubnub"},
		{"js12", "node", filepath.Join(dir, "pam.mjs"), "pubnub12"},
		{"python", python, filepath.Join(dir, "pam.py"), ""},
	}
	var summary []string
	failures := 0
	for _, s := range sdks {
		cfg := map[string]string{
			"tag": s.tag, "sdk": s.module, "a": nodes[0].url, "b": nodes[1].url,
			"publishKey": ks.PublishKey, "subscribeKey": ks.SubscribeKey, "secretKey": ks.SecretKey,
			"expiredToken": expired, "currentToken": current,
		}
		p, f := runScript(t, "pam-sdk "+s.tag, s.interpreter, s.script, cfg)
		summary = append(summary, fmt.Sprintf("%s %d passed", s.tag, p))
		failures += f
	}
	fmt.Printf("pam-sdk: %s, %d failed\n", strings.Join(summary, ", "), failures)
}

// TestPAMInBrowser: the PubNub web SDK bundle of the npm package in Debian's
// headless chromium (driven by puppeteer-core), against a node in --access
// keysets mode whose --cors-origins names one origin. The page, served from
// that origin, subscribes to a granted group, publishes to its channel with
// the granted token, receives its message and adds a channel to the group;
// served from another origin, CORS stops it and the group is unchanged:
// sdktest/browser.mjs and sdktest/browser/.
func TestPAMInBrowser(t *testing.T) {
	dir := sdkDir(t)
	npmPackages(t, dir)
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium is not installed: run `make test` (scripts/chromium install): %v", err)
	}
	bundle := filepath.Join(dir, "node_modules", "pubnub", "dist", "web", "pubnub.min.js")
	pageDir := filepath.Join(dir, "browser")
	files := map[string]string{"/": filepath.Join(pageDir, "index.html"), "/page.js": filepath.Join(pageDir, "page.js"), "/pubnub.min.js": bundle}
	for _, f := range files {
		if _, err := os.Stat(f); err != nil {
			t.Fatal(err)
		}
	}
	pages := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		http.ServeFile(w, r, f)
	})
	// Two origins serving the same page: 127.0.0.3 is configured, 127.0.0.4 not.
	origin := func(host string) string {
		ln, err := net.Listen("tcp", host+":0")
		if err != nil {
			t.Fatal(err)
		}
		s := httptest.NewUnstartedServer(pages)
		s.Listener.Close()
		s.Listener = ln
		s.Start()
		t.Cleanup(s.Close)
		return s.URL
	}
	allowed, denied := origin("127.0.0.3"), origin("127.0.0.4")

	node := start(t, "--data", t.TempDir(), "--access", pamAccess, "--cors-origins", allowed)
	if node.admin == "" {
		t.Fatal("the node printed no admin listener")
	}
	ks := createKeyset(t, node.admin)
	cfg := map[string]string{
		"chromium": chromium, "node": node.url, "allowed": allowed, "denied": denied,
		"publishKey": ks.PublishKey, "subscribeKey": ks.SubscribeKey, "secretKey": ks.SecretKey,
	}
	p, f := runScript(t, "pam-browser", "node", filepath.Join(dir, "browser.mjs"), cfg)
	fmt.Printf("pam-browser: %d passed, %d failed\n", p, f)
}
