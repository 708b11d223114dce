// Package archivetest is the conformance suite every archive.Store must
// pass. It runs against archive.Memory, the embedded bbolt store and a real
// Cassandra, so that all give the same answers.
package archivetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/groupcast/groupcast/archive"
	"github.com/groupcast/groupcast/channelgroups"
)

// Options tunes the suite for a store.
type Options struct {
	// Advance moves the store's clock forward by d, for stores whose clock
	// the test owns (Memory, bbolt with Config.Now). Nil means the store ages
	// messages by real time (Cassandra's TTL): the expiry test then uses a
	// short real TTL and polls with a deadline.
	Advance func(d time.Duration)
	// Now is the store's clock; nil means time.Now.
	Now func() time.Time
	// ExpiryDeadline bounds the polling of real expiry; zero means 30s.
	ExpiryDeadline time.Duration
	// AppendThrough says the store implements archive.AppendThrougher, which
	// the suite then checks; a store that implements it without saying so
	// (or says so without implementing it) fails.
	AppendThrough bool
}

// Run runs the suite. open may return a store shared between the suite's
// tests: each uses accounts of its own, and checkpoints of shards of its own.
func Run(t *testing.T, open func(t *testing.T) archive.Store, opt Options) {
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.ExpiryDeadline == 0 {
		opt.ExpiryDeadline = 30 * time.Second
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, s archive.Store, opt Options)
	}{
		{"RoundTrip", testRoundTrip},
		{"PageBackward10k", testPageBackward},
		{"PageForward10k", testPageForward},
		{"Bounds", testBounds},
		{"Reverse", testReverse},
		{"IdempotentAppend", testIdempotentAppend},
		{"Count", testCount},
		{"Delete", testDelete},
		{"DeleteSurvivesReplay", testDeleteSurvivesReplay},
		{"DeleteStopsAtNow", testDeleteStopsAtNow},
		{"Actions", testActions},
		{"Expiry", testExpiry},
		{"Checkpoints", testCheckpoints},
		{"Isolation", testIsolation},
		{"BadInput", testBadInput},
		{"CanceledContext", testCanceledContext},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t), opt) })
	}
	t.Run("AppendThrough", func(t *testing.T) {
		s := open(t)
		at, ok := s.(archive.AppendThrougher)
		if ok != opt.AppendThrough {
			t.Fatalf("store implements archive.AppendThrougher: %v, Options.AppendThrough: %v", ok, opt.AppendThrough)
		}
		if ok {
			testAppendThrough(t, s, at, opt)
		}
	})
}

// testAppendThrough: the batch and the checkpoints are stored together; a
// batch the store refuses, or a bad shard, stores nothing and moves no
// checkpoint.
func testAppendThrough(t *testing.T, s archive.Store, at archive.AppendThrougher, opt Options) {
	ctx := t.Context()
	a := account(t)
	sh := shardBase()
	tts := series(base(opt), 4, time.Second)
	p1 := channelgroups.Position{Ms: 1_700_000_000_000, Seq: 1}
	p2 := channelgroups.Position{Ms: 1_700_000_000_002, Seq: 0}
	if err := at.AppendThrough(ctx, []archive.Message{msg(a, "c", tts[0]), msg(a, "c", tts[1])}, map[int]channelgroups.Position{sh: p1, sh + 1: p2}); err != nil {
		t.Fatalf("AppendThrough: %v", err)
	}
	check := func(want []channelgroups.Timetoken, cp0, cp1 channelgroups.Position) {
		t.Helper()
		got, _ := query(t, s, archive.Query{Account: a, Channel: "c", Max: 10})
		if !slices.Equal(tokens(got), want) {
			t.Fatalf("stored %v, want %v", tokens(got), want)
		}
		for shard, want := range map[int]channelgroups.Position{sh: cp0, sh + 1: cp1} {
			if p, err := s.Checkpoint(ctx, shard); err != nil || p != want {
				t.Fatalf("Checkpoint(%d) = %v, %v; want %v", shard, p, err, want)
			}
		}
	}
	check(tts[:2], p1, p2)

	bad := msg(a, "c", tts[3])
	bad.Payload = json.RawMessage(`{"a":`)
	p3 := channelgroups.Position{Ms: 1_700_000_000_003, Seq: 0}
	if err := at.AppendThrough(ctx, []archive.Message{msg(a, "c", tts[2]), bad}, map[int]channelgroups.Position{sh: p3}); !errors.Is(err, archive.ErrInvalid) {
		t.Fatalf("AppendThrough with a message not JSON: %v, want ErrInvalid", err)
	}
	if err := at.AppendThrough(ctx, []archive.Message{msg(a, "c", tts[2])}, map[int]channelgroups.Position{sh: p3, -1: p3}); !errors.Is(err, archive.ErrInvalid) {
		t.Fatalf("AppendThrough with shard -1: %v, want ErrInvalid", err)
	}
	check(tts[:2], p1, p2)

	if err := at.AppendThrough(ctx, []archive.Message{msg(a, "c", tts[2])}, nil); err != nil {
		t.Fatalf("AppendThrough without checkpoints: %v", err)
	}
	check(tts[:3], p1, p2)
}

