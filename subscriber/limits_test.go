package subscriber_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/groupcast/groupcast/channelgroups"
	"github.com/groupcast/groupcast/internal/metrictest"
	"github.com/groupcast/groupcast/subscriber"
)

// payload is a JSON string of about size bytes, naming i.
func payload(i, size int) []byte {
	return fmt.Appendf(nil, "%q", fmt.Sprintf("%04d", i)+strings.Repeat("x", size-6))
}

// publish publishes to each channel in turn and waits until the node has
// applied the last message (it is in its channel's history).
func publish(t *testing.T, n *subscriber.Node, a channelgroups.Account, size int, chs ...channelgroups.Channel) []channelgroups.Timetoken {
	t.Helper()
	var tts []channelgroups.Timetoken
	for i, c := range chs {
		tt, err := n.Publish(t.Context(), &subscriber.Message{Account: a, Channel: c, Payload: payload(i, size), Publisher: "pub"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		tts = append(tts, tt)
	}
	last := chs[len(chs)-1]
	eventually(t, "the last message applied", func() bool {
		h, err := n.History(t.Context(), a, last, 0, 0, 100)
		return err == nil && len(h) > 0 && h[len(h)-1].Timetoken() == tts[len(tts)-1]
	})
	return tts
}

func history(t *testing.T, n *subscriber.Node, a channelgroups.Account, c channelgroups.Channel) []channelgroups.Timetoken {
	t.Helper()
	h, err := n.History(t.Context(), a, c, 0, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var out []channelgroups.Timetoken
	for _, m := range h {
		out = append(out, m.Timetoken())
	}
	return out
}

func delivered(ds []subscriber.Delivery) []channelgroups.Timetoken {
	var out []channelgroups.Timetoken
	for _, d := range ds {
		out = append(out, d.Msg.Timetoken())
	}
	return out
}

// TestRingBytesEvictsOldestFirst: publishes to distinct channels totalling
// far more than RingBytes leave at most RingBytes in the rings; the
// messages published first are the ones gone, and their emptied rings are
// freed.
func TestRingBytesEvictsOldestFirst(t *testing.T) {
	const limit = 64 << 10
	reg := prometheus.NewRegistry()
	n, _ := node(t, openBolt(t), subscriber.Config{RingBytes: limit, Registerer: reg})
	const a = channelgroups.Account("acct")
	var chs []channelgroups.Channel
	for i := range 40 {
		chs = append(chs, channelgroups.Channel(fmt.Sprintf("c%02d", i)))
	}
	tts := publish(t, n, a, 4<<10, chs...) // 160 KiB of payload

	if got := subscriber.RingBytes(n); got > limit || got <= 0 {
		t.Fatalf("the rings hold %d bytes; want 1..%d", got, limit)
	}
	if got := metrictest.Value(t, reg, "groupcast_ring_bytes"); got != float64(subscriber.RingBytes(n)) {
		t.Fatalf("groupcast_ring_bytes = %v; want %d", got, subscriber.RingBytes(n))
	}
	// The channels still holding their message are the last ones published.
	kept := 0
	for i, c := range chs {
		h := history(t, n, a, c)
		switch {
		case len(h) == 1 && h[0] == tts[i]:
			kept++
		case len(h) == 0 && kept == 0:
		default:
			t.Fatalf("channel %s (published %d of %d) holds %v after %d kept before it; want the oldest evicted first", c, i+1, len(chs), h, kept)
		}
	}
	if kept == 0 || kept == len(chs) {
		t.Fatalf("%d of %d channels kept; want some evicted, the newest kept", kept, len(chs))
	}
	if got, want := metrictest.Value(t, reg, "groupcast_ring_evictions_total", "reason", "bytes"), float64(len(chs)-kept); got != want {
		t.Fatalf("groupcast_ring_evictions_total{reason=bytes} = %v; want %v", got, want)
	}
	if got := subscriber.Rings(n); got != kept {
		t.Fatalf("%d rings kept for %d channels with messages; want the emptied ones freed", got, kept)
	}
}

// TestEvictedCursorLikeWrappedRing: a poll whose cursor is before what the
// byte cap left of its channel's ring gets what is left at once, exactly
// as when the ring wraps by RingSize; one whose channel's ring the cap
// emptied parks and answers with nothing, as when the ring aged out.
func TestEvictedCursorLikeWrappedRing(t *testing.T) {
	const a = channelgroups.Account("acct")
	const size = 4 << 10
	// Five messages on x, then others' messages until some of x's go.
	capped, _ := node(t, openBolt(t), subscriber.Config{RingBytes: 6 * (size + 400)})
	// The same five on a node whose ring of x wraps at 2 messages.
	wrapped, _ := node(t, openBolt(t), subscriber.Config{RingSize: 2})

	poll := func(n *subscriber.Node, c channelgroups.Channel, cursor channelgroups.Timetoken, hold time.Duration) subscriber.PollResult {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		res, err := n.Poll(ctx, subscriber.PollRequest{Account: a, Channels: []channelgroups.Channel{c}, Cursor: cursor, Hold: hold})
		if err != nil {
			t.Fatalf("poll of %s: %v", c, err)
		}
		return res
	}
	for _, tc := range []struct {
		name  string
		n     *subscriber.Node
		evict func(t *testing.T)
	}{
		{"evicted by bytes", capped, func(t *testing.T) {
			for i := 0; len(history(t, capped, a, "x")) == 5; i++ {
				if i == 20 { // 80 KiB more, more than RingBytes
					t.Fatalf("x keeps all its messages after %d more on other channels", i)
				}
				publish(t, capped, a, size, channelgroups.Channel(fmt.Sprint("y", i)))
			}
		}},
		{"wrapped by count", wrapped, func(*testing.T) {}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := tc.n
			hs := poll(n, "x", 0, 0).Cursor // the handshake: before everything below
			tts := publish(t, n, a, size, "x", "x", "x", "x", "x")
			tc.evict(t)
			left := history(t, n, a, "x")
			if len(left) == 0 || len(left) == len(tts) || !slices.Equal(left, tts[len(tts)-len(left):]) {
				t.Fatalf("x keeps %v of %v; want its newest, not all", left, tts)
			}
			// A cursor before what is left: what is left, at once (a
			// minute's hold would time the test out).
			res := poll(n, "x", hs, time.Minute)
			if got := delivered(res.Deliveries); !slices.Equal(got, left) {
				t.Fatalf("poll from before the ring delivered %v; want what is left, %v", got, left)
			}
			if res.Cursor < left[len(left)-1] {
				t.Fatalf("poll answered cursor %v, before its last delivery %v", res.Cursor, left[len(left)-1])
			}
			// From the middle of what was evicted: the same.
			res = poll(n, "x", tts[0], time.Minute)
			if got := delivered(res.Deliveries); !slices.Equal(got, left) {
				t.Fatalf("poll from the first (evicted) message delivered %v; want %v", got, left)
			}
		})
	}

	// A ring emptied by the cap is gone, as one that aged out is: a poll
	// from before it parks, and answers its hold with nothing and a cursor
	// past the channel's messages.
	zhs := poll(capped, "z", 0, 0).Cursor
	zt := publish(t, capped, a, size, "z")
	for i := 0; len(history(t, capped, a, "z")) > 0; i++ {
		if i == 20 {
			t.Fatalf("z keeps its message after %d more on other channels", i)
		}
		publish(t, capped, a, size, channelgroups.Channel(fmt.Sprint("w", i)))
	}
	res := poll(capped, "z", zhs, 10*time.Millisecond)
	if len(res.Deliveries) != 0 || res.Cursor < zt[0] {
		t.Fatalf("poll of an evicted ring: %v deliveries, cursor %v; want none and a cursor from %v on", delivered(res.Deliveries), res.Cursor, zt[0])
	}
	zhs = poll(wrapped, "z", 0, 0).Cursor
	zt = publish(t, wrapped, a, size, "z")
	subscriber.Sweep(wrapped, time.Now().Add(time.Hour)) // past RingAge: the ring ages out
	res = poll(wrapped, "z", zhs, 10*time.Millisecond)
	if len(res.Deliveries) != 0 || res.Cursor < zt[0] {
		t.Fatalf("poll of an aged-out ring: %v deliveries, cursor %v; want none and a cursor from %v on", delivered(res.Deliveries), res.Cursor, zt[0])
	}
}

// TestSweepReleasesRingBytes: the sweep drops a ring's aged messages (not
// only whole aged rings) and gives their bytes back; once everything aged,
// no ring and no byte is left.
func TestSweepReleasesRingBytes(t *testing.T) {
	reg := prometheus.NewRegistry()
	n, _ := node(t, openBolt(t), subscriber.Config{Registerer: reg})
	const a = channelgroups.Account("acct")
	first := publish(t, n, a, 100, "x")[0]
	eventually(t, "a later millisecond", func() bool { return time.Now().UnixMilli() > int64(subscriber.PositionOf(first).Ms) })
	second := publish(t, n, a, 100, "x")[0]
	publish(t, n, a, 100, "y")
	before := subscriber.RingBytes(n)

	// As at RingAge after the second message: the first one has aged.
	subscriber.Sweep(n, time.UnixMilli(int64(subscriber.PositionOf(second).Ms)).Add(20*time.Minute))
	if got := history(t, n, a, "x"); !slices.Equal(got, []channelgroups.Timetoken{second}) {
		t.Fatalf("x keeps %v; want only %v", got, second)
	}
	if got := subscriber.RingBytes(n); got >= before || got <= 0 {
		t.Fatalf("the rings hold %d bytes after the sweep, %d before; want fewer, not none", got, before)
	}
	if got := metrictest.Value(t, reg, "groupcast_ring_evictions_total", "reason", "age"); got != 1 {
		t.Fatalf("groupcast_ring_evictions_total{reason=age} = %v; want 1", got)
	}
	subscriber.Sweep(n, time.Now().Add(time.Hour))
	if b, r := subscriber.RingBytes(n), subscriber.Rings(n); b != 0 || r != 0 {
		t.Fatalf("after everything aged: %d bytes in %d rings; want none", b, r)
	}
	if got := metrictest.Value(t, reg, "groupcast_ring_bytes"); got != 0 {
		t.Fatalf("groupcast_ring_bytes = %v; want 0", got)
	}
}

// TestPresenceMaxRefusesNewJoins: at PresenceMax records, a heartbeat or
// subscribe that would add one is refused (unavailable: 503) and records
// nothing; refreshing kept records still works, and a leave makes room.
func TestPresenceMaxRefusesNewJoins(t *testing.T) {
	reg := prometheus.NewRegistry()
	n, _ := node(t, openBolt(t), subscriber.Config{PresenceMax: 3, Registerer: reg})
	const a = channelgroups.Account("acct")
	chs := func(cs ...channelgroups.Channel) []channelgroups.Channel { return cs }
	if err := n.Heartbeat(a, chs("c1", "c2"), "u1", 0); err != nil {
		t.Fatal(err)
	}
	if err := n.Heartbeat(a, chs("c3", "c3-pnpres"), "u2", 0); err != nil { // presence channels keep no record
		t.Fatal(err)
	}
	full := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, subscriber.ErrPresenceFull) || !errors.Is(err, channelgroups.ErrUnavailable) {
			t.Fatalf("%s at the cap: %v; want ErrPresenceFull (unavailable)", what, err)
		}
	}
	full("a heartbeat of a new user", n.Heartbeat(a, chs("c4"), "u3", 0))
	full("a heartbeat adding a channel", n.Heartbeat(a, chs("c3", "c4"), "u2", 0))
	_, err := n.Poll(t.Context(), subscriber.PollRequest{Account: a, Channels: chs("c5"), UUID: "u4"})
	full("a subscribe of a new user", err)
	if err := n.Heartbeat(a, chs("c1", "c2"), "u1", 0); err != nil {
		t.Fatalf("refreshing kept records at the cap: %v", err)
	}
	if _, err := n.Poll(t.Context(), subscriber.PollRequest{Account: a, Channels: chs("c3"), UUID: "u2"}); err != nil {
		t.Fatalf("a subscribe refreshing kept records at the cap: %v", err)
	}
	if got := metrictest.Value(t, reg, "groupcast_presence_records"); got != 3 {
		t.Fatalf("groupcast_presence_records = %v; want 3", got)
	}
	if got := metrictest.Value(t, reg, "groupcast_presence_refused_total"); got != 3 {
		t.Fatalf("groupcast_presence_refused_total = %v; want 3", got)
	}
	n.Leave(t.Context(), a, chs("c1"), "u1")
	eventually(t, "u1's leave of c1 applied", func() bool {
		users, err := n.Occupancy(t.Context(), a, "c1")
		return err == nil && len(users) == 0
	})
	if err := n.Heartbeat(a, chs("c4"), "u3", 0); err != nil {
		t.Fatalf("after a leave made room: %v", err)
	}
	eventually(t, "u3 present on c4", func() bool {
		users, err := n.Occupancy(t.Context(), a, "c4")
		return err == nil && slices.Equal(users, []string{"u3"})
	})
}

