package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/valyala/fasthttp"

	"github.com/groupcast/groupcast/channelgroups"
	"github.com/groupcast/groupcast/subscriber"
)

// Presence, in PubNub's wire shapes (checked against the JavaScript and
// Python SDKs' parsers): heartbeat, leave, here-now (one channel, several,
// channel groups, global), where-now, and get and set state. A channel
// group stands for its channels: a heartbeat, leave or state through it
// acts on each of them, and here-now answers for each of them. Presence is
// per region (see subscriber's presence.go).

const presenceService = "Presence"

// MaxHereNowLimit is the most uuids here-now lists per channel (PubNub's
// limit and default); the occupancy counts them all.
const MaxHereNowLimit = 1000

// presenceArgs parses parts v2 presence sub-key {sub} channel {chs|,} ...
func presenceArgs(ctx *fasthttp.RequestCtx, parts []string) (channelgroups.Account, []channelgroups.Channel, string, error) {
	acct, err := channelgroups.ParseAccount(parts[3])
	if err != nil {
		return "", nil, "", err
	}
	names := splitList(parts[5])
	// A wildcard subscription (a.*) has no presence: SDKs send its name
	// in heartbeats and leaves with the others; it is checked and skipped.
	kept := names[:0]
	for _, n := range names {
		if !channelgroups.IsWildcard(n) {
			kept = append(kept, n)
			continue
		}
		if _, err := channelgroups.ParseWildcard(strings.TrimSuffix(n, "-pnpres")); err != nil {
			return "", nil, "", err
		}
	}
	var chs []channelgroups.Channel
	if len(kept) > 0 || len(names) == 0 {
		if chs, err = parseNames(kept, channelgroups.ParseChannel, MaxSubscribeChannels, "channels"); err != nil {
			return "", nil, "", err
		}
	}
	uuid, err := uuidArg(ctx.QueryArgs())
	return acct, chs, uuid, err
}

// presenceGroups parses a presence call's channel-group argument.
func presenceGroups(ctx *fasthttp.RequestCtx) ([]channelgroups.Group, error) {
	return parseNames(splitList(string(ctx.QueryArgs().Peek("channel-group"))), channelgroups.ParseGroup, MaxSubscribeGroups, "channel groups")
}

// groupChannels returns the channels of each group (none for a group that
// does not exist), read as the request's token and consistency say.
func (a *API) groupChannels(ctx *fasthttp.RequestCtx, acct channelgroups.Account, groups []channelgroups.Group) (map[channelgroups.Group][]channelgroups.Channel, error) {
	if len(groups) == 0 {
		return nil, nil
	}
	tok, err := a.requestToken(ctx, acct)
	if err != nil {
		return nil, err
	}
	mode, err := subscriber.ParseConsistency(string(ctx.QueryArgs().Peek("consistency")), tok != nil)
	if err != nil {
		return nil, err
	}
	c, cancel := a.work()
	defer cancel()
	out := make(map[channelgroups.Group][]channelgroups.Channel, len(groups))
	for _, g := range groups {
		v, err := a.cfg.Views.View(c, channelgroups.GroupKey{Account: acct, Group: g}, tok, mode)
		if err != nil {
			return nil, err
		}
		out[g] = v.Channels
	}
	return out, nil
}

// presenceChannels returns the channels a presence call names, directly or
// through its groups, each once, in order; with them, the groups' channels.
func (a *API) presenceChannels(ctx *fasthttp.RequestCtx, acct channelgroups.Account, chs []channelgroups.Channel) ([]channelgroups.Channel, map[channelgroups.Group][]channelgroups.Channel, error) {
	groups, err := presenceGroups(ctx)
	if err != nil {
		return nil, nil, err
	}
	byGroup, err := a.groupChannels(ctx, acct, groups)
	if err != nil {
		return nil, nil, err
	}
	all := slices.Clone(chs)
	for _, g := range groups {
		all = append(all, byGroup[g]...)
	}
	seen := make(map[channelgroups.Channel]bool, len(all))
	return slices.DeleteFunc(all, func(c channelgroups.Channel) bool {
		dup := seen[c]
		seen[c] = true
		return dup
	}), byGroup, nil
}

