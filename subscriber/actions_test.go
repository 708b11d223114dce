package subscriber_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/groupcast/groupcast/archive"
	"github.com/groupcast/groupcast/channelgroups"
	"github.com/groupcast/groupcast/subscriber"
	"github.com/groupcast/groupcast/subscriber/filter"
)

// actionRecorder is an archive.Store that remembers the action changes
// the archiver made, in order.
type actionRecorder struct {
	archive.Store
	mu  sync.Mutex
	ops []string
}

func (r *actionRecorder) AddAction(ctx context.Context, act archive.Action) error {
	r.mu.Lock()
	r.ops = append(r.ops, "add "+act.Type+"="+act.Value+" by "+act.Publisher)
	r.mu.Unlock()
	return r.Store.AddAction(ctx, act)
}

func (r *actionRecorder) RemoveAction(ctx context.Context, a channelgroups.Account, c channelgroups.Channel, message, action channelgroups.Timetoken) error {
	r.mu.Lock()
	r.ops = append(r.ops, "remove "+action.String())
	r.mu.Unlock()
	return r.Store.RemoveAction(ctx, a, c, message, action)
}

func (r *actionRecorder) seen() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.ops)
}

// TestActionEvents: an added and a removed action reach a subscriber of
// the channel, one through a group, one through a wildcard and a filtered
// one, as action events carrying the action; history and message counts
// skip them.
func TestActionEvents(t *testing.T) {
	st := openBolt(t)
	n, _ := node(t, st, subscriber.Config{PollHold: time.Minute})
	svc, err := channelgroups.NewService(st, channelgroups.NewClock(nil, 0), channelgroups.ServiceConfig{Announcer: n})
	if err != nil {
		t.Fatal(err)
	}
	const a, g = channelgroups.Account("acct"), channelgroups.Group("g")
	if _, err := svc.Add(t.Context(), a, g, []channelgroups.Channel{"news.c"}, channelgroups.IfMatch{}); err != nil {
		t.Fatal(err)
	}
	wild, err := channelgroups.ParseWildcard("news.*")
	if err != nil {
		t.Fatal(err)
	}
	f, err := filter.Parse(`meta.k == 1`)
	if err != nil {
		t.Fatal(err)
	}
	reqs := map[string]subscriber.PollRequest{
		"channel":  {Account: a, Channels: []channelgroups.Channel{"news.c"}},
		"group":    {Account: a, Groups: []channelgroups.Group{g}},
		"wildcard": {Account: a, Wildcards: []channelgroups.Wildcard{wild}},
		"filtered": {Account: a, Channels: []channelgroups.Channel{"news.c"}, Filter: f},
	}
	for name, req := range reqs {
		hs, err := n.Poll(t.Context(), req)
		if err != nil {
			t.Fatal(err)
		}
		req.Cursor = hs.Cursor
		reqs[name] = req
	}
	mtt := publishMsg(t, n, &subscriber.Message{Account: a, Channel: "news.c", Payload: []byte(`"hi"`), Meta: []byte(`{"k":1}`)})
	added, err := n.AddAction(t.Context(), archive.Action{Account: a, Channel: "news.c", Message: mtt, Type: "reaction", Value: "smile", Publisher: "u1"})
	if err != nil {
		t.Fatal(err)
	}
	if added.Timetoken <= mtt {
		t.Fatalf("action timetoken %v, want after the message's %v", added.Timetoken, mtt)
	}
	if err := n.RemoveAction(t.Context(), a, "news.c", mtt, added.Timetoken, "u2"); err != nil {
		t.Fatal(err)
	}
	for name, req := range reqs {
		t.Run(name, func(t *testing.T) {
			got := collectUntil(t, n, req, 3)
			if got[0].Msg.Action != nil || string(got[0].Msg.Payload) != `"hi"` {
				t.Fatalf("first delivery %+v, want the message", got[0].Msg)
			}
			add, rm := got[1].Msg, got[2].Msg
			want := subscriber.ActionEvent{Message: mtt, Type: "reaction", Value: "smile"}
			if add.Action == nil || *add.Action != want || add.Publisher != "u1" || add.ActionTimetoken() != added.Timetoken {
				t.Errorf("added event %+v (action %+v), want %+v by u1 at %v", add, add.Action, want, added.Timetoken)
			}
			want.Removes = added.Timetoken
			if rm.Action == nil || *rm.Action != want || rm.Publisher != "u2" || rm.ActionTimetoken() != added.Timetoken {
				t.Errorf("removed event %+v (action %+v), want %+v by u2", rm, rm.Action, want)
			}
			if name == "group" && got[1].Group != g {
				t.Errorf("delivered through %q, want the group", got[1].Group)
			}
		})
	}
	msgs, _, err := n.HistoryPage(t.Context(), archive.Query{Account: a, Channel: "news.c", Max: 100})
	if err != nil || len(msgs) != 1 {
		t.Fatalf("history = %d messages, %v; want only the message", len(msgs), err)
	}
	if c, err := n.MessageCount(t.Context(), a, "news.c", 0); err != nil || c != 1 {
		t.Fatalf("message count = %d, %v; want 1", c, err)
	}
}

