package channelgroups_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/groupcast/groupcast/channelgroups"
	"github.com/groupcast/groupcast/channelgroups/bolt"
)

// TestServiceSerialisesAdds: the Service's own check holds under racing
// adds to one group, even over a store that enforces no cap (the Cassandra
// case; here bbolt with its cap set out of reach). Issue 10's probe, 20
// parallel adds of 200 channels, left 4,000 channels.
func TestServiceSerialisesAdds(t *testing.T) {
	st, err := bolt.Open(filepath.Join(t.TempDir(), "g.db"), bolt.Config{MaxChannelsPerGroup: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	s, err := channelgroups.NewService(st, channelgroups.NewClock(nil, 0), channelgroups.ServiceConfig{})
	if err != nil {
		t.Fatal(err)
	}
	const adders, each = 20, channelgroups.MaxChannelsPerEdit
	errs := make([]error, adders)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range adders {
		wg.Go(func() {
			<-start
			_, errs[i] = s.Add(t.Context(), "a", "g", names(fmt.Sprint("c", i, "-"), each), channelgroups.IfMatch{})
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
	snap, err := s.Read(t.Context(), "a", "g")
	if err != nil {
		t.Fatal(err)
	}
	if got := snap.Count(); got != channelgroups.MaxChannelsPerGroup || ok != got/each {
		t.Fatalf("group holds %d channels after %d accepted adds; want %d", got, ok, channelgroups.MaxChannelsPerGroup)
	}
}

// TestServiceAddWaitsWithContext: an add queued behind another add to the
// same group gives up when its context ends, and adds to other groups are
// not held up.
func TestServiceAddWaitsWithContext(t *testing.T) {
	st := &blockingStore{Store: mustBolt(t), hold: "g", entered: make(chan struct{}), release: make(chan struct{})}
	s, err := channelgroups.NewService(st, channelgroups.NewClock(nil, 0), channelgroups.ServiceConfig{})
	if err != nil {
		t.Fatal(err)
	}
	first := make(chan error, 1)
	go func() {
		_, err := s.Add(t.Context(), "a", "g", names("x", 1), channelgroups.IfMatch{})
		first <- err
	}()
	<-st.entered // the first add holds the group
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := s.Add(ctx, "a", "g", names("y", 1), channelgroups.IfMatch{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("add queued behind another: %v, want context.DeadlineExceeded", err)
	}
	if _, err := s.Add(t.Context(), "a", "other", names("z", 1), channelgroups.IfMatch{}); err != nil {
		t.Fatal(err)
	}
	close(st.release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
}

func mustBolt(t *testing.T) *bolt.Store {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "g.db"), bolt.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// blockingStore holds the first Read of group hold until release is closed.
type blockingStore struct {
	channelgroups.Store
	hold             channelgroups.Group
	entered, release chan struct{}
	reads            atomic.Int32
}

func (s *blockingStore) Read(ctx context.Context, a channelgroups.Account, g channelgroups.Group) (channelgroups.Snapshot, error) {
	if g == s.hold && s.reads.Add(1) == 1 {
		close(s.entered)
		<-s.release
	}
	return s.Store.Read(ctx, a, g)
}
