package subscriber_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
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

type chs = []channelgroups.Channel

// presenceWatch follows a channel's presence events through subscribe.
type presenceWatch struct {
	t      *testing.T
	n      *subscriber.Node
	a      channelgroups.Account
	c      channelgroups.Channel
	cursor channelgroups.Timetoken
	queue  []map[string]any
}

func watchPresence(t *testing.T, n *subscriber.Node, a channelgroups.Account, c channelgroups.Channel) *presenceWatch {
	t.Helper()
	hs, err := n.Poll(t.Context(), subscriber.PollRequest{Account: a, Channels: chs{c + subscriber.PresenceSuffix}})
	if err != nil {
		t.Fatal(err)
	}
	return &presenceWatch{t: t, n: n, a: a, c: c, cursor: hs.Cursor}
}

// next returns the next event, which must have the given action.
func (w *presenceWatch) next(action string) map[string]any {
	w.t.Helper()
	for len(w.queue) == 0 {
		res, err := w.n.Poll(w.t.Context(), subscriber.PollRequest{Account: w.a, Channels: chs{w.c + subscriber.PresenceSuffix},
			Cursor: w.cursor, Hold: 10 * time.Second})
		if err != nil {
			w.t.Fatal(err)
		}
		if len(res.Deliveries) == 0 {
			w.t.Fatalf("no %s event within the hold", action)
		}
		w.cursor = res.Cursor
		for _, d := range res.Deliveries {
			var e map[string]any
			if err := json.Unmarshal(d.Msg.Payload, &e); err != nil {
				w.t.Fatal(err)
			}
			w.queue = append(w.queue, e)
		}
	}
	e := w.queue[0]
	w.queue = w.queue[1:]
	if e["action"] != action {
		w.t.Fatalf("event %v; want action %s", e, action)
	}
	return e
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestStateEvents: a join with state carries it as "data"; a new state is a
// state-change event, the same state again is none, an empty object clears
// it; a leave drops the state.
func TestStateEvents(t *testing.T) {
	n, _ := node(t, openBolt(t), subscriber.Config{})
	const a = channelgroups.Account("acct")
	w := watchPresence(t, n, a, "room")
	st := func(s string) subscriber.PresenceState { return subscriber.PresenceState{"room": json.RawMessage(s)} }
	if err := n.SetState(a, chs{"room"}, "u1", 0, st(`{"mood": "ok"}`)); err != nil {
		t.Fatal(err)
	}
	if e := w.next("join"); e["uuid"] != "u1" || e["occupancy"] != 1.0 || jsonOf(t, e["data"]) != `{"mood":"ok"}` {
		t.Fatalf("join %v; want u1, occupancy 1, data {\"mood\":\"ok\"}", e)
	}
	if err := n.SetState(a, chs{"room"}, "u1", 0, st(`{"mood":"ok"}`)); err != nil { // the same state: no event
		t.Fatal(err)
	}
	if err := n.SetState(a, chs{"room"}, "u1", 0, st(`{"mood":"great"}`)); err != nil {
		t.Fatal(err)
	}
	if e := w.next("state-change"); e["uuid"] != "u1" || e["occupancy"] != 1.0 || jsonOf(t, e["data"]) != `{"mood":"great"}` {
		t.Fatalf("state-change %v; want u1 with data {\"mood\":\"great\"}", e)
	}
	if err := n.Heartbeat(a, chs{"room"}, "u2", 0); err != nil {
		t.Fatal(err)
	}
	if e := w.next("join"); e["uuid"] != "u2" || e["occupancy"] != 2.0 || e["data"] != nil {
		t.Fatalf("join %v; want u2, occupancy 2, no data", e)
	}
	got, err := n.State(t.Context(), a, chs{"room", "other"}, "u1")
	if err != nil || jsonOf(t, got) != `{"room":{"mood":"great"}}` {
		t.Fatalf("State = %s, %v; want {\"room\":{\"mood\":\"great\"}}", jsonOf(t, got), err)
	}
	if err := n.SetState(a, chs{"room"}, "u1", 0, st(`{}`)); err != nil {
		t.Fatal(err)
	}
	if e := w.next("state-change"); jsonOf(t, e["data"]) != `{}` {
		t.Fatalf("state-change %v; want data {}", e)
	}
	if err := n.SetState(a, chs{"room"}, "u1", 0, st(`{"x":1}`)); err != nil {
		t.Fatal(err)
	}
	w.next("state-change")
	n.Leave(t.Context(), a, chs{"room"}, "u1")
	if e := w.next("leave"); e["uuid"] != "u1" || e["occupancy"] != 1.0 {
		t.Fatalf("leave %v", e)
	}
	if got, _ := n.State(t.Context(), a, chs{"room"}, "u1"); len(got) != 0 {
		t.Fatalf("State after the leave = %s; want none", jsonOf(t, got))
	}
	// Coming back without state: no state.
	if err := n.Heartbeat(a, chs{"room"}, "u1", 0); err != nil {
		t.Fatal(err)
	}
	if e := w.next("join"); e["data"] != nil {
		t.Fatalf("join %v; want no data", e)
	}
}

// TestHereNowWhereNow: here-now by channel, globally (channels with users
// only), with state; where-now; both follow leaves.
func TestHereNowWhereNow(t *testing.T) {
	n, _ := node(t, openBolt(t), subscriber.Config{})
	const a = channelgroups.Account("acct")
	if err := n.SetState(a, chs{"c1", "c2"}, "u1", 0, subscriber.PresenceState{"c1": json.RawMessage(`{"k":1}`)}); err != nil {
		t.Fatal(err)
	}
	if err := n.Heartbeat(a, chs{"c2"}, "u2", 0); err != nil {
		t.Fatal(err)
	}
	if err := n.Heartbeat("other", chs{"c9"}, "u3", 0); err != nil { // another account
		t.Fatal(err)
	}
	occ := func(ms ...subscriber.Occupant) []subscriber.Occupant { return ms }
	u1 := subscriber.Occupant{UUID: "u1", State: json.RawMessage(`{"k":1}`)}
	u1bare, u2 := subscriber.Occupant{UUID: "u1"}, subscriber.Occupant{UUID: "u2"}
	full := map[channelgroups.Channel][]subscriber.Occupant{"c1": occ(u1), "c2": occ(u1bare, u2)}
	eventually(t, "all joins applied", func() bool {
		got, err := n.HereNow(t.Context(), a, nil)
		return err == nil && reflect.DeepEqual(got, full)
	})
	for _, tc := range []struct {
		name string
		chs  chs
		want map[channelgroups.Channel][]subscriber.Occupant
	}{
		{"global", nil, full},
		{"one channel", chs{"c1"}, map[channelgroups.Channel][]subscriber.Occupant{"c1": occ(u1)}},
		{"an empty channel is left out", chs{"c2", "c3"}, map[channelgroups.Channel][]subscriber.Occupant{"c2": occ(u1bare, u2)}},
		{"none", chs{"c3"}, map[channelgroups.Channel][]subscriber.Occupant{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := n.HereNow(t.Context(), a, tc.chs)
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("HereNow(%v) = %v, %v; want %v", tc.chs, got, err, tc.want)
			}
		})
	}
	if got, err := n.WhereNow(t.Context(), a, "u1"); err != nil || !slices.Equal(got, chs{"c1", "c2"}) {
		t.Fatalf("WhereNow(u1) = %v, %v; want [c1 c2]", got, err)
	}
	if got, err := n.WhereNow(t.Context(), a, "u3"); err != nil || len(got) != 0 {
		t.Fatalf("WhereNow(u3) in acct = %v, %v; want none (u3 is in another account)", got, err)
	}
	n.Leave(t.Context(), a, chs{"c1"}, "u1")
	eventually(t, "u1 left c1", func() bool {
		got, err := n.WhereNow(t.Context(), a, "u1")
		return err == nil && slices.Equal(got, chs{"c2"})
	})
	if got, _ := n.HereNow(t.Context(), a, nil); !slices.Equal(slices.Sorted(maps.Keys(got)), chs{"c2"}) {
		t.Fatalf("HereNow after u1 left c1: %v; want only c2", got)
	}
}

