package bench

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"
)

// HistoryConfig describes the history scenario: the fanout on a node with
// Message Persistence off (--history=false) and on (the default: every
// message stored by the archiver), a fresh node per run.
type HistoryConfig struct {
	// Start starts a node with persistence on or off for round i and
	// returns it as a target with what stops it.
	Start                       func(ctx context.Context, on bool, i int) (*Groupcast, func() error, error)
	Subscribers                 int
	Step                        time.Duration
	LatencyLoad, SaturationLoad float64
	Rounds                      int // times each case runs, alternating; zero means 2
	Progress                    *Progress
}

// HistoryResult is what the history scenario measured: the runs with
// persistence off and on (OnOffRun.On).
type HistoryResult struct {
	OnOff
	// Stored is how many messages the nodes with persistence on stored
	// (groupcast_archived_messages_total, summed): proof that it was on.
	Stored float64
}

// History runs the history scenario.
func History(ctx context.Context, cfg HistoryConfig) (HistoryResult, error) {
	res := HistoryResult{OnOff: OnOff{Subscribers: cfg.Subscribers, LatencyLoad: cfg.LatencyLoad, SaturationLoad: cfg.SaturationLoad, Step: cfg.Step, LoadBefore: loadAvg()}}
	if cfg.Start == nil || cfg.Subscribers <= 0 || cfg.Step <= 0 || cfg.LatencyLoad <= 0 || cfg.SaturationLoad <= 0 || cfg.Rounds < 0 {
		return res, errors.New("bench: history needs a start func, subscribers, a step and both loads > 0, and rounds >= 0")
	}
	if cfg.Rounds == 0 {
		cfg.Rounds = 2
	}
	for i := range 2 * cfg.Rounds {
		on := alternate(i)
		if cfg.Progress != nil {
			cfg.Progress.Scenario(fmt.Sprintf("history round %d of %d, persistence %s", i/2+1, cfg.Rounds, onOff(on)), "", nil)
		}
		t, stop, err := cfg.Start(ctx, on, i)
		if err != nil {
			return res, err
		}
		err = res.run(ctx, t, on, fmt.Sprintf("history%d", i), t.PIDs, "persistence "+onOff(on), cfg.Progress)
		if err == nil && on {
			// The archiver stores within its 50 ms batch window: what the
			// node stored by the end of the run's drain.
			var n float64
			if n, err = scrape(t.Admin, "groupcast_archived_messages_total"); err == nil {
				if n == 0 {
					err = errors.New("persistence on, but the node stored no message (groupcast_archived_messages_total = 0)")
				}
				res.Stored += n
			}
		}
		err = errors.Join(err, stop())
		if err != nil {
			return res, fmt.Errorf("history round %d: %w", i/2+1, err)
		}
	}
	res.LoadAfter = loadAvg()
	return res, nil
}

// Message Persistence on within this of off (the target).
const targetHistoryApart = 0.10

func historyChecks(h *HistoryResult) []Check {
	return h.checks("history", "persistence on vs. off", targetHistoryApart)
}

func historyReport(b *strings.Builder, h *HistoryResult) {
	fmt.Fprintf(b, "\n## history\n\nThe fanout on one groupcastd (embedded store) started per run with Message Persistence off (`--history=false`) or on (every message stored by the archiver into the bbolt file, batched; %.0f messages stored over the runs with it on). ", h.Stored)
	h.report(b, "persistence")
}

// historyScenario runs the history scenario isolated, as the access
// scenario is, at the same loads.
func (s *suite) historyScenario(ctx context.Context, p plan, res *Results) (err error) {
	n, undo, err := s.onOffSetup(ctx, p, res)
	defer func() { err = errors.Join(err, undo()) }()
	if err != nil {
		return err
	}
	const listen = "127.0.0.1:18096"
	start := func(ctx context.Context, on bool, i int) (*Groupcast, func() error, error) {
		name := fmt.Sprintf("history-%d-%d", n, i)
		bin, args := pinned(s.serverCPU(), s.cfg.Groupcastd, "--cassandra=", "--redis=", fmt.Sprintf("--history=%v", on),
			"--listen", listen, "--admin-listen", adminAddr(listen), "--data", filepath.Join(s.work, name), "--log-level", "warn")
		node, err := StartProc(ctx, s.work, name, "http://"+listen, "/readyz", bin, args...)
		if err != nil {
			return nil, nil, err
		}
		return &Groupcast{Origin: node.URL, Admin: "http://" + adminAddr(listen), Account: "bench", PIDs: []int{node.PID()}}, node.Stop, nil
	}
	c := res.Ceiling[n]
	h, err := History(ctx, HistoryConfig{Start: start, Subscribers: n, Step: p.step, LatencyLoad: accessLatencyShare * c, SaturationLoad: accessSaturationShare * c,
		Rounds: s.cfg.AccessRounds, Progress: s.prog})
	if len(h.Runs) > 0 {
		res.History = &h
	}
	return err
}
