package httpapi

import (
	"encoding/json"

	"github.com/valyala/fasthttp"
)

type errorBody struct {
	Status  int    `json:"status"`
	Error   bool   `json:"error"`
	Message string `json:"message"`
	Service string `json:"service"`
}

// writeError writes PubNub's error shape with the given status, as JSON.
func writeError(ctx *fasthttp.RequestCtx, status int, service, msg string) {
	b, _ := json.Marshal(errorBody{Status: status, Error: true, Message: msg, Service: service})
	ctx.Response.Header.SetContentType("application/json")
	ctx.SetStatusCode(status)
	ctx.SetBody(b)
}

func writeJSON(ctx *fasthttp.RequestCtx, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeError(ctx, fasthttp.StatusInternalServerError, "groupcast", "encoding response: "+err.Error())
		return
	}
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetBody(b)
}
