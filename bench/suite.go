package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// SuiteConfig describes a run of the whole benchmark suite.
type SuiteConfig struct {
	// Quick is the smoke version: fewer samples, shorter steps, 1,000
	// subscribers only.
	Quick bool
	// Out is the directory a run's own timestamped directory goes under.
	Out string
	// Groupcastd is the node binary; Groupcast the CLI binary, which serves
	// the hello-world reference (groupcast bench hello-server).
	Groupcastd, Groupcast string
	// Cassandra hosts and Redis address for the two-node scenarios.
	Cassandra, Redis string
	// NchanModule is the path of Nchan's nginx module; empty skips the
	// peer, and the report says so.
	NchanModule string
	// Regions are the two regions of the geo scenario (each its own
	// Cassandra datacenter and Redis); fewer than two skip it.
	Regions []Region
	// Command is how the run was started, quoted in the report.
	Command string
	Log     io.Writer
	// AccessRounds is how many times the access and history scenarios run
	// each case; zero means 2.
	AccessRounds int
	// NoPin runs the fan-out scenarios unpinned. By default (on a machine
	// with two cores or more) every server under test runs on ServerCPU
	// and this process on LoadCPU while they run.
	NoPin bool
	// PauseInfra stops (SIGSTOP) the Cassandra and Redis processes named
	// by InfraPIDFiles during the fan-out scenarios, which use neither, and
	// continues them (SIGCONT) after, also on error or interrupt. Only for
	// a run that owns those servers (make bench): others' tests would stall.
	PauseInfra bool
	// Repeats is how many times each fan-out target runs, alternating
	// (groupcast, Nchan, tuned Nchan, groupcast, …); zero means 3.
	Repeats int
	// Scenarios names the scenarios to run: "pair" (propagation, tokens,
	// groups), "baseline", "fanout" (ceiling, groupcast, peer, quiet
	// channels, channel groups), "decode" (the client's decode cost), "access"
	// (the fanout with Access Manager off and on), "history" (with Message
	// Persistence off and on), "cluster" and "geo".
	// Empty runs them all.
	Scenarios []string
}

// Results is everything one suite run measured; results.json holds it.
type Results struct {
	Started time.Time
	Seconds float64
	Quick   bool
	Command string
	Machine Machine
	Errors  []string `json:",omitempty"`
	Notes   []string `json:",omitempty"`

	Propagation struct{ Overlay, Baseline Latencies }
	Tokens      *TokensResult
	Groups      *GroupsResult
	Cluster     *ClusterResult  `json:",omitempty"`
	Geo         *GeoResult      `json:",omitempty"`
	Ceiling     map[int]float64 // requests/s by client concurrency
	Fanout      []FanoutRun     // groupcast and the peer, every repeat
	// Quiet is the quiet-channels scenario: a subscriber per channel,
	// publishes spread over the channels; Multi subscribers of several
	// channels at once (a channel group; Nchan's multi-channel subscribe).
	Quiet []FanoutRun `json:",omitempty"`
	Multi []FanoutRun `json:",omitempty"`
	// PeerAtHalf is each Nchan configuration run again at the load where
	// groupcast's typical run measured its p99 (half its maximum), per
	// subscriber count, as many times as the sweeps repeat; HalfAgain is
	// groupcast run again at that load, one time fewer (the typical run's
	// half step is its first sample): the latency comparison at the same
	// load, median against median.
	PeerAtHalf []FanoutRun `json:",omitempty"`
	HalfAgain  []FanoutRun `json:",omitempty"`
	// HalfMemoryOnly is groupcast with Message Persistence off
	// (--history=false: messages kept in memory only, in the channel's
	// ring, as Nchan keeps them) at the same load, as many times as
	// PeerAtHalf: beside the comparison, not in it, which holds groupcast's
	// default (every message stored).
	HalfMemoryOnly []FanoutRun  `json:",omitempty"`
	Decode         []DecodeCost `json:",omitempty"`
	// Isolation says how the fan-out scenarios ran: pinning, paused servers.
	Isolation []string       `json:",omitempty"`
	Access    *AccessResult  `json:",omitempty"`
	History   *HistoryResult `json:",omitempty"`
	Checks    []Check
}

// Machine describes where the run happened.
type Machine struct {
	CPUs      int
	CPU       string
	Kernel    string
	GoVersion string
}

// Check is one target the report states next to its figure.
type Check struct {
	What   string
	Figure string
	Target string
	Met    bool
}

type plan struct {
	propSamples, baseSamples, tokenSamples int
	groupSubs                              int
	groupFor, step, ceilingFor             time.Duration
	subscribers                            []int
	loads                                  []float64 // fractions of the ceiling
	sweep                                  Sweep     // Start and Max as fractions of the ceiling
	repeats                                int
	quietSubs                              int     // subscribers = channels of the quiet scenario
	quietRate                              float64 // its publishes/s
	multiSubs, multiChannels               int     // the channel-group scenario
	cluster                                clusterPlan
	geo                                    geoPlan
}

