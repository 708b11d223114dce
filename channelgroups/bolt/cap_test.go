package bolt_test

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/groupcast/groupcast/channelgroups"
	"github.com/groupcast/groupcast/channelgroups/bolt"
)

func channels(prefix string, n int) []channelgroups.Channel {
	out := make([]channelgroups.Channel, n)
	for i := range out {
		out[i] = channelgroups.Channel(fmt.Sprintf("%s-%d", prefix, i))
	}
	return out
}

// TestCapHoldsUnderRacingAdds is issue 10's probe: 20 adds of 200 distinct
// channels each, all at once, to one group. With a Service per goroutine
// (as many nodes) nothing but the store's transaction stands between them
// and the cap: exactly ten adds fit, the others are refused with
// ErrTooManyChannels (HTTP 400), and the group holds 2,000 channels.
func TestCapHoldsUnderRacingAdds(t *testing.T) {
	for _, shared := range []bool{true, false} {
		t.Run(fmt.Sprintf("one service=%v", shared), func(t *testing.T) {
			st := open(t, bolt.Config{})
			clock := channelgroups.NewClock(nil, 0)
			newService := func() *channelgroups.Service {
				s, err := channelgroups.NewService(st, clock, channelgroups.ServiceConfig{})
				if err != nil {
					t.Fatal(err)
				}
				return s
			}
			svc := newService()
			const adders, each = 20, channelgroups.MaxChannelsPerEdit
			errs := make([]error, adders)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i := range adders {
				s := svc
				if !shared {
					s = newService()
				}
				wg.Go(func() {
					<-start
					_, errs[i] = s.Add(t.Context(), "a", "g", channels(fmt.Sprint("c", i), each), channelgroups.IfMatch{})
				})
			}
			close(start)
			wg.Wait()
			ok := 0
			for i, err := range errs {
				switch {
				case err == nil:
					ok++
				case !errors.Is(err, channelgroups.ErrTooManyChannels):
					t.Errorf("add %d: %v, want nil or ErrTooManyChannels", i, err)
				}
			}
			snap, err := st.Read(t.Context(), "a", "g")
			if err != nil {
				t.Fatal(err)
			}
			if got, max := snap.Count(), channelgroups.MaxChannelsPerGroup; got > max || ok != max/each || got != ok*each {
				t.Fatalf("group holds %d channels after %d accepted adds of %d; want %d adds, %d channels", got, ok, each, max/each, max)
			}
		})
	}
}

// TestStoreCap checks the store's own rule: an add that would take a group
// past the cap writes nothing, not even its outbox record; a group already
// over the cap (the cap was lowered) takes no add that grows it, while
// removes and re-adds of present channels go through.
func TestStoreCap(t *testing.T) {
	path := filepath.Join(t.TempDir(), "groups.db")
	s, err := bolt.Open(path, bolt.Config{MaxChannelsPerGroup: 5})
	if err != nil {
		t.Fatal(err)
	}
	at := channelgroups.Timetoken(17e15)
	edit := func(op channelgroups.Op, chs ...channelgroups.Channel) error {
		at += 10
		return s.Write(t.Context(), channelgroups.Edit{Account: "a", Group: "g", Shard: 7, Op: op, Channels: chs, At: at})
	}
	count := func() int {
		t.Helper()
		snap, err := s.Read(t.Context(), "a", "g")
		if err != nil {
			t.Fatal(err)
		}
		return snap.Count()
	}
	if err := edit(channelgroups.OpAdd, channels("c", 4)...); err != nil {
		t.Fatal(err)
	}
	if err := edit(channelgroups.OpAdd, channels("d", 2)...); !errors.Is(err, channelgroups.ErrTooManyChannels) {
		t.Fatalf("add past the cap: %v, want ErrTooManyChannels", err)
	}
	if n := count(); n != 4 {
		t.Fatalf("refused add changed the group: %d channels", n)
	}
	if p, err := s.Pending(t.Context(), 7, 10); err != nil || len(p) != 1 {
		t.Fatalf("outbox holds %d records (%v), want only the accepted add's", len(p), err)
	}
	// Removed channels free their places; a re-add does not take a new one.
	if err := edit(channelgroups.OpRemove, "c-0"); err != nil {
		t.Fatal(err)
	}
	if err := edit(channelgroups.OpAdd, append(channels("c", 4), "x", "y")[1:]...); err != nil {
		t.Fatalf("add up to the cap after a remove: %v", err)
	}
	if n := count(); n != 5 {
		t.Fatalf("%d channels, want 5", n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Lowered cap: the group is over it.
	s, err = bolt.Open(path, bolt.Config{MaxChannelsPerGroup: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := edit(channelgroups.OpAdd, "z"); !errors.Is(err, channelgroups.ErrTooManyChannels) {
		t.Fatalf("add to a group over the cap: %v, want ErrTooManyChannels", err)
	}
	if err := edit(channelgroups.OpAdd, "x"); err != nil {
		t.Fatalf("re-add of a present channel to a group over the cap: %v", err)
	}
	if err := edit(channelgroups.OpRemove, "x", "y", "c-1"); err != nil {
		t.Fatalf("remove from a group over the cap: %v", err)
	}
	if err := edit(channelgroups.OpAdd, "z"); err != nil {
		t.Fatalf("add once back under the cap: %v", err)
	}
	if n := count(); n != 3 {
		t.Fatalf("%d channels, want 3", n)
	}
	// A delete empties the count too.
	if err := edit(channelgroups.OpClear); err != nil {
		t.Fatal(err)
	}
	if err := edit(channelgroups.OpAdd, channels("e", 3)...); err != nil {
		t.Fatalf("add of 3 after delete: %v", err)
	}
}
