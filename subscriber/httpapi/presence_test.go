package httpapi_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/groupcast/groupcast/internal/nodetest"
	"github.com/groupcast/groupcast/subscriber"
)

type presenceEvent struct {
	Action    string `json:"action"`
	UUID      string `json:"uuid"`
	Occupancy int    `json:"occupancy"`
}

// TestPresenceEvents: join on subscribe, leave on leave, timeout when a user
// is not seen for its heartbeat, delivered on <channel>-pnpres with the
// occupancy; here-now agrees.
func TestPresenceEvents(t *testing.T) {
	_, cfg := nodetest.Embedded(t, prometheus.NewRegistry(), subscriber.Config{PollHold: 200 * time.Millisecond})
	base := nodetest.Serve(t, cfg)
	var hs struct {
		T struct {
			T string `json:"t"`
		} `json:"t"`
	}
	if err := getJSONURL(base+"/v2/subscribe/demo/room-pnpres/0?uuid=watcher", &hs); err != nil {
		t.Fatal(err)
	}
	cursor := hs.T.T
	var events []presenceEvent
	next := func(want string) presenceEvent {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for len(events) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("no %s event", want)
			}
			var a struct {
				T struct {
					T string `json:"t"`
				} `json:"t"`
				M []struct {
					C string          `json:"c"`
					D json.RawMessage `json:"d"`
				} `json:"m"`
			}
			if err := getJSONURL(base+"/v2/subscribe/demo/room-pnpres/0?uuid=watcher&tt="+cursor, &a); err != nil {
				t.Fatal(err)
			}
			cursor = a.T.T
			for _, m := range a.M {
				var e presenceEvent
				if m.C != "room-pnpres" || json.Unmarshal(m.D, &e) != nil {
					t.Fatalf("unexpected envelope %+v", m)
				}
				events = append(events, e)
			}
		}
		e := events[0]
		events = events[1:]
		if e.Action != want {
			t.Fatalf("event %+v, want %s", e, want)
		}
		return e
	}
	var hsBob struct{}
	if err := getJSONURL(base+"/v2/subscribe/demo/room/0?uuid=bob", &hsBob); err != nil {
		t.Fatal(err)
	}
	if e := next("join"); e.UUID != "bob" || e.Occupancy != 1 {
		t.Fatalf("join %+v", e)
	}
	if err := getJSONURL(base+"/v2/subscribe/demo/room/0?uuid=carol&heartbeat=1", &hsBob); err != nil {
		t.Fatal(err)
	}
	if e := next("join"); e.UUID != "carol" || e.Occupancy != 2 {
		t.Fatalf("join %+v", e)
	}
	var here struct {
		Occupancy int      `json:"occupancy"`
		UUIDs     []string `json:"uuids"`
	}
	if err := getJSONURL(base+"/v2/presence/sub-key/demo/channel/room", &here); err != nil || here.Occupancy != 2 {
		t.Fatalf("here-now %+v %v", here, err)
	}
	var ok struct{}
	if err := getJSONURL(base+"/v2/presence/sub-key/demo/channel/room/leave?uuid=bob", &ok); err != nil {
		t.Fatal(err)
	}
	if e := next("leave"); e.UUID != "bob" || e.Occupancy != 1 {
		t.Fatalf("leave %+v", e)
	}
	// carol asked for a 1 s heartbeat and sends none: she times out.
	if e := next("timeout"); e.UUID != "carol" || e.Occupancy != 0 {
		t.Fatalf("timeout %+v", e)
	}
}
