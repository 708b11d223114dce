package httpapi_test

import (
	"bytes"
	"compress/zlib"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/groupcast/groupcast/internal/nodetest"
	"github.com/groupcast/groupcast/subscriber"
)

type pollAnswer struct {
	T struct {
		T string `json:"t"`
		R int    `json:"r"`
	} `json:"t"`
	M []struct {
		C string          `json:"c"`
		B string          `json:"b"`
		D json.RawMessage `json:"d"`
		E int             `json:"e"`
		U json.RawMessage `json:"u"`
	} `json:"m"`
}

func TestPublishAndSubscribeEdges(t *testing.T) {
	_, cfg := nodetest.Embedded(t, prometheus.NewRegistry(), subscriber.Config{PollHold: time.Second})
	base := nodetest.Serve(t, cfg)
	var hs pollAnswer
	if err := getJSONURL(base+"/v2/subscribe/demo/a/0", &hs); err != nil || hs.T.R != 1 || hs.T.T == "0" {
		t.Fatalf("handshake %+v %v", hs, err)
	}
	get := func(u string, hdr map[string]string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", base+u, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Fatalf("%s: content type %q", u, ct)
		}
		return resp.StatusCode, b.String()
	}
	// A retried publish with the same Idempotency-Key is delivered once.
	key := map[string]string{"Idempotency-Key": "pub-1"}
	for range 2 {
		if code, body := get("/publish/pk/demo/0/a/0/%22once%22?uuid=p", key); code != 200 || !strings.HasPrefix(body, `[1,"Sent","`) {
			t.Fatalf("publish: %d %s", code, body)
		}
	}
	get("/publish/pk/demo/0/a/0/%22signal%22?uuid=p&meta=%7B%22k%22%3A1%7D", nil)
	if code, body := get("/signal/pk/demo/0/a/0/%22sig%22", nil); code != 200 {
		t.Fatalf("signal: %d %s", code, body)
	}
	// POST with a zlib body.
	var z bytes.Buffer
	zw := zlib.NewWriter(&z)
	zw.Write([]byte(`{"posted":true}`))
	zw.Close()
	resp, err := http.Post(base+"/publish/pk/demo/0/a/0?uuid=p", "application/json", &z)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("POST publish: %v %v", resp, err)
	}
	resp.Body.Close()
	// Follow the cursor until the four messages are in (a poll answers with
	// what is applied when it looks, which may be fewer).
	var got pollAnswer
	cursor := hs.T.T
	deadline := time.Now().Add(30 * time.Second)
	for len(got.M) < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of 4 messages delivered", len(got.M))
		}
		var a pollAnswer
		if err := getJSONURL(base+"/v2/subscribe/demo/a/0?tt="+cursor, &a); err != nil {
			t.Fatal(err)
		}
		got.M = append(got.M, a.M...)
		cursor = a.T.T
	}
	var bodies []string
	for _, m := range got.M {
		bodies = append(bodies, string(m.D))
	}
	if strings.Join(bodies, " ") != `"once" "signal" "sig" {"posted":true}` || got.M[2].E != 1 || string(got.M[1].U) != `{"k":1}` {
		t.Fatalf("delivered %s (%+v)", strings.Join(bodies, " "), got.M)
	}

	big := url.PathEscape(`"` + strings.Repeat("x", 33<<10) + `"`)
	for _, tc := range []struct {
		name, uri string
		status    int
		prefix    string
	}{
		{"too large", "/publish/pk/demo/0/a/0/" + big, 400, `[0,"Message Too Large"`},
		{"invalid JSON", "/publish/pk/demo/0/a/0/not%20json", 400, `[0,"Invalid JSON"`},
		{"bad channel", "/publish/pk/demo/0/a:b/0/1", 400, `[0,"Invalid channel`},
		{"bad meta", "/publish/pk/demo/0/a/0/1?meta=nope", 400, `[0,"Invalid meta`},
		{"no channels or groups", "/v2/subscribe/demo/,/0", 400, `{"status":400`},
		{"11 groups", "/v2/subscribe/demo/,/0?channel-group=" + list("g", 11), 400, `{"status":400`},
		{"101 channels", "/v2/subscribe/demo/" + list("c", 101) + "/0", 400, `{"status":400`},
		{"empty group", "/v2/subscribe/demo/,/0?channel-group=nothing", 400, `{"status":400`},
		{"bad cursor", "/v2/subscribe/demo/a/0?tt=abc", 400, `{"status":400`},
		{"bad history max", "/v3/history/sub-key/demo/channel/a?max=-1", 400, `{"status":400`},
	} {
		code, body := get(tc.uri, nil)
		if code != tc.status || !strings.HasPrefix(body, tc.prefix) {
			t.Errorf("%s: %d %.80s", tc.name, code, body)
		}
	}
}

func list(prefix string, n int) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = fmt.Sprintf("%s%d", prefix, i)
	}
	return strings.Join(parts, ",")
}

