package httpapi_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/groupcast/groupcast/subscriber"
	"github.com/groupcast/groupcast/subscriber/httpapi"
)

const presence = "/v2/presence/sub-key/demo"

// canonical re-encodes a JSON body with sorted keys, for comparing.
func canonical(t *testing.T, b []byte) string {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("body %q is not JSON: %v", b, err)
	}
	out, _ := json.Marshal(v)
	return string(out)
}

func q(s string) string { return url.QueryEscape(s) }

// presenceFixture: group g holds c2 and c3; u1 is on c1 with state
// {"mood":"ok"}, u2 on c2 without state.
func presenceFixture(t *testing.T) *harness {
	t.Helper()
	h := newHarness(t)
	for _, uri := range []string{
		cg + "/g?add=c2,c3",
		presence + "/channel/c1/heartbeat?uuid=u1&state=" + q(`{"c1":{"mood":"ok"}}`),
		presence + "/channel/,/heartbeat?uuid=u2&channel-group=g",
	} {
		if r := h.get(uri); r.status != 200 {
			t.Fatalf("GET %s: %d %s", uri, r.status, r.body)
		}
	}
	// u2 heartbeat through g joins c2 and c3; a leave of c3 leaves c2.
	if r := h.get(presence + "/channel/c3/leave?uuid=u2"); r.status != 200 {
		t.Fatalf("leave: %d %s", r.status, r.body)
	}
	waitFor(t, "the fixture's presence applied", func() bool {
		return canonical(t, h.get(presence).body) ==
			`{"message":"OK","payload":{"channels":{"c1":{"occupancy":1,"uuids":["u1"]},"c2":{"occupancy":1,"uuids":["u2"]}},"total_channels":2,"total_occupancy":2},"service":"Presence","status":200}`
	})
	return h
}

