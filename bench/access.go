package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/groupcast/groupcast/access"
)

// AccessConfig describes the access scenario: the same fanout run, on one
// node started with --access keysets, through a keyset without Access
// Manager and through one with it, every subscribe and publish of the
// latter carrying a token.
type AccessConfig struct {
	Origin string // base URL of the node
	Admin  string // base URL of its admin listener: keysets API, /metrics
	PIDs   []int  // the node's processes, for memory; empty means its /metrics
	// Subscribers, Step and the two loads are each run's: a step at
	// LatencyLoad (deliveries/s, one the node keeps up with), where
	// publish→deliver latency is compared, then one at SaturationLoad (more
	// than it can deliver), where deliveries/s are compared.
	Subscribers                 int
	Step                        time.Duration
	LatencyLoad, SaturationLoad float64
	// Rounds is how many times each case runs, alternating (off, on, on,
	// off, off, on, …) so that the machine's drift falls on both; zero
	// means 2.
	Rounds   int
	Progress *Progress
}

// AccessResult is what the access scenario measured.
type AccessResult struct {
	Subscribers                 int
	LatencyLoad, SaturationLoad float64
	Step                        time.Duration
	Runs                        []AccessRun // in the order they ran
	// Refused lists the control requests on the Access Manager keyset that
	// were refused, as they must be, before the runs: proof that its
	// tokens were checked.
	Refused []string
	// Load is the load average (1, 5, 15 minutes) before and after.
	LoadBefore, LoadAfter string
}

// AccessRun is one fanout run of the access scenario: Steps[0] at the
// latency load, Steps[1] at the saturation load.
type AccessRun struct {
	PAM bool // through the keyset with Access Manager on, with a token
	FanoutRun
}

// AccessCase is one case (Access Manager off or on) over its rounds: the
// median of each figure (one run's hiccup on a shared machine moves a mean
// of p99s more than the difference measured).
type AccessCase struct {
	Rounds          int
	P50, P99        float64 // µs, publish→deliver at the latency load
	DeliveredPerSec float64 // at the saturation load
	// ServerCPU is the node's CPU time over the latency step, as a share
	// of the step (1 = one core busy throughout): whether the latency load
	// left it headroom, and what the checks cost.
	ServerCPU      float64
	Lost, Failures int64 // summed over the rounds
}

// Case summarises the runs with Access Manager on (pam) or off.
func (r *AccessResult) Case(pam bool) AccessCase {
	var c AccessCase
	var p50, p99, delivered, cpu []float64
	for _, run := range r.Runs {
		if run.PAM != pam || len(run.Steps) < 2 {
			continue
		}
		c.Rounds++
		p50 = append(p50, run.Steps[0].Latency.P50)
		p99 = append(p99, run.Steps[0].Latency.P99)
		delivered = append(delivered, run.Steps[1].DeliveredPerSec)
		if r.Step > 0 {
			cpu = append(cpu, run.Steps[0].ServerCPU/r.Step.Seconds())
		}
		c.Lost += run.Steps[0].Lost + run.Steps[1].Lost
		c.Failures += run.Failures
	}
	c.P50, c.P99, c.DeliveredPerSec, c.ServerCPU = median(p50), median(p99), median(delivered), median(cpu)
	return c
}

// median of xs (the mean of the middle two for an even count); 0 if none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	if m := len(xs) / 2; len(xs)%2 == 0 {
		return (xs[m-1] + xs[m]) / 2
	} else {
		return xs[m]
	}
}

// Apart is how far Access Manager on is from off, relative to off: of the
// p99 latency and of the deliveries/s (positive: on is higher).
func (r *AccessResult) Apart() (p99, delivered float64) {
	off, on := r.Case(false), r.Case(true)
	return rel(on.P99, off.P99), rel(on.DeliveredPerSec, off.DeliveredPerSec)
}

// Spread is the noise between rounds of the same case: the largest
// relative difference between two rounds of one case, of the p99 and of
// the deliveries/s.
func (r *AccessResult) Spread() (p99, delivered float64) {
	for i, a := range r.Runs {
		for _, b := range r.Runs[i+1:] {
			if a.PAM != b.PAM || len(a.Steps) < 2 || len(b.Steps) < 2 {
				continue
			}
			p99 = max(p99, math.Abs(rel(b.Steps[0].Latency.P99, a.Steps[0].Latency.P99)))
			delivered = max(delivered, math.Abs(rel(b.Steps[1].DeliveredPerSec, a.Steps[1].DeliveredPerSec)))
		}
	}
	return p99, delivered
}

func rel(x, base float64) float64 {
	if base == 0 {
		return math.Inf(1)
	}
	return x/base - 1
}

