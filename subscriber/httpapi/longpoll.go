package httpapi

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"reflect"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/groupcast/groupcast/access"
	"github.com/groupcast/groupcast/channelgroups"
	"github.com/groupcast/groupcast/subscriber"
)

// A parked long-poll holds no goroutine. fasthttp serves a request on a
// worker goroutine until its handler returns, so a handler that waited for
// messages would keep a goroutine stack and its RequestCtx per parked
// subscriber. Instead the subscribe handler starts the poll on the node
// and, when it does not answer at once, hijacks the connection: the
// worker, the RequestCtx and the read buffer go back to their pools, and
// what stays is the connection and the node's Parked. When the answer
// comes, the short-lived goroutine that found it writes it and goes on to
// serve the connection's next request (Server.ServeConn) until it parks again
// or closes.

// While a poll is parked its connection is watched for the client's
// hang-up (watch_linux.go): a client that goes away has its poll cancelled
// and its connection closed at once, and, unless it comes back within
// DroppedLeaveGrace, it leaves the poll's channels' presence.

// pendingAnswer joins a poll's answer and its hijacked connection; the
// second of the two to arrive writes the response.
type pendingAnswer struct {
	api       *API
	acct      channelgroups.Account
	start     time.Time
	keepAlive bool
	origin    []byte // the request's Origin header, for the CORS headers
	// addr is the client address the poll counts under, admitted whether
	// it took a place there (guard.admitPoll).
	addr     netip.Addr
	admitted bool
	channels []channelgroups.Channel // for the presence of a dropped poll
	uuid     string
	// startedAt is the uuid's count of subscribes begun here when this one
	// began (guard.track): a later one means the subscriber came back.
	startedAt uint64

	mu       sync.Mutex
	answered bool
	res      subscriber.PollResult
	err      error
	conn     net.Conn
	waiting  chan struct{} // only when the API has no server to hand back to
	parked   *subscriber.Parked
	memo     *access.Memo // the connection's, for the servedConn after the answer
	route    *routeMemo   // likewise
	unwatch  func()       // stops watching conn for a hang-up
	gone     bool         // the client hung up before the answer
	finished bool
	// deliverFn is deliver, bound once: what StartPoll is given.
	deliverFn func(subscriber.PollResult, error)
}

func (p *pendingAnswer) deliver(res subscriber.PollResult, err error) {
	p.mu.Lock()
	p.answered, p.res, p.err = true, res, err
	c, waiting, gone, unwatch := p.conn, p.waiting, p.gone, p.unwatch
	p.unwatch = nil
	p.mu.Unlock()
	if waiting != nil {
		close(waiting)
	}
	if gone {
		p.dropped()
		return
	}
	if unwatch != nil {
		unwatch()
	}
	if c != nil {
		p.write(c, false) // on the node's wake-up pass
	}
}

// attach is the hijack handler: it runs on fasthttp's hijack goroutine and
// returns at once unless the answer is already there.
func (p *pendingAnswer) attach(c net.Conn) {
	c, buffered := unwrapHijacked(c)
	p.mu.Lock()
	if buffered {
		// The client pipelined: its bytes sit in a read buffer of
		// MaxRequestHeaderBytes that would stay with the connection. Answer
		// and close instead (PubNub clients do not pipeline).
		p.keepAlive = false
	}
	p.conn = c
	answered := p.answered
	if !answered && p.api.guard != nil {
		p.unwatch = p.api.guard.watch.watch(c, p.clientGone)
	}
	p.mu.Unlock()
	if answered {
		p.write(c, true)
	}
}

// clientGone is called by the watcher when the parked poll's client hung
// up: the connection closes now, and the poll is cancelled; its answer
// (dropped) then gives back its place.
func (p *pendingAnswer) clientGone() {
	p.mu.Lock()
	if p.answered {
		p.mu.Unlock()
		return // the answer is being written; its write fails
	}
	p.gone = true
	c, w := p.conn, p.parked
	p.mu.Unlock()
	_ = c.Close()
	if w != nil {
		w.Cancel()
	}
}

// dropped ends a poll whose client hung up; it is counted as answered 499
// (nginx's "client closed request").
func (p *pendingAnswer) dropped() {
	a := p.api
	a.observe("subscribe", statusClientClosed, p.start)
	if g := a.guard; g != nil {
		g.dropped.Inc()
		g.leaveLater(p)
	}
	p.finish()
}

