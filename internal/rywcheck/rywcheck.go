// Package rywcheck is the read-your-writes checker: concurrent clients edit
// a shared group through random nodes and immediately list it through a
// different random node with their latest causal token. Every client owns
// its channels, so it knows exactly what its own channels' state must be; a
// list that contradicts it is a violation of G2.
package rywcheck

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
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
	Violations        int
	First             string // the first violation, for the log
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
	return fmt.Sprintf("ryw_violations=%d reads=%d read_errors=%d edits=%d edit_errors=%d", r.Violations, r.Reads, r.ReadErrors, r.Edits, r.EditErrors)
}

var httpc = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

func get(ctx context.Context, u string, into any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		return 0, err
	}
	resp, err := httpc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode != 200 {
		return resp.StatusCode, fmt.Errorf("%s: %d %s", u, resp.StatusCode, body)
	}
	return resp.StatusCode, json.Unmarshal(body, into)
}

func client(ctx context.Context, cfg Config, id int) Result {
	var res Result
	rnd := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(id)))
	present := map[string]bool{} // this client's channels and whether they are in the group
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
		if _, err := get(ctx, cfg.Nodes[w]+base+"?"+q.Encode(), &edit); err != nil {
			if ctx.Err() == nil {
				res.EditErrors++
			}
			// The edit may or may not have happened: re-learn this
			// channel's state from a fully consistent read before going on.
			if !relearn(ctx, cfg, base, present) {
				return res
			}
			continue
		}
		res.Edits++
		if cfg.Progress != nil {
			cfg.Progress.Add(1)
		}
		present[ch] = op == "add"
		token = edit.Token

		reader := (w + 1 + rnd.IntN(len(cfg.Nodes)-1)) % len(cfg.Nodes)
		rq := url.Values{"token": {token}}
		if cfg.Consistency != "" {
			rq.Set("consistency", cfg.Consistency)
		}
		var list struct {
			Payload struct {
				Channels []string `json:"channels"`
			} `json:"payload"`
		}
		if _, err := get(ctx, cfg.Nodes[reader]+base+"?"+rq.Encode(), &list); err != nil {
			if ctx.Err() == nil {
				res.ReadErrors++ // a 503 is allowed (never stale), but counted
			}
			continue
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
					res.First = fmt.Sprintf("client %d: after %s %s on node %d, node %d lists %s as present=%v", id, op, ch, w, reader, c, got[c])
				}
				break
			}
		}
	}
	return res
}

// relearn reads the group fully consistently and resets the client's model
// of its own channels; false if ctx ended.
func relearn(ctx context.Context, cfg Config, base string, present map[string]bool) bool {
	for ctx.Err() == nil {
		var list struct {
			Payload struct {
				Channels []string `json:"channels"`
			} `json:"payload"`
		}
		if _, err := get(ctx, cfg.Nodes[0]+base+"?consistency=fully_consistent", &list); err != nil {
			continue
		}
		got := map[string]bool{}
		for _, c := range list.Payload.Channels {
			got[c] = true
		}
		for c := range present {
			present[c] = got[c]
		}
		return true
	}
	return false
}
