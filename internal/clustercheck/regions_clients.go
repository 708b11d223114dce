package clustercheck

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"
)

func (r *geoRun) groupPath(group string) string {
	return fmt.Sprintf("/v1/channel-registration/sub-key/%s/channel-group/%s", url.PathEscape(r.cfg.Account), url.PathEscape(group))
}

// other is the region that is not region.
func other(region int) int { return 3 - region }

// edit repeats an add or remove on random nodes of region until it is
// acknowledged, returning the new token, the edit's timetoken and the node
// that answered; false once ctx ends. A local edit's failed attempts count
// as local failures.
func (r *geoRun) edit(ctx context.Context, rnd *rand.Rand, region int, tok, group, op, ch string, local bool) (string, int64, string, bool) {
	q := url.Values{op: {ch}}
	if tok != "" {
		q.Set("token", tok)
	}
	path := r.groupPath(group) + "?" + q.Encode()
	c := r.c[region-1]
	for {
		node := c.node(ctx, rnd, "")
		var a struct {
			Token     string `json:"token"`
			Timetoken string `json:"timetoken"`
		}
		o := c.get(ctx, c.hc, node, path, &a)
		switch o {
		case ok:
			tt, _ := strconv.ParseInt(a.Timetoken, 10, 64)
			return a.Token, tt, node, true
		case canceled:
			return "", 0, "", false
		}
		if local {
			r.mu.Lock()
			r.local++
			r.mu.Unlock()
		}
		if !pause(ctx, backoff(o)) {
			return "", 0, "", false
		}
	}
}

// list reads a group on a random node of region, once or (retry) until it
// answers.
func (r *geoRun) list(ctx context.Context, rnd *rand.Rand, region int, except, group, tok, consistency string, retry bool) (map[string]bool, bool) {
	for {
		node := r.c[region-1].node(ctx, rnd, except)
		got, o := r.listAt(ctx, region, node, group, tok, consistency)
		if o == ok {
			return got, true
		}
		if !retry || o == canceled || !pause(ctx, backoff(o)) {
			return nil, false
		}
	}
}

// listOn reads a group once on one node.
func (r *geoRun) listOn(ctx context.Context, region int, node, group, tok, consistency string) (map[string]bool, bool) {
	got, o := r.listAt(ctx, region, node, group, tok, consistency)
	return got, o == ok
}

func (r *geoRun) listAt(ctx context.Context, region int, node, group, tok, consistency string) (map[string]bool, outcome) {
	q := url.Values{}
	if tok != "" {
		q.Set("token", tok)
	}
	if consistency != "" {
		q.Set("consistency", consistency)
	}
	var a struct {
		Payload struct {
			Channels []string `json:"channels"`
		} `json:"payload"`
	}
	c := r.c[region-1]
	o := c.get(ctx, c.hc, node, r.groupPath(group)+"?"+q.Encode(), &a)
	if o != ok {
		return nil, o
	}
	got := map[string]bool{}
	for _, ch := range a.Payload.Channels {
		got[ch] = true
	}
	return got, ok
}

