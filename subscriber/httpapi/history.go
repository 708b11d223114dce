package httpapi

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/valyala/fasthttp"

	"github.com/groupcast/groupcast/channelgroups"
)

type historyV3Message struct {
	Message     json.RawMessage `json:"message"`
	Timetoken   string          `json:"timetoken"`
	UUID        string          `json:"uuid,omitempty"`
	MessageType *int            `json:"message_type"`
	Meta        json.RawMessage `json:"meta,omitempty"`
	CMT         string          `json:"custom_message_type,omitempty"`
}

func historyBounds(args *fasthttp.Args) (start, end channelgroups.Timetoken, err error) {
	if v := args.Peek("start"); len(v) > 0 {
		if start, err = channelgroups.ParseTimetoken(string(v)); err != nil {
			return 0, 0, err
		}
	}
	if v := args.Peek("end"); len(v) > 0 {
		if end, err = channelgroups.ParseTimetoken(string(v)); err != nil {
			return 0, 0, err
		}
	}
	return start, end, nil
}

func intArg(args *fasthttp.Args, name string, def, lo, hi int) (int, error) {
	v := args.Peek(name)
	if len(v) == 0 {
		return def, nil
	}
	n, err := strconv.Atoi(string(v))
	if err != nil || n < lo {
		return 0, fmt.Errorf("%s=%q: want an integer >= %d: %w", name, v, lo, errBadRequest)
	}
	return min(n, hi), nil
}

// parts: v3 history sub-key {sub} channel {ch1,ch2}
func (a *API) serveHistoryV3(ctx *fasthttp.RequestCtx, parts []string) {
	acct, err := channelgroups.ParseAccount(parts[3])
	var chs []channelgroups.Channel
	if err == nil {
		chs, err = parseNames(splitList(parts[5]), channelgroups.ParseChannel, 500, "channels")
	}
	if err == nil && len(chs) == 0 {
		err = fmt.Errorf("history names no channel: %w", errBadRequest)
	}
	args := ctx.QueryArgs()
	limit := 100
	if len(chs) > 1 {
		limit = 25
	}
	var max int
	if err == nil {
		max, err = intArg(args, "max", limit, 1, limit)
	}
	var start, end channelgroups.Timetoken
	if err == nil {
		start, end, err = historyBounds(args)
	}
	if err != nil {
		a.writeDomainError(ctx, "history", err)
		return
	}
	withMeta := string(args.Peek("include_meta")) == "true"
	withUUID := string(args.Peek("include_uuid")) != "false"
	out := map[channelgroups.Channel][]historyV3Message{}
	for _, c := range chs {
		msgs, err := a.cfg.Pubsub.History(ctx, acct, c, start, end, max)
		if err != nil {
			a.writeDomainError(ctx, "history", err)
			return
		}
		list := make([]historyV3Message, 0, len(msgs))
		for _, m := range msgs {
			h := historyV3Message{Message: m.Payload, Timetoken: m.Timetoken().String(), CMT: m.CustomType}
			if withUUID {
				h.UUID = m.Publisher
			}
			if withMeta {
				h.Meta = m.Meta
			}
			list = append(list, h)
		}
		if len(list) > 0 {
			out[c] = list
		}
	}
	writeJSON(ctx, map[string]any{"status": 200, "error": false, "error_message": "", "channels": out})
}

// parts: v2 history sub-key {sub} channel {ch}
func (a *API) serveHistoryV2(ctx *fasthttp.RequestCtx, parts []string) {
	acct, err := channelgroups.ParseAccount(parts[3])
	var ch channelgroups.Channel
	if err == nil {
		ch, err = channelgroups.ParseChannel(parts[5])
	}
	args := ctx.QueryArgs()
	var count int
	if err == nil {
		count, err = intArg(args, "count", 100, 1, 100)
	}
	var start, end channelgroups.Timetoken
	if err == nil {
		start, end, err = historyBounds(args)
	}
	if err != nil {
		a.writeDomainError(ctx, "history", err)
		return
	}
	msgs, err := a.cfg.Pubsub.History(ctx, acct, ch, start, end, count)
	if err != nil {
		a.writeDomainError(ctx, "history", err)
		return
	}
	// Unlike v3, v2 gives its timetokens as JSON numbers, as PubNub does
	// (the Python SDK formats start and end with %d).
	withToken := string(args.Peek("include_token")) == "true"
	list := make([]any, 0, len(msgs))
	var first, last int64
	for i, m := range msgs {
		if i == 0 {
			first = int64(m.Timetoken())
		}
		last = int64(m.Timetoken())
		if withToken {
			list = append(list, map[string]any{"message": m.Payload, "timetoken": int64(m.Timetoken())})
		} else {
			list = append(list, m.Payload)
		}
	}
	writeJSON(ctx, []any{list, first, last})
}