var seq atomic.Int64

// account returns an account name no other test of this process uses.
func account(t *testing.T) channelgroups.Account {
	return channelgroups.Account(fmt.Sprintf("sub-c-at%d-%d", time.Now().UnixNano()%1e9, seq.Add(1)))
}

// shardBase returns shard numbers no other test of this process uses.
func shardBase() int { return 1000 + int(seq.Add(1))*10 + int(time.Now().UnixNano()%1e6)*100 }

// base is a timetoken ten days before now: messages at and after it are in
// the past (so Delete reaches them) and spread over several day buckets.
func base(opt Options) channelgroups.Timetoken {
	return channelgroups.TimetokenOf(opt.Now().Add(-10 * 24 * time.Hour))
}

func msg(a channelgroups.Account, c channelgroups.Channel, tt channelgroups.Timetoken) archive.Message {
	return archive.Message{
		Account: a, Channel: c, Timetoken: tt,
		Payload:   json.RawMessage(`{"n":"` + tt.String() + `"}`),
		Publisher: "pub-" + tt.String(),
	}
}

func appendAll(t *testing.T, s archive.Store, msgs []archive.Message) {
	t.Helper()
	for len(msgs) > 0 {
		n := min(len(msgs), 500)
		if err := s.Append(t.Context(), msgs[:n]); err != nil {
			t.Fatalf("Append: %v", err)
		}
		msgs = msgs[n:]
	}
}

func query(t *testing.T, s archive.Store, q archive.Query) ([]archive.Message, bool) {
	t.Helper()
	got, more, err := s.Messages(t.Context(), q)
	if err != nil {
		t.Fatalf("Messages(%+v): %v", q, err)
	}
	return got, more
}

func tokens(msgs []archive.Message) []channelgroups.Timetoken {
	out := make([]channelgroups.Timetoken, len(msgs))
	for i, m := range msgs {
		out[i] = m.Timetoken
	}
	return out
}

// series returns n timetokens from b, step apart.
func series(b channelgroups.Timetoken, n int, step time.Duration) []channelgroups.Timetoken {
	out := make([]channelgroups.Timetoken, n)
	for i := range out {
		out[i] = b + channelgroups.Timetoken(int64(i)*int64(step/100))
	}
	return out
}

func store(t *testing.T, s archive.Store, a channelgroups.Account, c channelgroups.Channel, tts []channelgroups.Timetoken) {
	t.Helper()
	msgs := make([]archive.Message, len(tts))
	for i, tt := range tts {
		msgs[i] = msg(a, c, tt)
	}
	appendAll(t, s, msgs)
}