// editor i of region edits group ed<i> (which region 2's editor i edits
// too): half its edits add or remove one of the channels both regions
// edit (x0..x3), half one of its own, after which it lists the group in
// the other region with its latest token (its own channels must read as it
// left them).
func (r *geoRun) editor(work, ctx context.Context, region, i int) {
	rnd := r.rand(100 + 10*region + i)
	group := fmt.Sprintf("%s%d", editorGroup, i)
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
		if rnd.IntN(2) == 0 {
			ch := fmt.Sprintf("x%d", rnd.IntN(conflictChannels))
			op := []string{"add", "remove"}[rnd.IntN(2)]
			ectx, cancel := context.WithTimeout(ctx, r.cfg.Drain)
			ntok, tt, _, acked := r.edit(ectx, rnd, region, tok, group, op, ch, true)
			cancel()
			r.mu.Lock()
			r.touched[group] = true
			if acked {
				r.edits++
				r.conflict++
				if tt != 0 {
					r.editTT[tt] |= region
				}
			}
			r.mu.Unlock()
			if acked {
				tok = ntok
			}
			continue
		}
		ch := fmt.Sprintf("e%d-%d-%d", region, i, rnd.IntN(4))
		op := "add"
		if present[ch] && rnd.IntN(2) == 0 {
			op = "remove"
		}
		// Once begun, an edit is repeated until acknowledged, past the end
		// of the work, so that its channel's state is known.
		ectx, cancel := context.WithTimeout(ctx, r.cfg.Drain)
		ntok, _, node, acked := r.edit(ectx, rnd, region, tok, group, op, ch, true)
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
		readTok, consistency := tok, ""
		if r.cfg.IgnoreTokens {
			readTok, consistency = "", "minimize_latency"
		}
		got, read := r.list(work, rnd, other(region), "", group, readTok, consistency, false)
		if !read {
			continue
		}
		r.mu.Lock()
		r.reads++
		for _, c := range keys(present) {
			if got[c] != present[c] {
				r.ryw++
				r.violation("ryw: editor %d of region %d, after %s %s in %s on %s (token %s), region %d lists %s as present=%v, want %v", i, region, op, ch, group, node, tok, other(region), c, got[c], present[c])
				break
			}
		}
		r.mu.Unlock()
	}
}

// g3Worker runs G3 trials on watched group watch<a-1> across regions: add
// in region a, publish in the other with the add's token (not in trials
// 1, 4, 7, ...), remove there with the add's token, publish in a with the
// remove's token. A new channel each trial; trial k starts (k+1) ×
// TrialEvery into the run.
func (r *geoRun) g3Worker(work, ctx context.Context, a int) {
	rnd := r.rand(200 + a)
	group := fmt.Sprintf("%s%d", watchGroup, a-1)
	tok := ""
	tick := time.NewTicker(r.cfg.TrialEvery)
	defer tick.Stop()
	for k := 0; ; k++ {
		select {
		case <-work.Done():
			return
		case <-tick.C:
		}
		if !r.trial(ctx, rnd, a, &tok, group, fmt.Sprintf("t%d-%d", a, k), fmt.Sprintf("g%d-%d", a, k), k%3 == 1) {
			return
		}
	}
}

// trial runs one cross-region G3 trial (bounded by Drain); false if its
// channel's state is left unknown. A quick trial publishes nothing between
// the add and the remove: the remove, made in the other region with the
// add's token, may reach that region's log before the add's copy does.
func (r *geoRun) trial(ctx context.Context, rnd *rand.Rand, a int, tok *string, group, ch, id string, quick bool) bool {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Drain)
	defer cancel()
	b := other(a)
	steps := []struct {
		editIn, pubIn int
		op            string
		kind          pubKind
	}{{a, b, "add", g3In}, {b, a, "remove", g3Out}}
	for _, s := range steps {
		editTok := *tok
		if r.cfg.IgnoreTokens && s.op == "remove" {
			editTok = ""
		}
		ntok, tt, node, acked := r.edit(ctx, rnd, s.editIn, editTok, group, s.op, ch, false)
		r.mu.Lock()
		r.record(group, ch, s.op == "add", !acked)
		r.mu.Unlock()
		if !acked {
			return false
		}
		*tok = ntok
		pubTok := *tok
		if r.cfg.IgnoreTokens {
			pubTok = ""
		}
		if quick && s.kind == g3In {
			continue
		}
		r.publish(ctx, rnd, s.pubIn, ch, id+"-"+s.op, s.kind, group, pubTok, false)
		r.mu.Lock()
		r.pubs[id+"-"+s.op].after = fmt.Sprintf("the %s acknowledged in region %d by %s at tt %d", s.op, s.editIn, node, tt)
		r.mu.Unlock()
	}
	r.mu.Lock()
	r.trials++
	r.mu.Unlock()
	return true
}

