//go:build !linux

package httpapi

import (
	"syscall"
	"time"
)

// repollQueue queues nothing off Linux: a connection handed back after a
// long-poll waits for its next request in the runtime's poller, like any
// other.
type repollQueue struct{}

func (*repollQueue) wait(syscall.RawConn, int, chan struct{}, time.Time, *repollArm) {}

// repollArm is what a wait in the queue needs of a connection: nothing
// off Linux.
type repollArm struct{}

func (*repollQueue) cancel(int, chan struct{}) {}
