package abuse

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The probes of connections: slow, idle, vanishing and too many.

// dialMany opens n connections from the loopback address from (empty: any),
// 32 at a time, and returns those that opened and the first dial error.
func dialMany(ctx context.Context, e *Env, n int, from string) ([]net.Conn, error) {
	conns := make([]net.Conn, n)
	var (
		next     atomic.Int64
		firstErr atomic.Pointer[error]
		wg       sync.WaitGroup
	)
	for range 32 {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n && ctx.Err() == nil; i = int(next.Add(1) - 1) {
				c, err := dial(ctx, from, e.host())
				if err != nil {
					firstErr.CompareAndSwap(nil, &err)
					continue
				}
				conns[i] = c
			}
		})
	}
	wg.Wait()
	out := conns[:0]
	for _, c := range conns {
		if c != nil {
			out = append(out, c)
		}
	}
	if p := firstErr.Load(); p != nil {
		return out, *p
	}
	return out, ctx.Err()
}

func closeAll(conns []net.Conn) {
	for _, c := range conns {
		_ = c.Close()
	}
}

// parallel runs do(i) for i in [0, n) on 64 goroutines.
func parallel(n int, do func(i int)) {
	var (
		next atomic.Int64
		wg   sync.WaitGroup
	)
	for range min(64, n) {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				do(i)
			}
		})
	}
	wg.Wait()
}

// fresh asks GET /time/0 on a new connection from FreshFrom: can a new,
// well-behaved client still get in?
func (e *Env) fresh(ctx context.Context) (Answer, error) {
	return e.roundTrip(ctx, FreshFrom, "GET /time/0 HTTP/1.1\r\nHost: "+e.host()+"\r\nConnection: close\r\n\r\n", nil, 5*time.Second)
}

// freshWithin asks fresh until it answers 200 or d passes; it returns the
// last answer and error, and how long it took.
func (e *Env) freshWithin(ctx context.Context, d time.Duration) (Answer, time.Duration, error) {
	start := time.Now()
	for {
		a, err := e.fresh(ctx)
		if err == nil && a.Status == 200 || time.Since(start) > d || ctx.Err() != nil {
			return a, time.Since(start), err
		}
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// metric reads one unlabelled sample from /metrics on the node's admin
// listener.
func (e *Env) metric(ctx context.Context, name string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", e.Node.Admin+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("GET %s/metrics: %w", e.Node.Admin, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return 0, fmt.Errorf("GET %s/metrics: %d", e.Node.Admin, resp.StatusCode)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, fmt.Errorf("/metrics has no sample %s", name)
}

// occupancy is the number of users here-now counts on a channel of Account.
func (e *Env) occupancy(ctx context.Context, channel string) (int, error) {
	a, err := e.get(ctx, "/v2/presence/sub-key/"+Account+"/channel/"+channel)
	if err != nil || a.Status != 200 {
		return 0, fmt.Errorf("here-now %s: %d %s %v", channel, a.Status, clip(a.Body), err)
	}
	var r struct{ Occupancy int }
	if err := json.Unmarshal(a.Body, &r); err != nil {
		return 0, fmt.Errorf("here-now %s: %s: %w", channel, clip(a.Body), err)
	}
	return r.Occupancy, nil
}

// Alive reports whether a process exists and has not exited (a zombie
// waiting for its parent has).
func Alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) state ...: comm may hold spaces and parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] != 'Z' && s[i+2] != 'X'
}

func probeSlowloris(ctx context.Context, e *Env) error {
	var f failures
	const (
		n      = 300
		rounds = 8
		every  = 500 * time.Millisecond
	)
	conns, err := dialMany(ctx, e, n, "")
	defer closeAll(conns)
	if len(conns) < n {
		f.add("opened %d of %d connections: %w", len(conns), n, err)
	}
	parallel(len(conns), func(i int) {
		_, _ = conns[i].Write([]byte("GET /time/0 HTTP/1.1\r\nHost: " + e.host() + "\r\n"))
	})
	cut := make([]bool, len(conns))
	for r := range rounds {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(every):
		}
		for i, c := range conns {
			if !cut[i] {
				_ = c.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
				if _, err := fmt.Fprintf(c, "X-Slow-%d: y\r\n", r); err != nil {
					cut[i] = true
				}
			}
		}
		if r == rounds/2 {
			a, err := e.fresh(ctx)
			f.expect("GET /time/0 from a new client while the headers trickle", a, err, 200)
		}
	}
	// The trickled requests end: each gets its answer, or the node has
	// cut the connection (a header deadline); both are fine.
	var answered, closed atomic.Int64
	parallel(len(conns), func(i int) {
		c := conns[i]
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte("\r\n")); err != nil {
			closed.Add(1)
			return
		}
		a, err := readAnswer(c)
		switch {
		case err == nil && a.Status == 200:
			answered.Add(1)
		case errors.Is(err, errNoAnswer):
			closed.Add(1)
		default:
			f.addErr(fmt.Errorf("a trickled request: got %d %s, %v; want 200 or the connection closed", a.Status, clip(a.Body), err))
		}
	})
	e.logf("%d trickled requests answered, %d cut by the node", answered.Load(), closed.Load())
	return f.err()
}

