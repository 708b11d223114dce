package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"time"
)

// AtConfig is a run of fan-out configurations at fixed loads (At).
type AtConfig struct {
	// Groupcastd are the node binaries compared, each a configuration
	// run on its embedded default as the suite runs it; Args are extra
	// flags for every one of them.
	Groupcastd []string
	Args       []string
	// NchanModule adds Nchan's two configurations (as the suite runs
	// them); empty runs groupcast only.
	NchanModule string
	// Subscribers on Channels channels (0 means 1), and the offered
	// deliveries/s of the steps of every run, each Step long.
	Subscribers, Channels int
	Loads                 []float64
	Step                  time.Duration
	// Rounds is how many times each configuration runs, in alternating
	// rounds (every configuration once per round); 0 means 2.
	Rounds int
	// NoPin runs unpinned; by default the servers run on ServerCPU and
	// this process on LoadCPU, as in the suite's fan-out scenarios.
	NoPin bool
	// Log gets the isolation said and the progress.
	Log io.Writer
}

// AtRun is one run of At: which configuration, and its steps.
type AtRun struct {
	Config string // "groupcast <binary>" or "nchan <variant>"
	Round  int
	FanoutRun
}

// At runs every configuration of cfg at cfg.Loads, each run on a fresh
// process, in alternating rounds: the suite's latency-at-the-same-load
// comparison on demand, to measure what a change does at a given load
// against the peer in the same session without a full sweep. Runs that
// ran are returned with the first error.
func At(ctx context.Context, cfg AtConfig) ([]AtRun, error) {
	if len(cfg.Groupcastd) == 0 && cfg.NchanModule == "" {
		return nil, errors.New("bench at: nothing to run: no groupcastd binary and no Nchan module")
	}
	if cfg.Subscribers < 1 || len(cfg.Loads) == 0 {
		return nil, errors.New("bench at: at least one subscriber and one load")
	}
	log := cfg.Log
	if log == nil {
		log = io.Discard
	}
	work, err := os.MkdirTemp("", "groupcast-bench-at-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	s := &suite{cfg: SuiteConfig{NchanModule: cfg.NchanModule, NoPin: cfg.NoPin, Log: log}, work: work, prog: NewProgress(log)}
	defer s.prog.Close()
	var res Results
	undo, err := s.isolate(&res)
	for _, what := range res.Isolation {
		fmt.Fprintln(log, what)
	}
	if err != nil {
		return nil, errors.Join(err, undo())
	}
	defer undo()
	if err := RaiseFileLimit(); err != nil {
		return nil, err
	}
	var cases []fanoutCase
	for _, bin := range cfg.Groupcastd {
		cases = append(cases, s.groupcastCase(bin, bin, cfg.Args...))
	}
	cases = append(cases, s.nchanCases()...)
	rounds := cfg.Rounds
	if rounds == 0 {
		rounds = 2
	}
	var out []AtRun
	for r := range rounds {
		for i, c := range cases {
			var runs []FanoutRun
			err := s.runCase(ctx, c, fmt.Sprintf("at-%d-%d", i, r), FanoutConfig{Subscribers: cfg.Subscribers, Channels: cfg.Channels, Step: cfg.Step, Loads: cfg.Loads, AllLoads: true}, nil, &runs)
			for _, run := range runs {
				out = append(out, AtRun{Config: c.target + " " + c.variant, Round: r + 1, FanoutRun: run})
			}
			if err != nil {
				return out, fmt.Errorf("%s %s, round %d: %w", c.target, c.variant, r+1, err)
			}
		}
	}
	return out, nil
}

// AtMedian is one configuration's p99s at one load, over its runs, and
// their median.
type AtMedian struct {
	Config string
	Load   float64 // as asked for (AtConfig.Loads)
	P99s   []float64
	Median float64
}

// Medians are the median p99 of each configuration at each load, in the
// order the configurations first ran and of the loads (a load given twice
// pools its steps). Step i of a run ran at loads[i].
func Medians(runs []AtRun, loads []float64) []AtMedian {
	p99s := map[string]map[float64][]float64{}
	var order []string
	for _, r := range runs {
		if p99s[r.Config] == nil {
			p99s[r.Config] = map[float64][]float64{}
			order = append(order, r.Config)
		}
		for i, st := range r.Steps {
			if i < len(loads) {
				p99s[r.Config][loads[i]] = append(p99s[r.Config][loads[i]], st.Latency.P99)
			}
		}
	}
	distinct := slices.Compact(slices.Sorted(slices.Values(loads)))
	var out []AtMedian
	for _, c := range order {
		for _, l := range distinct {
			if xs := p99s[c][l]; len(xs) > 0 {
				slices.Sort(xs)
				out = append(out, AtMedian{Config: c, Load: l, P99s: xs, Median: median(xs)})
			}
		}
	}
	return out
}