// TestPresenceShapes: every presence answer in PubNub's shape, table by
// table: here-now single and multi-channel, through groups and global, with
// disable_uuids, state=1, limit and offset; where-now; get and set state;
// and the 400s of bad requests.
func TestPresenceShapes(t *testing.T) {
	h := presenceFixture(t)
	// one is the single-channel shape.
	one := func(occupancy int, uuids string) string {
		if uuids == "" {
			return fmt.Sprintf(`{"message":"OK","occupancy":%d,"service":"Presence","status":200}`, occupancy)
		}
		return fmt.Sprintf(`{"message":"OK","occupancy":%d,"service":"Presence","status":200,"uuids":%s}`, occupancy, uuids)
	}
	for _, tc := range []struct {
		name, uri string
		status    int
		want      string // canonical JSON; for errors, a substring of the message
	}{
		{"here-now one channel", "/channel/c1?uuid=x", 200, one(1, `["u1"]`)},
		{"here-now one empty channel", "/channel/c9", 200, one(0, `[]`)},
		{"here-now one channel, disable_uuids", "/channel/c1?disable_uuids=1", 200, one(1, "")},
		{"here-now one channel, state=1", "/channel/c1?state=1", 200, one(1, `[{"state":{"mood":"ok"},"uuid":"u1"}]`)},
		{"here-now one channel, limit=0", "/channel/c1?limit=0", 200, one(1, `[]`)},
		{"here-now one channel, offset past", "/channel/c1?offset=1", 200, one(1, `[]`)},
		{"here-now channels", "/channel/c1,c2", 200,
			`{"message":"OK","payload":{"channels":{"c1":{"occupancy":1,"uuids":["u1"]},"c2":{"occupancy":1,"uuids":["u2"]}},"total_channels":2,"total_occupancy":2},"service":"Presence","status":200}`},
		{"here-now channels, an empty one left out", "/channel/c1,c9", 200,
			`{"message":"OK","payload":{"channels":{"c1":{"occupancy":1,"uuids":["u1"]}},"total_channels":1,"total_occupancy":1},"service":"Presence","status":200}`},
		{"here-now channels, state=1", "/channel/c1,c2?state=1", 200,
			`{"message":"OK","payload":{"channels":{"c1":{"occupancy":1,"uuids":[{"state":{"mood":"ok"},"uuid":"u1"}]},"c2":{"occupancy":1,"uuids":[{"uuid":"u2"}]}},"total_channels":2,"total_occupancy":2},"service":"Presence","status":200}`},
		{"here-now channels, disable_uuids", "/channel/c1,c2?disable_uuids=1", 200,
			`{"message":"OK","payload":{"channels":{"c1":{"occupancy":1},"c2":{"occupancy":1}},"total_channels":2,"total_occupancy":2},"service":"Presence","status":200}`},
		{"here-now a group", "/channel/,?channel-group=g", 200,
			`{"message":"OK","payload":{"channels":{"c2":{"occupancy":1,"uuids":["u2"]}},"total_channels":1,"total_occupancy":1},"service":"Presence","status":200}`},
		{"here-now a channel and a group", "/channel/c1?channel-group=g", 200,
			`{"message":"OK","payload":{"channels":{"c1":{"occupancy":1,"uuids":["u1"]},"c2":{"occupancy":1,"uuids":["u2"]}},"total_channels":2,"total_occupancy":2},"service":"Presence","status":200}`},
		{"here-now a group that does not exist", "/channel/,?channel-group=nope", 200,
			`{"message":"OK","payload":{"channels":{},"total_channels":0,"total_occupancy":0},"service":"Presence","status":200}`},
		{"here-now global, disable_uuids", "?disable_uuids=1", 200,
			`{"message":"OK","payload":{"channels":{"c1":{"occupancy":1},"c2":{"occupancy":1}},"total_channels":2,"total_occupancy":2},"service":"Presence","status":200}`},
		{"where-now", "/uuid/u1", 200, `{"message":"OK","payload":{"channels":["c1"]},"service":"Presence","status":200}`},
		{"where-now nowhere", "/uuid/nobody", 200, `{"message":"OK","payload":{"channels":[]},"service":"Presence","status":200}`},
		{"get state one channel", "/channel/c1/uuid/u1", 200, `{"channel":"c1","message":"OK","payload":{"mood":"ok"},"service":"Presence","status":200,"uuid":"u1"}`},
		{"get state one channel, none", "/channel/c2/uuid/u2", 200, `{"channel":"c2","message":"OK","payload":{},"service":"Presence","status":200,"uuid":"u2"}`},
		{"get state channels", "/channel/c1,c2/uuid/u1", 200,
			`{"message":"OK","payload":{"channels":{"c1":{"mood":"ok"},"c2":{}}},"service":"Presence","status":200,"uuid":"u1"}`},
		{"get state a group", "/channel/,/uuid/u2?channel-group=g", 200,
			`{"message":"OK","payload":{"channels":{"c2":{},"c3":{}}},"service":"Presence","status":200,"uuid":"u2"}`},

		{"here-now no channel, no group", "/channel/,", 400, "names no channel"},
		{"here-now bad limit", "/channel/c1?limit=-1", 400, "limit"},
		{"here-now bad group name", "/channel/,?channel-group=" + q("a:b"), 400, "invalid"},
		{"where-now uuid too long", "/uuid/" + strings.Repeat("u", httpapi.MaxUUIDBytes+1), 400, "uuid"},
		{"set state without state", "/channel/c1/uuid/u1/data", 400, "state="},
		{"set state an array", "/channel/c1/uuid/u1/data?state=" + q(`[1]`), 400, "JSON object"},
		{"set state not JSON", "/channel/c1/uuid/u1/data?state=" + q(`{"a"`), 400, "JSON object"},
		{"set state too long", "/channel/c1/uuid/u1/data?state=" + q(`{"a":"`+strings.Repeat("x", subscriber.MaxStateBytes)+`"}`), 400, "longer than"},
		{"heartbeat state not by channel", "/channel/c1/heartbeat?uuid=u1&state=" + q(`{"c1":3}`), 400, "JSON object"},
		{"heartbeat state not JSON", "/channel/c1/heartbeat?uuid=u1&state=" + q(`x`), 400, "state="},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.get(presence + tc.uri)
			if r.status != tc.status || r.contentType != "application/json" {
				t.Fatalf("GET %s: %d %s %s; want %d", tc.uri, r.status, r.contentType, r.body, tc.status)
			}
			if tc.status != 200 {
				m := decode(t, r)
				if m["error"] != true || m["status"] != float64(tc.status) || !strings.Contains(m["message"].(string), tc.want) {
					t.Fatalf("GET %s: %s; want PubNub's error shape with %q", tc.uri, r.body, tc.want)
				}
				return
			}
			if got := canonical(t, r.body); got != tc.want {
				t.Fatalf("GET %s:\n got %s\nwant %s", tc.uri, got, tc.want)
			}
		})
	}
	// Refused requests changed nothing.
	if got := canonical(t, h.get(presence+"/channel/c1/uuid/u1").body); !strings.Contains(got, `"payload":{"mood":"ok"}`) {
		t.Fatalf("u1's state on c1 after refused changes: %s", got)
	}
}

