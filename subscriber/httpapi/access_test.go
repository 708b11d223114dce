package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/groupcast/groupcast/access"
	"github.com/groupcast/groupcast/channelgroups/bolt"
	"github.com/groupcast/groupcast/subscriber"
	"github.com/groupcast/groupcast/subscriber/httpapi"
)

// pam is a harness whose node checks keysets and tokens with two keysets,
// k1 and k2, in its store.
type pam struct {
	*harness
	k1, k2 access.Keyset
	now    time.Time
	store  *bolt.Store
	reg    *access.Registry
}

// newPAM starts a node in keysets mode whose keysets have Access Manager on.
func newPAM(t *testing.T, origins ...string) *pam {
	t.Helper()
	return newGuarded(t, access.Keysets, true, origins...)
}

func newGuarded(t *testing.T, mode access.Mode, pamOn bool, origins ...string) *pam {
	t.Helper()
	return newGuardedWith(t, subscriber.Config{}, mode, pamOn, origins...)
}

func newGuardedWith(t *testing.T, ncfg subscriber.Config, mode access.Mode, pamOn bool, origins ...string) *pam {
	t.Helper()
	p := &pam{now: time.Now()}
	p.harness = newHarnessAPI(t, ncfg, func(st *bolt.Store, cfg *httpapi.Config) {
		p.store = st
		ctx := context.Background()
		for _, k := range []*access.Keyset{&p.k1, &p.k2} {
			var err error
			if *k, err = access.NewKeyset(pamOn, p.now); err != nil {
				t.Fatal(err)
			}
			if err := st.PutKeyset(ctx, *k); err != nil {
				t.Fatal(err)
			}
		}
		reg, err := access.NewRegistry(st, access.RegistryConfig{Now: func() time.Time { return p.now }})
		if err != nil {
			t.Fatal(err)
		}
		if err := reg.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		p.reg = reg
		cfg.Access, err = access.NewGuard(reg, access.GuardConfig{Mode: mode, Store: st, Now: func() time.Time { return p.now }})
		if err != nil {
			t.Fatal(err)
		}
		cfg.CORSOrigins = origins
	})
	return p
}

// token signs a token of k granting g for an hour from p.now.
func (p *pam) token(k access.Keyset, g access.Grants, patterns access.Grants, uuid string) string {
	p.t.Helper()
	tok := &access.Token{Version: access.TokenVersion, Issued: p.now, TTL: time.Hour, Resources: g, Patterns: patterns, AuthorizedUUID: uuid}
	s, err := tok.Sign(k.SecretKey)
	if err != nil {
		p.t.Fatal(err)
	}
	return s
}

// signed returns uri with a timestamp (at) and k's signature.
func (p *pam) signed(k access.Keyset, method, uri string, body []byte, at time.Time) string {
	p.t.Helper()
	sep := "?"
	if strings.Contains(uri, "?") {
		sep = "&"
	}
	uri += sep + "timestamp=" + strconv.FormatInt(at.Unix(), 10)
	r, err := access.ParseSignedRequest(method, uri, body)
	if err != nil {
		p.t.Fatal(err)
	}
	return uri + "&signature=" + url.QueryEscape(access.Sign(r, k))
}

func grantOn(n access.Need, perm access.Perm) access.Grants {
	g := access.Grants{Channels: map[string]access.Perm{}, Groups: map[string]access.Perm{}, UUIDs: map[string]access.Perm{}}
	switch n.Kind {
	case access.Channel:
		g.Channels[n.Name] = perm
	case access.Group:
		g.Groups[n.Name] = perm
	case access.UUID:
		g.UUIDs[n.Name] = perm
	}
	return g
}

const allPerms = access.Read | access.Write | access.Manage | access.Delete | access.Get | access.Update | access.Join

