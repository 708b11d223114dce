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
