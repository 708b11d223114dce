package bench

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/valyala/fasthttp"
)

// GroupcastGroup is groupcast driven through a channel group, the
// product's own path for a subscriber of several channels: every poll
// subscribes to Group, which holds Members; publishes go to the members in
// turn. The channel Fanout names is ignored.
type GroupcastGroup struct {
	*Groupcast
	Group   string
	Members []string
	next    atomic.Uint64
}

// Handshake adds the members to the group (once per call; adding is
// idempotent) and returns the timetoken to subscribe after.
func (g *GroupcastGroup) Handshake(ctx context.Context, c *fasthttp.HostClient, _ string) (Cursor, error) {
	var ed editAnswer
	add := fmt.Sprintf("%s/v1/channel-registration/sub-key/%s/channel-group/%s?add=%s%s", g.Origin, g.Account, g.Group, url.QueryEscape(strings.Join(g.Members, ",")), g.query("&"))
	if err := fastGet(c, add, &ed); err != nil {
		return Cursor{}, fmt.Errorf("group %s: %w", g.Group, err)
	}
	var a subscribeAnswer
	err := fastGet(c, fmt.Sprintf("%s/v2/subscribe/%s/,/0?channel-group=%s&token=%s%s", g.Origin, g.Account, g.Group, url.QueryEscape(ed.Token), g.query("&")), &a)
	return Cursor{A: a.T.T}, err
}

// Poll long-polls the group.
func (g *GroupcastGroup) Poll(ctx context.Context, sc *SubConn, _ string, cur Cursor, msgs []int64) ([]int64, Cursor, error) {
	var buf [256]byte
	t := append(buf[:0], g.subscribePath(",")...)
	t = append(t, "?channel-group="...)
	t = append(t, g.Group...)
	t = append(t, "&tt="...)
	t = append(t, cur.A...)
	return g.poll(sc, g.appendAuth(t, '&'), cur, msgs)
}

// Publish sends msg to the next member.
func (g *GroupcastGroup) Publish(ctx context.Context, c *fasthttp.HostClient, _ string, msg int64) error {
	return g.Groupcast.Publish(ctx, c, g.Members[(g.next.Add(1)-1)%uint64(len(g.Members))], msg)
}

// NchanMulti is Nchan driven through its multi-channel subscribe: every
// poll subscribes to all of Members at once (/msub/a,b,…); publishes go to
// the members in turn. The channel Fanout names is ignored.
type NchanMulti struct {
	*Nchan
	Members []string
	next    atomic.Uint64

	pathOnce sync.Once
	path     string // /msub/ and the escaped members, made once
}

// Handshake returns the empty cursor: the first poll waits for the next
// message published on any member.
func (n *NchanMulti) Handshake(ctx context.Context, c *fasthttp.HostClient, _ string) (Cursor, error) {
	return Cursor{}, nil
}

// Poll long-polls every member at once.
func (n *NchanMulti) Poll(ctx context.Context, sc *SubConn, _ string, cur Cursor, msgs []int64) ([]int64, Cursor, error) {
	n.pathOnce.Do(func() {
		escaped := make([]string, len(n.Members))
		for i, m := range n.Members {
			escaped[i] = url.PathEscape(m)
		}
		n.path = "/msub/" + strings.Join(escaped, ",")
	})
	return n.poll(ctx, sc, n.path, "multi", cur, msgs)
}

// Publish sends msg to the next member.
func (n *NchanMulti) Publish(ctx context.Context, c *fasthttp.HostClient, _ string, msg int64) error {
	return n.Nchan.Publish(ctx, c, n.Members[(n.next.Add(1)-1)%uint64(len(n.Members))], msg)
}
