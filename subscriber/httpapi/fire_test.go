package httpapi_test

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/groupcast/groupcast/internal/nodetest"
	"github.com/groupcast/groupcast/subscriber"
)

// TestFire publishes a message, fires two (store=0&norep=true, as the JS
// SDK's fire does, and norep=1, as Python's) and publishes another: the fire is acknowledged like a
// publish, but no subscriber receives it and history does not hold it.
func TestFire(t *testing.T) {
	_, cfg := nodetest.Embedded(t, prometheus.NewRegistry(), subscriber.Config{PollHold: time.Second})
	base := nodetest.Serve(t, cfg)
	var hs pollAnswer
	if err := getJSONURL(base+"/v2/subscribe/demo/f/0", &hs); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{
		"/publish/pk/demo/0/f/0/%22before%22?uuid=p",
		"/publish/pk/demo/0/f/0/%22fired%22?uuid=p&store=0&norep=true",
		"/publish/pk/demo/0/f/0/%22fired-py%22?uuid=p&store=0&norep=1", // the Python SDK's
		"/publish/pk/demo/0/f/0/%22after%22?uuid=p",
	} {
		var ack []any
		if err := getJSONURL(base+u, &ack); err != nil {
			t.Fatal(err)
		}
		if len(ack) != 3 || ack[0] != float64(1) || ack[1] != "Sent" {
			t.Fatalf("%s: got %v, want [1,\"Sent\",tt]", u, ack)
		}
		if tt, _ := ack[2].(string); len(tt) != 17 {
			t.Fatalf("%s: timetoken %v", u, ack[2])
		}
	}
	// Follow the cursor until "after" is in: had the fire been delivered,
	// it would have come before.
	var got []string
	cursor := hs.T.T
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(strings.Join(got, " "), `"after"`); {
		if time.Now().After(deadline) {
			t.Fatalf("delivered %v, never \"after\"", got)
		}
		var a pollAnswer
		if err := getJSONURL(base+"/v2/subscribe/demo/f/0?tt="+cursor, &a); err != nil {
			t.Fatal(err)
		}
		for _, m := range a.M {
			got = append(got, string(m.D))
		}
		cursor = a.T.T
	}
	if strings.Join(got, " ") != `"before" "after"` {
		t.Fatalf("delivered %v, want \"before\" \"after\"", got)
	}
	var h struct {
		Channels map[string][]struct {
			Message any `json:"message"`
		} `json:"channels"`
	}
	if err := getJSONURL(base+"/v3/history/sub-key/demo/channel/f", &h); err != nil {
		t.Fatal(err)
	}
	var kept []any
	for _, m := range h.Channels["f"] {
		kept = append(kept, m.Message)
	}
	if len(kept) != 2 || kept[0] != "before" || kept[1] != "after" {
		t.Fatalf("history holds %v, want [before after]", kept)
	}
}
