// Package rywcheck is the read-your-writes checker: concurrent clients edit
// a shared group through random nodes and immediately list it through a
// different random node with their latest causal token. Every client owns
// its channels, so it knows exactly what its own channels' state must be; a
// list that contradicts it is a violation of G2.
//
// An edit that fails is not acknowledged, and may or may not have happened
// (a write whose answer was lost is applied all the same): its channel is
// left out of the checks until the client's next acknowledged edit of it. A
// 503 with Retry-After and a JSON body is the answer G2 allows when storage
// cannot be reached (an edit refused, or a read that cannot be proven fresh):
// it is counted apart from other errors, and the client waits as Retry-After
// says (at most a second) before going on.
package rywcheck

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Config describes one run.
type Config struct {
	Nodes    []string      // base URLs, at least 2
	Clients  int           // concurrent clients
	Duration time.Duration // how long each client runs
	Account  string
	Group    string
	// Consistency is sent with every read: "" (the token decides) or
	// "minimize_latency" (tokens ignored: the checker should then see stale reads).
	Consistency string
	// Channels is how many channels each client owns; zero means 5.
	Channels int
	// Progress, if not nil, counts successful edits as they happen.
	Progress *atomic.Int64
}

// Result counts what happened.
type Result struct {
	Edits, EditErrors int
	Reads, ReadErrors int
	// EditsUnavailable and ReadsUnavailable count the answers that were
	// 503 with Retry-After and a JSON body; EditErrors and ReadErrors count
	// every other failure.
	EditsUnavailable, ReadsUnavailable int
	Violations                         int
	First                              string // the first violation, for the log
}

// Run runs the clients until cfg.Duration passes or ctx ends.
func Run(ctx context.Context, cfg Config) Result {
	if cfg.Channels == 0 {
		cfg.Channels = 5
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	var (
		mu  sync.Mutex
		res Result
		wg  sync.WaitGroup
	)
	for c := range cfg.Clients {
		wg.Go(func() {
			r := client(ctx, cfg, c)
			mu.Lock()
			defer mu.Unlock()
			res.Edits += r.Edits
			res.EditErrors += r.EditErrors
			res.Reads += r.Reads
			res.ReadErrors += r.ReadErrors
			res.EditsUnavailable += r.EditsUnavailable
			res.ReadsUnavailable += r.ReadsUnavailable
			res.Violations += r.Violations
			if res.First == "" {
				res.First = r.First
			}
		})
	}
	wg.Wait()
	return res
}

func (r Result) String() string {
	return fmt.Sprintf("ryw_violations=%d reads=%d read_errors=%d edits=%d edit_errors=%d edits_unavailable=%d reads_unavailable=%d",
		r.Violations, r.Reads, r.ReadErrors, r.Edits, r.EditErrors, r.EditsUnavailable, r.ReadsUnavailable)
}

// httpc waits longer than a node's own bound on a request's storage work
// (httpapi's RequestTimeout, 10s), so a node's late 503 is seen as such.
var httpc = &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

// unavailable is a 503 that says when to come back and explains itself in
// PubNub's JSON error shape.
type unavailable struct {
	retryAfter time.Duration
	msg        string
}

func (u *unavailable) Error() string {
	return fmt.Sprintf("503 (Retry-After %v): %s", u.retryAfter, u.msg)
}

func get(ctx context.Context, u string, into any) error {
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		return err
	}
	resp, err := httpc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode == http.StatusServiceUnavailable {
		var e struct {
			Status  int    `json:"status"`
			Error   bool   `json:"error"`
			Message string `json:"message"`
		}
		secs, herr := strconv.Atoi(resp.Header.Get("Retry-After"))
		if json.Unmarshal(body, &e) == nil && e.Status == 503 && e.Error && herr == nil && secs >= 0 {
			return &unavailable{retryAfter: time.Duration(secs) * time.Second, msg: e.Message}
		}
	}
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s: %d %s", u, resp.StatusCode, body)
	}
	return json.Unmarshal(body, into)
}

// pause waits after a failure: what a 503's Retry-After says (at most a
// second), or a moment for anything else, so a client never spins.
func pause(ctx context.Context, err error) {
	d := 50 * time.Millisecond
	if u := (*unavailable)(nil); errors.As(err, &u) {
		d = min(u.retryAfter, time.Second)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func client(ctx context.Context, cfg Config, id int) Result {
	var res Result
	rnd := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(id)))
	// This client's channels whose state it knows (from its own
	// acknowledged edits), and whether they are in the group. A channel
	// whose last edit failed is unknown until it is edited again.
	present := map[string]bool{}
	token := ""
	base := fmt.Sprintf("/v1/channel-registration/sub-key/%s/channel-group/%s", url.PathEscape(cfg.Account), url.PathEscape(cfg.Group))
	for ctx.Err() == nil {
		ch := fmt.Sprintf("c%d-%d", id, rnd.IntN(cfg.Channels))
		op := "add"
		if present[ch] && rnd.IntN(2) == 0 {
			op = "remove"
		}
		w := rnd.IntN(len(cfg.Nodes))
		q := url.Values{op: {ch}}
		if token != "" {
			q.Set("token", token)
		}
		var edit struct {
			Token string `json:"token"`
		}
		editErr := get(ctx, cfg.Nodes[w]+base+"?"+q.Encode(), &edit)
		switch u := (*unavailable)(nil); {
		case editErr == nil:
			res.Edits++
			if cfg.Progress != nil {
				cfg.Progress.Add(1)
			}
			present[ch] = op == "add"
			token = edit.Token
		case ctx.Err() != nil:
			return res
		case errors.As(editErr, &u):
			res.EditsUnavailable++
			delete(present, ch)
		default:
			res.EditErrors++
			delete(present, ch)
		}
		// Read through another node with the latest token, also after a
		// failed edit: the channels the client knows must still read right.
		if token != "" {
			reader := (w + 1 + rnd.IntN(len(cfg.Nodes)-1)) % len(cfg.Nodes)
			after := func() string {
				if editErr != nil {
					return fmt.Sprintf("after %s %s on node %d failed (%v)", op, ch, w, editErr)
				}
				return fmt.Sprintf("after %s %s on node %d", op, ch, w)
			}
			res.read(ctx, cfg, id, base, token, reader, after, present)
		}
		if editErr != nil {
			pause(ctx, editErr)
		}
	}
	return res
}

// read lists the group through node reader with token and checks every
// channel whose state the client knows.
func (res *Result) read(ctx context.Context, cfg Config, id int, base, token string, reader int, after func() string, present map[string]bool) {
	rq := url.Values{"token": {token}}
	if cfg.Consistency != "" {
		rq.Set("consistency", cfg.Consistency)
	}
	var list struct {
		Payload struct {
			Channels []string `json:"channels"`
		} `json:"payload"`
	}
	err := get(ctx, cfg.Nodes[reader]+base+"?"+rq.Encode(), &list)
	switch u := (*unavailable)(nil); {
	case err == nil:
	case ctx.Err() != nil:
		return
	case errors.As(err, &u):
		res.ReadsUnavailable++ // allowed: never stale, but counted
		pause(ctx, err)
		return
	default:
		res.ReadErrors++
		pause(ctx, err)
		return
	}
	res.Reads++
	got := map[string]bool{}
	for _, c := range list.Payload.Channels {
		got[c] = true
	}
	for c, want := range present {
		if got[c] != want {
			res.Violations++
			if res.First == "" {
				res.First = fmt.Sprintf("client %d: %s, node %d lists %s as present=%v", id, after(), reader, c, got[c])
			}
			return
		}
	}
}
