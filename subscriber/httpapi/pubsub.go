package httpapi

import (
	"bytes"
	"cmp"
	"compress/zlib"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/valyala/fasthttp"

	"github.com/groupcast/groupcast/channelgroups"
	"github.com/groupcast/groupcast/subscriber"
	"github.com/groupcast/groupcast/subscriber/filter"
)

// errBadRequest wraps request errors of this package (answered with 400).
var errBadRequest = errors.New("httpapi: bad request")

// maxTTLHours is the longest publish ttl: ten years.
const maxTTLHours = 10 * 365 * 24

// MaxMessageBytes is the largest message (JSON) a publish accepts.
const MaxMessageBytes = 32 << 10

// Subscribe limits.
const (
	MaxSubscribeGroups   = 10
	MaxSubscribeChannels = 100
)

// MaxUUIDBytes is the longest uuid (client identity) any endpoint accepts:
// PubNub's own limit. Presence keeps one record per channel per uuid, so an
// unbounded uuid would let one request pin megabytes.
const MaxUUIDBytes = subscriber.MaxUUIDBytes

// uuidArg returns the request's uuid, refusing one too long or not UTF-8.
func uuidArg(args *fasthttp.Args) (string, error) {
	v := args.Peek("uuid")
	if len(v) > MaxUUIDBytes {
		return "", fmt.Errorf("uuid is %d bytes, longer than %d: %w", len(v), MaxUUIDBytes, errBadRequest)
	}
	if !utf8.Valid(v) {
		return "", fmt.Errorf("uuid is not valid UTF-8: %w", errBadRequest)
	}
	return string(v), nil
}

// validJSON reports whether b is one JSON value in valid UTF-8 (json.Valid
// alone lets invalid UTF-8 through inside strings, which strict clients
// then fail to decode from history and subscribe).
func validJSON(b []byte) bool { return utf8.Valid(b) && json.Valid(b) }

// RegionSwitchRewind is how far back (in timetoken units, 100 ns) a
// subscribe cursor from another region (tr names it) is moved: more than
// copying between regions lags by, so a client that switches regions gets
// every message at least once.
const RegionSwitchRewind = channelgroups.Timetoken(30 * 10_000_000) // 30 s

// cursorArg parses a subscribe's tt. A cursor more than the clock skew
// ahead of this node's clock names a message that cannot exist yet: the
// poll would park and answer the same cursor forever, so it is refused.
func (a *API) cursorArg(v []byte) (channelgroups.Timetoken, error) {
	tt, err := channelgroups.ParseTimetokenBytes(v)
	if err != nil {
		return 0, err
	}
	// The skew check reads the wall clock; it does not tick the node's clock.
	if err := a.cfg.Groups.Clock().CheckSkew(tt); err != nil {
		return 0, fmt.Errorf("tt=%s: %w: %w", v, err, errBadRequest)
	}
	return tt, nil
}

// publishError writes PubNub's publish error shape, [0,"reason","tt"].
func (a *API) publishError(ctx *fasthttp.RequestCtx, status int, reason string) {
	b, _ := json.Marshal([]any{0, reason, a.cfg.Groups.Clock().Now().String()})
	ctx.SetStatusCode(status)
	ctx.SetBody(b)
}

// publishedMessages holds the Messages publishes are decoded into (one
// per publish, up to tens of thousands a second, otherwise each garbage
// as soon as it is in the log).
var publishedMessages = sync.Pool{New: func() any { return new(subscriber.Message) }}

