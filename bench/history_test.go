package bench

import (
	"context"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/groupcast/groupcast/internal/nodetest"
	"github.com/groupcast/groupcast/subscriber"
)

// historyNode serves an embedded node in this process, storing messages
// (Message Persistence) if on, with its metrics at adminURL/metrics.
func historyNode(t *testing.T, on bool) *Groupcast {
	t.Helper()
	reg := prometheus.NewRegistry()
	embedded := nodetest.Embedded
	if on {
		embedded = nodetest.EmbeddedArchived
	}
	_, cfg := embedded(t, reg, subscriber.Config{PollHold: 5 * time.Second, Registerer: reg})
	adm := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(adm.Close)
	return &Groupcast{Origin: nodetest.Serve(t, cfg), Admin: adm.URL, Account: "bench", PIDs: []int{os.Getpid()}}
}

// TestHistory runs the history scenario end to end on a tiny size: a node
// per run, alternating off and on, and the messages the "on" nodes stored
// counted (a run with persistence on whose node stored nothing fails).
func TestHistory(t *testing.T) {
	const subs = 10
	var started []bool
	res, err := History(context.Background(), HistoryConfig{
		Start: func(ctx context.Context, on bool, i int) (*Groupcast, func() error, error) {
			started = append(started, on)
			return historyNode(t, on), func() error { return nil }, nil
		},
		Subscribers: subs, Step: 200 * time.Millisecond, LatencyLoad: 100, SaturationLoad: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if want := []bool{false, true, true, false}; len(started) != 4 || started[0] != want[0] || started[1] != want[1] || started[2] != want[2] || started[3] != want[3] {
		t.Fatalf("nodes started %v, want %v", started, want)
	}
	if res.Stored == 0 {
		t.Fatal("the nodes with persistence on stored no message")
	}
	if on := res.Case(true); on.Rounds != 2 || on.P99 == 0 || on.DeliveredPerSec == 0 {
		t.Errorf("on case %+v", on)
	}
	r := &Results{History: &res}
	r.Checks = checks(r)
	if len(r.Checks) != 2 || !strings.Contains(r.Checks[0].What, "persistence on vs. off") || !strings.Contains(r.Checks[0].Target, "10%") {
		t.Fatalf("checks %+v", r.Checks)
	}
	if rep := Report(r, nil); !strings.Contains(rep, "## history") || !strings.Contains(rep, "| on vs. off |") {
		t.Errorf("report lacks the history section:\n%s", rep)
	}
}

// TestHistoryNotStored: a node that stores nothing (here: has no archiver,
// so no groupcast_archived_messages_total) in a run meant to have
// persistence on fails the scenario rather than compare two runs without it.
func TestHistoryNotStored(t *testing.T) {
	_, err := History(context.Background(), HistoryConfig{
		Start: func(ctx context.Context, on bool, i int) (*Groupcast, func() error, error) {
			return historyNode(t, false), func() error { return nil }, nil
		},
		Subscribers: 5, Step: 200 * time.Millisecond, LatencyLoad: 100, SaturationLoad: 1000, Rounds: 1})
	if err == nil || !strings.Contains(err.Error(), "groupcast_archived_messages_total") {
		t.Fatalf("got %v, want the run refused for storing nothing", err)
	}
}
