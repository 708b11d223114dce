package bench

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestReadSmallResponse(t *testing.T) {
	in := "HTTP/1.1 200 OK\r\nServer: groupcast\r\ncontent-length: 44\r\n\r\n" + `{"t":{"t":"17959942787177970","r":1},"m":[]}` +
		"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 2\r\nRetry-After: 1\r\n\r\n{}"
	br := bufio.NewReader(strings.NewReader(in))
	status, body, err := readSmallResponse(br, nil)
	if err != nil || status != 200 {
		t.Fatalf("first answer: got %d %q %v, want 200", status, body, err)
	}
	if c, ok := cursorOf(body); !ok || c != "17959942787177970" {
		t.Fatalf("cursorOf(%s) = %q, %v; want 17959942787177970", body, c, ok)
	}
	status, body, err = readSmallResponse(br, body)
	if err != nil || status != 503 || string(body) != "{}" {
		t.Fatalf("second answer: got %d %q %v, want 503 {}", status, body, err)
	}
	for _, bad := range []string{"", "HTTP/1.1 200 OK\r\n\r\n", "SMTP 220 hi\r\n\r\n", "HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: -\r\n\r\n"} {
		if _, _, err := readSmallResponse(bufio.NewReader(strings.NewReader(bad)), nil); err == nil {
			t.Errorf("readSmallResponse(%q) accepted", bad)
		}
	}
}

func FuzzReadSmallResponse(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 44\r\n\r\n" + `{"t":{"t":"17959942787177970","r":1},"m":[]}`))
	f.Add([]byte("HTTP/1.1 400 Bad\r\nContent-Length: 3\r\n\r\n{}"))
	f.Fuzz(func(t *testing.T, in []byte) {
		status, body, err := readSmallResponse(bufio.NewReader(bytes.NewReader(in)), nil)
		if err != nil {
			return
		}
		if status < 0 || status > 999 || len(body) > len(in) {
			t.Fatalf("status %d, %d body bytes from %d input bytes", status, len(body), len(in))
		}
		if c, ok := cursorOf(body); ok && (c == "" || strings.Contains(c, `"`)) {
			t.Fatalf("cursorOf(%q) = %q", body, c)
		}
	})
}

func TestTrends(t *testing.T) {
	series := func(rss func(i int) float64) []SoakSample {
		var ss []SoakSample
		for i := range 30 {
			ss = append(ss, SoakSample{At: time.Duration(i+1) * 10 * time.Second, RSS: rss(i), Goroutines: 1000 + float64(i%3), FDs: 1010})
		}
		return ss
	}
	flat := SoakResult{Config: SoakConfig{Subscribers: 1000, Rate: 60, Duration: 5 * time.Minute}, Samples: series(func(i int) float64 { return float64(60+i%5*4) * (1 << 20) })}
	flat.Trends = trends(flat.Samples)
	if !flat.Flat() {
		t.Errorf("a sawtooth around 68 MiB: got %s, want flat", flat.Verdict())
	}
	// 1 MiB more every sample: 20 MiB over the last 2/3, past 10% of ~80 MiB.
	growing := SoakResult{Samples: series(func(i int) float64 { return float64(60+i) * (1 << 20) })}
	growing.Trends = trends(growing.Samples)
	if growing.Flat() || growing.Trends[0].Flat || !growing.Trends[1].Flat || !strings.Contains(growing.Verdict(), "GROWING") {
		t.Errorf("RSS growing 6 MiB/min: got %s, want RSS not flat, goroutines flat", growing.Verdict())
	}
	// A spike at the end of the window (goroutines at the moment of a burst)
	// and a late GC in the middle do not make a flat run grow.
	spiky := SoakResult{Samples: series(func(i int) float64 {
		if i == 15 {
			return 90 << 20
		}
		return 60 << 20
	})}
	spiky.Samples[len(spiky.Samples)-1].Goroutines = 1500
	spiky.Trends = trends(spiky.Samples)
	if !spiky.Flat() {
		t.Errorf("flat with two spikes: got %s, want flat", spiky.Verdict())
	}
	falling := SoakResult{Samples: series(func(i int) float64 { return float64(100-i) * (1 << 20) })}
	falling.Trends = trends(falling.Samples)
	if !falling.Flat() || !strings.Contains(falling.Verdict(), "RSS -") || !strings.Contains(falling.Verdict(), "falling") {
		t.Errorf("RSS falling: got %s, want it called falling, and the run flat", falling.Verdict())
	}
	if short := (SoakResult{Samples: series(func(int) float64 { return 1 })[:3]}); len(trends(short.Samples)) != 0 || short.Flat() {
		t.Errorf("3 samples: got a verdict, want none (2 in the last 2/3)")
	}
}

// TestSoakRecordsLatency: each message of an answer counts once, its
// latency from the due time it carries; an answer without messages counts
// nothing, and each reading starts anew.
func TestSoakRecordsLatency(t *testing.T) {
	s := &soaker{lat: newHistogram()}
	now := time.UnixMicro(10_000_000)
	body := `{"t":{"t":"1","r":1},"m":[{"a":"1","f":0,"i":"x","p":{"t":"1","r":1},"k":"soak","c":"soak","d":9990000},` +
		`{"a":"1","f":0,"i":"x","p":{"t":"2","r":1},"k":"soak","c":"soak","d":9900000}]}`
	s.record([]byte(body), now)
	s.record([]byte(`{"t":{"t":"3","r":1},"m":[]}`), now)
	if n := s.lat.TotalCount(); n != 2 {
		t.Fatalf("recorded %d latencies, want 2", n)
	}
	p50, p99 := s.latencies()
	if p50 < 9.9 || p50 > 10.1 || p99 < 99 || p99 > 101 {
		t.Fatalf("p50 %.2f ms, p99 %.2f ms; want 10 and 100", p50, p99)
	}
	if p50, p99 := s.latencies(); p50 != 0 || p99 != 0 {
		t.Fatalf("after a reading: p50 %.2f, p99 %.2f; want 0, 0", p50, p99)
	}
}

// TestSoakPlots: a soak's samples draw the three plots.
func TestSoakPlots(t *testing.T) {
	r := SoakResult{}
	for i := range 4 {
		r.Samples = append(r.Samples, SoakSample{At: time.Duration(i+1) * 10 * time.Second, RSS: float64(40+i) * (1 << 20), HeapGoal: 8 << 20, Goroutines: 30, FDs: 1010, Parked: 1000, P50: 1, P99: 3})
	}
	dir := t.TempDir()
	files, err := r.WritePlots(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 3 {
		t.Fatalf("wrote %v, want 3 plots", files)
	}
	for _, f := range files {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Size() == 0 {
			t.Fatalf("%s: %v (%v)", f, st, err)
		}
	}
}
