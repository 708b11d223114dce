package httpapi

import (
	"fmt"
	"net"
	"runtime/debug"
	"time"

	"github.com/valyala/fasthttp"
)

// A panic while serving a request (a handler's, or one in the writing of a
// parked poll's answer) is recovered: its client gets a 500 JSON error, the
// panic is counted in groupcast_panics_total and logged with its stack, and
// every other client is served on. What the panic left half done (a lock a
// store held, say) is not undone: the log line is for the operator.

// recoverRequest is deferred by Handle.
func (a *API) recoverRequest(ctx *fasthttp.RequestCtx, start time.Time) {
	v := recover()
	if v == nil {
		return
	}
	a.recovered(v, string(ctx.Method())+" "+truncate(string(ctx.Path()), 256))
	if ctx.Hijacked() {
		return // a parked poll: its answer goes on the connection
	}
	ctx.Response.Reset()
	a.setCommonHeaders(&ctx.Response.Header, ctx.Request.Header.Peek("Origin"))
	writeError(ctx, fasthttp.StatusInternalServerError, serverName, "internal error")
	a.observe("panic", fasthttp.StatusInternalServerError, start)
}

// recovered counts and logs a recovered panic.
func (a *API) recovered(v any, where string) {
	if a.guard != nil {
		a.guard.panics.Inc()
	}
	a.cfg.Logger.Error("recovered a panic; answered 500", "where", where, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
}

// writeInternalError writes a 500 JSON error on a hijacked connection,
// which then closes.
func (a *API) writeInternalError(c net.Conn) {
	ctx := new(fasthttp.RequestCtx)
	ctx.Init(new(fasthttp.Request), nil, nil)
	a.setCommonHeaders(&ctx.Response.Header, nil)
	ctx.Response.Header.Set("Server", serverName)
	writeError(ctx, fasthttp.StatusInternalServerError, serverName, "internal error")
	ctx.Response.SetConnectionClose()
	if a.server != nil && a.server.WriteTimeout > 0 {
		_ = c.SetWriteDeadline(time.Now().Add(a.server.WriteTimeout))
	}
	_, _ = ctx.Response.WriteTo(c)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