// TestStateRefused: a state that is not a JSON object, or too long, is a
// bad request; past the node's state budget, unavailable; nothing is

// TestStateReadsItsOwnSet: a get of state right after a set through the
// same node reads it, though the node records the set only when its
// consumer applies the log entry the set appended (State waits for the
// node's own appends).
func TestStateReadsItsOwnSet(t *testing.T) {
	n, _ := node(t, openBolt(t), subscriber.Config{})
	const a = channelgroups.Account("acct")
	for i := range 200 {
		want := fmt.Sprintf(`{"room":{"i":%d}}`, i)
		if err := n.SetState(a, chs{"room"}, "u1", 0, subscriber.PresenceState{"room": json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))}); err != nil {
			t.Fatal(err)
		}
		got, err := n.State(t.Context(), a, chs{"room"}, "u1")
		if err != nil || jsonOf(t, got) != want {
			t.Fatalf("set %d: State = %s, %v; want %s", i, jsonOf(t, got), err, want)
		}
	}
}

// recorded either way.
func TestStateRefused(t *testing.T) {
	reg := prometheus.NewRegistry()
	n, _ := node(t, openBolt(t), subscriber.Config{PresenceMax: 10, Registerer: reg}) // a budget of 640 bytes
	const a = channelgroups.Account("acct")
	big := `{"s":"` + strings.Repeat("x", subscriber.MaxStateBytes) + `"}`
	for _, tc := range []struct {
		name, state string
		want        error
	}{
		{"an array", `[1]`, subscriber.ErrBadState},
		{"a string", `"s"`, subscriber.ErrBadState},
		{"null", `null`, subscriber.ErrBadState},
		{"not JSON", `{`, subscriber.ErrBadState},
		{"too long", big, subscriber.ErrStateTooLarge},
		{"past the budget", `{"s":"` + strings.Repeat("x", 700) + `"}`, subscriber.ErrPresenceFull},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := n.SetState(a, chs{"c"}, "u", 0, subscriber.PresenceState{"c": json.RawMessage(tc.state)})
			if !errors.Is(err, tc.want) {
				t.Fatalf("SetState(%.20s) = %v; want %v", tc.state, err, tc.want)
			}
		})
	}
	if got := metrictest.Value(t, reg, "groupcast_presence_records"); got != 0 {
		t.Fatalf("groupcast_presence_records = %v after refusals; want 0", got)
	}
	// Within the budget it is kept, and counted.
	if err := n.SetState(a, chs{"c"}, "u", 0, subscriber.PresenceState{"c": json.RawMessage(`{"s":"x"}`)}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the state counted", func() bool { return metrictest.Value(t, reg, "groupcast_presence_state_bytes") == 9 })
}

