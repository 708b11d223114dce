package channelgroups_test

import (
	"context"
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
	if _, err := s.Add(ctx, "a", "g", names("c", 4), channelgroups.IfMatch{}); err != nil {
		t.Fatal(err)
	}
	// Re-adding present channels does not count against the limit.
	if _, err := s.Add(ctx, "a", "g", append(names("c", 4), "x"), channelgroups.IfMatch{}); err != nil {
		t.Fatalf("adding up to the limit: %v", err)
	}
	if _, err := s.Add(ctx, "a", "g", []channelgroups.Channel{"y"}, channelgroups.IfMatch{}); !errors.Is(err, channelgroups.ErrTooManyChannels) {
		t.Fatalf("adding past the limit: %v, want ErrTooManyChannels", err)
	}
	snap, _ := s.Read(ctx, "a", "g")
	if snap.Count() != 5 {
		t.Fatalf("refused add changed the group: %d channels", snap.Count())
	}
	if _, err := s.Remove(ctx, "a", "g", []channelgroups.Channel{"x"}, channelgroups.IfMatch{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Add(ctx, "a", "g", []channelgroups.Channel{"y"}, channelgroups.IfMatch{}); err != nil {
		t.Fatalf("adding after a remove freed a place: %v", err)
	}
}

func TestServiceTimetokensIncrease(t *testing.T) {
	s := newService(t, channelgroups.ServiceConfig{})
	ctx := t.Context()
	t1, err := s.Add(ctx, "a", "g", names("c", 2), channelgroups.IfMatch{})
	if err != nil {
		t.Fatal(err)
	}
	t2, err := s.Remove(ctx, "a", "g", names("c", 1), channelgroups.IfMatch{})
	if err != nil {
		t.Fatal(err)
	}
	t3, err := s.Delete(ctx, "a", "g", channelgroups.IfMatch{})
	if err != nil {
		t.Fatal(err)
	}
	if !(t1.At < t2.At && t2.At < t3.At) {
		t.Fatalf("timetokens %v %v %v not increasing", t1.At, t2.At, t3.At)
	}
	// Without an announcer the edit is stored but its token says so.
	if t3.Token.Pending != t3.At || t3.Token.At != t3.At || t3.Token.Shard != channelgroups.ShardOf("a", channelgroups.DefaultShards) {
		t.Fatalf("token %+v", t3.Token)
	}
	snap, _ := s.Read(ctx, "a", "g")
	if snap.Version != t3.At || snap.Exists() {
		t.Fatalf("after delete: version %v exists %v", snap.Version, snap.Exists())
	}
	if _, err := s.Add(ctx, "a", "g", nil, channelgroups.IfMatch{}); !errors.Is(err, channelgroups.ErrNoChannels) {
		t.Fatalf("empty add: %v", err)
	}
}

type fakeAnnouncer struct {
	err  error
	seen []channelgroups.Edit
}

func (f *fakeAnnouncer) Announce(_ context.Context, e channelgroups.Edit) (channelgroups.Position, error) {
	f.seen = append(f.seen, e)
	return channelgroups.Position{Ms: 42, Seq: uint64(len(f.seen))}, f.err
}

func TestServiceAnnounces(t *testing.T) {
	ann := &fakeAnnouncer{}
	st, err := bolt.Open(filepath.Join(t.TempDir(), "g.db"), bolt.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s, err := channelgroups.NewService(st, channelgroups.NewClock(nil, 0), channelgroups.ServiceConfig{Region: 3, Shards: 8, Announcer: ann})
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.Add(t.Context(), "acct", "g", names("c", 2), channelgroups.IfMatch{})
	if err != nil {
		t.Fatal(err)
	}
	want := channelgroups.Token{Shard: channelgroups.ShardOf("acct", 8), At: r.At, Origin: 3,
		Positions: []channelgroups.RegionPosition{{Region: 3, Pos: channelgroups.Position{Ms: 42, Seq: 1}}}}
	if r.Token.Pending != 0 || r.Token.Shard != want.Shard || r.Token.Position(3) != want.Positions[0].Pos || r.Token.Origin != 3 {
		t.Fatalf("token %+v, want %+v", r.Token, want)
	}
	if len(ann.seen) != 1 || ann.seen[0].At != r.At || ann.seen[0].Shard != want.Shard {
		t.Fatalf("announced %+v", ann.seen)
	}
	// The log is down: the edit still succeeds (it is durable), with an unannounced token.
	ann.err = fmt.Errorf("redis down: %w", channelgroups.ErrUnannounced)
	r, err = s.Remove(t.Context(), "acct", "g", names("c", 1), channelgroups.IfMatch{})
	if err != nil || r.Token.Pending != r.At || len(r.Token.Positions) != 0 {
		t.Fatalf("with the log down: %+v, %v", r, err)
	}
	pending, _ := st.Pending(t.Context(), want.Shard, 10)
	if len(pending) != 2 {
		t.Fatalf("outbox holds %d edits, want both (nothing marked announced yet)", len(pending))
	}
	// Any other announcer error fails the edit.
	ann.err = errors.New("boom")
	if _, err := s.Delete(t.Context(), "acct", "g", channelgroups.IfMatch{}); err == nil {
		t.Fatal("edit succeeded despite an unexpected announcer error")
	}
}

func TestServiceIfMatch(t *testing.T) {
	s := newService(t, channelgroups.ServiceConfig{})
	ctx := t.Context()
	r1, err := s.Add(ctx, "a", "g", names("c", 1), channelgroups.IfMatch{Version: 0, Set: true}) // "the group does not exist yet"
	if err != nil {
		t.Fatalf("If-Match 0 on a new group: %v", err)
	}
	_, err = s.Remove(ctx, "a", "g", names("c", 1), channelgroups.IfMatch{Version: r1.At - 10, Set: true})
	var mismatch *channelgroups.VersionMismatchError
	if !errors.As(err, &mismatch) || mismatch.Current != r1.At || !errors.Is(err, channelgroups.ErrVersionMismatch) {
		t.Fatalf("stale If-Match: %v, want a mismatch reporting version %v", err, r1.At)
	}
	snap, _ := s.Read(ctx, "a", "g")
	if snap.Count() != 1 {
		t.Fatal("a failed If-Match changed the group")
	}
	if _, err := s.Delete(ctx, "a", "g", channelgroups.IfMatch{Version: r1.At, Set: true}); err != nil {
		t.Fatalf("matching If-Match: %v", err)
	}
}

// TestServiceSaysWhatWasHeld: every edit tells the log which of its
// channels the group held before it, so a reader can tell an edit that
// changed nothing from one that did.
func TestServiceSaysWhatWasHeld(t *testing.T) {
	ann := &fakeAnnouncer{}
	s := newService(t, channelgroups.ServiceConfig{Announcer: ann})
	ctx := t.Context()
	steps := []struct {
		do   func() error
		want []channelgroups.Channel
	}{
		{func() error {
			_, err := s.Add(ctx, "a", "g", []channelgroups.Channel{"x", "y"}, channelgroups.IfMatch{})
			return err
		}, nil},
		{func() error {
			_, err := s.Add(ctx, "a", "g", []channelgroups.Channel{"y", "z"}, channelgroups.IfMatch{})
			return err
		}, []channelgroups.Channel{"y"}},
		{func() error {
			_, err := s.Remove(ctx, "a", "g", []channelgroups.Channel{"x", "w"}, channelgroups.IfMatch{})
			return err
		}, []channelgroups.Channel{"x"}},
		{func() error { _, err := s.Delete(ctx, "a", "g", channelgroups.IfMatch{}); return err }, []channelgroups.Channel{"y", "z"}},
	}
	for i, st := range steps {
		if err := st.do(); err != nil {
			t.Fatal(err)
		}
		e := ann.seen[len(ann.seen)-1]
		if !e.HeldKnown || fmt.Sprint(e.Held) != fmt.Sprint(st.want) {
			t.Fatalf("edit %d (%v): Held %v (known %t), want %v", i, e.Op, e.Held, e.HeldKnown, st.want)
		}
	}
}
