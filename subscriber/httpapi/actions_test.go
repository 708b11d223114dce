package httpapi_test

import (
	"encoding/json"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/groupcast/groupcast/access"
	"github.com/groupcast/groupcast/channelgroups/bolt"
	"github.com/groupcast/groupcast/subscriber"
	"github.com/groupcast/groupcast/subscriber/httpapi"
)

const actionsURI = "/v1/message-actions/demo/channel/"

// publishTT publishes payload to channel ch and returns its timetoken.
func (h *harness) publishTT(ch, payload string) string {
	h.t.Helper()
	r := h.send("POST", "/publish/demo/demo/0/"+ch+"/0?uuid=pub", []byte(payload), nil)
	var ans []any
	if err := json.Unmarshal(r.body, &ans); r.status != 200 || err != nil || len(ans) != 3 {
		h.t.Fatalf("publish: %d %s", r.status, r.body)
	}
	return ans[2].(string)
}

type actionJSON struct {
	Type             string `json:"type"`
	Value            string `json:"value"`
	UUID             string `json:"uuid"`
	ActionTimetoken  string `json:"actionTimetoken"`
	MessageTimetoken string `json:"messageTimetoken"`
}

type actionsAnswer struct {
	Status int          `json:"status"`
	Data   []actionJSON `json:"data"`
	More   *struct {
		URL   string `json:"url"`
		Start string `json:"start"`
		Limit int    `json:"limit"`
	} `json:"more"`
}

func (h *harness) addAction(ch, mtt, uuid, body string) actionJSON {
	h.t.Helper()
	r := h.send("POST", actionsURI+ch+"/message/"+mtt+"?uuid="+uuid, []byte(body), []string{"Content-Type", "application/json"})
	var ans struct {
		Status int        `json:"status"`
		Data   actionJSON `json:"data"`
	}
	if err := json.Unmarshal(r.body, &ans); r.status != 200 || err != nil || ans.Status != 200 {
		h.t.Fatalf("add action: %d %s", r.status, r.body)
	}
	return ans.Data
}

func (h *harness) actions(query string) actionsAnswer {
	h.t.Helper()
	r := h.get(actionsURI + "c?uuid=u" + query)
	var ans actionsAnswer
	if err := json.Unmarshal(r.body, &ans); r.status != 200 || err != nil || ans.Status != 200 || ans.Data == nil {
		h.t.Fatalf("get actions: %d %s", r.status, r.body)
	}
	return ans
}

// subscribeUntil subscribes to ch from cursor tt until want envelopes came.
func (h *harness) subscribeUntil(ch, tt string, want int) []map[string]any {
	h.t.Helper()
	var got []map[string]any
	deadline := time.Now().Add(10 * time.Second)
	for len(got) < want && time.Now().Before(deadline) {
		r := h.get("/v2/subscribe/demo/" + ch + "/0?uuid=sub&tt=" + tt)
		var ans struct {
			T struct {
				T string `json:"t"`
			} `json:"t"`
			M []map[string]any `json:"m"`
		}
		if err := json.Unmarshal(r.body, &ans); r.status != 200 || err != nil {
			h.t.Fatalf("subscribe: %d %s", r.status, r.body)
		}
		got, tt = append(got, ans.M...), ans.T.T
	}
	if len(got) < want {
		h.t.Fatalf("%d of %d envelopes: %v", len(got), want, got)
	}
	return got
}

