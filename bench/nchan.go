package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// NchanModulePath is where Debian's libnginx-mod-nchan installs the Nchan
// module (scripts/nchan install puts it there).
const NchanModulePath = "/usr/lib/nginx/modules/ngx_nchan_module.so"

// nchanNofile is the descriptor limit nginx's workers ask for
// (worker_rlimit_nofile); StartNchan raises its own limit to it so that the
// workers inherit a hard limit that allows it.
const nchanNofile = 200000

// nchanConfig is nginx.conf for one Nchan: %[1]s is the directory everything
// lives in (with a trailing slash), %[2]s the module, %[3]s the listen
// address, %[4]d the workers' descriptor limit, %[5]s the worker lines
// (worker_processes, and worker_cpu_affinity if pinned).
//
// It matches groupcast's configuration where the two can be compared: by
// default two workers (the node's GOMAXPROCS on this machine), a buffer of the last 100
// messages of a channel kept for 20 minutes, long-polls held 280s, and
// keep-alive connections reused for as long as a benchmark runs. The listen
// backlog asks for the most, which the kernel caps at somaxconn: what Go's
// listener gets. The error log keeps errors only: Nchan warns once per poll
// whose cursor fell out of the buffer, which would cost a write per poll of
// a lagging subscriber.
//
// Long-polls use nchan_longpoll_multipart_response raw: a poll behind by
// several messages gets them all in one answer, as groupcast batches them,
// one message per line. That is unambiguous because every message is one
// decimal integer; a single message comes without a trailing newline.
const nchanConfig = `# written by bench.StartNchan
load_module "%[2]s";
%[5]s
worker_rlimit_nofile %[4]d;
error_log "%[1]serror.log" error;
pid "%[1]snginx.pid";
lock_file "%[1]snginx.lock";

events {
    worker_connections 65536;
    multi_accept on;
}

http {
    access_log off;
    client_body_temp_path "%[1]sclient_body";
    proxy_temp_path "%[1]sproxy";
    fastcgi_temp_path "%[1]sfastcgi";
    uwsgi_temp_path "%[1]suwsgi";
    scgi_temp_path "%[1]sscgi";
    keepalive_requests 1000000;
    keepalive_timeout 300s;

    nchan_max_reserved_memory 256M;
    nchan_message_buffer_length 100;
    nchan_message_timeout 20m;

    server {
        listen %[3]s backlog=65535;

        location = /pub {
            nchan_publisher;
            nchan_channel_id $arg_id;
        }
        location ~ ^/sub/([^/]+)$ {
            nchan_subscriber longpoll;
            nchan_channel_id $1;
            nchan_subscriber_first_message newest;
            nchan_subscriber_timeout 280s;
            nchan_longpoll_multipart_response raw;
        }
        location ~ ^/msub/(.+)$ {
            nchan_subscriber longpoll;
            nchan_channel_id_split_delimiter ",";
            nchan_channel_id $1;
            nchan_subscriber_first_message newest;
            nchan_subscriber_timeout 280s;
            nchan_longpoll_multipart_response raw;
        }
        location = /nchan_status {
            nchan_stub_status;
        }
    }
}
`

// Nchan drives nginx with the Nchan module: messages are published with
// POST /pub?id=<channel> and received with long-polls on /sub/<channel>.
// StartNchan runs one.
//
// Its Cursor is Nchan's message id as long-poll headers carry it:
// Last-Modified (the message's second) in A, Etag (its tag within that
// second) in B. An empty Cursor asks for the next message published.
type Nchan struct {
	addr   string
	dir    string
	cmd    *exec.Cmd
	done   chan struct{} // closed when the master process has exited
	status *fasthttp.HostClient
	paths  pathCache // Poll's paths
}

// NchanModule returns the Nchan module's path, or an error saying how to
// install it if it or nginx is missing.
func NchanModule() (string, error) {
	if _, err := nginxBinary(); err != nil {
		return "", err
	}
	if _, err := os.Stat(NchanModulePath); err != nil {
		return "", fmt.Errorf("nchan module: %w (install it with scripts/nchan install)", err)
	}
	return NchanModulePath, nil
}

// nginxBinary finds nginx on PATH or where Debian puts it.
func nginxBinary() (string, error) {
	if p, err := exec.LookPath("nginx"); err == nil {
		return p, nil
	}
	const debian = "/usr/sbin/nginx"
	if _, err := os.Stat(debian); err != nil {
		return "", fmt.Errorf("nginx not found on PATH nor at %s (install it with scripts/nchan install)", debian)
	}
	return debian, nil
}

