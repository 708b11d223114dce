//go:build !linux

package pollyield

import "runtime"

func yield() { runtime.Gosched() }
