package httpapi_test

import (
	"encoding/json"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/groupcast/groupcast/subscriber/httpapi"
)

// FuzzRequest sends arbitrary paths and queries through the router: every
// answer is JSON with a content type, and nothing but a server fault may
// give a 5xx.
func FuzzRequest(f *testing.F) {
	for _, s := range []string{
		cg + "/g?add=a%2Cb", cg + "/g?remove=a", cg + "/g", cg, cg + "/g/remove",
		"/time/0", "/%", "/v1/channel-registration/sub-key/%zz/channel-group", cg + "/g?add=%2C",
		cg + "/g?add=a%ZZb", "/v2/subscribe/demo/a/0?tt=99999999999999999&uuid=%FF",
		"/publish/demo/demo/0/a/0/%22%FF%22?meta=%7B%7D", "/v2/presence/sub-key/demo/channel/a/heartbeat?uuid=x",
		"/v2/subscribe/demo/a.*/0?uuid=x", "/v2/subscribe/demo/a.b.*,c/0?uuid=x&filter-expr=lang%20%3D%3D%20%27en%27",
		"/v2/subscribe/demo/a/0?uuid=x&filter-expr=(meta.n%20%3E%201%20%26%26%20!(x%20LIKE%20%27a*%27))",
		"/v2/subscribe/demo/a*b/0?uuid=x", "/v2/presence/sub-key/demo/channel/a.*,b/heartbeat?uuid=x&state=%7B%7D",
		"/v2/presence/sub-key/demo/uuid/x", "/v2/presence/sub-key/demo?uuid=x&disable_uuids=1",
		"/v3/history/sub-key/demo/message-counts/a,b?timetoken=1", "/v1/message-actions/demo/channel/a?limit=2",
	} {
		f.Add(s)
	}
	_, cfg := embedded(f, nil)
	api, err := httpapi.New(cfg)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, uri string) {
		var ctx fasthttp.RequestCtx
		ctx.Request.SetRequestURI(uri)
		api.Handle(&ctx)
		status := ctx.Response.StatusCode()
		if status >= 500 {
			t.Fatalf("%q: status %d: %s", uri, status, ctx.Response.Body())
		}
		if string(ctx.Response.Header.ContentType()) != "application/json" {
			t.Fatalf("%q: content type %q", uri, ctx.Response.Header.ContentType())
		}
		if !json.Valid(ctx.Response.Body()) {
			t.Fatalf("%q: body is not JSON: %q", uri, ctx.Response.Body())
		}
	})
}