// TestActionsReadYourWrites: an action is in Actions and MessageActions as
// soon as AddAction returns, before the archiver stored it (a store that
// is never written), and gone as soon as RemoveAction returns; adding the
// same action twice as the same uuid is refused; removing an action that
// is not there does nothing.
func TestActionsReadYourWrites(t *testing.T) {
	st := readOnlyActions{archive.NewMemory(nil)}
	n, _ := node(t, openBolt(t), subscriber.Config{Archive: st})
	const a = channelgroups.Account("acct")
	m1 := publishMsg(t, n, &subscriber.Message{Account: a, Channel: "c", Payload: []byte(`1`)})
	m2 := publishMsg(t, n, &subscriber.Message{Account: a, Channel: "c", Payload: []byte(`2`)})
	add := func(m channelgroups.Timetoken, typ, value, uuid string) archive.Action {
		t.Helper()
		act, err := n.AddAction(t.Context(), archive.Action{Account: a, Channel: "c", Message: m, Type: typ, Value: value, Publisher: uuid})
		if err != nil {
			t.Fatal(err)
		}
		return act
	}
	x := add(m1, "reaction", "smile", "u1")
	y := add(m1, "reaction", "smile", "u2")
	z := add(m2, "receipt", "read", "u1")
	if _, err := n.AddAction(t.Context(), archive.Action{Account: a, Channel: "c", Message: m1, Type: "reaction", Value: "smile", Publisher: "u1"}); !errors.Is(err, subscriber.ErrActionExists) {
		t.Fatalf("adding the same action again: %v, want ErrActionExists", err)
	}
	tts := func(acts []archive.Action) []channelgroups.Timetoken {
		var out []channelgroups.Timetoken
		for _, act := range acts {
			out = append(out, act.Timetoken)
		}
		return out
	}
	got, more, err := n.Actions(t.Context(), a, "c", 0, 0, 100)
	if err != nil || more || !slices.Equal(tts(got), []channelgroups.Timetoken{x.Timetoken, y.Timetoken, z.Timetoken}) {
		t.Fatalf("Actions = %v, %v, %v; want x, y, z", tts(got), more, err)
	}
	if got[0] != x {
		t.Errorf("Actions[0] = %+v, want %+v", got[0], x)
	}
	got, more, err = n.Actions(t.Context(), a, "c", 0, 0, 2)
	if err != nil || !more || !slices.Equal(tts(got), []channelgroups.Timetoken{y.Timetoken, z.Timetoken}) {
		t.Fatalf("Actions limit 2 = %v, %v, %v; want y, z and more", tts(got), more, err)
	}
	got, _, err = n.Actions(t.Context(), a, "c", z.Timetoken, 0, 100) // start is exclusive
	if err != nil || !slices.Equal(tts(got), []channelgroups.Timetoken{x.Timetoken, y.Timetoken}) {
		t.Fatalf("Actions before z = %v, %v; want x, y", tts(got), err)
	}
	got, err = n.MessageActions(t.Context(), a, "c", m1, m1)
	if err != nil || !slices.Equal(tts(got), []channelgroups.Timetoken{x.Timetoken, y.Timetoken}) {
		t.Fatalf("MessageActions(m1) = %v, %v; want x, y", tts(got), err)
	}
	if err := n.RemoveAction(t.Context(), a, "c", m1, x.Timetoken, "u1"); err != nil {
		t.Fatal(err)
	}
	if err := n.RemoveAction(t.Context(), a, "c", m1, m1, "u1"); err != nil {
		t.Fatalf("removing an action that is not there: %v", err)
	}
	got, err = n.MessageActions(t.Context(), a, "c", m1, m2)
	if err != nil || !slices.Equal(tts(got), []channelgroups.Timetoken{y.Timetoken, z.Timetoken}) {
		t.Fatalf("after the remove: MessageActions = %v, %v; want y, z", tts(got), err)
	}
	add(m1, "reaction", "smile", "u1") // removed, so it may be added again
}

// readOnlyActions is a store the archiver cannot write actions to.
type readOnlyActions struct{ archive.Store }

func (readOnlyActions) AddAction(context.Context, archive.Action) error {
	return fmt.Errorf("read-only: %w", archive.ErrInvalid)
}

