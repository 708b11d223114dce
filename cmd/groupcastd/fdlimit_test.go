package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuffer collects a process's stderr.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// fdLimited is a groupcastd process started under RLIMIT_NOFILE 256.
type fdLimited struct {
	cmd    *exec.Cmd
	addr   string
	stderr *lockedBuffer
	exited chan struct{}
}

const fdLimit = 256

func startFDLimited(t *testing.T, args ...string) *fdLimited {
	t.Helper()
	args = append([]string{"-c", `ulimit -n ` + "256" + ` && exec "$0" "$@"`, binary,
		"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--data", t.TempDir(), "--log-level", "warn"}, args...)
	cmd := exec.Command("sh", args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GROUPCAST_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	p := &fdLimited{cmd: cmd, stderr: &lockedBuffer{}, exited: make(chan struct{})}
	cmd.Stderr = p.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := servingLine.FindStringSubmatch(sc.Text()); m != nil {
				found <- strings.TrimPrefix(m[1], "http://")
			}
		}
		cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.exited
	})
	select {
	case p.addr = <-found:
	case <-p.exited:
		t.Fatalf("groupcastd exited before serving: %s", p.stderr)
	case <-time.After(90 * time.Second):
		t.Fatal("groupcastd did not start within 90s")
	}
	return p
}

// alive fails the test if the process has exited.
func (p *fdLimited) alive(t *testing.T, when string) {
	t.Helper()
	select {
	case <-p.exited:
		t.Fatalf("groupcastd exited %s (%v); its log:\n%s", when, p.cmd.ProcessState, p.stderr)
	default:
	}
}

// answersTime polls /time/0 on fresh connections until it answers 200.
func (p *fdLimited) answersTime(t *testing.T) {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 2 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		p.alive(t, "while the test waited for /time/0")
		resp, err := client.Get("http://" + p.addr + "/time/0")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("/time/0 does not answer 200 (last: %v, %v); log:\n%s", resp, err, p.stderr)
		}
		<-time.After(100 * time.Millisecond) // polling with a deadline
	}
}

// TestOutOfDescriptors runs groupcastd under RLIMIT_NOFILE 256 and opens
// 400 connections to it. Without a connection bound (--max-conns=-1) the
// node runs out of descriptors: it must pause and retry accepting, not
// exit, and serve again once the connections close. Under the default
// bound (derived from the limit) the connections past it are answered 503
// with a JSON body instead.
func TestOutOfDescriptors(t *testing.T) {
	const conns = 400
	dialAll := func(t *testing.T, p *fdLimited, send bool) (cs []net.Conn, codes map[int]int) {
		t.Helper()
		codes = map[int]int{}
		for range conns {
			c, err := net.DialTimeout("tcp", p.addr, 5*time.Second)
			if err != nil {
				codes[-1]++ // the backlog is full: fine, the node must survive it too
				continue
			}
			cs = append(cs, c)
			if !send {
				continue
			}
			c.SetDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(c, "GET /time/0 HTTP/1.1\r\nHost: x\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				codes[0]++ // closed without an answer
				continue
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 503 {
				var e struct {
					Status int  `json:"status"`
					Error  bool `json:"error"`
				}
				if json.Unmarshal(body, &e) != nil || e.Status != 503 || !e.Error || resp.Header.Get("Retry-After") == "" {
					t.Errorf("503 without a JSON error body and Retry-After: %v %s", resp.Header, body)
				}
			}
			codes[resp.StatusCode]++
		}
		return cs, codes
	}

	t.Run("unbounded", func(t *testing.T) {
		p := startFDLimited(t, "--max-conns=-1")
		cs, _ := dialAll(t, p, false)
		deadline := time.Now().Add(30 * time.Second)
		for !strings.Contains(p.stderr.String(), "accepting connections failed") {
			p.alive(t, "out of descriptors")
			if time.Now().After(deadline) {
				t.Fatalf("%d connections did not run the node out of its %d descriptors; log:\n%s", len(cs), fdLimit, p.stderr)
			}
			<-time.After(50 * time.Millisecond) // polling with a deadline
		}
		for _, c := range cs {
			c.Close()
		}
		p.answersTime(t)
		if !strings.Contains(p.stderr.String(), "too many open files") {
			t.Errorf("the log does not name the error; log:\n%s", p.stderr)
		}
		p.alive(t, "after the connections closed")
	})

	t.Run("default bound", func(t *testing.T) {
		p := startFDLimited(t)
		cs, codes := dialAll(t, p, true)
		t.Logf("answers to %d connections under RLIMIT_NOFILE %d: %v (0: closed unanswered, -1: not connected)", conns, fdLimit, codes)
		if codes[200] == 0 || codes[503] == 0 {
			t.Errorf("want some 200s and, past the bound, some 503s; got %v", codes)
		}
		p.alive(t, "with the connections open")
		for _, c := range cs {
			c.Close()
		}
		p.answersTime(t)
	})
}
