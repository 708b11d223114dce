package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
)

// The fan-out scenarios of the suite: the hello-world ceiling, groupcast
// and Nchan (two configurations) on one hot channel, swept to each one's
// limit and repeated; quiet channels; channel groups. They run isolated:
// servers on ServerCPU, this process on LoadCPU, Cassandra and Redis
// paused if the run owns them.

// serverCPU is the core the suite starts servers on, or -1 (unpinned).
func (s *suite) serverCPU() int {
	if s.pinned {
		return ServerCPU
	}
	return -1
}

// isolate pins this process to LoadCPU (and GOMAXPROCS to 1, as the
// servers' Go runtimes see one core) and pauses the shared servers if the
// configuration says so; it says what it did in res.Isolation and returns
// what undoes it. It says each thing once however often it runs.
func (s *suite) isolate(res *Results) (undo func() error, err error) {
	var undos []func() error
	say := func(what string) {
		if !slices.Contains(res.Isolation, what) {
			res.Isolation = append(res.Isolation, what)
		}
	}
	undo = func() error {
		var errs []error
		for i := len(undos) - 1; i >= 0; i-- {
			errs = append(errs, undos[i]())
		}
		s.pinned = false
		return errors.Join(errs...)
	}
	if s.cfg.NoPin || runtime.NumCPU() < 2 {
		say(fmt.Sprintf("not pinned (%d CPUs; --no-pin %v): servers under test and the load generator share every core", runtime.NumCPU(), s.cfg.NoPin))
	} else {
		restore, err := PinSelf(LoadCPU)
		if err != nil {
			return undo, err
		}
		procs := runtime.GOMAXPROCS(1)
		undos = append(undos, func() error { runtime.GOMAXPROCS(procs); return restore() })
		s.pinned = true
		say(fmt.Sprintf("every server under test (groupcastd, nginx master and workers, the hello-world) runs on CPU %d (started under taskset, so a Go server's GOMAXPROCS is 1); the load generator, this process (subscribers, publishers), on CPU %d with GOMAXPROCS 1", ServerCPU, LoadCPU))
	}
	if s.cfg.PauseInfra {
		pids, resume, err := PauseInfra(InfraPIDFiles)
		if err != nil {
			return undo, errors.Join(err, undo())
		}
		undos = append(undos, resume)
		say(fmt.Sprintf("Cassandra and Redis (pids %v) paused with SIGSTOP for the fan-out scenarios, which use neither, and continued (SIGCONT) after", pids))
	} else {
		say("Cassandra and Redis left running during the fan-out scenarios (not paused: --pause-infra not given)")
	}
	return undo, nil
}

// startGroupcast starts one groupcastd (the binary groupcastd, extra
// flags after the suite's own) on its embedded default (bbolt store,
// in-process log), as Nchan runs on one nginx without Redis.
func (s *suite) startGroupcast(ctx context.Context, name, groupcastd string, extra ...string) (*Proc, *Groupcast, error) {
	const listen = "127.0.0.1:18090"
	// --cassandra= and --redis= empty: the node reads GROUPCAST_CASSANDRA
	// and GROUPCAST_REDIS from the environment (which make bench sets for
	// the other scenarios) unless its flags say otherwise.
	bin, args := pinned(s.serverCPU(), groupcastd, append([]string{"--cassandra=", "--redis=",
		"--listen", listen, "--admin-listen", adminAddr(listen), "--data", filepath.Join(s.work, name), "--log-level", "warn"}, extra...)...)
	node, err := StartProc(ctx, s.work, name, "http://"+listen, "/readyz", bin, args...)
	if err != nil {
		return nil, nil, err
	}
	return node, &Groupcast{Origin: node.URL, Admin: "http://" + adminAddr(listen), Account: "bench", PIDs: []int{node.PID()}}, nil
}

// nchanVariants are the Nchan configurations compared: nginx's two
// workers, and one worker pinned (worker_cpu_affinity), which on one core
// spares the two workers' contention.
func (s *suite) nchanVariants() []NchanOptions {
	cpu := s.serverCPU()
	return []NchanOptions{{Workers: 2, CPU: max(cpu, 0), Pin: cpu >= 0}, {Workers: 1, CPU: max(cpu, 0), Pin: cpu >= 0}}
}