// NchanOptions are how StartNchanWith runs nginx.
type NchanOptions struct {
	// Workers is how many worker processes nginx runs; zero means 2.
	Workers int
	// CPU, if Pin is set, is the core nginx (master and workers) runs on:
	// started under taskset, and with one worker also worker_cpu_affinity.
	CPU int
	Pin bool
}

// workerLines are the nginx.conf lines for o's workers.
func (o NchanOptions) workerLines() string {
	w := o.Workers
	if w <= 0 {
		w = 2
	}
	lines := fmt.Sprintf("worker_processes %d;", w)
	if o.Pin && w == 1 {
		lines += fmt.Sprintf("\nworker_cpu_affinity %s;", strconv.FormatUint(1<<uint(o.CPU), 2))
	}
	return lines
}

// Variant names o in reports: "2 workers", "1 worker, pinned".
func (o NchanOptions) Variant() string {
	w := o.Workers
	if w <= 0 {
		w = 2
	}
	v := fmt.Sprintf("%d workers", w)
	if w == 1 {
		v = "1 worker"
	}
	if o.Pin {
		v += fmt.Sprintf(" on CPU %d", o.CPU)
	}
	return v
}

// StartNchan writes dir/nginx.conf, starts nginx (a master and two workers,
// in the foreground of its own process group) listening on addr, which must
// be a loopback address, and returns once it answers. module is the Nchan
// module's path (see NchanModule). Everything nginx writes stays in dir.
func StartNchan(ctx context.Context, dir, addr, module string) (*Nchan, error) {
	return StartNchanWith(ctx, dir, addr, module, NchanOptions{})
}

// StartNchanWith is StartNchan with the workers and pinning of o.
func StartNchanWith(ctx context.Context, dir, addr, module string, o NchanOptions) (*Nchan, error) {
	if err := checkLoopback(addr); err != nil {
		return nil, err
	}
	bin, err := nginxBinary()
	if err != nil {
		return nil, err
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return nil, fmt.Errorf("nchan dir: %w", err)
	}
	conf, err := writeNchanConfig(dir, addr, module, o)
	if err != nil {
		return nil, err
	}
	raiseNofile(nchanNofile)

	out, err := os.Create(filepath.Join(dir, "nginx.out"))
	if err != nil {
		return nil, fmt.Errorf("nchan output file: %w", err)
	}
	defer out.Close() // nginx holds its own copy
	cpu := -1
	if o.Pin {
		cpu = o.CPU
	}
	name, args := pinned(cpu, bin, "-p", dir+"/", "-c", conf, "-e", filepath.Join(dir, "error.log"), "-g", "daemon off;")
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = out, out
	// Its own group, for Stop's SIGKILL; a fast shutdown if this process dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start nginx: %w", err)
	}
	n := &Nchan{addr: addr, dir: dir, cmd: cmd, done: make(chan struct{}), status: newHostClient(addr, 1)}
	go func() { _ = cmd.Wait(); close(n.done) }()

	if err := n.waitReady(ctx, 30*time.Second); err != nil {
		_ = n.Stop()
		return nil, err
	}
	return n, nil
}

// checkLoopback refuses a listen address that is not a loopback one.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("nchan address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("nchan address %q: not a loopback address", addr)
	}
	return nil
}

// writeNchanConfig writes dir/nginx.conf and returns its path.
func writeNchanConfig(dir, addr, module string, o NchanOptions) (string, error) {
	for _, s := range []string{dir, module} {
		if strings.ContainsAny(s, "\"\n$\\") {
			return "", fmt.Errorf("nchan config: path %q cannot be quoted for nginx", s)
		}
	}
	conf := filepath.Join(dir, "nginx.conf")
	text := fmt.Sprintf(nchanConfig, dir+"/", module, addr, nchanNofile, o.workerLines())
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		return "", fmt.Errorf("nchan config: %w", err)
	}
	return conf, nil
}

// raiseNofile raises this process's descriptor limit to want if it is
// lower, so nginx inherits it: the hard limit too where allowed (root),
// else the soft limit as far as the hard one. It is best effort: nginx runs
// with fewer descriptors, and says so in its error log.
func raiseNofile(want uint64) {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) != nil || (l.Cur >= want && l.Max >= want) {
		return
	}
	if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: want, Max: max(l.Max, want)}) == nil {
		return
	}
	_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: l.Max, Max: l.Max})
}

