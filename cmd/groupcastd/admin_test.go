package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/groupcast/groupcast/access"
	"github.com/groupcast/groupcast/internal/testenv"
)

func TestAccessAndAdminFlags(t *testing.T) {
	none := func(string) string { return "" }
	o, err := parseFlags(nil, none, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.adminListen != "127.0.0.1:8081" || o.signatureSkew != access.DefaultSkew || o.accessMode != "" {
		t.Fatalf("defaults: admin %q skew %v access %q", o.adminListen, o.signatureSkew, o.accessMode)
	}
	env := map[string]string{"GROUPCAST_ADMIN_LISTEN": "127.0.0.1:0", "GROUPCAST_ACCESS": "keysets", "GROUPCAST_CORS_ORIGINS": "https://a.example"}
	if o, err = parseFlags(nil, func(k string) string { return env[k] }, io.Discard); err != nil || o.adminListen != "127.0.0.1:0" || o.accessMode != "keysets" || o.corsOrigins != "https://a.example" {
		t.Fatalf("from the environment: %+v %v", o, err)
	}
	for _, ok := range [][]string{
		{"--admin-listen", "off"},
		{"--admin-listen", "[::1]:9000"},
		{"--admin-listen", "localhost:9000"},
		{"--admin-listen", "0.0.0.0:9000", "--admin-token", "0123456789abcdef"},
		{"--access", "open", "--listen", "0.0.0.0:8080"}, // explicitly asked for
		{"--cors-origins", "https://a.example, http://b.example:8080"},
		{"--cors-origins", "none"},
	} {
		if _, err := parseFlags(ok, none, io.Discard); err != nil {
			t.Errorf("parseFlags(%q): %v", ok, err)
		}
	}
	for _, bad := range []struct {
		args []string
		says string
	}{
		{[]string{"--admin-listen", "0.0.0.0:9000"}, "--admin-token"},
		{[]string{"--admin-listen", ":9000"}, "--admin-token"},
		{[]string{"--admin-listen", "admin.example:9000"}, "--admin-token"},
		{[]string{"--admin-listen", "10.1.2.3:9000"}, "not a loopback address"},
		{[]string{"--admin-listen", "nonsense"}, "--admin-listen"},
		{[]string{"--admin-token", "short"}, "16 bytes"},
		{[]string{"--access", "closed"}, "--access"},
		{[]string{"--signature-skew", "0s"}, "--signature-skew"},
		{[]string{"--cors-origins", "a.example"}, "--cors-origins"},
		{[]string{"--cors-origins", "https://a.example/path"}, "--cors-origins"},
		{[]string{"--cors-origins", "ftp://a.example"}, "--cors-origins"},
		{[]string{"--debug-listen", "127.0.0.1:6060"}, "debug-listen"}, // replaced by --admin-listen
	} {
		_, err := parseFlags(bad.args, none, io.Discard)
		if err == nil || !strings.Contains(err.Error(), bad.says) {
			t.Errorf("parseFlags(%q) = %v, want an error saying %q", bad.args, err, bad.says)
		}
	}

	for _, c := range []struct {
		flag, listen string
		want         access.Mode
	}{
		{"", "127.0.0.1:8080", access.Open},
		{"", "127.0.0.2:0", access.Open},
		{"", "[::1]:8080", access.Open},
		{"", "localhost:8080", access.Open},
		{"", "0.0.0.0:8080", access.Keysets},
		{"", ":8080", access.Keysets},
		{"", "10.0.0.5:8080", access.Keysets},
		{"", "groupcast.example:8080", access.Keysets},
		{"open", "0.0.0.0:8080", access.Open},
		{"keysets", "127.0.0.1:8080", access.Keysets},
	} {
		if got := accessMode(c.flag, c.listen); got != c.want {
			t.Errorf("accessMode(%q, %q) = %v, want %v", c.flag, c.listen, got, c.want)
		}
	}
	for _, c := range []struct {
		spec string
		mode access.Mode
		want []string
	}{
		{"", access.Open, []string{"*"}},
		{"", access.Keysets, nil},
		{"none", access.Open, nil},
		{"*", access.Keysets, []string{"*"}},
		{"https://A.example:8443, http://b.example", access.Keysets, []string{"https://a.example:8443", "http://b.example"}},
	} {
		if got, err := parseOrigins(c.spec, c.mode); err != nil || !slices.Equal(got, c.want) {
			t.Errorf("parseOrigins(%q, %v) = %q, %v; want %q", c.spec, c.mode, got, err, c.want)
		}
	}
}

// adminCall sends one request to an admin listener and decodes its JSON
// answer into a map (a JSON array comes back under "array").
func adminCall(t *testing.T, base, token, method, path, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s %s: %d, content type %q: %s", method, path, resp.StatusCode, ct, b)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s %s: %q is not a JSON object", method, path, b)
	}
	return resp.StatusCode, m
}

