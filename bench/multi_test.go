package bench

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestFanoutMulti runs the channel-group scenario small, against the
// embedded node (a channel group) and against Nchan (its multi-channel
// subscribe, 1 worker pinned to CPU 0 as the suite's tuned variant): every
// publish, to any member, reaches every subscriber once.
func TestFanoutMulti(t *testing.T) {
	members := []string{"m0", "m1", "m2"}
	base, admin := nodeWithAdmin(t)
	targets := map[string]func(t *testing.T) Target{
		"groupcast": func(t *testing.T) Target {
			return &GroupcastGroup{Groupcast: &Groupcast{Origin: base, Admin: admin, Account: "bench"}, Group: fmt.Sprintf("g%d", time.Now().UnixNano()), Members: members}
		},
		"nchan": func(t *testing.T) Target {
			module, err := NchanModule()
			if err != nil {
				t.Fatalf("Nchan is needed: %v; run `make test`, or `scripts/nchan install` first", err)
			}
			n, err := StartNchanWith(t.Context(), t.TempDir(), freeLoopbackAddr(t), module, NchanOptions{Workers: 1, CPU: 0, Pin: true})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = n.Stop() })
			return &NchanMulti{Nchan: n, Members: members}
		},
	}
	for name, target := range targets {
		t.Run(name, func(t *testing.T) {
			tg := target(t)
			run, err := Fanout(context.Background(), tg, FanoutConfig{Subscribers: 4, Step: 400 * time.Millisecond, Loads: []float64{120}, AllLoads: true, MemoryPoints: 2})
			if err != nil {
				t.Fatal(err)
			}
			s := run.Steps[0]
			// 120 deliveries/s = 30 publishes/s over 3 channels, each to all 4.
			if !s.KeptUp || s.Lost != 0 || s.PublishedPerSec < 25 || run.Failures != 0 || run.Parked != 4 {
				t.Fatalf("run %+v step %+v", run, s)
			}
		})
	}
}