// ParseStateArg parses the state a subscribe or heartbeat carries: a JSON
// object whose members, named by channel or channel group, are each the
// user's state there (a JSON object of at most subscriber.MaxStateBytes).
func ParseStateArg(b []byte) (map[string]json.RawMessage, error) {
	var m map[string]json.RawMessage
	if !utf8.Valid(b) || json.Unmarshal(b, &m) != nil || m == nil {
		return nil, fmt.Errorf("state=%.40q: want a JSON object of states by channel: %w", b, errBadRequest)
	}
	for k, v := range m {
		s, err := subscriber.NormalizeState(v)
		if err != nil {
			return nil, fmt.Errorf("state of %q: %w", k, err)
		}
		m[k] = orEmptyState(s)
	}
	return m, nil
}

func orEmptyState(s json.RawMessage) json.RawMessage {
	if s == nil {
		return json.RawMessage("{}")
	}
	return s
}

// statesFor maps a subscribe's or heartbeat's state (by channel or group
// name) onto channels: a group's state is each of its channels' unless the
// channel has its own. Names neither among chs nor byGroup are ignored.
func statesFor(raw map[string]json.RawMessage, chs []channelgroups.Channel, byGroup map[channelgroups.Group][]channelgroups.Channel) subscriber.PresenceState {
	if len(raw) == 0 {
		return nil
	}
	st := subscriber.PresenceState{}
	for g, members := range byGroup {
		if s, ok := raw[string(g)]; ok {
			for _, c := range members {
				st[c] = s
			}
		}
	}
	for _, c := range chs {
		if s, ok := raw[string(c)]; ok {
			st[c] = s
		}
	}
	return st
}

// subscribeState sets the state a subscribe carries (state=) before it is
// served: the user joins with it, or its state changes.
func (a *API) subscribeState(ctx *fasthttp.RequestCtx, req subscriber.PollRequest, v []byte) error {
	raw, err := ParseStateArg(v)
	if err != nil {
		return err
	}
	byGroup, err := a.groupChannels(ctx, req.Account, req.Groups)
	if err != nil {
		return err
	}
	st := statesFor(raw, req.Channels, byGroup)
	chs := make([]channelgroups.Channel, 0, len(st))
	for c := range st {
		chs = append(chs, c)
	}
	slices.Sort(chs)
	return a.cfg.Pubsub.SetState(req.Account, chs, req.UUID, req.Heartbeat, st)
}

// parts: v2 presence sub-key {sub} channel {chs|,} heartbeat
// ?heartbeat=&channel-group=&state=
func (a *API) serveHeartbeat(ctx *fasthttp.RequestCtx, parts []string) {
	acct, chs, uuid, err := presenceArgs(ctx, parts)
	var hb int
	if err == nil {
		hb, err = intArg(ctx.QueryArgs(), "heartbeat", 0, 0, 3600)
	}
	var raw map[string]json.RawMessage
	if v := ctx.QueryArgs().Peek("state"); err == nil && len(v) > 0 {
		raw, err = ParseStateArg(v)
	}
	var byGroup map[channelgroups.Group][]channelgroups.Channel
	if err == nil {
		chs, byGroup, err = a.presenceChannels(ctx, acct, chs)
	}
	if err != nil {
		a.writeDomainError(ctx, presenceService, err)
		return
	}
	if err := a.cfg.Pubsub.SetState(acct, chs, uuid, time.Duration(hb)*time.Second, statesFor(raw, chs, byGroup)); err != nil {
		a.writeDomainError(ctx, presenceService, err)
		return
	}
	ctx.SetBodyString(`{"status":200,"message":"OK","service":"Presence"}`)
}

// parts: v2 presence sub-key {sub} channel {chs|,} leave ?channel-group=
func (a *API) serveLeave(ctx *fasthttp.RequestCtx, parts []string) {
	acct, chs, uuid, err := presenceArgs(ctx, parts)
	if err == nil {
		chs, _, err = a.presenceChannels(ctx, acct, chs)
	}
	if err != nil {
		a.writeDomainError(ctx, presenceService, err)
		return
	}
	c, cancel := a.work()
	defer cancel()
	a.cfg.Pubsub.Leave(c, acct, chs, uuid)
	ctx.SetBodyString(`{"status":200,"message":"OK","action":"leave","service":"Presence"}`)
}

