package abuse

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
)

// Account is the account (subscribe key) the probes work in.
const Account = "abuse"

// CapAccount is the account of the one probe that changes groups on
// purpose (channel-cap-race); it is not in SnapshotAccounts.
const CapAccount = "abusecap"

// SnapshotAccounts are the accounts whose groups must not change under a
// probe that is not Mutates.
var SnapshotAccounts = []string{Account, "demo"}

// Fixture is the state Setup made: groups to check nothing touches, and
// genuine tokens to tamper with.
type Fixture struct {
	// Token is the causal token of the edit that made Account's "family".
	Token string
	// DemoToken is a genuine token of account "demo": foreign to Account.
	DemoToken string
}

// Setup gives the node groups for the probes to leave alone: in Account,
// "family" (news, sports) and "big" (200 channels); in "demo", "family"
// (news).
func Setup(ctx context.Context, e *Env) (Fixture, error) {
	var fx Fixture
	big := make([]string, 200)
	for i := range big {
		big[i] = fmt.Sprintf("b%d", i)
	}
	for _, s := range []struct {
		account, group, channels string
		token                    *string
	}{
		{Account, "family", "news,sports", &fx.Token},
		{Account, "big", strings.Join(big, ","), nil},
		{"demo", "family", "news", &fx.DemoToken},
	} {
		a, err := e.get(ctx, cgPath(s.account, s.group)+"?add="+s.channels)
		if err != nil || a.Status != 200 {
			return fx, fmt.Errorf("setup: add %s/%s: %d %s %v", s.account, s.group, a.Status, clip(a.Body), err)
		}
		var r struct{ Token string }
		if err := json.Unmarshal(a.Body, &r); err != nil || r.Token == "" {
			return fx, fmt.Errorf("setup: add %s/%s answered %s without a token", s.account, s.group, clip(a.Body))
		}
		if s.token != nil {
			*s.token = r.Token
		}
	}
	return fx, nil
}

// cgPath is the channel-registration path of a group ("" for the account's
// list of groups).
func cgPath(account, group string) string {
	p := "/v1/channel-registration/sub-key/" + url.PathEscape(account) + "/channel-group"
	if group != "" {
		p += "/" + url.PathEscape(group)
	}
	return p
}

// Snapshot is the groups of some accounts and their channels, as the REST
// API lists them from storage: account → group → sorted channels.
type Snapshot map[string]map[string][]string

// TakeSnapshot lists the groups of accounts, and each group's channels
// read fully consistent (from storage).
func TakeSnapshot(ctx context.Context, e *Env, accounts ...string) (Snapshot, error) {
	s := Snapshot{}
	for _, acct := range accounts {
		a, err := e.get(ctx, cgPath(acct, ""))
		if err != nil || a.Status != 200 {
			return nil, fmt.Errorf("snapshot: list %s's groups: %d %s %v", acct, a.Status, clip(a.Body), err)
		}
		var gs struct {
			Payload struct{ Groups []string }
		}
		if err := json.Unmarshal(a.Body, &gs); err != nil {
			return nil, fmt.Errorf("snapshot: %s's groups: %w", acct, err)
		}
		s[acct] = map[string][]string{}
		for _, g := range gs.Payload.Groups {
			chs, _, err := listChannels(ctx, e, acct, g, "consistency=fully_consistent")
			if err != nil {
				return nil, fmt.Errorf("snapshot: %w", err)
			}
			s[acct][g] = chs
		}
	}
	return s, nil
}

// listChannels lists a group's channels, sorted, with an extra query.
func listChannels(ctx context.Context, e *Env, account, group, query string) ([]string, Answer, error) {
	target := cgPath(account, group)
	if query != "" {
		target += "?" + query
	}
	a, err := e.get(ctx, target)
	if err != nil || a.Status != 200 {
		return nil, a, fmt.Errorf("list %s/%s: %d %s %v", account, group, a.Status, clip(a.Body), err)
	}
	var r struct {
		Payload struct{ Channels []string }
	}
	if err := json.Unmarshal(a.Body, &r); err != nil {
		return nil, a, fmt.Errorf("list %s/%s: %w", account, group, err)
	}
	slices.Sort(r.Payload.Channels)
	return r.Payload.Channels, a, nil
}

// Diff describes how s and t differ, "" if they do not.
func (s Snapshot) Diff(t Snapshot) string {
	var out []string
	for _, acct := range slices.Sorted(maps.Keys(s)) {
		for _, g := range slices.Sorted(maps.Keys(s[acct])) {
			after, ok := t[acct][g]
			switch {
			case !ok:
				out = append(out, fmt.Sprintf("%s/%s deleted", acct, g))
			case !slices.Equal(s[acct][g], after):
				out = append(out, fmt.Sprintf("%s/%s: %s → %s", acct, g, brief(s[acct][g]), brief(after)))
			}
		}
	}
	for _, acct := range slices.Sorted(maps.Keys(t)) {
		for _, g := range slices.Sorted(maps.Keys(t[acct])) {
			if _, ok := s[acct][g]; !ok {
				out = append(out, fmt.Sprintf("%s/%s created with %s", acct, g, brief(t[acct][g])))
			}
		}
	}
	return strings.Join(out, "; ")
}

func brief(chs []string) string {
	if len(chs) > 6 {
		return fmt.Sprintf("%q…(%d channels)", chs[:6], len(chs))
	}
	return fmt.Sprintf("%q", chs)
}
