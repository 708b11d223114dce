//go:build linux

package httpapi

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"
)

// tcpPairs returns n connected TCP pairs (server side, client side),
// closed when tb ends.
func tcpPairs(tb testing.TB, n int) (servers, clients []net.Conn) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	for range n {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			tb.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			tb.Fatal(err)
		}
		servers, clients = append(servers, s), append(clients, c)
	}
	tb.Cleanup(func() {
		for i := range servers {
			servers[i].Close()
			clients[i].Close()
		}
	})
	return servers, clients
}

// TestWatcher: a hang-up is reported once, bytes sent are neither reported
// nor consumed, an unwatched connection is not reported, and the goroutine
// ends once nothing is watched.
func TestWatcher(t *testing.T) {
	w := &connWatcher{log: slog.New(slog.DiscardHandler)}
	servers, clients := tcpPairs(t, 3)
	gone := make(chan int, 3)
	unwatch := make([]func(), 3)
	for i, s := range servers {
		unwatch[i] = w.watch(s, func() { gone <- i })
		if unwatch[i] == nil {
			t.Fatal("a TCP connection is not watched")
		}
	}
	if _, err := io.WriteString(clients[1], "GET / HTTP/1.1\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	unwatch[2]()
	clients[2].Close()
	clients[0].Close()
	select {
	case i := <-gone:
		if i != 0 {
			t.Fatalf("connection %d reported gone, want 0", i)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a hang-up was not reported")
	}
	unwatch[0]() // after the report: does nothing
	unwatch[1]()
	buf := make([]byte, 18)
	servers[1].SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(servers[1], buf); err != nil || string(buf) != "GET / HTTP/1.1\r\n\r\n" {
		t.Fatalf("bytes sent while watched: %q, %v", buf, err)
	}
	until(t, "the watcher's goroutine stops with nothing watched", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return !w.running
	})
	select {
	case i := <-gone:
		t.Fatalf("connection %d reported gone too", i)
	default:
	}
}

// TestWatcherRearms: a connection parks again and again, and unwatch leaves
// it in the set: watching it again re-arms it (its hang-up is then reported
// to the new watch only), and a hang-up that came while it was unwatched is
// reported to the next watch at once, not lost and not reported to the
// watch that ended.
func TestWatcherRearms(t *testing.T) {
	w := &connWatcher{log: slog.New(slog.DiscardHandler)}
	servers, clients := tcpPairs(t, 2)
	gone := make(chan string, 4)
	watch := func(i int, name string) func() {
		t.Helper()
		unwatch := w.watch(servers[i], func() { gone <- name })
		if unwatch == nil {
			t.Fatalf("%s: connection %d is not watched", name, i)
		}
		return unwatch
	}
	want := func(name string) {
		t.Helper()
		select {
		case got := <-gone:
			if got != name {
				t.Fatalf("reported %s, want %s", got, name)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the hang-up was not reported", name)
		}
	}
	for park := range 3 { // watched again and again while the client stays
		watch(0, fmt.Sprintf("park %d", park))()
	}
	defer watch(0, "last park")()
	clients[0].Close()
	want("last park")

	watch(1, "ended")()
	clients[1].Close() // while unwatched: its event finds no watch
	watch(1, "next")
	want("next")
	select {
	case got := <-gone:
		t.Fatalf("%s reported too", got)
	default:
	}
}

// TestWatcherWaitsInThePoller: while it waits, the watcher's goroutine is
// parked in the runtime's poller ("IO wait"), not in a blocking system call
// ("syscall"), which would keep its P: with one P the whole node stood
// still until the runtime's monitor took it back.
func TestWatcherWaitsInThePoller(t *testing.T) {
	w := &connWatcher{log: slog.New(slog.DiscardHandler)}
	servers, _ := tcpPairs(t, 1)
	if unwatch := w.watch(servers[0], func() {}); unwatch == nil {
		t.Fatal("a TCP connection is not watched")
	} else {
		defer unwatch()
	}
	buf := make([]byte, 1<<20)
	for deadline := time.Now().Add(10 * time.Second); ; {
		state := ""
		for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
			if strings.Contains(g, "(*connWatcher).run(") {
				state = g[strings.Index(g, "[")+1 : strings.Index(g, "]")]
			}
		}
		// A goroutine taking events (epoll_wait with a zero timeout) is
		// in "syscall" for a moment; one waiting in a blocking epoll_wait
		// stays there and never reaches "IO wait".
		switch {
		case strings.HasPrefix(state, "IO wait"):
			return
		case time.Now().After(deadline) && strings.HasPrefix(state, "syscall"):
			t.Fatalf("the watcher waits in a system call (%s), holding its P", state)
		case time.Now().After(deadline):
			t.Fatalf("the watcher's goroutine did not settle: state %q", state)
		}
		<-time.After(time.Millisecond) // polling with a deadline
	}
}

// The two ways to notice a parked poll's hang-up, by memory per parked
// connection: BenchmarkWatchMemory (the epoll set used here) and
// BenchmarkReadGoroutineMemory (a goroutine blocked in a 1-byte Read).
// go test -run '^$' -bench Memory ./subscriber/httpapi/

const memoryConns = 2000

func heapAndStacks() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc + ms.StackInuse
}

func BenchmarkWatchMemory(b *testing.B) {
	servers, _ := tcpPairs(b, memoryConns)
	w := &connWatcher{log: slog.New(slog.DiscardHandler)}
	b.ResetTimer()
	for range b.N {
		before := heapAndStacks()
		unwatch := make([]func(), 0, memoryConns)
		for _, s := range servers {
			unwatch = append(unwatch, w.watch(s, func() {}))
		}
		after := heapAndStacks()
		b.ReportMetric(float64(after-before)/memoryConns, "B/conn")
		for _, u := range unwatch {
			u()
		}
	}
}

func BenchmarkReadGoroutineMemory(b *testing.B) {
	servers, clients := tcpPairs(b, memoryConns)
	b.ResetTimer()
	for range b.N {
		before := heapAndStacks()
		done := make(chan struct{}, memoryConns)
		for _, s := range servers {
			go func() {
				var one [1]byte
				_, _ = s.Read(one[:])
				done <- struct{}{}
			}()
		}
		<-time.After(100 * time.Millisecond) // let them block in Read
		after := heapAndStacks()
		b.ReportMetric(float64(after-before)/memoryConns, "B/conn")
		for _, c := range clients {
			_, _ = c.Write([]byte{0})
		}
		for range memoryConns {
			<-done
		}
	}
}