// TestOneDeliveryPerMessage: a channel subscribed directly and through a
// group delivers each message once, as the direct subscription.
func TestOneDeliveryPerMessage(t *testing.T) {
	_, cfg := nodetest.Embedded(t, prometheus.NewRegistry(), subscriber.Config{PollHold: time.Second})
	base := nodetest.Serve(t, cfg)
	var edit struct{}
	if err := getJSONURL(base+"/v1/channel-registration/sub-key/demo/channel-group/both?add=x", &edit); err != nil {
		t.Fatal(err)
	}
	sub := base + "/v2/subscribe/demo/x/0?channel-group=both"
	var hs pollAnswer
	if err := getJSONURL(sub, &hs); err != nil {
		t.Fatal(err)
	}
	var r []any
	for _, m := range []string{"1", "2"} {
		if err := getJSONURL(base+"/publish/pk/demo/0/x/0/"+m, &r); err != nil {
			t.Fatal(err)
		}
	}
	var got pollAnswer
	cursor := hs.T.T
	deadline := time.Now().Add(30 * time.Second)
	for len(got.M) < 2 && time.Now().Before(deadline) {
		var a pollAnswer
		if err := getJSONURL(sub+"&tt="+cursor, &a); err != nil {
			t.Fatal(err)
		}
		got.M = append(got.M, a.M...)
		cursor = a.T.T
	}
	if len(got.M) != 2 || string(got.M[0].D) != "1" || string(got.M[1].D) != "2" || got.M[0].B != "" || got.M[1].B != "" {
		t.Fatalf("deliveries %+v, want 1 and 2 once each, without b", got.M)
	}
}

// TestMessageOnChannelThatLeftSinceIsDelivered is G3 across a quick
// add-then-remove: a message published while the channel was in the group
// is owed to the group's subscriber even if the channel has left the group
// by the time the subscriber polls.
func TestMessageOnChannelThatLeftSinceIsDelivered(t *testing.T) {
	_, cfg := nodetest.Embedded(t, prometheus.NewRegistry(), subscriber.Config{PollHold: time.Second})
	base := nodetest.Serve(t, cfg)
	group := base + "/v1/channel-registration/sub-key/demo/channel-group/g3"
	var ed struct {
		Token string `json:"token"`
	}
	if err := getJSONURL(group+"?add=anchor", &ed); err != nil {
		t.Fatal(err)
	}
	sub := base + "/v2/subscribe/demo/,/0?channel-group=g3"
	var hs pollAnswer
	if err := getJSONURL(sub+"&token="+url.QueryEscape(ed.Token), &hs); err != nil {
		t.Fatal(err)
	}
	// Not polling meanwhile: add, publish inside, remove, publish outside.
	var r []any
	if err := getJSONURL(group+"?add=brief", &ed); err != nil {
		t.Fatal(err)
	}
	if err := getJSONURL(base+"/publish/pk/demo/0/brief/0/%22inside%22?token="+url.QueryEscape(ed.Token), &r); err != nil {
		t.Fatal(err)
	}
	if err := getJSONURL(group+"?remove=brief", &ed); err != nil {
		t.Fatal(err)
	}
	if err := getJSONURL(base+"/publish/pk/demo/0/brief/0/%22outside%22?token="+url.QueryEscape(ed.Token), &r); err != nil {
		t.Fatal(err)
	}
	var got pollAnswer
	if err := getJSONURL(sub+"&tt="+hs.T.T+"&token="+url.QueryEscape(ed.Token), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.M) != 1 || string(got.M[0].D) != `"inside"` || got.M[0].B != "g3" {
		t.Fatalf("deliveries %+v, want only \"inside\" through g3", got.M)
	}
}

// TestCursorFromAnotherRegion: a cursor whose tr names another region is
// not a position of this region's log; the subscribe steps back
// RegionSwitchRewind, so a message just before it comes (again), while the
// same cursor of this region delivers nothing older.
func TestCursorFromAnotherRegion(t *testing.T) {
	_, cfg := nodetest.Embedded(t, prometheus.NewRegistry(), subscriber.Config{PollHold: 200 * time.Millisecond})
	base := nodetest.Serve(t, cfg)
	var pub []any
	if err := getJSONURL(base+"/publish/pk/demo/0/a/0/%22before%22?uuid=p", &pub); err != nil || len(pub) != 3 {
		t.Fatalf("publish: %v %v", pub, err)
	}
	tt := pub[2].(string)
	for _, tc := range []struct {
		tr   string
		want int
	}{{"1", 0}, {"", 0}, {"2", 1}} {
		var a pollAnswer
		if err := getJSONURL(base+"/v2/subscribe/demo/a/0?tt="+tt+"&tr="+tc.tr, &a); err != nil {
			t.Fatal(err)
		}
		if len(a.M) != tc.want {
			t.Errorf("cursor %s of region %q: %d messages, want %d", tt, tc.tr, len(a.M), tc.want)
		}
	}
	resp, err := http.Get(base + "/v2/subscribe/demo/a/0?tt=" + tt + "&tr=x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 || resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("tr=x: status %d %q, want a 400 in JSON", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}