// Access runs the access scenario. It creates two keysets through the
// admin API (Access Manager off and on), signs a token for each run's
// channel with read and write on it, checks that the node refuses the
// Access Manager keyset's requests without that token or with a forged
// one, and then runs the fanout, alternating the cases.
func Access(ctx context.Context, cfg AccessConfig) (AccessResult, error) {
	res := AccessResult{Subscribers: cfg.Subscribers, LatencyLoad: cfg.LatencyLoad, SaturationLoad: cfg.SaturationLoad, Step: cfg.Step, LoadBefore: loadAvg()}
	if cfg.Subscribers <= 0 || cfg.Step <= 0 || cfg.LatencyLoad <= 0 || cfg.SaturationLoad <= 0 || cfg.Rounds < 0 {
		return res, errors.New("bench: access needs subscribers, a step and both loads > 0, and rounds >= 0")
	}
	if cfg.Rounds == 0 {
		cfg.Rounds = 2
	}
	off, err := createKeyset(ctx, cfg.Admin, false)
	if err != nil {
		return res, err
	}
	on, err := createKeyset(ctx, cfg.Admin, true)
	if err != nil {
		return res, err
	}
	if res.Refused, err = checkEnforced(ctx, cfg.Origin, on); err != nil {
		return res, err
	}
	for i := range 2 * cfg.Rounds {
		// off, on, on, off, …: drift over the runs (the machine's, the
		// node's growing state) falls on both cases alike.
		pam := (i%2 == 1) != (i/2%2 == 1)
		k := off
		if pam {
			k = on
		}
		channel := fmt.Sprintf("access%d", time.Now().UnixNano())
		t := &Groupcast{Origin: cfg.Origin, Admin: cfg.Admin, Account: k.SubscribeKey, PublishKey: k.PublishKey, PIDs: cfg.PIDs}
		if pam {
			if t.Auth, err = channelToken(k, channel); err != nil {
				return res, err
			}
		}
		if cfg.Progress != nil {
			cfg.Progress.Scenario(fmt.Sprintf("access round %d of %d, Access Manager %s", i/2+1, cfg.Rounds, onOff(pam)), "", nil)
		}
		var serverPIDs func() ([]int, error)
		if len(cfg.PIDs) > 0 {
			serverPIDs = func() ([]int, error) { return cfg.PIDs, nil }
		}
		run, err := Fanout(ctx, t, FanoutConfig{Subscribers: cfg.Subscribers, Step: cfg.Step, Loads: []float64{cfg.LatencyLoad, cfg.SaturationLoad},
			AllLoads: true, Channel: channel, ServerPIDs: serverPIDs, Progress: cfg.Progress})
		run.Target = "groupcast, Access Manager " + onOff(pam)
		res.Runs = append(res.Runs, AccessRun{PAM: pam, FanoutRun: run})
		if err != nil {
			return res, fmt.Errorf("access round %d, Access Manager %s: %w", i/2+1, onOff(pam), err)
		}
		if run.Failures > 0 {
			return res, fmt.Errorf("access round %d, Access Manager %s: %d subscribe polls failed", i/2+1, onOff(pam), run.Failures)
		}
	}
	res.LoadAfter = loadAvg()
	return res, nil
}