// publish publishes the JSON string id to ch once in region, with tok if
// not empty, and records it; true if acknowledged. A failed local publish
// counts as a local failure.
func (r *geoRun) publish(ctx context.Context, rnd *rand.Rand, region int, ch, id string, kind pubKind, group, tok string, local bool) bool {
	p := &geoPub{id: id, channel: ch, group: group, kind: kind, region: region, cross: tok != "" && !local}
	r.mu.Lock()
	r.pubs[id] = p
	r.mu.Unlock()
	path := fmt.Sprintf("/publish/pk/%s/0/%s/0/%s?uuid=regionscheck", url.PathEscape(r.cfg.Account), url.PathEscape(ch), url.PathEscape(strconv.Quote(id)))
	if tok != "" {
		path += "&token=" + url.QueryEscape(tok)
	}
	c := r.c[region-1]
	var a []json.RawMessage
	node := c.node(ctx, rnd, "")
	o := c.get(ctx, c.hc, node, path, &a)
	if o != ok {
		if local && o != canceled {
			r.mu.Lock()
			r.local++
			r.mu.Unlock()
		}
		return false
	}
	var tt string
	if len(a) != 3 || json.Unmarshal(a[2], &tt) != nil {
		c.clientError(path, fmt.Sprintf("publish answer %s", a))
		return false
	}
	n, err := strconv.ParseInt(tt, 10, 64)
	if err != nil {
		c.clientError(path, fmt.Sprintf("publish timetoken %q", tt))
		return false
	}
	r.mu.Lock()
	p.acked, p.tt, p.node = true, n, node
	r.mu.Unlock()
	return true
}

// publisher publishes numbered messages in region to the publisher
// channels in turn (the other region's publisher uses the same channels).
func (r *geoRun) publisher(work context.Context, region int) {
	rnd := r.rand(300 + region)
	tick := time.NewTicker(r.cfg.PublishEvery)
	defer tick.Stop()
	for seq := 0; ; seq++ {
		select {
		case <-work.Done():
			return
		case <-tick.C:
		}
		r.publish(work, rnd, region, fmt.Sprintf("p%d", seq%regionPubChans), fmt.Sprintf("p%d-%d", region, seq), plain, "", "", true)
	}
}

// markers publishes in both regions, until acknowledged, one last message
// on every publisher channel and every watched group's permanent channel,
// so that each subscriber has something to catch up to from each region.
func (r *geoRun) markers(ctx context.Context) {
	rnd := r.rand(400)
	type target struct{ ch, group string }
	var ts []target
	for p := range regionPubChans {
		ts = append(ts, target{fmt.Sprintf("p%d", p), ""})
	}
	for g := range 2 {
		ts = append(ts, target{fmt.Sprintf("base%d", g), fmt.Sprintf("%s%d", watchGroup, g)})
	}
	for region := 1; region <= 2; region++ {
		for _, t := range ts {
			for try := 0; !r.publish(ctx, rnd, region, t.ch, fmt.Sprintf("m%d-%s-%d", region, t.ch, try), marker, t.group, "", false); try++ {
				if !pause(ctx, 50*time.Millisecond) {
					return
				}
			}
		}
	}
}

// geoDelivery identifies a message: payload id, publish timetoken and
// origin region, as the subscribe envelope gives them (d, p.t, p.r).
type geoDelivery struct {
	id     string
	tt     int64
	region int
}

// geoFollower is a subscriber of one region following its cursor over that
// region's nodes.
type geoFollower struct {
	uuid     string
	region   int
	channels []string
	groups   []string
	rnd      *rand.Rand
	start    int64 // first cursor; 0 if the handshake never succeeded

	mu       sync.Mutex
	cursor   string
	cregion  string
	got      map[geoDelivery]int
	via      map[string]string // payload id → group it last came through ("" = channel)
	anyTT    map[string]geoDelivery
	answered int
}