// hereNowChannel is one channel of a here-now answer.
type hereNowChannel struct {
	UUIDs     []any `json:"uuids,omitempty"`
	Occupancy int   `json:"occupancy"`
}

type hereNowOccupant struct {
	UUID  string          `json:"uuid"`
	State json.RawMessage `json:"state,omitempty"`
}

// serveHereNow answers who is on channels: parts v2 presence sub-key {sub}
// channel {chs|,} (?channel-group=), or v2 presence sub-key {sub} for the
// whole account. One channel without groups gets PubNub's single-channel
// shape ({"uuids":[...],"occupancy":n}); anything else the multi-channel
// one, which lists only channels with users. disable_uuids=1 leaves the
// uuids out, state=1 lists each as {"uuid","state"}; limit and offset page
// each channel's uuids.
func (a *API) serveHereNow(ctx *fasthttp.RequestCtx, parts []string) {
	acct, err := channelgroups.ParseAccount(parts[3])
	var chs []channelgroups.Channel
	global := len(parts) == 4
	if err == nil && !global {
		chs, err = parseNames(splitList(parts[5]), channelgroups.ParseChannel, MaxSubscribeChannels, "channels")
	}
	args := ctx.QueryArgs()
	var limit, offset int
	if err == nil {
		limit, err = intArg(args, "limit", MaxHereNowLimit, 0, MaxHereNowLimit)
	}
	if err == nil {
		offset, err = intArg(args, "offset", 0, 0, 1<<30)
	}
	if err == nil {
		_, err = uuidArg(args)
	}
	single := !global && len(chs) == 1 && len(args.Peek("channel-group")) == 0
	if err == nil && !global {
		chs, _, err = a.presenceChannels(ctx, acct, chs)
		if err == nil && len(chs) == 0 && len(args.Peek("channel-group")) == 0 {
			err = fmt.Errorf("here-now names no channel and no channel group: %w", errBadRequest)
		}
	}
	if err != nil {
		a.writeDomainError(ctx, presenceService, err)
		return
	}
	var present map[channelgroups.Channel][]subscriber.Occupant
	if global || len(chs) > 0 {
		if present, err = a.cfg.Pubsub.HereNow(ctx, acct, chs); err != nil {
			a.writeDomainError(ctx, presenceService, err)
			return
		}
	}
	withUUIDs := string(args.Peek("disable_uuids")) != "1"
	withState := string(args.Peek("state")) == "1"
	entry := func(occ []subscriber.Occupant) hereNowChannel {
		e := hereNowChannel{Occupancy: len(occ)}
		if !withUUIDs {
			return e
		}
		e.UUIDs = []any{}
		for _, o := range occ[min(offset, len(occ)):min(offset+limit, len(occ))] {
			if withState {
				e.UUIDs = append(e.UUIDs, hereNowOccupant{UUID: o.UUID, State: o.State})
			} else {
				e.UUIDs = append(e.UUIDs, o.UUID)
			}
		}
		return e
	}
	if single {
		e := entry(present[chs[0]])
		body := map[string]any{"status": 200, "message": "OK", "service": presenceService, "occupancy": e.Occupancy}
		if withUUIDs {
			body["uuids"] = e.UUIDs
		}
		writeJSON(ctx, body)
		return
	}
	channels := make(map[channelgroups.Channel]hereNowChannel, len(present))
	total := 0
	for c, occ := range present {
		channels[c] = entry(occ)
		total += len(occ)
	}
	writeJSON(ctx, map[string]any{"status": 200, "message": "OK", "service": presenceService,
		"payload": map[string]any{"channels": channels, "total_channels": len(channels), "total_occupancy": total}})
}

// pathUUID parses a uuid named in a path.
func pathUUID(s string) (string, error) {
	if s == "" || len(s) > MaxUUIDBytes || !utf8.ValidString(s) {
		return "", fmt.Errorf("uuid in the path: want 1 to %d bytes of UTF-8: %w", MaxUUIDBytes, errBadRequest)
	}
	return s, nil
}