// TestAccessEveryEndpoint: every endpoint naming a subscribe key (when one
// is added, add it here), with
// Access Manager on, for each kind of credential: no token, a token
// lacking the permission, the right one, another keyset's, a tampered one,
// a stale signature and a fresh one.
func TestAccessEveryEndpoint(t *testing.T) {
	p := newPAM(t)
	pub, sub := p.k1.PublishKey, p.k1.SubscribeKey
	cg := "/v1/channel-registration/sub-key/" + sub + "/channel-group"
	ch := func(name string) access.Need { return access.Need{Kind: access.Channel, Name: name, Perm: 0} }
	grp := func(name string) access.Need { return access.Need{Kind: access.Group, Name: name, Perm: 0} }
	type endpoint struct {
		name, method, uri string
		body              string
		need              access.Need // Perm 0: none needed
		perm              access.Perm
		signedOnly        bool
	}
	revokable := p.token(p.k1, grantOn(ch("x"), access.Read), access.Grants{}, "")
	endpoints := []endpoint{
		{name: "subscribe channel", method: "GET", uri: "/v2/subscribe/" + sub + "/ch-1/0?uuid=u", need: ch("ch-1"), perm: access.Read},
		{name: "subscribe presence channel", method: "GET", uri: "/v2/subscribe/" + sub + "/ch-1-pnpres/0?uuid=u", need: ch("ch-1-pnpres"), perm: access.Read},
		{name: "subscribe group", method: "GET", uri: "/v2/subscribe/" + sub + "/,/0?channel-group=g-1&uuid=u", need: grp("g-1"), perm: access.Read},
		{name: "publish GET", method: "GET", uri: "/publish/" + pub + "/" + sub + "/0/ch-1/0/%22hi%22?uuid=u", need: ch("ch-1"), perm: access.Write},
		{name: "publish POST", method: "POST", uri: "/publish/" + pub + "/" + sub + "/0/ch-1/0?uuid=u", body: `"hi"`, need: ch("ch-1"), perm: access.Write},
		{name: "signal", method: "GET", uri: "/signal/" + pub + "/" + sub + "/0/ch-1/0/%22hi%22?uuid=u", need: ch("ch-1"), perm: access.Write},
		{name: "history v3", method: "GET", uri: "/v3/history/sub-key/" + sub + "/channel/ch-1?uuid=u", need: ch("ch-1"), perm: access.Read},
		{name: "history v2", method: "GET", uri: "/v2/history/sub-key/" + sub + "/channel/ch-1?uuid=u", need: ch("ch-1"), perm: access.Read},
		{name: "heartbeat", method: "GET", uri: "/v2/presence/sub-key/" + sub + "/channel/ch-1/heartbeat?uuid=u&heartbeat=60", need: ch("ch-1"), perm: access.Read},
		{name: "here now", method: "GET", uri: "/v2/presence/sub-key/" + sub + "/channel/ch-1?uuid=u", need: ch("ch-1"), perm: access.Read},
		{name: "leave", method: "GET", uri: "/v2/presence/sub-key/" + sub + "/channel/ch-1/leave?uuid=u"},
		{name: "here now, group", method: "GET", uri: "/v2/presence/sub-key/" + sub + "/channel/,?channel-group=g-1&uuid=u", need: grp("g-1"), perm: access.Read},
		{name: "here now, global", method: "GET", uri: "/v2/presence/sub-key/" + sub + "?uuid=u", signedOnly: true},
		{name: "where now", method: "GET", uri: "/v2/presence/sub-key/" + sub + "/uuid/u?uuid=u"},
		{name: "get state", method: "GET", uri: "/v2/presence/sub-key/" + sub + "/channel/ch-1/uuid/u?uuid=u", need: ch("ch-1"), perm: access.Read},
		{name: "set state", method: "GET", uri: "/v2/presence/sub-key/" + sub + "/channel/ch-1/uuid/u/data?uuid=u&state=%7B%22k%22%3A1%7D", need: ch("ch-1"), perm: access.Read},
		{name: "message counts", method: "GET", uri: "/v3/history/sub-key/" + sub + "/message-counts/ch-1?uuid=u&timetoken=1", need: ch("ch-1"), perm: access.Read},
		{name: "delete messages", method: "DELETE", uri: "/v3/history/sub-key/" + sub + "/channel/ch-1?uuid=u", need: ch("ch-1"), perm: access.Delete},
		{name: "history with actions", method: "GET", uri: "/v3/history-with-actions/sub-key/" + sub + "/channel/ch-1?uuid=u", need: ch("ch-1"), perm: access.Read},
		{name: "message actions get", method: "GET", uri: "/v1/message-actions/" + sub + "/channel/ch-1?uuid=u", need: ch("ch-1"), perm: access.Read},
		{name: "message action add", method: "POST", uri: "/v1/message-actions/" + sub + "/channel/ch-1/message/17000000000000000?uuid=u", body: `{"type":"reaction","value":"ok"}`, need: ch("ch-1"), perm: access.Write},
		{name: "message action remove", method: "DELETE", uri: "/v1/message-actions/" + sub + "/channel/ch-1/message/17000000000000000/action/17000000000000001?uuid=u", need: ch("ch-1"), perm: access.Delete},
		{name: "group add", method: "GET", uri: cg + "/g-1?add=ch-1&uuid=u", need: grp("g-1"), perm: access.Manage},
		{name: "group remove", method: "GET", uri: cg + "/g-1?remove=ch-1&uuid=u", need: grp("g-1"), perm: access.Manage},
		{name: "group list", method: "GET", uri: cg + "/g-1?uuid=u", need: grp("g-1"), perm: access.Read},
		{name: "group delete", method: "GET", uri: cg + "/g-1/remove?uuid=u", need: grp("g-1"), perm: access.Manage},
		{name: "groups list", method: "GET", uri: cg + "?uuid=u", signedOnly: true},
		{name: "grant", method: "POST", uri: "/v3/pam/" + sub + "/grant?uuid=u", body: `{"ttl":5,"permissions":{"resources":{"channels":{"ch-1":1}}}}`, signedOnly: true},
		{name: "revoke", method: "DELETE", uri: "/v3/pam/" + sub + "/grant/" + url.PathEscape(revokable) + "?uuid=u", signedOnly: true},
	}
	// The group subscribed to holds a channel (an empty one is refused).
	if r := p.get(p.signed(p.k1, "GET", cg+"/g-1?add=ch-1&uuid=u", nil, p.now)); r.status != 200 {
		t.Fatalf("add: %d %s", r.status, r.body)
	}
	for _, e := range endpoints {
		right := allPerms
		wrong := allPerms
		if e.perm != 0 {
			right, wrong = e.perm, allPerms&^e.perm
		}
		good := p.token(p.k1, grantOn(e.need, right), access.Grants{}, "")
		tampered := []byte(good)
		tampered[len(tampered)/2] ^= 1
		if tampered[len(tampered)/2] == '-' || tampered[len(tampered)/2] == '_' { // stay base64url
			tampered[len(tampered)/2] = 'A'
		}
		withAuth := func(tok string) string { return e.uri + "&auth=" + url.QueryEscape(tok) }
		cases := []struct {
			name, uri string
			allowed   bool
		}{
			// Leave needs no permission, but a valid token.
			{"no token", e.uri, false},
			{"wrong permission", withAuth(p.token(p.k1, grantOn(e.need, wrong), access.Grants{}, "")), e.perm == 0 && !e.signedOnly},
			{"right permission", withAuth(good), !e.signedOnly},
			{"other keyset's token", withAuth(p.token(p.k2, grantOn(e.need, right), access.Grants{}, "")), false},
			{"tampered token", withAuth(string(tampered)), false},
			{"stale signature", p.signed(p.k1, e.method, e.uri, []byte(e.body), p.now.Add(-10*time.Minute)), false},
			{"signature", p.signed(p.k1, e.method, e.uri, []byte(e.body), p.now), true},
		}
		for _, c := range cases {
			t.Run(e.name+"/"+c.name, func(t *testing.T) {
				var body []byte
				if e.body != "" {
					body = []byte(e.body)
				}
				r := p.send(e.method, c.uri, body, nil)
				if r.contentType != "application/json" {
					t.Errorf("content type %q", r.contentType)
				}
				if c.allowed {
					if r.status >= 400 {
						t.Fatalf("%s %s: %d %s, want it served", e.method, c.uri, r.status, r.body)
					}
					return
				}
				if r.status != 403 {
					t.Fatalf("%s %s: %d %s, want 403", e.method, c.uri, r.status, r.body)
				}
				var d struct {
					Status  int    `json:"status"`
					Error   bool   `json:"error"`
					Service string `json:"service"`
					Payload struct {
						Channels []string `json:"channels"`
						Groups   []string `json:"channel-groups"`
					} `json:"payload"`
				}
				if err := json.Unmarshal(r.body, &d); err != nil || d.Status != 403 || !d.Error || d.Service != "Access Manager" {
					t.Fatalf("refusal %s: %v", r.body, err)
				}
				if e.perm != 0 && c.name != "stale signature" {
					named := append(d.Payload.Channels, d.Payload.Groups...)
					if len(named) != 1 || named[0] != e.need.Name {
						t.Fatalf("refusal names %v, want [%s]: %s", named, e.need.Name, r.body)
					}
				}
			})
		}
	}
}

