package bench

import (
	"context"
	"net"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestNchan runs the Nchan peer (needs nginx and libnginx-mod-nchan, see
// scripts/nchan install) and checks the Target contract: a subscriber gets
// exactly the messages published after its handshake, in order, once each.
func TestNchan(t *testing.T) {
	// The peer is a real nginx with Nchan: make test installs it
	// (scripts/nchan install) like the other servers the tests need.
	module, err := NchanModule()
	if err != nil {
		t.Fatalf("Nchan is needed: %v; run `make test`, or `scripts/nchan install` first", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := StartNchan(ctx, t.TempDir(), freeLoopbackAddr(t), module)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Stop()
	hc := newHostClient(n.Addr(), 8)
	const channel = "nchan-test"

	// A message published before the handshake must not reach anyone.
	if err := n.Publish(ctx, hc, channel, -1); err != nil {
		t.Fatal(err)
	}
	const subscribers, messages = 3, 5
	got := make([][]int64, subscribers)
	errs := make([]error, subscribers)
	var wg sync.WaitGroup
	var start Cursor
	for i := range subscribers {
		cur, err := n.Handshake(ctx, hc, channel)
		if err != nil {
			t.Fatal(err)
		}
		start = cur
		wg.Go(func() { got[i], errs[i] = pollUntil(ctx, n, channel, cur, messages) })
	}
	waitParked(ctx, t, n, subscribers)

	if m, err := n.Memory(); err != nil || m <= 0 {
		t.Fatalf("Memory() = %v, %v; want > 0", m, err)
	}
	pids, err := n.PIDs()
	if err != nil || len(pids) != 3 {
		t.Errorf("PIDs() = %v, %v; want the master and 2 workers", pids, err)
	}
	want := []int64{1, 2, 3, 4, 5}
	for _, m := range want {
		if err := n.Publish(ctx, hc, channel, m); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	for i := range subscribers {
		if errs[i] != nil || !slices.Equal(got[i], want) {
			t.Errorf("subscriber %d got %v, %v; want %v", i, got[i], errs[i], want)
		}
	}
	// A subscriber behind by several messages gets them all in one poll.
	sc := NewSubConn(n.Addr())
	defer sc.Close()
	if all, _, err := n.Poll(ctx, sc, channel, start, nil); err != nil || !slices.Equal(all, want) {
		t.Errorf("one poll from the handshake got %v, %v; want %v", all, err, want)
	}

	// On a channel without messages the handshake gives the empty cursor,
	// which waits for the next message.
	cur, err := n.Handshake(ctx, hc, "nchan-fresh")
	if err != nil || cur != (Cursor{}) {
		t.Fatalf("Handshake(fresh channel) = %+v, %v; want the empty cursor", cur, err)
	}
	var next []int64
	var nextErr error
	wg.Go(func() { next, nextErr = pollUntil(ctx, n, "nchan-fresh", cur, 1) })
	waitParked(ctx, t, n, 1)
	if err := n.Publish(ctx, hc, "nchan-fresh", 6); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if nextErr != nil || !slices.Equal(next, []int64{6}) {
		t.Errorf("fresh channel got %v, %v; want [6]", next, nextErr)
	}

	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}
}

// pollUntil polls channel from cur, on a connection of its own, until it
// has want messages or ctx ends.
func pollUntil(ctx context.Context, n *Nchan, channel string, cur Cursor, want int) ([]int64, error) {
	sc := NewSubConn(n.Addr())
	defer sc.Close()
	var got []int64
	for len(got) < want {
		msgs, next, err := n.Poll(ctx, sc, channel, cur, nil)
		if err != nil {
			return got, err
		}
		got = append(got, msgs...)
		cur = next
	}
	return got, nil
}

// waitParked polls Parked until it reports want, failing after ctx's deadline.
func waitParked(ctx context.Context, t *testing.T, n *Nchan, want int) {
	t.Helper()
	for {
		p, err := n.Parked(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if p == want {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("Parked() = %d, want %d: %v", p, want, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// freeLoopbackAddr returns a 127.0.0.1 port nothing listens on now.
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
