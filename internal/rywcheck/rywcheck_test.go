package rywcheck_test

import (
	"cmp"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/groupcast/groupcast/internal/rywcheck"
)

// fake is one group's channel-registration API in memory, shared by every
// "node" (a test server over the same state).
type fake struct {
	mu       sync.Mutex
	channels map[string]bool
	// refuse answers every edit with this status and Retry-After header
	// (none if empty), without applying it.
	refuse     int
	retryAfter string
	// applyRefused applies a refused edit all the same (its answer lost).
	applyRefused bool
	// refuseAfter, if not zero, starts refusing edits (as refuse says)
	// once this many were acknowledged: an outage in the middle of a run.
	refuseAfter, acked, refused int
	// alternate refuses every other edit only.
	alternate bool
	edits     int
	// stale lists the group as it was before any edit; staleWhenRefusing
	// only once an edit was refused.
	stale, staleWhenRefusing bool
	// stop is called once the fake has answered 100 requests.
	stop   func()
	served int
}

func (f *fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.served++; f.served == 100 {
		f.stop()
	}
	op, ch := "", ""
	if q.Has("add") {
		op, ch = "add", q.Get("add")
	} else if q.Has("remove") {
		op, ch = "remove", q.Get("remove")
	}
	refusing := f.refuse != 0 && (f.refuseAfter == 0 || f.acked >= f.refuseAfter)
	if op != "" {
		f.edits++
		refusing = refusing && (!f.alternate || f.edits%2 == 0)
		if refusing {
			f.refused++
			if f.applyRefused {
				f.channels[ch] = op == "add"
			}
			if f.retryAfter != "" {
				w.Header().Set("Retry-After", f.retryAfter)
			}
			w.WriteHeader(f.refuse)
			json.NewEncoder(w).Encode(map[string]any{"status": f.refuse, "error": true, "message": "storage unavailable, retry"})
			return
		}
		f.channels[ch] = op == "add"
		f.acked++
		json.NewEncoder(w).Encode(map[string]any{"status": 200, "token": "t"})
		return
	}
	list := []string{}
	for c, in := range f.channels {
		if in && !f.stale && !(f.refused > 0 && f.staleWhenRefusing) {
			list = append(list, c)
		}
	}
	sort.Strings(list)
	json.NewEncoder(w).Encode(map[string]any{"status": 200, "payload": map[string]any{"channels": list}})
}

// TestCounts: the checker tells a correct cluster, refused edits (503 with
// Retry-After: not acknowledged, counted apart), other failures and stale
// reads apart.
func TestCounts(t *testing.T) {
	for _, tc := range []struct {
		name    string
		f       *fake
		clients int // zero means 2
		check   func(rywcheck.Result) bool
	}{
		{"correct", &fake{}, 0, func(r rywcheck.Result) bool {
			return r.Violations == 0 && r.Edits > 0 && r.Reads > 0 && r.EditsUnavailable == 0 && r.EditErrors == 0
		}},
		{"stale reads", &fake{stale: true}, 0, func(r rywcheck.Result) bool { return r.Violations > 0 }},
		{"503 with Retry-After", &fake{refuse: 503, retryAfter: "0"}, 0, func(r rywcheck.Result) bool {
			return r.Violations == 0 && r.EditsUnavailable > 0 && r.EditErrors == 0 && r.Edits == 0
		}},
		// A refused edit may have been applied (its answer lost): its
		// channel is not checked until it is edited again.
		{"lost answers", &fake{refuse: 503, retryAfter: "0", applyRefused: true, alternate: true}, 0, func(r rywcheck.Result) bool {
			return r.Violations == 0 && r.EditsUnavailable > 0 && r.Edits > 0 && r.Reads > 0
		}},
		{"503 without Retry-After", &fake{refuse: 503}, 0, func(r rywcheck.Result) bool {
			return r.Violations == 0 && r.EditsUnavailable == 0 && r.EditErrors > 0
		}},
		{"500", &fake{refuse: 500, retryAfter: "0"}, 0, func(r rywcheck.Result) bool {
			return r.Violations == 0 && r.EditsUnavailable == 0 && r.EditErrors > 0
		}},
		// During an outage the client keeps reading with its last token...
		{"outage", &fake{refuse: 503, retryAfter: "0", refuseAfter: 20}, 1, func(r rywcheck.Result) bool {
			return r.Violations == 0 && r.Edits == 20 && r.EditsUnavailable > 0 && r.Reads > r.Edits
		}},
		// ...so a node that answers them from an old view is caught.
		{"stale during an outage", &fake{refuse: 503, retryAfter: "0", refuseAfter: 20, staleWhenRefusing: true}, 1, func(r rywcheck.Result) bool {
			return r.Violations > 0 && r.Edits == 20
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.f.channels = map[string]bool{}
			var nodes []string
			for range 2 {
				s := httptest.NewServer(tc.f)
				t.Cleanup(s.Close)
				nodes = append(nodes, s.URL)
			}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			tc.f.stop = cancel
			res := rywcheck.Run(ctx, rywcheck.Config{Nodes: nodes, Clients: cmp.Or(tc.clients, 2), Duration: time.Minute, Account: "a", Group: "g"})
			if !tc.check(res) {
				t.Fatalf("got %s (first violation: %q)", res, res.First)
			}
		})
	}
}
