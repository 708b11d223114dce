package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/groupcast/groupcast/internal/testenv"
)

// publishN publishes n messages to channel ch through s and returns their
// timetokens.
func publishN(t *testing.T, s *server, ch string, n int, query string) []string {
	t.Helper()
	var tts []string
	for i := range n {
		code, m := s.get(fmt.Sprintf("/publish/demo/demo/0/%s/0/%d%s", ch, i, query))
		arr, _ := m["array"].([]any)
		if code != 200 || len(arr) != 3 {
			t.Fatalf("publish %d: %d %v", i, code, m)
		}
		tts = append(tts, arr[2].(string))
	}
	return tts
}

// pageAll reads a channel's whole history through s, newest page first,
// following v3's more.start.
func pageAll(t *testing.T, s *server, ch string) []string {
	t.Helper()
	var got []string
	uri := "/v3/history/sub-key/demo/channel/" + ch + "?max=100"
	for range 1000 {
		resp, err := http.Get(s.url + uri)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var a struct {
			Channels map[string][]struct {
				Timetoken string `json:"timetoken"`
			} `json:"channels"`
			More *struct {
				Start string `json:"start"`
			} `json:"more"`
		}
		if err := json.Unmarshal(body, &a); err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d %s", uri, resp.StatusCode, body)
		}
		var page []string
		for _, m := range a.Channels[ch] {
			page = append(page, m.Timetoken)
		}
		got = append(page, got...)
		if a.More == nil {
			break
		}
		uri = "/v3/history/sub-key/demo/channel/" + ch + "?max=100&start=" + a.More.Start
	}
	return got
}

func historyEquals(t *testing.T, s *server, ch string, want []string, within time.Duration) {
	t.Helper()
	var got []string
	eventually(t, within, fmt.Sprintf("history of %s holds the %d messages", ch, len(want)), func() bool {
		got = pageAll(t, s, ch)
		return slices.Equal(got, want)
	})
}

// TestEmbeddedRestartKeepsHistory: an embedded node (bbolt) stopped and
// started again on the same data directory serves the history it had,
// beyond what its rings held (250 messages; rings of 100), and the
// archiver stored everything acknowledged before SIGTERM.
func TestEmbeddedRestartKeepsHistory(t *testing.T) {
	dir := t.TempDir()
	s := start(t, "--data", dir)
	want := publishN(t, s, "chat", 250, "")
	s.stop() // at once: the archiver's final flush stores what it had not
	s = start(t, "--data", dir)
	historyEquals(t, s, "chat", want, 10*time.Second)
	code, m := s.get("/v3/history/sub-key/demo/message-counts/chat?timetoken=" + want[150])
	if c := m["channels"].(map[string]any)["chat"]; code != 200 || c != float64(100) {
		t.Errorf("message counts: %d %v, want chat: 100", code, m)
	}
}

// TestClusterRestartKeepsHistory: a 2-node cluster on real Cassandra and
// Redis, both nodes stopped and started again, serves the history it had
// (more than the rings replay from the log), and a message published with
// the cluster's short retention is gone once it expires.
func TestClusterRestartKeepsHistory(t *testing.T) {
	c := newHistoryCluster(t, testenv.RedisAddr(t))
	c.shared = append(c.shared, "--history-retention", "1h")
	a, b := c.startNode(), c.startNode()
	want := publishN(t, a, "room", 180, "")
	historyEquals(t, b, "room", want, 20*time.Second)
	a.stop()
	b.stop()
	a, b = restart(t, a), restart(t, b)
	historyEquals(t, a, "room", want, 30*time.Second)
	historyEquals(t, b, "room", want, 30*time.Second)
}

// TestCassandraHistoryTTL: with --history-retention 3s, Cassandra's TTL
// removes a message after three seconds (polled with a deadline), while
// one published with ttl=1 (an hour) stays.
func TestCassandraHistoryTTL(t *testing.T) {
	s := start(t, "--cassandra", strings.Join(testenv.CassandraHosts(t), ","), "--keyspace", testenv.Keyspace(t),
		"--data", t.TempDir(), "--history-retention", "3s")
	short := publishN(t, s, "ttl", 1, "")
	long := publishN(t, s, "ttl", 1, "?ttl=1")
	historyEquals(t, s, "ttl", append(slices.Clone(short), long...), 10*time.Second)
	historyEquals(t, s, "ttl", long, 30*time.Second)
}
