package cassandra

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/groupcast/groupcast/archive"
	"github.com/groupcast/groupcast/channelgroups"
	"github.com/groupcast/groupcast/internal/testenv"
)

// BenchmarkArchiveRead100 reads pages of 100 messages, newest first, from a
// channel of 10,000 (about 3.5 day buckets) on the real server, and reports
// the latency's p50 and p99 (HdrHistogram) beside ns/op.
func BenchmarkArchiveRead100(b *testing.B) {
	s, err := New(b.Context(), Config{Hosts: testenv.CassandraHosts(b), Keyspace: testenv.Keyspace(b)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	base := channelgroups.TimetokenOf(time.Now().Add(-10 * 24 * time.Hour))
	const n = 10_000
	msgs := make([]archive.Message, n)
	for i := range msgs {
		tt := base + channelgroups.Timetoken(i)*300_000_000 // 30 s apart
		msgs[i] = archive.Message{Account: "bench", Channel: "c", Timetoken: tt, Publisher: "u",
			Payload: json.RawMessage(`{"text":"a chat message of typical length, some sixty bytes"}`)}
	}
	for i := 0; i < n; i += 500 {
		if err := s.Append(b.Context(), msgs[i:i+500]); err != nil {
			b.Fatal(err)
		}
	}
	h := hdrhistogram.New(1, int64(10*time.Second/time.Microsecond), 3)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		// Pages ending anywhere in the channel, so some span two buckets.
		start := msgs[100+(i*7919)%(n-100)].Timetoken
		t0 := time.Now()
		got, _, err := s.Messages(b.Context(), archive.Query{Account: "bench", Channel: "c", Start: start, Max: 100})
		h.RecordValue(time.Since(t0).Microseconds())
		if err != nil || len(got) != 100 {
			b.Fatalf("read %d messages: %v", len(got), err)
		}
	}
	b.ReportMetric(float64(h.ValueAtQuantile(50)), "p50-µs")
	b.ReportMetric(float64(h.ValueAtQuantile(99)), "p99-µs")
}