// clusterPlan sizes the cluster scenario.
type clusterPlan struct {
	accounts       int   // whose state the memory runs create
	nodes          []int // cluster sizes of the memory runs
	workers        int   // concurrent requests creating the state
	forwardSamples int   // lists through each of an owner and a non-owner
	failoverSubs   int
	before, after  time.Duration // delivering before the kill, publishing after it
}

func planFor(quick bool) plan {
	if quick {
		return plan{propSamples: 200, baseSamples: 5, tokenSamples: 150, groupSubs: 5, groupFor: 3 * time.Second,
			step: 2500 * time.Millisecond, ceilingFor: 2 * time.Second, subscribers: []int{LatencySubscribers, 1000}, loads: []float64{0.5, 1, 2},
			sweep: Sweep{Start: 0.5, Factor: 2, Max: 64, Precision: 0.15, Steps: 12}, repeats: 3,
			quietSubs: 2000, quietRate: 200, multiSubs: 200, multiChannels: 10,
			cluster: clusterPlan{accounts: 1000, nodes: []int{1, 2}, workers: 32, forwardSamples: 300, failoverSubs: 10, before: 2 * time.Second, after: 6 * time.Second},
			geo:     geoPlan{edits: 100, messages: 100, quiet: 40, baseline: 3}}
	}
	return plan{propSamples: 1000, baseSamples: 30, tokenSamples: 1000, groupSubs: 20, groupFor: 10 * time.Second,
		step: 10 * time.Second, ceilingFor: 10 * time.Second, subscribers: []int{LatencySubscribers, 1000, 10000}, loads: []float64{0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 4},
		sweep: Sweep{Start: 0.25, Factor: 2, Max: 64, Precision: 0.1, Steps: 14}, repeats: 3,
		quietSubs: 10_000, quietRate: 1000, multiSubs: 1000, multiChannels: 10,
		cluster: clusterPlan{accounts: 10_000, nodes: []int{1, 2, 3}, workers: 64, forwardSamples: 2000, failoverSubs: 30, before: 3 * time.Second, after: 10 * time.Second},
		geo:     geoPlan{edits: 400, messages: 400, quiet: 150, baseline: 5}}
}

// RunSuite runs every scenario and writes results.json, report.md and the
// plots into a new directory under cfg.Out, which it returns. A scenario
// that fails is recorded in Results.Errors and the others still run.
func RunSuite(ctx context.Context, cfg SuiteConfig) (*Results, string, error) {
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	res := &Results{Started: time.Now(), Quick: cfg.Quick, Command: cfg.Command, Machine: machine(), Ceiling: map[int]float64{}}
	dir := filepath.Join(cfg.Out, res.Started.UTC().Format("20060102T150405Z"))
	work := filepath.Join(dir, "work")
	if err := os.MkdirAll(work, 0o755); err != nil {
		return nil, "", err
	}
	if err := RaiseFileLimit(); err != nil {
		return nil, "", err
	}
	p := planFor(cfg.Quick)
	prog := NewProgress(cfg.Log)
	fail := func(scenario string, err error) {
		if err != nil {
			res.Errors = append(res.Errors, fmt.Sprintf("%s: %v", scenario, err))
		}
	}
	s := &suite{cfg: cfg, work: work, prog: prog}

	if s.runs("pair") {
		fail("propagation/tokens/groups", s.pairScenarios(ctx, p, res))
	}
	if s.runs("baseline") {
		fail("propagation baseline", s.baseline(ctx, p, res))
	}
	if s.runs("decode") || s.runs("fanout") {
		res.Decode = DecodeCosts()
	}
	if s.runs("fanout") {
		fail("fanout", s.fanoutScenarios(ctx, p, res, fail))
	}
	if s.runs("access") {
		fail("access", s.accessScenario(ctx, p, res))
	}
	if s.runs("history") {
		fail("history", s.historyScenario(ctx, p, res))
	}
	if s.runs("cluster") {
		fail("cluster", s.clusterScenario(ctx, p.cluster, res))
	}
	if s.runs("geo") {
		fail("geo", s.geo(ctx, p.geo, res))
	}
	if cfg.NchanModule == "" && s.runs("fanout") {
		res.Notes = append(res.Notes, "peer skipped: no Nchan module given (scripts/nchan install provides one)")
	}
	prog.Close()
	res.Seconds = time.Since(res.Started).Seconds()
	res.Checks = checks(res)
	if err := writeResults(dir, res); err != nil {
		return res, dir, err
	}
	if len(res.Errors) > 0 { // keep the servers' logs
		return res, dir, fmt.Errorf("%d scenario(s) failed (server logs in %s): %s", len(res.Errors), work, strings.Join(res.Errors, "; "))
	}
	if err := os.RemoveAll(work); err != nil {
		return res, dir, err
	}
	return res, dir, nil
}