func testRoundTrip(t *testing.T, s archive.Store, opt Options) {
	a := account(t)
	tt := base(opt)
	want := []archive.Message{
		{Account: a, Channel: "c", Timetoken: tt, Payload: json.RawMessage(`"hello"`), Publisher: "u1",
			Meta: json.RawMessage(`{"k":[1,2]}`), CustomType: "text-msg", Type: archive.TypeMessage},
		{Account: a, Channel: "c", Timetoken: tt + 10, Payload: json.RawMessage(`{"file":{"id":"x"}}`),
			Type: archive.TypeFile},
		{Account: a, Channel: "c", Timetoken: tt + 20, Payload: json.RawMessage(`[1,"ü",null]`), Publisher: "u2",
			Expires: opt.Now().Add(24 * time.Hour).Truncate(time.Second)},
	}
	appendAll(t, s, want)
	got, more := query(t, s, archive.Query{Account: a, Channel: "c", Max: 10})
	if more || len(got) != len(want) {
		t.Fatalf("got %d messages (more %v), want %d (more false)", len(got), more, len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Account != w.Account || g.Channel != w.Channel || g.Timetoken != w.Timetoken || string(g.Payload) != string(w.Payload) ||
			g.Publisher != w.Publisher || string(g.Meta) != string(w.Meta) || g.CustomType != w.CustomType || g.Type != w.Type ||
			(w.Meta == nil) != (g.Meta == nil) {
			t.Errorf("message %d: got %+v, want %+v", i, g, w)
		}
		if !g.Expires.Equal(w.Expires) && (w.Expires.IsZero() || g.Expires.Sub(w.Expires).Abs() > time.Second) {
			t.Errorf("message %d expires %v, want %v (to the second)", i, g.Expires, w.Expires)
		}
	}
}

// page10k stores 10,000 messages 30 s apart (about three and a half days,
// so several day buckets) and checks that paging returns each once, in
// order.
func page10k(t *testing.T, s archive.Store, opt Options, reverse bool) {
	a := account(t)
	all := series(base(opt), 10_000, 30*time.Second)
	shuffled := slices.Clone(all)
	rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	store(t, s, a, "big", shuffled)
	var seen []channelgroups.Timetoken
	q := archive.Query{Account: a, Channel: "big", Max: 100, Reverse: reverse}
	for pages := 0; ; pages++ {
		if pages > 100 {
			t.Fatalf("still paging after %d pages", pages)
		}
		got, more := query(t, s, q)
		if len(got) != 100 {
			t.Fatalf("page %d: %d messages, want 100", pages, len(got))
		}
		tts := tokens(got)
		if !slices.IsSorted(tts) {
			t.Fatalf("page %d not in timetoken order: %v", pages, tts)
		}
		if reverse {
			seen = append(seen, tts...)
			q.End = tts[len(tts)-1] + 1
		} else {
			seen = append(slices.Clone(tts), seen...)
			q.Start = tts[0]
		}
		if wantMore := pages < 99; more != wantMore {
			t.Fatalf("page %d: more %v, want %v", pages, more, wantMore)
		}
		if !more {
			break
		}
	}
	if !slices.Equal(seen, all) {
		t.Fatalf("paging returned %d messages, not each of the %d once in order", len(seen), len(all))
	}
	// Past the last page: nothing, and no more.
	if got, more := query(t, s, q); len(got) != 0 || more {
		t.Fatalf("after the last page: %d messages, more %v; want none", len(got), more)
	}
}

func testPageBackward(t *testing.T, s archive.Store, opt Options) { page10k(t, s, opt, false) }
func testPageForward(t *testing.T, s archive.Store, opt Options)  { page10k(t, s, opt, true) }

func testBounds(t *testing.T, s archive.Store, opt Options) {
	a := account(t)
	b := base(opt)
	tts := series(b, 10, 12*time.Hour) // ten messages across five days
	store(t, s, a, "c", tts)
	T := func(i int) channelgroups.Timetoken { return tts[i] }
	for _, tc := range []struct {
		name       string
		start, end channelgroups.Timetoken
		want       []channelgroups.Timetoken
	}{
		{"all", 0, 0, tts},
		{"start only is exclusive", T(3), 0, tts[:3]},
		{"end only is inclusive", 0, T(7), tts[7:]},
		{"slice", T(6), T(2), tts[2:6]},
		{"slice start<end", T(2), T(6), tts[3:7]},
		{"start == end", T(4), T(4), nil},
		{"start between messages", T(4) + 1, 0, tts[:5]},
		{"end between messages", 0, T(4) + 1, tts[5:]},
		{"start before all", b - 1, 0, nil},
		{"end after all", 0, T(9) + 1, nil},
		{"one message", T(5) + 1, T(5), tts[5:6]},
		{"far future start", archive.MaxTimetoken, 0, tts},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, more := query(t, s, archive.Query{Account: a, Channel: "c", Start: tc.start, End: tc.end, Max: 100})
			if !slices.Equal(tokens(got), tc.want) || more {
				t.Fatalf("start %d end %d: got %v (more %v), want %v", tc.start, tc.end, tokens(got), more, tc.want)
			}
		})
	}
}

func testReverse(t *testing.T, s archive.Store, opt Options) {
	a := account(t)
	tts := series(base(opt), 10, time.Hour)
	store(t, s, a, "c", tts)
	for _, tc := range []struct {
		name       string
		reverse    bool
		start, end channelgroups.Timetoken
		max        int
		want       []channelgroups.Timetoken
		more       bool
	}{
		{"newest three", false, 0, 0, 3, tts[7:], true},
		{"oldest three", true, 0, 0, 3, tts[:3], true},
		{"oldest three of a slice", true, tts[8], tts[2], 3, tts[2:5], true},
		{"newest three of a slice", false, tts[8], tts[2], 3, tts[5:8], true},
		{"exactly all", true, 0, 0, 10, tts, false},
		{"exactly the slice", false, tts[8], tts[2], 6, tts[2:8], false},
		{"one short", false, 0, 0, 9, tts[1:], true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, more := query(t, s, archive.Query{Account: a, Channel: "c", Start: tc.start, End: tc.end, Max: tc.max, Reverse: tc.reverse})
			if !slices.Equal(tokens(got), tc.want) || more != tc.more {
				t.Fatalf("got %v (more %v), want %v (more %v)", tokens(got), more, tc.want, tc.more)
			}
		})
	}
}