// TestActionsREST: add, get and remove in PubNub's shapes, and the
// subscriber's e:3 events for the add and the remove.
func TestActionsREST(t *testing.T) {
	h := newHarness(t)
	r := h.get("/v2/subscribe/demo/c/0?uuid=sub&tt=0")
	var handshake struct {
		T struct {
			T string `json:"t"`
		} `json:"t"`
	}
	if err := json.Unmarshal(r.body, &handshake); err != nil {
		t.Fatal(err)
	}
	mtt := h.publishTT("c", `"hello"`)
	added := h.addAction("c", mtt, "u1", `{"type":"reaction","value":"smiley_face"}`)
	if added.Type != "reaction" || added.Value != "smiley_face" || added.UUID != "u1" || added.MessageTimetoken != mtt ||
		added.ActionTimetoken <= mtt || len(added.ActionTimetoken) != 17 {
		t.Fatalf("added %+v, want the action on %s", added, mtt)
	}
	// Read your writes: the get right after the add sees it.
	got := h.actions("")
	if len(got.Data) != 1 || got.Data[0] != added || got.More != nil {
		t.Fatalf("get = %+v, want [%+v]", got, added)
	}
	second := h.addAction("c", mtt, "u2", `{"type":"reaction","value":"smiley_face"}`)
	got = h.actions("&limit=1")
	if len(got.Data) != 1 || got.Data[0] != second || got.More == nil || got.More.Start != second.ActionTimetoken || got.More.Limit != 1 ||
		!strings.HasPrefix(got.More.URL, actionsURI+"c?start="+second.ActionTimetoken) {
		t.Fatalf("get limit=1 = %+v (more %+v), want the newest and more", got, got.More)
	}
	got = h.actions("&limit=1&start=" + got.More.Start)
	if len(got.Data) != 1 || got.Data[0] != added {
		t.Fatalf("next page = %+v, want the first", got)
	}
	rm := h.do("DELETE", actionsURI+"c/message/"+mtt+"/action/"+added.ActionTimetoken+"?uuid=u3")
	if rm.status != 200 || string(rm.body) != `{"status":200,"data":{}}` {
		t.Fatalf("remove: %d %s", rm.status, rm.body)
	}
	if got := h.actions(""); len(got.Data) != 1 || got.Data[0] != second {
		t.Fatalf("after remove: %+v, want only the second", got)
	}

	envs := h.subscribeUntil("c", handshake.T.T, 4)
	type event struct {
		E float64 `json:"e"`
		I string  `json:"i"`
		C string  `json:"c"`
		P struct{ T string }
		D struct {
			Source, Version, Event string
			Data                   struct{ Type, Value, MessageTimetoken, ActionTimetoken string }
		}
	}
	var evs []event
	for i, env := range envs {
		b, _ := json.Marshal(env)
		if i == 0 {
			b, _ = json.Marshal(map[string]any{"e": env["e"]})
		}
		var e event
		if err := json.Unmarshal(b, &e); err != nil {
			t.Fatal(err)
		}
		evs = append(evs, e)
	}
	if evs[0].E != 0 {
		t.Fatalf("first envelope %v, want the message", envs[0])
	}
	for i, want := range []struct {
		uuid, event, att string
	}{{"u1", "added", added.ActionTimetoken}, {"u2", "added", second.ActionTimetoken}, {"u3", "removed", added.ActionTimetoken}} {
		e := evs[i+1]
		if e.E != 3 || e.I != want.uuid || e.C != "c" || e.D.Source != "actions" || e.D.Version != "1.0" || e.D.Event != want.event ||
			e.D.Data.Type != "reaction" || e.D.Data.Value != "smiley_face" || e.D.Data.MessageTimetoken != mtt || e.D.Data.ActionTimetoken != want.att {
			t.Errorf("envelope %d = %v, want %s by %s of %s", i+1, envs[i+1], want.event, want.uuid, want.att)
		}
	}
	if evs[1].P.T != added.ActionTimetoken {
		t.Errorf("added event's timetoken %s, want the action's %s", evs[1].P.T, added.ActionTimetoken)
	}
}