// TestLongUUIDRefused: presence refuses a uuid longer than 92 bytes (a bad
// request: 400) on heartbeat and subscribe and records nothing; a join
// with one found in the log is not counted either.
func TestLongUUIDRefused(t *testing.T) {
	reg := prometheus.NewRegistry()
	n, lg := node(t, openBolt(t), subscriber.Config{Registerer: reg})
	const a = channelgroups.Account("acct")
	long, longest := strings.Repeat("u", subscriber.MaxUUIDBytes+1), strings.Repeat("v", subscriber.MaxUUIDBytes)
	bad := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, subscriber.ErrUUIDTooLong) || !errors.Is(err, subscriber.ErrBadRequest) {
			t.Fatalf("%s with a %d-byte uuid: %v; want ErrUUIDTooLong (bad request)", what, len(long), err)
		}
	}
	bad("a heartbeat", n.Heartbeat(a, []channelgroups.Channel{"c"}, long, 0))
	_, err := n.Poll(t.Context(), subscriber.PollRequest{Account: a, Channels: []channelgroups.Channel{"c"}, UUID: long})
	bad("a handshake", err)
	_, err = n.Poll(t.Context(), subscriber.PollRequest{Account: a, Channels: []channelgroups.Channel{"c"}, UUID: long, Cursor: 1})
	bad("a subscribe", err)
	if got := metrictest.Value(t, reg, "groupcast_presence_records"); got != 0 {
		t.Fatalf("groupcast_presence_records = %v after refusals; want 0", got)
	}
	// A join with a long uuid in the log (no node announces one) is not
	// counted; the 92-byte one after it is.
	shard := channelgroups.ShardOf(a, channelgroups.DefaultShards)
	if _, err := lg.Append(t.Context(), shard, fmt.Appendf(nil, `{"k":"p","a":%q,"ch":"c","pa":"join","pu":%q,"pw":1}`, a, long)); err != nil {
		t.Fatal(err)
	}
	if err := n.Heartbeat(a, []channelgroups.Channel{"c"}, longest, 0); err != nil {
		t.Fatalf("a heartbeat with a %d-byte uuid: %v", len(longest), err)
	}
	eventually(t, "the 92-byte uuid present", func() bool {
		users, err := n.Occupancy(t.Context(), a, "c")
		return err == nil && slices.Contains(users, longest)
	})
	if users, _ := n.Occupancy(t.Context(), a, "c"); !slices.Equal(users, []string{longest}) {
		t.Fatalf("occupancy of c: %d users; want only the %d-byte uuid", len(users), len(longest))
	}
}

