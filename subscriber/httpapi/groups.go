package httpapi

import (
	"fmt"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/groupcast/groupcast/channelgroups"
	"github.com/groupcast/groupcast/subscriber"
)

const registry = "channel-registry"

// parts: v1 channel-registration sub-key {sub} channel-group [{group} [remove]]
func parseAccountGroup(parts []string, withGroup bool) (channelgroups.Account, channelgroups.Group, error) {
	a, err := channelgroups.ParseAccount(parts[3])
	if err != nil || !withGroup {
		return a, "", err
	}
	g, err := channelgroups.ParseGroup(parts[5])
	return a, g, err
}

type editBody struct {
	Status    int    `json:"status"`
	Message   string `json:"message"`
	Service   string `json:"service"`
	Error     bool   `json:"error"`
	Timetoken string `json:"timetoken"`
	Token     string `json:"token"`
}

// TokenHeader carries the causal token on edit responses.
const TokenHeader = "Groupcast-Token"

// requestToken decodes the token= parameter, if any, for account a.
func (a *API) requestToken(ctx *fasthttp.RequestCtx, acct channelgroups.Account) (*channelgroups.Token, error) {
	raw := ctx.QueryArgs().Peek("token")
	if len(raw) == 0 {
		return nil, nil
	}
	tok, err := a.cfg.Tokens.Decode(acct, string(raw), time.Now())
	if err != nil {
		return nil, err
	}
	if tok.Shard != a.cfg.Groups.Shard(acct) {
		return nil, fmt.Errorf("token is for another shard: %w", channelgroups.ErrInvalidToken)
	}
	return &tok, nil
}

// answerEdit writes an edit's answer: PubNub's status fields, the timetoken
// and the causal token (merged with the client's previous one), also as a
// header.
func (a *API) answerEdit(ctx *fasthttp.RequestCtx, acct channelgroups.Account, prev *channelgroups.Token, r channelgroups.Result) {
	tok := r.Token
	if prev != nil {
		tok = tok.Merge(*prev)
	}
	s := a.cfg.Tokens.Encode(acct, tok)
	ctx.Response.Header.Set(TokenHeader, s)
	writeJSON(ctx, editBody{Status: 200, Message: "OK", Service: registry, Timetoken: r.At.String(), Token: s})
}

func (a *API) serveEdit(ctx *fasthttp.RequestCtx, parts []string) {
	c, cancel := a.work()
	defer cancel()
	acct, g, err := parseAccountGroup(parts, true)
	if err != nil {
		a.writeDomainError(ctx, registry, err)
		return
	}
	args := ctx.QueryArgs()
	op, list := channelgroups.OpAdd, args.Peek("add")
	if !args.Has("add") {
		op, list = channelgroups.OpRemove, args.Peek("remove")
	}
	chs, err := channelgroups.ParseChannelList(string(list), channelgroups.MaxChannelsPerEdit)
	if err != nil {
		a.writeDomainError(ctx, registry, err)
		return
	}
	prev, err := a.requestToken(ctx, acct)
	if err != nil {
		a.writeDomainError(ctx, registry, err)
		return
	}
	var r channelgroups.Result
	if op == channelgroups.OpAdd {
		r, err = a.cfg.Groups.Add(c, acct, g, chs)
	} else {
		r, err = a.cfg.Groups.Remove(c, acct, g, chs)
	}
	if err != nil {
		a.writeDomainError(ctx, registry, err)
		return
	}
	a.answerEdit(ctx, acct, prev, r)
}

func (a *API) serveDelete(ctx *fasthttp.RequestCtx, parts []string) {
	c, cancel := a.work()
	defer cancel()
	acct, g, err := parseAccountGroup(parts, true)
	if err != nil {
		a.writeDomainError(ctx, registry, err)
		return
	}
	prev, err := a.requestToken(ctx, acct)
	if err != nil {
		a.writeDomainError(ctx, registry, err)
		return
	}
	r, err := a.cfg.Groups.Delete(c, acct, g)
	if err != nil {
		a.writeDomainError(ctx, registry, err)
		return
	}
	a.answerEdit(ctx, acct, prev, r)
}

type listChannelsBody struct {
	Status  int             `json:"status"`
	Payload channelsPayload `json:"payload"`
	Service string          `json:"service"`
	Error   bool            `json:"error"`
	Message string          `json:"message"`
}

type channelsPayload struct {
	Channels []channelgroups.Channel `json:"channels"`
	Group    channelgroups.Group     `json:"group"`
	Version  string                  `json:"version"`
}

func (a *API) serveListChannels(ctx *fasthttp.RequestCtx, parts []string) {
	c, cancel := a.work()
	defer cancel()
	acct, g, err := parseAccountGroup(parts, true)
	if err != nil {
		a.writeDomainError(ctx, registry, err)
		return
	}
	tok, err := a.requestToken(ctx, acct)
	if err != nil {
		a.writeDomainError(ctx, registry, err)
		return
	}
	mode, err := subscriber.ParseConsistency(string(ctx.QueryArgs().Peek("consistency")), tok != nil)
	if err != nil {
		a.writeDomainError(ctx, registry, err)
		return
	}
	v, err := a.cfg.Views.View(c, channelgroups.GroupKey{Account: acct, Group: g}, tok, mode)
	if err != nil {
		a.writeDomainError(ctx, registry, err)
		return
	}
	chs := v.Channels
	if chs == nil {
		chs = []channelgroups.Channel{}
	}
	writeJSON(ctx, listChannelsBody{
		Status:  200,
		Payload: channelsPayload{Channels: chs, Group: g, Version: v.Version.String()},
		Service: registry,
		Message: "OK",
	})
}

type listGroupsBody struct {
	Status  int           `json:"status"`
	Payload groupsPayload `json:"payload"`
	Service string        `json:"service"`
	Error   bool          `json:"error"`
	Message string        `json:"message"`
}

type groupsPayload struct {
	Groups []channelgroups.Group `json:"groups"`
	SubKey channelgroups.Account `json:"sub_key"`
}

func (a *API) serveListGroups(ctx *fasthttp.RequestCtx, parts []string) {
	c, cancel := a.work()
	defer cancel()
	acct, _, err := parseAccountGroup(parts, false)
	if err != nil {
		a.writeDomainError(ctx, registry, err)
		return
	}
	gs, err := a.cfg.Groups.Groups(c, acct)
	if err != nil {
		a.writeDomainError(ctx, registry, err)
		return
	}
	if gs == nil {
		gs = []channelgroups.Group{}
	}
	writeJSON(ctx, listGroupsBody{Status: 200, Payload: groupsPayload{Groups: gs, SubKey: acct}, Service: registry, Message: "OK"})
}
