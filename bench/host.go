package bench

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// This file holds what the fan-out scenarios ask of the host (Linux): CPU
// pinning, the CPU time of the servers under test, kernel socket memory,
// and pausing the shared servers (Cassandra, Redis) the fan-out does not
// use.

// ServerCPU and LoadCPU are the cores the fan-out scenarios pin to on a
// machine with at least two: every server under test on ServerCPU, this
// process (the load generator: subscribers and publishers) on LoadCPU.
const (
	ServerCPU = 0
	LoadCPU   = 1
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat:
// 100 on every Linux architecture Go runs on.
const clockTicks = 100

// parseStatCPU returns utime+stime, in clock ticks, from a
// /proc/<pid>/stat line "pid (comm) state ppid ... utime stime ...", where
// comm may hold spaces and parentheses: utime and stime are the 12th and
// 13th fields after the closing parenthesis.
func parseStatCPU(stat []byte) (uint64, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("stat: no ')' after comm")
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("stat: %d fields after comm, want at least 13", len(f))
	}
	u, err := strconv.ParseUint(f[11], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stat utime %q: %w", f[11], err)
	}
	s, err := strconv.ParseUint(f[12], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stat stime %q: %w", f[12], err)
	}
	return u + s, nil
}

// ProcCPU is the CPU time (user + system, all threads) the processes pids
// have used since they started.
func ProcCPU(pids ...int) (time.Duration, error) {
	var ticks uint64
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return 0, fmt.Errorf("cpu of %d: %w", pid, err)
		}
		t, err := parseStatCPU(b)
		if err != nil {
			return 0, fmt.Errorf("cpu of %d: %w", pid, err)
		}
		ticks += t
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// parseSockstat returns the pages of memory the kernel holds for TCP
// sockets and the TCP sockets in use, from /proc/net/sockstat's line
// "TCP: inuse N orphan N tw N alloc N mem N".
func parseSockstat(b []byte) (pages, inuse int64, err error) {
	for line := range strings.Lines(string(b)) {
		rest, ok := strings.CutPrefix(line, "TCP:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		found := 0
		for i := 0; i+1 < len(f); i += 2 {
			var dst *int64
			switch f[i] {
			case "mem":
				dst = &pages
			case "inuse":
				dst = &inuse
			default:
				continue
			}
			v, err := strconv.ParseInt(f[i+1], 10, 64)
			if err != nil || v < 0 {
				return 0, 0, fmt.Errorf("sockstat TCP %s %q: not a count", f[i], f[i+1])
			}
			*dst = v
			found++
		}
		if found != 2 {
			return 0, 0, fmt.Errorf("sockstat: TCP line %q lacks inuse or mem", strings.TrimSpace(line))
		}
		return pages, inuse, nil
	}
	return 0, 0, errors.New("sockstat: no TCP line")
}

// SocketMemory is the memory the kernel holds for TCP sockets, in bytes,
// and the TCP sockets in use, machine-wide (/proc/net/sockstat).
func SocketMemory() (bytes float64, sockets int64, err error) {
	b, err := os.ReadFile("/proc/net/sockstat")
	if err != nil {
		return 0, 0, err
	}
	pages, inuse, err := parseSockstat(b)
	return float64(pages) * float64(os.Getpagesize()), inuse, err
}

// fitLine is the least-squares line y = slope·x + intercept through the
// points, and its coefficient of determination r² (1 for points on a line).
// It needs two distinct xs.
func fitLine(xs, ys []float64) (slope, intercept, r2 float64, err error) {
	if len(xs) != len(ys) || len(xs) < 2 {
		return 0, 0, 0, fmt.Errorf("fit: %d xs and %d ys, want as many and at least 2", len(xs), len(ys))
	}
	n := float64(len(xs))
	var mx, my float64
	for i := range xs {
		mx += xs[i]
		my += ys[i]
	}
	mx, my = mx/n, my/n
	var sxx, sxy, syy float64
	for i := range xs {
		dx, dy := xs[i]-mx, ys[i]-my
		sxx += dx * dx
		sxy += dx * dy
		syy += dy * dy
	}
	if sxx == 0 {
		return 0, 0, 0, errors.New("fit: every x is the same")
	}
	slope = sxy / sxx
	intercept = my - slope*mx
	r2 = 1.0
	if syy > 0 {
		r2 = sxy * sxy / (sxx * syy)
	}
	return slope, intercept, r2, nil
}

// cpuSet is the set holding cpu alone.
func cpuSet(cpu int) *unix.CPUSet {
	var s unix.CPUSet
	s.Set(cpu)
	return &s
}

// setAffinity sets the CPU set of every thread of process pid (0: this
// process). Threads created later inherit their creator's set.
func setAffinity(pid int, set *unix.CPUSet) error {
	dir := "/proc/self/task"
	if pid != 0 {
		dir = fmt.Sprintf("/proc/%d/task", pid)
	}
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("affinity: %w", err)
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetaffinity(tid, set); err != nil && !errors.Is(err, syscall.ESRCH) { // a thread that exited meanwhile
			return fmt.Errorf("affinity of thread %d: %w", tid, err)
		}
	}
	return nil
}

