package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"

	"github.com/valyala/fasthttp"

	"github.com/groupcast/groupcast/archive"
	"github.com/groupcast/groupcast/channelgroups"
	"github.com/groupcast/groupcast/subscriber"
)

// Message actions (PubNub's /v1/message-actions), served by the node
// (subscriber.Node.AddAction and the rest):
//
//	POST   /v1/message-actions/{sub}/channel/{ch}/message/{mtt}            body {"type","value"}
//	GET    /v1/message-actions/{sub}/channel/{ch}?start=&end=&limit=
//	DELETE /v1/message-actions/{sub}/channel/{ch}/message/{mtt}/action/{att}
//
// Answers are PubNub's: {"status":200,"data":…}, with "more" on a get that
// has more; errors {"status":…,"error":{"message","source":"actions",
// "details":[…]}}.

// actionsService names the message actions service in error answers.
const actionsService = "actions"

// MaxActionsLimit is the most actions one get returns (PubNub's).
const MaxActionsLimit = 100

// actionJSON is an action as PubNub's answers give it.
type actionJSON struct {
	Type             string `json:"type"`
	Value            string `json:"value"`
	UUID             string `json:"uuid"`
	ActionTimetoken  string `json:"actionTimetoken"`
	MessageTimetoken string `json:"messageTimetoken"`
}

func toActionJSON(a archive.Action) actionJSON {
	return actionJSON{Type: a.Type, Value: a.Value, UUID: a.Publisher, ActionTimetoken: a.Timetoken.String(), MessageTimetoken: a.Message.String()}
}

// actionError is PubNub's error shape for the actions service.
type actionError struct {
	Status int `json:"status"`
	Error  struct {
		Message string               `json:"message"`
		Source  string               `json:"source"`
		Details []actionErrorDetails `json:"details,omitempty"`
	} `json:"error"`
}

type actionErrorDetails struct {
	Message      string `json:"message"`
	Location     string `json:"location"`
	LocationType string `json:"locationType"`
}

// errBadField is a request error that names what it is about.
type errBadField struct {
	location, locationType string
	err                    error
}

func (e *errBadField) Error() string { return e.err.Error() }
func (e *errBadField) Unwrap() error { return e.err }

func badField(location, locationType string, err error) error {
	return &errBadField{location: location, locationType: locationType, err: err}
}

// writeActionError maps an error to PubNub's actions error answer.
func (a *API) writeActionError(ctx *fasthttp.RequestCtx, err error) {
	var body actionError
	body.Error.Source = actionsService
	switch {
	case errors.Is(err, subscriber.ErrActionExists):
		body.Status, body.Error.Message = fasthttp.StatusConflict, "Action Already Added"
	case errors.Is(err, channelgroups.ErrInvalidName), errors.Is(err, channelgroups.ErrInvalidTimetoken),
		errors.Is(err, subscriber.ErrBadRequest), errors.Is(err, errBadRequest):
		body.Status, body.Error.Message = fasthttp.StatusBadRequest, "Invalid Arguments"
		d := actionErrorDetails{Message: err.Error()}
		if f := (*errBadField)(nil); errors.As(err, &f) {
			d.Location, d.LocationType = f.location, f.locationType
		}
		body.Error.Details = []actionErrorDetails{d}
	default:
		a.writeDomainError(ctx, actionsService, err)
		return
	}
	b, _ := json.Marshal(body)
	ctx.Response.Header.SetContentType("application/json")
	ctx.SetStatusCode(body.Status)
	ctx.SetBody(b)
}

// parseActionBody reads an add's body: a JSON object with string fields
// type and value (others are ignored), within subscriber's limits.
func parseActionBody(body []byte) (typ, value string, err error) {
	if len(body) > MaxMessageBytes {
		return "", "", badField("body", "body", fmt.Errorf("body is longer than %d bytes: %w", MaxMessageBytes, errBadRequest))
	}
	var v struct {
		Type  *string `json:"type"`
		Value *string `json:"value"`
	}
	if !validJSON(body) || json.Unmarshal(body, &v) != nil {
		return "", "", badField("body", "body", fmt.Errorf(`body is not a JSON object {"type":…,"value":…} of strings: %w`, errBadRequest))
	}
	switch {
	case v.Type == nil:
		return "", "", badField("type", "body", fmt.Errorf("Missing field type: %w", errBadRequest))
	case v.Value == nil:
		return "", "", badField("value", "body", fmt.Errorf("Missing field value: %w", errBadRequest))
	}
	if err := subscriber.CheckAction(*v.Type, *v.Value); err != nil {
		return "", "", badField("body", "body", err)
	}
	return *v.Type, *v.Value, nil
}

// actionPath parses parts v1 message-actions {sub} channel {ch} [message
// {mtt} [action {att}]]; the timetokens are zero when absent.
func actionPath(parts []string) (acct channelgroups.Account, ch channelgroups.Channel, msg, act channelgroups.Timetoken, err error) {
	if acct, err = channelgroups.ParseAccount(parts[2]); err != nil {
		return "", "", 0, 0, badField("subscribeKey", "path", err)
	}
	if ch, err = channelgroups.ParseChannel(parts[4]); err != nil {
		return "", "", 0, 0, badField("channel", "path", err)
	}
	if len(parts) > 6 {
		if msg, err = pathTimetoken(parts[6]); err != nil {
			return "", "", 0, 0, badField("messageTimetoken", "path", err)
		}
	}
	if len(parts) > 8 {
		if act, err = pathTimetoken(parts[8]); err != nil {
			return "", "", 0, 0, badField("actionTimetoken", "path", err)
		}
	}
	return acct, ch, msg, act, nil
}

