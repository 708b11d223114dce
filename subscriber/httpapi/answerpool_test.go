package httpapi

import (
	"errors"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/groupcast/groupcast/access"
	"github.com/groupcast/groupcast/channelgroups"
	"github.com/groupcast/groupcast/subscriber"
)

// TestPooledAnswerComesBackClean: a pendingAnswer given back (putAnswer)
// keeps nothing of the poll it answered (its account, origin, channels,
// result, connection…) but its deliverFn, which still delivers into it. A
// field the reset forgot would leak one subscriber's answer or CORS origin
// into the next poll on any connection.
func TestPooledAnswerComesBackClean(t *testing.T) {
	var s longPollState
	p := s.getAnswer()
	deliver := p.deliverFn
	// Every field set, as a poll answered at once leaves it.
	*p = pendingAnswer{
		api: &API{}, acct: "acct-a", start: time.Unix(1, 0), keepAlive: true, origin: []byte("https://a.example"),
		addr: netip.MustParseAddr("127.0.0.9"), admitted: true, channels: []channelgroups.Channel{"a"}, uuid: "uuid-a", startedAt: 7,
		answered: true, res: subscriber.PollResult{Cursor: 42}, err: errors.New("stale"), waiting: make(chan struct{}),
		parked: &subscriber.Parked{}, memo: &access.Memo{}, route: &routeMemo{}, unwatch: func() {}, gone: true, finished: true,
		deliverFn: deliver,
	}
	v := reflect.ValueOf(p).Elem()
	for i := range v.NumField() {
		if f := v.Type().Field(i); f.Name != "mu" && f.Name != "conn" && v.Field(i).IsZero() {
			t.Fatalf("field %s is not set by this test: set it, so that its reset is checked", f.Name)
		}
	}
	s.putAnswer(p)
	for i := range v.NumField() {
		if f := v.Type().Field(i); f.Name != "deliverFn" && !v.Field(i).IsZero() {
			t.Errorf("after putAnswer, %s = %v; want it zero", f.Name, v.Field(i))
		}
	}
	if p.deliverFn == nil {
		t.Fatal("putAnswer dropped deliverFn: every reuse would allocate it again")
	}
	p.deliverFn(subscriber.PollResult{Cursor: 99}, nil)
	if !p.answered || p.res.Cursor != 99 {
		t.Fatalf("deliverFn of a reused answer delivered elsewhere: answered %v, cursor %v", p.answered, p.res.Cursor)
	}
}