// parts: publish|signal {pub} {sub} 0 {channel} 0 [{message}]
func (a *API) servePublish(ctx *fasthttp.RequestCtx, parts []string) {
	if _, err := channelgroups.ParseAccount(parts[1]); err != nil {
		a.publishError(ctx, fasthttp.StatusBadRequest, "Invalid publish key: "+err.Error())
		return
	}
	acct, err := channelgroups.ParseAccount(parts[2])
	if err != nil {
		a.publishError(ctx, fasthttp.StatusBadRequest, "Invalid subscribe key: "+err.Error())
		return
	}
	ch, err := channelgroups.ParseChannel(parts[4])
	if err != nil {
		a.publishError(ctx, fasthttp.StatusBadRequest, "Invalid channel: "+err.Error())
		return
	}
	if strings.HasSuffix(string(ch), subscriber.PresenceSuffix) {
		// Presence events are the server's: a client that may write to
		// room-1 (or ^room-.*) must not forge room-1-pnpres's joins.
		a.publishError(ctx, fasthttp.StatusBadRequest, "Invalid channel: "+subscriber.PresenceSuffix+" channels carry presence events, which only the server publishes")
		return
	}
	var payload []byte
	if ctx.IsPost() {
		if payload, err = postBody(ctx); err != nil {
			a.publishError(ctx, fasthttp.StatusBadRequest, err.Error())
			return
		}
	} else {
		payload = []byte(strings.Join(parts[6:], "/"))
	}
	if len(payload) > MaxMessageBytes {
		a.publishError(ctx, fasthttp.StatusBadRequest, "Message Too Large")
		return
	}
	if !validJSON(payload) {
		a.publishError(ctx, fasthttp.StatusBadRequest, "Invalid JSON")
		return
	}
	args := ctx.QueryArgs()
	uuid, err := uuidArg(args)
	if err != nil {
		a.publishError(ctx, fasthttp.StatusBadRequest, err.Error())
		return
	}
	// m and the request's bytes it points into (payload, meta) live until
	// this handler returns: Publish encodes the message into the log and
	// keeps neither (Pubsub.Publish).
	m := publishedMessages.Get().(*subscriber.Message)
	defer func() {
		*m = subscriber.Message{}
		publishedMessages.Put(m)
	}()
	*m = subscriber.Message{
		Account: acct, Channel: ch, Payload: json.RawMessage(payload),
		Publisher:  uuid,
		CustomType: string(args.Peek("custom_message_type")),
		Signal:     parts[0] == "signal",
		NoStore:    string(args.Peek("store")) == "0",
		Key:        string(ctx.Request.Header.Peek("Idempotency-Key")),
	}
	if v := args.Peek("ttl"); len(v) > 0 {
		// Hours history keeps the message; 0: until deleted (PubNub's).
		h, err := strconv.Atoi(string(v))
		if err != nil || h < 0 || h > maxTTLHours {
			a.publishError(ctx, fasthttp.StatusBadRequest, fmt.Sprintf("Invalid ttl: want whole hours from 0 to %d", maxTTLHours))
			return
		}
		m.TTL = time.Duration(h) * time.Hour
		if h == 0 {
			m.TTL = -1
		}
	}
	if len(m.CustomType) > 50 || !utf8.ValidString(m.CustomType) {
		a.publishError(ctx, fasthttp.StatusBadRequest, "custom_message_type longer than 50 bytes or not UTF-8")
		return
	}
	if meta := args.Peek("meta"); len(meta) > 0 {
		if !validJSON(meta) || len(meta) > MaxMessageBytes {
			a.publishError(ctx, fasthttp.StatusBadRequest, "Invalid meta: want JSON")
			return
		}
		m.Meta = json.RawMessage(meta)
	}
	if m.Key != "" {
		if err := checkIdempotencyKey(m.Key); err != nil {
			a.publishError(ctx, fasthttp.StatusBadRequest, err.Error())
			return
		}
	}
	if norep := string(args.Peek("norep")); norep == "true" || norep == "1" {
		// PubNub's fire (the SDKs send store=0 and norep=true, Python's
		// norep=1): the message is
		// for Functions event handlers only; it reaches no subscriber and
		// history does not keep it. groupcast runs no event handlers, so a
		// valid fire is acknowledged and goes nowhere.
		b, _ := json.Marshal([]any{1, "Sent", a.cfg.Groups.Clock().Now().String()})
		ctx.SetStatusCode(fasthttp.StatusOK)
		ctx.SetBody(b)
		return
	}
	tok, err := a.requestToken(ctx, acct)
	if err != nil {
		a.publishError(ctx, fasthttp.StatusBadRequest, err.Error())
		return
	}
	c, cancel := a.work()
	defer cancel()
	tt, err := a.cfg.Pubsub.Publish(c, m, tok)
	switch {
	case err == nil:
		var buf [40]byte
		b := strconv.AppendInt(append(buf[:0], `[1,"Sent","`...), int64(tt), 10)
		ctx.SetStatusCode(fasthttp.StatusOK)
		ctx.SetBody(append(b, `"]`...))
	case errors.Is(err, channelgroups.ErrInvalidToken):
		a.publishError(ctx, fasthttp.StatusBadRequest, err.Error())
	case errors.Is(err, channelgroups.ErrUnavailable):
		ctx.Response.Header.Set("Retry-After", "1")
		a.publishError(ctx, fasthttp.StatusServiceUnavailable, err.Error())
	default:
		a.cfg.Logger.Error("publish failed", "err", err)
		a.publishError(ctx, fasthttp.StatusInternalServerError, "internal error")
	}
}

