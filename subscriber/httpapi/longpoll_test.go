package httpapi_test

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/groupcast/groupcast/internal/nodetest"
	"github.com/groupcast/groupcast/subscriber"
)

// TestDroppedLongPollsAreReleased opens 1,000 long-polls over real TCP and
// drops them from the client side. fasthttp does not report a client going
// away, so each parked poll ends on its own hold timer (here 500ms); then the
// goroutines and the heap must be back at their baseline.
func TestDroppedLongPollsAreReleased(t *testing.T) {
	_, cfg := embeddedWith(t, prometheus.NewRegistry(), subscriber.Config{PollHold: 500 * time.Millisecond})
	base := nodetest.Serve(t, cfg)

	// A handshake gives the cursor to park on.
	var hs struct {
		T struct {
			T string `json:"t"`
		} `json:"t"`
	}
	if err := getJSONURL(base+"/v2/subscribe/demo/quiet/0", &hs); err != nil {
		t.Fatal(err)
	}
	settle := func() (int, uint64) {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return runtime.NumGoroutine(), ms.HeapInuse
	}
	g0, h0 := settle()

	const polls = 1000
	var wg sync.WaitGroup
	for i := range polls {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s/v2/subscribe/demo/quiet,c%d/0?tt=%s", base, i, hs.T.T), nil)
			tr := &http.Transport{DisableKeepAlives: true}
			defer tr.CloseIdleConnections()
			resp, err := (&http.Client{Transport: tr}).Do(req)
			if err == nil { // the poll must not answer before the client gives up
				resp.Body.Close()
				t.Errorf("poll %d answered %d before its hold", i, resp.StatusCode)
			}
		})
	}
	wg.Wait()
	var g1 int
	var h1 uint64
	deadline := time.Now().Add(30 * time.Second)
	for {
		g1, h1 = settle()
		if g1 <= g0+5 && h1 <= h0+4<<20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after dropping %d polls: %d goroutines (baseline %d), heap %d KiB (baseline %d KiB)", polls, g1, g0, h1>>10, h0>>10)
		}
		<-time.After(50 * time.Millisecond) // polling with a deadline: the server's own timers release the polls
	}
	t.Logf("goroutines %d → %d, heap in use %d KiB → %d KiB after %d dropped polls", g0, g1, h0>>10, h1>>10, polls)
}

func getJSONURL(u string, into any) error {
	resp, err := http.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return jsonDecode(resp, into)
}
