package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// Proc is a server process the suite started: a groupcastd node or the
// hello-world reference.
type Proc struct {
	Name  string
	URL   string // base URL it serves
	Admin string // base URL of a groupcastd's admin listener (/metrics, pprof); set by the caller
	cmd   *exec.Cmd
	log   *os.File
	done  chan error
}

// StartProc starts bin with args, logging to dir/name.log, and waits until
// GET url+readyPath answers 200 (or a minute passes, or the process exits).
func StartProc(ctx context.Context, dir, name, url, readyPath, bin string, args ...string) (*Proc, error) {
	logf, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	p := &Proc{Name: name, URL: url, cmd: cmd, log: logf, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := http.Get(url + readyPath)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p, nil
			}
		}
		select {
		case err := <-p.done:
			p.done <- err
			p.log.Close()
			return nil, fmt.Errorf("%s exited before it was ready (%v); see %s", name, err, logf.Name())
		case <-ctx.Done():
			p.Stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.Stop()
			return nil, fmt.Errorf("%s not ready after a minute; see %s", name, logf.Name())
		}
	}
}

// adminAddr is the admin listener (--admin-listen) of a groupcastd the
// suite starts on listen: the same host, the port 100 above.
func adminAddr(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		panic(err) // the suite's own fixed addresses
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		panic(err)
	}
	return net.JoinHostPort(host, strconv.Itoa(p+100))
}

// PID is the process id.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Stop asks the process to shut down (SIGTERM) and kills it if it has not
// after 15 seconds.
func (p *Proc) Stop() error {
	defer p.log.Close()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not stop within 15s; killed", p.Name)
	}
}

// Kill kills the process at once (SIGKILL), as a crash would, and waits
// for it to exit. Stop afterwards returns at once.
func (p *Proc) Kill() error {
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	err := <-p.done
	p.done <- err // for Stop
	return nil
}

// RaiseFileLimit lifts this process's open-file limit to its hard limit:
// tens of thousands of long-polls need as many descriptors, on both ends.
func RaiseFileLimit() error {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return err
	}
	l.Cur = l.Max
	return syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
}
