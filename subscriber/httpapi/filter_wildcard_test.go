package httpapi_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/groupcast/groupcast/internal/nodetest"
	"github.com/groupcast/groupcast/subscriber"
)

// follow polls a subscribe URL (without tt) from cursor until a delivery's
// payload is last, and returns the deliveries as channel@b:payload.
func follow(t *testing.T, base, uri, cursor, last string) []string {
	t.Helper()
	var got []string
	for deadline := time.Now().Add(30 * time.Second); ; {
		if time.Now().After(deadline) {
			t.Fatalf("%s: delivered %v, never %s", uri, got, last)
		}
		var a pollAnswer
		if err := getJSONURL(base+uri+"&tt="+cursor, &a); err != nil {
			t.Fatal(err)
		}
		for _, m := range a.M {
			got = append(got, m.C+"@"+m.B+":"+string(m.D))
			if string(m.D) == last {
				return got
			}
		}
		cursor = a.T.T
	}
}

func publishURL(t *testing.T, base, channel, payload, query string) {
	t.Helper()
	var ack []any
	if err := getJSONURL(base+"/publish/pk/demo/0/"+channel+"/0/"+url.PathEscape(payload)+"?uuid=p"+query, &ack); err != nil || len(ack) != 3 || ack[0] != float64(1) {
		t.Fatalf("publish %s to %s: %v %v", payload, channel, ack, err)
	}
}

// TestSubscribeFilter: filter-expr is evaluated over each message's meta
// (and payload); a filtered subscriber gets only what matches, an
// unfiltered one everything.
func TestSubscribeFilter(t *testing.T) {
	_, cfg := nodetest.Embedded(t, prometheus.NewRegistry(), subscriber.Config{PollHold: time.Second})
	base := nodetest.Serve(t, cfg)
	filtered := "/v2/subscribe/demo/f/0?uuid=s&filter-expr=" + url.QueryEscape(`meta.priority == "high" || data.n > 2`)
	var hs pollAnswer
	if err := getJSONURL(base+filtered, &hs); err != nil {
		t.Fatal(err)
	}
	publishURL(t, base, "f", `{"n":1}`, "&meta="+url.QueryEscape(`{"priority":"low"}`))
	publishURL(t, base, "f", `{"n":2}`, "&meta="+url.QueryEscape(`{"priority":"high"}`))
	publishURL(t, base, "f", `{"n":3}`, "")
	publishURL(t, base, "f", `{"n":4}`, "&meta="+url.QueryEscape(`{"priority":"high"}`))
	got := follow(t, base, filtered, hs.T.T, `{"n":4}`)
	if want := `f@:{"n":2} f@:{"n":3} f@:{"n":4}`; strings.Join(got, " ") != want {
		t.Fatalf("filtered: delivered %v, want %s", got, want)
	}
	all := follow(t, base, "/v2/subscribe/demo/f/0?uuid=s", hs.T.T, `{"n":4}`)
	if len(all) != 4 {
		t.Fatalf("unfiltered: delivered %v", all)
	}
}

// TestSubscribeWildcard: a subscribe to news.* gets the messages of
// news.a and news.b.c, each with "b" naming the wildcard (as PubNub's do),
// and nothing of other channels.
func TestSubscribeWildcard(t *testing.T) {
	_, cfg := nodetest.Embedded(t, prometheus.NewRegistry(), subscriber.Config{PollHold: time.Second})
	base := nodetest.Serve(t, cfg)
	uri := "/v2/subscribe/demo/news.*,direct/0?uuid=s"
	var hs pollAnswer
	if err := getJSONURL(base+uri, &hs); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"newsx", "news.a", "other.a", "direct", "news.b.c"} {
		publishURL(t, base, c, `"`+c+`"`, "")
	}
	got := follow(t, base, uri, hs.T.T, `"news.b.c"`)
	if want := `news.a@news.*:"news.a" direct@:"direct" news.b.c@news.*:"news.b.c"`; strings.Join(got, " ") != want {
		t.Fatalf("delivered %v, want %s", got, want)
	}
}

// TestBadFilterAndWildcard: a filter that does not parse and a wildcard
// against PubNub's rules get PubNub-shaped 400s, before the subscribe parks;
// publishing to a wildcard is refused.
func TestBadFilterAndWildcard(t *testing.T) {
	_, cfg := nodetest.Embedded(t, prometheus.NewRegistry(), subscriber.Config{PollHold: time.Minute})
	base := nodetest.Serve(t, cfg)
	for _, tc := range []struct{ uri, msg string }{
		{"/v2/subscribe/demo/a/0?tt=1&filter-expr=" + url.QueryEscape(`meta.a = 1`), `at byte 7`},
		{"/v2/subscribe/demo/a/0?tt=1&filter-expr=" + url.QueryEscape(`meta.a == 1 &&`), `ends where a value is wanted`},
		{"/v2/subscribe/demo/a/0?tt=1&filter-expr=" + url.QueryEscape(strings.Repeat("(", 40)+"a==1"+strings.Repeat(")", 40)), `nested deeper`},
		{"/v2/subscribe/demo/a.*.c/0?tt=1", `invalid wildcard channel name`},
		{"/v2/subscribe/demo/a.b.c.*/0?tt=1", `at most three levels`},
		{"/v2/subscribe/demo/*/0?tt=1", `invalid wildcard channel name`},
		{"/publish/pk/demo/0/a.*/0/1", `Invalid channel`},
	} {
		resp, err := http.Get(base + tc.uri)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 400 || !json.Valid(body) || !strings.Contains(string(body), tc.msg) {
			t.Errorf("%s: %d %s (%v), want 400 with %q", tc.uri, resp.StatusCode, body, err, tc.msg)
			continue
		}
		if strings.HasPrefix(tc.uri, "/v2/subscribe") {
			var e struct {
				Status  int    `json:"status"`
				Error   bool   `json:"error"`
				Message string `json:"message"`
			}
			if json.Unmarshal(body, &e) != nil || e.Status != 400 || !e.Error {
				t.Errorf("%s: body %s is not PubNub's error shape", tc.uri, body)
			}
		}
	}
}
