package channelgroups_test

import (
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/groupcast/groupcast/channelgroups"
	"github.com/groupcast/groupcast/channelgroups/bolt"
)

func newService(t *testing.T, cfg channelgroups.ServiceConfig) *channelgroups.Service {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "g.db"), bolt.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	s, err := channelgroups.NewService(st, channelgroups.NewClock(nil, 0), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func names(prefix string, n int) []channelgroups.Channel {
	out := make([]channelgroups.Channel, n)
	for i := range out {
		out[i] = channelgroups.Channel(fmt.Sprintf("%s%d", prefix, i))
	}
	return out
}

func TestServiceGroupLimit(t *testing.T) {
	s := newService(t, channelgroups.ServiceConfig{MaxChannelsPerGroup: 5})
	ctx := t.Context()
	if _, err := s.Add(ctx, "a", "g", names("c", 4)); err != nil {
		t.Fatal(err)
	}
	// Re-adding present channels does not count against the limit.
	if _, err := s.Add(ctx, "a", "g", append(names("c", 4), "x")); err != nil {
		t.Fatalf("adding up to the limit: %v", err)
	}
	if _, err := s.Add(ctx, "a", "g", []channelgroups.Channel{"y"}); !errors.Is(err, channelgroups.ErrTooManyChannels) {
		t.Fatalf("adding past the limit: %v, want ErrTooManyChannels", err)
	}
	snap, _ := s.Read(ctx, "a", "g")
	if snap.Count() != 5 {
		t.Fatalf("refused add changed the group: %d channels", snap.Count())
	}
	if _, err := s.Remove(ctx, "a", "g", []channelgroups.Channel{"x"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Add(ctx, "a", "g", []channelgroups.Channel{"y"}); err != nil {
		t.Fatalf("adding after a remove freed a place: %v", err)
	}
}

func TestServiceTimetokensIncrease(t *testing.T) {
	s := newService(t, channelgroups.ServiceConfig{})
	ctx := t.Context()
	t1, err := s.Add(ctx, "a", "g", names("c", 2))
	if err != nil {
		t.Fatal(err)
	}
	t2, err := s.Remove(ctx, "a", "g", names("c", 1))
	if err != nil {
		t.Fatal(err)
	}
	t3, err := s.Delete(ctx, "a", "g")
	if err != nil {
		t.Fatal(err)
	}
	if !(t1 < t2 && t2 < t3) {
		t.Fatalf("timetokens %v %v %v not increasing", t1, t2, t3)
	}
	snap, _ := s.Read(ctx, "a", "g")
	if snap.Version != t3 || snap.Exists() {
		t.Fatalf("after delete: version %v exists %v", snap.Version, snap.Exists())
	}
	if _, err := s.Add(ctx, "a", "g", nil); !errors.Is(err, channelgroups.ErrNoChannels) {
		t.Fatalf("empty add: %v", err)
	}
}
