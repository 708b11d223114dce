// Command groupcast is groupcast's command-line client. It talks to any
// origin (a groupcastd node, or anything speaking PubNub's protocol):
//
//	groupcast [--origin URL] [--sub-key K] [--pub-key K] [--uuid U] [--token T] COMMAND
//
//	groups add GROUP CHANNEL...      add channels (prints the timetoken and the causal token)
//	groups remove GROUP CHANNEL...   remove channels
//	groups delete GROUP              delete a group
//	groups list [GROUP]              list a group's channels, or the account's groups
//	publish CHANNEL JSON             publish a message (prints its timetoken)
//	subscribe [-g GROUP]... [CHANNEL...]   print messages as they arrive, one JSON line each
//	time                             the origin's time
//	cluster [--json]                 the cluster's members and shard ownership, as the origin sees them
//	keyset create [--pam] | list | rotate-secret SUBKEY | delete SUBKEY  [--json] [--admin URL] [--admin-token T]
//	                                 manage keysets through a node's admin listener (GROUPCAST_ADMIN,
//	                                 default http://127.0.0.1:8081; GROUPCAST_ADMIN_TOKEN)
//	bench propagation --a URL --b URL [--samples N]   edit on A → visible on B
//	bench fanout --origin URL [--admin URL] [--subscribers N] [--duration D]  parked subscribers vs. a hello-world ceiling
//	bench soak (--url URL [--admin URL] | --groupcastd PATH) [--duration D] [--subscribers N] [--rate R]
//	                                 subscribers coming and going at half the fan-out maximum; RSS,
//	                                 goroutines and fds every 10 s, and a flat/not-flat verdict
//	bench suite [--quick] [--only S,..] --groupcastd PATH --cassandra H --redis A [--nchan-module M] [--out DIR]
//	            [--region N=CASSANDRA,DC,REDIS]... [--no-pin] [--pause-infra] [--repeats N]
//	                                 every scenario, with results.json, report.md and plots (make bench);
//	                                 the geo scenario needs two --region (default: GROUPCAST_R<N>_* env)
//	bench access|history --groupcastd PATH [--quick] [--rounds N] [--pause-infra] [--no-pin] [--out DIR]
//	                                 the fanout with Access Manager off and on, alternating, on a node of
//	                                 its own (--access keysets): latency and deliveries/s side by side
//	bench at --groupcastd PATH[,PATH...] --loads X[,Y...] [--subscribers N] [--channels C] [--rounds R]
//	         [--step D] [--nchan-module M] [--args "FLAGS"] [--no-pin]
//	                                 every configuration (each binary, Nchan's two) at fixed loads, in
//	                                 alternating rounds, pinned as make bench pins the fan-out: the
//	                                 same-load latency comparison on demand, p99 medians per configuration
//	bench report DIR                 draw a run's report.md and plots again from its results.json
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/groupcast/groupcast/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "groupcast:", err)
		os.Exit(1)
	}
}

const usage = `usage: groupcast [--origin URL] [--sub-key K] [--pub-key K] [--uuid U] [--token T] COMMAND
  groups add GROUP CHANNEL... | groups remove GROUP CHANNEL... | groups delete GROUP | groups list [GROUP]
  publish CHANNEL JSON
  subscribe [-g GROUP]... [CHANNEL...]
  time
  cluster [--json]
  keyset create [--pam] | list | rotate-secret SUBKEY | delete SUBKEY  [--json] [--admin URL] [--admin-token T]
  bench propagation --a URL --b URL [--samples N]`

