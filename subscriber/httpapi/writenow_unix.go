//go:build unix

package httpapi

import (
	"errors"
	"io"
	"net"
	"syscall"
	"time"
)

// writeNow writes as much of b to c as its socket takes without waiting
// (the descriptor is non-blocking, as all of Go's are), in one write(2)
// when it all fits, and returns how much it wrote: a wake-up pass writes
// many answers in turn and must not wait on one slow client. It writes
// nothing when c has no descriptor (an in-memory connection).
func writeNow(c net.Conn, b []byte) int {
	rc := rawConnOf(c)
	if rc == nil {
		return 0
	}
	n := 0
	_ = rc.Write(func(fd uintptr) bool {
		for n < len(b) {
			m, err := syscall.Write(int(fd), b[n:])
			if m > 0 {
				n += m
			}
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			if err != nil || m <= 0 {
				break
			}
		}
		return true // never wait: the rest is written by a goroutine of its own
	})
	return n
}

// rawReader reads a connection through its descriptor; made once per
// servedConn, so that a read allocates nothing. With a repollQueue, a read
// that finds nothing waits in the queue, not in the runtime's poller.
type rawReader struct {
	rc      syscall.RawConn
	get     func() *[]byte
	put     func(*[]byte)
	fn      func(fd uintptr) bool
	buf     *[]byte // the last read's
	n       int
	readErr error

	queue      *repollQueue
	fd         int           // the descriptor, for the queue (and its cancel)
	ready      chan struct{} // the queue's signal that the wait is over
	deadline   *time.Time    // the connection's read deadline (servedConn)
	arm        repollArm     // what the queue's waits need, kept between them
	queueing   bool          // a read finding nothing is to wait in the queue
	wouldBlock bool          // it found nothing
}

func newRawReader(c net.Conn, get func() *[]byte, put func(*[]byte), queue *repollQueue, deadline *time.Time) *rawReader {
	r := &rawReader{rc: rawConnOf(c), get: get, put: put, deadline: deadline, fd: -1}
	r.fn = r.read
	if queue != nil && r.rc != nil && r.rc.Control(func(fd uintptr) { r.fd = int(fd) }) == nil {
		r.queue, r.ready = queue, make(chan struct{}, 1)
	}
	return r
}

// cancel ends the reader's wait in the queue, if it waits there: the
// connection is being closed.
func (r *rawReader) cancel() {
	if r.queue != nil {
		r.queue.cancel(r.fd, r.ready)
	}
}

// read is the RawConn.Read callback: one read(2) into a buffer taken for
// it, given back when nothing came.
func (r *rawReader) read(fd uintptr) bool {
	b := r.get()
	var n int
	var err error
	for {
		n, err = syscall.Read(int(fd), *b)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if errors.Is(err, syscall.EAGAIN) {
		r.put(b)
		if r.queueing {
			r.wouldBlock = true
			return true // to wait in the queue (readSome)
		}
		return false // nothing yet: wait until the socket is readable
	}
	if n <= 0 {
		r.put(b)
		if err == nil {
			err = io.EOF
		}
		r.n, r.readErr = 0, err
		return true
	}
	r.buf, r.n, r.readErr = b, n, nil
	return true
}

// readSome waits until the connection has bytes to read and reads what
// has come, up to a buffer from get, which it takes only once there are
// bytes (a connection waiting for its next request holds none). buf is nil
// when nothing was read: with a nil err when the connection has no
// descriptor (the caller reads it plainly), else at the end of the stream
// (io.EOF), at a deadline or on a failure.
func (r *rawReader) readSome() (buf *[]byte, n int, err error) {
	if r.rc == nil {
		return nil, 0, nil
	}
	r.buf, r.n, r.readErr = nil, 0, nil
	r.queueing, r.wouldBlock = r.queue != nil, false
	err = r.rc.Read(r.fn)
	if err == nil && r.wouldBlock {
		// Nothing yet: wait in the queue, then read, or wait in the
		// runtime's poller if the queue gave up (a deadline passed, the
		// connection closed, or it could not queue it).
		r.queueing, r.wouldBlock = false, false
		var deadline time.Time
		if r.deadline != nil {
			deadline = *r.deadline
		}
		r.queue.wait(r.rc, r.fd, r.ready, deadline, &r.arm)
		err = r.rc.Read(r.fn)
	}
	if err != nil {
		if r.buf != nil { // cannot happen: the callback reported done
			r.put(r.buf)
		}
		return nil, 0, err
	}
	if r.buf == nil {
		return nil, 0, r.readErr
	}
	buf, n = r.buf, r.n
	r.buf = nil
	return buf, n, nil
}

// rawConnOf returns c's descriptor access, looking under fasthttp's
// hijack wrapper; nil when it has none.
func rawConnOf(c net.Conn) syscall.RawConn {
	for range 4 {
		if sc, ok := c.(syscall.Conn); ok {
			if rc, err := sc.SyscallConn(); err == nil {
				return rc
			}
			return nil
		}
		switch u := c.(type) {
		case *servedConn:
			c = u.Conn
		case interface{ UnsafeConn() net.Conn }:
			c = u.UnsafeConn()
		default:
			return nil
		}
	}
	return nil
}
