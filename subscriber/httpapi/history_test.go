package httpapi_test

import (
	"encoding/json"
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/groupcast/groupcast/archive"
	"github.com/groupcast/groupcast/channelgroups/bolt"
	"github.com/groupcast/groupcast/subscriber"
	"github.com/groupcast/groupcast/subscriber/httpapi"
)

// persistent is a harness whose node keeps history in a bbolt store.
func persistent(t *testing.T) (*harness, archive.Store) {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "history.db"), bolt.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return newHarnessWith(t, subscriber.Config{Archive: st}), st
}

type v3Answer struct {
	Status   int `json:"status"`
	Channels map[string][]struct {
		Message   json.RawMessage `json:"message"`
		Timetoken string          `json:"timetoken"`
		UUID      string          `json:"uuid"`
		Meta      json.RawMessage `json:"meta"`
		CMT       string          `json:"custom_message_type"`
	} `json:"channels"`
	More *struct {
		URL   string `json:"url"`
		Start string `json:"start"`
		End   string `json:"end"`
		Max   int    `json:"max"`
	} `json:"more"`
}

func (h *harness) v3(uri string) v3Answer {
	h.t.Helper()
	r := h.get(uri)
	var a v3Answer
	if err := json.Unmarshal(r.body, &a); r.status != 200 || err != nil {
		h.t.Fatalf("GET %s: %d %s (%v)", uri, r.status, r.body, err)
	}
	return a
}

// TestHistoryPagesTenThousand: a channel of 10,000 messages (all but the
// newest hundred only in the store) pages exactly through the HTTP API:
// every message once, in order, backwards with v3's more.start, forwards
// with v3 reverse and more.end, and forwards with v2 as PubNub's SDKs page
// (reverse=true, start = the previous page's end).
func TestHistoryPagesTenThousand(t *testing.T) {
	h, st := persistent(t)
	const n = 10_000
	var want []string
	for i := range n {
		r := h.get(fmt.Sprintf("/publish/demo/demo/0/big/0/%d", i))
		var ack []json.RawMessage
		if err := json.Unmarshal(r.body, &ack); r.status != 200 || err != nil || len(ack) != 3 {
			t.Fatalf("publish %d: %d %s", i, r.status, r.body)
		}
		tt, _ := strconv.Unquote(string(ack[2]))
		want = append(want, tt)
	}
	waitFor(t, "all stored", func() bool {
		c, err := st.Count(t.Context(), "demo", "big", 0)
		return err == nil && c == n
	})

	t.Run("v3 backwards", func(t *testing.T) {
		var got []string
		uri := "/v3/history/sub-key/demo/channel/big?max=100"
		for range 2 * n / 100 {
			a := h.v3(uri)
			var page []string
			for _, m := range a.Channels["big"] {
				page = append(page, m.Timetoken)
			}
			got = append(page, got...)
			if a.More == nil {
				break
			}
			if a.More.Start != page[0] || a.More.Max != 100 {
				t.Fatalf("more = %+v after a page starting at %s", *a.More, page[0])
			}
			uri = "/v3/history/sub-key/demo/channel/big?max=100&start=" + a.More.Start
		}
		if !slices.Equal(got, want) {
			t.Errorf("paged %d messages, want the %d in order", len(got), len(want))
		}
	})
	t.Run("v3 forwards", func(t *testing.T) {
		var got []string
		uri := "/v3/history/sub-key/demo/channel/big?max=100&reverse=true"
		for range 2 * n / 100 {
			a := h.v3(uri)
			for _, m := range a.Channels["big"] {
				got = append(got, m.Timetoken)
			}
			if a.More == nil {
				break
			}
			u, err := url.Parse(a.More.URL)
			if err != nil || u.Path != "/v3/history/sub-key/demo/channel/big" {
				t.Fatalf("more.url %q", a.More.URL)
			}
			uri = a.More.URL
		}
		if !slices.Equal(got, want) {
			t.Errorf("paged %d messages, want the %d in order", len(got), len(want))
		}
	})
	t.Run("v2 forwards", func(t *testing.T) {
		var got []string
		uri := "/v2/history/sub-key/demo/channel/big?count=100&reverse=true&include_token=true"
		for range 2 * n / 100 {
			r := h.get(uri)
			var a []json.RawMessage
			var items []struct {
				Timetoken int64 `json:"timetoken"`
			}
			if err := json.Unmarshal(r.body, &a); err != nil || len(a) != 3 || json.Unmarshal(a[0], &items) != nil {
				t.Fatalf("GET %s: %d %s", uri, r.status, r.body)
			}
			if len(items) == 0 {
				break
			}
			for _, it := range items {
				got = append(got, strconv.FormatInt(it.Timetoken, 10))
			}
			uri = "/v2/history/sub-key/demo/channel/big?count=100&reverse=true&include_token=true&start=" + string(a[2])
		}
		if !slices.Equal(got, want) {
			t.Errorf("paged %d messages, want the %d in order", len(got), len(want))
		}
	})
}