func testIdempotentAppend(t *testing.T, s archive.Store, opt Options) {
	a := account(t)
	tts := series(base(opt), 5, time.Minute)
	store(t, s, a, "c", tts)
	store(t, s, a, "c", tts) // the archiver's replay after a crash
	m := msg(a, "c", tts[2])
	if err := s.Append(t.Context(), []archive.Message{m, m, m}); err != nil { // duplicates in one batch
		t.Fatal(err)
	}
	got, more := query(t, s, archive.Query{Account: a, Channel: "c", Max: 5})
	if !slices.Equal(tokens(got), tts) || more {
		t.Fatalf("got %v (more %v), want %v once each", tokens(got), more, tts)
	}
	if n := count(t, s, a, "c", 0); n != 5 {
		t.Fatalf("Count %d, want 5", n)
	}
	if err := s.Append(t.Context(), nil); err != nil {
		t.Fatalf("Append(nil): %v", err)
	}
}

func count(t *testing.T, s archive.Store, a channelgroups.Account, c channelgroups.Channel, after channelgroups.Timetoken) int64 {
	t.Helper()
	n, err := s.Count(t.Context(), a, c, after)
	if err != nil {
		t.Fatalf("Count: %v", err)
	}
	return n
}

func testCount(t *testing.T, s archive.Store, opt Options) {
	a := account(t)
	tts := series(base(opt), 300, 20*time.Minute) // four days
	store(t, s, a, "c", tts)
	for _, tc := range []struct {
		after channelgroups.Timetoken
		want  int64
	}{
		{0, 300}, {tts[0] - 1, 300}, {tts[0], 299}, {tts[150], 149}, {tts[150] + 1, 149}, {tts[299], 0}, {archive.MaxTimetoken, 0},
	} {
		if got := count(t, s, a, "c", tc.after); got != tc.want {
			t.Errorf("Count after %d: %d, want %d", tc.after, got, tc.want)
		}
	}
	if got := count(t, s, a, "empty", 0); got != 0 {
		t.Errorf("Count of a channel never written: %d", got)
	}
}

func testDelete(t *testing.T, s archive.Store, opt Options) {
	b := base(opt)
	// PubNub's table: messages at T-1, T and T+1 (here a day apart, so in
	// different buckets).
	day := channelgroups.Timetoken(24 * time.Hour / 100)
	T := b + 2*day
	three := []channelgroups.Timetoken{T - day, T, T + day}
	for _, tc := range []struct {
		name       string
		start, end channelgroups.Timetoken
		kept       []channelgroups.Timetoken
	}{
		{"start<end deletes end, not start", T - day, T + day, three[:1]},
		{"start>end deletes end, not start", T + day, T - day, three[2:]},
		{"equal deletes nothing", T, T, three},
		{"one message", T + 1, T, []channelgroups.Timetoken{T - day, T + day}},
		{"start only: before start", T, 0, three[1:]},
		{"end only: from end on", 0, T, three[:1]},
		{"all", 0, 0, nil},
		{"nothing in range", T + 2, T + 1, three},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := account(t)
			store(t, s, a, "c", three)
			store(t, s, a, "other", three)
			if err := s.Delete(t.Context(), a, "c", tc.start, tc.end); err != nil {
				t.Fatal(err)
			}
			got, more := query(t, s, archive.Query{Account: a, Channel: "c", Max: 10})
			if !slices.Equal(tokens(got), tc.kept) || more {
				t.Fatalf("kept %v (more %v), want %v", tokens(got), more, tc.kept)
			}
			if n := count(t, s, a, "c", 0); n != int64(len(tc.kept)) {
				t.Fatalf("Count %d after delete, want %d", n, len(tc.kept))
			}
			if got, _ := query(t, s, archive.Query{Account: a, Channel: "other", Max: 10}); len(got) != 3 {
				t.Fatalf("delete on c touched channel other: %v left", tokens(got))
			}
		})
	}
}

func testDeleteSurvivesReplay(t *testing.T, s archive.Store, opt Options) {
	a := account(t)
	tts := series(base(opt), 6, 6*time.Hour)
	store(t, s, a, "c", tts)
	if err := s.Delete(t.Context(), a, "c", tts[4], tts[1]); err != nil { // removes 1, 2, 3
		t.Fatal(err)
	}
	store(t, s, a, "c", tts) // the archiver replays its batch after a crash
	got, _ := query(t, s, archive.Query{Account: a, Channel: "c", Max: 10})
	want := []channelgroups.Timetoken{tts[0], tts[4], tts[5]}
	if !slices.Equal(tokens(got), want) {
		t.Fatalf("after delete and replay: %v, want %v", tokens(got), want)
	}
}