// cpuShare is CPU seconds over a step as a percentage of one core.
func (r *AccessResult) cpuShare(secs float64) string {
	if r.Step <= 0 || secs <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f%%", 100*secs/r.Step.Seconds())
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// createKeyset creates a keyset through the node's admin API.
func createKeyset(ctx context.Context, admin string, pam bool) (access.Keyset, error) {
	var k access.Keyset
	body, _ := json.Marshal(map[string]bool{"pam": pam})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, admin+"/v1/keysets", bytes.NewReader(body))
	if err != nil {
		return k, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return k, fmt.Errorf("create keyset: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return k, fmt.Errorf("create keyset: %w", err)
	}
	if resp.StatusCode != http.StatusCreated {
		return k, fmt.Errorf("create keyset: %s/v1/keysets: %d %s", admin, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, &k); err != nil {
		return k, fmt.Errorf("create keyset: %w", err)
	}
	if k.SubscribeKey == "" || k.PublishKey == "" || k.SecretKey == "" || k.PAM != pam {
		return k, fmt.Errorf("create keyset: unexpected answer %s", b)
	}
	return k, nil
}

// channelToken signs, with k's secret key, a token granting read
// (subscribe) and write (publish) on channel, for an hour.
func channelToken(k access.Keyset, channel string) (string, error) {
	t := access.Token{Version: access.TokenVersion, Issued: time.Now(), TTL: time.Hour,
		Resources: access.Grants{Channels: map[string]access.Perm{channel: access.Read | access.Write}}}
	return t.Sign(k.SecretKey)
}

// checkEnforced makes requests on the Access Manager keyset that the node
// must refuse with 403 (without a token, with a token signed by another
// secret, with a token for another channel) and one it must serve (with
// the right token). It returns the refusals, or an error naming the first
// request answered otherwise.
func checkEnforced(ctx context.Context, origin string, k access.Keyset) ([]string, error) {
	const channel = "access-control"
	good, err := channelToken(k, channel)
	if err != nil {
		return nil, err
	}
	forged, err := channelToken(access.Keyset{SecretKey: k.SecretKey + "-not"}, channel)
	if err != nil {
		return nil, err
	}
	other, err := channelToken(k, channel+"-other")
	if err != nil {
		return nil, err
	}
	hc := newHostClient(hostOf(origin), 1)
	defer hc.CloseIdleConnections()
	sub := fmt.Sprintf("%s/v2/subscribe/%s/%s/0", origin, k.SubscribeKey, channel)
	pub := fmt.Sprintf("%s/publish/%s/%s/0/%s/0/1", origin, k.PublishKey, k.SubscribeKey, channel)
	var refused []string
	for _, c := range []struct {
		what, url string
		want      int
	}{
		{"subscribe without a token", sub, 403},
		{"publish without a token", pub, 403},
		{"subscribe with a token signed by another secret", sub + "?auth=" + url.QueryEscape(forged), 403},
		{"publish with a token for another channel", pub + "?auth=" + url.QueryEscape(other), 403},
		{"subscribe with the token", sub + "?auth=" + url.QueryEscape(good), 200},
		{"publish with the token", pub + "?auth=" + url.QueryEscape(good), 200},
	} {
		if err := ctx.Err(); err != nil {
			return refused, err
		}
		code, body, err := fastStatus(hc, c.url)
		if err != nil {
			return refused, fmt.Errorf("access control check, %s: %w", c.what, err)
		}
		if code != c.want {
			return refused, fmt.Errorf("access control check on the Access Manager keyset, %s: answered %d, want %d (is the node started with --access keysets?): %s", c.what, code, c.want, body)
		}
		if code == 403 {
			refused = append(refused, c.what)
		}
	}
	return refused, nil
}

// fastStatus GETs u and returns the status and body.
func fastStatus(hc *fasthttp.HostClient, u string) (int, string, error) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(u)
	if err := hc.DoTimeout(req, resp, 30*time.Second); err != nil {
		return 0, "", err
	}
	return resp.StatusCode(), string(resp.Body()), nil
}

// Targets of the access scenario: Access Manager on within this of off.
const targetAccessApart = 0.05

func accessChecks(a *AccessResult) []Check {
	off, on := a.Case(false), a.Case(true)
	if off.Rounds == 0 || on.Rounds == 0 {
		return []Check{{"access: Access Manager on vs. off", "no complete pair of runs", "≤ 5% apart", false}}
	}
	p99, delivered := a.Apart()
	sp99, sdel := a.Spread()
	return []Check{
		{fmt.Sprintf("access n=%d: publish→deliver p99, Access Manager on vs. off (%.0f deliveries/s)", a.Subscribers, a.LatencyLoad),
			fmt.Sprintf("%+.1f%% (%s vs. %s; rounds of one case %.1f%% apart)", 100*p99, ms(on.P99), ms(off.P99), 100*sp99), "≤ 5% apart",
			math.Abs(p99) <= targetAccessApart && on.Failures == 0},
		{fmt.Sprintf("access n=%d: deliveries/s at saturation, Access Manager on vs. off (%.0f offered)", a.Subscribers, a.SaturationLoad),
			fmt.Sprintf("%+.1f%% (%.0f vs. %.0f; rounds of one case %.1f%% apart)", 100*delivered, on.DeliveredPerSec, off.DeliveredPerSec, 100*sdel), "≤ 5% apart",
			math.Abs(delivered) <= targetAccessApart && on.Failures == 0},
	}
}

func accessReport(b *strings.Builder, a *AccessResult) {
	fmt.Fprintf(b, "\n## access\n\nThe fanout on one groupcastd (embedded store, `--access keysets`) through two keysets made with its admin API: one with Access Manager off, requests without a token; one with it on, every subscribe and publish carrying `auth=` a token (signed with the keyset's secret) granting read and write on the run's channel. Before the runs, the node refused the Access Manager keyset's %s (403), and served it with the token. %d subscribers; each run has a step at %.0f deliveries/s (the latency compared) and one at %.0f offered (beyond what the node delivers: the deliveries/s compared), %d publishers; the cases alternate (off, on, on, off, …) so that drift, the machine's or the node's, falls on both alike, and each figure is the median over a case's rounds. Load average before %s, after %s.\n\n",
		strings.Join(a.Refused, ", "), a.Subscribers, a.LatencyLoad, a.SaturationLoad, Publishers, a.LoadBefore, a.LoadAfter)
	fmt.Fprintf(b, "| run | Access Manager | p50 | p90 | p99 | max | delivered/s at %.0f | node CPU at %.0f | delivered/s at %.0f offered | lost | failed polls |\n|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n", a.LatencyLoad, a.LatencyLoad, a.SaturationLoad)
	for i, r := range a.Runs {
		if len(r.Steps) < 2 {
			fmt.Fprintf(b, "| %d | %s | | | | | | | | | %d (incomplete) |\n", i+1, onOff(r.PAM), r.Failures)
			continue
		}
		l := r.Steps[0].Latency
		fmt.Fprintf(b, "| %d | %s | %s | %s | %s | %s | %.0f | %s | %.0f | %d | %d |\n", i+1, onOff(r.PAM), ms(l.P50), ms(l.P90), ms(l.P99), ms(l.Max),
			r.Steps[0].DeliveredPerSec, a.cpuShare(r.Steps[0].ServerCPU), r.Steps[1].DeliveredPerSec, r.Steps[0].Lost+r.Steps[1].Lost, r.Failures)
	}
	off, on := a.Case(false), a.Case(true)
	if off.Rounds > 0 && on.Rounds > 0 {
		p99, delivered := a.Apart()
		sp99, sdel := a.Spread()
		fmt.Fprintf(b, "\n| median | rounds | p50 | p99 | node CPU at the latency load | delivered/s at saturation |\n|---|---:|---:|---:|---:|---:|\n| off | %d | %s | %s | %.1f%% | %.0f |\n| on | %d | %s | %s | %.1f%% | %.0f |\n| on vs. off | | %+.1f%% | %+.1f%% | %+.1f%% | %+.1f%% |\n| rounds of one case, farthest apart | | | %.1f%% | | %.1f%% |\n",
			off.Rounds, ms(off.P50), ms(off.P99), 100*off.ServerCPU, off.DeliveredPerSec, on.Rounds, ms(on.P50), ms(on.P99), 100*on.ServerCPU, on.DeliveredPerSec,
			100*rel(on.P50, off.P50), 100*p99, 100*rel(on.ServerCPU, off.ServerCPU), 100*delivered, 100*sp99, 100*sdel)
	}
}

// accessScenario runs the access scenario on a node of its own, with the
// suite's first subscriber count and step, isolated as the fan-out
// scenarios are (node on ServerCPU, this process on LoadCPU); its loads are
// fractions of the hello-world ceiling (measured here if the fanout did
// not).
func (s *suite) accessScenario(ctx context.Context, p plan, res *Results) (err error) {
	undo, err := s.isolate(res)
	defer func() { err = errors.Join(err, undo()) }()
	if err != nil {
		return err
	}
	n := p.subscribers[0]
	if res.Ceiling[n] == 0 {
		if err := s.ceiling(ctx, p, n, res); err != nil {
			return err
		}
	}
	const listen = "127.0.0.1:18095"
	bin, args := pinned(s.serverCPU(), s.cfg.Groupcastd,
		"--listen", listen, "--admin-listen", adminAddr(listen), "--access", "keysets", "--cassandra=", "--redis=",
		"--data", filepath.Join(s.work, fmt.Sprintf("access-%d", n)), "--log-level", "warn")
	node, err := StartProc(ctx, s.work, fmt.Sprintf("access-%d", n), "http://"+listen, "/readyz", bin, args...)
	if err != nil {
		return err
	}
	defer node.Stop()
	c := res.Ceiling[n]
	a, err := Access(ctx, AccessConfig{Origin: node.URL, Admin: "http://" + adminAddr(listen), PIDs: []int{node.PID()},
		Subscribers: n, Step: p.step, LatencyLoad: accessLatencyShare * c, SaturationLoad: accessSaturationShare * c, Rounds: s.cfg.AccessRounds, Progress: s.prog})
	if len(a.Runs) > 0 {
		res.Access = &a
	}
	return err
}

// The access scenario's loads, as fractions of the hello-world ceiling
// (both measured with the node pinned to one core): one where the node has
// headroom, and one at the edge of what it delivers. At 0.5 of the ceiling
// every poll is answered with one message and the node's core was 98% busy
// in both cases, so the p99 compared was queueing at saturation, which
// magnifies any difference (and the noise: rounds of one case were 50%
// apart); 0.25 is about half of what the node answers one message at a
// time, the "half load" the fan-out scenarios compare latency at. At 2.5×
// it delivers in batches at its maximum.
const (
	accessLatencyShare    = 0.25
	accessSaturationShare = 2.5
)
