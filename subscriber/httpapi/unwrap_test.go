package httpapi

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// TestUnwrapHijacked hijacks real connections the way a parked poll does:
// a plain one unwraps to the TCP connection; one whose client pipelined a
// second request stays wrapped, and the second request's bytes are still
// there to read.
func TestUnwrapHijacked(t *testing.T) {
	got := make(chan net.Conn, 1)
	srv := &fasthttp.Server{
		ReduceMemoryUsage: true, KeepHijackedConns: true,
		Handler: func(ctx *fasthttp.RequestCtx) {
			ctx.HijackSetNoResponse(true)
			ctx.Hijack(func(c net.Conn) { got <- c })
		},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Shutdown()

	hijack := func(send string) net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := io.WriteString(c, send); err != nil {
			t.Fatal(err)
		}
		select {
		case hc := <-got:
			t.Cleanup(func() { hc.Close() })
			return hc
		case <-time.After(10 * time.Second):
			t.Fatal("no hijack")
			return nil
		}
	}

	plain := hijack("GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
	if c, buffered := unwrapHijacked(plain); buffered {
		t.Errorf("plain hijacked connection reported buffered (%T)", c)
	} else if _, ok := c.(*net.TCPConn); !ok {
		t.Errorf("plain hijacked connection unwraps to %T", c)
	}

	second := "GET /b HTTP/1.1\r\nHost: x\r\n\r\n"
	piped := hijack("GET /a HTTP/1.1\r\nHost: x\r\n\r\n" + second)
	kept, buffered := unwrapHijacked(piped)
	if _, ok := kept.(*net.TCPConn); ok || !buffered {
		t.Fatalf("a connection with a pipelined request was unwrapped to %T (buffered=%v): its buffered bytes would be lost", kept, buffered)
	}
	if err := kept.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(second))
	if _, err := io.ReadFull(kept, buf); err != nil || !strings.HasPrefix(string(buf), "GET /b") {
		t.Fatalf("pipelined request after the hijack: %q, %v", buf, err)
	}
}
