package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/groupcast/groupcast/internal/testenv"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "groupcastd-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "groupcastd")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building groupcastd: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func TestFlagsFromEnvironment(t *testing.T) {
	env := map[string]string{"GROUPCAST_LISTEN": "127.0.0.9:1", "GROUPCAST_REGION": "3", "GROUPCAST_CASSANDRA_DC": "eu"}
	o, err := parseFlags([]string{"--region", "4"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.listen != "127.0.0.9:1" || o.cassandraDC != "eu" || o.region != 4 {
		t.Fatalf("got listen=%s dc=%s region=%d; want env values with the flag winning for region", o.listen, o.cassandraDC, o.region)
	}
	for _, bad := range [][]string{{"--region", "0"}, {"--nope"}, {"stray"}, {"--redis", "127.0.0.1:6379"}} {
		if _, err := parseFlags(bad, func(string) string { return "" }, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) accepted", bad)
		}
	}
	if _, err := parseFlags(nil, func(k string) string { return map[string]string{"GROUPCAST_REGION": "x"}[k] }, io.Discard); err == nil {
		t.Error("GROUPCAST_REGION=x accepted")
	}
	sec := []string{"--redis", "127.0.0.1:6379", "--secret", "0123456789abcdef"}
	o, err = parseFlags(append(sec, "--remote-region", "2=127.0.0.2:6390", "--remote-region", "3=h:1"),
		func(k string) string { return "" }, io.Discard)
	if err != nil || len(o.remotes) != 2 || o.remotes[2] != "127.0.0.2:6390" || o.remotes[3] != "h:1" {
		t.Errorf("--remote-region twice: %v %v", o.remotes, err)
	}
	o, err = parseFlags(sec, func(k string) string { return map[string]string{"GROUPCAST_REMOTE_REGION": "2=a:1,3=b:2"}[k] }, io.Discard)
	if err != nil || o.remotes.String() != "2=a:1,3=b:2" {
		t.Errorf("GROUPCAST_REMOTE_REGION: %v %v", o.remotes, err)
	}
	for _, bad := range [][]string{
		{"--remote-region", "2=a:1"},            // no --redis
		append(sec, "--remote-region", "1=a:1"), // this region
		append(sec, "--remote-region", "0=a:1"),
		append(sec, "--remote-region", "2="),
		append(sec, "--remote-region", "x=a:1"),
		append(sec, "--remote-region", "2=a:1", "--remote-region", "2=b:1"),
	} {
		if _, err := parseFlags(bad, func(string) string { return "" }, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) accepted", bad)
		}
	}
	if r, err := parseReplication("dc1:3,dc2:2", "dc1"); err != nil || r["dc1"] != 3 || r["dc2"] != 2 {
		t.Errorf("parseReplication = %v, %v", r, err)
	}
	if _, err := parseReplication("dc1", "dc1"); err == nil {
		t.Error("parseReplication(dc1) accepted")
	}
}

// server is one groupcastd process.
type server struct {
	t     *testing.T
	cmd   *exec.Cmd
	url   string
	admin string // base URL of its admin listener
}

var (
	servingLine = regexp.MustCompile(`groupcastd serving (http://\S+)`)
	adminLine   = regexp.MustCompile(`groupcastd admin listening (http://\S+)`)
)

// start runs groupcastd with args and waits until it prints its URL. The
// environment is cleared of GROUPCAST_* so only args choose the back ends.
// Its admin listener is on a free port unless args say otherwise: nodes
// started together must not all try 127.0.0.1:8081.
func start(t *testing.T, args ...string) *server {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--log-level", "warn"}, args...)...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GROUPCAST_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{t: t, cmd: cmd}
	t.Cleanup(func() { s.kill() })
	found := make(chan [2]string, 1) // its URL and its admin URL
	go func() {
		var admin string
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := adminLine.FindStringSubmatch(sc.Text()); m != nil {
				admin = m[1] // printed before the serving line
			}
			if m := servingLine.FindStringSubmatch(sc.Text()); m != nil {
				found <- [2]string{m[1], admin}
			}
		}
		close(found)
	}()
	select {
	case u, ok := <-found:
		if !ok {
			t.Fatalf("groupcastd %v exited before serving", args)
		}
		s.url, s.admin = u[0], u[1]
	case <-time.After(90 * time.Second):
		t.Fatalf("groupcastd %v did not start within 90s", args)
	}
	return s
}

