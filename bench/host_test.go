package bench

import (
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestParseStatCPU(t *testing.T) {
	for _, tc := range []struct {
		name string
		stat string
		want uint64
		err  bool
	}{
		{"plain", "1234 (groupcastd) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 9 0 100 0 0", 325, false},
		{"comm with spaces and parens", "99 (nginx: worker (x) 1) R 98 98 98 0 -1 0 0 0 0 0 7 3 0 0 20 0 1 0 5 0 0", 10, false},
		{"no closing paren", "99 (nginx S 1", 0, true},
		{"too few fields", "99 (a) S 1 2 3", 0, true},
		{"utime not a number", "1 (a) S 1 1 1 0 -1 0 0 0 0 0 x 3 0", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStatCPU([]byte(tc.stat))
			if (err != nil) != tc.err || got != tc.want {
				t.Fatalf("parseStatCPU = %d, %v; want %d, error %v", got, err, tc.want, tc.err)
			}
		})
	}
}

func FuzzParseStatCPU(f *testing.F) {
	f.Add([]byte("1234 (groupcastd) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 9 0 100 0 0"))
	f.Add([]byte("1 ()) S"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if v, err := parseStatCPU(b); err != nil && v != 0 {
			t.Fatalf("error %v with value %d", err, v)
		}
	})
}

// TestProcCPU reads this process's own CPU time, which only grows.
func TestProcCPU(t *testing.T) {
	a, err := ProcCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		b, err := ProcCPU(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if b < a {
			t.Fatalf("cpu went from %v to %v", a, b)
		}
		if b > a {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("cpu stayed at %v while spinning", a)
		}
		for i := 0; i < 1e6; i++ { // spin: use some CPU
			_ = strconv.Itoa(i)
		}
	}
}

func TestParseSockstat(t *testing.T) {
	const real = "sockets: used 290\nTCP: inuse 27 orphan 0 tw 3 alloc 30 mem 5\nUDP: inuse 1 mem 2\n"
	pages, inuse, err := parseSockstat([]byte(real))
	if err != nil || pages != 5 || inuse != 27 {
		t.Fatalf("parseSockstat = %d, %d, %v; want 5, 27", pages, inuse, err)
	}
	for _, bad := range []string{"", "UDP: inuse 1 mem 2\n", "TCP: inuse 27 orphan 0\n", "TCP: inuse x mem 5\n", "TCP: inuse 1 mem -3\n"} {
		if _, _, err := parseSockstat([]byte(bad)); err == nil {
			t.Errorf("parseSockstat(%q): no error", bad)
		}
	}
}

func FuzzParseSockstat(f *testing.F) {
	f.Add([]byte("sockets: used 290\nTCP: inuse 27 orphan 0 tw 3 alloc 30 mem 5\n"))
	f.Add([]byte("TCP: mem"))
	f.Fuzz(func(t *testing.T, b []byte) {
		pages, inuse, err := parseSockstat(b)
		if err == nil && (pages < 0 || inuse < 0) {
			t.Fatalf("negative counts %d, %d", pages, inuse)
		}
	})
}

func TestFitLine(t *testing.T) {
	xs := []float64{1000, 2000, 3000, 4000, 5000}
	ys := []float64{}
	for _, x := range xs {
		ys = append(ys, 5e6+8192*x) // 8 KiB per subscriber over 5 MB fixed
	}
	slope, icpt, r2, err := fitLine(xs, ys)
	if err != nil || math.Abs(slope-8192) > 1e-6 || math.Abs(icpt-5e6) > 1e-3 || math.Abs(r2-1) > 1e-12 {
		t.Fatalf("fitLine = %v, %v, %v, %v; want 8192, 5e6, 1", slope, icpt, r2, err)
	}
	// Noise lowers r², and a symmetric wobble leaves the slope.
	ys[1] += 1e6
	ys[3] += 1e6
	ys[2] -= 2e6
	slope, _, r2, err = fitLine(xs, ys)
	if err != nil || math.Abs(slope-8192) > 1e-6 || r2 >= 1 || r2 <= 0.5 {
		t.Fatalf("noisy fitLine = %v, r² %v, %v", slope, r2, err)
	}
	if _, _, _, err := fitLine([]float64{1, 1}, []float64{2, 3}); err == nil {
		t.Error("fit through one x: no error")
	}
	if _, _, _, err := fitLine([]float64{1}, []float64{2}); err == nil {
		t.Error("fit through one point: no error")
	}
}

// TestPauseInfra pauses and continues a process of the test's own (sleep)
// named by a pid file, as PauseInfra does Cassandra and Redis.
func TestPauseInfra(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a.pid"), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	state := func() string {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/stat")
		if err != nil {
			t.Fatal(err)
		}
		return strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))[0]
	}
	waitState := func(want string) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); state() != want; {
			if time.Now().After(deadline) {
				t.Fatalf("state %s, want %s", state(), want)
			}
			time.Sleep(5 * time.Millisecond) // polling the kernel's view, with a deadline
		}
	}
	pids, resume, err := PauseInfra([]string{filepath.Join(dir, "*.pid"), filepath.Join(dir, "missing.pid")})
	if err != nil {
		t.Fatal(err)
	}
	if len(pids) != 1 || pids[0] != cmd.Process.Pid {
		t.Fatalf("paused %v, want [%d]", pids, cmd.Process.Pid)
	}
	waitState("T")
	if err := resume(); err != nil {
		t.Fatal(err)
	}
	waitState("S")

	if err := os.WriteFile(filepath.Join(dir, "b.pid"), []byte("nonsense"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := PauseInfra([]string{filepath.Join(dir, "*.pid")}); err == nil {
		t.Error("a pid file without a pid: no error")
	}
}

// TestPinSelf pins this process to CPU 0 and back.
func TestPinSelf(t *testing.T) {
	var before unix.CPUSet
	if err := unix.SchedGetaffinity(0, &before); err != nil {
		t.Fatal(err)
	}
	restore, err := PinSelf(0)
	if err != nil {
		t.Fatal(err)
	}
	var during unix.CPUSet
	if err := unix.SchedGetaffinity(0, &during); err != nil {
		t.Fatal(err)
	}
	if err := restore(); err != nil {
		t.Fatal(err)
	}
	var after unix.CPUSet
	if err := unix.SchedGetaffinity(0, &after); err != nil {
		t.Fatal(err)
	}
	if during.Count() != 1 || !during.IsSet(0) || after != before {
		t.Fatalf("during %v (want CPU 0 alone), after %v (want %v)", during, after, before)
	}
}

func TestPinnedCommand(t *testing.T) {
	if bin, args := pinned(-1, "nginx", "-g", "x"); bin != "nginx" || strings.Join(args, " ") != "-g x" {
		t.Errorf("unpinned: %s %v", bin, args)
	}
	if bin, args := pinned(0, "nginx", "-g", "x"); bin != "taskset" || strings.Join(args, " ") != "-c 0 nginx -g x" {
		t.Errorf("pinned: %s %v", bin, args)
	}
	o := NchanOptions{Workers: 1, CPU: 1, Pin: true}
	if got := o.workerLines(); got != "worker_processes 1;\nworker_cpu_affinity 10;" {
		t.Errorf("worker lines %q", got)
	}
	if got := (NchanOptions{}).workerLines(); got != "worker_processes 2;" {
		t.Errorf("default worker lines %q", got)
	}
}
