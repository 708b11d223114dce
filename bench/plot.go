package bench

import (
	"cmp"
	"fmt"
	"path/filepath"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// series is one named line of a plot.
type series struct {
	name string
	xys  plotter.XYs
}

func cdfSeries(name string, l Latencies) (series, bool) {
	if len(l.CDF) == 0 {
		return series{}, false
	}
	s := series{name: name}
	for _, q := range l.CDF {
		s.xys = append(s.xys, plotter.XY{X: max(q.US, 1) / 1000, Y: q.Q})
	}
	return s, true
}

// writePlots draws the latency CDFs and throughput against offered load
// into dir and returns the file names it wrote.
func writePlots(dir string, r *Results) ([]string, error) {
	var written []string
	save := func(file, title, xlabel, ylabel string, logX bool, lines []series) error {
		if len(lines) == 0 {
			return nil
		}
		p := plot.New()
		p.Title.Text = title
		p.X.Label.Text, p.Y.Label.Text = xlabel, ylabel
		if logX {
			p.X.Scale = plot.LogScale{}
			p.X.Tick.Marker = plot.LogTicks{Prec: -1}
		}
		// The empty corner: bottom left under CDFs, top left above
		// throughput lines.
		p.Legend.Left = true
		p.Legend.Top = !logX
		p.Add(plotter.NewGrid())
		var args []any
		for _, s := range lines {
			args = append(args, s.name, s.xys)
		}
		if err := plotutil.AddLinePoints(p, args...); err != nil {
			return fmt.Errorf("plot %s: %w", file, err)
		}
		if err := p.Save(8*vg.Inch, 5*vg.Inch, filepath.Join(dir, file)); err != nil {
			return fmt.Errorf("plot %s: %w", file, err)
		}
		written = append(written, file)
		return nil
	}
	const cdfX, cdfY = "latency (ms, log scale)", "percentile"

	var prop []series
	if s, ok := cdfSeries("overlay on", r.Propagation.Overlay); ok {
		prop = append(prop, s)
	}
	if s, ok := cdfSeries("baseline: overlay off, 1 s refresh", r.Propagation.Baseline); ok {
		prop = append(prop, s)
	}
	if err := save("latency-propagation.png", "propagation: edit on A → visible on B", cdfX, cdfY, true, prop); err != nil {
		return written, err
	}

	// The latency plot shows each configuration's typical run (the median
	// of its repeats); the throughput plot every run.
	var typical []FanoutRun
	for _, n := range r.subscriberCounts() {
		for _, s := range summaries(r.Fanout, n) {
			typical = append(typical, s.Typical)
		}
	}
	var fan []series
	for _, f := range typical {
		if st, ok := f.HalfStep(); ok {
			if s, ok := cdfSeries(fmt.Sprintf("%s n=%d, half the max (%.0f/s)", label(f), f.Subscribers, st.Offered), st.Latency); ok {
				fan = append(fan, s)
			}
		}
		if st, ok := f.Max(); ok {
			if s, ok := cdfSeries(fmt.Sprintf("%s n=%d, max kept up with (%.0f/s)", label(f), f.Subscribers, st.Offered), st.Latency); ok {
				fan = append(fan, s)
			}
		}
	}
	if err := save("latency-fanout.png", "fanout: publish → deliver", cdfX, cdfY, true, fan); err != nil {
		return written, err
	}

	var gt []series
	if r.Groups != nil {
		if s, ok := cdfSeries("groups: publish → deliver while membership changes 100/s", r.Groups.Latency); ok {
			gt = append(gt, s)
		}
	}
	if r.Tokens != nil {
		if s, ok := cdfSeries("tokens: list on B with the token of an edit on A", r.Tokens.Latency); ok {
			gt = append(gt, s)
		}
	}
	if err := save("latency-groups-tokens.png", "groups and tokens", cdfX, cdfY, true, gt); err != nil {
		return written, err
	}

	var tp []series
	for _, f := range r.Fanout {
		s := series{name: fmt.Sprintf("%s n=%d", label(f), f.Subscribers)}
		for _, st := range f.Steps {
			s.xys = append(s.xys, plotter.XY{X: st.Offered, Y: st.DeliveredPerSec})
		}
		sortXY(s.xys)
		tp = append(tp, s)
	}
	for _, n := range r.subscriberCounts() {
		if c := r.Ceiling[n]; c > 0 && len(tp) > 0 {
			hi := 0.0
			for _, s := range tp {
				for _, xy := range s.xys {
					hi = max(hi, xy.X)
				}
			}
			tp = append(tp, series{name: fmt.Sprintf("hello-world ceiling n=%d (req/s)", n), xys: plotter.XYs{{X: 0, Y: c}, {X: hi, Y: c}}})
		}
	}
	if err := save("throughput.png", "fanout: delivered vs. offered load", "offered deliveries/s (publishes/s × subscribers)", "delivered messages/s", false, tp); err != nil {
		return written, err
	}
	return written, nil
}

// label names a run's server and configuration in plots.
func label(f FanoutRun) string {
	if f.Variant == "" {
		return f.Target
	}
	return f.Target + " (" + f.Variant + ")"
}

func sortXY(xys plotter.XYs) {
	slices.SortFunc(xys, func(a, b plotter.XY) int { return cmp.Compare(a.X, b.X) })
}

// WritePlots draws a soak's samples over time into dir: the node's memory
// (soak-memory.png), its goroutines, descriptors and parked polls
// (soak-goroutines.png), and publish→deliver latency (soak-latency.png).
// It returns the file names it wrote.
func (r SoakResult) WritePlots(dir string) ([]string, error) {
	line := func(name string, y func(SoakSample) float64) series {
		s := series{name: name}
		for _, sm := range r.Samples {
			s.xys = append(s.xys, plotter.XY{X: sm.At.Minutes(), Y: y(sm)})
		}
		return s
	}
	const mib = 1 << 20
	plots := []struct {
		file, title, ylabel string
		lines               []series
	}{
		{"soak-memory.png", "soak: the node's memory", "MiB", []series{
			line("RSS", func(s SoakSample) float64 { return s.RSS / mib }),
			line("heap goal", func(s SoakSample) float64 { return s.HeapGoal / mib }),
		}},
		{"soak-goroutines.png", "soak: goroutines, descriptors, parked polls", "count", []series{
			line("goroutines", func(s SoakSample) float64 { return s.Goroutines }),
			line("open fds", func(s SoakSample) float64 { return s.FDs }),
			line("parked polls", func(s SoakSample) float64 { return s.Parked }),
		}},
		{"soak-latency.png", "soak: publish → deliver, per sample interval", "ms", []series{
			line("p50", func(s SoakSample) float64 { return s.P50 }),
			line("p99", func(s SoakSample) float64 { return s.P99 }),
		}},
	}
	var written []string
	for _, pl := range plots {
		p := plot.New()
		p.Title.Text = pl.title
		p.X.Label.Text, p.Y.Label.Text = "minutes since the start", pl.ylabel
		p.Y.Min = 0
		p.Legend.Left, p.Legend.Top = true, true
		p.Add(plotter.NewGrid())
		var args []any
		for _, s := range pl.lines {
			args = append(args, s.name, s.xys)
		}
		if err := plotutil.AddLinePoints(p, args...); err != nil {
			return written, fmt.Errorf("plot %s: %w", pl.file, err)
		}
		if err := p.Save(8*vg.Inch, 4*vg.Inch, filepath.Join(dir, pl.file)); err != nil {
			return written, fmt.Errorf("plot %s: %w", pl.file, err)
		}
		written = append(written, pl.file)
	}
	return written, nil
}
