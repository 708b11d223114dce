package bench

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// Progress shows the running scenario, its elapsed time and its current
// rate on one line: rewritten in place on a terminal, a line every few
// seconds otherwise (CI logs).
type Progress struct {
	out  io.Writer
	tty  bool
	mu   sync.Mutex
	name string
	unit string
	from time.Time
	rate func() float64 // a counter; the line shows its rate
	last float64
	at   time.Time
	stop chan struct{}
	done chan struct{}
}

// NewProgress writes to out; tty chooses in-place updates.
func NewProgress(out io.Writer) *Progress {
	tty := false
	if f, ok := out.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	p := &Progress{out: out, tty: tty, stop: make(chan struct{}), done: make(chan struct{})}
	go p.loop()
	return p
}

// Scenario starts a new phase; count, if not nil, is a running total
// whose rate per second is shown (in unit).
func (p *Progress) Scenario(name, unit string, count func() float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty && p.name != "" {
		fmt.Fprintln(p.out)
	}
	p.name, p.unit, p.rate, p.from, p.at, p.last = name, unit, count, time.Now(), time.Now(), 0
	if count != nil {
		p.last = count()
	}
	p.print(0)
}

// Close ends the line.
func (p *Progress) Close() {
	close(p.stop)
	<-p.done
	if p.tty {
		fmt.Fprintln(p.out)
	}
}

func (p *Progress) loop() {
	defer close(p.done)
	every := time.Second
	if !p.tty {
		every = 5 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case now := <-t.C:
			p.mu.Lock()
			rate := 0.0
			if p.rate != nil {
				v := p.rate()
				rate = (v - p.last) / now.Sub(p.at).Seconds()
				p.last, p.at = v, now
			}
			p.print(rate)
			p.mu.Unlock()
		}
	}
}

func (p *Progress) print(rate float64) {
	if p.name == "" {
		return
	}
	line := fmt.Sprintf("[%s] %5.1fs", p.name, time.Since(p.from).Seconds())
	if p.rate != nil {
		line += fmt.Sprintf("  %10.0f %s/s", rate, p.unit)
	}
	if p.tty {
		fmt.Fprintf(p.out, "\r\033[K%s", line)
	} else {
		fmt.Fprintln(p.out, line)
	}
}