func probeIdleConnections(ctx context.Context, e *Env) error {
	var f failures
	const n = 3000
	_, fds0 := e.fdCount()
	conns, err := dialMany(ctx, e, n, "")
	defer closeAll(conns)
	if len(conns) < n {
		f.add("opened %d of %d connections: %w", len(conns), n, err)
	}
	// Wait (at most 10 s) until the node has accepted them.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		if ok, fds := e.fdCount(); !ok || fds >= fds0+n {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	_, fds := e.fdCount()
	e.logf("node descriptors %d → %d with %d idle connections", fds0, fds, len(conns))
	// A new client gets in, or is refused clearly (a connection cap).
	a, err := e.fresh(ctx)
	if f.expect("GET /time/0 from a new client beside 3,000 idle connections", a, err, 200, 429, 503) && a.Status != 200 {
		f.addErr(retryAfter(a))
	}
	closeAll(conns)
	a, took, err := e.freshWithin(ctx, 10*time.Second)
	f.expect(fmt.Sprintf("GET /time/0 from a new client after the idle connections closed (%v)", took.Round(time.Millisecond)), a, err, 200)
	return f.err()
}

// fdCount reads the node's open descriptors.
func (e *Env) fdCount() (bool, int) {
	n, err := FDs(e.Node.PID)
	return err == nil, n
}

// DroppedPolls is how many long-polls the dropped-polls probe parks.
const DroppedPolls = 2000

// The bounds of the dropped-polls probe: after the clients vanish, the
// parked polls must be released within ReleaseWithin and their users gone
// from here-now within LeaveWithin (the polls carry heartbeat=5: a user
// not seen for 5 s times out).
const (
	ReleaseWithin = 10 * time.Second
	LeaveWithin   = 20 * time.Second
)