// TestTimeoutClearsState: a user who times out leaves with its state.
func TestTimeoutClearsState(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	n, _ := node(t, openBolt(t), subscriber.Config{Now: func() time.Time { return time.Unix(0, now.Load()) }})
	const a = channelgroups.Account("acct")
	w := watchPresence(t, n, a, "c")
	if err := n.SetState(a, chs{"c"}, "u", time.Minute, subscriber.PresenceState{"c": json.RawMessage(`{"a":1}`)}); err != nil {
		t.Fatal(err)
	}
	w.next("join")
	now.Add(int64(2 * time.Minute))
	if e := w.next("timeout"); e["uuid"] != "u" || e["occupancy"] != 0.0 {
		t.Fatalf("timeout %v", e)
	}
	if got, _ := n.State(t.Context(), a, chs{"c"}, "u"); len(got) != 0 {
		t.Fatalf("State after the timeout = %s; want none", jsonOf(t, got))
	}
	if got, _ := n.WhereNow(t.Context(), a, "u"); len(got) != 0 {
		t.Fatalf("WhereNow after the timeout = %v; want none", got)
	}
}

// groupWatch follows a group's presence events ("<group>-pnpres").
type groupWatch struct {
	t      *testing.T
	n      *subscriber.Node
	a      channelgroups.Account
	g      channelgroups.Group
	cursor channelgroups.Timetoken
	queue  []string
}

