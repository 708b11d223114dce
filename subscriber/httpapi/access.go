package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"unsafe"

	"github.com/valyala/fasthttp"

	"github.com/groupcast/groupcast/access"
)

// accessService names Access Manager in answers, as PubNub does.
const accessService = "Access Manager"

// The permissions each endpoint needs with Access Manager on (PubNub's
// operations-to-permissions mapping); README "Access control" has the table.
var (
	// parts: v2 subscribe {sub} {channels} 0 ?channel-group=
	needsSubscribe = needsOf(access.Read, 3, "channel-group")
	// parts: publish|signal {pub} {sub} 0 {channel} 0 [{message}]
	needsPublish = needsOf(access.Write, 4, "")
	// parts: v3|v2 history sub-key {sub} channel|message-counts {channels}
	needsHistory = needsOf(access.Read, 5, "")
	// parts: v3 history sub-key {sub} channel {channel}, DELETE
	needsHistoryDelete = needsOf(access.Delete, 5, "")
	// parts: v1 message-actions {sub} channel {channel} [message {tt} [action {tt}]]
	// (PubNub's: add needs write, remove delete, get read; history with
	// actions is history's read)
	needsActionsGet   = needsOf(access.Read, 4, "")
	needsActionAdd    = needsOf(access.Write, 4, "")
	needsActionRemove = needsOf(access.Delete, 4, "")
	// parts: v2 presence sub-key {sub} channel {channels} [heartbeat] ?channel-group=
	needsPresence = needsOf(access.Read, 5, "channel-group")
	// parts: v1 channel-registration sub-key {sub} channel-group {group} [remove]
	needsGroupRead   = groupNeed(access.Read)
	needsGroupManage = groupNeed(access.Manage)
)

// maxNeeds bounds the names one request is checked for: past every
// endpoint's own limit on the names it takes (which then refuses the
// request), so a request cannot make the check long.
const maxNeeds = 501

// needsOf returns the needs of perm on the comma-separated channels in path
// segment i and the comma-separated groups in query parameter groupArg.
func needsOf(perm access.Perm, i int, groupArg string) func(*fasthttp.RequestCtx, []string) []access.Need {
	return func(ctx *fasthttp.RequestCtx, parts []string) []access.Need {
		var needs []access.Need
		for _, c := range splitList(parts[i]) {
			needs = append(needs, access.Need{Kind: access.Channel, Name: c, Perm: perm})
		}
		if groupArg != "" {
			for _, g := range splitList(string(ctx.QueryArgs().Peek(groupArg))) {
				needs = append(needs, access.Need{Kind: access.Group, Name: g, Perm: perm})
			}
		}
		return needs[:min(len(needs), maxNeeds)]
	}
}

func groupNeed(perm access.Perm) func(*fasthttp.RequestCtx, []string) []access.Need {
	return func(_ *fasthttp.RequestCtx, parts []string) []access.Need {
		return []access.Need{{Kind: access.Group, Name: parts[5], Perm: perm}}
	}
}

// crossSiteRefused refuses a request a browser sent from a page whose
// origin is not configured: one carrying an Origin not listed, or one the
// browser marks cross-site or same-site (Sec-Fetch-Site, sent over HTTPS
// and to localhost), which covers what CORS does not stop from being sent
// (an <img> pointing at an edit). Other clients send neither header.
func (a *API) crossSiteRefused(ctx *fasthttp.RequestCtx) bool {
	origin := ctx.Request.Header.Peek("Origin")
	site := string(ctx.Request.Header.Peek("Sec-Fetch-Site"))
	if len(origin) == 0 && site != "cross-site" && site != "same-site" {
		return false
	}
	if access.AllowedOrigin(a.cfg.CORSOrigins, string(origin)) {
		return false
	}
	writeError(ctx, fasthttp.StatusForbidden, accessService, "Forbidden: requests from this origin are not allowed (--cors-origins)")
	return true
}

// authorize checks a request naming a subscribe key with the access guard
// and answers a refusal itself; it reports whether to serve the request.
func (a *API) authorize(ctx *fasthttp.RequestCtx, ep endpoint, parts []string) bool {
	if a.cfg.Access == nil || ep.key == 0 {
		return true
	}
	g, args := a.cfg.Access, ctx.QueryArgs()
	// A subscribe re-sent on the same connection with only its cursor
	// changed is allowed as the last one was, while that decision holds
	// (access.Memo): no token lookup or permission check per re-poll.
	var memo *access.Memo
	var gen access.Generation
	var path, groups, auth, uuid []byte
	if ep.memo && len(args.Peek("signature")) == 0 {
		if memo = memoOf(ctx); memo != nil {
			path, groups, auth, uuid = ctx.Request.URI().PathOriginal(), args.Peek("channel-group"), args.Peek("auth"), args.Peek("uuid")
			if g.Recall(memo, path, groups, auth, uuid) {
				return true
			}
			gen = g.Generation()
		}
	}
	r := access.Request{
		SubscribeKey: parts[ep.key],
		SignedOnly:   ep.signed,
		Issuing:      ep.issuing,
		// Not copied: Check keeps neither (access.Request), and a token
		// is a few hundred bytes on every request.
		Auth:      unsafeString(args.Peek("auth")),
		UUID:      unsafeString(args.Peek("uuid")),
		Signature: string(args.Peek("signature")),
	}
	if ep.publishKey > 0 {
		r.PublishKey = parts[ep.publishKey]
	}
	if r.Signature != "" {
		r.Signed = signedRequest(ctx)
	}
	if ep.needs != nil {
		r.Needs = ep.needs(ctx, parts)
	}
	if _, d := g.Check(&r); d != nil {
		writeDenied(ctx, d)
		return false
	}
	if memo != nil {
		g.Remember(memo, gen, &r, path, groups, auth, uuid)
	}
	return true
}

