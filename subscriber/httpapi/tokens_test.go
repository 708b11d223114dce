package httpapi_test

import (
	"encoding/base64"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/groupcast/groupcast/channelgroups"
	"github.com/groupcast/groupcast/subscriber"
	"github.com/groupcast/groupcast/subscriber/httpapi"
)

func editToken(t *testing.T, h *harness, uri string) string {
	t.Helper()
	r := h.get(uri)
	m := decode(t, r)
	tok, _ := m["token"].(string)
	if r.status != 200 || tok == "" || r.headers[httpapi.TokenHeader] != tok {
		t.Fatalf("%s: %d %s (header %q)", uri, r.status, r.body, r.headers[httpapi.TokenHeader])
	}
	return tok
}

func TestTokenReads(t *testing.T) {
	h := newHarness(t)
	tok := editToken(t, h, cg+"/g?add=a")
	tok = editToken(t, h, cg+"/g?add=b&token="+url.QueryEscape(tok))
	for _, mode := range []string{"", "&consistency=at_least_as_fresh", "&consistency=fully_consistent", "&consistency=minimize_latency"} {
		r := h.get(cg + "/g?token=" + url.QueryEscape(tok) + mode)
		payload := decode(t, r)["payload"].(map[string]any)
		if r.status != 200 || !reflect.DeepEqual(payload["channels"], []any{"a", "b"}) {
			t.Fatalf("read%s: %d %s", mode, r.status, r.body)
		}
		if r.headers["Etag"] != `"`+payload["version"].(string)+`"` {
			t.Fatalf("ETag %q, version %v", r.headers["Etag"], payload["version"])
		}
	}
	if r := h.get(cg + "/g?consistency=eventually"); r.status != 400 {
		t.Fatalf("unknown consistency: %d %s", r.status, r.body)
	}
	if r := h.get(cg + "/g?consistency=at_least_as_fresh"); r.status != 400 {
		t.Fatalf("at_least_as_fresh without a token: %d %s", r.status, r.body)
	}
}

// TestBadTokens: bad tokens are refused at once. The node's fresh-wait is an
// hour here, so a token that got as far as waiting would hang the test.
func TestBadTokens(t *testing.T) {
	h := newHarnessWith(t, subscriber.Config{FreshWait: time.Hour})
	good := editToken(t, h, cg+"/g?add=a")
	raw, _ := base64.RawURLEncoding.DecodeString(good)
	tampered := append([]byte(nil), raw...)
	tampered[2] ^= 0x40
	key, _ := channelgroups.NewTokenKey([]byte("test-secret-0123456789"), 0)
	future := key.Encode("demo", channelgroups.Token{
		Shard:     channelgroups.ShardOf("demo", channelgroups.DefaultShards),
		Positions: []channelgroups.RegionPosition{{Region: 1, Pos: channelgroups.Position{Ms: uint64(time.Now().Add(time.Hour).UnixMilli())}}},
	})
	otherShard := key.Encode("demo", channelgroups.Token{Shard: (channelgroups.ShardOf("demo", channelgroups.DefaultShards) + 1) % channelgroups.DefaultShards})
	for name, tok := range map[string]string{
		"tampered":      base64.RawURLEncoding.EncodeToString(tampered),
		"truncated":     good[:len(good)/2],
		"garbage":       "%%%",
		"far future":    future,
		"other shard":   otherShard,
		"oversized":     strings.Repeat("A", 3000),
		"other cluster": mustKey(t, "some-other-cluster-secret").Encode("demo", channelgroups.Token{Shard: 1}),
	} {
		for _, uri := range []string{cg + "/g?token=" + url.QueryEscape(tok), cg + "/g?add=x&token=" + url.QueryEscape(tok)} {
			r := h.get(uri)
			if r.status != 400 || decode(t, r)["error"] != true {
				t.Fatalf("%s token on %s: %d %s", name, uri, r.status, r.body)
			}
		}
	}
	// A token is bound to its account: another account's reads refuse it.
	other := "/v1/channel-registration/sub-key/other/channel-group/g?token=" + url.QueryEscape(good)
	if r := h.get(other); r.status != 400 {
		t.Fatalf("token replayed for another account: %d %s", r.status, r.body)
	}
	if snap, _ := h.store.Read(t.Context(), "demo", "g"); !reflect.DeepEqual(snap.Channels(), []channelgroups.Channel{"a"}) {
		t.Fatalf("bad-token edits changed the group: %v", snap.Channels())
	}
}

