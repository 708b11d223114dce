package httpapi

import (
	"errors"
	"net"
	"sync"
	"syscall"
	"time"
)

// The listener under a Server rides out accept errors and counts the
// connections it hands out until they close, hijacked ones (parked
// long-polls) included: fasthttp stops counting a connection once it is
// hijacked, so its Concurrency cannot bound them.

// Accept backoff on temporary errors, as net/http does.
const (
	acceptRetryFirst = 5 * time.Millisecond
	acceptRetryMax   = time.Second
)

// MaxRefusing bounds the connections over Limits.MaxConns that are let in
// at once to be answered 503: each is read for one request, answered and
// closed, so that the client reads a JSON answer rather than a reset. Past
// it a connection is closed as soon as it is accepted. The bound is also at
// most a 32nd of MaxConns, half DefaultLimits' reserve of descriptors.
const MaxRefusing = 64

// limitListener wraps the server's listener.
type limitListener struct {
	net.Listener
	g *guard
	// wait sleeps d and reports false when the listener closed meanwhile.
	wait func(d time.Duration) bool

	closeOnce sync.Once
	closed    chan struct{}
}

func (g *guard) listener(ln net.Listener) *limitListener {
	l := &limitListener{Listener: ln, g: g, closed: make(chan struct{})}
	l.wait = func(d time.Duration) bool {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return true
		case <-l.closed:
			return false
		}
	}
	return l
}

// Accept returns the next connection. A temporary error (out of file
// descriptors: EMFILE, ENFILE; out of buffers; a connection aborted before
// it was accepted) is counted, logged at most once a second, and retried
// after a pause that doubles from 5ms to 1s; Accept returns only a permanent
// error, such as the listener's closing.
func (l *limitListener) Accept() (net.Conn, error) {
	var delay time.Duration
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if !temporaryAcceptError(err) {
				return nil, err
			}
			delay = min(max(2*delay, acceptRetryFirst), acceptRetryMax)
			l.g.acceptFailed(err, delay)
			if !l.wait(delay) {
				return nil, net.ErrClosed
			}
			continue
		}
		delay = 0
		if tc := l.g.admitConn(c); tc != nil {
			return tc, nil
		}
	}
}

// Close closes the listener and ends a pause between retries.
func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

func temporaryAcceptError(err error) bool {
	if errors.Is(err, net.ErrClosed) {
		return false
	}
	for _, e := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM,
		syscall.ECONNABORTED, syscall.ECONNRESET, syscall.EAGAIN, syscall.EINTR, syscall.EPROTO, syscall.EPERM} {
		if errors.Is(err, e) {
			return true
		}
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// acceptFailed counts an accept error and logs it, at most once a second
// (with how many were not logged).
func (g *guard) acceptFailed(err error, retry time.Duration) {
	if g.acceptErrors != nil {
		g.acceptErrors.Inc()
	}
	n := g.acceptUnlogged.Add(1)
	now := time.Now().UnixNano()
	last := g.acceptLogged.Load()
	if now-last < int64(time.Second) || !g.acceptLogged.CompareAndSwap(last, now) {
		return
	}
	g.acceptUnlogged.Add(-n)
	g.log.Warn("accepting connections failed; retrying", "err", err, "retry_in", retry, "errors", n)
}

// admitConn counts an accepted connection, or marks it to be refused
// (503) when MaxConns are open, or closes it when MaxRefusing are being
// refused already; nil means it was closed.
func (g *guard) admitConn(c net.Conn) *trackedConn {
	if n := g.conns.Add(1); g.lim.MaxConns < 0 || n <= int64(g.lim.MaxConns) {
		return &trackedConn{Conn: c, g: g}
	}
	g.conns.Add(-1)
	g.limited("connections")
	if g.refusing.Add(1) <= int64(min(MaxRefusing, max(g.lim.MaxConns/32, 1))) {
		return &trackedConn{Conn: c, g: g, refuse: true}
	}
	g.refusing.Add(-1)
	_ = c.Close()
	return nil
}

// trackedConn is a connection the guard counts until it closes.
type trackedConn struct {
	net.Conn
	g *guard
	// refuse: over MaxConns; its first request is answered 503 and it closes.
	refuse bool
	once   sync.Once
}

// Close closes the connection and stops counting it.
func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		if c.refuse {
			c.g.refusing.Add(-1)
		} else {
			c.g.conns.Add(-1)
		}
	})
	return err
}

// SyscallConn gives the watcher of parked polls the connection's descriptor.
func (c *trackedConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.ErrUnsupported
}

// connCount is what the guard counts; for the connections gauge.
func (g *guard) connCount() float64 { return float64(g.conns.Load()) }
