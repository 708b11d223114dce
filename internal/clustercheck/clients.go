package clustercheck

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

func (r *run) rand(i int) *rand.Rand { return rand.New(rand.NewPCG(r.cfg.Seed, uint64(i))) }

func (r *run) groupPath(group string) string {
	return fmt.Sprintf("/v1/channel-registration/sub-key/%s/channel-group/%s", url.PathEscape(r.cfg.Account), url.PathEscape(group))
}

// edit repeats an add or remove on random nodes until it is acknowledged,
// returning the new token and the node that answered; false once ctx ends.
// Repeating the same operation settles an attempt whose outcome was lost.
func (r *run) edit(ctx context.Context, rnd *rand.Rand, tok, group, op string, chs ...string) (string, string, bool) {
	q := url.Values{op: {strings.Join(chs, ",")}}
	if tok != "" {
		q.Set("token", tok)
	}
	path := r.groupPath(group) + "?" + q.Encode()
	for {
		node := r.c.node(ctx, rnd, "")
		var a struct {
			Token string `json:"token"`
		}
		switch o := r.c.get(ctx, r.c.hc, node, path, &a); o {
		case ok:
			return a.Token, node, true
		case canceled:
			return "", "", false
		default:
			if !pause(ctx, backoff(o)) {
				return "", "", false
			}
		}
	}
}

// list reads a group's channels on a random node other than except, once
// or (retry) until it answers.
func (r *run) list(ctx context.Context, rnd *rand.Rand, except, group, tok, consistency string, retry bool) (map[string]bool, bool) {
	q := url.Values{}
	if tok != "" {
		q.Set("token", tok)
	}
	if consistency != "" {
		q.Set("consistency", consistency)
	}
	path := r.groupPath(group) + "?" + q.Encode()
	for {
		var a struct {
			Payload struct {
				Channels []string `json:"channels"`
			} `json:"payload"`
		}
		o := r.c.get(ctx, r.c.hc, r.c.node(ctx, rnd, except), path, &a)
		if o == ok {
			got := map[string]bool{}
			for _, c := range a.Payload.Channels {
				got[c] = true
			}
			return got, true
		}
		if !retry || o == canceled || !pause(ctx, backoff(o)) {
			return nil, false
		}
	}
}

// editor adds and removes its own channels of one editor group with its
// latest token, and after each acknowledged edit lists the group with that
// token through another node (G2).
func (r *run) editor(work, ctx context.Context, id int) {
	rnd := r.rand(100 + id)
	group := fmt.Sprintf("%s%d", editorGroup, id%2)
	present := map[string]bool{}
	tok := ""
	tick := time.NewTicker(r.cfg.EditEvery)
	defer tick.Stop()
	for {
		select {
		case <-work.Done():
			return
		case <-tick.C:
		}
		ch := fmt.Sprintf("e%d-%d", id, rnd.IntN(5))
		op := "add"
		if present[ch] && rnd.IntN(2) == 0 {
			op = "remove"
		}
		// An edit once begun is repeated until acknowledged, past the end
		// of the work, so that its channel's state is known.
		ectx, cancel := context.WithTimeout(ctx, r.cfg.Drain)
		ntok, node, acked := r.edit(ectx, rnd, tok, group, op, ch)
		cancel()
		r.mu.Lock()
		r.record(group, ch, op == "add", !acked)
		if acked {
			r.edits++
		}
		r.mu.Unlock()
		if !acked {
			return
		}
		present[ch], tok = op == "add", ntok
		got, read := r.list(work, rnd, node, group, tok, "", false)
		if !read {
			continue
		}
		r.mu.Lock()
		r.reads++
		for _, c := range slices.Sorted(func(yield func(string) bool) {
			for c := range present {
				if !yield(c) {
					return
				}
			}
		}) {
			if got[c] != present[c] {
				r.ryw++
				r.violation("ryw: editor %d, after %s %s in %s on %s (token %s), another node lists %s as present=%v, want %v", id, op, ch, group, node, tok, c, got[c], present[c])
				break
			}
		}
		r.mu.Unlock()
	}
}

