//go:build linux

package pollyield

import (
	"net"
	"runtime"
	"sync/atomic"
	"testing"
)

// TestYieldLetsReadableConnectionsRun: on one P, with the caller never
// blocking otherwise, a goroutine whose connection became readable gets
// to run across two yields. runtime.Gosched in their place does not let it
// (the scheduler picks the yielding goroutine again before it looks at the
// poller), which is what the test tells apart.
func TestYieldLetsReadableConnectionsRun(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()

	var got atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		b := make([]byte, 1)
		if n, _ := server.Read(b); n == 1 {
			got.Store(true)
		}
	}()
	runtime.Gosched() // the reader runs until it waits in the poller
	if _, err := client.Write([]byte{'x'}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		Yield()
	}
	if !got.Load() {
		t.Fatal("the reader of a readable connection did not run across two yields")
	}
	<-done
}
