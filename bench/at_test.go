package bench

import (
	"reflect"
	"testing"
)

// TestMedians: each configuration's p99s at each load asked for, its steps
// matched to the loads by position, a load given twice pooled, the median
// of an even count the mean of the middle two.
func TestMedians(t *testing.T) {
	run := func(config string, p99s ...float64) AtRun {
		r := AtRun{Config: config}
		for _, p := range p99s {
			r.Steps = append(r.Steps, FanoutStep{Offered: 1234567.0000001, Latency: Latencies{P99: p}})
		}
		return r
	}
	loads := []float64{2000, 1000, 2000}
	got := Medians([]AtRun{run("b", 5, 1, 7), run("a", 9, 3, 11), run("b", 6, 2, 8)}, loads)
	want := []AtMedian{
		{Config: "b", Load: 1000, P99s: []float64{1, 2}, Median: 1.5},
		{Config: "b", Load: 2000, P99s: []float64{5, 6, 7, 8}, Median: 6.5},
		{Config: "a", Load: 1000, P99s: []float64{3}, Median: 3},
		{Config: "a", Load: 2000, P99s: []float64{9, 11}, Median: 10},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Medians = %+v\nwant %+v", got, want)
	}
}