// parts: v2 presence sub-key {sub} uuid {uuid}
func (a *API) serveWhereNow(ctx *fasthttp.RequestCtx, parts []string) {
	acct, err := channelgroups.ParseAccount(parts[3])
	var uuid string
	if err == nil {
		uuid, err = pathUUID(parts[5])
	}
	if err == nil {
		_, err = uuidArg(ctx.QueryArgs())
	}
	var chs []channelgroups.Channel
	if err == nil {
		chs, err = a.cfg.Pubsub.WhereNow(ctx, acct, uuid)
	}
	if err != nil {
		a.writeDomainError(ctx, presenceService, err)
		return
	}
	if chs == nil {
		chs = []channelgroups.Channel{}
	}
	writeJSON(ctx, map[string]any{"status": 200, "message": "OK", "service": presenceService, "payload": map[string]any{"channels": chs}})
}

// stateArgs parses parts v2 presence sub-key {sub} channel {chs|,} uuid
// {uuid} [data] ?channel-group=: the channels, directly or through groups.
func (a *API) stateArgs(ctx *fasthttp.RequestCtx, parts []string) (acct channelgroups.Account, chs []channelgroups.Channel, uuid string, single bool, err error) {
	if acct, chs, _, err = presenceArgs(ctx, parts); err != nil {
		return
	}
	if uuid, err = pathUUID(parts[7]); err != nil {
		return
	}
	single = len(chs) == 1 && len(ctx.QueryArgs().Peek("channel-group")) == 0
	if chs, _, err = a.presenceChannels(ctx, acct, chs); err != nil {
		return
	}
	if len(chs) == 0 && len(ctx.QueryArgs().Peek("channel-group")) == 0 {
		err = fmt.Errorf("state names no channel and no channel group: %w", errBadRequest)
	}
	return
}

// parts: v2 presence sub-key {sub} channel {chs|,} uuid {uuid}
// ?channel-group=. One channel without groups answers its state as the
// payload; anything else {"channels":{ch: state}}, with {} for a channel
// where the user has none.
func (a *API) serveGetState(ctx *fasthttp.RequestCtx, parts []string) {
	acct, chs, uuid, single, err := a.stateArgs(ctx, parts)
	var st subscriber.PresenceState
	if err == nil {
		st, err = a.cfg.Pubsub.State(ctx, acct, chs, uuid)
	}
	if err != nil {
		a.writeDomainError(ctx, presenceService, err)
		return
	}
	if single {
		writeJSON(ctx, map[string]any{"status": 200, "message": "OK", "service": presenceService, "uuid": uuid, "channel": chs[0],
			"payload": orEmptyState(st[chs[0]])})
		return
	}
	channels := make(map[channelgroups.Channel]json.RawMessage, len(chs))
	for _, c := range chs {
		channels[c] = orEmptyState(st[c])
	}
	writeJSON(ctx, map[string]any{"status": 200, "message": "OK", "service": presenceService, "uuid": uuid,
		"payload": map[string]any{"channels": channels}})
}

// parts: v2 presence sub-key {sub} channel {chs|,} uuid {uuid} data
// ?state=&channel-group=. The state (a JSON object; {} clears it) is set
// on every channel named, directly or through a group; a user not present
// there joins with it, as with a heartbeat.
func (a *API) serveSetState(ctx *fasthttp.RequestCtx, parts []string) {
	acct, chs, uuid, _, err := a.stateArgs(ctx, parts)
	var state json.RawMessage
	if err == nil {
		v := ctx.QueryArgs().Peek("state")
		if len(v) == 0 {
			err = fmt.Errorf("set state needs state=<JSON object>: %w", errBadRequest)
		} else if state, err = subscriber.NormalizeState(bytes.Clone(v)); err == nil {
			state = orEmptyState(state)
		}
	}
	if err == nil {
		st := make(subscriber.PresenceState, len(chs))
		for _, c := range chs {
			st[c] = state
		}
		err = a.cfg.Pubsub.SetState(acct, chs, uuid, 0, st)
	}
	if err != nil {
		a.writeDomainError(ctx, presenceService, err)
		return
	}
	writeJSON(ctx, map[string]any{"status": 200, "message": "OK", "service": presenceService, "payload": state})
}