// testDeleteStopsAtNow: a delete reaches messages up to the store's clock
// only; a message with a later timetoken (published after the delete)
// survives it.
func testDeleteStopsAtNow(t *testing.T, s archive.Store, opt Options) {
	a := account(t)
	past := channelgroups.TimetokenOf(opt.Now().Add(-time.Hour))
	future := channelgroups.TimetokenOf(opt.Now().Add(time.Hour))
	store(t, s, a, "c", []channelgroups.Timetoken{past, future})
	if err := s.Delete(t.Context(), a, "c", 0, 0); err != nil {
		t.Fatal(err)
	}
	store(t, s, a, "c", []channelgroups.Timetoken{future}) // not covered
	got, _ := query(t, s, archive.Query{Account: a, Channel: "c", Max: 10})
	if want := []channelgroups.Timetoken{future}; !slices.Equal(tokens(got), want) {
		t.Fatalf("after deleting all: %v, want %v (published after the delete's time)", tokens(got), want)
	}
}

func act(a channelgroups.Account, c channelgroups.Channel, m, at channelgroups.Timetoken, typ, value string) archive.Action {
	return archive.Action{Account: a, Channel: c, Message: m, Timetoken: at, Type: typ, Value: value, Publisher: "u-" + value}
}

func actionIDs(acts []archive.Action) [][2]channelgroups.Timetoken {
	out := make([][2]channelgroups.Timetoken, len(acts))
	for i, x := range acts {
		out[i] = [2]channelgroups.Timetoken{x.Message, x.Timetoken}
	}
	return out
}