// TestAccessKeys: with keysets, an unknown subscribe key and another
// keyset's publish key are refused, and nothing is published.
func TestAccessKeys(t *testing.T) {
	p := newPAM(t)
	server := func(uri string) string { return p.signed(p.k1, "GET", uri, nil, p.now) }
	for _, c := range []struct{ uri, msg string }{
		{"/publish/" + p.k2.PublishKey + "/" + p.k1.SubscribeKey + "/0/ch/0/%22hi%22?uuid=u", "Invalid Publish Key"},
		{"/publish/demo/" + p.k1.SubscribeKey + "/0/ch/0/%22hi%22?uuid=u", "Invalid Publish Key"},
		{"/publish/" + p.k1.PublishKey + "/sub-c-unknown/0/ch/0/%22hi%22?uuid=u", "Invalid Subscribe Key"},
		{"/v2/subscribe/sub-c-unknown/ch/0?uuid=u", "Invalid Subscribe Key"},
		{"/v1/channel-registration/sub-key/demo/channel-group/g?add=a&uuid=u", "Invalid Subscribe Key"},
	} {
		r := p.get(server(c.uri))
		if r.status != 400 || !strings.Contains(string(r.body), c.msg) || r.contentType != "application/json" {
			t.Errorf("%s: %d %s, want 400 %q", c.uri, r.status, r.body, c.msg)
		}
	}
	r := p.get(server("/v2/history/sub-key/" + p.k1.SubscribeKey + "/channel/ch?uuid=u"))
	if r.status != 200 || string(r.body) != `[[],0,0]` {
		t.Fatalf("history after refused publishes: %d %s", r.status, r.body)
	}
}