const statusClientClosed = 499

// finish gives back what the poll held, once: its place under the limits
// and Drain's count of answers to write.
func (p *pendingAnswer) finish() {
	p.mu.Lock()
	done := p.finished
	p.finished = true
	p.mu.Unlock()
	if done {
		return
	}
	p.api.handedOff.Add(-1)
	if g := p.api.guard; g != nil && p.admitted {
		g.releasePoll(p)
	}
}

// releaseDeliveries gives the answer's deliveries back to the node's pool
// once answerSubscribe has copied them into the response.
func (p *pendingAnswer) releaseDeliveries() {
	subscriber.ReleaseDeliveries(p.res.Deliveries)
	p.res.Deliveries = nil
}

// ready returns whether the answer came before the handler returned.
func (p *pendingAnswer) ready() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.answered
}

// servedConn is a connection handed back to the server. Each hand-back gets
// a wrapper of its own: fasthttp keys its bookkeeping of idle connections by
// the net.Conn value, and the serve loop that hijacked the connection may
// still be cleaning up its entry when the next loop starts.
//
// It reads ahead. fasthttp (with ReduceMemoryUsage) waits for a request
// with a one-byte read, so as to hold no read buffer while idle, then reads
// the rest: two reads per request besides the one that finds nothing yet.
// servedConn answers a small read with one read of up to readAhead bytes
// into a pooled buffer taken only once bytes are there (rawReader), and
// hands fasthttp the rest from it: one read per request, and no buffer held
// while the connection waits.
//
// A read that finds nothing waits in the API's repollQueue (on Linux): the
// client's next request is a re-poll, and requests on other connections
// come first (repoll_linux.go).
type servedConn struct {
	net.Conn
	lp      *longPollState
	pending []byte  // read ahead, not yet handed to the server
	buf     *[]byte // pending's pooled array
	raw     *rawReader
	// readDeadline is the last one the server set, for a wait in the
	// queue; only the goroutine serving the connection touches it.
	readDeadline time.Time
	// memo is the access check the connection's last subscribe passed,
	// kept across the times it parks (pendingAnswer.memo).
	memo *access.Memo
	// route is the connection's last subscribe path, resolved (resolve),
	// kept across the times it parks (pendingAnswer.route).
	route *routeMemo
}

// readAhead is how much a small read of a served connection reads at
// once: a subscribe's request line and headers, usually.
const readAhead = 4 << 10

// Read reads from what was read ahead, or from the connection.
func (c *servedConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		if len(c.pending) == 0 {
			c.lp.putReadBuf(c.buf)
			c.pending, c.buf = nil, nil
		}
		return n, nil
	}
	if len(p) >= readAhead || c.lp == nil {
		return c.Conn.Read(p)
	}
	buf, n, err := c.raw.readSome()
	if buf == nil {
		if err == nil { // no descriptor to read from: plain reads
			return c.Conn.Read(p)
		}
		return 0, err
	}
	k := copy(p, (*buf)[:n])
	if k < n {
		c.pending, c.buf = (*buf)[k:n], buf
	} else {
		c.lp.putReadBuf(buf)
	}
	return k, err
}

// newServedConn wraps c, handed back after a long-poll, for the server.
func (s *longPollState) newServedConn(c net.Conn, memo *access.Memo, route *routeMemo) *servedConn {
	sc := &servedConn{Conn: c, lp: s, memo: memo, route: route}
	sc.raw = newRawReader(c, s.getReadBuf, s.putReadBuf, &s.repoll, &sc.readDeadline)
	return sc
}

// buffered reports whether bytes read ahead wait for the server.
func (c *servedConn) buffered() bool { return len(c.pending) > 0 }

// SetReadDeadline sets the connection's, and the one a wait in the queue
// keeps to.
func (c *servedConn) SetReadDeadline(t time.Time) error {
	c.readDeadline = t
	return c.Conn.SetReadDeadline(t)
}

func (c *servedConn) SetDeadline(t time.Time) error {
	c.readDeadline = t
	return c.Conn.SetDeadline(t)
}

// Close closes the connection, ending its wait in the queue if it waits
// there (the server closes idle connections when it shuts down).
func (c *servedConn) Close() error {
	if c.raw != nil {
		c.raw.cancel()
	}
	return c.Conn.Close()
}