func testActions(t *testing.T, s archive.Store, opt Options) {
	ctx := t.Context()
	a := account(t)
	b := base(opt)
	day := channelgroups.Timetoken(24 * time.Hour / 100)
	m1, m2, m3 := b, b+day, b+2*day
	store(t, s, a, "c", []channelgroups.Timetoken{m1, m2, m3})
	acts := []archive.Action{
		act(a, "c", m1, m1+100, "reaction", "smiley"),
		act(a, "c", m1, m3+200, "reaction", "heart"), // added to an old message later
		act(a, "c", m2, m2+100, "receipt", "read"),
		act(a, "c", m3, m3+100, "reaction", "smiley"),
		act(a, "other", m3, m3+150, "reaction", "nope"),
	}
	for _, x := range acts {
		if err := s.AddAction(ctx, x); err != nil {
			t.Fatalf("AddAction: %v", err)
		}
	}
	if err := s.AddAction(ctx, acts[0]); err != nil { // replay
		t.Fatalf("AddAction again: %v", err)
	}
	id := func(x archive.Action) [2]channelgroups.Timetoken {
		return [2]channelgroups.Timetoken{x.Message, x.Timetoken}
	}
	list := func(start, end channelgroups.Timetoken, limit int) ([][2]channelgroups.Timetoken, bool) {
		t.Helper()
		got, more, err := s.Actions(ctx, a, "c", start, end, limit)
		if err != nil {
			t.Fatalf("Actions: %v", err)
		}
		return actionIDs(got), more
	}
	byTime := [][2]channelgroups.Timetoken{id(acts[0]), id(acts[2]), id(acts[3]), id(acts[1])}
	if got, more := list(0, 0, 100); !slices.Equal(got, byTime) || more {
		t.Fatalf("Actions: %v (more %v), want %v", got, more, byTime)
	}
	if got, more := list(0, 0, 2); !slices.Equal(got, byTime[2:]) || !more {
		t.Fatalf("Actions limit 2: %v (more %v), want the newest two %v and more", got, more, byTime[2:])
	}
	if got, _ := list(m3+200, m2+100, 100); !slices.Equal(got, byTime[1:3]) {
		t.Fatalf("Actions in [m2+100, m3+200): %v, want %v", got, byTime[1:3])
	}
	full, _, err := s.Actions(ctx, a, "c", 0, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if g, w := full[0], acts[0]; g.Type != w.Type || g.Value != w.Value || g.Publisher != w.Publisher || g.Account != a || g.Channel != "c" {
		t.Fatalf("action round trip: got %+v, want %+v", g, w)
	}
	// History with actions: the actions of messages m1..m2.
	ofMsgs, err := s.MessageActions(ctx, a, "c", m1, m2)
	if err != nil {
		t.Fatal(err)
	}
	if want := [][2]channelgroups.Timetoken{id(acts[0]), id(acts[1]), id(acts[2])}; !slices.Equal(actionIDs(ofMsgs), want) {
		t.Fatalf("MessageActions(m1, m2): %v, want %v", actionIDs(ofMsgs), want)
	}
	if err := s.RemoveAction(ctx, a, "c", m1, m1+100); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveAction(ctx, a, "c", m1, m1+100); err != nil {
		t.Fatalf("removing a removed action: %v", err)
	}
	if got, _ := list(0, 0, 100); !slices.Equal(got, byTime[1:]) {
		t.Fatalf("after RemoveAction: %v, want %v", got, byTime[1:])
	}
	// Deleting m2 deletes its actions.
	if err := s.Delete(ctx, a, "c", m2+1, m2); err != nil {
		t.Fatal(err)
	}
	if got, _ := list(0, 0, 100); !slices.Equal(got, [][2]channelgroups.Timetoken{id(acts[3]), id(acts[1])}) {
		t.Fatalf("after deleting m2: actions %v, want m2's gone", got)
	}
	ofMsgs, err = s.MessageActions(ctx, a, "c", m1, m3)
	if err != nil {
		t.Fatal(err)
	}
	if want := [][2]channelgroups.Timetoken{id(acts[1]), id(acts[3])}; !slices.Equal(actionIDs(ofMsgs), want) {
		t.Fatalf("MessageActions after deleting m2: %v, want %v", actionIDs(ofMsgs), want)
	}
}

func testExpiry(t *testing.T, s archive.Store, opt Options) {
	ctx := t.Context()
	a := account(t)
	now := opt.Now()
	ttl := time.Hour
	if opt.Advance == nil {
		ttl = 2 * time.Second // Cassandra's TTL has a one-second resolution
	}
	tt := channelgroups.TimetokenOf(now.Add(-time.Minute))
	short := msg(a, "c", tt)
	short.Expires = now.Add(ttl)
	long := msg(a, "c", tt+10)
	long.Expires = now.Add(30 * 24 * time.Hour)
	forever := msg(a, "c", tt+20)
	dead := msg(a, "c", tt+30)
	dead.Expires = now.Add(-time.Second) // already expired: not stored
	appendAll(t, s, []archive.Message{short, long, forever, dead})
	x := act(a, "c", short.Timetoken, tt+100, "reaction", "x")
	x.Expires = short.Expires
	if err := s.AddAction(ctx, x); err != nil {
		t.Fatal(err)
	}
	all := []channelgroups.Timetoken{short.Timetoken, long.Timetoken, forever.Timetoken}
	if got, _ := query(t, s, archive.Query{Account: a, Channel: "c", Max: 10}); !slices.Equal(tokens(got), all) {
		t.Fatalf("before expiry: %v, want %v", tokens(got), all)
	}
	if opt.Advance != nil {
		opt.Advance(ttl)
	}
	deadline := time.Now().Add(opt.ExpiryDeadline)
	want := all[1:]
	for {
		got, more := query(t, s, archive.Query{Account: a, Channel: "c", Max: 2})
		n := count(t, s, a, "c", 0)
		acts, _, err := s.Actions(ctx, a, "c", 0, 0, 10)
		if err != nil {
			t.Fatal(err)
		}
		if slices.Equal(tokens(got), want) && !more && n == 2 && len(acts) == 0 {
			break
		}
		if opt.Advance != nil || time.Now().After(deadline) {
			t.Fatalf("after expiry: messages %v (more %v), count %d, %d actions; want %v, no more, count 2, no actions",
				tokens(got), more, n, len(acts), want)
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(100 * time.Millisecond): // polling the server's own clock
		}
	}
	// The store keeps working past expiry (sweeps, new writes).
	later := msg(a, "c", tt+40)
	appendAll(t, s, []archive.Message{later})
	if got, _ := query(t, s, archive.Query{Account: a, Channel: "c", Max: 10}); len(got) != 3 {
		t.Fatalf("after a later append: %v", tokens(got))
	}
}

func testCheckpoints(t *testing.T, s archive.Store, opt Options) {
	ctx := t.Context()
	sh := shardBase()
	get := func(shard int) channelgroups.Position {
		t.Helper()
		p, err := s.Checkpoint(ctx, shard)
		if err != nil {
			t.Fatalf("Checkpoint(%d): %v", shard, err)
		}
		return p
	}
	if p := get(sh); !p.IsZero() {
		t.Fatalf("fresh shard's checkpoint %v, want zero", p)
	}
	p1 := channelgroups.Position{Ms: 1_700_000_000_000, Seq: 3}
	p2 := channelgroups.Position{Ms: 1_700_000_000_001, Seq: 0}
	for _, step := range []struct {
		shard int
		pos   channelgroups.Position
	}{{sh, p1}, {sh + 1, p2}, {sh, p2}} {
		if err := s.SetCheckpoint(ctx, step.shard, step.pos); err != nil {
			t.Fatal(err)
		}
	}
	if got := get(sh); got != p2 {
		t.Fatalf("shard %d: %v, want %v", sh, got, p2)
	}
	if got := get(sh + 1); got != p2 {
		t.Fatalf("shard %d: %v, want %v", sh+1, got, p2)
	}
	if got := get(sh + 2); !got.IsZero() {
		t.Fatalf("shard %d never set: %v", sh+2, got)
	}
}

func testIsolation(t *testing.T, s archive.Store, opt Options) {
	ctx := t.Context()
	a := account(t)
	b2 := a + "b"
	tt := base(opt)
	// Names chosen so that a store joining account and channel without a
	// separator would confuse them: (a, "bc") and (a+"b", "c").
	store(t, s, a, "bc", []channelgroups.Timetoken{tt, tt + 1})
	store(t, s, b2, "c", []channelgroups.Timetoken{tt + 2})
	store(t, s, a, "b", []channelgroups.Timetoken{tt + 3})
	store(t, s, a, "bcd", []channelgroups.Timetoken{tt + 4})
	for _, tc := range []struct {
		a    channelgroups.Account
		c    channelgroups.Channel
		want []channelgroups.Timetoken
	}{
		{a, "bc", []channelgroups.Timetoken{tt, tt + 1}},
		{b2, "c", []channelgroups.Timetoken{tt + 2}},
		{a, "b", []channelgroups.Timetoken{tt + 3}},
		{a, "bcd", []channelgroups.Timetoken{tt + 4}},
		{a, "c", nil},
	} {
		got, _ := query(t, s, archive.Query{Account: tc.a, Channel: tc.c, Max: 10})
		if !slices.Equal(tokens(got), tc.want) {
			t.Errorf("(%s, %s): %v, want %v", tc.a, tc.c, tokens(got), tc.want)
		}
		for _, m := range got {
			if m.Account != tc.a || m.Channel != tc.c {
				t.Errorf("(%s, %s) returned a message of (%s, %s)", tc.a, tc.c, m.Account, m.Channel)
			}
		}
		if n := count(t, s, tc.a, tc.c, 0); n != int64(len(tc.want)) {
			t.Errorf("(%s, %s): Count %d, want %d", tc.a, tc.c, n, len(tc.want))
		}
	}
	if err := s.Delete(ctx, a, "b", 0, 0); err != nil {
		t.Fatal(err)
	}
	if got, _ := query(t, s, archive.Query{Account: a, Channel: "bc", Max: 10}); len(got) != 2 {
		t.Fatalf("deleting (a, b) touched (a, bc): %v", tokens(got))
	}
	if err := s.AddAction(ctx, act(a, "bc", tt, tt+9, "t", "v")); err != nil {
		t.Fatal(err)
	}
	if got, _, err := s.Actions(ctx, b2, "c", 0, 0, 10); err != nil || len(got) != 0 {
		t.Fatalf("Actions of (%s, c): %v, %v; want none", b2, got, err)
	}
}

func testBadInput(t *testing.T, s archive.Store, opt Options) {
	ctx := t.Context()
	a := account(t)
	tt := base(opt)
	good := msg(a, "c", tt)
	with := func(f func(*archive.Message)) archive.Message { m := good; f(&m); return m }
	type call struct {
		name string
		fn   func() error
	}
	calls := []call{}
	for name, m := range map[string]archive.Message{
		"empty channel":      with(func(m *archive.Message) { m.Channel = "" }),
		"empty account":      with(func(m *archive.Message) { m.Account = "" }),
		"channel with a ,":   with(func(m *archive.Message) { m.Channel = "a,b" }),
		"zero timetoken":     with(func(m *archive.Message) { m.Timetoken = 0 }),
		"negative timetoken": with(func(m *archive.Message) { m.Timetoken = -5 }),
		"no payload":         with(func(m *archive.Message) { m.Payload = nil }),
		"payload not JSON":   with(func(m *archive.Message) { m.Payload = json.RawMessage(`{"a":`) }),
		"meta not JSON":      with(func(m *archive.Message) { m.Meta = json.RawMessage(`nope`) }),
	} {
		// The bad message comes second: nothing of the batch may be stored.
		calls = append(calls, call{"Append " + name, func() error { return s.Append(ctx, []archive.Message{msg(a, "c", tt+1), m}) }})
	}
	q := archive.Query{Account: a, Channel: "c", Max: 10}
	for name, bad := range map[string]archive.Query{
		"max 0":          {Account: a, Channel: "c"},
		"max -1":         {Account: a, Channel: "c", Max: -1},
		"max too large":  {Account: a, Channel: "c", Max: archive.MaxQuery + 1},
		"empty channel":  {Account: a, Max: 10},
		"empty account":  {Channel: "c", Max: 10},
		"negative start": {Account: a, Channel: "c", Max: 10, Start: -1},
		"negative end":   {Account: a, Channel: "c", Max: 10, End: -1},
	} {
		calls = append(calls, call{"Messages " + name, func() error { _, _, err := s.Messages(ctx, bad); return err }})
	}
	calls = append(calls,
		call{"Count empty channel", func() error { _, err := s.Count(ctx, a, "", 0); return err }},
		call{"Count negative", func() error { _, err := s.Count(ctx, a, "c", -1); return err }},
		call{"Delete empty channel", func() error { return s.Delete(ctx, a, "", 0, 0) }},
		call{"Delete negative start", func() error { return s.Delete(ctx, a, "c", -1, 0) }},
		call{"AddAction no type", func() error { x := act(a, "c", tt, tt+1, "", "v"); return s.AddAction(ctx, x) }},
		call{"AddAction no value", func() error { x := act(a, "c", tt, tt+1, "t", ""); return s.AddAction(ctx, x) }},
		call{"AddAction zero message", func() error { x := act(a, "c", 0, tt+1, "t", "v"); return s.AddAction(ctx, x) }},
		call{"AddAction empty channel", func() error { x := act(a, "", tt, tt+1, "t", "v"); return s.AddAction(ctx, x) }},
		call{"RemoveAction empty channel", func() error { return s.RemoveAction(ctx, a, "", tt, tt+1) }},
		call{"Actions limit 0", func() error { _, _, err := s.Actions(ctx, a, "c", 0, 0, 0); return err }},
		call{"Actions limit too large", func() error { _, _, err := s.Actions(ctx, a, "c", 0, 0, archive.MaxQuery+1); return err }},
		call{"Actions empty channel", func() error { _, _, err := s.Actions(ctx, a, "", 0, 0, 10); return err }},
		call{"MessageActions empty channel", func() error { _, err := s.MessageActions(ctx, a, "", 0, 0); return err }},
		call{"Checkpoint negative shard", func() error { _, err := s.Checkpoint(ctx, -1); return err }},
		call{"SetCheckpoint negative shard", func() error { return s.SetCheckpoint(ctx, -1, channelgroups.Position{Ms: 1}) }},
	)
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			if err := c.fn(); !errors.Is(err, archive.ErrInvalid) {
				t.Fatalf("got %v, want an error wrapping archive.ErrInvalid", err)
			}
		})
	}
	if got, _ := query(t, s, q); len(got) != 0 {
		t.Fatalf("refused input stored %d messages", len(got))
	}
	if got, _, _ := s.Actions(ctx, a, "c", 0, 0, 10); len(got) != 0 {
		t.Fatalf("refused input stored %d actions", len(got))
	}
}

