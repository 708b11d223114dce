package subscriber

import (
	"fmt"
	"testing"
	"time"

	"github.com/groupcast/groupcast/channelgroups"
)

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
			cfg := Config{RingBytes: bc.bytes}
			if err := cfg.validate(); err != nil {
				b.Fatal(err)
			}
			n := &Node{cfg: cfg, now: cfg.Now}
			h, err := newHub(n)
			if err != nil {
				b.Fatal(err)
			}
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