// unwrapHijacked returns the connection under fasthttp's hijack wrapper
// (and under an earlier servedConn), so that a connection that parks again
// and again is not wrapped once more every time. It keeps the wrapper, and
// reports buffered, when the wrapper reads through a buffer holding bytes
// the client sent after the subscribe (a pipelined request): those must not
// be lost.
//
// fasthttp does not export the wrapper's reader, so this looks at it by
// reflection; if the wrapper's shape ever changes, the connection stays
// wrapped: slower, never wrong (TestUnwrapHijacked notices).
func unwrapHijacked(c net.Conn) (conn net.Conn, buffered bool) {
	u, ok := c.(interface{ UnsafeConn() net.Conn })
	if !ok {
		return c, false
	}
	v := reflect.ValueOf(c)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return c, false
	}
	i, ok := readerField(v.Elem().Type())
	if !ok {
		return c, false
	}
	r := v.Elem().Field(i)
	if r.IsNil() {
		return c, false
	}
	raw := u.UnsafeConn()
	if rv := r.Elem(); rv.Kind() != reflect.Pointer || rv.Pointer() != reflect.ValueOf(raw).Pointer() {
		return c, true // it reads through a *bufio.Reader: pipelined bytes are buffered in it
	}
	if sc, ok := raw.(*servedConn); ok {
		if sc.buffered() {
			return c, true // read ahead: the bytes are in the servedConn
		}
		raw = sc.Conn
	}
	return raw, false
}

// readerFields caches, per wrapper type, the index of its reader field
// "r" (an interface), or -1: looking a field up by name on every park cost
// a search, allocations and a stack growth of the hijack goroutine (4% of
// a node's CPU when 10,000 parked subscribers are woken 2 times a second).
var readerFields sync.Map // reflect.Type → int

// readerField returns the index of struct type t's interface field "r".
func readerField(t reflect.Type) (int, bool) {
	if i, ok := readerFields.Load(t); ok {
		return i.(int), i.(int) >= 0
	}
	i := -1
	if f, ok := t.FieldByName("r"); ok && len(f.Index) == 1 && f.Type.Kind() == reflect.Interface {
		i = f.Index[0]
	}
	readerFields.Store(t, i)
	return i, i >= 0
}

// answerPool holds the RequestCtx values the handed-off answers are built in,
// so that they share the synchronous path's response code.
var answerPool = sync.Pool{New: func() any {
	ctx := new(fasthttp.RequestCtx)
	ctx.Init(new(fasthttp.Request), nil, nil)
	return ctx
}}

// write sends the answer on the hijacked connection and gives the
// connection back to the server, or closes it. Inline (on the hijack
// goroutine), it does so on the caller's goroutine; otherwise (a wake-up
// pass) it writes what the socket takes at once and leaves the rest, and
// the serving, to a pooled goroutine.
func (p *pendingAnswer) write(c net.Conn, inline bool) {
	a := p.api
	buf, keep := p.writeAnswer(c, !inline)
	if buf == nil {
		p.finish() // written: Drain need not wait for what follows
		if !keep {
			_ = c.Close()
			return
		}
	}
	rest := func() {
		if buf != nil {
			err := a.writeRest(c, *buf)
			a.lp.putBuf(buf)
			p.finish()
			if err != nil {
				keep = false
			}
		}
		if !keep {
			_ = c.Close()
			return
		}
		a.serveConn(c, p.memo, p.route) // returns when the connection closes or parks again
	}
	if inline {
		rest()
		return
	}
	a.lp.goServe(rest)
}

// writeRest writes what the non-blocking attempt left of an answer, under
// the server's WriteTimeout, and clears the deadlines for the next request.
func (a *API) writeRest(c net.Conn, b []byte) error {
	if len(b) > 0 {
		if a.server != nil && a.server.WriteTimeout > 0 {
			_ = c.SetWriteDeadline(time.Now().Add(a.server.WriteTimeout))
		}
		if _, err := c.Write(b); err != nil {
			return err
		}
	}
	return c.SetDeadline(time.Time{})
}

