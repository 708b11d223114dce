package httpapi

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/valyala/fasthttp"
)

// failingListener fails its first fails Accepts with err, then accepts
// from its queue; it returns net.ErrClosed once the queue is empty.
type failingListener struct {
	net.Listener // nil: only Accept and Close are used
	err          error
	fails        int
	conns        []net.Conn
}

func (l *failingListener) Accept() (net.Conn, error) {
	if l.fails > 0 {
		l.fails--
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", l.err)}
	}
	if len(l.conns) == 0 {
		return nil, net.ErrClosed
	}
	c := l.conns[0]
	l.conns = l.conns[1:]
	return c, nil
}

func (l *failingListener) Close() error { return nil }

func testGuard(lim Limits) *guard {
	return newGuard(&API{cfg: Config{Logger: slog.New(slog.DiscardHandler)}}, lim)
}

// TestAcceptBacksOff: EMFILE (and ENFILE, ECONNABORTED) are retried after
// pauses doubling from 5ms to 1s, and counted; the connection after them is
// returned; a permanent error is returned at once.
func TestAcceptBacksOff(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ECONNABORTED} {
		t.Run(errno.Error(), func(t *testing.T) {
			g := testGuard(Limits{MaxConns: -1})
			server, client := net.Pipe()
			defer client.Close()
			fl := &failingListener{err: errno, fails: 10, conns: []net.Conn{server}}
			l := g.listener(fl)
			var waits []time.Duration
			l.wait = func(d time.Duration) bool { waits = append(waits, d); return true }
			c, err := l.Accept()
			if err != nil {
				t.Fatalf("Accept after %d %v: %v", 10, errno, err)
			}
			c.Close()
			want := []time.Duration{5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000}
			for i := range want {
				want[i] *= time.Millisecond
			}
			if !slices.Equal(waits, want) {
				t.Errorf("pauses %v, want %v", waits, want)
			}
			if got := counterValue(g.acceptErrors); got != 10 {
				t.Errorf("groupcast_accept_errors_total = %v, want 10", got)
			}
			if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
				t.Errorf("Accept on a closed listener: %v, want net.ErrClosed", err)
			}
		})
	}
}

// TestAcceptPauseEndsOnClose: Close ends a pause between retries.
func TestAcceptPauseEndsOnClose(t *testing.T) {
	g := testGuard(Limits{MaxConns: -1})
	l := g.listener(&failingListener{err: syscall.EMFILE, fails: 1 << 30})
	done := make(chan error, 1)
	go func() { _, err := l.Accept(); done <- err }()
	l.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Accept = %v, want net.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Accept still pausing after Close")
	}
}

func TestDefaultLimits(t *testing.T) {
	for _, tc := range []struct {
		nofile  uint64
		cluster bool
		want    Limits
	}{
		{256, false, Limits{MaxConns: 224, MaxParked: 201, MaxParkedPerIP: 1000}},
		{20_000, false, Limits{MaxConns: 18_750, MaxParked: 16_875, MaxParkedPerIP: 1687}},
		{1 << 20, false, Limits{MaxConns: 1<<20 - 4096, MaxParked: (1<<20 - 4096) * 9 / 10, MaxParkedPerIP: 10_000}},
		{1 << 20, true, Limits{MaxConns: (1<<20 - 4096) / 2, MaxParked: (1<<20 - 4096) / 2 * 9 / 10, MaxParkedPerIP: 10_000}},
		{40, false, Limits{MaxConns: 20, MaxParked: 18, MaxParkedPerIP: 1000}},
		{0, false, Limits{MaxConns: -1, MaxParked: -1, MaxParkedPerIP: 10_000}},
	} {
		if got := DefaultLimits(tc.nofile, tc.cluster); fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("DefaultLimits(%d, %v) = %+v, want %+v", tc.nofile, tc.cluster, got, tc.want)
		}
	}
	got := Limits{MaxConns: 100, MaxParkedPerIP: -1}.withDefaults(1<<20, false)
	if want := (Limits{MaxConns: 100, MaxParked: 90, MaxParkedPerIP: -1}); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("withDefaults = %+v, want %+v", got, want)
	}
}

