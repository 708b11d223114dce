package httpapi

import (
	"github.com/valyala/fasthttp"

	"github.com/groupcast/groupcast/channelgroups"
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
	var tt channelgroups.Timetoken
	if op == channelgroups.OpAdd {
		tt, err = a.cfg.Groups.Add(c, acct, g, chs)
	} else {
		tt, err = a.cfg.Groups.Remove(c, acct, g, chs)
	}
	if err != nil {
		a.writeDomainError(ctx, registry, err)
		return
	}
	writeJSON(ctx, editBody{Status: 200, Message: "OK", Service: registry, Timetoken: tt.String()})
}

func (a *API) serveDelete(ctx *fasthttp.RequestCtx, parts []string) {
	c, cancel := a.work()
	defer cancel()
	acct, g, err := parseAccountGroup(parts, true)
	if err != nil {
		a.writeDomainError(ctx, registry, err)
		return
	}
	tt, err := a.cfg.Groups.Delete(c, acct, g)
	if err != nil {
		a.writeDomainError(ctx, registry, err)
		return
	}
	writeJSON(ctx, editBody{Status: 200, Message: "OK", Service: registry, Timetoken: tt.String()})
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
	snap, err := a.cfg.Groups.Read(c, acct, g)
	if err != nil {
		a.writeDomainError(ctx, registry, err)
		return
	}
	writeJSON(ctx, listChannelsBody{
		Status:  200,
		Payload: channelsPayload{Channels: snap.Channels(), Group: g, Version: snap.Version.String()},
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