// writeAnswer builds the answer's bytes and reports whether the connection
// may serve another request. With now, it writes what the socket takes
// without waiting (writeNow) and returns the rest; otherwise it returns it
// all, to be written by the caller. buf is nil when nothing is left to
// write, and must go back through putBuf otherwise. A panic is recovered:
// the client gets a 500 (if nothing was written yet) and the connection
// closes; the node and its other polls go on.
func (p *pendingAnswer) writeAnswer(c net.Conn, now bool) (buf *[]byte, keep bool) {
	a := p.api
	ctx := answerPool.Get().(*fasthttp.RequestCtx)
	defer func() {
		v := recover()
		if v == nil {
			ctx.Response.Reset() // do not keep up to 99 messages in the pool
			answerPool.Put(ctx)
			return
		}
		if buf != nil {
			a.lp.putBuf(buf)
		}
		buf, keep = nil, false
		a.recovered(v, "subscribe answer")
		a.writeInternalError(c)
		a.observe("subscribe", fasthttp.StatusInternalServerError, p.start)
	}()
	ctx.Response.Reset()
	a.setCommonHeaders(&ctx.Response.Header, p.origin)
	h := &ctx.Response.Header
	h.SetServer(serverName) // the Date line is fasthttp's, formatted once a second
	a.answerSubscribe(ctx, p.acct, p.res, p.err)
	p.releaseDeliveries()
	a.observe("subscribe", ctx.Response.StatusCode(), p.start)
	keep = p.keepAlive && !a.draining.Load()
	if !keep {
		ctx.Response.SetConnectionClose()
	}
	body := ctx.Response.Body()
	h.SetContentLength(len(body))
	buf = a.lp.getBuf()
	b := append(h.AppendBytes((*buf)[:0]), body...)
	*buf = b
	if now {
		if n := writeNow(c, b); n == len(b) {
			a.lp.putBuf(buf)
			buf = nil
			if keep {
				keep = c.SetDeadline(time.Time{}) == nil
			}
		} else {
			*buf = b[n:]
		}
	}
	return buf, keep
}

// longPollState is what answering parked polls reuses; its zero value is
// ready.
type longPollState struct {
	once sync.Once
	idle chan func() // goroutines waiting for a connection to serve
	bufs sync.Pool   // *[]byte for answers' bytes, and for every subscribe answer's body (answerSubscribe)
	// answers holds the pendingAnswers of polls answered at once.
	answers sync.Pool

	readBufs sync.Pool // *[]byte of readAhead bytes, for servedConn

	repoll repollQueue // where handed-back connections wait for their next request

	obsMu sync.RWMutex
	obs   map[observeKey]observers
}

// maxPooledAnswer is the largest answer buffer kept for reuse.
const maxPooledAnswer = 64 << 10

// getAnswer returns a pendingAnswer to fill: a new one, or one a poll
// answered at once gave back (putAnswer). Under load most re-polls are
// answered at once, and this is what each of them would allocate.
func (s *longPollState) getAnswer() *pendingAnswer {
	if p, ok := s.answers.Get().(*pendingAnswer); ok {
		return p
	}
	p := &pendingAnswer{}
	p.deliverFn = p.deliver
	return p
}

// putAnswer gives back p, whose poll was answered before StartPoll
// returned and never registered: nothing else holds it.
func (s *longPollState) putAnswer(p *pendingAnswer) {
	deliver := p.deliverFn
	*p = pendingAnswer{deliverFn: deliver}
	s.answers.Put(p)
}

func (s *longPollState) getBuf() *[]byte {
	if b, ok := s.bufs.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, 0, 4<<10)
	return &b
}

func (s *longPollState) putBuf(b *[]byte) {
	if cap(*b) <= maxPooledAnswer {
		*b = (*b)[:0]
		s.bufs.Put(b)
	}
}

func (s *longPollState) getReadBuf() *[]byte {
	if b, ok := s.readBufs.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, readAhead)
	return &b
}

func (s *longPollState) putReadBuf(b *[]byte) { s.readBufs.Put(b) }

// serveLinger is how long a goroutine that served a handed-back connection
// waits for another: serving a request takes a deep stack, which a fresh
// goroutine would grow (copy) several times per answer.
const serveLinger = 2 * time.Second

// goServe runs f on a goroutine that served a connection before, or on a
// new one.
func (s *longPollState) goServe(f func()) {
	s.once.Do(func() { s.idle = make(chan func()) })
	select {
	case s.idle <- f:
	default:
		go s.serveLoop(f)
	}
}

