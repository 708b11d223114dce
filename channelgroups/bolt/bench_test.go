package bolt_test

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/groupcast/groupcast/channelgroups"
	"github.com/groupcast/groupcast/channelgroups/bolt"
)

// BenchmarkEditWithIdempotencyKey measures one edit sent with an
// Idempotency-Key as the HTTP layer makes it (Recall, Write, Remember) in a
// store already holding keys live replays. Issue 10 measured 12/26/47 ms per
// edit at 5k/10k/15k keys when Remember scanned every replay; with the
// expiry index the cost should not grow with keys.
//
//	go test -run '^$' -bench EditWithIdempotencyKey -benchtime 2000x ./channelgroups/bolt/
func BenchmarkEditWithIdempotencyKey(b *testing.B) {
	for _, keys := range []int{1_000, 15_000} {
		b.Run(fmt.Sprint("keys=", keys), func(b *testing.B) {
			s, err := bolt.Open(filepath.Join(b.TempDir(), "g.db"), bolt.Config{})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			ctx := b.Context()
			answer := []byte(`{"status":200,"message":"OK","service":"channel-registry","error":false}`)
			for i := range keys {
				if err := s.Remember(ctx, "acct", fmt.Sprint("live-", i), "fp", answer, time.Hour); err != nil {
					b.Fatal(err)
				}
			}
			at := channelgroups.TimetokenOf(time.Now())
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				key := fmt.Sprint("k-", i)
				if _, _, found, err := s.Recall(ctx, "acct", key); err != nil || found {
					b.Fatal(found, err)
				}
				e := channelgroups.Edit{Account: "acct", Group: "g", Op: channelgroups.OpAdd, Channels: []channelgroups.Channel{channelgroups.Channel(fmt.Sprint("c", i%1000))}, At: at + channelgroups.Timetoken(i)}
				if err := s.Write(ctx, e); err != nil {
					b.Fatal(err)
				}
				if err := s.Remember(ctx, "acct", key, "fp", answer, time.Hour); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
