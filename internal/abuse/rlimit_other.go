//go:build !linux

package abuse

import (
	"errors"
	"syscall"
)

var errNoPrlimit = errors.New("abuse: setting another process's RLIMIT_NOFILE needs Linux")

func getNoFile(int) (syscall.Rlimit, error) { return syscall.Rlimit{}, errNoPrlimit }
func setNoFile(int, uint64, uint64) error   { return errNoPrlimit }
