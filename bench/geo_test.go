package bench

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/Shopify/toxiproxy/v2/toxics"
)

func TestParseRegion(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Region
		ok   bool
	}{
		{"2=127.0.0.2,dc2,127.0.0.2:6390", Region{N: 2, Cassandra: "127.0.0.2", DC: "dc2", Redis: "127.0.0.2:6390"}, true},
		{"1=127.0.0.1:9042,dc1,localhost:6379", Region{N: 1, Cassandra: "127.0.0.1:9042", DC: "dc1", Redis: "localhost:6379"}, true},
		{"127.0.0.2,dc2,127.0.0.2:6390", Region{}, false},   // no number
		{"0=127.0.0.2,dc2,127.0.0.2:6390", Region{}, false}, // regions count from 1
		{"x=127.0.0.2,dc2,127.0.0.2:6390", Region{}, false},
		{"2=127.0.0.2,dc2", Region{}, false},
		{"2=127.0.0.2,,127.0.0.2:6390", Region{}, false},
		{"2=127.0.0.2,dc2,127.0.0.2", Region{}, false}, // Redis needs a port
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseRegion(tc.in)
			if (err == nil) != tc.ok || got != tc.want {
				t.Fatalf("ParseRegion(%q) = %+v, %v; want %+v, ok %v", tc.in, got, err, tc.want, tc.ok)
			}
		})
	}
}

func TestRegionsFromEnv(t *testing.T) {
	env := map[string]string{
		"GROUPCAST_R1_CASSANDRA": "127.0.0.1", "GROUPCAST_R1_DC": "dc1", "GROUPCAST_R1_REDIS": "127.0.0.1:6390",
		"GROUPCAST_R2_CASSANDRA": "127.0.0.2", "GROUPCAST_R2_DC": "dc2", "GROUPCAST_R2_REDIS": "127.0.0.2:6390",
		"GROUPCAST_R3_CASSANDRA": "127.0.0.3", "GROUPCAST_R3_DC": "dc3", // no Redis: not a region
	}
	got := RegionsFromEnv(func(k string) string { return env[k] })
	want := []Region{{1, "127.0.0.1", "dc1", "127.0.0.1:6390"}, {2, "127.0.0.2", "dc2", "127.0.0.2:6390"}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("RegionsFromEnv = %+v, want %+v", got, want)
	}
	if got := RegionsFromEnv(func(string) string { return "" }); len(got) != 0 {
		t.Fatalf("RegionsFromEnv(empty) = %+v, want none", got)
	}
}

// TestGeoChecks checks the figures against the targets: p99 less the
// injected one-way latency, edits within 5 ms, messages (busy and quiet
// link) within 10 ms, no sample timed out.
func TestGeoChecks(t *testing.T) {
	lat := func(p50, p99 float64, errs int) Latencies {
		return Latencies{Count: 100, P50: p50, P90: p99, P99: p99, Max: p99, Errors: errs}
	}
	for _, tc := range []struct {
		name                 string
		edit, message, quiet Latencies
		met                  [3]bool
		over                 [3]float64 // p99 − one-way, µs
	}{
		{"all within", lat(41_000, 44_900, 0), lat(42_000, 49_900, 0), lat(42_000, 45_000, 0), [3]bool{true, true, true}, [3]float64{4_900, 9_900, 5_000}},
		{"at the targets", lat(41_000, 45_000, 0), lat(42_000, 50_000, 0), lat(42_000, 50_000, 0), [3]bool{true, true, true}, [3]float64{5_000, 10_000, 10_000}},
		{"edit over", lat(41_000, 45_100, 0), lat(42_000, 46_000, 0), lat(42_000, 46_000, 0), [3]bool{false, true, true}, [3]float64{5_100, 6_000, 6_000}},
		{"message over", lat(41_000, 42_000, 0), lat(42_000, 50_100, 0), lat(42_000, 46_000, 0), [3]bool{true, false, true}, [3]float64{2_000, 10_100, 6_000}},
		{"quiet link over", lat(41_000, 42_000, 0), lat(42_000, 43_000, 0), lat(42_000, 120_000, 0), [3]bool{true, true, false}, [3]float64{2_000, 3_000, 80_000}},
		{"a timeout misses however fast", lat(41_000, 42_000, 1), lat(42_000, 43_000, 2), lat(42_000, 43_000, 1), [3]bool{false, false, false}, [3]float64{2_000, 3_000, 3_000}},
		{"no samples", Latencies{}, Latencies{}, Latencies{}, [3]bool{false, false, false}, [3]float64{-40_000, -40_000, -40_000}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := &GeoResult{OneWay: 40 * time.Millisecond, Refresh: 30 * time.Second, QuietGap: 2500 * time.Millisecond,
				Edit: tc.edit, Message: tc.message, MessageQuiet: tc.quiet}
			for i, l := range []Latencies{tc.edit, tc.message, tc.quiet} {
				if _, over := g.OverOneWay(l); over != tc.over[i] {
					t.Errorf("measurement %d: p99 over one-way = %v µs, want %v", i, over, tc.over[i])
				}
			}
			cs := geoChecks(g)
			if len(cs) != 3 || cs[0].Met != tc.met[0] || cs[1].Met != tc.met[1] || cs[2].Met != tc.met[2] {
				t.Fatalf("checks %+v, want met %v", cs, tc.met)
			}
		})
	}
	// A result without the quiet link measured has no check for it.
	if cs := geoChecks(&GeoResult{OneWay: 40 * time.Millisecond}); len(cs) != 2 {
		t.Fatalf("checks without a quiet link: %+v, want 2", cs)
	}
}