// TestSetStateHTTP: set state answers the state and is delivered to a
// "-pnpres" subscriber as a state-change; state on a subscribe joins the
// user with it; a set state through a group reaches the group's channels.
func TestSetStateHTTP(t *testing.T) {
	h := presenceFixture(t)
	hs := decode(t, h.get("/v2/subscribe/demo/c1-pnpres/0?uuid=watcher"))
	cursor := hs["t"].(map[string]any)["t"].(string)
	r := h.get(presence + "/channel/c1/uuid/u1/data?uuid=u1&state=" + q(`{"mood": "great"}`))
	if got := canonical(t, r.body); r.status != 200 || got != `{"message":"OK","payload":{"mood":"great"},"service":"Presence","status":200}` {
		t.Fatalf("set state: %d %s", r.status, got)
	}
	ans := decode(t, h.get("/v2/subscribe/demo/c1-pnpres/0?uuid=watcher&tt="+cursor))
	ms := ans["m"].([]any)
	if len(ms) != 1 {
		t.Fatalf("subscribe answer %v; want one event", ans)
	}
	d, _ := json.Marshal(ms[0].(map[string]any)["d"])
	var ev map[string]any
	_ = json.Unmarshal(d, &ev)
	if ev["action"] != "state-change" || ev["uuid"] != "u1" || ev["occupancy"] != 1.0 || canonical(t, d) == "" ||
		!bytes.Contains(d, []byte(`"data":{"mood":"great"}`)) {
		t.Fatalf("event %s; want u1's state-change with data {\"mood\":\"great\"}", d)
	}
	// A subscribe with state (keyed by channel) joins with it.
	if r := h.get("/v2/subscribe/demo/c5/0?uuid=u5&state=" + q(`{"c5":{"k":"v"},"other":{"x":1}}`)); r.status != 200 {
		t.Fatalf("subscribe with state: %d %s", r.status, r.body)
	}
	waitFor(t, "u5's state on c5", func() bool {
		return canonical(t, h.get(presence+"/channel/c5?state=1").body) ==
			`{"message":"OK","occupancy":1,"service":"Presence","status":200,"uuids":[{"state":{"k":"v"},"uuid":"u5"}]}`
	})
	if r := h.get("/v2/subscribe/demo/c5/0?uuid=u5&state=" + q(`[]`)); r.status != 400 {
		t.Fatalf("subscribe with a bad state: %d %s; want 400", r.status, r.body)
	}
	// Set state through a group: on each of its channels (u2 joins c3).
	if r := h.get(presence + "/channel/,/uuid/u2/data?channel-group=g&state=" + q(`{"g":1}`)); r.status != 200 {
		t.Fatalf("set state through a group: %d %s", r.status, r.body)
	}
	waitFor(t, "u2's state on c2 and c3", func() bool {
		return canonical(t, h.get(presence+"/channel/,/uuid/u2?channel-group=g").body) ==
			`{"message":"OK","payload":{"channels":{"c2":{"g":1},"c3":{"g":1}}},"service":"Presence","status":200,"uuid":"u2"}`
	})
	// A heartbeat's state keyed by group is each of its channels' state,
	// unless the channel has its own.
	if r := h.get(presence + "/channel/,/heartbeat?uuid=u7&channel-group=g&state=" + q(`{"g":{"via":"g"},"c3":{"own":1}}`)); r.status != 200 {
		t.Fatalf("heartbeat with state through a group: %d %s", r.status, r.body)
	}
	waitFor(t, "u7's state on c2 and c3", func() bool {
		return canonical(t, h.get(presence+"/channel/,/uuid/u7?channel-group=g").body) ==
			`{"message":"OK","payload":{"channels":{"c2":{"via":"g"},"c3":{"own":1}}},"service":"Presence","status":200,"uuid":"u7"}`
	})
	// A leave through the group clears both.
	if r := h.get(presence + "/channel/,/leave?uuid=u2&channel-group=g"); r.status != 200 {
		t.Fatalf("leave through a group: %d %s", r.status, r.body)
	}
	waitFor(t, "u2 gone", func() bool {
		return canonical(t, h.get(presence+"/uuid/u2").body) == `{"message":"OK","payload":{"channels":[]},"service":"Presence","status":200}`
	})
}

