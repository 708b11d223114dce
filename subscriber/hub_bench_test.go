package subscriber

import (
	"fmt"
	"testing"
	"time"

	"github.com/groupcast/groupcast/channelgroups"
)

// benchHub is a hub of a node that runs nothing else, configured by cfg.
func benchHub(b *testing.B, cfg Config) *hub {
	b.Helper()
	if err := cfg.validate(); err != nil {
		b.Fatal(err)
	}
	h, err := newHub(&Node{cfg: cfg, now: cfg.Now})
	if err != nil {
		b.Fatal(err)
	}
	return h
}

// BenchmarkApplyMessage puts 1 KiB messages into the rings of 1,000
// channels, as the log consumer does: the hot path of every publish. With
// the default RingBytes they wrap by RingSize; with 1 MiB the byte cap
// evicts on every message.
func BenchmarkApplyMessage(b *testing.B) {
	for _, bc := range []struct {
		name  string
		bytes int64
	}{{"wrap", 0}, {"evict", 1 << 20}} {
		b.Run(bc.name, func(b *testing.B) {
			h := benchHub(b, Config{RingBytes: bc.bytes})
			chs := make([]channelgroups.Channel, 1000)
			for i := range chs {
				chs[i] = channelgroups.Channel(fmt.Sprintf("channel-%03d", i))
			}
			payload := make([]byte, 1024)
			ms := uint64(time.Now().UnixMilli())
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				m := &Message{Account: "acct", Channel: chs[i%len(chs)], Payload: payload, Pos: channelgroups.Position{Ms: ms, Seq: uint64(i)}}
				h.applyMessage(m)
			}
		})
	}
}

// BenchmarkCollect gathers a poll's deliveries from the ring of its one
// channel, 20 messages after its cursor (an answer under load), and from
// two channels (log order is then sorted in).
func BenchmarkCollect(b *testing.B) {
	h := benchHub(b, Config{})
	ms := uint64(h.n.now().UnixMilli())
	for i := range 40 {
		c := channelgroups.Channel([]string{"x", "y"}[i%2])
		h.applyMessage(&Message{Account: "acct", Channel: c, Payload: []byte("1"), Pos: channelgroups.Position{Ms: ms, Seq: uint64(i + 1)}})
	}
	for _, bc := range []struct {
		name     string
		channels []channelgroups.Channel
	}{{"one", []channelgroups.Channel{"x"}}, {"two", []channelgroups.Channel{"x", "y"}}} {
		b.Run(bc.name, func(b *testing.B) {
			req := PollRequest{Account: "acct", Channels: bc.channels}
			cut := channelgroups.Position{Ms: ms, Seq: 1 << 40}
			b.ReportAllocs()
			for b.Loop() {
				ds, ok := h.collect(req, 0, h.gen[0].Load(), channelgroups.Position{}, cut)
				if !ok || len(ds) < 20 {
					b.Fatalf("collected %d, ok %v", len(ds), ok)
				}
				ReleaseDeliveries(ds)
			}
		})
	}
}