// memoOf is the access memo of the request's connection: one handed back
// after a parked poll (servedConn) has one; nil for others.
func memoOf(ctx *fasthttp.RequestCtx) *access.Memo {
	sc, ok := ctx.Conn().(*servedConn)
	if !ok {
		return nil
	}
	if sc.memo == nil {
		sc.memo = new(access.Memo)
	}
	return sc.memo
}

// signedRequest is the request as its signature covers it: the path and
// query as sent, and the body. A request URI that does not parse yields a
// request no signature matches.
func signedRequest(ctx *fasthttp.RequestCtx) access.SignedRequest {
	uri := ctx.RequestURI()
	if bytes.IndexByte(uri, '#') >= 0 {
		// The query is read up to '#', the signature would cover what
		// follows it too: parameters moved behind it would stay signed
		// and go unseen.
		return access.SignedRequest{Method: "invalid"}
	}
	r, err := access.ParseSignedRequest(string(ctx.Method()), string(uri), ctx.PostBody())
	if err != nil {
		return access.SignedRequest{Method: "invalid"}
	}
	return r
}

// deniedBody is PubNub's Access Manager refusal.
type deniedBody struct {
	Status  int            `json:"status"`
	Error   bool           `json:"error"`
	Message string         `json:"message"`
	Service string         `json:"service"`
	Payload *deniedPayload `json:"payload,omitempty"`
}

type deniedPayload struct {
	Channels []string `json:"channels,omitempty"`
	Groups   []string `json:"channel-groups,omitempty"`
	UUIDs    []string `json:"uuids,omitempty"`
}

func writeDenied(ctx *fasthttp.RequestCtx, d *access.Denied) {
	body := deniedBody{Status: d.Status, Error: true, Message: d.Message, Service: accessService}
	if len(d.Channels)+len(d.Groups)+len(d.UUIDs) > 0 {
		body.Payload = &deniedPayload{Channels: d.Channels, Groups: d.Groups, UUIDs: d.UUIDs}
	}
	b, _ := json.Marshal(body)
	ctx.SetStatusCode(d.Status)
	ctx.SetBody(b)
}

// issuingKeyset returns the keyset a grant or revoke names, answering
// itself (405, 400) when the method is not want or the keyset is unknown.
func (a *API) issuingKeyset(ctx *fasthttp.RequestCtx, parts []string, want string) (access.Keyset, bool) {
	if string(ctx.Method()) != want {
		ctx.Response.Header.Set("Allow", want+", OPTIONS")
		writeError(ctx, fasthttp.StatusMethodNotAllowed, accessService, "this request is "+want)
		return access.Keyset{}, false
	}
	ks, ok := a.cfg.Access.Keyset(parts[2])
	if !ok {
		writeError(ctx, fasthttp.StatusBadRequest, accessService, "Invalid Subscribe Key")
	}
	return ks, ok
}

// serveGrant issues a token: POST /v3/pam/{sub}/grant (signed; checked by
// authorize).
func (a *API) serveGrant(ctx *fasthttp.RequestCtx, parts []string) {
	ks, ok := a.issuingKeyset(ctx, parts, fasthttp.MethodPost)
	if !ok {
		return
	}
	tok, err := a.cfg.Access.Grant(ks, ctx.PostBody())
	if err != nil {
		writeError(ctx, fasthttp.StatusBadRequest, accessService, err.Error())
		return
	}
	ctx.SetBody(access.GrantResponse(tok))
}

// serveRevoke revokes a token: DELETE /v3/pam/{sub}/grant/{token} (signed;
// checked by authorize). Every node refuses the token within its keyset
// registry's poll; this node at once.
func (a *API) serveRevoke(ctx *fasthttp.RequestCtx, parts []string) {
	ks, ok := a.issuingKeyset(ctx, parts, fasthttp.MethodDelete)
	if !ok {
		return
	}
	c, cancel := a.work()
	defer cancel()
	switch err := a.cfg.Access.Revoke(c, ks, parts[4]); {
	case errors.Is(err, access.ErrNotRevocable):
		writeError(ctx, fasthttp.StatusBadRequest, accessService, err.Error())
	case err != nil:
		a.writeDomainError(ctx, accessService, err)
	default:
		ctx.SetBodyString(`{"status":200,"data":{},"service":"Access Manager"}`)
	}
}

// unsafeString is b as a string without copying it: valid only while b is
// not changed (a request's arguments, for the length of its handling).
func unsafeString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }
