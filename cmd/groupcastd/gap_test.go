package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/groupcast/groupcast/channelgroups"
	"github.com/groupcast/groupcast/internal/rywcheck"
)

// signal sends sig to the node's process.
func (s *server) signal(sig syscall.Signal) {
	s.t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatalf("%v to groupcastd: %v", sig, err)
	}
}

// blockedClients returns how many clients of the Redis wait in a blocking
// command (the nodes' XREAD BLOCK).
func (r *redisServer) blockedClients() int {
	r.t.Helper()
	host, port, _ := net.SplitHostPort(r.addr)
	out, err := exec.Command("redis-cli", "-h", host, "-p", port, "INFO", "clients").Output()
	if err != nil {
		r.t.Fatalf("redis-cli INFO clients: %v", err)
	}
	for line := range strings.Lines(string(out)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "blocked_clients:"); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				r.t.Fatalf("blocked_clients:%s", v)
			}
			return n
		}
	}
	r.t.Fatalf("no blocked_clients in INFO clients: %s", out)
	return 0
}

// TestStreamGap is the fault test of a node starved behind a trimmed log:
// two nodes on Cassandra and a private Redis keeping --log-max-len 100
// entries per shard, the read-your-writes checker editing through both and
// reading through the other. Node B's process is stopped (SIGSTOP) while
// edits and then 500 messages go through node A, so the stream of the
// checker's shard is trimmed past B's position; the checker's clients each
// have a read, with the token of an edit made through A, queued on B. When
// B resumes it finds the gap, re-reads the shard's groups from storage,
// and answers those reads; the checker must see no stale read
// (ryw_violations=0), and B must count the gap.
//
// Besides the checker, a probe the test drives itself: group h, read on B
// (so B caches it) before the stall, is edited through A only while B is
// stopped, and read on B with A's token after B resumed. Nothing after the
// gap touches h, so without the repair B would answer it from its cache
// every time; the checker's group, edited all along, only in a short window
// after B resumes (B's applying a later edit of it refreshes it).
//
// The steps make the gap certain rather than likely. Both nodes are stopped
// first and stay stopped until Redis has timed out their blocking reads, so
// that B wakes up with no entry already on its socket (an edit delivered
// that way would refresh the group and hide a missing repair). Then A goes
// on; every client does at most one more edit through A before it waits on
// B; and the messages pushed through A after the last edit are five times
// what the stream keeps. --refresh-every is an hour so that the periodic
// re-read does not repair B in the repair's place.
func TestStreamGap(t *testing.T) {
	const maxLen = 100
	red := newRedis(t)
	nodes := cluster(t, 2, red.addr, "--log-max-len", strconv.Itoa(maxLen), "--refresh-every", "1h")
	a, b := nodes[0], nodes[1]
	shard := channelgroups.ShardOf("gap", channelgroups.DefaultShards)
	gaps := fmt.Sprintf(`groupcast_log_gaps_total{shard="%d"}`, shard)

	var progress atomic.Int64
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan rywcheck.Result, 1)
	go func() {
		done <- rywcheck.Run(ctx, rywcheck.Config{Nodes: urls(nodes), Clients: 24, Duration: time.Hour, Account: "gap", Group: "g", Progress: &progress})
	}()
	eventually(t, time.Minute, "100 edits before the stall", func() bool { return progress.Load() >= 100 })
	const probe = "/v1/channel-registration/sub-key/gap/channel-group/h"
	probeEdit := func(q string) string {
		t.Helper()
		code, m := a.get(probe + "?" + q)
		tok, _ := m["token"].(string)
		if code != 200 || tok == "" {
			t.Fatalf("probe edit %s through A: %d %v", q, code, m)
		}
		return tok
	}
	probeRead := func(tok string) string {
		t.Helper()
		code, m := b.get(probe + "?token=" + url.QueryEscape(tok))
		if code != 200 {
			t.Fatalf("probe read on B: %d %v", code, m)
		}
		return fmt.Sprint(m["payload"].(map[string]any)["channels"])
	}
	if got := probeRead(probeEdit("add=x")); got != "[x]" {
		t.Fatalf("probe before the stall: B lists %s, want [x]", got)
	}

	a.signal(syscall.SIGSTOP)
	b.signal(syscall.SIGSTOP)
	stopped := true
	t.Cleanup(func() {
		if stopped { // let a failed test's nodes be killed cleanly
			_ = a.cmd.Process.Signal(syscall.SIGCONT)
			_ = b.cmd.Process.Signal(syscall.SIGCONT)
		}
	})
	eventually(t, 10*time.Second, "the stopped nodes' blocking reads to time out in Redis", func() bool { return red.blockedClients() == 0 })
	a.signal(syscall.SIGCONT)
	probeEdit("remove=x")
	probeTok := probeEdit("add=y")

	var r []any
	pushed, last := 0, progress.Load()
	for sent := 0; sent < 5*maxLen; sent++ {
		if err := getBody(t.Context(), http.DefaultClient, a.url+fmt.Sprintf("/publish/pk/gap/0/filler/0/%d", pushed), &r); err != nil {
			t.Fatal(err)
		}
		pushed++
		if p := progress.Load(); p != last { // an edit went through A meanwhile: count again from here
			last, sent = p, 0
		}
	}
	atResume := progress.Load()
	b.signal(syscall.SIGCONT)
	stopped = false
	t.Logf("B stopped while %d messages went through A", pushed)

	eventually(t, time.Minute, "B to count the gap", func() bool { return metricValue(t, b, gaps) >= 1 })
	probeGot := probeRead(probeTok)
	eventually(t, time.Minute, "200 edits after B resumed", func() bool { return progress.Load() >= atResume+200 })
	cancel()
	res := <-done
	bGaps, aGaps := metricValue(t, b, gaps), metricValue(t, a, gaps)
	t.Logf("%s; gaps on B %v, on A %v; probe read on B with A's token %s", res, bGaps, aGaps, probeGot)
	fmt.Printf("stream gap: %s gaps_b=%v gaps_a=%v probe=%s\n", res, bGaps, aGaps, probeGot)
	if res.Violations != 0 {
		t.Errorf("%s; first: %s", res, res.First)
	}
	if probeGot != "[y]" {
		t.Errorf("probe: B lists group h as %s with the token of A's edits made while B was stopped; want [y], as storage holds", probeGot)
	}
}