// startNchan starts nginx with Nchan as o says.
func (s *suite) startNchan(ctx context.Context, name string, o NchanOptions) (*Nchan, error) {
	dir := filepath.Join(s.work, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return StartNchanWith(ctx, dir, "127.0.0.1:18091", s.cfg.NchanModule, o)
}

// fanoutCase is one server configuration the fan-out scenarios run: it
// starts the server and returns the target and what stops it.
type fanoutCase struct {
	target, variant string
	start           func(ctx context.Context, name string) (Target, func() ([]int, error), func() error, error)
}

// fanoutCases are the suite's configurations: its groupcastd, then
// Nchan's if it has the module.
func (s *suite) fanoutCases() []fanoutCase {
	return append([]fanoutCase{s.groupcastCase("1 node", s.cfg.Groupcastd)}, s.nchanCases()...)
}

// groupcastCase runs the binary groupcastd with extra flags, as variant.
func (s *suite) groupcastCase(variant, groupcastd string, extra ...string) fanoutCase {
	return fanoutCase{target: "groupcast", variant: variant, start: func(ctx context.Context, name string) (Target, func() ([]int, error), func() error, error) {
		node, g, err := s.startGroupcast(ctx, name, groupcastd, extra...)
		if err != nil {
			return nil, nil, nil, err
		}
		return g, func() ([]int, error) { return []int{node.PID()}, nil }, node.Stop, nil
	}}
}

// nchanCases are Nchan's configurations (nchanVariants); none without the
// module.
func (s *suite) nchanCases() []fanoutCase {
	if s.cfg.NchanModule == "" {
		return nil
	}
	var cases []fanoutCase
	for _, o := range s.nchanVariants() {
		cases = append(cases, fanoutCase{target: "nchan", variant: o.Variant(), start: func(ctx context.Context, name string) (Target, func() ([]int, error), func() error, error) {
			n, err := s.startNchan(ctx, name, o)
			if err != nil {
				return nil, nil, nil, err
			}
			return n, n.PIDs, n.Stop, nil
		}})
	}
	return cases
}

// runCase starts c, runs one Fanout on it (wrap, if set, wraps its
// target), stops it and appends the run to *into.
func (s *suite) runCase(ctx context.Context, c fanoutCase, name string, cfg FanoutConfig, wrap func(Target) Target, into *[]FanoutRun) error {
	t, pids, stop, err := c.start(ctx, name)
	if err != nil {
		return err
	}
	if wrap != nil {
		t = wrap(t)
	}
	cfg.ServerPIDs, cfg.Progress = pids, s.prog
	run, err := Fanout(ctx, t, cfg)
	run.Variant = c.variant
	if len(run.Steps) > 0 {
		*into = append(*into, run)
	}
	return errors.Join(err, stop())
}

// fanoutScenarios runs the ceiling and the swept, repeated hot-channel
// runs for each subscriber count, then the quiet-channels and the
// channel-group scenarios, isolated. A failing run is recorded (fail) and
// the others still run.
func (s *suite) fanoutScenarios(ctx context.Context, p plan, res *Results, fail func(string, error)) (err error) {
	undo, err := s.isolate(res)
	defer func() { err = errors.Join(err, undo()) }()
	if err != nil {
		return err
	}
	cases := s.fanoutCases()
	for _, n := range p.subscribers {
		fail(fmt.Sprintf("ceiling n=%d", n), s.ceiling(ctx, p, n, res))
		c := res.Ceiling[n]
		if c == 0 {
			c = 100_000
		}
		sw := p.sweep
		sw.Start, sw.Max = sw.Start*c, sw.Max*c
		repeats := p.repeats
		if s.cfg.Repeats > 0 {
			repeats = s.cfg.Repeats
		}
		for r := range max(1, repeats) {
			for i, fc := range cases {
				name := fmt.Sprintf("fanout-%s-%d-%d-%d", fc.target, i, n, r)
				fail(fmt.Sprintf("fanout %s (%s) n=%d repeat %d", fc.target, fc.variant, n, r+1),
					s.runCase(ctx, fc, name, FanoutConfig{Subscribers: n, Step: p.step, Sweep: &sw}, nil, &res.Fanout))
				if ctx.Err() != nil {
					return ctx.Err()
				}
			}
		}
		// Latency at the same load: every configuration at the load of
		// groupcast's typical half-the-max step, in alternating rounds
		// (groupcast, each Nchan configuration, groupcast, ...), so each
		// side's p99 is the median of as many runs as the sweeps repeat.
		// The typical run's own half step is groupcast's first sample.
		if load, ok := halfLoad(res.Fanout, n); ok {
			memoryOnly := s.groupcastCase(memoryOnlyVariant, s.cfg.Groupcastd, "--history=false")
			for r := range max(1, repeats) {
				name := fmt.Sprintf("samehalf-memory-%d-%d", n, r)
				fail(fmt.Sprintf("groupcast (%s) n=%d at its half load, round %d", memoryOnly.variant, n, r+1),
					s.runCase(ctx, memoryOnly, name, FanoutConfig{Subscribers: n, Step: p.step, Loads: []float64{load}, AllLoads: true}, nil, &res.HalfMemoryOnly))
				for i, fc := range cases {
					into := &res.PeerAtHalf
					if fc.target == "groupcast" {
						if r == 0 {
							continue
						}
						into = &res.HalfAgain
					}
					name := fmt.Sprintf("samehalf-%s-%d-%d-%d", fc.target, i, n, r)
					fail(fmt.Sprintf("%s (%s) n=%d at groupcast's half load, round %d", fc.target, fc.variant, n, r+1),
						s.runCase(ctx, fc, name, FanoutConfig{Subscribers: n, Step: p.step, Loads: []float64{load}, AllLoads: true}, nil, into))
					if ctx.Err() != nil {
						return ctx.Err()
					}
				}
			}
		}
	}
	// Quiet channels: a subscriber per channel, a fixed rate spread over
	// them.
	for i, fc := range cases {
		name := fmt.Sprintf("quiet-%s-%d", fc.target, i)
		fail(fmt.Sprintf("quiet channels %s (%s)", fc.target, fc.variant),
			s.runCase(ctx, fc, name, FanoutConfig{Subscribers: p.quietSubs, Channels: p.quietSubs, Step: p.step, Loads: []float64{p.quietRate}, AllLoads: true}, nil, &res.Quiet))
	}
	// Channel groups: every subscriber of multiChannels channels at once.
	members := make([]string, p.multiChannels)
	for i := range members {
		members[i] = fmt.Sprintf("m%d", i)
	}
	for i, fc := range cases {
		wrap := func(t Target) Target {
			switch t := t.(type) {
			case *Groupcast:
				return &GroupcastGroup{Groupcast: t, Group: "fangroup", Members: members}
			case *Nchan:
				return &NchanMulti{Nchan: t, Members: members}
			}
			return t
		}
		name := fmt.Sprintf("multi-%s-%d", fc.target, i)
		c := res.Ceiling[p.multiSubs] // the ceiling at the scenario's client count, if measured
		if c == 0 {
			c = res.Ceiling[p.subscribers[0]]
		}
		if c == 0 {
			c = 100_000
		}
		sw := p.sweep
		sw.Start, sw.Max = sw.Start*c, sw.Max*c
		fail(fmt.Sprintf("channel groups %s (%s)", fc.target, fc.variant),
			s.runCase(ctx, fc, name, FanoutConfig{Subscribers: p.multiSubs, Step: p.step, Sweep: &sw}, wrap, &res.Multi))
	}
	return ctx.Err()
}

// memoryOnlyVariant names groupcast run with Message Persistence off.
const memoryOnlyVariant = "1 node, --history=false"

// halfLoad is the offered load of the half-the-max step of groupcast's
// typical run with n subscribers.
func halfLoad(runs []FanoutRun, n int) (float64, bool) {
	g, ok := best(summaries(runs, n), "groupcast")
	if !ok {
		return 0, false
	}
	st, ok := g.Typical.HalfStep()
	return st.Offered, ok
}