// g3Worker runs G3 trials on one watched group: add c (token) → publish to
// c with the add's token → remove c → publish with the remove's token. With
// reuse, c is the worker's one channel; otherwise a new channel per trial.
func (r *run) g3Worker(work, ctx context.Context, id int, reuse bool) {
	rnd := r.rand(200 + id)
	group := fmt.Sprintf("%s%d", watchGroup, id%2)
	tok := ""
	tick := time.NewTicker(r.cfg.TrialEvery)
	defer tick.Stop()
	for k := 0; ; k++ {
		select {
		case <-work.Done():
			return
		case <-tick.C:
		}
		ch := fmt.Sprintf("t%d-%d", id, k)
		if reuse {
			ch = fmt.Sprintf("r%d", id)
		}
		if !r.trial(ctx, rnd, &tok, group, ch, reuse, fmt.Sprintf("g%d-%d", id, k)) {
			return
		}
	}
}

// trial runs one G3 trial to its end (bounded by Drain); false if its
// channel's state is left unknown.
func (r *run) trial(ctx context.Context, rnd *rand.Rand, tok *string, group, ch string, reuse bool, id string) bool {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Drain)
	defer cancel()
	for _, step := range []struct {
		op   string
		kind pubKind
	}{{"add", g3In}, {"remove", g3Out}} {
		ntok, _, acked := r.edit(ctx, rnd, *tok, group, step.op, ch)
		r.mu.Lock()
		r.record(group, ch, step.op == "add", !acked)
		r.mu.Unlock()
		if !acked {
			return false
		}
		*tok = ntok
		edited := time.Now()
		r.mu.Lock()
		r.editedAt[id+"-"+step.op] = edited
		r.mu.Unlock()
		if !r.publish(ctx, rnd, ch, id+"-"+step.op, step.kind, group, *tok) && step.kind == g3Out && reuse {
			// A publish whose answer was lost might still land after the
			// next trial's add on the same channel, where it is owed.
			r.mu.Lock()
			r.pubs[id+"-"+step.op].kind = g3Unknown
			r.mu.Unlock()
		}
	}
	r.mu.Lock()
	r.trials++
	r.mu.Unlock()
	return true
}

// publish publishes the JSON string id to ch once, with tok if not empty,
// and records it; true if acknowledged.
func (r *run) publish(ctx context.Context, rnd *rand.Rand, ch, id string, kind pubKind, group, tok string) bool {
	rec := &pubRec{id: id, channel: ch, group: group, kind: kind}
	r.mu.Lock()
	r.pubs[id] = rec
	r.mu.Unlock()
	path := fmt.Sprintf("/publish/pk/%s/0/%s/0/%s?uuid=clustercheck", url.PathEscape(r.cfg.Account), url.PathEscape(ch), url.PathEscape(strconv.Quote(id)))
	if tok != "" {
		path += "&token=" + url.QueryEscape(tok)
	}
	var a []json.RawMessage
	node := r.c.node(ctx, rnd, "")
	if r.c.get(ctx, r.c.hc, node, path, &a) != ok {
		return false
	}
	var tt string
	if len(a) != 3 || json.Unmarshal(a[2], &tt) != nil {
		r.c.clientError(path, fmt.Sprintf("publish answer %s", a))
		return false
	}
	n, err := strconv.ParseInt(tt, 10, 64)
	if err != nil {
		r.c.clientError(path, fmt.Sprintf("publish timetoken %q", tt))
		return false
	}
	r.mu.Lock()
	rec.acked, rec.tt, rec.node, rec.at = true, n, node, time.Now()
	r.mu.Unlock()
	return true
}

// publisher publishes numbered messages to its 4 channels in turn.
func (r *run) publisher(work context.Context, id int) {
	rnd := r.rand(300 + id)
	tick := time.NewTicker(r.cfg.PublishEvery)
	defer tick.Stop()
	for seq := 0; ; seq++ {
		select {
		case <-work.Done():
			return
		case <-tick.C:
		}
		r.publish(work, rnd, r.pubChans[id*4+seq%4], fmt.Sprintf("p%d-%d", id, seq), plain, "", "")
	}
}