// TestHistoryV3Fields: include_meta, include_uuid, include_message_type,
// include_custom_message_type and several channels in one call; signals
// and store=0 messages are not history.
func TestHistoryV3Fields(t *testing.T) {
	h, _ := persistent(t)
	meta := url.QueryEscape(`{"k":1}`)
	for _, p := range []string{
		"/publish/demo/demo/0/a/0/%22a1%22?uuid=alice&meta=" + meta + "&custom_message_type=chat",
		"/publish/demo/demo/0/a/0/%22nostore%22?store=0",
		"/signal/demo/demo/0/a/0/%22sig%22",
		"/publish/demo/demo/0/b/0/%22b1%22?uuid=bob&ttl=5",
	} {
		if r := h.get(p); r.status != 200 {
			t.Fatalf("%s: %d %s", p, r.status, r.body)
		}
	}
	waitFor(t, "both channels", func() bool {
		a := h.v3("/v3/history/sub-key/demo/channel/a,b")
		return len(a.Channels["a"]) == 1 && len(a.Channels["b"]) == 1
	})
	a := h.v3("/v3/history/sub-key/demo/channel/a,b?include_meta=true&include_custom_message_type=true")
	m := a.Channels["a"][0]
	if string(m.Message) != `"a1"` || m.UUID != "alice" || string(m.Meta) != `{"k":1}` || m.CMT != "chat" {
		t.Errorf("a: %+v", m)
	}
	if b := a.Channels["b"][0]; string(b.Message) != `"b1"` || b.UUID != "bob" || b.Meta != nil {
		t.Errorf("b: %+v", b)
	}
	if r := h.get("/v3/history/sub-key/demo/channel/a"); !strings.Contains(string(r.body), `"message_type":null`) {
		t.Errorf("message_type missing: %s", r.body)
	}
	const without = "/v3/history/sub-key/demo/channel/a?include_uuid=false&include_message_type=false&include_custom_message_type=false"
	if r := h.get(without); strings.Contains(string(r.body), "message_type") {
		t.Errorf("message_type without include_message_type: %s", r.body)
	}
	a = h.v3(without)
	if m := a.Channels["a"][0]; m.UUID != "" || m.CMT != "" || m.Meta != nil {
		t.Errorf("without the includes: %+v", m)
	}
	for _, bad := range []string{
		"/v3/history/sub-key/demo/channel/a?include_meta=maybe",
		"/v3/history/sub-key/demo/channel/a?max=x",
		"/v3/history/sub-key/demo/channel/a?start=-5",
		"/v3/history/sub-key/demo/message-counts/a",
		"/v3/history/sub-key/demo/message-counts/a,b?channelsTimetoken=1,2,3",
		"/v3/history/sub-key/demo/message-counts/a?timetoken=1&channelsTimetoken=1",
		"/publish/demo/demo/0/a/0/1?ttl=-1",
	} {
		if r := h.get(bad); r.status != 400 || !strings.Contains(string(r.body), `"error"`) && !strings.HasPrefix(string(r.body), "[0,") {
			t.Errorf("GET %s: %d %s, want a 400 in PubNub's shape", bad, r.status, r.body)
		}
	}
}