// FuzzParseStateArg: the state parser never panics, and what it accepts
// is an object of JSON objects each within the state limit.
func FuzzParseStateArg(f *testing.F) {
	for _, s := range []string{`{"a":{"b":1}}`, `{}`, `{"a":{}}`, `{"a":1}`, `[]`, `null`, `{"a":{"b":[1,{"c":null}]}}`, "{\"\xff\":{}}", `{"a":{"b":1}} x`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := httpapi.ParseStateArg(b)
		if err != nil {
			return
		}
		for k, v := range m {
			if len(v) == 0 || v[0] != '{' || len(v) > subscriber.MaxStateBytes || !json.Valid(v) {
				t.Fatalf("ParseStateArg(%q)[%q] = %q: not a JSON object within the limit", b, k, v)
			}
		}
	})
}

// TestGroupPresenceHTTP: "<group>-pnpres" in a subscribe's channel-group is
// served (not 400) and delivers the joins of the group's channels with
// "b" naming it; a subscriber through the group is on its channels.
func TestGroupPresenceHTTP(t *testing.T) {
	h := newHarness(t)
	if r := h.get(cg + "/fam?add=k1,k2"); r.status != 200 {
		t.Fatalf("add: %d %s", r.status, r.body)
	}
	r := h.get("/v2/subscribe/demo/,/0?uuid=watcher&channel-group=" + q("fam-pnpres"))
	if r.status != 200 {
		t.Fatalf("subscribe to fam-pnpres: %d %s; want 200", r.status, r.body)
	}
	cursor := decode(t, r)["t"].(map[string]any)["t"].(string)
	if r := h.get("/v2/subscribe/demo/,/0?uuid=u1&channel-group=" + q("fam,fam-pnpres")); r.status != 200 {
		t.Fatalf("subscribe to fam and fam-pnpres: %d %s; want 200", r.status, r.body)
	}
	var got []string
	for len(got) < 2 {
		ans := decode(t, h.get("/v2/subscribe/demo/,/0?uuid=watcher&channel-group="+q("fam-pnpres")+"&tt="+cursor))
		cursor = ans["t"].(map[string]any)["t"].(string)
		for _, m := range ans["m"].([]any) {
			env := m.(map[string]any)
			d := env["d"].(map[string]any)
			got = append(got, fmt.Sprintf("%s %s %s b=%s", d["action"], d["uuid"], env["c"], env["b"]))
		}
	}
	if want := "join u1 k1-pnpres b=fam-pnpres,join u1 k2-pnpres b=fam-pnpres"; strings.Join(got, ",") != want {
		t.Fatalf("events %q; want %s", got, want)
	}
	if got := canonical(t, h.get(presence+"/channel/,?channel-group=fam").body); got !=
		`{"message":"OK","payload":{"channels":{"k1":{"occupancy":1,"uuids":["u1"]},"k2":{"occupancy":1,"uuids":["u1"]}},"total_channels":2,"total_occupancy":2},"service":"Presence","status":200}` {
		t.Fatalf("here-now of fam: %s", got)
	}
}

// TestPresenceSkipsWildcards: SDKs name a wildcard subscription in their
// heartbeats and leaves with the other channels; it has no presence, so it
// is checked and skipped, not refused (which failed the SDK's whole
// heartbeat), while the other channels count as before.
func TestPresenceSkipsWildcards(t *testing.T) {
	h := presenceFixture(t)
	for _, c := range []struct {
		path string
		want int
	}{
		{"/channel/a.*/heartbeat?uuid=w1&heartbeat=60", 200},
		{"/channel/a.*,a.*-pnpres,room/heartbeat?uuid=w1&heartbeat=60", 200},
		{"/channel/a.b.c.*/heartbeat?uuid=w1", 400}, // three dots: not a wildcard PubNub accepts
		{"/channel/a*b/heartbeat?uuid=w1", 400},
		{"/channel/news.*,room/leave?uuid=w2", 200},
	} {
		if r := h.get(presence + c.path); r.status != c.want {
			t.Errorf("%s: %d %s, want %d", c.path, r.status, r.body, c.want)
		}
	}
	waitFor(t, "w1 present in room", func() bool {
		return bytes.Contains(h.get(presence+"/channel/room").body, []byte(`"w1"`))
	})
}
