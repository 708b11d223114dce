package bolt

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/groupcast/groupcast/archive"
	"github.com/groupcast/groupcast/archive/archivetest"
	"github.com/groupcast/groupcast/channelgroups"
)

// TestArchiveSweep: expired messages are purged from the file by later
// appends, a bounded batch at a time, not only hidden.
func TestArchiveSweep(t *testing.T) {
	clock := archivetest.NewClock(time.Now())
	s := openInternal(t, filepath.Join(t.TempDir(), "g.db"), Config{Now: clock.Now})
	ctx := context.Background()
	tt := channelgroups.TimetokenOf(clock.Now().Add(-time.Hour))
	var msgs []archive.Message
	for i := range 200 {
		msgs = append(msgs, archive.Message{Account: "a", Channel: "c", Timetoken: tt + channelgroups.Timetoken(i*10),
			Payload: []byte(`1`), Expires: clock.Now().Add(time.Minute)})
	}
	if err := s.Append(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Hour)
	// Each append of one message sweeps at most 1+64 expired ones.
	for i, want := range []int{200 - 65, 200 - 130, 200 - 195, 0} {
		fresh := archive.Message{Account: "a", Channel: "d", Timetoken: tt + channelgroups.Timetoken(i), Payload: []byte(`1`)}
		if err := s.Append(ctx, []archive.Message{fresh}); err != nil {
			t.Fatal(err)
		}
		if got := rows(t, s, bucketArchive) - (i + 1); got != want {
			t.Fatalf("after append %d: %d message rows of channel c in the file, want %d", i+1, got, want)
		}
	}
}

// FuzzDecodeArchived: the decoders of archived rows never panic on any
// bytes (a damaged page is reported, not a crash), and what
// encodeMessage and encodeAction write decodes to what was encoded.
func FuzzDecodeArchived(f *testing.F) {
	f.Add([]byte(`{"a":1}`), "u", "t", []byte(`{"m":2}`), true, int64(0))
	f.Add([]byte(`1`), "", "", []byte(nil), false, int64(1_700_000_000_000_000))
	f.Add([]byte{}, "ü", "x\x00y", []byte{}, true, int64(-1))
	f.Fuzz(func(t *testing.T, payload []byte, pub, cmt string, meta []byte, hasMeta bool, exp int64) {
		_, _ = decodeMessage(payload) // arbitrary bytes as a row
		var act archive.Action
		_ = decodeAction(payload, &act)
		m := archive.Message{Payload: payload, Publisher: pub, CustomType: cmt, Type: archive.TypeFile, Expires: fromMicros(exp)}
		if hasMeta {
			m.Meta = append([]byte{}, meta...)
		}
		got, err := decodeMessage(encodeMessage(m))
		if err != nil {
			t.Fatalf("decode(encode(%+v)): %v", m, err)
		}
		if string(got.Payload) != string(m.Payload) || got.Publisher != pub || got.CustomType != cmt || got.Type != m.Type ||
			(got.Meta == nil) != (m.Meta == nil) || string(got.Meta) != string(m.Meta) || micros(got.Expires) != micros(m.Expires) {
			t.Fatalf("decode(encode(%+v)) = %+v", m, got)
		}
		a := archive.Action{Type: pub, Value: cmt, Publisher: string(payload), Expires: fromMicros(exp)}
		var back archive.Action
		if err := decodeAction(encodeAction(a), &back); err != nil || back.Type != a.Type || back.Value != a.Value ||
			back.Publisher != a.Publisher || micros(back.Expires) != micros(a.Expires) {
			t.Fatalf("action round trip: %+v → %+v, %v", a, back, err)
		}
	})
}