// TestMessageCountsAndDelete: counts from a timetoken (PubNub's: that
// message included) per channel; a delete removes a range from history,
// the rings' copies included, and answers in PubNub's shape.
func TestMessageCountsAndDelete(t *testing.T) {
	h, _ := persistent(t)
	var tts []string
	for i := range 5 {
		r := h.get(fmt.Sprintf("/publish/demo/demo/0/c/0/%d", i))
		var ack []json.RawMessage
		if err := json.Unmarshal(r.body, &ack); err != nil || len(ack) != 3 {
			t.Fatalf("publish: %d %s", r.status, r.body)
		}
		tt, _ := strconv.Unquote(string(ack[2]))
		tts = append(tts, tt)
	}
	h.get("/publish/demo/demo/0/d/0/1")
	waitFor(t, "six in history", func() bool {
		a := h.v3("/v3/history/sub-key/demo/channel/c,d")
		return len(a.Channels["c"]) == 5 && len(a.Channels["d"]) == 1
	})
	counts := func(q string) map[string]int {
		t.Helper()
		r := h.get("/v3/history/sub-key/demo/message-counts/c,d?" + q)
		var a struct {
			Status   int            `json:"status"`
			Error    bool           `json:"error"`
			Channels map[string]int `json:"channels"`
		}
		if err := json.Unmarshal(r.body, &a); err != nil || r.status != 200 || a.Status != 200 || a.Error {
			t.Fatalf("counts %s: %d %s", q, r.status, r.body)
		}
		return a.Channels
	}
	if got := counts("timetoken=" + tts[2]); got["c"] != 3 || got["d"] != 1 {
		t.Errorf("counts from the third: %v, want c 3, d 1", got)
	}
	if got := counts("channelsTimetoken=" + tts[4] + "," + tts[4]); got["c"] != 1 || got["d"] != 1 {
		t.Errorf("counts per channel: %v, want c 1, d 1", got)
	}
	// Delete the second to the fourth: start exclusive, end inclusive.
	tt1, _ := strconv.ParseInt(tts[1], 10, 64)
	r := h.do("DELETE", fmt.Sprintf("/v3/history/sub-key/demo/channel/c?start=%d&end=%s", tt1+0, tts[1]))
	if r.status != 200 {
		t.Fatalf("delete nothing: %d %s", r.status, r.body)
	}
	tt3, _ := strconv.ParseInt(tts[3], 10, 64)
	r = h.do("DELETE", fmt.Sprintf("/v3/history/sub-key/demo/channel/c?start=%d&end=%s", tt3+1, tts[1]))
	if r.status != 200 || string(r.body) != `{"error":false,"error_message":"","status":200}` {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	var got []string
	for _, m := range h.v3("/v3/history/sub-key/demo/channel/c").Channels["c"] {
		got = append(got, m.Timetoken)
	}
	if want := []string{tts[0], tts[4]}; !slices.Equal(got, want) {
		t.Errorf("after the delete: %v, want %v", got, want)
	}
	if got := counts("timetoken=" + tts[0]); got["c"] != 2 {
		t.Errorf("count after the delete: %v, want c 2", got)
	}
	if r := h.do("DELETE", "/v3/history/sub-key/demo/channel/c?start=x"); r.status != 400 {
		t.Errorf("bad delete: %d %s", r.status, r.body)
	}
}

// FuzzHistoryRequest sends arbitrary history, message-counts and delete
// queries to a node with a store: every answer is JSON, and none is a 5xx.
func FuzzHistoryRequest(f *testing.F) {
	for _, s := range []string{
		"/v3/history/sub-key/demo/channel/a,b?max=3&start=17000000000000000&end=1&reverse=true&include_meta=true",
		"/v2/history/sub-key/demo/channel/a?count=0&reverse=1&start=5&include_token=false",
		"/v3/history/sub-key/demo/message-counts/a,b?channelsTimetoken=1,%2C2",
		"/v3/history/sub-key/demo/message-counts/a?timetoken=99999999999999999999",
		"/v3/history/sub-key/demo/channel/a?start=9223372036854775807&end=9223372036854775807",
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	st, err := bolt.Open(filepath.Join(f.TempDir(), "history.db"), bolt.Config{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	_, cfg := embeddedWith(f, nil, subscriber.Config{Archive: st})
	api, err := httpapi.New(cfg)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, uri string, del bool) {
		var ctx fasthttp.RequestCtx
		ctx.Request.SetRequestURI(uri)
		if del {
			ctx.Request.Header.SetMethod(fasthttp.MethodDelete)
		}
		api.Handle(&ctx)
		if status := ctx.Response.StatusCode(); status >= 500 {
			t.Fatalf("%q: status %d: %s", uri, status, ctx.Response.Body())
		}
		if !json.Valid(ctx.Response.Body()) {
			t.Fatalf("%q: body is not JSON: %q", uri, ctx.Response.Body())
		}
	})
}