// wantError fails unless an answer is the admin API's error shape with
// status want.
func wantError(t *testing.T, what string, status int, m map[string]any, want int) {
	t.Helper()
	if status != want || m["status"] != float64(want) || m["error"] != true || m["message"] == "" {
		t.Errorf("%s: %d %v, want %d {status, error: true, message}", what, status, m, want)
	}
}

func keysetOf(t *testing.T, m map[string]any) access.Keyset {
	t.Helper()
	b, _ := json.Marshal(m)
	var k access.Keyset
	if err := json.Unmarshal(b, &k); err != nil || k.SubscribeKey == "" || k.PublishKey == "" || k.SecretKey == "" {
		t.Fatalf("%s is not a keyset (%v)", b, err)
	}
	return k
}

// listed returns the keysets an admin listener lists, by subscribe key.
func listed(t *testing.T, base, token string) map[string]access.Keyset {
	t.Helper()
	code, m := adminCall(t, base, token, "GET", "/v1/keysets", "")
	if code != 200 {
		t.Fatalf("list: %d %v", code, m)
	}
	out := map[string]access.Keyset{}
	for _, v := range m["keysets"].([]any) {
		k := keysetOf(t, v.(map[string]any))
		out[k.SubscribeKey] = k
	}
	return out
}

func httpStatus(t *testing.T, u string) int {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestAdminListener: one embedded node. The admin API manages keysets and
// refuses bad input with JSON errors; /metrics and the profiler are on the
// admin listener, not the public one.
func TestAdminListener(t *testing.T) {
	s := start(t, "--data", t.TempDir())
	if s.admin == "" {
		t.Fatal("no \"groupcastd admin listening\" line")
	}
	code, m := adminCall(t, s.admin, "", "POST", "/v1/keysets", `{"pam":true}`)
	if code != 201 {
		t.Fatalf("create: %d %v", code, m)
	}
	k := keysetOf(t, m)
	if !k.PAM {
		t.Fatalf("created %+v without Access Manager", k)
	}
	if got, ok := listed(t, s.admin, "")[k.SubscribeKey]; !ok || got != k {
		t.Fatalf("list has %+v, want %+v", got, k)
	}
	code, m = adminCall(t, s.admin, "", "POST", "/v1/keysets/"+k.SubscribeKey+"/rotate-secret", "")
	if r := keysetOf(t, m); code != 200 || r.SecretKey == k.SecretKey || r.PublishKey != k.PublishKey {
		t.Fatalf("rotate: %d %+v from %+v", code, r, k)
	}
	if code, m = adminCall(t, s.admin, "", "DELETE", "/v1/keysets/"+k.SubscribeKey, ""); code != 200 {
		t.Fatalf("delete: %d %v", code, m)
	}
	if _, ok := listed(t, s.admin, "")[k.SubscribeKey]; ok {
		t.Fatal("deleted keyset still listed")
	}

	for _, c := range []struct{ method, path, body string }{
		{"POST", "/v1/keysets", `{"pam":`},
		{"POST", "/v1/keysets", `{"pm":true}`},
		{"POST", "/v1/keysets", `{"pam":1}`},
	} {
		code, m := adminCall(t, s.admin, "", c.method, c.path, c.body)
		wantError(t, c.method+" "+c.path+" "+c.body, code, m, 400)
	}
	for _, p := range []string{"/v1/keysets/" + k.SubscribeKey, "/v1/keysets/sub-c-none/rotate-secret", "/v1/nothing"} {
		method := "DELETE"
		if strings.HasSuffix(p, "rotate-secret") {
			method = "POST"
		}
		code, m := adminCall(t, s.admin, "", method, p, "")
		wantError(t, method+" "+p, code, m, 404)
	}
	code, m = adminCall(t, s.admin, "", "PUT", "/v1/keysets", "{}")
	wantError(t, "PUT /v1/keysets", code, m, 405)

	if c := httpStatus(t, s.admin+"/metrics"); c != 200 {
		t.Errorf("admin /metrics: %d", c)
	}
	if c := httpStatus(t, s.admin+"/debug/pprof/"); c != 200 {
		t.Errorf("admin /debug/pprof/: %d", c)
	}
	if got := metricValue(t, s, "groupcast_access_keysets"); got != 0 {
		t.Errorf("groupcast_access_keysets = %v after the delete, want 0", got)
	}
	if c := httpStatus(t, s.url+"/metrics"); c != 404 {
		t.Errorf("public /metrics: %d, want 404 (metrics are on the admin listener only)", c)
	}
	if c := httpStatus(t, s.url+"/debug/pprof/"); c != 404 {
		t.Errorf("public /debug/pprof/: %d, want 404", c)
	}
}

// TestAdminToken: with --admin-token every admin request needs it; without
// one, a non-loopback admin address is refused at start-up.
func TestAdminToken(t *testing.T) {
	const token = "admin-token-0123456789"
	s := start(t, "--data", t.TempDir(), "--admin-token", token)
	for _, tok := range []string{"", "admin-token-012345678", "wrong"} {
		code, m := adminCall(t, s.admin, tok, "GET", "/v1/keysets", "")
		wantError(t, "GET /v1/keysets with token "+tok, code, m, 401)
		code, m = adminCall(t, s.admin, tok, "POST", "/v1/keysets", "")
		wantError(t, "POST /v1/keysets with token "+tok, code, m, 401)
		if c := httpStatus(t, s.admin+"/metrics"); c != 401 {
			t.Errorf("/metrics without the token: %d, want 401", c)
		}
	}
	if len(listed(t, s.admin, token)) != 0 {
		t.Fatal("a keyset was created without the token")
	}
	if code, m := adminCall(t, s.admin, token, "POST", "/v1/keysets", ""); code != 201 {
		t.Fatalf("create with the token: %d %v", code, m)
	}

	for _, addr := range []string{"0.0.0.0:0", ":0"} {
		// A node that starts instead of refusing is killed at the deadline.
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		cmd := exec.CommandContext(ctx, binary, "--listen", "127.0.0.1:0", "--admin-listen", addr, "--data", t.TempDir())
		cmd.Env = []string{"PATH=/usr/bin:/bin"}
		out, err := cmd.CombinedOutput()
		cancel()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(string(out), "--admin-token") || !strings.Contains(string(out), "not a loopback address") {
			t.Errorf("--admin-listen %s without a token: %v\n%s\nwant exit status 1 and a refusal naming --admin-token", addr, err, out)
		}
	}
}

// TestKeysetAcrossNodes: two nodes on one Cassandra keyspace, in keysets
// mode. A keyset created, rotated and deleted through node A's admin API
// reaches node B's (its registry polls the store), and B serves the keyset
// on its public API.
func TestKeysetAcrossNodes(t *testing.T) {
	nodes := cluster(t, 2, testenv.RedisAddr(t), "--access", "keysets")
	a, b := nodes[0], nodes[1]
	const within = 10 * time.Second // fails a node that never sees it; the time taken is logged

	code, m := adminCall(t, a.admin, "", "POST", "/v1/keysets", `{"pam":false}`)
	if code != 201 {
		t.Fatalf("create on A: %d %v", code, m)
	}
	k := keysetOf(t, m)
	if _, ok := listed(t, a.admin, "")[k.SubscribeKey]; !ok {
		t.Fatal("A does not list the keyset it just created")
	}
	began := time.Now()
	eventually(t, within, "B to list the keyset", func() bool { _, ok := listed(t, b.admin, "")[k.SubscribeKey]; return ok })
	t.Logf("keyset created on A listed by B after %v", time.Since(began).Round(time.Millisecond))

	publish := func(s *server, pub, sub string) int {
		return httpStatus(t, s.url+"/publish/"+pub+"/"+sub+"/0/room/0/%22hi%22?uuid=admin-test")
	}
	if c := publish(b, k.PublishKey, k.SubscribeKey); c != 200 {
		t.Errorf("publish on B with the new keyset: %d, want 200", c)
	}
	if c := publish(b, "pub-c-foreign", k.SubscribeKey); c < 400 || c >= 500 {
		t.Errorf("publish on B with a foreign publish key: %d, want 4xx", c)
	}
	if c := publish(b, "demo", "demo"); c < 400 || c >= 500 {
		t.Errorf("publish on B with an unknown subscribe key: %d, want 4xx", c)
	}

	code, m = adminCall(t, a.admin, "", "POST", "/v1/keysets/"+k.SubscribeKey+"/rotate-secret", "")
	if code != 200 {
		t.Fatalf("rotate on A: %d %v", code, m)
	}
	rotated := keysetOf(t, m)
	began = time.Now()
	eventually(t, within, "B to see the new secret", func() bool { return listed(t, b.admin, "")[k.SubscribeKey].SecretKey == rotated.SecretKey })
	t.Logf("secret rotated on A seen by B after %v", time.Since(began).Round(time.Millisecond))

	if code, m = adminCall(t, a.admin, "", "DELETE", "/v1/keysets/"+k.SubscribeKey, ""); code != 200 {
		t.Fatalf("delete on A: %d %v", code, m)
	}
	began = time.Now()
	eventually(t, within, "B to forget the keyset", func() bool { _, ok := listed(t, b.admin, "")[k.SubscribeKey]; return !ok })
	t.Logf("keyset deleted on A gone from B after %v", time.Since(began).Round(time.Millisecond))
	if c := publish(b, k.PublishKey, k.SubscribeKey); c < 400 || c >= 500 {
		t.Errorf("publish on B with the deleted keyset: %d, want 4xx", c)
	}
}

// FuzzParseOrigins: --cors-origins either fails or gives origins of the
// form scheme://host, which parse back to themselves.
func FuzzParseOrigins(f *testing.F) {
	for _, s := range []string{"", "*", "none", "https://a.example", "http://A.example:8080, https://b.example/", "a.example", "https://u@a.example", "https://a.example?x", "http://[::1]:3000"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		out, err := parseOrigins(spec, access.Keysets)
		if err != nil || len(out) == 0 || out[0] == "*" {
			return
		}
		for _, o := range out {
			if !strings.HasPrefix(o, "http://") && !strings.HasPrefix(o, "https://") || strings.ContainsAny(o, ", ?#") || strings.Count(o, "/") != 2 {
				t.Fatalf("parseOrigins(%q) gave %q", spec, o)
			}
		}
		again, err := parseOrigins(strings.Join(out, ","), access.Keysets)
		if err != nil || !slices.Equal(again, out) {
			t.Fatalf("parseOrigins(%q) = %q, which parses to %q, %v", spec, out, again, err)
		}
	})
}