func (readOnlyActions) RemoveAction(context.Context, channelgroups.Account, channelgroups.Channel, channelgroups.Timetoken, channelgroups.Timetoken) error {
	return fmt.Errorf("read-only: %w", archive.ErrInvalid)
}

// TestArchiverStoresActions: the archiver adds and removes actions in the
// store in log order, each with its message's expiry.
func TestArchiverStoresActions(t *testing.T) {
	mem := archive.NewMemory(nil)
	rec := &actionRecorder{Store: mem}
	n, _ := node(t, openBolt(t), subscriber.Config{Archive: rec, HistoryRetention: 48 * time.Hour})
	const a = channelgroups.Account("acct")
	m := publishMsg(t, n, &subscriber.Message{Account: a, Channel: "c", Payload: []byte(`1`)})
	x, err := n.AddAction(t.Context(), archive.Action{Account: a, Channel: "c", Message: m, Type: "reaction", Value: "smile", Publisher: "u1"})
	if err != nil {
		t.Fatal(err)
	}
	y, err := n.AddAction(t.Context(), archive.Action{Account: a, Channel: "c", Message: m, Type: "receipt", Value: "read", Publisher: "u2"})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.RemoveAction(t.Context(), a, "c", m, x.Timetoken, "u1"); err != nil {
		t.Fatal(err)
	}
	want := []string{"add reaction=smile by u1", "add receipt=read by u2", "remove " + x.Timetoken.String()}
	eventually(t, "three action changes stored", func() bool { return len(rec.seen()) >= 3 })
	if got := rec.seen(); !slices.Equal(got, want) {
		t.Fatalf("store got %q, want %q", got, want)
	}
	acts, _, err := mem.Actions(t.Context(), a, "c", 0, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	wantExpires := time.UnixMilli(int64(subscriber.PositionOf(m).Ms)).Add(48 * time.Hour)
	if len(acts) != 1 || acts[0].Timetoken != y.Timetoken || acts[0].Type != "receipt" || acts[0].Value != "read" ||
		acts[0].Publisher != "u2" || acts[0].Message != m || !acts[0].Expires.Equal(wantExpires) {
		t.Fatalf("stored %+v, want only %+v expiring %v", acts, y, wantExpires)
	}
}

// TestActionBadInput: bad actions are refused with ErrBadRequest and
// change nothing.
func TestActionBadInput(t *testing.T) {
	n, _ := node(t, openBolt(t), subscriber.Config{})
	const a = channelgroups.Account("acct")
	ok := archive.Action{Account: a, Channel: "c", Message: 1, Type: "t", Value: "v", Publisher: "u"}
	for name, mod := range map[string]func(*archive.Action){
		"no type":          func(x *archive.Action) { x.Type = "" },
		"no value":         func(x *archive.Action) { x.Value = "" },
		"long type":        func(x *archive.Action) { x.Type = "0123456789abcdef" },
		"long value":       func(x *archive.Action) { x.Value = string(make([]byte, subscriber.MaxActionValueBytes+1)) },
		"bad utf8":         func(x *archive.Action) { x.Value = "\xff" },
		"zero message":     func(x *archive.Action) { x.Message = 0 },
		"presence channel": func(x *archive.Action) { x.Channel = "c" + subscriber.PresenceSuffix },
		"bad channel":      func(x *archive.Action) { x.Channel = "" },
		"long uuid":        func(x *archive.Action) { x.Publisher = string(make([]byte, subscriber.MaxUUIDBytes+1)) },
	} {
		act := ok
		mod(&act)
		if _, err := n.AddAction(t.Context(), act); !errors.Is(err, subscriber.ErrBadRequest) {
			t.Errorf("%s: %v, want ErrBadRequest", name, err)
		}
	}
	if err := n.RemoveAction(t.Context(), a, "c", 1, 0, "u"); !errors.Is(err, subscriber.ErrBadRequest) {
		t.Errorf("remove of action 0: %v, want ErrBadRequest", err)
	}
	if _, _, err := n.Actions(t.Context(), a, "c", 0, 0, 0); !errors.Is(err, subscriber.ErrBadRequest) {
		t.Errorf("limit 0: %v, want ErrBadRequest", err)
	}
	if acts, _, err := n.Actions(t.Context(), a, "c", 0, 0, 10); err != nil || len(acts) != 0 {
		t.Errorf("after bad input: %v, %v; want no actions", acts, err)
	}
	// A 15-character type (multi-byte) is fine.
	ok.Type = "ééééééééééééééé"
	if _, err := n.AddAction(t.Context(), ok); err != nil {
		t.Errorf("15-character type: %v", err)
	}
}