func testCanceledContext(t *testing.T, s archive.Store, opt Options) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	a := account(t)
	m := msg(a, "c", base(opt))
	for name, fn := range map[string]func() error{
		"Append": func() error { return s.Append(ctx, []archive.Message{m}) },
		"Messages": func() error {
			_, _, err := s.Messages(ctx, archive.Query{Account: a, Channel: "c", Max: 1})
			return err
		},
		"Count":         func() error { _, err := s.Count(ctx, a, "c", 0); return err },
		"Delete":        func() error { return s.Delete(ctx, a, "c", 0, 0) },
		"Checkpoint":    func() error { _, err := s.Checkpoint(ctx, 1); return err },
		"SetCheckpoint": func() error { return s.SetCheckpoint(ctx, 1, channelgroups.Position{}) },
	} {
		if err := fn(); !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a canceled context: %v, want context.Canceled", name, err)
		}
	}
	if got, _ := query(t, s, archive.Query{Account: a, Channel: "c", Max: 1}); len(got) != 0 {
		t.Fatalf("Append with a canceled context stored %v", tokens(got))
	}
}

// Clock is a settable clock for stores that take one (Config.Now): its Now
// goes to Options.Now and its Advance to Options.Advance.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock at now.
func NewClock(now time.Time) *Clock { return &Clock{now: now} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Options returns suite options driving the store's clock.
func (c *Clock) Options() Options { return Options{Now: c.Now, Advance: c.Advance} }