type suite struct {
	cfg    SuiteConfig
	work   string
	prog   *Progress
	seq    int
	pinned bool // servers start on ServerCPU (during the fan-out scenarios)
}

// pair starts two groupcastd nodes on real Cassandra and Redis, as two
// hosts (127.0.0.1 and 127.0.0.2), in a fresh keyspace.
func (s *suite) pair(ctx context.Context, extra ...string) ([]*Proc, error) {
	s.seq++
	ks := fmt.Sprintf("bench_%d_%d", time.Now().Unix(), s.seq)
	var procs []*Proc
	for i := 1; i <= 2; i++ {
		listen := fmt.Sprintf("127.0.0.%d:1808%d", i, i)
		args := append([]string{"--listen", listen, "--admin-listen", adminAddr(listen), "--data", filepath.Join(s.work, fmt.Sprintf("%s-%d", ks, i)),
			"--cassandra", s.cfg.Cassandra, "--keyspace", ks, "--redis", s.cfg.Redis, "--redis-prefix", ks,
			"--secret", "bench-secret-0123456789", "--node", fmt.Sprintf("n%d", i), "--log-level", "warn"}, extra...)
		p, err := StartProc(ctx, s.work, fmt.Sprintf("%s-node%d", ks, i), "http://"+listen, "/readyz", s.cfg.Groupcastd, args...)
		if err != nil {
			stopAll(procs)
			return nil, err
		}
		p.Admin = "http://" + adminAddr(listen)
		procs = append(procs, p)
	}
	return procs, nil
}

// runs reports whether the run includes the named scenario.
func (s *suite) runs(name string) bool {
	return len(s.cfg.Scenarios) == 0 || slices.Contains(s.cfg.Scenarios, name)
}

func stopAll(procs []*Proc) {
	for _, p := range procs {
		_ = p.Stop()
	}
}

func (s *suite) pairScenarios(ctx context.Context, p plan, res *Results) error {
	procs, err := s.pair(ctx)
	if err != nil {
		return err
	}
	defer stopAll(procs)
	a, b := procs[0].URL, procs[1].URL
	s.prog.Scenario("propagation (overlay on)", "", nil)
	lat, err := Propagation(ctx, PropagationConfig{A: a, B: b, Account: "bench", Group: "prop", Samples: p.propSamples})
	if err != nil {
		return err
	}
	res.Propagation.Overlay = lat
	tok, err := Tokens(ctx, TokensConfig{A: a, B: b, BAdmin: procs[1].Admin, Account: "bench", Samples: p.tokenSamples, Progress: s.prog})
	if err != nil {
		return err
	}
	res.Tokens = &tok
	s.prog.Scenario("groups: parking subscribers", "", nil)
	g, err := Groups(ctx, GroupsConfig{A: a, B: b, BAdmin: procs[1].Admin, Account: "bench", Subscribers: p.groupSubs, EditsPerSec: 100, Duration: p.groupFor, Pool: 8, Progress: s.prog})
	if err != nil {
		return err
	}
	res.Groups = &g
	return nil
}

func (s *suite) baseline(ctx context.Context, p plan, res *Results) error {
	procs, err := s.pair(ctx, "--volatile-accounts", "none", "--refresh-every", "1s")
	if err != nil {
		return err
	}
	defer stopAll(procs)
	s.prog.Scenario("propagation baseline (overlay off, 1 s refresh)", "", nil)
	lat, err := Propagation(ctx, PropagationConfig{A: procs[0].URL, B: procs[1].URL, Account: "bench", Group: "prop", Samples: p.baseSamples, Timeout: 5 * time.Second})
	res.Propagation.Baseline = lat
	return err
}

func (s *suite) ceiling(ctx context.Context, p plan, n int, res *Results) error {
	const listen = "127.0.0.1:18099"
	bin, args := pinned(s.serverCPU(), s.cfg.Groupcast, "bench", "hello-server", listen)
	hello, err := StartProc(ctx, s.work, fmt.Sprintf("hello-%d", n), "http://"+listen, "/", bin, args...)
	if err != nil {
		return err
	}
	defer hello.Stop()
	s.prog.Scenario(fmt.Sprintf("ceiling n=%d", n), "", nil)
	rps, err := Ceiling(ctx, listen, n, p.ceilingFor)
	res.Ceiling[n] = rps
	return err
}

func machine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version()}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				m.CPU = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	return m
}

func writeResults(dir string, res *Results) error {
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), b, 0o644); err != nil {
		return err
	}
	plots, err := writePlots(dir, res)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "report.md"), []byte(Report(res, plots)), 0o644)
}

// Rerender reads a run's results.json and draws its report and plots again
// (after a change to how they are drawn; the figures stay the run's).
func Rerender(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, "results.json"))
	if err != nil {
		return err
	}
	var res Results
	if err := json.Unmarshal(b, &res); err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	res.Checks = checks(&res)
	return writeResults(dir, &res)
}