// postBody returns a POST publish's message, inflated when it is
// zlib-compressed (SDKs since 9.4 send Content-Encoding: deflate; some
// browsers set the header on an uncompressed body, so the body decides).
func postBody(ctx *fasthttp.RequestCtx) ([]byte, error) {
	body := ctx.Request.Body()
	if len(body) >= 2 && body[0] == 0x78 && (uint16(body[0])<<8|uint16(body[1]))%31 == 0 {
		zr, err := zlib.NewReader(bytes.NewReader(body))
		if err != nil {
			return nil, fmt.Errorf("bad deflate body: %w", err)
		}
		defer zr.Close()
		out, err := io.ReadAll(io.LimitReader(zr, MaxMessageBytes+1))
		if err != nil {
			return nil, fmt.Errorf("bad deflate body: %w", err)
		}
		return out, nil
	}
	return body, nil
}

// splitList splits a decoded comma-separated list; "," alone (and "") is empty.
func splitList(s string) []string {
	if s == "" || s == "," {
		return nil
	}
	return strings.Split(s, ",")
}

func parseNames[T ~string](list []string, parse func(string) (T, error), max int, what string) ([]T, error) {
	if len(list) > max {
		return nil, fmt.Errorf("%d %s, at most %d: %w", len(list), what, max, errBadRequest)
	}
	out := make([]T, 0, len(list))
	for _, s := range list {
		v, err := parse(s)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

type cursorJSON struct {
	T string `json:"t"`
	R int    `json:"r"`
}

// envelope is one message in a subscribe answer. Its first field is never
// omitted: answerSubscribe splices the group in after the opening brace.
type envelope struct {
	A   string                `json:"a"`
	F   int                   `json:"f"`
	E   int                   `json:"e,omitempty"`
	I   string                `json:"i,omitempty"`
	P   cursorJSON            `json:"p"`
	K   channelgroups.Account `json:"k"`
	C   channelgroups.Channel `json:"c"`
	D   json.RawMessage       `json:"d"`
	U   json.RawMessage       `json:"u,omitempty"`
	CMT string                `json:"cmt,omitempty"`
}

// parts: v2 subscribe {sub} {channels|,} 0
func (a *API) serveSubscribe(ctx *fasthttp.RequestCtx, parts []string) {
	acct, err := channelgroups.ParseAccount(parts[2])
	if err != nil {
		a.writeDomainError(ctx, "subscribe", err)
		return
	}
	args := ctx.QueryArgs()
	req := subscriber.PollRequest{Account: acct}
	names := splitList(parts[3])
	var wild []string
	if len(names) <= MaxSubscribeChannels {
		names, wild = splitWildcards(names)
	}
	if req.Channels, err = parseNames(names, channelgroups.ParseChannel, MaxSubscribeChannels, "channels"); err == nil {
		req.Wildcards, err = parseNames(wild, channelgroups.ParseWildcard, MaxSubscribeChannels, "wildcard channels")
	}
	if err == nil {
		req.Groups, err = parseNames(splitList(string(args.Peek("channel-group"))), channelgroups.ParseGroup, MaxSubscribeGroups, "channel groups")
	}
	if fe := args.Peek("filter-expr"); err == nil && len(fe) > 0 {
		// Compiled once per request; a bad one is refused before parking.
		if req.Filter, err = filter.Parse(string(fe)); err != nil {
			err = fmt.Errorf("filter-expr: %w: %w", err, errBadRequest)
		}
	}
	if err == nil && len(req.Channels)+len(req.Groups)+len(req.Wildcards) == 0 {
		err = fmt.Errorf("subscribe names no channel and no channel group: %w", errBadRequest)
	}
	if err == nil {
		if tt := args.Peek("tt"); len(tt) > 0 {
			req.Cursor, err = a.cursorArg(tt)
		}
	}
	if err == nil && req.Cursor != 0 {
		var tr int
		if tr, err = intArg(args, "tr", 0, 0, 1<<20); err == nil && tr != 0 && tr != a.cfg.Region {
			// A cursor of another region's log (the client switched
			// regions): its positions are not this log's, so step back
			// far enough to cover what this region copied late. Messages
			// seen before come again, with the same timetoken (G6).
			req.Cursor = max(req.Cursor-RegionSwitchRewind, 1)
		}
	}
	if err == nil {
		req.Token, err = a.requestToken(ctx, acct)
	}
	if err == nil {
		req.UUID, err = uuidArg(args)
	}
	if err == nil {
		var hb int
		hb, err = intArg(args, "heartbeat", 0, 0, 3600)
		req.Heartbeat = time.Duration(hb) * time.Second
	}
	if err == nil {
		req.Consistency, err = subscriber.ParseConsistency(string(args.Peek("consistency")), req.Token != nil)
	}
	if v := args.Peek("state"); err == nil && len(v) > 0 && req.UUID != "" {
		err = a.subscribeState(ctx, req, v)
	}
	if err != nil {
		a.writeDomainError(ctx, "subscribe", err)
		return
	}
	a.servePoll(ctx, acct, req)
}

// splitWildcards separates the wildcard subscriptions (names with a "*")
// from the channels. A wildcard's presence channel (a.*-pnpres, which the
// SDKs add when asked for presence) is dropped: groupcast has no presence
// for wildcards.
func splitWildcards(names []string) (channels, wild []string) {
	channels = names[:0:0]
	for _, s := range names {
		switch {
		case !channelgroups.IsWildcard(s):
			channels = append(channels, s)
		case strings.HasSuffix(s, ".*"+subscriber.PresenceSuffix):
		default:
			wild = append(wild, s)
		}
	}
	return channels, wild
}

// answerSubscribe writes a subscribe answer: the cursor and the envelopes.
// A message's envelope is encoded once and shared by all its deliveries; a
// delivery through a group adds the group ("b") in front.
func (a *API) answerSubscribe(ctx *fasthttp.RequestCtx, acct channelgroups.Account, res subscriber.PollResult, err error) {
	if err != nil {
		a.writeDomainError(ctx, "subscribe", err)
		return
	}
	ctx.SetStatusCode(fasthttp.StatusOK)
	// The body is built in a pooled buffer and set in one write: appended
	// to the response piece by piece it grew fasthttp's body buffer
	// several times per answer, 23% of the bytes a node allocated (so of
	// its GC work) with 100 subscribers at 1.16 M deliveries/s.
	bp := a.lp.getBuf()
	b := append((*bp)[:0], `{"t":{"t":"`...)
	b, _ = res.Cursor.AppendText(b)
	b = append(b, `","r":`...)
	b = strconv.AppendInt(b, int64(a.cfg.Region), 10)
	b = append(b, `},"m":[`...)
	for i, d := range res.Deliveries {
		if i > 0 {
			b = append(b, ',')
		}
		env := d.Msg.Wire(a.encodeEnvelope)
		via := string(d.Group)
		if d.Wildcard != "" {
			via = string(d.Wildcard) // PubNub's "b" names the subscription a message matched
		}
		if via == "" {
			b = append(b, env...)
			continue
		}
		g, _ := json.Marshal(via)
		b = append(b, `{"b":`...)
		b = append(b, g...)
		b = append(b, ',')
		b = append(b, env[1:]...)
	}
	b = append(b, "]}"...)
	ctx.Response.SetBody(b)
	*bp = b
	a.lp.putBuf(bp)
}

// encodeEnvelope is a message's envelope without the group.
func (a *API) encodeEnvelope(m *subscriber.Message) []byte {
	e := envelope{
		A: strconv.Itoa(a.cfg.Groups.Shard(m.Account) % 10), I: m.Publisher,
		P: cursorJSON{T: m.Timetoken().String(), R: cmp.Or(m.Origin, a.cfg.Region)}, K: m.Account, C: m.Channel, D: m.Payload, U: m.Meta, CMT: m.CustomType,
	}
	if m.Signal {
		e.E = 1
	}
	if m.Action != nil {
		e.E, e.D = 3, actionEventData(m)
	}
	b, err := json.Marshal(e)
	if err != nil { // a payload that was valid JSON when published always encodes
		panic(fmt.Sprintf("httpapi: encoding an envelope: %v", err))
	}
	return b
}

// actionEventData is an action event's "d", as PubNub's: the action and
// whether it was added or removed.
func actionEventData(m *subscriber.Message) json.RawMessage {
	event := "added"
	if m.Action.Removes != 0 {
		event = "removed"
	}
	type data struct {
		Type             string `json:"type"`
		Value            string `json:"value"`
		MessageTimetoken string `json:"messageTimetoken"`
		ActionTimetoken  string `json:"actionTimetoken"`
	}
	b, _ := json.Marshal(struct {
		Source  string `json:"source"`
		Version string `json:"version"`
		Data    data   `json:"data"`
		Event   string `json:"event"`
	}{"actions", "1.0", data{m.Action.Type, m.Action.Value, m.Action.Message.String(), m.ActionTimetoken().String()}, event})
	return b
}
