package httpapi

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"

	"github.com/valyala/fasthttp"

	"github.com/groupcast/groupcast/archive"
	"github.com/groupcast/groupcast/channelgroups"
	"github.com/groupcast/groupcast/subscriber"
)

// History, message counts and delete messages (PubNub's Message
// Persistence), served by the node from its store and rings
// (subscriber.Node.HistoryPage).

// historyV3Message is one message of a v3 history answer.
type historyV3Message struct {
	Message   json.RawMessage `json:"message"`
	Timetoken string          `json:"timetoken"`
	UUID      string          `json:"uuid,omitempty"`
	Meta      json.RawMessage `json:"meta,omitempty"`
	CMT       string          `json:"custom_message_type,omitempty"`
	// Actions: with include_message_actions (and history-with-actions),
	// the message's actions, when it has any.
	Actions historyActions `json:"actions,omitempty"`
	// messageType: whether "message_type" is in the answer (null, as
	// PubNub gives it for a published message; the SDKs read null as 0).
	messageType bool
}

func (m historyV3Message) MarshalJSON() ([]byte, error) {
	type plain historyV3Message
	if !m.messageType {
		return json.Marshal(plain(m))
	}
	return json.Marshal(struct {
		plain
		MessageType *int `json:"message_type"`
	}{plain: plain(m)})
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

// historyMore is PubNub's v3 "more": where the next page of a channel
// starts. The SDKs read start (and some the url); with several channels it
// names the first one, in the request's order, that has more.
type historyMore struct {
	URL   string `json:"url"`
	Start string `json:"start,omitempty"`
	End   string `json:"end,omitempty"`
	Max   int    `json:"max"`
}

// flagArg reads a boolean query parameter: "true" or "false" (also 1 and
// 0); absent means def.
func flagArg(args *fasthttp.Args, name string, def bool) (bool, error) {
	switch v := string(args.Peek(name)); v {
	case "":
		return def, nil
	case "true", "1":
		return true, nil
	case "false", "0":
		return false, nil
	default:
		return false, fmt.Errorf("%s=%q: want true or false: %w", name, v, errBadRequest)
	}
}

// historyArgs are a history request's query parameters.
type historyArgs struct {
	start, end                          channelgroups.Timetoken
	max                                 int
	reverse                             bool
	meta, uuid, messageType, customType bool
	actions                             bool // include_message_actions
	// path is the history endpoint's path segment ("history" or
	// "history-with-actions"), for "more".
	path string
}

func parseHistoryArgs(args *fasthttp.Args, maxName string, limit int) (h historyArgs, err error) {
	if h.max, err = intArg(args, maxName, limit, 1, limit); err != nil {
		return h, err
	}
	if h.start, h.end, err = historyBounds(args); err != nil {
		return h, err
	}
	for _, f := range []struct {
		name string
		def  bool
		v    *bool
	}{
		{"reverse", false, &h.reverse}, {"include_meta", false, &h.meta}, {"include_uuid", true, &h.uuid},
		{"include_message_type", true, &h.messageType}, {"include_custom_message_type", true, &h.customType},
		{"include_message_actions", false, &h.actions},
	} {
		if *f.v, err = flagArg(args, f.name, f.def); err != nil {
			return h, err
		}
	}
	return h, nil
}

// parts: v3 history sub-key {sub} channel {ch1,ch2}, or v3
// history-with-actions sub-key {sub} channel {ch} (include_message_actions
// on, one channel, at most 25 messages as PubNub's).
func (a *API) serveHistoryV3(ctx *fasthttp.RequestCtx, parts []string) {
	acct, err := channelgroups.ParseAccount(parts[3])
	var chs []channelgroups.Channel
	if err == nil {
		chs, err = parseNames(splitList(parts[5]), channelgroups.ParseChannel, 500, "channels")
	}
	if err == nil && len(chs) == 0 {
		err = fmt.Errorf("history names no channel: %w", errBadRequest)
	}
	withActions := parts[1] == "history-with-actions"
	if err == nil && !withActions {
		withActions, err = flagArg(ctx.QueryArgs(), "include_message_actions", false)
	}
	if err == nil && withActions && len(chs) > 1 {
		err = fmt.Errorf("history with message actions takes one channel: %w", errBadRequest)
	}
	limit := 100
	if len(chs) > 1 || withActions {
		limit = 25
	}
	var h historyArgs
	if err == nil {
		h, err = parseHistoryArgs(ctx.QueryArgs(), "max", limit)
	}
	h.actions, h.path = withActions, parts[1]
	if err != nil {
		a.writeDomainError(ctx, "history", err)
		return
	}
	work, cancel := a.work()
	defer cancel()
	out := map[channelgroups.Channel][]historyV3Message{}
	var more *historyMore
	for _, c := range chs {
		msgs, hasMore, err := a.cfg.Pubsub.HistoryPage(work, archive.Query{Account: acct, Channel: c, Start: h.start, End: h.end, Max: h.max, Reverse: h.reverse})
		if err != nil {
			a.writeDomainError(ctx, "history", err)
			return
		}
		var acts map[channelgroups.Timetoken]historyActions
		if h.actions && len(msgs) > 0 {
			all, err := a.cfg.Pubsub.MessageActions(work, acct, c, msgs[0].Timetoken(), msgs[len(msgs)-1].Timetoken())
			if err != nil {
				a.writeDomainError(ctx, "history", err)
				return
			}
			acts = actionsByMessage(all)
		}
		list := make([]historyV3Message, 0, len(msgs))
		for _, m := range msgs {
			hm := historyV3Message{Message: m.Payload, Timetoken: m.Timetoken().String(), messageType: h.messageType}
			if h.uuid {
				hm.UUID = m.Publisher
			}
			if h.meta {
				hm.Meta = m.Meta
			}
			if h.customType {
				hm.CMT = m.CustomType
			}
			hm.Actions = acts[m.Timetoken()]
			list = append(list, hm)
		}
		if len(list) > 0 {
			out[c] = list
		}
		if hasMore && more == nil && len(msgs) > 0 {
			more = nextPage(parts[3], c, h, msgs)
		}
	}
	body := map[string]any{"status": 200, "error": false, "error_message": "", "channels": out}
	if more != nil {
		body["more"] = more
	}
	writeJSON(ctx, body)
}

// nextPage is the "more" of a channel whose page ended with msgs.
func nextPage(sub string, c channelgroups.Channel, h historyArgs, msgs []*subscriber.Message) *historyMore {
	q := fasthttp.AcquireArgs()
	defer fasthttp.ReleaseArgs(q)
	m := &historyMore{Max: h.max}
	if h.reverse {
		m.End = (msgs[len(msgs)-1].Timetoken() + 1).String()
		q.Set("end", m.End)
		if h.start != 0 {
			q.Set("start", h.start.String())
		}
		q.Set("reverse", "true")
	} else {
		m.Start = msgs[0].Timetoken().String()
		q.Set("start", m.Start)
		if h.end != 0 {
			q.Set("end", h.end.String())
		}
	}
	q.Set("max", strconv.Itoa(h.max))
	path := cmp.Or(h.path, "history")
	if path == "history" && h.actions {
		q.Set("include_message_actions", "true")
	}
	m.URL = "/v3/" + path + "/sub-key/" + url.PathEscape(sub) + "/channel/" + url.PathEscape(string(c)) + "?" + q.String()
	return m
}

// parts: v2 history sub-key {sub} channel {ch}
func (a *API) serveHistoryV2(ctx *fasthttp.RequestCtx, parts []string) {
	acct, err := channelgroups.ParseAccount(parts[3])
	var ch channelgroups.Channel
	if err == nil {
		ch, err = channelgroups.ParseChannel(parts[5])
	}
	args := ctx.QueryArgs()
	var h historyArgs
	if err == nil {
		h, err = parseHistoryArgs(args, "count", 100)
	}
	var withToken, stringTokens bool
	if err == nil {
		withToken, err = flagArg(args, "include_token", false)
	}
	if err == nil {
		// string_message_token: the messages' timetokens as strings (the
		// JavaScript SDK's stringifiedTimeToken: a 17-digit number does
		// not fit a JavaScript number).
		stringTokens, err = flagArg(args, "string_message_token", false)
	}
	if err != nil {
		a.writeDomainError(ctx, "history", err)
		return
	}
	q := archive.Query{Account: acct, Channel: ch, Start: h.start, End: h.end, Max: h.max, Reverse: h.reverse}
	if h.reverse && h.start != 0 && h.end == 0 {
		// Paging forwards as PubNub's v2 does: reverse=true with the
		// previous page's last timetoken as start asks for what follows it.
		q.Start, q.End = 0, h.start+1
	}
	work, cancel := a.work()
	defer cancel()
	msgs, _, err := a.cfg.Pubsub.HistoryPage(work, q)
	if err != nil {
		a.writeDomainError(ctx, "history", err)
		return
	}
	// Unlike v3, v2 gives its timetokens as JSON numbers, as PubNub does
	// (the Python SDK formats start and end with %d).
	list := make([]any, 0, len(msgs))
	var first, last int64
	for i, m := range msgs {
		if i == 0 {
			first = int64(m.Timetoken())
		}
		last = int64(m.Timetoken())
		switch {
		case withToken || h.meta:
			item := map[string]any{"message": m.Payload}
			switch {
			case withToken && stringTokens:
				item["timetoken"] = m.Timetoken().String()
			case withToken:
				item["timetoken"] = int64(m.Timetoken())
			}
			if h.meta && m.Meta != nil {
				item["meta"] = m.Meta
			}
			list = append(list, item)
		default:
			list = append(list, m.Payload)
		}
	}
	writeJSON(ctx, []any{list, first, last})
}

// parts: v3 history sub-key {sub} message-counts {ch1,ch2}
// ?timetoken= (every channel) or ?channelsTimetoken= (one per channel):
// how many messages each channel's history holds from that timetoken on.
func (a *API) serveMessageCounts(ctx *fasthttp.RequestCtx, parts []string) {
	acct, err := channelgroups.ParseAccount(parts[3])
	var chs []channelgroups.Channel
	if err == nil {
		chs, err = parseNames(splitList(parts[5]), channelgroups.ParseChannel, 100, "channels")
	}
	if err == nil && len(chs) == 0 {
		err = fmt.Errorf("message counts names no channel: %w", errBadRequest)
	}
	var from []channelgroups.Timetoken
	if err == nil {
		from, err = countsFrom(ctx.QueryArgs(), len(chs))
	}
	if err != nil {
		a.writeDomainError(ctx, "history", err)
		return
	}
	work, cancel := a.work()
	defer cancel()
	counts := make(map[channelgroups.Channel]int64, len(chs))
	for i, c := range chs {
		n, err := a.cfg.Pubsub.MessageCount(work, acct, c, max(from[i]-1, 0))
		if err != nil {
			a.writeDomainError(ctx, "history", err)
			return
		}
		counts[c] = n
	}
	writeJSON(ctx, map[string]any{"status": 200, "error": false, "error_message": "", "channels": counts, "more": map[string]any{}})
}

// countsFrom returns, for each of n channels, the timetoken from which a
// message-counts request counts.
func countsFrom(args *fasthttp.Args, n int) ([]channelgroups.Timetoken, error) {
	one, per := args.Peek("timetoken"), args.Peek("channelsTimetoken")
	var list []string
	switch {
	case len(one) > 0 && len(per) > 0:
		return nil, fmt.Errorf("give timetoken or channelsTimetoken, not both: %w", errBadRequest)
	case len(one) > 0:
		list = []string{string(one)}
	case len(per) > 0:
		list = splitList(string(per))
	default:
		return nil, fmt.Errorf("message counts need timetoken or channelsTimetoken: %w", errBadRequest)
	}
	if len(list) != 1 && len(list) != n {
		return nil, fmt.Errorf("channelsTimetoken has %d timetokens for %d channels: %w", len(list), n, errBadRequest)
	}
	out := make([]channelgroups.Timetoken, n)
	for i := range out {
		s := list[min(i, len(list)-1)]
		tt, err := channelgroups.ParseTimetoken(s)
		if err != nil {
			return nil, err
		}
		out[i] = tt
	}
	return out, nil
}

// parts: v3 history sub-key {sub} channel {ch}, DELETE ?start=&end=:
// deletes the channel's messages in the range from history.
func (a *API) serveDeleteMessages(ctx *fasthttp.RequestCtx, parts []string) {
	acct, err := channelgroups.ParseAccount(parts[3])
	var ch channelgroups.Channel
	if err == nil {
		ch, err = channelgroups.ParseChannel(parts[5])
	}
	var start, end channelgroups.Timetoken
	if err == nil {
		start, end, err = historyBounds(ctx.QueryArgs())
	}
	if err != nil {
		a.writeDomainError(ctx, "history", err)
		return
	}
	c, cancel := a.work()
	defer cancel()
	if err := a.cfg.Pubsub.DeleteHistory(c, acct, ch, start, end); err != nil {
		a.writeDomainError(ctx, "history", err)
		return
	}
	writeJSON(ctx, map[string]any{"status": 200, "error": false, "error_message": ""})
}
