package httpapi

import (
	"fmt"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/groupcast/groupcast/channelgroups"
)

// presenceArgs parses parts v2 presence sub-key {sub} channel {chs|,} ...
func presenceArgs(ctx *fasthttp.RequestCtx, parts []string) (channelgroups.Account, []channelgroups.Channel, string, error) {
	acct, err := channelgroups.ParseAccount(parts[3])
	if err != nil {
		return "", nil, "", err
	}
	chs, err := parseNames(splitList(parts[5]), channelgroups.ParseChannel, MaxSubscribeChannels, "channels")
	if err != nil {
		return "", nil, "", err
	}
	uuid, err := uuidArg(ctx.QueryArgs())
	return acct, chs, uuid, err
}

func (a *API) serveHeartbeat(ctx *fasthttp.RequestCtx, parts []string) {
	acct, chs, uuid, err := presenceArgs(ctx, parts)
	var hb int
	if err == nil {
		hb, err = intArg(ctx.QueryArgs(), "heartbeat", 0, 0, 3600)
	}
	if err != nil {
		a.writeDomainError(ctx, "Presence", err)
		return
	}
	if err := a.cfg.Pubsub.Heartbeat(acct, chs, uuid, time.Duration(hb)*time.Second); err != nil {
		a.writeDomainError(ctx, "Presence", err)
		return
	}
	ctx.SetBodyString(`{"status":200,"message":"OK","service":"Presence"}`)
}

func (a *API) serveLeave(ctx *fasthttp.RequestCtx, parts []string) {
	acct, chs, uuid, err := presenceArgs(ctx, parts)
	if err != nil {
		a.writeDomainError(ctx, "Presence", err)
		return
	}
	c, cancel := a.work()
	defer cancel()
	a.cfg.Pubsub.Leave(c, acct, chs, uuid)
	ctx.SetBodyString(`{"status":200,"message":"OK","action":"leave","service":"Presence"}`)
}

// serveHereNow answers the occupancy of one channel.
func (a *API) serveHereNow(ctx *fasthttp.RequestCtx, parts []string) {
	acct, chs, _, err := presenceArgs(ctx, parts)
	if err == nil && len(chs) != 1 {
		err = fmt.Errorf("here-now takes one channel: %w", errBadRequest)
	}
	if err != nil {
		a.writeDomainError(ctx, "Presence", err)
		return
	}
	users, err := a.cfg.Pubsub.Occupancy(ctx, acct, chs[0])
	if err != nil {
		a.writeDomainError(ctx, "Presence", err)
		return
	}
	if users == nil {
		users = []string{}
	}
	writeJSON(ctx, map[string]any{"status": 200, "message": "OK", "service": "Presence", "uuids": users, "occupancy": len(users)})
}