func (s *server) kill() {
	if s.cmd.ProcessState == nil {
		s.cmd.Process.Kill()
		s.cmd.Wait()
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (s *server) stop() {
	s.t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		s.t.Fatal(err)
	}
	if err := s.cmd.Wait(); err != nil {
		s.t.Fatalf("groupcastd after SIGTERM: %v", err)
	}
}

func (s *server) get(path string) (int, map[string]any) {
	s.t.Helper()
	resp, err := http.Get(s.url + path)
	if err != nil {
		s.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		s.t.Fatalf("GET %s: content type %q", path, ct)
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		var arr []any
		if json.Unmarshal(body, &arr) == nil {
			return resp.StatusCode, map[string]any{"array": arr}
		}
		s.t.Fatalf("GET %s: %q is not JSON", path, body)
	}
	return resp.StatusCode, m
}

const cg = "/v1/channel-registration/sub-key/demo/channel-group"

func channels(t *testing.T, s *server, group string) []string {
	t.Helper()
	code, m := s.get(cg + "/" + group)
	if code != 200 {
		t.Fatalf("list %s: %d %v", group, code, m)
	}
	var out []string
	for _, c := range m["payload"].(map[string]any)["channels"].([]any) {
		out = append(out, c.(string))
	}
	return out
}

func groups(t *testing.T, s *server) []string {
	t.Helper()
	code, m := s.get(cg)
	if code != 200 {
		t.Fatalf("list groups: %d %v", code, m)
	}
	var out []string
	for _, g := range m["payload"].(map[string]any)["groups"].([]any) {
		out = append(out, g.(string))
	}
	return out
}

// readmeSequence runs the README's curl sequence and leaves group "family"
// holding [news sports] and group "gone" deleted.
func readmeSequence(t *testing.T, s *server) {
	t.Helper()
	for _, step := range []struct{ path string }{
		{cg + "/family?add=news,sports,weather"},
		{cg + "/gone?add=x"},
		{cg + "/family?remove=weather"},
		{cg + "/gone/remove"},
	} {
		if code, m := s.get(step.path); code != 200 || m["error"] != false {
			t.Fatalf("GET %s: %d %v", step.path, code, m)
		}
	}
	if got := channels(t, s, "family"); !slices.Equal(got, []string{"news", "sports"}) {
		t.Fatalf("family = %v", got)
	}
	if got := groups(t, s); !slices.Equal(got, []string{"family"}) {
		t.Fatalf("groups = %v", got)
	}
	if code, m := s.get("/time/0"); code != 200 || len(m["array"].([]any)) != 1 {
		t.Fatalf("time: %d %v", code, m)
	}
}

func TestEmbeddedRestartKeepsGroups(t *testing.T) {
	data := t.TempDir()
	s := start(t, "--data", data)
	readmeSequence(t, s)
	s.stop()
	s = start(t, "--data", data)
	if got := channels(t, s, "family"); !slices.Equal(got, []string{"news", "sports"}) {
		t.Fatalf("after restart family = %v", got)
	}
	if got := groups(t, s); !slices.Equal(got, []string{"family"}) {
		t.Fatalf("after restart groups = %v", got)
	}
}

// testKillAfterAck: a change acknowledged with 200 survives kill -9 right after.
func testKillAfterAck(t *testing.T, args ...string) {
	s := start(t, args...)
	readmeSequence(t, s)
	var acked []string
	for i := range 20 {
		ch := fmt.Sprintf("c%d", i)
		if code, m := s.get(cg + "/crash?add=" + ch); code != 200 {
			t.Fatalf("add %s: %d %v", ch, code, m)
		}
		acked = append(acked, ch)
	}
	if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	s.cmd.Wait()
	s = start(t, args...)
	got := channels(t, s, "crash")
	slices.Sort(acked)
	if !slices.Equal(got, acked) {
		t.Fatalf("after kill -9: crash = %v, want every acknowledged channel %v", got, acked)
	}
	if got := channels(t, s, "family"); !slices.Equal(got, []string{"news", "sports"}) {
		t.Fatalf("after kill -9: family = %v", got)
	}
}

func TestEmbeddedKill9AfterAck(t *testing.T) {
	testKillAfterAck(t, "--data", t.TempDir())
}

func TestCassandraKill9AfterAck(t *testing.T) {
	hosts := strings.Join(testenv.CassandraHosts(t), ",")
	testKillAfterAck(t, "--cassandra", hosts, "--keyspace", testenv.Keyspace(t))
}

func TestReadinessChecksRedis(t *testing.T) {
	s := start(t, "--data", t.TempDir(), "--redis", testenv.RedisAddr(t), "--secret", "readiness-test-secret-0123")
	if code, m := s.get("/readyz"); code != 200 {
		t.Fatalf("readyz with a live Redis: %d %v", code, m)
	}
	// Without its log a node cannot know where the region's logs stand: it
	// refuses to start, saying why.
	cmd := exec.Command(binary, "--listen", "127.0.0.1:0", "--data", t.TempDir(), "--redis", "127.0.0.1:1", "--secret", "readiness-test-secret-0123")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "127.0.0.1:1") {
		t.Fatalf("groupcastd with no Redis: err %v, output %s", err, out)
	}
}

// TestNoGeneratedFilesTracked: a node's --data (its generated secret, its
// bbolt file) never belongs in the repository; a test run once committed
// cmd/groupcastd/data/secret.
func TestNoGeneratedFilesTracked(t *testing.T) {
	out, err := exec.Command("git", "-C", "../..", "ls-files", "--", ":(glob)**/data/**", ":(glob)**/secret", ":(glob)**/*.db").CombinedOutput()
	if err != nil {
		t.Fatalf("git ls-files: %v %s", err, out)
	}
	if s := strings.TrimSpace(string(out)); s != "" {
		t.Fatalf("generated files are tracked:\n%s", s)
	}
}
