//go:build linux

package httpapi

import (
	"cmp"
	"errors"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/groupcast/groupcast/internal/pollyield"
)

// repollQueue is where a connection handed back after a long-poll waits
// for the client's next request: a subscriber's re-poll. It is an
// epoll(7) set of its own; one goroutine hands out the connections that
// became readable, at most repollBatch at a time, and before each batch
// the runtime's network poller takes a turn (pollyield.Yield). Requests on
// other connections (publishes, edits, history: anything a client sent
// without having parked there) are read by the runtime's poller as before,
// so they no longer queue behind thousands of re-polls.
//
// Why: with one core and 10,000 subscribers on one channel, every publish
// woke all of them, and their re-polls, readable at about the same time,
// sat in the runtime's poller ahead of the next publish: a publish took
// 160-500 ms to be read (the scheduler looks at the poller only when it
// has nothing else to run), and each message's delivery waited that long
// before its wake-up started. With the queue (and wake-up passes that
// yield, hub.answerPass) the publish's wait was 14-40 ms (p50-p90) and
// delivery p50 fell from 270-290 ms to 120-150 ms at 1.09 M deliveries/s.
// The re-polls lose nothing by it: the node is as busy, and a re-poll read
// later finds more messages to take.
//
// Costs: one epoll_ctl per wait (re-arming the connection, EPOLLONESHOT),
// and a map entry and a channel per waiting connection. A wait ends when
// the connection is readable (a request, or the client's hang-up: EOF is
// readable), when the read deadline the server set passes (checked every
// repollSweep, so up to that much late), when the connection is closed
// (servedConn.Close), or at once when it cannot be queued; in every case the
// reader then reads through the runtime's poller, which applies the
// deadline and tells a closed connection.
type repollQueue struct {
	batch int // repollBatch if 0 (tests set it)
	// afterRound, if set, runs after each round that did not stop the
	// goroutine, with nothing locked (tests set it).
	afterRound func()

	mu      sync.Mutex
	running bool
	epfd    int
	seq     uint32
	byFD    map[int32]repollWaiter
}

type repollWaiter struct {
	seq      int32 // the wait's number, in the event's data: a stale event is ignored
	ready    chan struct{}
	deadline time.Time
}

// repollBatch is the most connections a round hands out before the
// runtime's poller takes a turn. At 100 subscribers and 11,600 publishes/s,
// 16 let re-polls fall so far behind that subscribers lost 90-100k of
// 11.6 M messages per 10 s (the channel keeps 100); 256 lost 745, as many
// as without the queue.
const repollBatch = 256

// repollSweep is how often waiting connections are checked against their
// read deadlines, and how long the goroutine waits with nothing queued
// before it returns.
const repollSweep = time.Second

// wait blocks until rc is readable, its deadline passed, or it was
// cancelled (cancel); when it cannot queue the connection (the set failed,
// or the descriptor is closed) it returns at once.
func (q *repollQueue) wait(rc syscall.RawConn, fd int, ready chan struct{}, deadline time.Time, arm *repollArm) {
	select {
	case <-ready: // a signal left over from a wait that ended otherwise
	default:
	}
	q.mu.Lock()
	if !q.running {
		if err := q.startLocked(); err != nil {
			q.mu.Unlock()
			return
		}
	}
	q.seq++
	w := repollWaiter{seq: int32(q.seq), ready: ready, deadline: deadline}
	q.byFD[int32(fd)] = w
	epfd := q.epfd
	q.mu.Unlock()
	// epoll_ctl outside the lock: the entry is there before any event can
	// name it. Under Control, so that the descriptor cannot be closed (and
	// its number taken by another connection) meanwhile.
	if arm.fn == nil {
		arm.fn = arm.arm
	}
	arm.epfd, arm.seq, arm.err = epfd, w.seq, nil
	err := rc.Control(arm.fn)
	if err != nil || arm.err != nil {
		q.forget(fd, w.seq)
		return
	}
	<-ready
}

// repollArm puts a connection in the queue's set for a wait. A
// connection's reader keeps one, its fn bound once, so that a wait
// allocates nothing.
type repollArm struct {
	epfd int
	seq  int32
	ev   unix.EpollEvent
	err  error
	fn   func(fd uintptr)
}

func (a *repollArm) arm(fd uintptr) {
	a.ev = unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: int32(fd), Pad: a.seq}
	// Re-armed if still in the set from an earlier wait, added if not (a
	// new connection, a new set, or one whose number a closed connection
	// had: the kernel took that one out when it closed).
	a.err = unix.EpollCtl(a.epfd, unix.EPOLL_CTL_MOD, int(fd), &a.ev)
	if errors.Is(a.err, unix.ENOENT) {
		a.err = unix.EpollCtl(a.epfd, unix.EPOLL_CTL_ADD, int(fd), &a.ev)
	}
}

// cancel ends a wait on fd made with ready, if there is one.
func (q *repollQueue) cancel(fd int, ready chan struct{}) {
	q.mu.Lock()
	if w, ok := q.byFD[int32(fd)]; ok && w.ready == ready {
		delete(q.byFD, int32(fd))
		signal(ready)
	}
	q.mu.Unlock()
}

func (q *repollQueue) forget(fd int, seq int32) {
	q.mu.Lock()
	if w, ok := q.byFD[int32(fd)]; ok && w.seq == seq {
		delete(q.byFD, int32(fd))
	}
	q.mu.Unlock()
}

func signal(ready chan struct{}) {
	select {
	case ready <- struct{}{}:
	default:
	}
}

// startLocked makes the set and starts its goroutine; mu is held.
func (q *repollQueue) startLocked() error {
	set, epfd, raw, err := newEpollSet()
	if err != nil {
		return err
	}
	q.epfd, q.running, q.byFD = epfd, true, map[int32]repollWaiter{}
	go q.run(set, raw)
	return nil
}

func (q *repollQueue) run(set *os.File, raw syscall.RawConn) {
	events := make([]unix.EpollEvent, cmp.Or(q.batch, repollBatch))
	var ready []chan struct{}
	lastSweep := time.Now()
	for {
		// The runtime's poller first, even if the set holds events already:
		// requests on other connections that became readable meanwhile are
		// queued before this round's re-polls.
		pollyield.Yield()
		_ = set.SetReadDeadline(time.Now().Add(repollSweep))
		n, idle, waitErr := takeEvents(raw, events)
		now := time.Now()
		ready = ready[:0]
		q.mu.Lock()
		for _, ev := range events[:max(n, 0)] {
			if w, ok := q.byFD[ev.Fd]; ok && w.seq == ev.Pad {
				delete(q.byFD, ev.Fd)
				ready = append(ready, w.ready)
			}
		}
		if now.Sub(lastSweep) >= repollSweep {
			lastSweep = now
			for fd, w := range q.byFD {
				if !w.deadline.IsZero() && now.After(w.deadline) {
					delete(q.byFD, fd)
					ready = append(ready, w.ready)
				}
			}
		}
		// Idle, or failed: a failed set gives its waiters back to the
		// runtime's poller; the next wait starts a new one.
		stop := waitErr != nil || idle && len(q.byFD) == 0
		if stop {
			for _, w := range q.byFD {
				ready = append(ready, w.ready)
			}
			q.running, q.byFD = false, nil
		}
		afterRound := q.afterRound
		q.mu.Unlock()
		for _, r := range ready {
			signal(r)
		}
		if stop {
			_ = set.Close()
			return
		}
		if afterRound != nil {
			afterRound()
		}
	}
}
