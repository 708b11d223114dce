package subscriber_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/groupcast/groupcast/channelgroups"
	"github.com/groupcast/groupcast/subscriber"
	"github.com/groupcast/groupcast/subscriber/filter"
)

func publishMsg(t *testing.T, n *subscriber.Node, m *subscriber.Message) channelgroups.Timetoken {
	t.Helper()
	tt, err := n.Publish(t.Context(), m, nil)
	if err != nil {
		t.Fatal(err)
	}
	return tt
}

// TestPollFilter: a filtered-out message never reaches the subscriber, its
// cursor moves past it, and a poll whose only new messages were filtered
// out stays parked rather than answering empty.
func TestPollFilter(t *testing.T) {
	n, _ := node(t, openBolt(t), subscriber.Config{PollHold: time.Minute})
	const a = channelgroups.Account("acct")
	shard := channelgroups.ShardOf(a, channelgroups.DefaultShards)
	f, err := filter.Parse(`meta.k == 1`)
	if err != nil {
		t.Fatal(err)
	}
	req := subscriber.PollRequest{Account: a, Channels: []channelgroups.Channel{"c"}, Filter: f}
	hs, err := n.Poll(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	publishMsg(t, n, &subscriber.Message{Account: a, Channel: "c", Payload: []byte(`"no"`), Meta: []byte(`{"k":2}`)})
	last := publishMsg(t, n, &subscriber.Message{Account: a, Channel: "c", Payload: []byte(`"bare"`)})
	eventually(t, "the filtered-out messages applied", func() bool {
		return subscriber.CursorOf(subscriber.Applied(n, shard)) >= last
	})
	// The poll's own first check sees only filtered-out messages: it parks.
	req.Cursor = hs.Cursor
	answered := make(chan pollOutcome, 1)
	w := n.StartPoll(t.Context(), req, func(res subscriber.PollResult, err error) { answered <- pollOutcome{res, err} })
	defer w.Cancel()
	select {
	case o := <-answered:
		t.Fatalf("answered %+v, %v with only filtered-out messages after its cursor", o.res, o.err)
	default:
	}
	yes := publishMsg(t, n, &subscriber.Message{Account: a, Channel: "c", Payload: []byte(`"yes"`), Meta: []byte(`{"k":1}`)})
	res := wait(t, answered)
	if len(res.Deliveries) != 1 || string(res.Deliveries[0].Msg.Payload) != `"yes"` {
		t.Fatalf("delivered %v, want only \"yes\"", payloads(res.Deliveries))
	}
	if res.Cursor < yes {
		t.Fatalf("cursor %v is before the delivered message %v", res.Cursor, yes)
	}
	// Without a filter the same cursor range holds all three.
	req.Filter, req.Cursor = nil, hs.Cursor
	all := collectUntil(t, n, req, 3)
	if got := payloads(all); !slices.Equal(got, []string{`"no"`, `"bare"`, `"yes"`}) {
		t.Fatalf("unfiltered: delivered %v", got)
	}
}

func payloads(ds []subscriber.Delivery) []string {
	var out []string
	for _, d := range ds {
		out = append(out, string(d.Msg.Payload))
	}
	return out
}

// collectUntil follows req's cursor until want deliveries came.
func collectUntil(t *testing.T, n *subscriber.Node, req subscriber.PollRequest, want int) []subscriber.Delivery {
	t.Helper()
	var got []subscriber.Delivery
	deadline := time.Now().Add(20 * time.Second)
	for len(got) < want {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d deliveries within 20s: %v", len(got), want, channelsOf(got))
		}
		res, err := n.Poll(t.Context(), req)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, res.Deliveries...)
		req.Cursor = res.Cursor
	}
	return got
}