type client struct {
	origin, subKey, pubKey, uuid, token string
	http                                *http.Client
	out                                 io.Writer
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("groupcast", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintln(stderr, usage) }
	c := &client{http: &http.Client{Timeout: 330 * time.Second}, out: stdout}
	fs.StringVar(&c.origin, "origin", envOr("GROUPCAST_ORIGIN", "http://127.0.0.1:8080"), "origin URL")
	fs.StringVar(&c.subKey, "sub-key", envOr("GROUPCAST_SUB_KEY", "demo"), "subscribe key (the account)")
	fs.StringVar(&c.pubKey, "pub-key", envOr("GROUPCAST_PUB_KEY", "demo"), "publish key")
	fs.StringVar(&c.uuid, "uuid", "groupcast-cli", "user id")
	fs.StringVar(&c.token, "token", "", "causal token to send (from an earlier edit)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c.origin = strings.TrimSuffix(c.origin, "/")
	rest := fs.Args()
	if len(rest) == 0 {
		return errors.New(usage)
	}
	switch rest[0] {
	case "groups":
		return c.groups(ctx, rest[1:])
	case "publish":
		if len(rest) != 3 {
			return errors.New("usage: groupcast publish CHANNEL JSON")
		}
		return c.publish(ctx, rest[1], rest[2])
	case "subscribe":
		return c.subscribe(ctx, rest[1:], stderr)
	case "time":
		var v []json.Number
		if err := c.get(ctx, "/time/0", nil, &v); err != nil {
			return err
		}
		if len(v) != 1 {
			return fmt.Errorf("/time/0 answered %d values, want 1", len(v))
		}
		fmt.Fprintln(stdout, v[0])
		return nil
	case "cluster":
		return c.cluster(ctx, rest[1:], stderr)
	case "keyset":
		return keysetCmd(ctx, rest[1:], stdout, stderr)
	case "bench":
		return benchCmd(ctx, rest[1:], stdout, stderr)
	}
	return fmt.Errorf("unknown command %q\n%s", rest[0], usage)
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// get calls the origin and decodes its JSON answer; an error answer becomes
// an error carrying the origin's message.
func (c *client) get(ctx context.Context, path string, q url.Values, into any) error {
	if q == nil {
		q = url.Values{}
	}
	q.Set("uuid", c.uuid)
	if c.token != "" && q.Get("token") == "" {
		q.Set("token", c.token)
	}
	req, err := http.NewRequestWithContext(ctx, "GET", c.origin+path+"?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != 200 {
		var e struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(body, &e) == nil && e.Message != "" {
			return fmt.Errorf("%d: %s", resp.StatusCode, e.Message)
		}
		return fmt.Errorf("%d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return json.Unmarshal(body, into)
}

func (c *client) cgPath(group string) string {
	p := "/v1/channel-registration/sub-key/" + url.PathEscape(c.subKey) + "/channel-group"
	if group != "" {
		p += "/" + url.PathEscape(group)
	}
	return p
}

func (c *client) groups(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return errors.New("usage: groupcast groups add|remove|delete|list ...")
	}
	var edit struct {
		Timetoken string `json:"timetoken"`
		Token     string `json:"token"`
	}
	printEdit := func() { fmt.Fprintf(c.out, "OK timetoken=%s token=%s\n", edit.Timetoken, edit.Token) }
	switch {
	case (args[0] == "add" || args[0] == "remove") && len(args) >= 3:
		if err := c.get(ctx, c.cgPath(args[1]), url.Values{args[0]: {strings.Join(args[2:], ",")}}, &edit); err != nil {
			return err
		}
		printEdit()
	case args[0] == "delete" && len(args) == 2:
		if err := c.get(ctx, c.cgPath(args[1])+"/remove", nil, &edit); err != nil {
			return err
		}
		printEdit()
	case args[0] == "list" && len(args) == 2:
		var r struct {
			Payload struct {
				Channels []string `json:"channels"`
				Version  string   `json:"version"`
			} `json:"payload"`
		}
		if err := c.get(ctx, c.cgPath(args[1]), nil, &r); err != nil {
			return err
		}
		for _, ch := range r.Payload.Channels {
			fmt.Fprintln(c.out, ch)
		}
	case args[0] == "list" && len(args) == 1:
		var r struct {
			Payload struct {
				Groups []string `json:"groups"`
			} `json:"payload"`
		}
		if err := c.get(ctx, c.cgPath(""), nil, &r); err != nil {
			return err
		}
		for _, g := range r.Payload.Groups {
			fmt.Fprintln(c.out, g)
		}
	default:
		return errors.New("usage: groupcast groups add GROUP CHANNEL... | remove GROUP CHANNEL... | delete GROUP | list [GROUP]")
	}
	return nil
}

func (c *client) publish(ctx context.Context, channel, msg string) error {
	if !json.Valid([]byte(msg)) {
		return fmt.Errorf("the message must be JSON (a string needs its quotes: '\"hello\"')")
	}
	var r []any
	path := "/publish/" + url.PathEscape(c.pubKey) + "/" + url.PathEscape(c.subKey) + "/0/" + url.PathEscape(channel) + "/0/" + url.PathEscape(msg)
	if err := c.get(ctx, path, nil, &r); err != nil {
		return err
	}
	if len(r) == 3 {
		fmt.Fprintf(c.out, "sent timetoken=%v\n", r[2])
	}
	return nil
}

type groupList []string

func (g *groupList) String() string     { return strings.Join(*g, ",") }
func (g *groupList) Set(v string) error { *g = append(*g, v); return nil }

func (c *client) subscribe(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("groupcast subscribe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var groups groupList
	fs.Var(&groups, "g", "channel group (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	channels := ","
	if fs.NArg() > 0 {
		channels = strings.Join(fs.Args(), ",")
	}
	path := "/v2/subscribe/" + url.PathEscape(c.subKey) + "/" + url.PathEscape(channels) + "/0"
	cursor := "0"
	for {
		q := url.Values{"tt": {cursor}}
		if len(groups) > 0 {
			q.Set("channel-group", strings.Join(groups, ","))
		}
		var r struct {
			T struct {
				T string `json:"t"`
			} `json:"t"`
			M []json.RawMessage `json:"m"`
		}
		if err := c.get(ctx, path, q, &r); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		for _, m := range r.M {
			fmt.Fprintln(c.out, string(m))
		}
		cursor = r.T.T
	}
}

func benchCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "fanout" {
		return benchFanout(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "suite" {
		return benchSuite(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "at" {
		return benchAt(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "soak" {
		return benchSoak(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && (args[0] == "access" || args[0] == "history") {
		return benchOnOff(ctx, args[0], args[1:], stdout, stderr)
	}
	if len(args) == 2 && args[0] == "report" {
		return bench.Rerender(args[1])
	}
	if len(args) > 1 && args[0] == "hello-server" {
		ln, err := net.Listen("tcp", args[1])
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, ln.Addr().String())
		return bench.HelloServer(ln)
	}
	if len(args) == 0 || args[0] != "propagation" {
		return errors.New("usage: groupcast bench propagation --a URL --b URL [--samples N] | bench fanout --origin URL [--subscribers N] [--duration D] | bench at --groupcastd PATH[,PATH...] --loads X[,Y...] [--subscribers N] | bench soak (--url URL | --groupcastd PATH) [--duration D] | bench access|history --groupcastd PATH [--quick] [--rounds N] [--pause-infra] [--no-pin] | bench suite [--quick] --groupcastd PATH --cassandra H --redis A [--nchan-module M] [--out DIR]")
	}
	fs := flag.NewFlagSet("groupcast bench propagation", flag.ContinueOnError)
	fs.SetOutput(stderr)
	a := fs.String("a", "http://127.0.0.1:8080", "node edits are made on")
	b := fs.String("b", "", "node reads are made on")
	samples := fs.Int("samples", 1000, "number of edits measured")
	account := fs.String("account", "bench", "account (subscribe key)")
	group := fs.String("group", fmt.Sprintf("prop-%d", time.Now().UnixNano()), "group")
	timeout := fs.Duration("timeout", 10*time.Second, "longest wait for one edit to show on B")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *b == "" {
		return errors.New("--b is required")
	}
	res, err := bench.Propagation(ctx, bench.PropagationConfig{A: *a, B: *b, Account: *account, Group: *group, Samples: *samples, Timeout: *timeout})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "propagation %s → %s: %s\n", *a, *b, res)
	return nil
}

func benchFanout(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("groupcast bench fanout", flag.ContinueOnError)
	fs.SetOutput(stderr)
	origin := fs.String("origin", "http://127.0.0.1:8080", "node to subscribe and publish on")
	admin := fs.String("admin", envOr("GROUPCAST_ADMIN", "http://127.0.0.1:8081"), "the node's admin listener, whose /metrics counts parked polls and memory")
	subs := fs.Int("subscribers", 10000, "parked long-polls")
	d := fs.Duration("duration", 10*time.Second, "how long to publish, and to measure the ceiling")
	if err := fs.Parse(args); err != nil {
		return err
	}
	// The hello-world reference runs in its own process, like the node.
	self, err := os.Executable()
	if err != nil {
		return err
	}
	hello := exec.CommandContext(ctx, self, "bench", "hello-server", "127.0.0.1:0")
	out, err := hello.StdoutPipe()
	if err != nil {
		return err
	}
	if err := hello.Start(); err != nil {
		return err
	}
	defer func() { hello.Process.Kill(); hello.Wait() }()
	addr, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		return fmt.Errorf("hello-server: %w", err)
	}
	ceiling, err := bench.Ceiling(ctx, strings.TrimSpace(addr), *subs, *d)
	if err != nil {
		return err
	}
	if err := bench.RaiseFileLimit(); err != nil {
		return err
	}
	prog := bench.NewProgress(stderr)
	var loads []float64
	for _, f := range []float64{0.25, 0.5, 0.75, 1} {
		loads = append(loads, f*ceiling)
	}
	run, err := bench.Fanout(ctx, &bench.Groupcast{Origin: *origin, Admin: strings.TrimSuffix(*admin, "/"), Account: "bench"}, bench.FanoutConfig{Subscribers: *subs, Step: *d, Loads: loads, Progress: prog})
	prog.Close()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "fanout: subscribers=%d parked=%d poll_failures=%d memory/parked=%.1f KiB ceiling req/s=%.0f\n", run.Subscribers, run.Parked, run.Failures, run.BytesPerParked/1024, ceiling)
	for _, s := range run.Steps {
		fmt.Fprintf(stdout, "  offered=%.0f/s published=%.1f/s delivered=%.0f/s (%.2f× ceiling) lost=%d kept_up=%v half=%v publish→deliver %s\n",
			s.Offered, s.PublishedPerSec, s.DeliveredPerSec, s.DeliveredPerSec/ceiling, s.Lost, s.KeptUp, s.Half, s.Latency)
	}
	return nil
}

// benchAt runs bench.At and prints every step of every run, then the
// median p99 of each configuration at each load.
func benchAt(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("groupcast bench at", flag.ContinueOnError)
	fs.SetOutput(stderr)
	gcds := fs.String("groupcastd", "", "groupcastd binaries to compare, comma-separated (each on its embedded default)")
	extra := fs.String("args", "", "extra flags for every groupcastd, space-separated (e.g. \"--history=false\")")
	nchan := fs.String("nchan-module", "", "Nchan's nginx module (scripts/nchan module): adds Nchan's two configurations")
	subs := fs.Int("subscribers", 100, "parked long-poll subscribers")
	channels := fs.Int("channels", 1, "channels the subscribers are spread over, publishes in turn")
	loadList := fs.String("loads", "", "offered deliveries/s of each run's steps, comma-separated (required)")
	rounds := fs.Int("rounds", 2, "runs of each configuration, in alternating rounds")
	step := fs.Duration("step", 10*time.Second, "length of each step")
	noPin := fs.Bool("no-pin", false, "run unpinned (default: servers on CPU 0, this process on CPU 1)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var loads []float64
	for part := range strings.SplitSeq(*loadList, ",") {
		f, err := strconv.ParseFloat(strings.TrimSpace(part), 64)
		if err != nil || f <= 0 || math.IsInf(f, 0) {
			return fmt.Errorf("bench at: --loads: %q is not a positive number of deliveries/s", part)
		}
		loads = append(loads, f)
	}
	var bins []string
	if *gcds != "" {
		bins = strings.Split(*gcds, ",")
	}
	switch {
	case len(bins) == 0 && *nchan == "":
		return errors.New("bench at: --groupcastd or --nchan-module is required")
	case *subs < 1 || *channels < 1 || *rounds < 1 || *step <= 0:
		return errors.New("bench at: --subscribers, --channels, --rounds and --step must be positive")
	}
	runs, err := bench.At(ctx, bench.AtConfig{Groupcastd: bins, Args: strings.Fields(*extra), NchanModule: *nchan,
		Subscribers: *subs, Channels: *channels, Loads: loads, Step: *step, Rounds: *rounds, NoPin: *noPin, Log: stderr})
	ms := func(us float64) string { return strconv.FormatFloat(us/1e3, 'f', 2, 64) + "ms" }
	for _, r := range runs {
		for _, s := range r.Steps {
			m := s.SubscriberMeans
			fmt.Fprintf(stdout, "%s round=%d n=%d offered=%.0f delivered=%.0f answers=%.0f batch=%.1f server_cpu=%.2f client_cpu=%.2f lost=%d late=%d skipped=%d p50=%s p90=%s p99=%s max=%s subscriber_means=%s/%s/%s/%s/%s\n",
				r.Config, r.Round, r.Subscribers, s.Offered, s.DeliveredPerSec, s.AnswersPerSec, s.Batch, s.ServerCPU, s.ClientCPU, s.Lost,
				s.Slots.Late, s.Slots.Skipped, ms(s.Latency.P50), ms(s.Latency.P90), ms(s.Latency.P99), ms(s.Latency.Max),
				ms(m.Min), ms(m.P10), ms(m.P50), ms(m.P90), ms(m.Max))
		}
	}
	for _, m := range bench.Medians(runs, loads) {
		var all []string
		for _, x := range m.P99s {
			all = append(all, ms(x))
		}
		fmt.Fprintf(stdout, "median p99 %s at %.0f/s: %s of %d (%s)\n", m.Config, m.Load, ms(m.Median), len(m.P99s), strings.Join(all, " "))
	}
	return err
}

func benchSoak(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("groupcast bench soak", flag.ContinueOnError)
	fs.SetOutput(stderr)
	origin := fs.String("url", "", "node to soak; empty needs --groupcastd")
	admin := fs.String("admin", envOr("GROUPCAST_ADMIN", "http://127.0.0.1:8081"), "admin listener of the node at --url, whose /metrics is sampled")
	gcd := fs.String("groupcastd", "", "start this groupcastd binary on a fresh embedded store and soak it")
	d := fs.Duration("duration", 10*time.Minute, "how long the clients run")
	subs := fs.Int("subscribers", bench.SoakSubscribers, "subscribers kept connected (half the fan-out maximum: 1,000 at 60 publishes/s)")
	rate := fs.Float64("rate", bench.SoakRate, "publishes/s to the subscribers' channel")
	every := fs.Duration("every", 10*time.Second, "how often the node's RSS, goroutines and fds are read")
	life := fs.Duration("lifetime", 30*time.Second, "a subscriber's mean life before it vanishes")
	plots := fs.String("plot", "", "write soak-memory.png, soak-goroutines.png and soak-latency.png (the samples over time) into this directory")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if (*origin == "") == (*gcd == "") {
		return errors.New("bench soak: give --url or --groupcastd")
	}
	if err := bench.RaiseFileLimit(); err != nil {
		return err
	}
	if *gcd != "" {
		dir, err := os.MkdirTemp("", "groupcast-soak")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		// Two free ports, the public listener's and the admin listener's,
		// both held until both are chosen, so that they differ.
		var addrs [2]string
		var lns []net.Listener
		for i := range addrs {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return err
			}
			lns = append(lns, ln)
			addrs[i] = ln.Addr().String()
		}
		for _, ln := range lns {
			ln.Close()
		}
		addr := addrs[0]
		*origin, *admin = "http://"+addr, "http://"+addrs[1]
		p, err := bench.StartProc(ctx, dir, "groupcastd", *origin, "/readyz", *gcd, "--listen", addr, "--admin-listen", addrs[1], "--data", filepath.Join(dir, "data"), "--log-level", "warn")
		if err != nil {
			return err
		}
		defer p.Stop()
		fmt.Fprintf(stderr, "soak: groupcastd pid %d on %s\n", p.PID(), *origin)
	}
	res, err := bench.Soak(ctx, bench.SoakConfig{Origin: strings.TrimSuffix(*origin, "/"), Admin: strings.TrimSuffix(*admin, "/"), Subscribers: *subs, Rate: *rate,
		Duration: *d, Every: *every, Lifetime: *life, Rows: stderr})
	if err != nil {
		return err
	}
	if err := res.Table(stdout); err != nil {
		return err
	}
	if *plots != "" {
		if err := os.MkdirAll(*plots, 0o755); err != nil {
			return err
		}
		files, err := res.WritePlots(*plots)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "plots: %s in %s\n", strings.Join(files, ", "), *plots)
	}
	if !res.Flat() {
		return errors.New("bench soak: not flat")
	}
	return nil
}

// benchAccess runs the suite's access scenario alone: it needs neither
// Cassandra nor Redis.
// benchOnOff runs one of the on/off scenarios alone: "access" (Access
// Manager) or "history" (Message Persistence).
func benchOnOff(ctx context.Context, scenario string, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("groupcast bench "+scenario, flag.ContinueOnError)
	fs.SetOutput(stderr)
	quick := fs.Bool("quick", false, "smoke version: shorter steps")
	out := fs.String("out", "bench/results", "directory the run's timestamped directory is written under")
	gcd := fs.String("groupcastd", "", "groupcastd binary (required)")
	rounds := fs.Int("rounds", 2, "times each case (off, on) runs, alternating")
	pause := fs.Bool("pause-infra", false, "pause (SIGSTOP) Cassandra and Redis, from scripts/infra's pid files, during the runs and continue them after; only when this run owns them")
	noPin := fs.Bool("no-pin", false, "run unpinned: the node and the load generator share every core")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *gcd == "" {
		return fmt.Errorf("bench %s: --groupcastd is required", scenario)
	}
	if *rounds < 1 {
		return fmt.Errorf("bench %s: --rounds must be at least 1", scenario)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	res, dir, err := bench.RunSuite(ctx, bench.SuiteConfig{Quick: *quick, Out: *out, Groupcastd: *gcd, Groupcast: self,
		Command: "groupcast bench " + scenario + " " + strings.Join(args, " "), Log: stderr, Scenarios: []string{scenario}, AccessRounds: *rounds, PauseInfra: *pause, NoPin: *noPin})
	printChecks(stdout, res, dir)
	return err
}

func benchSuite(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("groupcast bench suite", flag.ContinueOnError)
	fs.SetOutput(stderr)
	quick := fs.Bool("quick", false, "smoke version: fewer samples, shorter steps, 1,000 subscribers only")
	out := fs.String("out", "bench/results", "directory the run's timestamped directory is written under")
	gcd := fs.String("groupcastd", "", "groupcastd binary (required)")
	cass := fs.String("cassandra", os.Getenv("GROUPCAST_CASSANDRA"), "Cassandra hosts for the two-node scenarios")
	redis := fs.String("redis", os.Getenv("GROUPCAST_REDIS"), "Redis address")
	nchan := fs.String("nchan-module", "", "Nchan's nginx module (scripts/nchan module); empty skips the peer")
	command := fs.String("command", "", "how the run was started, for the report; default: this command line")
	only := fs.String("only", "", "comma-separated scenarios to run (pair, baseline, fanout, decode, access, history, cluster, geo); empty runs them all")
	noPin := fs.Bool("no-pin", false, "run the fan-out scenarios unpinned (default: servers on CPU 0, this process on CPU 1)")
	pause := fs.Bool("pause-infra", false, "pause (SIGSTOP) Cassandra and Redis, from scripts/infra's pid files, during the fan-out scenarios and continue them after; only when this run owns them")
	repeats := fs.Int("repeats", 0, "runs of each fan-out server configuration, alternating; 0 means 3")
	var regions []bench.Region
	fs.Func("region", "a region of the geo scenario, N=CASSANDRA,DC,REDIS (repeat for each); default: GROUPCAST_R<N>_CASSANDRA, _DC and _REDIS", func(v string) error {
		r, err := bench.ParseRegion(v)
		regions = append(regions, r)
		return err
	})
	if err := fs.Parse(args); err != nil {
		return err
	}
	if len(regions) == 0 {
		regions = bench.RegionsFromEnv(os.Getenv)
	}
	var scenarios []string
	if *only != "" {
		scenarios = strings.Split(*only, ",")
	}
	if *gcd == "" || *cass == "" || *redis == "" {
		return errors.New("bench suite: --groupcastd, --cassandra and --redis are required (make bench sets them)")
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if *command == "" {
		*command = "groupcast bench suite " + strings.Join(args, " ")
	}
	res, dir, err := bench.RunSuite(ctx, bench.SuiteConfig{Quick: *quick, Out: *out, Groupcastd: *gcd, Groupcast: self,
		Cassandra: *cass, Redis: *redis, NchanModule: *nchan, Regions: regions, Command: *command, Log: stderr, Scenarios: scenarios,
		NoPin: *noPin, PauseInfra: *pause, Repeats: *repeats})
	printChecks(stdout, res, dir)
	return err
}

// printChecks prints a suite run's checks and where its report is; res
// may be nil (the run did not start).
func printChecks(stdout io.Writer, res *bench.Results, dir string) {
	if res == nil {
		return
	}
	for _, c := range res.Checks {
		verdict := "met"
		if !c.Met {
			verdict = "MISSED"
		}
		fmt.Fprintf(stdout, "%-70s %-40s target %-8s %s\n", c.What, c.Figure, c.Target, verdict)
	}
	fmt.Fprintf(stdout, "report: %s\n", filepath.Join(dir, "report.md"))
}

// clusterState is the answer of GET /cluster.
type clusterState struct {
	Self        string `json:"self"`
	RingVersion uint64 `json:"ring_version"`
	Replicas    int    `json:"replicas"`
	Members     []struct {
		Node         string `json:"node"`
		HTTP         string `json:"http"`
		Region       int    `json:"region"`
		State        string `json:"state"`
		ReadyVersion uint64 `json:"ready_version"`
	} `json:"members"`
	// Owners lists each shard's owners, the primary first, by shard number.
	Owners map[string][]string `json:"owners"`
}

func (c *client) cluster(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("groupcast cluster", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print the origin's JSON as it came")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return errors.New("usage: groupcast cluster [--json]")
	}
	var raw json.RawMessage
	if err := c.get(ctx, "/cluster", nil, &raw); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	if *asJSON {
		_, err := fmt.Fprintln(c.out, string(raw))
		return err
	}
	return renderCluster(c.out, raw)
}

// renderCluster prints a /cluster answer as a members table and a summary
// line.
func renderCluster(w io.Writer, raw []byte) error {
	var st clusterState
	if err := json.Unmarshal(raw, &st); err != nil {
		return fmt.Errorf("cluster: decoding the answer: %w", err)
	}
	owned, primary := map[string]int{}, map[string]int{}
	for _, owners := range st.Owners {
		for i, n := range owners {
			owned[n]++
			if i == 0 {
				primary[n]++
			}
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tHTTP\tREGION\tSTATE\tREADY_VERSION\tSHARDS\tPRIMARY")
	for _, m := range st.Members {
		node := m.Node
		if node == st.Self {
			node += " *"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%d\t%d\n", node, m.HTTP, m.Region, m.State, m.ReadyVersion, owned[m.Node], primary[m.Node])
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "self=%s ring_version=%d replicas=%d shards=%d\n", st.Self, st.RingVersion, st.Replicas, len(st.Owners))
	return err
}

const keysetUsage = "usage: groupcast keyset create [--pam] | list | rotate-secret SUBKEY | delete SUBKEY  [--json] [--admin URL] [--admin-token T]"

// keyset is a keyset as the admin API answers it.
type keyset struct {
	SubscribeKey string    `json:"subscribe_key"`
	PublishKey   string    `json:"publish_key"`
	SecretKey    string    `json:"secret_key"`
	PAM          bool      `json:"pam"`
	Created      time.Time `json:"created"`
}

// keysetJSON is what --json prints of a keyset, in this order, for
// scripts.
type keysetJSON struct {
	PublishKey   string `json:"publish_key"`
	SubscribeKey string `json:"subscribe_key"`
	SecretKey    string `json:"secret_key"`
	PAM          bool   `json:"pam"`
}

func (k keyset) script() keysetJSON {
	return keysetJSON{PublishKey: k.PublishKey, SubscribeKey: k.SubscribeKey, SecretKey: k.SecretKey, PAM: k.PAM}
}

// adminClient calls a node's admin API.
type adminClient struct {
	base, token string
	http        *http.Client
}

// call sends method path (with a JSON body when body is not nil) and
// decodes the answer into into; an error answer becomes an error carrying
// the admin API's message.
func (a *adminClient) call(ctx context.Context, method, path string, body, into any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = strings.NewReader(string(b))
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		return fmt.Errorf("--admin %q: %w", a.base, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return fmt.Errorf("%w (is a groupcastd admin listener at %s? set --admin or GROUPCAST_ADMIN)", err, a.base)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(b, &e) == nil && e.Message != "" {
			return fmt.Errorf("%s %s: %d: %s", method, path, resp.StatusCode, e.Message)
		}
		return fmt.Errorf("%s %s: %d: %s", method, path, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	if err := json.Unmarshal(b, into); err != nil {
		return fmt.Errorf("%s %s: decoding the answer: %w", method, path, err)
	}
	return nil
}

// parseInterleaved parses flags anywhere among args (Go's flag package
// stops at the first argument that is not a flag) and returns the others.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func keysetCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New(keysetUsage)
	}
	action := args[0]
	fs := flag.NewFlagSet("groupcast keyset "+action, flag.ContinueOnError)
	fs.SetOutput(stderr)
	a := &adminClient{http: &http.Client{Timeout: 30 * time.Second}}
	fs.StringVar(&a.base, "admin", envOr("GROUPCAST_ADMIN", "http://127.0.0.1:8081"), "URL of a groupcastd admin listener (its --admin-listen)")
	fs.StringVar(&a.token, "admin-token", os.Getenv("GROUPCAST_ADMIN_TOKEN"), "the node's --admin-token, if it has one")
	asJSON := fs.Bool("json", false, `print {"publish_key":…,"subscribe_key":…,"secret_key":…,"pam":…} (list: an array of them)`)
	pam := false
	if action == "create" {
		fs.BoolVar(&pam, "pam", false, "turn Access Manager on: every request needs a token or a signature")
	}
	pos, err := parseInterleaved(fs, args[1:])
	if err != nil {
		return err
	}
	a.base = strings.TrimSuffix(a.base, "/")
	if u, err := url.Parse(a.base); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("--admin %q is not an http(s) URL", a.base)
	}
	var k keyset
	switch {
	case action == "create" && len(pos) == 0:
		if err := a.call(ctx, "POST", "/v1/keysets", map[string]bool{"pam": pam}, &k); err != nil {
			return err
		}
	case action == "list" && len(pos) == 0:
		var r struct {
			Keysets []keyset `json:"keysets"`
		}
		if err := a.call(ctx, "GET", "/v1/keysets", nil, &r); err != nil {
			return err
		}
		if *asJSON {
			out := make([]keysetJSON, 0, len(r.Keysets))
			for _, k := range r.Keysets {
				out = append(out, k.script())
			}
			return printJSON(stdout, out)
		}
		return renderKeysets(stdout, r.Keysets)
	case action == "rotate-secret" && len(pos) == 1:
		if err := a.call(ctx, "POST", "/v1/keysets/"+url.PathEscape(pos[0])+"/rotate-secret", nil, &k); err != nil {
			return err
		}
	case action == "delete" && len(pos) == 1:
		var r struct {
			Deleted string `json:"deleted"`
		}
		if err := a.call(ctx, "DELETE", "/v1/keysets/"+url.PathEscape(pos[0]), nil, &r); err != nil {
			return err
		}
		if *asJSON {
			return printJSON(stdout, r)
		}
		_, err := fmt.Fprintf(stdout, "deleted %s\n", r.Deleted)
		return err
	default:
		return errors.New(keysetUsage)
	}
	if *asJSON {
		return printJSON(stdout, k.script())
	}
	return renderKeyset(stdout, k)
}

func printJSON(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(b))
	return err
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// renderKeyset prints one keyset, secret key included, a field a line.
func renderKeyset(w io.Writer, k keyset) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "subscribe_key\t%s\n", k.SubscribeKey)
	fmt.Fprintf(tw, "publish_key\t%s\n", k.PublishKey)
	fmt.Fprintf(tw, "secret_key\t%s\n", k.SecretKey)
	fmt.Fprintf(tw, "access_manager\t%s\n", onOff(k.PAM))
	fmt.Fprintf(tw, "created\t%s\n", k.Created.UTC().Format(time.RFC3339))
	return tw.Flush()
}

// renderKeysets prints a table of keysets without their secret keys
// (--json has them): a list is more often shown on a screen.
func renderKeysets(w io.Writer, ks []keyset) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SUBSCRIBE_KEY\tPUBLISH_KEY\tACCESS_MANAGER\tCREATED")
	for _, k := range ks {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", k.SubscribeKey, k.PublishKey, onOff(k.PAM), k.Created.UTC().Format(time.RFC3339))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	noun := "keysets"
	if len(ks) == 1 {
		noun = "keyset"
	}
	_, err := fmt.Fprintf(w, "%d %s (--json prints the secret keys)\n", len(ks), noun)
	return err
}