// TestGeoReport renders a result: the section, its rows and the
// comparison with the baseline; the scenarios not run have no section.
func TestGeoReport(t *testing.T) {
	r := &Results{Geo: &GeoResult{OneWay: 40 * time.Millisecond, Refresh: 30 * time.Second, QuietGap: 2500 * time.Millisecond,
		Edit:         Latencies{Count: 400, P50: 41_500, P90: 42_000, P99: 43_300, Max: 47_000},
		Message:      Latencies{Count: 400, P50: 42_000, P90: 43_000, P99: 48_000, Max: 52_000},
		MessageAcked: Latencies{Count: 400, P50: 40_000, P90: 41_000, P99: 46_000, Max: 50_000},
		MessageQuiet: Latencies{Count: 150, P50: 42_000, P90: 46_000, P99: 120_000, Max: 121_000},
		Baseline:     Latencies{Count: 5, P50: 14_525_000, P90: 29_000_000, P99: 29_000_000, Max: 29_000_000},
		Replicated:   1200, EditEarly: 3, LoadBefore: "1.50 2.00 2.50", LoadAfter: "1.60 2.00 2.40"}}
	r.Checks = checks(r)
	md := Report(r, nil)
	for _, want := range []string{
		"## geo\n",
		"| edit, replication on | 400 | 0 | 41.5 ms | 42.0 ms | 43.3 ms | 47.0 ms | +1.50 ms | +3.30 ms | ≤ +5 ms |",
		"| message, replication on | 400 | 0 | 42.0 ms | 43.0 ms | 48.0 ms | 52.0 ms | +2.00 ms | +8.00 ms | ≤ +10 ms |",
		"| message, the same from the publish's answer | 400 | 0 | 40.0 ms | 41.0 ms | 46.0 ms | 50.0 ms | +0.00 ms | +6.00 ms |  |",
		"| message, replication on, quiet link | 150 | 0 | 42.0 ms | 46.0 ms | 120 ms | 121 ms | +2.00 ms | +80.00 ms | ≤ +10 ms |",
		"| edit, baseline: no replication, 30s refresh | 5 | 0 | 14525 ms |",
		"1/350 of the baseline's",
		"counted 1200 replicated entries",
		"than the one-way latency (so not over the link: from its datacenter): 3.",
		"began: 1.50 2.00 2.50; as they ended: 1.60 2.00 2.40",
		"| geo: edit in region 1 → listed in region 2, p99 − one-way | +3.30 ms",
		"| geo: the same on a quiet link (messages up to 2.5s apart), p99 − one-way | +80.00 ms",
		"## Targets: 2 of 3 met",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "## propagation") {
		t.Errorf("report has a propagation section, which was not run:\n%s", md)
	}
}

// TestWAN starts the link in front of an echo server: bytes pass through
// it both ways, with a latency toxic of the one-way delay on each stream.
func TestWAN(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	w, err := startWAN([]Region{{N: 1, Cassandra: "127.0.0.1", DC: "dc1", Redis: ln.Addr().String()}}, 7*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)

	streams := map[string]int64{}
	for _, tx := range w.proxies[1].Toxics.GetToxicArray() {
		tw := tx.(*toxics.ToxicWrapper)
		lt, ok := tw.Toxic.(*toxics.LatencyToxic)
		if !ok || tw.Toxicity != 1 {
			t.Fatalf("toxic %+v, want a latency toxic on every connection", tw)
		}
		streams[tw.Stream] = lt.Latency
	}
	if len(streams) != 2 || streams["upstream"] != 7 || streams["downstream"] != 7 {
		t.Fatalf("latency (ms) by stream %v, want 7 each way", streams)
	}

	c, err := net.DialTimeout("tcp", w.Addr(1), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "PING\n"); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != "PING\n" {
		t.Fatalf("through the link: %q, %v; want the echo", line, err)
	}
}

func TestScrapeSum(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `# HELP groupcast_replicated_entries_total entries copied
# TYPE groupcast_replicated_entries_total counter
groupcast_replicated_entries_total{region="1"} 120
groupcast_replicated_entries_total{region="3"} 3
groupcast_replicated_entries_totally_else 1000
groupcast_replicated 7
`)
	}))
	defer srv.Close()
	got, err := scrapeSum(srv.URL, "groupcast_replicated_entries_total")
	if err != nil || got != 123 {
		t.Fatalf("scrapeSum = %v, %v; want 123", got, err)
	}
}

// TestGeoHarness runs both measurements against one embedded node as
// both regions: every sample after the warm-up is recorded once, none
// times out, no message arrives twice.
func TestGeoHarness(t *testing.T) {
	base := node(t)
	cfg := GeoConfig{R1: base, R2: base, Account: "bench", Samples: 5, Warm: 2, Jitter: time.Millisecond, Timeout: 2 * time.Second}
	edits, early, err := GeoEdits(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if edits.Count != 5 || edits.Errors != 0 {
		t.Fatalf("edits: %v, want 5 samples, no error", edits)
	}
	if early != 0 {
		t.Fatalf("edits: %d early with no floor, want 0", early)
	}
	// One node is both regions: every edit is listed well within an hour.
	cfg.Keep, cfg.Floor = true, time.Hour
	if edits, early, err = GeoEdits(context.Background(), cfg); err != nil || edits.Count != 5 || early != 5 {
		t.Fatalf("edits kept: %v, %d early, %v; want 5 samples, all early", edits, early, err)
	}
	msgs, err := GeoMessages(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if msgs.Sent.Count != 5 || msgs.Acked.Count != 5 || msgs.Sent.Errors != 0 || msgs.Duplicates != 0 {
		t.Fatalf("messages: %+v; want 5 samples from sending and from the answer, no error, no duplicate", msgs)
	}
}