// newFollower makes subscriber i of region: of p0 and p1, of p2 and p3,
// or of both watched groups.
func (r *geoRun) newFollower(region, i int) *geoFollower {
	f := &geoFollower{uuid: fmt.Sprintf("r%dsub%d", region, i), region: region, rnd: r.rand(500 + 10*region + i),
		got: map[geoDelivery]int{}, via: map[string]string{}, anyTT: map[string]geoDelivery{}}
	switch i % 3 {
	case 0:
		f.channels = []string{"p0", "p1"}
	case 1:
		f.channels = []string{"p2", "p3"}
	case 2:
		f.groups = []string{watchGroup + "0", watchGroup + "1"}
	}
	return f
}

func (f *geoFollower) path(r *geoRun) string {
	return subscribePath(r.cfg.Account, f.channels, f.groups, f.uuid)
}

// handshake gets the first cursor, retrying until ctx ends.
func (f *geoFollower) handshake(ctx context.Context, r *geoRun) {
	f.start, f.cursor, f.cregion = handshake(ctx, r.c[f.region-1], f.rnd, f.path(r))
}

// follow long-polls from the cursor on a random node of its region each
// time, carrying the cursor over, until ctx ends.
func (f *geoFollower) follow(ctx context.Context, r *geoRun) {
	c := r.c[f.region-1]
	for ctx.Err() == nil {
		f.mu.Lock()
		path := f.path(r) + "&tt=" + f.cursor + "&tr=" + f.cregion
		f.mu.Unlock()
		var a subAnswer
		o := c.get(ctx, c.poll, c.node(ctx, f.rnd, ""), path, &a)
		if o != ok {
			if o == canceled || !pause(ctx, backoff(o)) {
				return
			}
			continue
		}
		if _, err := strconv.ParseInt(a.T.T, 10, 64); err != nil {
			c.clientError(path, fmt.Sprintf("subscribe cursor %q", a.T.T))
			continue
		}
		f.mu.Lock()
		f.answered++
		for _, m := range a.M {
			var id string
			tt, err := strconv.ParseInt(m.P.T, 10, 64)
			if err != nil || json.Unmarshal(m.D, &id) != nil {
				f.mu.Unlock()
				c.clientError(path, fmt.Sprintf("envelope p=%+v d=%s", m.P, m.D))
				f.mu.Lock()
				continue
			}
			d := geoDelivery{id, tt, m.P.R}
			f.got[d]++
			f.via[id] = m.B
			f.anyTT[id] = d
		}
		f.cursor, f.cregion = a.T.T, strconv.Itoa(a.T.R)
		f.mu.Unlock()
	}
}

// follows reports whether p (a publisher message or a marker) is owed to f
// by its channels and groups.
func (f *geoFollower) follows(p *geoPub) bool {
	return slices.Contains(f.channels, p.channel) || (p.kind == marker && p.group != "" && slices.Contains(f.groups, p.group))
}

// otherwise says how f got the payload id if not as published; f.mu held.
func (f *geoFollower) otherwise(id string) string {
	if d, found := f.anyTT[id]; found {
		return fmt.Sprintf("; it got that payload with p.t %d, p.r %d", d.tt, d.region)
	}
	return ""
}

// await waits until f has every acknowledged marker it is owed, from both
// regions; false if ctx ends first.
func (f *geoFollower) await(ctx context.Context, r *geoRun) bool {
	if f.start == 0 {
		return true
	}
	for {
		var want []geoDelivery
		r.mu.Lock()
		for _, p := range r.pubs {
			if p.kind == marker && p.acked && f.follows(p) {
				want = append(want, geoDelivery{p.id, p.tt, p.region})
			}
		}
		r.mu.Unlock()
		f.mu.Lock()
		missing := slices.ContainsFunc(want, func(d geoDelivery) bool { return f.got[d] == 0 })
		f.mu.Unlock()
		if !missing {
			return true
		}
		if !pause(ctx, 20*time.Millisecond) {
			return false
		}
	}
}
