package bench

import (
	"context"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/groupcast/groupcast/access"
	"github.com/groupcast/groupcast/access/admin"
	"github.com/groupcast/groupcast/internal/nodetest"
	"github.com/groupcast/groupcast/subscriber"
)

// accessNode serves an embedded node in this process, checking keysets and
// tokens (keysets mode) if enforce, else checking nothing, and its admin API
// (keysets, /metrics) as groupcastd's admin listener serves it.
func accessNode(t *testing.T, enforce bool) (base, adminURL string) {
	t.Helper()
	reg := prometheus.NewRegistry()
	st, cfg := nodetest.Embedded(t, reg, subscriber.Config{PollHold: 5 * time.Second, Registerer: reg})
	keysets, err := access.NewRegistry(st, access.RegistryConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if err := keysets.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	guard, err := access.NewGuard(keysets, access.GuardConfig{Mode: access.Keysets, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	if enforce {
		cfg.Access = guard
	}
	adm, err := admin.New(st, keysets, admin.Config{Gatherer: reg})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(adm)
	t.Cleanup(srv.Close)
	return nodetest.Serve(t, cfg), srv.URL
}

// TestAccess runs the access scenario end to end on a tiny size: two
// rounds, the Access Manager runs with their token on every request, and
// the node's refusals without it recorded.
func TestAccess(t *testing.T) {
	base, adm := accessNode(t, true)
	const subs = 10
	res, err := Access(context.Background(), AccessConfig{Origin: base, Admin: adm, PIDs: []int{os.Getpid()},
		Subscribers: subs, Step: 200 * time.Millisecond, LatencyLoad: 100, SaturationLoad: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Runs) != 4 || res.Runs[0].On || !res.Runs[1].On || !res.Runs[2].On || res.Runs[3].On {
		t.Fatalf("runs %+v, want off, on, on, off", res.Runs)
	}
	for _, r := range res.Runs {
		if r.Parked != subs || r.Failures != 0 || len(r.Steps) != 2 {
			t.Fatalf("%s: parked %d of %d, %d failed polls, %d steps", r.Target, r.Parked, subs, r.Failures, len(r.Steps))
		}
		for _, s := range r.Steps {
			if s.Latency.Count == 0 || s.DeliveredPerSec == 0 || s.DeliveredPerSec > s.PublishedPerSec*subs*1.0001 {
				t.Errorf("%s, step %.0f/s: published/s %.1f delivered/s %.1f latencies %d", r.Target, s.Offered, s.PublishedPerSec, s.DeliveredPerSec, s.Latency.Count)
			}
		}
	}
	if got := len(res.Refused); got != 4 {
		t.Errorf("refused %q, want the 4 control requests", res.Refused)
	}
	if on := res.Case(true); on.Rounds != 2 || on.P99 == 0 || on.DeliveredPerSec == 0 {
		t.Errorf("on case %+v", on)
	}
	r := &Results{Access: &res}
	r.Checks = checks(r)
	if len(r.Checks) != 2 || !strings.Contains(r.Checks[0].What, "Access Manager on vs. off") {
		t.Fatalf("checks %+v", r.Checks)
	}
	if rep := Report(r, nil); !strings.Contains(rep, "## access") || !strings.Contains(rep, "| on vs. off |") {
		t.Errorf("report lacks the access section:\n%s", rep)
	}
}

// TestAccessNotEnforced: on a node that does not check tokens the scenario
// refuses to measure, rather than compare two runs without Access Manager.
func TestAccessNotEnforced(t *testing.T) {
	base, adm := accessNode(t, false)
	res, err := Access(context.Background(), AccessConfig{Origin: base, Admin: adm,
		Subscribers: 2, Step: 100 * time.Millisecond, LatencyLoad: 10, SaturationLoad: 20, Rounds: 1})
	if err == nil || !strings.Contains(err.Error(), "subscribe without a token: answered 200, want 403") {
		t.Fatalf("err %v, want the control check to fail", err)
	}
	if len(res.Runs) != 0 {
		t.Errorf("%d runs measured", len(res.Runs))
	}
}

// TestGroupcastAuth: the target carries its token on every request, and
// the node checks it: a token signed with another secret fails the fanout
// at its first subscribe.
func TestGroupcastAuth(t *testing.T) {
	base, adm := accessNode(t, true)
	k, err := createKeyset(t.Context(), adm, true)
	if err != nil {
		t.Fatal(err)
	}
	const channel = "auth"
	for _, c := range []struct {
		name, secret, want string
	}{
		{"right token", k.SecretKey, ""},
		{"forged token", "not-" + k.SecretKey, "403"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tok, err := channelToken(access.Keyset{SecretKey: c.secret}, channel)
			if err != nil {
				t.Fatal(err)
			}
			g := &Groupcast{Origin: base, Admin: adm, Account: k.SubscribeKey, PublishKey: k.PublishKey, Auth: tok, PIDs: []int{os.Getpid()}}
			run, err := Fanout(context.Background(), g, FanoutConfig{Subscribers: 2, Step: 100 * time.Millisecond, Loads: []float64{20}, AllLoads: true, Channel: channel})
			switch {
			case c.want == "" && (err != nil || run.Failures != 0 || len(run.Steps) != 1 || run.Steps[0].Latency.Count == 0):
				t.Fatalf("err %v, %d failed polls, steps %+v", err, run.Failures, run.Steps)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("err %v, want %s", err, c.want)
			}
		})
	}
}