// markers publishes, until acknowledged, one last message on every channel
// a subscriber follows, so that each has something to catch up to.
func (r *run) markers(ctx context.Context) {
	rnd := r.rand(400)
	type target struct{ ch, group string }
	var ts []target
	for _, ch := range r.pubChans {
		ts = append(ts, target{ch, ""})
	}
	for g := range 2 {
		ts = append(ts, target{fmt.Sprintf("base%d", g), fmt.Sprintf("%s%d", watchGroup, g)})
	}
	for _, t := range ts {
		for try := 0; !r.publish(ctx, rnd, t.ch, fmt.Sprintf("m-%s-%d", t.ch, try), marker, t.group, ""); try++ {
			if !pause(ctx, 50*time.Millisecond) {
				return
			}
		}
	}
}

// delivery identifies a message: payload id and publish timetoken.
type delivery struct {
	id string
	tt int64
}

// follower is a subscriber following its cursor over random nodes.
type follower struct {
	uuid     string
	channels []string
	groups   []string
	rnd      *rand.Rand
	start    int64 // first cursor; 0 if the handshake never succeeded

	mu      sync.Mutex
	cursor  string
	region  string
	got     map[delivery]int
	via     map[string]string // payload id → group it last came through ("" = channel)
	answers []time.Time
	spans   []span // what each answer covered, to say who skipped a message
}

// span is one subscribe answer: the cursor it was asked from, the cursor
// it handed out, the node and when.
type span struct {
	from, to int64
	node     string
	sent, at time.Time
}

// skipper says which answer moved f's cursor past tt without tt; f.mu held.
func (f *follower) skipper(tt int64) string {
	for _, s := range f.spans {
		if s.from < tt && tt <= s.to {
			return fmt.Sprintf("the poll sent to %s at %s answered at %s moved the cursor %d → %d past it", s.node, s.sent.Format("15:04:05.000000"), s.at.Format("15:04:05.000000"), s.from, s.to)
		}
	}
	return "no answer covered it"
}

// newFollower makes subscriber i: of two publisher channels, of the static
// group, or of both watched groups, in turn.
func (r *run) newFollower(i int) *follower {
	f := &follower{uuid: fmt.Sprintf("sub%d", i), rnd: r.rand(500 + i), got: map[delivery]int{}, via: map[string]string{}}
	switch i % 3 {
	case 0:
		k := len(r.pubChans)
		f.channels = []string{r.pubChans[i%k], r.pubChans[(i+3)%k]}
	case 1:
		f.groups = []string{staticGroup}
	case 2:
		f.groups = []string{watchGroup + "0", watchGroup + "1"}
	}
	return f
}

func (f *follower) path(r *run) string {
	return subscribePath(r.cfg.Account, f.channels, f.groups, f.uuid)
}

// subscribePath is a subscribe's path and query without its cursor.
func subscribePath(account string, channels, groups []string, uuid string) string {
	chs := ","
	if len(channels) > 0 {
		chs = strings.Join(channels, ",")
	}
	p := fmt.Sprintf("/v2/subscribe/%s/%s/0?uuid=%s", url.PathEscape(account), url.PathEscape(chs), uuid)
	if len(groups) > 0 {
		p += "&channel-group=" + url.QueryEscape(strings.Join(groups, ","))
	}
	return p
}

type subAnswer struct {
	T struct {
		T string `json:"t"`
		R int    `json:"r"`
	} `json:"t"`
	M []struct {
		B string          `json:"b"`
		C string          `json:"c"`
		D json.RawMessage `json:"d"`
		P struct {
			T string `json:"t"`
			R int    `json:"r"`
		} `json:"p"`
	} `json:"m"`
}

// handshake gets the first cursor, retrying until ctx ends.
func (f *follower) handshake(ctx context.Context, r *run) {
	f.start, f.cursor, f.region = handshake(ctx, r.c, f.rnd, f.path(r))
}

