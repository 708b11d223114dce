//go:build unix

package httpapi

import "syscall"

// openFileLimit returns RLIMIT_NOFILE's soft limit; 0 when unknown or
// unlimited.
func openFileLimit() uint64 {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil || uint64(r.Cur) >= 1<<62 {
		return 0
	}
	return uint64(r.Cur)
}