func pathTimetoken(s string) (channelgroups.Timetoken, error) {
	tt, err := channelgroups.ParseTimetoken(s)
	if err == nil && tt <= 0 {
		err = fmt.Errorf("timetoken %d must be > 0: %w", tt, channelgroups.ErrInvalidTimetoken)
	}
	return tt, err
}

// parts: v1 message-actions {sub} channel {ch} message {mtt}, POST
func (a *API) serveAddAction(ctx *fasthttp.RequestCtx, parts []string) {
	if !ctx.IsPost() {
		ctx.Response.Header.Set("Allow", "POST, OPTIONS")
		writeError(ctx, fasthttp.StatusMethodNotAllowed, actionsService, "adding a message action is POST")
		return
	}
	acct, ch, msg, _, err := actionPath(parts)
	var body []byte
	if err == nil {
		if body, err = postBody(ctx); err != nil {
			err = badField("body", "body", fmt.Errorf("%w: %w", err, errBadRequest))
		}
	}
	var act archive.Action
	if err == nil {
		act.Type, act.Value, err = parseActionBody(body)
	}
	if err == nil {
		act.Publisher, err = uuidArg(ctx.QueryArgs())
	}
	if err != nil {
		a.writeActionError(ctx, err)
		return
	}
	act.Account, act.Channel, act.Message = acct, ch, msg
	c, cancel := a.work()
	defer cancel()
	added, err := a.cfg.Pubsub.AddAction(c, act)
	if err != nil {
		a.writeActionError(ctx, err)
		return
	}
	writeJSON(ctx, map[string]any{"status": 200, "data": toActionJSON(added)})
}

// parts: v1 message-actions {sub} channel {ch} message {mtt} action {att}, DELETE
func (a *API) serveRemoveAction(ctx *fasthttp.RequestCtx, parts []string) {
	if !ctx.IsDelete() {
		ctx.Response.Header.Set("Allow", "DELETE, OPTIONS")
		writeError(ctx, fasthttp.StatusMethodNotAllowed, actionsService, "removing a message action is DELETE")
		return
	}
	acct, ch, msg, act, err := actionPath(parts)
	var uuid string
	if err == nil {
		uuid, err = uuidArg(ctx.QueryArgs())
	}
	if err != nil {
		a.writeActionError(ctx, err)
		return
	}
	c, cancel := a.work()
	defer cancel()
	if err := a.cfg.Pubsub.RemoveAction(c, acct, ch, msg, act, uuid); err != nil {
		a.writeActionError(ctx, err)
		return
	}
	ctx.SetBodyString(`{"status":200,"data":{}}`)
}

// actionsMore is PubNub's "more" of a get-message-actions answer: the
// next (older) page.
type actionsMore struct {
	URL   string `json:"url"`
	Start string `json:"start"`
	End   string `json:"end,omitempty"`
	Limit int    `json:"limit"`
}

// parts: v1 message-actions {sub} channel {ch}, GET ?start=&end=&limit=
func (a *API) serveGetActions(ctx *fasthttp.RequestCtx, parts []string) {
	acct, ch, _, _, err := actionPath(parts)
	var start, end channelgroups.Timetoken
	args := ctx.QueryArgs()
	if err == nil {
		start, end, err = historyBounds(args)
	}
	limit := MaxActionsLimit
	if err == nil {
		limit, err = intArg(args, "limit", MaxActionsLimit, 1, MaxActionsLimit)
	}
	if err != nil {
		a.writeActionError(ctx, err)
		return
	}
	c, cancel := a.work()
	defer cancel()
	acts, more, err := a.cfg.Pubsub.Actions(c, acct, ch, start, end, limit)
	if err != nil {
		a.writeActionError(ctx, err)
		return
	}
	data := make([]actionJSON, 0, len(acts))
	for _, act := range acts {
		data = append(data, toActionJSON(act))
	}
	body := map[string]any{"status": 200, "data": data}
	if more && len(acts) > 0 {
		m := actionsMore{Start: acts[0].Timetoken.String(), Limit: limit}
		q := fasthttp.AcquireArgs()
		defer fasthttp.ReleaseArgs(q)
		q.Set("start", m.Start)
		if end != 0 {
			m.End = end.String()
			q.Set("end", m.End)
		}
		q.Set("limit", strconv.Itoa(limit))
		m.URL = "/v1/message-actions/" + url.PathEscape(parts[2]) + "/channel/" + url.PathEscape(parts[4]) + "?" + q.String()
		body["more"] = m
	}
	writeJSON(ctx, body)
}

// historyActions is a message's actions as history gives them: by type,
// then value, the uuids and timetokens that added them.
type historyActions map[string]map[string][]historyAction

type historyAction struct {
	UUID            string `json:"uuid"`
	ActionTimetoken string `json:"actionTimetoken"`
}

// actionsByMessage groups actions (ordered by message, then action
// timetoken) by message.
func actionsByMessage(acts []archive.Action) map[channelgroups.Timetoken]historyActions {
	out := map[channelgroups.Timetoken]historyActions{}
	for _, act := range acts {
		h := out[act.Message]
		if h == nil {
			h = historyActions{}
			out[act.Message] = h
		}
		if h[act.Type] == nil {
			h[act.Type] = map[string][]historyAction{}
		}
		h[act.Type][act.Value] = append(h[act.Type][act.Value], historyAction{UUID: act.Publisher, ActionTimetoken: act.Timetoken.String()})
	}
	return out
}