// handshake subscribes without a cursor on a random node until it gets the
// first cursor (as a number, as text, and its region) or ctx ends.
func handshake(ctx context.Context, c *caller, rnd *rand.Rand, path string) (int64, string, string) {
	for {
		var a subAnswer
		o := c.get(ctx, c.poll, c.node(ctx, rnd, ""), path, &a)
		if o == ok {
			t, err := strconv.ParseInt(a.T.T, 10, 64)
			if err == nil && t > 0 {
				return t, a.T.T, strconv.Itoa(a.T.R)
			}
			c.clientError(path, fmt.Sprintf("handshake cursor %q", a.T.T))
		}
		if o == canceled || !pause(ctx, backoff(o)) {
			return 0, "", ""
		}
	}
}

// follow long-polls from the cursor on a random current node each time,
// carrying the cursor over, until ctx ends.
func (f *follower) follow(ctx context.Context, r *run) {
	for ctx.Err() == nil {
		f.mu.Lock()
		path := f.path(r) + "&tt=" + f.cursor + "&tr=" + f.region
		f.mu.Unlock()
		var a subAnswer
		node := r.c.node(ctx, f.rnd, "")
		sent := time.Now()
		o := r.c.get(ctx, r.c.poll, node, path, &a)
		if o != ok {
			if o == canceled || !pause(ctx, backoff(o)) {
				return
			}
			continue
		}
		now := time.Now()
		to, err := strconv.ParseInt(a.T.T, 10, 64)
		if err != nil {
			r.c.clientError(path, fmt.Sprintf("subscribe cursor %q", a.T.T))
			continue
		}
		f.mu.Lock()
		from, _ := strconv.ParseInt(f.cursor, 10, 64)
		f.answers = append(f.answers, now)
		f.spans = append(f.spans, span{from, to, node, sent, now})
		for _, m := range a.M {
			var id string
			tt, err := strconv.ParseInt(m.P.T, 10, 64)
			if err != nil || json.Unmarshal(m.D, &id) != nil {
				f.mu.Unlock()
				r.c.clientError(path, fmt.Sprintf("envelope p.t=%q d=%s", m.P.T, m.D))
				f.mu.Lock()
				continue
			}
			f.got[delivery{id, tt}]++
			f.via[id] = m.B
		}
		f.cursor, f.region = a.T.T, strconv.Itoa(a.T.R)
		f.mu.Unlock()
	}
}

// follows reports whether p (a publisher message or a marker) is owed to
// f by its channels and groups; r.mu held.
func (f *follower) follows(r *run, p *pubRec) bool {
	switch {
	case slices.Contains(f.channels, p.channel):
		return true
	case slices.Contains(f.groups, staticGroup) && slices.Contains(r.staticChs, p.channel):
		return true
	default:
		return p.kind == marker && p.group != "" && slices.Contains(f.groups, p.group)
	}
}

// await waits until f has every acknowledged marker it is owed; false if
// ctx ends first.
func (f *follower) await(ctx context.Context, r *run) bool {
	if f.start == 0 {
		return true
	}
	for {
		var want []delivery
		r.mu.Lock()
		for _, p := range r.pubs {
			if p.kind == marker && p.acked && p.tt > f.start && f.follows(r, p) {
				want = append(want, delivery{p.id, p.tt})
			}
		}
		r.mu.Unlock()
		f.mu.Lock()
		missing := slices.ContainsFunc(want, func(d delivery) bool { return f.got[d] == 0 })
		f.mu.Unlock()
		if !missing {
			return true
		}
		if !pause(ctx, 20*time.Millisecond) {
			return false
		}
	}
}

// gap is the longest time between f's successive answers within [from, to];
// f.mu held.
func (f *follower) gap(from, to time.Time) time.Duration {
	var longest time.Duration
	last := from
	for _, t := range f.answers {
		if t.Before(from) {
			continue
		}
		if t.After(to) {
			break
		}
		longest = max(longest, t.Sub(last))
		last = t
	}
	return max(longest, to.Sub(last))
}