func watchGroupPresence(t *testing.T, n *subscriber.Node, a channelgroups.Account, g channelgroups.Group) *groupWatch {
	t.Helper()
	hs, err := n.Poll(t.Context(), subscriber.PollRequest{Account: a, Groups: []channelgroups.Group{g + subscriber.PresenceSuffix}})
	if err != nil {
		t.Fatalf("subscribing to %s%s: %v", g, subscriber.PresenceSuffix, err)
	}
	return &groupWatch{t: t, n: n, a: a, g: g, cursor: hs.Cursor}
}

// next returns the next event as "action uuid channel@group".
func (w *groupWatch) next() string {
	w.t.Helper()
	for len(w.queue) == 0 {
		res, err := w.n.Poll(w.t.Context(), subscriber.PollRequest{Account: w.a, Groups: []channelgroups.Group{w.g + subscriber.PresenceSuffix},
			Cursor: w.cursor, Hold: 10 * time.Second})
		if err != nil {
			w.t.Fatal(err)
		}
		if len(res.Deliveries) == 0 {
			w.t.Fatal("no presence event within the hold")
		}
		w.cursor = res.Cursor
		for _, d := range res.Deliveries {
			var e struct{ Action, UUID string }
			if err := json.Unmarshal(d.Msg.Payload, &e); err != nil {
				w.t.Fatal(err)
			}
			w.queue = append(w.queue, e.Action+" "+e.UUID+" "+string(d.Msg.Channel)+"@"+string(d.Group))
		}
	}
	e := w.queue[0]
	w.queue = w.queue[1:]
	return e
}

