//go:build linux

package httpapi

import (
	"errors"
	"log/slog"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// connWatcher notices parked connections whose client went away. A parked
// poll's connection is read by nobody, so a client that closes it is not
// seen until the poll answers, up to its hold later. The watcher keeps the
// connections in an epoll(7) set of its own, interested only in hang-ups
// (EPOLLRDHUP, and the HUP and ERR epoll always reports), so it reads
// nothing: bytes a client sends meanwhile (a pipelined request) stay in the
// socket for the server. One goroutine waits on the set while anything is
// watched, and returns once nothing has been for a second. It waits in the
// runtime's poller (the set's descriptor is itself pollable), never in a
// blocking epoll_wait: a goroutine in a blocking system call keeps its P
// until the runtime's monitor takes it back, which can take 10-20 ms, and a
// node with one P (GOMAXPROCS=1, a node given one core) stood still that
// long every time the watcher began waiting (once a second, and at every
// hang-up); TestWatcherWaitsInThePoller. A connection stays in the set
// between its parks, disarmed or armed, and the next watch re-arms it (one
// epoll_ctl per park; see unwatch). Each watch costs
// a map entry, two small closures and the kernel's entry (a few hundred
// bytes in all), where a goroutine blocked in a 1-byte Read would cost a
// stack of 2-8 KiB per parked poll and would consume the byte it reads.
type connWatcher struct {
	log *slog.Logger

	mu      sync.Mutex
	epfd    int
	running bool
	seq     uint32
	byFD    map[int32]watchEntry
}

type watchEntry struct {
	seq  int32 // the watch's number, in the event's data: a stale event is ignored
	gone func()
}

// idleWait is how long the goroutine waits with nothing watched before it
// returns.
const idleWait = time.Second

// watch calls gone once, from the watcher's goroutine, if c's client hangs
// up before unwatch is called. It returns nil, and watches nothing, when c
// has no descriptor to watch (an in-memory connection).
func (w *connWatcher) watch(c net.Conn, gone func()) (unwatch func()) {
	rc := rawConnOf(c)
	if rc == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.running {
		set, fd, raw, err := newEpollSet()
		if err != nil {
			w.log.Warn("cannot watch parked connections for hang-ups", "err", err)
			return nil
		}
		w.epfd, w.running, w.byFD = fd, true, map[int32]watchEntry{}
		go w.run(set, raw)
	}
	w.seq++
	seq := int32(w.seq)
	var fd int32
	var addErr error
	err := rc.Control(func(u uintptr) {
		fd = int32(u)
		ev := unix.EpollEvent{Events: unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: fd, Pad: seq}
		// Re-armed if still in the set from an earlier park (unwatch
		// leaves it there), added if not: a new connection, one whose
		// descriptor number an earlier one had (the kernel took that one
		// out of the set when it closed), or a new set.
		addErr = unix.EpollCtl(w.epfd, unix.EPOLL_CTL_MOD, int(u), &ev)
		if errors.Is(addErr, unix.ENOENT) {
			addErr = unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, int(u), &ev)
		}
	})
	if err = errors.Join(err, addErr); err != nil {
		return nil // closed already, most likely: the poll's answer finds out
	}
	w.byFD[fd] = watchEntry{seq: seq, gone: gone}
	return func() { w.unwatch(fd, seq) }
}

// unwatch ends the watch; its gone is not called afterwards. The
// connection stays in the set, armed: a connection parks again and again,
// and re-arming it (watch) is one epoll_ctl where taking it out and adding
// it back were two. A hang-up it reports while unwatched finds no watch of
// its number (the event's seq) and is ignored; the set forgets the
// connection when it closes.
func (w *connWatcher) unwatch(fd, seq int32) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if e, ok := w.byFD[fd]; ok && e.seq == seq {
		delete(w.byFD, fd)
	}
}

// newEpollSet returns a new epoll set, non-blocking and registered with the
// runtime's poller, its descriptor (for epoll_ctl; not through File.Fd,
// which would put it back into blocking mode) and its raw connection for
// waiting on it.
func newEpollSet() (*os.File, int, syscall.RawConn, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, 0, nil, err
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		_ = unix.Close(fd)
		return nil, 0, nil, err
	}
	set := os.NewFile(uintptr(fd), "connwatch-epoll") // non-blocking: the runtime polls it
	raw, err := set.SyscallConn()
	if err != nil {
		_ = set.Close()
		return nil, 0, nil, err
	}
	return set, fd, raw, nil
}

// takeEvents takes up to len(events) events from the epoll set behind raw
// without blocking, or parks in the runtime's poller until the set is
// readable (its descriptor is while it holds events) or its read deadline
// passes (idle).
//
// It always looks at the set before it parks: RawConn.Read forgets a
// readiness the poller reported before the call, and the set's descriptor
// is edge-triggered there, so parking first would wait for an event that
// came before the call until another one comes.
func takeEvents(raw syscall.RawConn, events []unix.EpollEvent) (n int, idle bool, err error) {
	var waitErr error
	rerr := raw.Read(func(fd uintptr) bool {
		for {
			n, waitErr = unix.EpollWait(int(fd), events, 0)
			if !errors.Is(waitErr, unix.EINTR) {
				return n > 0 || waitErr != nil
			}
		}
	})
	idle = errors.Is(rerr, os.ErrDeadlineExceeded)
	if rerr != nil && !idle {
		waitErr = rerr
	}
	return n, idle, waitErr
}

func (w *connWatcher) run(set *os.File, raw syscall.RawConn) {
	events := make([]unix.EpollEvent, 256)
	for {
		_ = set.SetReadDeadline(time.Now().Add(idleWait))
		n, idle, waitErr := takeEvents(raw, events)
		var gone []func()
		w.mu.Lock()
		for _, ev := range events[:max(n, 0)] {
			if e, ok := w.byFD[ev.Fd]; ok && e.seq == ev.Pad {
				delete(w.byFD, ev.Fd) // one-shot: the set holds it disabled until re-armed or closed
				gone = append(gone, e.gone)
			}
		}
		// Idle, or failed: a failed set is given up, and its watches with it
		// (their polls still answer at their hold); the next watch starts
		// a new one.
		stop := waitErr != nil || idle && len(w.byFD) == 0
		if stop {
			w.running, w.byFD = false, nil
			_ = set.Close()
		}
		w.mu.Unlock()
		if waitErr != nil {
			w.log.Error("watching parked connections for hang-ups failed", "err", waitErr)
		}
		for _, f := range gone {
			f()
		}
		if stop {
			return
		}
	}
}
