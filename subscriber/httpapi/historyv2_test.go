package httpapi_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// History v2 gives its timetokens as JSON numbers, as PubNub does: the
// Python SDK formats start and end with %d and hands the items' timetokens
// to the caller as they come (v3 keeps strings, as PubNub's v3 does).
func TestHistoryV2TimetokensAreNumbers(t *testing.T) {
	h := newHarness(t)
	if r := h.get("/v2/history/sub-key/demo/channel/v2?include_token=true"); string(r.body) != "[[],0,0]" {
		t.Errorf("empty history: got %s, want [[],0,0]", r.body)
	}
	for _, m := range []string{"%22one%22", "%22two%22"} {
		if r := h.get("/publish/demo/demo/0/v2/0/" + m); r.status != 200 {
			t.Fatalf("publish %s: %d %s", m, r.status, r.body)
		}
	}
	const path = "/v2/history/sub-key/demo/channel/v2"
	waitFor(t, "both messages in history", func() bool { return bytes.Contains(h.get(path).body, []byte(`"two"`)) })

	var got []json.RawMessage
	r := h.get(path + "?include_token=true")
	if err := json.Unmarshal(r.body, &got); err != nil || len(got) != 3 {
		t.Fatalf("history: got %s (%v), want [items, start, end]", r.body, err)
	}
	var items []struct {
		Message   string          `json:"message"`
		Timetoken json.RawMessage `json:"timetoken"`
	}
	if err := json.Unmarshal(got[0], &items); err != nil || len(items) != 2 {
		t.Fatalf("items: got %s (%v), want two", got[0], err)
	}
	number := func(what string, v json.RawMessage) {
		t.Helper()
		if len(v) != 17 || strings.Trim(string(v), "0123456789") != "" {
			t.Errorf("%s: got %s, want a 17-digit JSON number", what, v)
		}
	}
	number("start", got[1])
	number("end", got[2])
	for _, it := range items {
		number("timetoken of "+it.Message, it.Timetoken)
	}
	if string(got[1]) != string(items[0].Timetoken) || string(got[2]) != string(items[1].Timetoken) {
		t.Errorf("start, end: got %s, %s; want the first and last items' %s, %s", got[1], got[2], items[0].Timetoken, items[1].Timetoken)
	}
	if r := h.get(path); !bytes.HasPrefix(r.body, []byte(`[["one","two"],`)) {
		t.Errorf("without include_token: got %s, want the bare messages", r.body)
	}
	// string_message_token=true (the JavaScript SDK's stringifiedTimeToken):
	// the items' timetokens as strings, start and end still numbers.
	r = h.get(path + "?include_token=true&string_message_token=true")
	want := fmt.Sprintf(`[[{"message":"one","timetoken":"%s"},{"message":"two","timetoken":"%s"}],%s,%s]`, items[0].Timetoken, items[1].Timetoken, got[1], got[2])
	if string(r.body) != want {
		t.Errorf("string_message_token: got %s, want %s", r.body, want)
	}
}
