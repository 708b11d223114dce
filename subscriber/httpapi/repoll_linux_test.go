//go:build linux

package httpapi

import (
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/groupcast/groupcast/internal/pollyield"
)

func testReadBufs() (func() *[]byte, func(*[]byte)) {
	get := func() *[]byte {
		b := make([]byte, readAhead)
		return &b
	}
	return get, func(*[]byte) {}
}

// waiting returns how many connections wait in q.
func (q *repollQueue) waiting() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.byFD)
}

// until polls cond, yielding between looks, until it holds; after 10 s it
// fails t with what.
func until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); runtime.Gosched() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
	}
}

// untilWaiting polls until n connections wait in q, or fails t.
func untilWaiting(t *testing.T, q *repollQueue, n int) {
	t.Helper()
	until(t, fmt.Sprintf("%d connections wait in the queue", n), func() bool { return q.waiting() == n })
}

// TestRepollQueue: a wait ends when the connection is readable (and the
// read then gets the bytes), when its deadline passes, or when it is
// cancelled; the goroutine ends once nothing waits.
func TestRepollQueue(t *testing.T) {
	q := &repollQueue{}
	servers, clients := tcpPairs(t, 3)
	get, put := testReadBufs()
	past := time.Now().Add(-time.Second)
	deadlines := []time.Time{{}, past, {}}
	type result struct {
		i   int
		got string
		err error
	}
	if err := servers[1].SetReadDeadline(past); err != nil {
		t.Fatal(err)
	}
	done := make(chan result, 3)
	readers := make([]*rawReader, 3)
	for i, s := range servers {
		readers[i] = newRawReader(s, get, put, q, &deadlines[i])
		if readers[i].queue == nil {
			t.Fatal("a TCP connection's reader does not queue")
		}
		go func() {
			buf, n, err := readers[i].readSome()
			r := result{i: i, err: err}
			if buf != nil {
				r.got = string((*buf)[:n])
			}
			done <- r
		}()
	}
	untilWaiting(t, q, 2) // the one past its deadline does not wait
	if r := <-done; r.i != 1 || r.err == nil {
		t.Fatalf("first wait to end: %+v, want reader 1 with its deadline's error", r)
	}
	if _, err := clients[0].Write([]byte("GET")); err != nil {
		t.Fatal(err)
	}
	if r := <-done; r.i != 0 || r.got != "GET" || r.err != nil {
		t.Fatalf("after a write: %+v, want reader 0 with GET", r)
	}
	readers[2].cancel()
	servers[2].Close()
	if r := <-done; r.i != 2 || r.err == nil {
		t.Fatalf("after cancel and close: %+v, want reader 2 with an error", r)
	}
	until(t, "the queue's goroutine stops with nothing queued", func() bool {
		q.mu.Lock()
		defer q.mu.Unlock()
		return !q.running
	})
}

// TestRepollQueueNewRequestsFirst is what the queue is for: with one P,
// 300 queued connections that became readable before a request on another
// connection (read the usual way, through the runtime's poller) do not all
// come first: the request waits at most for a round or two of the queue
// (16 re-polls each here). The queue's lock is held while the test writes,
// so that no round can hand out connections before the last write (the
// runtime's monitor may give the P to another thread during a write).
// Without the queue the request was read after 128 of them, or more.
func TestRepollQueueNewRequestsFirst(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	const n, batch = 300, 16
	q := &repollQueue{batch: batch}
	servers, clients := tcpPairs(t, n+1)
	get, put := testReadBufs()
	var mu sync.Mutex
	var order []int // reader indexes as their reads return; n is the other connection's
	var wg sync.WaitGroup
	for i, s := range servers[:n] {
		r := newRawReader(s, get, put, q, nil)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, _, err := r.readSome(); err != nil {
				t.Error(err)
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
		}()
	}
	untilWaiting(t, q, n)
	wg.Add(1)
	go func() {
		defer wg.Done()
		b := make([]byte, 1)
		if _, err := servers[n].Read(b); err != nil {
			t.Error(err)
		}
		mu.Lock()
		order = append(order, n)
		mu.Unlock()
	}()
	runtime.Gosched() // it waits in the runtime's poller
	q.mu.Lock()
	for _, c := range clients {
		if _, err := c.Write([]byte("x")); err != nil {
			q.mu.Unlock()
			t.Fatal(err)
		}
	}
	q.mu.Unlock()
	wg.Wait()
	if at := slices.Index(order, n); at > 4*batch {
		t.Fatalf("the request on the other connection was read %dth of %d, after %d queued re-polls readable before it; want it within the queue's first rounds (%d each)", at+1, n+1, at, batch)
	} else {
		t.Logf("read %dth of %d", at+1, n+1)
	}
}

// TestRepollQueueEventBetweenRounds: a connection that becomes readable
// while the goroutine hands out a round, and whose readiness the runtime's
// poller reports before the next round begins, is handed out in that
// round. A round that parked in the poller before looking at the set
// waited for a later event that never came (the set's descriptor is
// edge-triggered there, and RawConn.Read forgets a readiness reported
// before the call): a re-poll sat unread, and its client timed out.
func TestRepollQueueEventBetweenRounds(t *testing.T) {
	servers, clients := tcpPairs(t, 2)
	var once sync.Once
	q := &repollQueue{}
	q.afterRound = func() {
		once.Do(func() {
			if _, err := clients[1].Write([]byte("B")); err != nil {
				t.Error(err)
			}
			pollyield.Yield() // the poller reports the set readable while no round waits
		})
	}
	get, put := testReadBufs()
	done := make(chan string, 2)
	for _, s := range servers {
		r := newRawReader(s, get, put, q, nil)
		go func() {
			buf, n, err := r.readSome()
			if err != nil {
				t.Error(err)
			}
			if buf != nil {
				done <- string((*buf)[:n])
			}
		}()
	}
	untilWaiting(t, q, 2)
	if _, err := clients[0].Write([]byte("A")); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(10 * time.Second)
	var got []string
	for len(got) < 2 {
		select {
		case s := <-done:
			got = append(got, s)
		case <-timeout:
			t.Fatalf("read %q in 10 s, want A and B; %d connections still wait in the queue", got, q.waiting())
		}
	}
	if slices.Sort(got); !slices.Equal(got, []string{"A", "B"}) {
		t.Fatalf("read %q, want A and B", got)
	}
}