// TestAccessTokens: revocation, expiry, authorized uuids and patterns.
func TestAccessTokens(t *testing.T) {
	p := newPAM(t)
	sub := p.k1.SubscribeKey
	read := access.Grants{Channels: map[string]access.Perm{"ch": access.Read}}
	hereNow := func(ch, uuid, tok string) int {
		return p.get(fmt.Sprintf("/v2/presence/sub-key/%s/channel/%s?uuid=%s&auth=%s", sub, ch, uuid, url.QueryEscape(tok))).status
	}
	tok := p.token(p.k1, read, access.Grants{}, "")
	if s := hereNow("ch", "u", tok); s != 200 {
		t.Fatalf("granted: %d", s)
	}
	// Revoked: refused from the next request on.
	r := p.send("DELETE", p.signed(p.k1, "DELETE", "/v3/pam/"+sub+"/grant/"+url.PathEscape(tok)+"?uuid=s", nil, p.now), nil, nil)
	if r.status != 200 {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	if s := hereNow("ch", "u", tok); s != 403 {
		t.Fatalf("revoked token: %d, want 403", s)
	}
	// Expired: an hour's token two hours later.
	tok = p.token(p.k1, read, access.Grants{}, "")
	p.now = p.now.Add(2 * time.Hour)
	if s := hereNow("ch", "u", tok); s != 403 {
		t.Fatalf("expired token: %d, want 403", s)
	}
	// Authorized uuid: only that uuid may use it.
	tok = p.token(p.k1, read, access.Grants{}, "alice")
	if s := hereNow("ch", "alice", tok); s != 200 {
		t.Fatalf("alice's token used by alice: %d", s)
	}
	if s := hereNow("ch", "bob", tok); s != 403 {
		t.Fatalf("alice's token used by bob: %d, want 403", s)
	}
	// Pattern: ^room-.* covers room-7, not lobby or a-room-1.
	tok = p.token(p.k1, access.Grants{}, access.Grants{Channels: map[string]access.Perm{"^room-.*": access.Read}}, "")
	for ch, want := range map[string]int{"room-7": 200, "lobby": 403, "a-room-1": 403} {
		if s := hereNow(ch, "u", tok); s != want {
			t.Errorf("pattern token on %s: %d, want %d", ch, s, want)
		}
	}
	// Rotating the secret: tokens signed with the old one are refused.
	tok = p.token(p.k1, read, access.Grants{}, "")
	rotated, err := access.RotateSecret(p.k1)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.store.PutKeyset(t.Context(), rotated); err != nil {
		t.Fatal(err)
	}
	if err := p.reg.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	if s := hereNow("ch", "u", tok); s != 403 {
		t.Fatalf("token of the old secret: %d, want 403", s)
	}
	p.k1 = rotated
	if s := hereNow("ch", "u", p.token(p.k1, read, access.Grants{}, "")); s != 200 {
		t.Fatalf("token of the new secret: %d", s)
	}
	// A grant through the API works like a signed one.
	r = p.send("POST", p.signed(p.k1, "POST", "/v3/pam/"+sub+"/grant?uuid=s", []byte(`{"ttl":5,"permissions":{"resources":{"channels":{"ch":1}}}}`), p.now),
		[]byte(`{"ttl":5,"permissions":{"resources":{"channels":{"ch":1}}}}`), nil)
	var g struct {
		Data struct{ Token string } `json:"data"`
	}
	if err := json.Unmarshal(r.body, &g); r.status != 200 || err != nil || g.Data.Token == "" {
		t.Fatalf("grant: %d %s %v", r.status, r.body, err)
	}
	if s := hereNow("ch", "u", g.Data.Token); s != 200 {
		t.Fatalf("granted through the API: %d", s)
	}
	if s := hereNow("other", "u", g.Data.Token); s != 403 {
		t.Fatalf("granted through the API, other channel: %d, want 403", s)
	}
}

// TestCORSOrigins: CORS headers only for configured origins; a browser's
// cross-site request from another origin is refused and changes nothing.
// TestAccessMemoOnServedConnections: a subscriber re-polling on its
// connection after a parked poll is checked once and then recalled
// (access.Memo), and a revocation, the token's expiry or another token on
// that same connection is still seen on the next re-poll.
func TestAccessMemoOnServedConnections(t *testing.T) {
	p := newGuardedWith(t, subscriber.Config{PollHold: 10 * time.Millisecond}, access.Keysets, true)
	p.client.MaxConnsPerHost = 1 // every request on one connection
	sub := p.k1.SubscribeKey
	read := access.Grants{Channels: map[string]access.Perm{"ch": access.Read}}
	poll := func(tt, tok string) reply {
		return p.get(fmt.Sprintf("/v2/subscribe/%s/ch/0?uuid=u&tt=%s&auth=%s", sub, tt, url.QueryEscape(tok)))
	}
	repoll := func(tok string, times int) {
		t.Helper()
		r := poll("0", tok)
		if r.status != 200 {
			t.Fatalf("handshake: %d %s", r.status, r.body)
		}
		tt := decode(t, r)["t"].(map[string]any)["t"].(string)
		// The first poll parks and hands the connection back after its
		// hold; the next ones are checked on the served connection, which
		// remembers them.
		for i := range times {
			if r := poll(tt, tok); r.status != 200 {
				t.Fatalf("poll %d: %d %s", i, r.status, r.body)
			}
		}
	}
	tok := p.token(p.k1, read, access.Grants{}, "")
	repoll(tok, 3)
	if r := p.send("DELETE", p.signed(p.k1, "DELETE", "/v3/pam/"+sub+"/grant/"+url.PathEscape(tok)+"?uuid=s", nil, p.now), nil, nil); r.status != 200 {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	if r := poll("1", tok); r.status != 403 {
		t.Fatalf("re-poll with the revoked token: %d, want 403", r.status)
	}

	p.now = p.now.Add(time.Minute) // another token: the revoked one's twin would be revoked too
	tok = p.token(p.k1, read, access.Grants{}, "")
	repoll(tok, 3)
	if r := poll("1", p.token(p.k1, access.Grants{Channels: map[string]access.Perm{"other": access.Read}}, access.Grants{}, "")); r.status != 403 {
		t.Fatalf("re-poll with a token for another channel: %d, want 403", r.status)
	}
	repoll(tok, 1)
	p.now = p.now.Add(time.Hour)
	if r := poll("1", tok); r.status != 403 {
		t.Fatalf("re-poll with the expired token: %d, want 403", r.status)
	}
}

func TestCORSOrigins(t *testing.T) {
	p := newPAM(t, "http://good.example")
	sub := p.k1.SubscribeKey
	uri := p.signed(p.k1, "GET", "/v1/channel-registration/sub-key/"+sub+"/channel-group/g?add=a&uuid=u", nil, p.now)
	r := p.send("GET", uri, nil, []string{"Origin", "http://evil.example", "Sec-Fetch-Site", "cross-site"})
	if r.status != 403 || r.headers["Access-Control-Allow-Origin"] != "" {
		t.Fatalf("cross-site edit from an unlisted origin: %d %v %s", r.status, r.headers, r.body)
	}
	r = p.get(p.signed(p.k1, "GET", "/v1/channel-registration/sub-key/"+sub+"/channel-group/g?uuid=u", nil, p.now))
	if !strings.Contains(string(r.body), `"channels":[]`) {
		t.Fatalf("group after the refused edit: %s", r.body)
	}
	// An <img> a page points at the API: no Origin, cross-site.
	if r := p.send("GET", uri, nil, []string{"Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "no-cors"}); r.status != 403 {
		t.Fatalf("no-cors cross-site edit: %d %s", r.status, r.body)
	}
	r = p.send("GET", uri, nil, []string{"Origin", "http://good.example", "Sec-Fetch-Site", "cross-site"})
	if r.status != 200 || r.headers["Access-Control-Allow-Origin"] != "http://good.example" {
		t.Fatalf("listed origin: %d %v %s", r.status, r.headers, r.body)
	}
	r = p.send("OPTIONS", "/v2/subscribe/"+sub+"/ch/0", nil, []string{"Origin", "http://evil.example"})
	if r.headers["Access-Control-Allow-Origin"] != "" {
		t.Fatalf("preflight from an unlisted origin allowed: %v", r.headers)
	}
}

// TestAccessModes: open mode takes unknown keys; keysets without Access
// Manager need the keys only, in either mode; grants need a signature and a
// keyset in either mode.
func TestAccessModes(t *testing.T) {
	grant := `{"ttl":5,"permissions":{"resources":{"channels":{"ch":1}}}}`
	for _, c := range []struct {
		mode access.Mode
		pam  bool
	}{{access.Open, false}, {access.Keysets, false}} {
		t.Run(fmt.Sprintf("%v, pam %v", c.mode, c.pam), func(t *testing.T) {
			p := newGuarded(t, c.mode, c.pam)
			sub, pub := p.k1.SubscribeKey, p.k1.PublishKey
			unknown := 200
			if c.mode == access.Keysets {
				unknown = 400
			}
			for uri, want := range map[string]int{
				"/v1/channel-registration/sub-key/" + sub + "/channel-group/g?add=a&uuid=u":     200,
				"/v1/channel-registration/sub-key/" + sub + "/channel-group?uuid=u":             200,
				"/publish/" + pub + "/" + sub + "/0/a/0/1?uuid=u":                               200,
				"/v2/subscribe/" + sub + "/a/0?uuid=u":                                          200,
				"/v1/channel-registration/sub-key/demo/channel-group/g?add=a&uuid=u":            unknown,
				"/v1/channel-registration/sub-key/demo/channel-group?uuid=u":                    unknown,
				"/publish/" + p.k2.PublishKey + "/" + sub + "/0/a/0/1?uuid=u":                   400,
				"/v2/history/sub-key/" + sub + "/channel/a?uuid=u&auth=" + url.QueryEscape("x"): 200,
			} {
				if r := p.get(uri); r.status != want {
					t.Errorf("%s: %d %s, want %d", uri, r.status, r.body, want)
				}
			}
			// Grants: unsigned 403, signed 200, unknown keyset 400.
			if r := p.send("POST", "/v3/pam/"+sub+"/grant?uuid=u", []byte(grant), nil); r.status != 403 {
				t.Errorf("unsigned grant: %d %s", r.status, r.body)
			}
			if r := p.send("POST", p.signed(p.k1, "POST", "/v3/pam/"+sub+"/grant?uuid=u", []byte(grant), p.now), []byte(grant), nil); r.status != 200 {
				t.Errorf("signed grant: %d %s", r.status, r.body)
			}
			if r := p.send("POST", "/v3/pam/sub-c-unknown/grant?uuid=u", []byte(grant), nil); r.status != 400 {
				t.Errorf("grant on an unknown keyset: %d %s", r.status, r.body)
			}
		})
	}
}

// TestOpenModeEnforcesKnownKeysets: in open mode unknown keys are served,
// but a keyset with Access Manager on is enforced as in keysets mode.
func TestOpenModeEnforcesKnownKeysets(t *testing.T) {
	p := newGuarded(t, access.Open, true)
	if r := p.get("/v2/presence/sub-key/demo/channel/ch?uuid=u"); r.status != 200 {
		t.Fatalf("unknown key in open mode: %d %s", r.status, r.body)
	}
	if r := p.get("/v2/presence/sub-key/" + p.k1.SubscribeKey + "/channel/ch?uuid=u"); r.status != 403 {
		t.Fatalf("Access Manager keyset without a token in open mode: %d %s", r.status, r.body)
	}
	tok := p.token(p.k1, access.Grants{Channels: map[string]access.Perm{"ch": access.Read}}, access.Grants{}, "")
	if r := p.get("/v2/presence/sub-key/" + p.k1.SubscribeKey + "/channel/ch?uuid=u&auth=" + url.QueryEscape(tok)); r.status != 200 {
		t.Fatalf("with a token: %d %s", r.status, r.body)
	}
}

// TestAccessReviewFixes: spellings of a token other than the issued one,
// a leave for another uuid, presence events forged by a writer, parameters
// hidden behind '#' in a signed request, and a page of an unlisted origin
// over plain HTTP (Origin, no Sec-Fetch-Site).
func TestAccessReviewFixes(t *testing.T) {
	p := newPAM(t)
	sub, pub := p.k1.SubscribeKey, p.k1.PublishKey
	tok := p.token(p.k1, access.Grants{Channels: map[string]access.Perm{"room-1": access.Read | access.Write}}, access.Grants{}, "alice")
	here := "/v2/presence/sub-key/" + sub + "/channel/room-1?uuid=alice&auth="
	if r := p.get(here + url.QueryEscape(tok)); r.status != 200 {
		t.Fatalf("as issued: %d %s", r.status, r.body)
	}
	if r := p.get(here + url.QueryEscape(tok+"==")); r.status != 403 {
		t.Fatalf("padded again: %d %s", r.status, r.body)
	}
	if r := p.get("/v2/presence/sub-key/" + sub + "/channel/room-1/leave?uuid=bob&auth=" + url.QueryEscape(tok)); r.status != 403 {
		t.Fatalf("alice's token making bob leave: %d %s", r.status, r.body)
	}
	if r := p.get("/v2/presence/sub-key/" + sub + "/channel/room-1/leave?uuid=bob"); r.status != 403 {
		t.Fatalf("leave without a token: %d %s", r.status, r.body)
	}
	pres := p.signed(p.k1, "GET", "/publish/"+pub+"/"+sub+"/0/room-1-pnpres/0/%7B%22action%22%3A%22leave%22%7D?uuid=alice", nil, p.now)
	if r := p.get(pres); r.status != 400 {
		t.Fatalf("publish to a presence channel: %d %s", r.status, r.body)
	}
	cg := "/v1/channel-registration/sub-key/" + sub + "/channel-group/g"
	if r := p.get(p.signed(p.k1, "GET", cg+"?add=a,b&uuid=u", nil, p.now)); r.status != 200 {
		t.Fatalf("add: %d %s", r.status, r.body)
	}
	signed := p.signed(p.k1, "GET", cg+"?remove=a&uuid=u", nil, p.now)
	i := strings.Index(signed, "remove=a&")
	moved := signed[:i] + signed[i+len("remove=a&"):] + "#&remove=a"
	// Raw: an HTTP client would not send the fragment.
	conn, err := p.client.Dial("groupcast")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: groupcast\r\n\r\n", moved); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Fatalf("signed parameter moved behind '#': %d", resp.StatusCode)
	}
	if r := p.send("GET", p.signed(p.k1, "GET", cg+"?add=c&uuid=u", nil, p.now), nil, []string{"Origin", "http://evil.example"}); r.status != 403 {
		t.Fatalf("edit from an unlisted origin over HTTP: %d %s", r.status, r.body)
	}
	if r := p.get(p.signed(p.k1, "GET", cg+"?uuid=u", nil, p.now)); !strings.Contains(string(r.body), `"channels":["a","b"]`) {
		t.Fatalf("group after the refused requests: %s", r.body)
	}
}

// BenchmarkAccessCheck: what checking a request costs, by serving a
// here-now (a cheap endpoint) directly through the handler: with Access
// Manager on and a token, on a keyset without it, and with no guard.
func BenchmarkAccessCheck(b *testing.B) {
	for _, c := range []struct {
		name  string
		guard bool
		pam   bool
	}{{"no guard", false, false}, {"keyset without Access Manager", true, false}, {"Access Manager, token", true, true}} {
		b.Run(c.name, func(b *testing.B) {
			now := time.Now()
			st, cfg := embedded(b, nil)
			k, err := access.NewKeyset(c.pam, now)
			if err != nil {
				b.Fatal(err)
			}
			if err := st.PutKeyset(b.Context(), k); err != nil {
				b.Fatal(err)
			}
			reg, err := access.NewRegistry(st, access.RegistryConfig{})
			if err != nil {
				b.Fatal(err)
			}
			if err := reg.Refresh(b.Context()); err != nil {
				b.Fatal(err)
			}
			if c.guard {
				if cfg.Access, err = access.NewGuard(reg, access.GuardConfig{Mode: access.Keysets, Store: st}); err != nil {
					b.Fatal(err)
				}
			}
			api, err := httpapi.New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			tok := &access.Token{Version: access.TokenVersion, Issued: now, TTL: time.Hour,
				Resources: access.Grants{Channels: map[string]access.Perm{"room-1": access.Read}}}
			ts, err := tok.Sign(k.SecretKey)
			if err != nil {
				b.Fatal(err)
			}
			uri := "/v2/presence/sub-key/" + k.SubscribeKey + "/channel/room-1?uuid=alice&pnsdk=PubNub-JS-Nodejs%2F11.0.2&auth=" + url.QueryEscape(ts)
			var ctx fasthttp.RequestCtx
			ctx.Init(new(fasthttp.Request), nil, nil)
			b.ReportAllocs()
			for b.Loop() {
				ctx.Request.Reset()
				ctx.Response.Reset()
				ctx.Request.SetRequestURI(uri)
				api.Handle(&ctx)
				if ctx.Response.StatusCode() != 200 {
					b.Fatalf("%d %s", ctx.Response.StatusCode(), ctx.Response.Body())
				}
			}
		})
	}
}
