package httpapi_test

import (
	"bytes"
	"encoding/json"
	"math"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/groupcast/groupcast/channelgroups"
	"github.com/groupcast/groupcast/internal/nodetest"
	"github.com/groupcast/groupcast/subscriber"
	"github.com/groupcast/groupcast/subscriber/httpapi"
)

// refused checks a 400 with a JSON body.
func refused(t *testing.T, what string, r reply) {
	t.Helper()
	if r.status != http.StatusBadRequest || r.contentType != "application/json" || !json.Valid(r.body) {
		t.Errorf("%s: %d %q %s; want 400 with a JSON body", what, r.status, r.contentType, r.body)
	}
}

// groupsOf lists every group of account demo with its channels.
func groupsOf(t *testing.T, h *harness) map[channelgroups.Group][]channelgroups.Channel {
	t.Helper()
	gs, err := h.store.Groups(t.Context(), "demo")
	if err != nil {
		t.Fatal(err)
	}
	out := map[channelgroups.Group][]channelgroups.Channel{}
	for _, g := range gs {
		snap, err := h.store.Read(t.Context(), "demo", g)
		if err != nil {
			t.Fatal(err)
		}
		out[g] = snap.Channels()
	}
	return out
}

// A uuid is at most 92 bytes on every endpoint that takes one: presence
// keeps a record per channel per uuid.
func TestUUIDLimit(t *testing.T) {
	h := newHarness(t)
	long, ok := strings.Repeat("u", httpapi.MaxUUIDBytes+1), strings.Repeat("u", httpapi.MaxUUIDBytes)
	for _, path := range []string{
		"/v2/presence/sub-key/demo/channel/a/heartbeat?heartbeat=60&uuid=",
		"/v2/presence/sub-key/demo/channel/a/leave?uuid=",
		"/publish/demo/demo/0/a/0/1?uuid=",
		"/v2/subscribe/demo/a/0?uuid=",
	} {
		refused(t, path+"<93 bytes>", h.get(path+long))
		refused(t, path+"<invalid UTF-8>", h.get(path+"%FF"))
		if strings.Contains(path, "subscribe") {
			continue // a handshake with a good uuid answers at once; checked below
		}
		if r := h.get(path + ok); r.status != 200 {
			t.Errorf("%s<92 bytes>: %d %s", path, r.status, r.body)
		}
	}
	// The 92-byte uuid's heartbeat and leave reach presence through the
	// shard log; the refused ones never do.
	waitFor(t, "occupancy back to 0 after the leave (a refused uuid would stay)", func() bool {
		return bytes.Contains(h.get("/v2/presence/sub-key/demo/channel/a").body, []byte(`"occupancy":0`))
	})
	if r := h.get("/v2/subscribe/demo/a/0?uuid=" + ok); r.status != 200 {
		t.Errorf("handshake with a 92-byte uuid: %d %s", r.status, r.body)
	}
}

// A subscribe cursor more than the clock skew ahead is refused: it would
// park and echo itself back forever.
func TestFutureCursorRefused(t *testing.T) {
	_, cfg := nodetest.Embedded(t, prometheus.NewRegistry(), subscriber.Config{PollHold: time.Second})
	base := nodetest.Serve(t, cfg)
	hour := channelgroups.TimetokenOf(time.Now().Add(time.Hour)).String()
	for _, tt := range []string{hour, strconv.FormatInt(math.MaxInt64, 10)} {
		resp, err := http.Get(base + "/v2/subscribe/demo/a/0?tt=" + tt)
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 400 || resp.Header.Get("Content-Type") != "application/json" || !strings.Contains(b.String(), "ahead") {
			t.Errorf("tt=%s: %d %s; want 400 saying the cursor is ahead", tt, resp.StatusCode, b.String())
		}
	}
	// A cursor from a moment ago (another node's clock may be a little ahead) is fine.
	now := channelgroups.TimetokenOf(time.Now().Add(10 * time.Second)).String()
	var a pollAnswer
	if err := getJSONURL(base+"/v2/subscribe/demo/a/0?tt="+now, &a); err != nil {
		t.Fatalf("tt 10 s ahead: %v", err)
	}
}

// Invalid UTF-8 in a message or its meta is refused; json.Valid alone lets
// it through and strict clients then cannot decode the channel's history.
func TestInvalidUTF8Refused(t *testing.T) {
	h := newHarness(t)
	for _, u := range []string{
		"/publish/demo/demo/0/a/0/%22%FF%22",
		"/publish/demo/demo/0/a/0/%22ok%22?meta=%7B%22k%22%3A%22%C3%28%22%7D",
		"/publish/demo/demo/0/a/0/%22ok%22?custom_message_type=%FF%FE",
	} {
		refused(t, u, h.get(u))
	}
	if r := h.get("/v2/history/sub-key/demo/channel/a"); !bytes.HasPrefix(r.body, []byte("[[],")) {
		t.Errorf("history after refused publishes: %s", r.body)
	}
	if r := h.get("/publish/demo/demo/0/a/0/%22%C3%A9%22"); r.status != 200 {
		t.Errorf("valid UTF-8 refused: %d %s", r.status, r.body)
	}
}

// A % not followed by two hex digits is a 400: fasthttp would keep it
// literally and create channels named "%" or "a%ZZb".
func TestBadQueryEscapes(t *testing.T) {
	h := newHarness(t)
	before := groupsOf(t, h)
	for _, u := range []string{cg + "/g?add=a%ZZb", cg + "/g?add=%25,%", cg + "/g?add=x%2", "/v2/subscribe/demo/a/0?channel-group=g%G1"} {
		refused(t, u, h.get(u))
	}
	if after := groupsOf(t, h); len(after) != len(before) {
		t.Fatalf("bad escapes changed the store: %v", after)
	}
	if r := h.get(cg + "/g?add=a%25b"); r.status != 200 {
		t.Fatalf("a good escape: %d %s", r.status, r.body)
	}
	if got := groupsOf(t, h)["g"]; len(got) != 1 || got[0] != "a%b" {
		t.Fatalf("group g = %v, want [a%%b]", got)
	}
}

// A heartbeat past the node's presence cap is a 503 with Retry-After, not a
// 200 that records nothing.
func TestHeartbeatAtPresenceCap(t *testing.T) {
	h := newHarnessWith(t, subscriber.Config{PresenceMax: 1})
	if r := h.get("/v2/presence/sub-key/demo/channel/a/heartbeat?heartbeat=60&uuid=one"); r.status != 200 {
		t.Fatalf("first heartbeat: %d %s", r.status, r.body)
	}
	r := h.get("/v2/presence/sub-key/demo/channel/a/heartbeat?heartbeat=60&uuid=two")
	if r.status != http.StatusServiceUnavailable || r.headers["Retry-After"] == "" || !json.Valid(r.body) {
		t.Fatalf("heartbeat past the cap: %d %v %s; want 503 with Retry-After", r.status, r.headers, r.body)
	}
	if r := h.get("/v2/presence/sub-key/demo/channel/a/heartbeat?heartbeat=60&uuid=one"); r.status != 200 {
		t.Fatalf("refreshing a kept record: %d %s", r.status, r.body)
	}
}