func TestForwardedClient(t *testing.T) {
	proxies, err := ParseTrustedProxies("127.0.0.0/8, 10.0.0.0/8,::1")
	if err != nil {
		t.Fatal(err)
	}
	a := netip.MustParseAddr
	for _, tc := range []struct {
		remote string
		xff    []string
		want   string
	}{
		{"203.0.113.5", []string{"198.51.100.1"}, "203.0.113.5"}, // untrusted peer: its header is ignored
		{"127.0.0.1", nil, "127.0.0.1"},
		{"127.0.0.1", []string{"198.51.100.1"}, "198.51.100.1"},
		{"127.0.0.1", []string{"6.6.6.6, 198.51.100.1, 10.1.2.3"}, "198.51.100.1"}, // the client's own entry is not believed
		{"127.0.0.1", []string{"6.6.6.6", "198.51.100.1,10.1.2.3"}, "198.51.100.1"},
		{"127.0.0.1", []string{"10.9.9.9, 10.1.2.3"}, "10.9.9.9"},
		{"127.0.0.1", []string{"garbage, 10.1.2.3"}, "10.1.2.3"},
		{"::1", []string{"[2001:db8::1]:443"}, "2001:db8::1"},
		{"::1", []string{"198.51.100.1:5000"}, "198.51.100.1"},
		{"127.0.0.1", []string{"::ffff:198.51.100.1"}, "198.51.100.1"},
		{"127.0.0.1", []string{" , "}, "127.0.0.1"},
	} {
		var xff [][]byte
		for _, h := range tc.xff {
			xff = append(xff, []byte(h))
		}
		if got := forwardedClient(a(tc.remote), xff, proxies); got != a(tc.want) {
			t.Errorf("forwardedClient(%s, %q) = %s, want %s", tc.remote, tc.xff, got, tc.want)
		}
	}
	for _, bad := range []string{"10.0.0.0/33", "example.com", "1.2.3"} {
		if _, err := ParseTrustedProxies(bad); err == nil {
			t.Errorf("ParseTrustedProxies(%q) accepted", bad)
		}
	}
}

// FuzzForwardedClient: any header gives the peer or one of the header's
// addresses, and never panics.
func FuzzForwardedClient(f *testing.F) {
	for _, s := range []string{"198.51.100.1", "6.6.6.6, 10.1.2.3", "[::1]:80,,", "::ffff:1.2.3.4%eth0", ", ,"} {
		f.Add(s)
	}
	proxies := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("10.0.0.0/8")}
	remote := netip.MustParseAddr("127.0.0.1")
	f.Fuzz(func(t *testing.T, h string) {
		got := forwardedClient(remote, [][]byte{[]byte(h)}, proxies)
		if got == remote {
			return
		}
		for _, e := range strings.Split(h, ",") {
			if a, ok := parseForwardedAddr([]byte(strings.TrimSpace(e))); ok && a == got {
				return
			}
		}
		t.Fatalf("forwardedClient(%q) = %s: neither the peer nor an entry", h, got)
	})
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}

// TestClientAddr: an IPv6 client counts as its /64, but ::1 stays loopback
// (exempt from the per-address cap) rather than becoming "::".
func TestClientAddr(t *testing.T) {
	g := &guard{}
	for _, c := range []struct{ remote, want string }{
		{"[::1]:4000", "::1"},
		{"[2001:db8:1:2:3:4:5:6]:4000", "2001:db8:1:2::"},
		{"127.0.0.1:4000", "127.0.0.1"},
	} {
		var ctx fasthttp.RequestCtx
		ctx.Init(&fasthttp.Request{}, net.TCPAddrFromAddrPort(netip.MustParseAddrPort(c.remote)), nil)
		if got := g.clientAddr(&ctx); got.String() != c.want {
			t.Errorf("clientAddr(%s) = %s, want %s", c.remote, got, c.want)
		}
	}
}