// TestIdleUserTimesOutOnBusyChannel: a user who stopped polling times out
// even while others keep polls parked on the same channel (a vanished
// subscriber whose leave never came must not stay present for good); a
// user with a parked poll does not.
func TestIdleUserTimesOutOnBusyChannel(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	n, _ := node(t, openBolt(t), subscriber.Config{Now: func() time.Time { return time.Unix(0, now.Load()) }})
	const a = channelgroups.Account("acct")
	c := []channelgroups.Channel{"c"}
	hs, err := n.Poll(t.Context(), subscriber.PollRequest{Account: a, Channels: c, UUID: "parked", Heartbeat: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	answered := make(chan struct{})
	n.StartPoll(t.Context(), subscriber.PollRequest{Account: a, Channels: c, UUID: "parked", Heartbeat: time.Minute, Cursor: hs.Cursor, Hold: time.Hour},
		func(subscriber.PollResult, error) { close(answered) })
	if err := n.Heartbeat(a, c, "idle", time.Minute); err != nil {
		t.Fatal(err)
	}
	eventually(t, "both present", func() bool {
		users, err := n.Occupancy(t.Context(), a, "c")
		return err == nil && slices.Equal(users, []string{"idle", "parked"})
	})
	now.Add(int64(2 * time.Minute)) // past both timeouts
	eventually(t, "the idle user timed out, the parked one stayed", func() bool {
		users, err := n.Occupancy(t.Context(), a, "c")
		return err == nil && slices.Equal(users, []string{"parked"})
	})
	select {
	case <-answered:
		t.Fatal("the parked poll was answered")
	default:
	}
}
