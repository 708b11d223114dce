package httpapi

import (
	"encoding/json"
	"fmt"
	"strings"
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

// ReplayTTL is how long an edit's answer is kept for retries with the same
// Idempotency-Key.
const ReplayTTL = 10 * time.Minute

// serveEdit serves add (?add=), remove (?remove=) and delete (.../remove).
func (a *API) serveEdit(ctx *fasthttp.RequestCtx, parts []string) {
	c, cancel := a.work()
	defer cancel()
	acct, g, err := parseAccountGroup(parts, true)
	if err != nil {
		a.writeDomainError(ctx, registry, err)
		return
	}
	args := ctx.QueryArgs()
	op := channelgroups.OpClear
	var chs []channelgroups.Channel
	if len(parts) == 6 { // not the delete path
		list := args.Peek("add")
		op = channelgroups.OpAdd
		if !args.Has("add") {
			op, list = channelgroups.OpRemove, args.Peek("remove")
		}
		if chs, err = channelgroups.ParseChannelList(string(list), channelgroups.MaxChannelsPerEdit); err != nil {
			a.writeDomainError(ctx, registry, err)
			return
		}
	}
	pre, err := parseIfMatch(ctx.Request.Header.Peek("If-Match"))
	if err != nil {
		a.writeDomainError(ctx, registry, err)
		return
	}
	prev, err := a.requestToken(ctx, acct)
	if err != nil {
		a.writeDomainError(ctx, registry, err)
		return
	}
	key := string(ctx.Request.Header.Peek("Idempotency-Key"))
	fingerprint := fmt.Sprintf("%s %s %q %v", op, g, chs, pre)
	if key != "" {
		if err := checkIdempotencyKey(key); err != nil {
			a.writeDomainError(ctx, registry, err)
			return
		}
		fp, answer, found, err := a.cfg.Replays.Recall(c, acct, key)
		if err != nil {
			a.writeDomainError(ctx, registry, err)
			return
		}
		if found {
			if fp != fingerprint {
				writeError(ctx, fasthttp.StatusUnprocessableEntity, registry, "Idempotency-Key was used for a different request")
				return
			}
			a.replay(ctx, answer)
			return
		}
	}
	if prev != nil {
		// The edit follows what the token covers, in every region: in
		// the log (after the copies of other regions' edits it names) and
		// in timetoken order. Else 503: it would race them.
		if c, err = a.cfg.Views.CatchUp(c, prev); err != nil {
			a.writeDomainError(ctx, registry, err)
			return
		}
	}
	var r channelgroups.Result
	switch op {
	case channelgroups.OpAdd:
		r, err = a.cfg.Groups.Add(c, acct, g, chs, pre)
	case channelgroups.OpRemove:
		r, err = a.cfg.Groups.Remove(c, acct, g, chs, pre)
	default:
		r, err = a.cfg.Groups.Delete(c, acct, g, pre)
	}
	if err != nil {
		a.writeDomainError(ctx, registry, err)
		return
	}
	tok := r.Token
	if prev != nil {
		tok = tok.Merge(*prev)
	}
	s := a.cfg.Tokens.Encode(acct, tok)
	answer, _ := json.Marshal(editBody{Status: 200, Message: "OK", Service: registry, Timetoken: r.At.String(), Token: s})
	if key != "" {
		if err := a.cfg.Replays.Remember(c, acct, key, fingerprint, answer, ReplayTTL); err != nil {
			// The edit is done; only a retry could repeat it.
			a.cfg.Logger.Warn("remembering an idempotent answer failed", "err", err)
		}
	}
	a.replay(ctx, answer)
}

// replay writes an edit's answer, with its token also as a header.
func (a *API) replay(ctx *fasthttp.RequestCtx, answer []byte) {
	var b editBody
	if err := json.Unmarshal(answer, &b); err == nil && b.Token != "" {
		ctx.Response.Header.Set(TokenHeader, b.Token)
	}
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetBody(answer)
}

// parseIfMatch reads an If-Match header: a group version, optionally
// quoted as an ETag; "0" means "the group was never edited".
func parseIfMatch(h []byte) (channelgroups.IfMatch, error) {
	if len(h) == 0 {
		return channelgroups.IfMatch{}, nil
	}
	v := strings.Trim(strings.TrimPrefix(string(h), "W/"), `"`)
	tt, err := channelgroups.ParseTimetoken(v)
	if err != nil {
		return channelgroups.IfMatch{}, fmt.Errorf("If-Match: %w", err)
	}
	return channelgroups.IfMatch{Version: tt, Set: true}, nil
}

func checkIdempotencyKey(k string) error {
	if len(k) > 255 {
		return fmt.Errorf("Idempotency-Key longer than 255 bytes: %w", subscriber.ErrBadRequest)
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x21 || k[i] > 0x7e {
			return fmt.Errorf("Idempotency-Key must be printable ASCII: %w", subscriber.ErrBadRequest)
		}
	}
	return nil
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
	ctx.Response.Header.Set("ETag", `"`+v.Version.String()+`"`)
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
