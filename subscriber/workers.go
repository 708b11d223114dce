package subscriber

import "time"

// workers runs the checks of woken polls. A check that finds messages
// writes the answer and goes on to serve the connection's next request,
// which takes a deep stack; a fresh goroutine per check would grow (copy)
// its stack several times for every delivery. Workers stay for linger after
// their last task, so that a burst of deliveries reuses them.
type workers struct {
	idle   chan func() // unbuffered: a send succeeds only to a waiting worker
	linger time.Duration
}

func newWorkers(linger time.Duration) *workers {
	return &workers{idle: make(chan func()), linger: linger}
}

// Go runs f on an idle worker, or on a new one.
func (p *workers) Go(f func()) {
	select {
	case p.idle <- f:
	default:
		go p.run(f)
	}
}

func (p *workers) run(f func()) {
	t := time.NewTimer(p.linger)
	defer t.Stop()
	for {
		f()
		t.Reset(p.linger)
		select {
		case f = <-p.idle:
		case <-t.C:
			return
		}
	}
}