// TestActionsBadInput: bad requests get PubNub's actions error shape and
// change nothing.
func TestActionsBadInput(t *testing.T) {
	h := newHarness(t)
	mtt := h.publishTT("c", `1`)
	h.addAction("c", mtt, "u1", `{"type":"r","value":"v"}`)
	msg := actionsURI + "c/message/" + mtt + "?uuid=u"
	for _, c := range []struct {
		name, method, uri, body string
		status                  int
	}{
		{"body not JSON", "POST", msg, `{"type":`, 400},
		{"body not an object", "POST", msg, `["r","v"]`, 400},
		{"type missing", "POST", msg, `{"value":"v"}`, 400},
		{"value missing", "POST", msg, `{"type":"r"}`, 400},
		{"type not a string", "POST", msg, `{"type":1,"value":"v"}`, 400},
		{"type empty", "POST", msg, `{"type":"","value":"v"}`, 400},
		{"type of 16", "POST", msg, `{"type":"0123456789abcdef","value":"v"}`, 400},
		{"value too long", "POST", msg, `{"type":"r","value":"` + strings.Repeat("x", httpapi.MaxMessageBytes) + `"}`, 400},
		{"message timetoken not a number", "POST", actionsURI + "c/message/x1?uuid=u", `{"type":"r","value":"v"}`, 400},
		{"message timetoken zero", "POST", actionsURI + "c/message/0?uuid=u", `{"type":"r","value":"v"}`, 400},
		{"presence channel", "POST", actionsURI + "c-pnpres/message/" + mtt + "?uuid=u", `{"type":"r","value":"v"}`, 400},
		{"uuid too long", "POST", actionsURI + "c/message/" + mtt + "?uuid=" + strings.Repeat("u", 93), `{"type":"r","value":"v"}`, 400},
		{"already added", "POST", actionsURI + "c/message/" + mtt + "?uuid=u1", `{"type":"r","value":"v"}`, 409},
		{"add with GET", "GET", msg, "", 405},
		{"remove with POST", "POST", actionsURI + "c/message/" + mtt + "/action/1?uuid=u", "", 405},
		{"action timetoken too big", "DELETE", actionsURI + "c/message/" + mtt + "/action/99999999999999999999?uuid=u", "", 400},
		{"limit not a number", "GET", actionsURI + "c?limit=x", "", 400},
		{"start not a number", "GET", actionsURI + "c?start=-1", "", 400},
		{"get with POST", "POST", actionsURI + "c", "", 405},
	} {
		t.Run(c.name, func(t *testing.T) {
			var body []byte
			if c.body != "" {
				body = []byte(c.body)
			}
			r := h.send(c.method, c.uri, body, nil)
			if r.status != c.status || r.contentType != "application/json" {
				t.Fatalf("%d %q %s, want %d JSON", r.status, r.contentType, r.body, c.status)
			}
			var e struct {
				Status int `json:"status"`
				Error  struct {
					Message string `json:"message"`
					Source  string `json:"source"`
					Details []struct {
						Message, Location, LocationType string
					} `json:"details"`
				} `json:"error"`
			}
			if c.status == 405 {
				return // the router's answer
			}
			if err := json.Unmarshal(r.body, &e); err != nil || e.Status != c.status || e.Error.Source != "actions" || e.Error.Message == "" {
				t.Fatalf("error body %s (%v), want PubNub's actions error", r.body, err)
			}
			if c.status == 400 && (len(e.Error.Details) != 1 || e.Error.Details[0].Message == "") {
				t.Fatalf("400 without details: %s", r.body)
			}
		})
	}
	if got := h.actions(""); len(got.Data) != 1 {
		t.Fatalf("after bad requests: %+v, want the one action", got)
	}
}

// TestHistoryWithActions: history-with-actions and include_message_actions
// give each message its actions by type and value, from the store and the
// ring alike.
func TestHistoryWithActions(t *testing.T) {
	h, _ := persistent(t)
	m1 := h.publishTT("c", `1`)
	m2 := h.publishTT("c", `2`)
	h.publishTT("c", `3`)
	a1 := h.addAction("c", m1, "u1", `{"type":"reaction","value":"smile"}`)
	a2 := h.addAction("c", m1, "u2", `{"type":"reaction","value":"smile"}`)
	a3 := h.addAction("c", m2, "u1", `{"type":"receipt","value":"read"}`)
	type answer struct {
		Status   int `json:"status"`
		Channels map[string][]struct {
			Timetoken string                                  `json:"timetoken"`
			Actions   map[string]map[string][]json.RawMessage `json:"actions"`
		} `json:"channels"`
		More *struct{ URL string } `json:"more"`
	}
	for _, uri := range []string{
		"/v3/history-with-actions/sub-key/demo/channel/c?uuid=u",
		"/v3/history/sub-key/demo/channel/c?uuid=u&include_message_actions=true",
	} {
		r := h.get(uri)
		var a answer
		if err := json.Unmarshal(r.body, &a); r.status != 200 || err != nil {
			t.Fatalf("%s: %d %s", uri, r.status, r.body)
		}
		msgs := a.Channels["c"]
		if len(msgs) != 3 {
			t.Fatalf("%s: %s, want three messages", uri, r.body)
		}
		smile := msgs[0].Actions["reaction"]["smile"]
		want := []string{`{"uuid":"u1","actionTimetoken":"` + a1.ActionTimetoken + `"}`, `{"uuid":"u2","actionTimetoken":"` + a2.ActionTimetoken + `"}`}
		if len(smile) != 2 || string(smile[0]) != want[0] || string(smile[1]) != want[1] {
			t.Errorf("%s: m1's smiles %s, want %s", uri, smile, want)
		}
		if read := msgs[1].Actions["receipt"]["read"]; len(read) != 1 || !strings.Contains(string(read[0]), a3.ActionTimetoken) || len(msgs[1].Actions) != 1 {
			t.Errorf("%s: m2's actions %v", uri, msgs[1].Actions)
		}
		if msgs[2].Actions != nil {
			t.Errorf("%s: m3 has actions %v, want none", uri, msgs[2].Actions)
		}
	}
	// Paging keeps the actions.
	r := h.get("/v3/history-with-actions/sub-key/demo/channel/c?uuid=u&max=1")
	var a answer
	if err := json.Unmarshal(r.body, &a); err != nil || a.More == nil || !strings.HasPrefix(a.More.URL, "/v3/history-with-actions/sub-key/demo/channel/c?") {
		t.Fatalf("max=1: %s, want more on history-with-actions", r.body)
	}
	if r := h.get("/v3/history/sub-key/demo/channel/c,d?include_message_actions=true"); r.status != 400 {
		t.Fatalf("two channels with actions: %d %s, want 400", r.status, r.body)
	}
	if r := h.get("/v3/history/sub-key/demo/channel/c?include_message_actions=maybe"); r.status != 400 {
		t.Fatalf("include_message_actions=maybe: %d %s, want 400", r.status, r.body)
	}
}