func mustKey(t *testing.T, secret string) *channelgroups.TokenKey {
	t.Helper()
	k, err := channelgroups.NewTokenKey([]byte(secret), 0)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func (h *harness) getWith(uri string, headers map[string]string) reply {
	h.t.Helper()
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://groupcast" + uri)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	if err := h.client.Do(req, resp); err != nil {
		h.t.Fatal(err)
	}
	r := reply{status: resp.StatusCode(), contentType: string(resp.Header.ContentType()), body: append([]byte(nil), resp.Body()...), headers: map[string]string{}}
	for k, v := range resp.Header.All() {
		r.headers[string(k)] = string(v)
	}
	return r
}

func TestIfMatch(t *testing.T) {
	h := newHarness(t)
	if r := h.getWith(cg+"/g?add=a", map[string]string{"If-Match": "0"}); r.status != 200 {
		t.Fatalf("If-Match 0 on a new group: %d %s", r.status, r.body)
	}
	list := h.get(cg + "/g")
	etag := list.headers["Etag"]
	r := h.getWith(cg+"/g?add=b", map[string]string{"If-Match": `"17000000000000000"`})
	m := decode(t, r)
	if r.status != 412 || m["error"] != true || `"`+m["version"].(string)+`"` != etag || r.contentType != "application/json" {
		t.Fatalf("stale If-Match: %d %s (etag %s)", r.status, r.body, etag)
	}
	if snap, _ := h.store.Read(t.Context(), "demo", "g"); len(snap.Channels()) != 1 {
		t.Fatalf("a failed If-Match changed the group: %v", snap.Channels())
	}
	if r := h.getWith(cg+"/g?add=b", map[string]string{"If-Match": etag}); r.status != 200 {
		t.Fatalf("matching If-Match: %d %s", r.status, r.body)
	}
	if r := h.getWith(cg+"/g/remove", map[string]string{"If-Match": etag}); r.status != 412 {
		t.Fatalf("If-Match with the version before the last edit: %d %s", r.status, r.body)
	}
	if r := h.getWith(cg+"/g?add=c", map[string]string{"If-Match": "not-a-version"}); r.status != 400 {
		t.Fatalf("malformed If-Match: %d %s", r.status, r.body)
	}
}

func TestIdempotencyKey(t *testing.T) {
	h := newHarness(t)
	hdr := map[string]string{"Idempotency-Key": "retry-1"}
	first := h.getWith(cg+"/g?add=a", hdr)
	if first.status != 200 {
		t.Fatalf("first: %d %s", first.status, first.body)
	}
	before, _ := h.store.Read(t.Context(), "demo", "g")
	again := h.getWith(cg+"/g?add=a", hdr)
	if again.status != 200 || string(again.body) != string(first.body) || again.headers[httpapi.TokenHeader] != first.headers[httpapi.TokenHeader] {
		t.Fatalf("retry: %d %s, want the first answer %s", again.status, again.body, first.body)
	}
	after, _ := h.store.Read(t.Context(), "demo", "g")
	if after.Version != before.Version {
		t.Fatalf("the retry wrote again: version %v → %v", before.Version, after.Version)
	}
	if r := h.getWith(cg+"/g?add=other", hdr); r.status != 422 {
		t.Fatalf("same key, different request: %d %s", r.status, r.body)
	}
	if r := h.getWith(cg+"/g?add=b", map[string]string{"Idempotency-Key": "bad key"}); r.status != 400 {
		t.Fatalf("malformed key: %d %s", r.status, r.body)
	}
	if r := h.getWith(cg+"/g?add=b", map[string]string{"Idempotency-Key": "retry-2"}); r.status != 200 || string(r.body) == string(first.body) {
		t.Fatalf("new key: %d %s", r.status, r.body)
	}
}
