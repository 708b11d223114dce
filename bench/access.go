package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
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

// AccessResult is what the access scenario measured: the runs with
// Access Manager off and on (OnOffRun.On).
type AccessResult struct {
	OnOff
	// Refused lists the control requests on the Access Manager keyset that
	// were refused, as they must be, before the runs: proof that its
	// tokens were checked.
	Refused []string
}

// Access runs the access scenario. It creates two keysets through the
// admin API (Access Manager off and on), signs a token for each run's
// channel with read and write on it, checks that the node refuses the
// Access Manager keyset's requests without that token or with a forged
// one, and then runs the fanout, alternating the cases.
func Access(ctx context.Context, cfg AccessConfig) (AccessResult, error) {
	res := AccessResult{OnOff: OnOff{Subscribers: cfg.Subscribers, LatencyLoad: cfg.LatencyLoad, SaturationLoad: cfg.SaturationLoad, Step: cfg.Step, LoadBefore: loadAvg()}}
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
		pam := alternate(i)
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
		if err := res.run(ctx, t, pam, channel, cfg.PIDs, "Access Manager "+onOff(pam), cfg.Progress); err != nil {
			return res, fmt.Errorf("access round %d: %w", i/2+1, err)
		}
	}
	res.LoadAfter = loadAvg()
	return res, nil
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
	return a.checks("access", "Access Manager on vs. off", targetAccessApart)
}

func accessReport(b *strings.Builder, a *AccessResult) {
	fmt.Fprintf(b, "\n## access\n\nThe fanout on one groupcastd (embedded store, `--access keysets`) through two keysets made with its admin API: one with Access Manager off, requests without a token; one with it on, every subscribe and publish carrying `auth=` a token (signed with the keyset's secret) granting read and write on the run's channel. Before the runs, the node refused the Access Manager keyset's %s (403), and served it with the token. ",
		strings.Join(a.Refused, ", "))
	a.report(b, "Access Manager")
}

// accessScenario runs the access scenario on a node of its own, with the
// suite's first subscriber count and step, isolated as the fan-out
// scenarios are (node on ServerCPU, this process on LoadCPU); its loads are
// fractions of the hello-world ceiling (measured here if the fanout did
// not).
func (s *suite) accessScenario(ctx context.Context, p plan, res *Results) (err error) {
	n, undo, err := s.onOffSetup(ctx, p, res)
	defer func() { err = errors.Join(err, undo()) }()
	if err != nil {
		return err
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
// time, the "half load" the fan-out scenarios compare latency at. The
// saturation load must be beyond what the node delivers in batches: 2.5×
// was, until answers were batched well (the node now keeps up with ~25×
// the ceiling at 1,000 subscribers, so at 2.5× both cases kept up and the
// comparison compared nothing); 40× is beyond it.
const (
	accessLatencyShare    = 0.25
	accessSaturationShare = 40
)
