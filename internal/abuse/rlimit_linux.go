package abuse

import (
	"syscall"
	"unsafe"
)

// getNoFile reads another process's RLIMIT_NOFILE (prlimit(2)).
func getNoFile(pid int) (syscall.Rlimit, error) {
	var old syscall.Rlimit
	err := prlimit(pid, nil, &old)
	return old, err
}

// setNoFile sets another process's RLIMIT_NOFILE (prlimit(2)): the same
// user may lower it, and raise it again up to the hard limit.
func setNoFile(pid int, cur, max uint64) error {
	return prlimit(pid, &syscall.Rlimit{Cur: cur, Max: max}, nil)
}

func prlimit(pid int, set, old *syscall.Rlimit) error {
	_, _, errno := syscall.RawSyscall6(syscall.SYS_PRLIMIT64, uintptr(pid), uintptr(syscall.RLIMIT_NOFILE),
		uintptr(unsafe.Pointer(set)), uintptr(unsafe.Pointer(old)), 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}
