package subscriber

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	"github.com/groupcast/groupcast/channelgroups"
)

// Presence is minimal but real: a user who subscribes to a channel joins it,
// one who leaves or is not seen for its heartbeat timeout leaves it. The
// events go through the account's shard log like messages, so every node
// counts the same occupancy and delivers the events, on "<channel>-pnpres",
// in the same order.

// PresenceSuffix marks a presence channel.
const PresenceSuffix = "-pnpres"

type seenUser struct {
	last    time.Time
	timeout time.Duration
}

// Seen records that uuid is active on channels (a subscribe or heartbeat),
// announcing a join where it is not present yet.
func (n *Node) Seen(a channelgroups.Account, chs []channelgroups.Channel, uuid string, timeout time.Duration) {
	if uuid == "" {
		return
	}
	if timeout <= 0 {
		timeout = n.cfg.PresenceTimeout
	}
	now := time.Now()
	var joins []channelgroups.Channel
	n.msgMu.Lock()
	for _, c := range chs {
		if strings.HasSuffix(string(c), PresenceSuffix) {
			continue
		}
		ck := chanKey{Account: a, Channel: c}
		if n.seen[ck] == nil {
			n.seen[ck] = map[string]seenUser{}
		}
		n.seen[ck][uuid] = seenUser{last: now, timeout: timeout}
		if _, ok := n.present[ck][uuid]; !ok {
			joins = append(joins, c)
		}
	}
	n.msgMu.Unlock()
	for _, c := range joins {
		n.announcePresence(context.Background(), presence{Account: a, Channel: c, Action: "join", UUID: uuid, When: now.Unix()})
	}
}

// Leave announces that uuid left channels.
func (n *Node) Leave(ctx context.Context, a channelgroups.Account, chs []channelgroups.Channel, uuid string) {
	if uuid == "" {
		return
	}
	now := time.Now()
	for _, c := range chs {
		ck := chanKey{Account: a, Channel: c}
		n.msgMu.Lock()
		delete(n.seen[ck], uuid)
		_, present := n.present[ck][uuid]
		n.msgMu.Unlock()
		if present {
			n.announcePresence(ctx, presence{Account: a, Channel: c, Action: "leave", UUID: uuid, When: now.Unix()})
		}
	}
}

// Occupancy returns the users present on a channel.
func (n *Node) Occupancy(a channelgroups.Account, c channelgroups.Channel) []string {
	n.msgMu.Lock()
	defer n.msgMu.Unlock()
	var out []string
	for u := range n.present[chanKey{Account: a, Channel: c}] {
		out = append(out, u)
	}
	return out
}

// presenceTimeouts announces a timeout for every user this node served that
// was not seen within its timeout (a parked subscribe counts as seen).
func (n *Node) presenceTimeouts(ctx context.Context, now time.Time) {
	var out []presence
	n.msgMu.Lock()
	for ck, users := range n.seen {
		for u, s := range users {
			if now.Sub(s.last) >= s.timeout && !n.pollingLocked(ck, u) {
				delete(users, u)
				if _, ok := n.present[ck][u]; ok {
					out = append(out, presence{Account: ck.Account, Channel: ck.Channel, Action: "timeout", UUID: u, When: now.Unix()})
				}
			}
		}
		if len(users) == 0 {
			delete(n.seen, ck)
		}
	}
	n.msgMu.Unlock()
	for _, p := range out {
		n.announcePresence(ctx, p)
	}
}

// pollingLocked reports whether a subscribe of the channel is parked here;
// users are not tracked per waiter, so any parked poll keeps the channel's
// users of this node alive until it returns and Seen refreshes them.
func (n *Node) pollingLocked(ck chanKey, _ string) bool { return len(n.byChannel[ck]) > 0 }

func (n *Node) announcePresence(ctx context.Context, p presence) {
	shard := channelgroups.ShardOf(p.Account, len(n.shards))
	s := n.shards[shard]
	s.announceMu.Lock()
	defer s.announceMu.Unlock()
	if s.blocked {
		return // a best-effort event: the next subscribe or timeout says it again
	}
	if _, err := n.log.Append(ctx, shard, encodePresence(p)); err != nil {
		n.cfg.Logger.Warn("announcing a presence event failed", "err", err)
	}
}

// applyPresence updates occupancy from a logged event and delivers it on the
// channel's presence channel. A join of a present user, or a leave of an
// absent one, changes nothing and is not delivered.
func (n *Node) applyPresence(p *presence, pos channelgroups.Position) *wakeup {
	ck := chanKey{Account: p.Account, Channel: p.Channel}
	n.msgMu.Lock()
	users := n.present[ck]
	_, was := users[p.UUID]
	switch {
	case p.Action == "join" && !was:
		if users == nil {
			users = map[string]struct{}{}
			n.present[ck] = users
		}
		users[p.UUID] = struct{}{}
	case p.Action != "join" && was:
		delete(users, p.UUID)
		if len(users) == 0 {
			delete(n.present, ck)
		}
	default:
		n.msgMu.Unlock()
		return nil
	}
	occupancy := len(users)
	n.msgMu.Unlock()
	d, _ := json.Marshal(map[string]any{"action": p.Action, "uuid": p.UUID, "timestamp": p.When, "occupancy": occupancy})
	return n.applyMessage(&Message{Account: p.Account, Channel: p.Channel + PresenceSuffix, Payload: d, NoStore: true, Pos: pos})
}