func probeDroppedPolls(ctx context.Context, e *Env) error {
	var f failures
	const channel = "drop"
	cursor, err := e.handshake(ctx, channel, "drop-watch")
	if err != nil {
		return err
	}
	parked0, err := e.metric(ctx, "groupcast_parked_polls")
	if err != nil {
		return err
	}
	occ0, err := e.occupancy(ctx, channel)
	if err != nil {
		return err
	}
	conns, err := dialMany(ctx, e, DroppedPolls, "")
	defer closeAll(conns)
	if len(conns) < DroppedPolls {
		f.add("opened %d of %d connections: %w", len(conns), DroppedPolls, err)
	}
	var writeErrs atomic.Int64
	parallel(len(conns), func(i int) {
		req := fmt.Sprintf("GET /v2/subscribe/%s/%s/0?tt=%s&uuid=drop-%d&heartbeat=5 HTTP/1.1\r\nHost: %s\r\n\r\n", Account, channel, cursor, i, e.host())
		if _, err := conns[i].Write([]byte(req)); err != nil {
			writeErrs.Add(1)
		}
	})
	if n := writeErrs.Load(); n > 0 {
		f.add("%d subscribe requests could not be sent", n)
	}
	// Wait until they are parked (or their number stops growing for 2 s).
	parked := parked0
	for last, still := -1.0, time.Now(); time.Since(still) < 2*time.Second; {
		if parked, err = e.metric(ctx, "groupcast_parked_polls"); err != nil {
			return errors.Join(f.err(), err)
		}
		if parked >= parked0+float64(len(conns)) {
			break
		}
		if parked != last {
			last, still = parked, time.Now()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	// A poll answered at once must be a clear refusal (a cap on parked
	// polls): 429 or 503 with Retry-After.
	var refused, waiting atomic.Int64
	parallel(len(conns), func(i int) {
		_ = conns[i].SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		a, err := readAnswer(conns[i])
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout():
			waiting.Add(1)
		case err == nil && (a.Status == 429 || a.Status == 503) && retryAfter(a) == nil && jsonBody(a) == nil:
			refused.Add(1)
		default:
			f.add("poll %d answered at once: got %d %s %v, want it parked or refused with 429/503 and Retry-After", i, a.Status, clip(a.Body), err)
		}
	})
	occ, err := e.occupancy(ctx, channel)
	f.addErr(err)
	e.logf("%d polls parked (gauge %v → %v), %d refused; occupancy %d → %d", waiting.Load(), parked0, parked, refused.Load(), occ0, occ)

	// The clients vanish: half with a reset, half with a FIN.
	gone := time.Now()
	for i, c := range conns {
		if i%2 == 0 {
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0)
			}
		}
		_ = c.Close()
	}
	var released, left time.Duration
	for released == 0 || left == 0 {
		p, err := e.metric(ctx, "groupcast_parked_polls")
		if err != nil {
			return errors.Join(f.err(), err)
		}
		o, err := e.occupancy(ctx, channel)
		if err != nil {
			return errors.Join(f.err(), err)
		}
		since := time.Since(gone)
		if released == 0 && p <= parked0 {
			released = since
		}
		if left == 0 && o <= occ0 {
			left = since
		}
		if released == 0 && since > ReleaseWithin {
			f.add("%v after %d clients vanished, %v polls are still parked, want at most %v (the count before they came)", ReleaseWithin, len(conns), p, parked0)
			released = -1
		}
		if left == 0 && since > LeaveWithin {
			f.add("%v after %d clients vanished (heartbeat=5), here-now still counts %d on %s, want at most %d", LeaveWithin, len(conns), o, channel, occ0)
			left = -1
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	within := func(d time.Duration) string {
		if d < 0 {
			return "not within the bound"
		}
		return d.Round(time.Millisecond).String()
	}
	e.logf("after the clients vanished: polls released in %s, users gone from here-now in %s", within(released), within(left))
	return f.err()
}

// FDHeadroom is how many descriptors past what the node has open the
// fd-exhaustion probe lets it open; FDConnections is how many connections
// it then opens, more than that.
const (
	FDHeadroom    = 64
	FDConnections = 400
)

func probeFDExhaustion(ctx context.Context, e *Env) error {
	var f failures
	pid := e.Node.PID
	n, err := FDs(pid)
	if err != nil {
		return err
	}
	old, err := getNoFile(pid)
	if err != nil {
		return fmt.Errorf("reading the node's RLIMIT_NOFILE: %w", err)
	}
	limit := uint64(n + FDHeadroom)
	if err := setNoFile(pid, limit, old.Max); err != nil {
		return fmt.Errorf("lowering the node's RLIMIT_NOFILE to %d: %w", limit, err)
	}
	restored := false
	restore := func() {
		if !restored && Alive(pid) {
			f.addErr(setNoFile(pid, old.Cur, old.Max))
		}
		restored = true
	}
	defer restore()
	conns, err := dialMany(ctx, e, FDConnections, "")
	defer closeAll(conns)
	e.logf("RLIMIT_NOFILE %d (the node had %d open), %d connections opened (%v)", limit, n, len(conns), err)
	parallel(len(conns), func(i int) {
		_, _ = conns[i].Write([]byte("GET /time/0 HTTP/1.1\r\nHost: " + e.host() + "\r\n\r\n"))
	})
	// Wait until the node is at its limit (at most 5 s), then let it run
	// into it for a second.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		if ok, fds := e.fdCount(); !ok || uint64(fds) >= limit-2 {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Second):
	}
	_, fds := e.fdCount()
	if !Alive(pid) {
		f.add("the node exited with %d connections beyond its RLIMIT_NOFILE of %d", FDConnections, limit)
		return f.err()
	}
	e.logf("node descriptors at the limit: %d", fds)
	closeAll(conns)
	// Still under the low limit: once the connections are gone it answers.
	a, took, err := e.freshWithin(ctx, 15*time.Second)
	f.expect(fmt.Sprintf("GET /time/0 from a new client after the connections closed, RLIMIT_NOFILE still %d (%v)", limit, took.Round(time.Millisecond)), a, err, 200)
	if !Alive(pid) {
		f.add("the node exited after the connections closed")
	}
	restore()
	return f.err()
}