// waitReady polls /nchan_status until it answers, nginx exits, ctx ends or
// limit passes.
func (n *Nchan) waitReady(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	for {
		if _, err := n.Parked(ctx); err == nil {
			return nil
		}
		select {
		case <-n.done:
			return fmt.Errorf("nginx exited at start: %s", n.logTail())
		case <-ctx.Done():
			return fmt.Errorf("nchan on %s not answering: %w", n.addr, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nchan on %s not answering after %s: %s", n.addr, limit, n.logTail())
		}
	}
}

// logTail is the end of nginx's error log and output, for error messages.
func (n *Nchan) logTail() string {
	var b []byte
	for _, f := range []string{"nginx.out", "error.log"} {
		data, _ := os.ReadFile(filepath.Join(n.dir, f))
		b = append(b, data...)
	}
	b = bytes.TrimSpace(b)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// Stop shuts nginx down: SIGTERM to the master (a fast shutdown, which
// does not wait for parked long-polls as SIGQUIT would), then SIGKILL to
// its whole process group if it has not exited within ten seconds.
func (n *Nchan) Stop() error {
	n.status.CloseIdleConnections()
	select {
	case <-n.done:
		return nil
	default:
	}
	pid := n.cmd.Process.Pid
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stop nginx %d: %w", pid, err)
	}
	select {
	case <-n.done:
		return nil
	case <-time.After(10 * time.Second):
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL) // the group: the workers outlive a killed master
	select {
	case <-n.done:
		return fmt.Errorf("nginx %d ignored SIGTERM for 10s, killed", pid)
	case <-time.After(5 * time.Second):
		return fmt.Errorf("nginx %d still running after SIGKILL", pid)
	}
}

// Name implements Target.
func (n *Nchan) Name() string { return "nchan" }

// Addr implements Target.
func (n *Nchan) Addr() string { return n.addr }

// Handshake returns the id of channel's newest message, so that the
// subscriber gets exactly the messages published after the handshake, as
// a groupcast timetoken does.
//
// A channel without messages yields the empty cursor: the subscriber gets
// what is published once its first poll has parked. A made-up id (the time
// of the handshake) would name the moment exactly, but Nchan answers an id
// it does not hold through a path that crashes its workers under
// concurrent subscribers (an assertion in spool_fetch_msg), so the cursor
// only ever names messages Nchan has.
func (n *Nchan) Handshake(ctx context.Context, c *fasthttp.HostClient, channel string) (Cursor, error) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(n.pubURL(channel))
	req.Header.Set("Accept", "text/json")
	if err := doNchan(ctx, c, req, resp); err != nil {
		return Cursor{}, fmt.Errorf("nchan handshake %s: %w", channel, err)
	}
	switch resp.StatusCode() {
	case http.StatusNotFound: // no such channel yet
		return Cursor{}, nil
	case http.StatusOK:
	default:
		return Cursor{}, fmt.Errorf("nchan handshake %s: %d %s", channel, resp.StatusCode(), resp.Body())
	}
	var info struct {
		LastMessageID string `json:"last_message_id"`
	}
	if err := json.Unmarshal(resp.Body(), &info); err != nil {
		return Cursor{}, fmt.Errorf("nchan handshake %s: channel info %q: %w", channel, resp.Body(), err)
	}
	sec, tag, ok := parseNchanID(info.LastMessageID)
	if !ok {
		return Cursor{}, fmt.Errorf("nchan handshake %s: last message id %q", channel, info.LastMessageID)
	}
	if sec == 0 { // a channel whose messages are gone, or that has none yet
		return Cursor{}, nil
	}
	return Cursor{A: time.Unix(sec, 0).UTC().Format(http.TimeFormat), B: tag}, nil
}

// parseNchanID splits a message id "<unix seconds>:<tag>".
func parseNchanID(id string) (sec int64, tag string, ok bool) {
	s, tag, ok := strings.Cut(id, ":")
	if !ok {
		return 0, "", false
	}
	sec, err := strconv.ParseInt(s, 10, 64)
	if err != nil || tag == "" {
		return 0, "", false
	}
	return sec, tag, true
}

// Poll implements Target: one long-poll on /sub/<channel>. With a cursor it
// answers at once with every buffered message after it (raw multipart), else
// it waits for the next message; an empty cursor waits for the next message
// published. A poll Nchan times out (408) returns no messages and cur.
func (n *Nchan) Poll(ctx context.Context, sc *SubConn, channel string, cur Cursor, msgs []int64) ([]int64, Cursor, error) {
	path := n.paths.get(pathKey{channel: channel}, func() string { return "/sub/" + url.PathEscape(channel) })
	return n.poll(ctx, sc, path, channel, cur, msgs)
}