func (s *longPollState) serveLoop(f func()) {
	t := time.NewTimer(serveLinger)
	defer t.Stop()
	for {
		f()
		t.Reset(serveLinger)
		select {
		case f = <-s.idle:
		case <-t.C:
			return
		}
	}
}

// serveConn serves a connection handed back after a parked poll's answer.
// Handle recovers its own panics; one in the server itself closes the
// connection.
func (a *API) serveConn(c net.Conn, memo *access.Memo, route *routeMemo) {
	defer func() {
		if v := recover(); v != nil {
			a.recovered(v, "serving a connection after a long-poll")
			_ = c.Close()
		}
	}()
	_ = a.server.ServeConn(a.lp.newServedConn(c, memo, route))
}

// servePoll starts the poll and answers it at once, or parks it on the
// hijacked connection. A subscribe past the Server's limits is refused
// (guard.admitPoll).
func (a *API) servePoll(ctx *fasthttp.RequestCtx, acct channelgroups.Account, req subscriber.PollRequest) {
	p := a.lp.getAnswer()
	p.api, p.acct, p.start, p.keepAlive = a, acct, time.Now(), !ctx.Request.Header.ConnectionClose() && ctx.Request.Header.IsHTTP11()
	p.channels, p.uuid = req.Channels, req.UUID
	if a.cfg.Access != nil {
		p.memo = memoOf(ctx)
	}
	if sc, ok := ctx.Conn().(*servedConn); ok {
		p.route = sc.route
	}
	if o := ctx.Request.Header.Peek("Origin"); len(o) > 0 && len(a.cfg.CORSOrigins) > 0 {
		p.origin = bytes.Clone(o)
	}
	if g := a.guard; g != nil {
		p.addr = g.clientAddr(ctx)
		if !g.admitPoll(ctx, p.addr) {
			return
		}
		p.admitted = true
		g.track(p)
	}
	if a.server == nil {
		p.waiting = make(chan struct{}) // not served by NewServer: wait here
	}
	// Counted before the poll starts, so that a Drain that releases it
	// between here and the hijack still waits for its answer.
	a.handedOff.Add(1)
	parked, reuse := false, false
	defer func() {
		if !parked {
			p.finish() // answered at once, or StartPoll panicked (Handle recovers)
		}
		if reuse {
			a.lp.putAnswer(p)
		}
	}()
	w := a.cfg.Pubsub.StartPoll(context.Background(), req, p.deliverFn)
	p.mu.Lock()
	p.parked = w
	p.mu.Unlock()
	if a.server == nil {
		<-p.waiting
	}
	if p.ready() {
		a.answerSubscribe(ctx, acct, p.res, p.err)
		p.releaseDeliveries()
		// Answered before StartPoll returned, never registered (no
		// Parked): nothing but this handler saw p.
		reuse = w == nil
		return
	}
	// If fasthttp fails the connection before it runs the hijack handler,
	// the count stays up (Drain then waits DrainTimeout, no longer) and so
	// does the poll's place under the limits.
	parked = true
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(p.attach)
}

// waitHandedOff waits until the answers of parked polls are written, or
// until ctx ends.
func (a *API) waitHandedOff(ctx context.Context) {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for a.handedOff.Load() > 0 {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (a *API) observe(endpoint string, status int, start time.Time) {
	if a.requests == nil {
		return
	}
	o := a.lp.observers(a, endpoint, status)
	o.count.Inc()
	o.latency.Observe(time.Since(start).Seconds())
}

type observeKey struct {
	endpoint string
	status   int
}

// observers are an endpoint's and status's metrics, resolved once.
type observers struct {
	count   prometheus.Counter
	latency prometheus.Observer
}

func (s *longPollState) observers(a *API, endpoint string, status int) observers {
	k := observeKey{endpoint, status}
	s.obsMu.RLock()
	o, ok := s.obs[k]
	s.obsMu.RUnlock()
	if ok {
		return o
	}
	o = observers{a.requests.WithLabelValues(endpoint, strconv.Itoa(status)), a.latency.WithLabelValues(endpoint)}
	s.obsMu.Lock()
	if s.obs == nil {
		s.obs = map[observeKey]observers{}
	}
	s.obs[k] = o
	s.obsMu.Unlock()
	return o
}