// TestPollWildcard: a wildcard subscription gets the messages of every
// channel under its prefix, named by the wildcard (the envelope's "b"), and
// a parked one is woken by them; a message it reaches directly too comes
// once. Presence channels (news.q-pnpres) are not under a wildcard.
func TestPollWildcard(t *testing.T) {
	n, _ := node(t, openBolt(t), subscriber.Config{PollHold: time.Minute})
	const a = channelgroups.Account("acct")
	news, err := channelgroups.ParseWildcard("news.*")
	if err != nil {
		t.Fatal(err)
	}
	deep, err := channelgroups.ParseWildcard("sport.ball.*")
	if err != nil {
		t.Fatal(err)
	}
	req := subscriber.PollRequest{Account: a, Channels: []channelgroups.Channel{"news.a"}, Wildcards: []channelgroups.Wildcard{news, deep}}
	hs, err := n.Poll(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	req.Cursor = hs.Cursor
	// Parked on the wildcards alone, only their channels' messages wake it.
	parked := pollAsync(t.Context(), n, subscriber.PollRequest{Account: a, Wildcards: req.Wildcards, Cursor: hs.Cursor})
	for _, c := range []channelgroups.Channel{"other", "newsx", "news.b", "sport.ball", "sport.ballx.y", "sport.ball.z", "news.q" + subscriber.PresenceSuffix, "news.a", "news.c.d"} {
		publishMsg(t, n, &subscriber.Message{Account: a, Channel: c, Payload: []byte(fmt.Sprintf("%q", c))})
	}
	first := wait(t, parked)
	if len(first.Deliveries) == 0 || first.Deliveries[0].Msg.Channel != "news.b" {
		t.Fatalf("the parked poll answered %v, want news.b first", channelsOf(first.Deliveries))
	}
	got := collectUntil(t, n, req, 4)
	var names []string
	for _, d := range got {
		names = append(names, string(d.Msg.Channel)+"@"+string(d.Wildcard))
	}
	if want := []string{"news.b@news.*", "sport.ball.z@sport.ball.*", "news.a@", "news.c.d@news.*"}; !slices.Equal(names, want) {
		t.Fatalf("delivered %v, want %v", names, want)
	}
}

// TestWildcardExact is G3 for wildcards: every message published to a
// matching channel after the subscribe was acknowledged is delivered, once
// and in log order, while publishers write to many channels at once.
func TestWildcardExact(t *testing.T) {
	n, _ := node(t, openBolt(t), subscriber.Config{PollHold: time.Minute})
	const a = channelgroups.Account("acct")
	w, err := channelgroups.ParseWildcard("t.*")
	if err != nil {
		t.Fatal(err)
	}
	req := subscriber.PollRequest{Account: a, Wildcards: []channelgroups.Wildcard{w}}
	hs, err := n.Poll(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	req.Cursor = hs.Cursor
	const publishers, each = 4, 50
	var wg sync.WaitGroup
	want := map[string]bool{}
	var mu sync.Mutex
	for p := range publishers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(p), 7))
			for i := range each {
				c := channelgroups.Channel(fmt.Sprintf("t.%d", r.IntN(20)))
				if i%3 == 0 {
					c = channelgroups.Channel(fmt.Sprintf("t.sub.%d", r.IntN(5)))
				}
				if i%5 == 0 {
					c = "u.not" // not matching
				}
				body := fmt.Sprintf(`"%d-%d"`, p, i)
				if _, err := n.Publish(t.Context(), &subscriber.Message{Account: a, Channel: c, Payload: []byte(body)}, nil); err != nil {
					t.Error(err)
					return
				}
				if c != "u.not" {
					mu.Lock()
					want[body] = true
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	got := collectUntil(t, n, req, len(want))
	seen := map[string]bool{}
	for i, d := range got {
		if seen[string(d.Msg.Payload)] || !want[string(d.Msg.Payload)] {
			t.Fatalf("delivery %d: %s on %s is a duplicate or not owed", i, d.Msg.Payload, d.Msg.Channel)
		}
		seen[string(d.Msg.Payload)] = true
		if i > 0 && !got[i-1].Msg.Pos.Less(d.Msg.Pos) {
			t.Fatalf("delivery %d out of log order", i)
		}
	}
	if len(seen) != len(want) {
		t.Fatalf("delivered %d of %d", len(seen), len(want))
	}
}

// TestPollChannelsInLogOrder: a poll's deliveries from several channels
// come in log order, each message once, also when a channel is named
// twice; from one channel they come as its ring holds them.
func TestPollChannelsInLogOrder(t *testing.T) {
	n, _ := node(t, openBolt(t), subscriber.Config{PollHold: time.Minute})
	const a = channelgroups.Account("acct")
	req := subscriber.PollRequest{Account: a, Channels: []channelgroups.Channel{"x", "y", "x"}}
	hs, err := n.Poll(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	req.Cursor = hs.Cursor
	one := subscriber.PollRequest{Account: a, Channels: []channelgroups.Channel{"x"}, Cursor: hs.Cursor}
	var want, wantX []string
	for i := range 6 {
		c := channelgroups.Channel([]string{"x", "y"}[i%2])
		body := fmt.Sprintf("%q", fmt.Sprintf("%s%d", c, i))
		publishMsg(t, n, &subscriber.Message{Account: a, Channel: c, Payload: []byte(body)})
		want = append(want, body)
		if c == "x" {
			wantX = append(wantX, body)
		}
	}
	payloads := func(ds []subscriber.Delivery) []string {
		var out []string
		for _, d := range ds {
			out = append(out, string(d.Msg.Payload))
		}
		return out
	}
	if got := payloads(collectUntil(t, n, req, len(want))); !slices.Equal(got, want) {
		t.Errorf("x, y, x delivered %v, want %v", got, want)
	}
	if got := payloads(collectUntil(t, n, one, len(wantX))); !slices.Equal(got, wantX) {
		t.Errorf("x delivered %v, want %v", got, wantX)
	}
}