// poll long-polls path (of channel, for errors) over sc; the messages are
// decoded into msgs's array.
func (n *Nchan) poll(ctx context.Context, sc *SubConn, path, channel string, cur Cursor, msgs []int64) ([]int64, Cursor, error) {
	msgs = msgs[:0]
	if err := ctx.Err(); err != nil {
		return msgs, cur, err
	}
	var buf [256]byte
	extra := buf[:0]
	if cur.A != "" {
		extra = append(extra, "If-Modified-Since: "...)
		extra = append(extra, cur.A...)
		extra = append(extra, "\r\nIf-None-Match: "...)
		extra = append(extra, cur.B...)
		extra = append(extra, "\r\n"...)
	}
	status, body, err := sc.Get([]byte(path), extra)
	if err != nil {
		return msgs, cur, fmt.Errorf("nchan poll %s: %w", channel, err)
	}
	switch status {
	case http.StatusOK:
	case http.StatusNotModified, http.StatusRequestTimeout:
		return msgs, cur, nil
	default:
		return msgs, cur, fmt.Errorf("nchan poll %s: %d %.200s", channel, status, body)
	}
	next := Cursor{A: string(sc.LastModified), B: string(sc.Etag)}
	if next.A == "" || next.B == "" {
		return msgs, cur, fmt.Errorf("nchan poll %s: answer without Last-Modified or Etag", channel)
	}
	msgs, err = parseRawMessages(body, msgs)
	if err != nil {
		return msgs, cur, fmt.Errorf("nchan poll %s: %w", channel, err)
	}
	return msgs, next, nil
}

// parseRawMessages reads a raw multipart long-poll answer: messages one a
// line, oldest first, decoded into out's array.
func parseRawMessages(body []byte, out []int64) ([]int64, error) {
	out = out[:0]
	for line := range bytes.SplitSeq(body, []byte{'\n'}) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		v, err := strconv.ParseInt(string(line), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("message %q: %w", line, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// Publish implements Target: POST /pub?id=<channel> with the decimal msg.
func (n *Nchan) Publish(ctx context.Context, c *fasthttp.HostClient, channel string, msg int64) error {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(n.pubURL(channel))
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentType("text/plain")
	req.SetBodyString(strconv.FormatInt(msg, 10))
	if err := doNchan(ctx, c, req, resp); err != nil {
		return fmt.Errorf("nchan publish %s: %w", channel, err)
	}
	if sc := resp.StatusCode(); sc < 200 || sc > 299 {
		return fmt.Errorf("nchan publish %s: %d %s", channel, sc, resp.Body())
	}
	return nil
}

func (n *Nchan) pubURL(channel string) string {
	return "http://" + n.addr + "/pub?id=" + url.QueryEscape(channel)
}

// Parked implements Target: the subscribers line of nchan_stub_status.
func (n *Nchan) Parked(ctx context.Context) (int, error) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://" + n.addr + "/nchan_status")
	if err := doNchan(ctx, n.status, req, resp); err != nil {
		return 0, fmt.Errorf("nchan status: %w", err)
	}
	if resp.StatusCode() != http.StatusOK {
		return 0, fmt.Errorf("nchan status: %d %s", resp.StatusCode(), resp.Body())
	}
	for line := range strings.Lines(string(resp.Body())) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "subscribers:"); ok {
			p, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				return 0, fmt.Errorf("nchan status: subscribers %q: %w", v, err)
			}
			return p, nil
		}
	}
	return 0, fmt.Errorf("nchan status: no subscribers line in %q", resp.Body())
}

// Memory implements Target: the Pss of nginx's master and its workers.
func (n *Nchan) Memory() (float64, error) {
	pids, err := n.PIDs()
	if err != nil {
		return 0, err
	}
	return Pss(pids...)
}

// PIDs returns nginx's master process and its children, the workers.
func (n *Nchan) PIDs() ([]int, error) {
	master := n.cmd.Process.Pid
	children, err := childrenOf(master)
	if err != nil {
		return nil, err
	}
	return append([]int{master}, children...), nil
}

// childrenOf lists the processes whose parent is pid, from /proc/*/stat.
func childrenOf(pid int) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	var out []int
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // exited meanwhile
		}
		if ppid, ok := parentOf(stat); ok && ppid == pid {
			out = append(out, child)
		}
	}
	return out, nil
}

// parentOf reads the ppid from a /proc/<pid>/stat line,
// "pid (comm) state ppid ...", where comm may hold spaces and parentheses.
func parentOf(stat []byte) (int, bool) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 2 {
		return 0, false
	}
	ppid, err := strconv.Atoi(f[1])
	return ppid, err == nil
}

// doNchan runs one request on c, bounded by ctx's deadline if it has one (the
// client's own timeouts apply either way).
func doNchan(ctx context.Context, c *fasthttp.HostClient, req *fasthttp.Request, resp *fasthttp.Response) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d, ok := ctx.Deadline(); ok {
		return c.DoDeadline(req, resp, d)
	}
	return c.Do(req, resp)
}