// TestActionsAccess: with Access Manager on, add needs write, remove
// delete, get and history with actions read, on the channel.
func TestActionsAccess(t *testing.T) {
	p := newPAM(t)
	sub := p.k1.SubscribeKey
	ch := access.Need{Kind: access.Channel, Name: "ch-1"}
	base := "/v1/message-actions/" + sub + "/channel/ch-1"
	for _, e := range []struct {
		name, method, uri, body string
		perm                    access.Perm
	}{
		{"add", "POST", base + "/message/15000000000000000?uuid=u", `{"type":"r","value":"v"}`, access.Write},
		{"get", "GET", base + "?uuid=u", "", access.Read},
		{"remove", "DELETE", base + "/message/15000000000000000/action/15000000000000001?uuid=u", "", access.Delete},
		{"history with actions", "GET", "/v3/history-with-actions/sub-key/" + sub + "/channel/ch-1?uuid=u", "", access.Read},
	} {
		for _, c := range []struct {
			name string
			perm access.Perm
			want int
		}{{"no token", 0, 403}, {"wrong permission", allPerms &^ e.perm, 403}, {"right permission", e.perm, 200}} {
			t.Run(e.name+"/"+c.name, func(t *testing.T) {
				uri := e.uri
				if c.perm != 0 {
					uri += "&auth=" + url.QueryEscape(p.token(p.k1, grantOn(ch, c.perm), access.Grants{}, ""))
				}
				var body []byte
				if e.body != "" {
					body = []byte(e.body)
				}
				if r := p.send(e.method, uri, body, nil); r.status != c.want {
					t.Fatalf("%s %s: %d %s, want %d", e.method, uri, r.status, r.body, c.want)
				}
			})
		}
	}
}

// FuzzActionRequest: no add, get or remove request, whatever its path,
// query or body, makes the API fail (5xx) or answer anything but JSON.
func FuzzActionRequest(f *testing.F) {
	for _, s := range []struct{ uri, body string }{
		{"/v1/message-actions/demo/channel/c/message/17000000000000000?uuid=u", `{"type":"reaction","value":"smile"}`},
		{"/v1/message-actions/demo/channel/c/message/17000000000000000?uuid=u", `{"type":"0123456789abcdefg","value":""}`},
		{"/v1/message-actions/demo/channel/c/message/-1", `{"type":null,"value":{}}`},
		{"/v1/message-actions/demo/channel/c/message/1/action/9223372036854775807", ""},
		{"/v1/message-actions/demo/channel/c?start=1&end=99999999999999999&limit=0", ""},
		{"/v3/history-with-actions/sub-key/demo/channel/c?max=0&include_message_actions=true", ""},
	} {
		for _, m := range []string{"GET", "POST", "DELETE"} {
			f.Add(s.uri, s.body, m)
		}
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
	f.Fuzz(func(t *testing.T, uri, body, method string) {
		var ctx fasthttp.RequestCtx
		ctx.Request.SetRequestURI(uri)
		ctx.Request.Header.SetMethod(method)
		ctx.Request.SetBodyString(body)
		api.Handle(&ctx)
		if status := ctx.Response.StatusCode(); status >= 500 {
			t.Fatalf("%s %q %q: status %d: %s", method, uri, body, status, ctx.Response.Body())
		}
		if !json.Valid(ctx.Response.Body()) {
			t.Fatalf("%s %q: body is not JSON: %q", method, uri, ctx.Response.Body())
		}
	})
}
