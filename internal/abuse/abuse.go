// Package abuse is groupcast's abuse suite: probes that try on a running
// groupcastd what a hostile or broken client would (oversized and malformed
// input, compression bombs, tampered tokens, connection floods, clients that
// vanish, races at a cap, file-descriptor exhaustion), each asserting the
// status codes the node must answer with, and the instruments that judge
// the node meanwhile: a watcher that asks GET /time/0 every 100 ms, a
// sampler of the process's RSS and open descriptors from /proc, and
// snapshots of the groups that show a probe changed nothing.
//
// Everything goes through the node's HTTP API over loopback, most of it on
// raw connections so that a request reaches the node byte for byte (no
// client cleans a path or refuses a bad escape). The sampler and the
// file-descriptor probe read and set the process's limits, so the node must
// be a local process (Linux). cmd/groupcastd's TestAbuse runs the suite
// against a real groupcastd on the embedded store.
package abuse

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"
)

// Node is the groupcastd process under test.
type Node struct {
	// URL is its base URL, http://127.0.0.1:port.
	URL string
	// PID is its process id.
	PID int
	// Admin is the base URL of its admin listener, whose /metrics the
	// probes read.
	Admin string
	// Secret is the cluster secret it signs causal tokens with (--secret):
	// the token probe forges tokens with it.
	Secret []byte
	// Shards is its number of account shards; zero means 64.
	Shards int
}

// Env is what a probe runs against.
type Env struct {
	Node Node
	// Fixture is what Setup made; the probes read with its tokens.
	Fixture Fixture
	// Logf reports what a probe measured (t.Logf).
	Logf func(format string, args ...any)
	// Samples is the process sampler of the run, for probes that bound the
	// memory they cause; nil means such probes only log what they see.
	Samples *Sampler
}

func (e *Env) logf(format string, args ...any) {
	if e.Logf != nil {
		e.Logf(format, args...)
	}
}

func (e *Env) host() string { return strings.TrimPrefix(e.Node.URL, "http://") }

func (e *Env) shards() int {
	if e.Node.Shards == 0 {
		return 64
	}
	return e.Node.Shards
}

// Probe is one abuse scenario.
type Probe struct {
	// Name is the subtest name: go test -run 'TestAbuse/<Name>' runs it alone.
	Name string
	// What says in a line what it tries and what the node must do.
	What string
	// Mutates is set for the probes that change groups on purpose (in an
	// account of their own, not among SnapshotAccounts); every other probe
	// must leave the store as it found it.
	Mutates bool
	// Run tries the probe and returns every expectation it saw broken
	// (errors.Join), nil if none.
	Run func(ctx context.Context, e *Env) error
}

// Probes returns the suite, in the order it runs: input validation first,
// then connection and memory pressure, and last the probe that may take
// the node down (file-descriptor exhaustion).
func Probes() []Probe {
	return []Probe{
		{Name: "time-number", What: "GET /time/0 answers a JSON array holding one number, as PubNub does", Run: probeTimeNumber},
		{Name: "query-1mb", What: "a 1 MB query string gets 431, on /time/0 and on an add", Run: probeQuery1MB},
		{Name: "body-10mb", What: "a 10 MB publish body, with Content-Length or chunked, gets 413 and publishes nothing", Run: probeBody10MB},
		{Name: "compression-bomb", What: "a zlib or gzip bomb body (Content-Encoding) gets 4xx and publishes nothing", Run: probeCompressionBomb},
		{Name: "path-tricks", What: "../, %2F, %00, overlong UTF-8 and double encoding in paths get 4xx (or an empty list) and change nothing", Run: probePathTricks},
		{Name: "bad-escapes", What: "bad % escapes in query values get 400 and create no channel", Run: probeBadEscapes},
		{Name: "invalid-utf8", What: "a published message (or meta) that is not valid UTF-8 gets 400 and is not stored", Run: probeInvalidUTF8},
		{Name: "tokens", What: "tampered, foreign, future and malformed causal tokens get 400; an old (expired) but genuine one reads like no token", Run: probeTokens},
		{Name: "future-cursor", What: "subscribe cursors (tt) an hour ahead and at int64 max get 400 at once instead of parking", Run: probeFutureCursor},
		{Name: "long-uuid", What: "a 100 KB uuid on heartbeat, subscribe and publish gets 400 (uuid <= 92 bytes everywhere)", Run: probeLongUUID},
		{Name: "slowloris", What: "300 connections trickling their headers do not stop the node answering others", Run: probeSlowloris},
		{Name: "idle-connections", What: "3,000 idle connections do not stop the node answering others", Run: probeIdleConnections},
		{Name: "publish-flood", What: "two waves of 1,500 publishes of 32 KiB to distinct channels all succeed, and the second grows RSS by at most FloodSecondWaveGrowth", Run: probePublishFlood},
		{Name: "channel-cap-race", What: "20 parallel adds of 200 channels to one group leave at most 2,000, exactly the acknowledged ones", Mutates: true, Run: probeChannelCapRace},
		{Name: "dropped-polls", What: "2,000 parked long-polls whose clients vanish are released, and their users leave, within seconds", Run: probeDroppedPolls},
		{Name: "fd-exhaustion", What: "under a low RLIMIT_NOFILE, more connections than that do not end the node; it answers /time/0 once they close", Run: probeFDExhaustion},
	}
}

// Answer is an HTTP answer as a probe saw it.
type Answer struct {
	Status int
	Header http.Header
	Body   []byte
}

// maxAnswerBody bounds how much of an answer's body a probe reads.
const maxAnswerBody = 4 << 20

// requestTimeout bounds one probe request unless the probe says otherwise.
const requestTimeout = 10 * time.Second

// roundTrip sends a request (head, then body if any) on a new connection
// from the loopback address from (empty: any) and reads the answer. The
// body is written while the answer is read, so an answer that comes before
// the body is all sent (413, 431) is seen.
func (e *Env) roundTrip(ctx context.Context, from, head string, body func(net.Conn) error, timeout time.Duration) (Answer, error) {
	c, err := dial(ctx, from, e.host())
	if err != nil {
		return Answer{}, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	wrote := make(chan error, 1)
	go func() {
		if _, err := c.Write([]byte(head)); err != nil {
			wrote <- err
			return
		}
		if body != nil {
			wrote <- body(c)
			return
		}
		wrote <- nil
	}()
	a, err := readAnswer(c)
	if err != nil {
		if werr := <-wrote; werr != nil {
			err = fmt.Errorf("%w (writing: %w)", err, werr)
		}
		return a, err
	}
	return a, nil
}

// get sends GET target (sent as is: no cleaning, no escaping).
func (e *Env) get(ctx context.Context, target string) (Answer, error) {
	return e.roundTrip(ctx, "", "GET "+target+" HTTP/1.1\r\nHost: "+e.host()+"\r\nConnection: close\r\n\r\n", nil, requestTimeout)
}

// post sends POST target with body and the extra header lines.
func (e *Env) post(ctx context.Context, target string, body []byte, headers ...string) (Answer, error) {
	head := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: %d\r\n", target, e.host(), len(body))
	for _, h := range headers {
		head += h + "\r\n"
	}
	return e.roundTrip(ctx, "", head+"\r\n", func(c net.Conn) error { _, err := c.Write(body); return err }, requestTimeout)
}

func dial(ctx context.Context, from, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	return d.DialContext(ctx, "tcp", addr)
}

// errNoAnswer is a connection that ended without an answer.
var errNoAnswer = errors.New("no answer")