// PinSelf pins every thread of this process to cpu and returns the
// function that gives them back the CPU set they had.
func PinSelf(cpu int) (restore func() error, err error) {
	var old unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		return nil, fmt.Errorf("affinity: %w", err)
	}
	if err := setAffinity(0, cpuSet(cpu)); err != nil {
		_ = setAffinity(0, &old)
		return nil, err
	}
	return func() error { return setAffinity(0, &old) }, nil
}

// pinned is the command line that runs bin with args on cpu alone
// (taskset), so that a Go server's GOMAXPROCS is 1 from its start; cpu < 0
// runs it unpinned.
func pinned(cpu int, bin string, args ...string) (string, []string) {
	if cpu < 0 {
		return bin, args
	}
	return "taskset", append([]string{"-c", strconv.Itoa(cpu), bin}, args...)
}

// InfraPIDFiles are the pid files of the shared servers scripts/infra
// starts (Redis in two regions, every Cassandra node), as globs.
var InfraPIDFiles = []string{"/tmp/groupcast-redis/redis.pid", "/tmp/groupcast-redis2/redis.pid", "/tmp/cassandra-test/node*/cassandra.pid"}

// infraPIDs reads the running processes named by the pid files matching
// globs; missing files and dead processes are skipped.
func infraPIDs(globs []string) ([]int, error) {
	var pids []int
	for _, g := range globs {
		files, err := filepath.Glob(g)
		if err != nil {
			return nil, fmt.Errorf("pid files %q: %w", g, err)
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil || pid <= 1 {
				return nil, fmt.Errorf("pid file %s: %q is not a pid", f, bytes.TrimSpace(b))
			}
			if syscall.Kill(pid, 0) == nil {
				pids = append(pids, pid)
			}
		}
	}
	return pids, nil
}

// PauseInfra stops (SIGSTOP) the servers named by the pid files matching
// globs and returns them with the function that continues them (SIGCONT),
// which the caller must call, also on error or interrupt.
func PauseInfra(globs []string) (pids []int, resume func() error, err error) {
	pids, err = infraPIDs(globs)
	if err != nil {
		return nil, nil, err
	}
	resume = func() error {
		var errs []error
		for _, pid := range pids {
			if err := syscall.Kill(pid, syscall.SIGCONT); err != nil && !errors.Is(err, syscall.ESRCH) {
				errs = append(errs, fmt.Errorf("continue %d: %w", pid, err))
			}
		}
		return errors.Join(errs...)
	}
	for i, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil && !errors.Is(err, syscall.ESRCH) {
			pids = pids[:i+1]
			return nil, nil, errors.Join(fmt.Errorf("pause %d: %w", pid, err), resume())
		}
	}
	return pids, resume, nil
}
