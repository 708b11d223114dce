//go:build linux

package pollyield

import (
	"errors"
	"os"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// An eventfd registered with the runtime's poller. Yield writes to it and
// waits until the poller reports it readable, then reads it back to zero.
type eventfd struct {
	f   *os.File
	raw syscall.RawConn
}

// idle keeps eventfds between yields; concurrent yields each take their
// own (a descriptor has one reader at a time).
var idle = make(chan *eventfd, 16)

var one = []byte{1, 0, 0, 0, 0, 0, 0, 0}

func yield() {
	var e *eventfd
	select {
	case e = <-idle:
	default:
		var err error
		if e, err = newEventfd(); err != nil {
			runtime.Gosched()
			return
		}
	}
	written := false
	err := e.raw.Read(func(fd uintptr) bool {
		if !written {
			written = true
			if _, err := unix.Write(int(fd), one); err != nil {
				return true // cannot happen with a counter far from its limit
			}
			return false // wait for the poller to report it
		}
		var b [8]byte
		_, err := unix.Read(int(fd), b[:])
		return !errors.Is(err, unix.EAGAIN)
	})
	if err != nil {
		_ = e.f.Close()
		runtime.Gosched()
		return
	}
	select {
	case idle <- e:
	default:
		_ = e.f.Close()
	}
}

func newEventfd() (*eventfd, error) {
	fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "pollyield") // non-blocking: the runtime polls it
	raw, err := f.SyscallConn()
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	return &eventfd{f: f, raw: raw}, nil
}