// TestPresenceThroughGroup: a subscriber through a group is present on the
// group's channels (and, while its poll is parked, does not time out); a
// subscriber of "<group>-pnpres" gets the events of the group's channels,
// through that group, and of a channel added to the group later.
func TestPresenceThroughGroup(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	st := openBolt(t)
	n, _ := node(t, st, subscriber.Config{Now: func() time.Time { return time.Unix(0, now.Load()) }})
	svc, err := channelgroups.NewService(st, channelgroups.NewClock(nil, 0), channelgroups.ServiceConfig{Announcer: n})
	if err != nil {
		t.Fatal(err)
	}
	const a, g = channelgroups.Account("acct"), channelgroups.Group("fam")
	if _, err := svc.Add(t.Context(), a, g, chs{"a", "b"}, channelgroups.IfMatch{}); err != nil {
		t.Fatal(err)
	}
	w := watchGroupPresence(t, n, a, g)
	groups := []channelgroups.Group{g}
	hs, err := n.Poll(t.Context(), subscriber.PollRequest{Account: a, Groups: groups, UUID: "u1", Heartbeat: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	got := []string{w.next(), w.next()}
	slices.Sort(got)
	if want := []string{"join u1 a-pnpres@fam-pnpres", "join u1 b-pnpres@fam-pnpres"}; !slices.Equal(got, want) {
		t.Fatalf("events %q; want %q", got, want)
	}
	if here, err := n.HereNow(t.Context(), a, chs{"a", "b"}); err != nil || len(here["a"]) != 1 || len(here["b"]) != 1 {
		t.Fatalf("HereNow = %v, %v; want u1 on a and b", here, err)
	}
	// A channel added to the group: its events reach the group's presence
	// subscriber (the edit is applied before the join, which is after it
	// in the log).
	if _, err := svc.Add(t.Context(), a, g, chs{"c"}, channelgroups.IfMatch{}); err != nil {
		t.Fatal(err)
	}
	if err := n.Heartbeat(a, chs{"c"}, "probe", 0); err != nil {
		t.Fatal(err)
	}
	if e := w.next(); e != "join probe c-pnpres@fam-pnpres" {
		t.Fatalf("event %q; want probe's join of c through fam-pnpres", e)
	}
	n.Leave(t.Context(), a, chs{"c"}, "probe")
	if e := w.next(); e != "leave probe c-pnpres@fam-pnpres" {
		t.Fatalf("event %q; want probe's leave of c", e)
	}
	// u1 polls again (now present on c too) and stays parked past its
	// timeout: it does not time out. Sentinels prove the janitor passed:
	// s1 times out in a pass after the clock moved, s2 in a later one, so
	// a timeout of u1 would come before s2's.
	answered := make(chan struct{})
	p := n.StartPoll(t.Context(), subscriber.PollRequest{Account: a, Groups: groups, UUID: "u1", Heartbeat: time.Minute, Cursor: hs.Cursor, Hold: time.Hour},
		func(subscriber.PollResult, error) { close(answered) })
	if err := n.Heartbeat(a, chs{"a"}, "s1", time.Minute); err != nil {
		t.Fatal(err)
	}
	until := func(want string) []string {
		t.Helper()
		var seen []string
		for {
			e := w.next()
			if e == want {
				return seen
			}
			seen = append(seen, e)
		}
	}
	if seen := until("join s1 a-pnpres@fam-pnpres"); !slices.Equal(seen, []string{"join u1 c-pnpres@fam-pnpres"}) {
		t.Fatalf("events before s1's join: %q; want u1's join of c", seen)
	}
	now.Add(int64(2 * time.Minute))
	until("timeout s1 a-pnpres@fam-pnpres")
	if err := n.Heartbeat(a, chs{"a"}, "s2", time.Minute); err != nil {
		t.Fatal(err)
	}
	now.Add(int64(2 * time.Minute))
	for _, e := range until("timeout s2 a-pnpres@fam-pnpres") {
		if strings.Contains(e, " u1 ") {
			t.Fatalf("event %q while u1's poll is parked", e)
		}
	}
	// Once the poll returns and u1 sends nothing more, u1 times out of a, b
	// and c.
	p.Cancel()
	<-answered
	now.Add(int64(2 * time.Minute))
	got = []string{w.next(), w.next(), w.next()}
	slices.Sort(got)
	if want := []string{"timeout u1 a-pnpres@fam-pnpres", "timeout u1 b-pnpres@fam-pnpres", "timeout u1 c-pnpres@fam-pnpres"}; !slices.Equal(got, want) {
		t.Fatalf("events %q; want %q", got, want)
	}
}

// TestLeaveWhileParked: an unsubscribe aborts the client's long-poll and
// sends a leave, and the server often notices the abort after the leave;
// the poll's end must not bring the user back (a join right after the
// leave, present until the timeout). The official JavaScript SDK showed it.
func TestLeaveWhileParked(t *testing.T) {
	n, _ := node(t, openBolt(t), subscriber.Config{})
	ctx := t.Context()
	const a = channelgroups.Account("acct")
	c := chs{"c"}
	hs, err := n.Poll(ctx, subscriber.PollRequest{Account: a, Channels: c, UUID: "u", Heartbeat: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	p := n.StartPoll(ctx, subscriber.PollRequest{Account: a, Channels: c, UUID: "u", Heartbeat: time.Minute, Cursor: hs.Cursor, Hold: time.Hour},
		func(subscriber.PollResult, error) { close(done) })
	occupants := func() []string {
		users, err := n.Occupancy(ctx, a, "c")
		if err != nil {
			t.Fatal(err)
		}
		return users
	}
	eventually(t, "u present", func() bool { return slices.Equal(occupants(), []string{"u"}) })
	n.Leave(ctx, a, c, "u")
	eventually(t, "u gone", func() bool { return len(occupants()) == 0 })
	p.Cancel() // the abort, noticed after the leave
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the cancelled poll did not answer")
	}
	// The log is applied in order: once v's join (announced after the
	// poll ended) is applied, a join of u announced at its end would be too.
	if err := n.Heartbeat(a, c, "v", time.Minute); err != nil {
		t.Fatal(err)
	}
	eventually(t, "v present", func() bool { return slices.Contains(occupants(), "v") })
	if got := occupants(); !slices.Equal(got, []string{"v"}) {
		t.Fatalf("present after u's leave and its poll's end: %v, want [v]", got)
	}
}
