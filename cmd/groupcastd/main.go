// Command groupcastd is the groupcast server. With no flags it runs one node
// on an embedded store (bbolt under ./data) on 127.0.0.1:8080, accepting
// any keys (--access open, the default on a loopback address only), with
// its admin listener (keysets, /metrics, pprof) on 127.0.0.1:8081;
// --cassandra and --redis switch to the production back ends. Every flag
// can also be set with the environment variable GROUPCAST_<NAME> (upper
// case, "-" → "_"); a flag on the command line wins.
package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/groupcast/groupcast/access"
	"github.com/groupcast/groupcast/access/admin"
	"github.com/groupcast/groupcast/archive"
	"github.com/groupcast/groupcast/channelgroups"
	"github.com/groupcast/groupcast/channelgroups/bolt"
	"github.com/groupcast/groupcast/channelgroups/cassandra"
	"github.com/groupcast/groupcast/channelgroups/observe"
	"github.com/groupcast/groupcast/internal/gcfloor"
	"github.com/groupcast/groupcast/storagecache"
	"github.com/groupcast/groupcast/subscriber"
	membership "github.com/groupcast/groupcast/subscriber/cluster"
	"github.com/groupcast/groupcast/subscriber/httpapi"
	"github.com/groupcast/groupcast/subscriber/memlog"
	"github.com/groupcast/groupcast/subscriber/redislog"
	"github.com/groupcast/groupcast/volatile"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second signal now ends the process at once
	}()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "groupcastd:", err)
		os.Exit(1)
	}
}

type options struct {
	listen, data                 string
	cassandra, cassandraDC       string
	cassandraTimeout             time.Duration
	replication, keyspace, redis string
	redisPrefix, regionDCs       string
	region, shards               int
	node, logLevel, secret       string
	volatileAccounts             string
	volatileTTL, freshWait       time.Duration
	refreshEvery, pollHold       time.Duration
	ringAge                      time.Duration
	history                      bool
	historyRetention             time.Duration
	ringSize                     int
	ringBytes                    int64
	presenceMax                  int
	shutdownTimeout              time.Duration

	// the admin listener (access/admin) and access control (access)
	adminListen, adminToken string
	accessMode              string // "", "open" or "keysets"; "" decides by --listen
	corsOrigins             string
	signatureSkew           time.Duration

	// the HTTP server's limits (httpapi.Limits)
	maxConns, maxParked, maxParkedPerIP int
	trustedProxies                      []netip.Prefix

	gossip, join, advertise string
	replicas, suspicionMult int
	drain                   time.Duration
	probeInterval           time.Duration
	probeTimeout            time.Duration

	// the shard logs (redislog.Config.MaxLen, memlog.Config)
	logMaxLen int
	logBytes  int64

	gcHeapFloor int64 // bytes; internal/gcfloor

	// other regions' Redis, by region number (--remote-region)
	remotes remoteRegions
}

// remoteRegions is the repeatable --remote-region N=HOST:PORT flag (a
// comma-separated list in one value works too, as GROUPCAST_REMOTE_REGION).
type remoteRegions map[int]string

func (r *remoteRegions) String() string {
	var parts []string
	for _, n := range slices.Sorted(maps.Keys(*r)) {
		parts = append(parts, strconv.Itoa(n)+"="+(*r)[n])
	}
	return strings.Join(parts, ",")
}

func (r *remoteRegions) Set(v string) error {
	if *r == nil {
		*r = remoteRegions{}
	}
	for part := range strings.SplitSeq(v, ",") {
		n, addr, ok := strings.Cut(strings.TrimSpace(part), "=")
		region, err := strconv.Atoi(n)
		if !ok || err != nil || region < 1 || addr == "" {
			return fmt.Errorf("%q is not N=HOST:PORT (a region number >= 1 and its Redis)", part)
		}
		if _, dup := (*r)[region]; dup {
			return fmt.Errorf("region %d given twice", region)
		}
		(*r)[region] = addr
	}
	return nil
}

func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (options, error) {
	var o options
	host, _ := os.Hostname()
	fs := flag.NewFlagSet("groupcastd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.listen, "listen", "127.0.0.1:8080", "address to serve HTTP on")
	fs.StringVar(&o.data, "data", "./data", "directory of the embedded store")
	fs.StringVar(&o.cassandra, "cassandra", "", "comma-separated Cassandra hosts, each host or host:port (one port for all; default 9042); empty = embedded store under --data")
	fs.StringVar(&o.cassandraDC, "cassandra-dc", "dc1", "this region's Cassandra datacenter")
	fs.DurationVar(&o.cassandraTimeout, "cassandra-timeout", 2*time.Second, "how long one Cassandra query (or connection set-up) may wait for an answer: when Cassandra stops answering, an edit gets 503 within about twice this; 0 = 5s")
	fs.StringVar(&o.replication, "cassandra-replication", "", "replication per DC used when creating the keyspace, e.g. dc1:3,dc2:3; empty = <cassandra-dc>:1")
	fs.StringVar(&o.keyspace, "keyspace", "groupcast", "Cassandra keyspace")
	fs.StringVar(&o.regionDCs, "region-dcs", "", "Cassandra datacenter of each other region, e.g. 2=eu,3=ap: token reads of edits made there read that DC")
	fs.StringVar(&o.redis, "redis", "", "Redis address (host:port); empty = in-process")
	fs.StringVar(&o.redisPrefix, "redis-prefix", "groupcast", "prefix of this cluster's Redis keys")
	fs.IntVar(&o.region, "region", 1, "this region's number (>= 1)")
	fs.StringVar(&o.node, "node", host, "this node's name")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&o.secret, "secret", "", "cluster secret that signs causal tokens (at least 16 bytes; every node of a cluster needs the same); empty = generated once into <data>/secret")
	fs.IntVar(&o.shards, "shards", channelgroups.DefaultShards, "number of account shards (every node of a region needs the same)")
	fs.StringVar(&o.volatileAccounts, "volatile-accounts", "all", "accounts that use the volatile overlay: all, none, or a comma-separated list")
	fs.DurationVar(&o.volatileTTL, "volatile-ttl", 4*time.Second, "how long an overlay entry waits for storage to confirm it")
	fs.DurationVar(&o.refreshEvery, "refresh-every", 30*time.Second, "how often groups read since the last round are re-read from storage")
	fs.DurationVar(&o.pollHold, "poll-hold", 280*time.Second, "how long a subscribe long-poll parks at most")
	fs.IntVar(&o.ringSize, "ring-size", 100, "messages kept per channel for subscribe cursors and history")
	fs.DurationVar(&o.ringAge, "ring-age", 20*time.Minute, "how long messages are kept for subscribe cursors and history")
	fs.BoolVar(&o.history, "history", true, "keep history (Message Persistence) in the store: history, message counts and delete messages beyond what the rings hold, kept across restarts; false = history is what the rings hold")
	fs.DurationVar(&o.historyRetention, "history-retention", subscriber.DefaultHistoryRetention, "how long history keeps a message published without a ttl (PubNub's keyset retention; a publish's ttl=N hours overrides it, ttl=0 keeps the message until deleted); 0 = until deleted")
	fs.Int64Var(&o.ringBytes, "ring-bytes", 256<<20, "bytes of messages kept for subscribe cursors and history, all channels together; past it the oldest go first")
	fs.IntVar(&o.presenceMax, "presence-max", 1_000_000, "presence records (one per channel per uuid) this node keeps; past it new subscribes and heartbeats get 503")
	fs.DurationVar(&o.freshWait, "fresh-wait", 250*time.Millisecond, "how long a read with a token waits for this node's log before reading storage")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 10*time.Second, "how long a graceful shutdown may take")
	fs.StringVar(&o.adminListen, "admin-listen", "127.0.0.1:8081", "address of the admin listener: the keyset admin API, /metrics and Go's profiler (/debug/pprof/); off = none. A non-loopback address needs --admin-token")
	fs.StringVar(&o.adminToken, "admin-token", "", "bearer token every admin request must carry (Authorization: Bearer <token>; at least 16 bytes); required when --admin-listen is not a loopback address")
	fs.StringVar(&o.accessMode, "access", "", "access control: open (any keys are accepted) or keysets (only keysets created with groupcast keyset create; Access Manager tokens where the keyset has it on); empty = open when --listen is a loopback address, keysets otherwise")
	fs.StringVar(&o.corsOrigins, "cors-origins", "", "comma-separated browser origins (scheme://host[:port]) whose pages may call the API, * for any, none for no origin; empty = * with --access open, none with keysets")
	fs.DurationVar(&o.signatureSkew, "signature-skew", access.DefaultSkew, "how far a signed request's timestamp may be from this node's clock")
	fs.IntVar(&o.maxConns, "max-conns", 0, "client connections open at once, parked long-polls' included; past it 503; 0 = RLIMIT_NOFILE less a reserve of 1/16 (32 to 4096), halved with --gossip; -1 = no bound")
	fs.IntVar(&o.maxParked, "max-parked", 0, "subscribes (parked long-polls) served at once; past it 503; 0 = 9/10 of --max-conns; -1 = no bound")
	fs.IntVar(&o.maxParkedPerIP, "max-parked-per-ip", 0, "subscribes served at once for one client address (IPv6: its /64; loopback exempt); past it 429; 0 = 1/10 of --max-parked, 1000 to 10000; -1 = no bound")
	trusted := fs.String("trusted-proxies", defaultTrustedProxies, "addresses and CIDR prefixes of proxies (load balancers, the cluster's nodes) whose X-Forwarded-For names the client for --max-parked-per-ip; none = trust no one")
	fs.StringVar(&o.gossip, "gossip", "", "address (ip:port) to gossip on with the cluster's other nodes (memberlist); empty = a single node that owns every shard")
	fs.StringVar(&o.join, "join", "", "comma-separated gossip addresses of nodes to join through; empty = the first node")
	fs.StringVar(&o.advertise, "advertise", "", "this node's HTTP address (host:port) as other nodes reach it; empty = the --listen address")
	fs.IntVar(&o.replicas, "replicas", 2, "how many nodes own each account shard (the first is its primary)")
	fs.DurationVar(&o.drain, "drain", 5*time.Second, "on SIGTERM, how long parked long-polls are released over (after the shards' new owners caught up)")
	fs.DurationVar(&o.probeInterval, "gossip-probe-interval", 0, "how often a random member is probed for failure; 0 = memberlist's LAN default (1s; a dead node is noticed in about 5s)")
	fs.DurationVar(&o.probeTimeout, "gossip-probe-timeout", 0, "how long a probe waits for its ack; 0 = memberlist's LAN default (500ms)")
	fs.IntVar(&o.logMaxLen, "log-max-len", 100_000, "entries each shard's log keeps (with --redis, at least this many: streams are trimmed in whole nodes of up to 100); a node that falls further behind re-reads the shard's groups from storage")
	fs.Int64Var(&o.gcHeapFloor, "gc-heap-floor", 64<<20, "heap the garbage collector lets the process reach before it collects while the live heap is small (under a quarter of it), in bytes (goroutine stacks and the runtime's own memory come on top): a small live heap is then collected a few times a second instead of every few tens of milliseconds (each collection delays what is queued on a busy core); over half of it live, GOGC and GOMEMLIMIT as set; 0 = GOGC alone")
	fs.Int64Var(&o.logBytes, "log-bytes", 8<<20, "bytes the in-process log (without --redis) keeps, all shards together; past it the oldest entries go first (it only carries entries to this node's own consumer, so it needs to hold what the consumer may lag by)")
	fs.Var(&o.remotes, "remote-region", "another region's Redis, as N=HOST:PORT (repeatable): this region's shard primaries copy that region's edits and messages into this region's logs; needs --redis")
	fs.IntVar(&o.suspicionMult, "gossip-suspicion-mult", 0, "how many probe intervals (times log10 of the member count) a suspect has to refute it; 0 = memberlist's LAN default (4)")
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		name := "GROUPCAST_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(name); v != "" {
			if err := f.Value.Set(v); err != nil {
				envErr = errors.Join(envErr, fmt.Errorf("%s=%q: %w", name, v, err))
			}
		}
	})
	if envErr != nil {
		return o, envErr
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	tp, err := httpapi.ParseTrustedProxies(*trusted)
	if err != nil {
		return o, fmt.Errorf("--trusted-proxies: %w", err)
	}
	o.trustedProxies = tp
	if o.maxConns < -1 || o.maxParked < -1 || o.maxParkedPerIP < -1 {
		return o, errors.New("--max-conns, --max-parked and --max-parked-per-ip must be -1 (no bound), 0 (default) or positive")
	}
	if o.region < 1 {
		return o, fmt.Errorf("--region must be >= 1, got %d", o.region)
	}
	if o.node == "" {
		return o, errors.New("--node must not be empty")
	}
	if o.shards < 1 || o.shards > 1<<16 {
		return o, fmt.Errorf("--shards must be between 1 and 65536, got %d", o.shards)
	}
	if o.secret != "" && len(o.secret) < 16 {
		return o, errors.New("--secret must be at least 16 bytes")
	}
	if o.secret == "" && o.redis != "" {
		// A shared log means more than one node, and a secret generated
		// under one node's --data would make every other node refuse its
		// tokens.
		return o, errors.New("--redis needs --secret (or GROUPCAST_SECRET): every node sharing the log must sign tokens with the same secret, so none may generate its own")
	}
	if o.gossip == "" && (o.join != "" || o.advertise != "") {
		return o, errors.New("--join and --advertise need --gossip")
	}
	if o.gossip != "" && (o.cassandra == "" || o.redis == "") {
		return o, errors.New("--gossip needs --cassandra and --redis: the nodes of a cluster share their store and their shard logs")
	}
	if o.replicas < 1 {
		return o, fmt.Errorf("--replicas must be >= 1, got %d", o.replicas)
	}
	if len(o.remotes) > 0 && o.redis == "" {
		return o, errors.New("--remote-region needs --redis: copies go into this region's shard logs in Redis")
	}
	if _, ok := o.remotes[o.region]; ok {
		return o, fmt.Errorf("--remote-region names this region (%d)", o.region)
	}
	for name, d := range map[string]time.Duration{"--drain": o.drain, "--gossip-probe-interval": o.probeInterval, "--gossip-probe-timeout": o.probeTimeout,
		"--poll-hold": o.pollHold, "--refresh-every": o.refreshEvery, "--fresh-wait": o.freshWait, "--ring-age": o.ringAge, "--volatile-ttl": o.volatileTTL, "--shutdown-timeout": o.shutdownTimeout, "--cassandra-timeout": o.cassandraTimeout} {
		if d < 0 {
			return o, fmt.Errorf("%s must not be negative, got %v", name, d)
		}
	}
	if o.drain >= o.shutdownTimeout {
		return o, fmt.Errorf("--drain (%v) must be shorter than --shutdown-timeout (%v)", o.drain, o.shutdownTimeout)
	}
	if o.gcHeapFloor < 0 {
		return o, fmt.Errorf("--gc-heap-floor must be >= 0, got %d", o.gcHeapFloor)
	}
	if o.logMaxLen < 1 || o.logBytes < 1 {
		return o, fmt.Errorf("--log-max-len and --log-bytes must be >= 1, got %d and %d", o.logMaxLen, o.logBytes)
	}
	if o.suspicionMult < 0 || o.ringSize < 1 {
		return o, errors.New("--gossip-suspicion-mult must be >= 0 and --ring-size >= 1")
	}
	if o.accessMode != "" {
		if _, err := access.ParseMode(o.accessMode); err != nil {
			return o, fmt.Errorf("--access: %w", err)
		}
	}
	if o.signatureSkew <= 0 {
		return o, fmt.Errorf("--signature-skew must be > 0, got %v", o.signatureSkew)
	}
	if o.historyRetention < 0 {
		return o, fmt.Errorf("--history-retention must be >= 0 (0 = until deleted), got %v", o.historyRetention)
	}
	if _, err := parseOrigins(o.corsOrigins, access.Open); err != nil {
		return o, fmt.Errorf("--cors-origins: %w", err)
	}
	if o.adminToken != "" && len(o.adminToken) < 16 {
		return o, errors.New("--admin-token must be at least 16 bytes")
	}
	if o.adminListen != "off" {
		if _, _, err := net.SplitHostPort(o.adminListen); err != nil {
			return o, fmt.Errorf("--admin-listen: %w", err)
		}
		if o.adminToken == "" && !loopback(o.adminListen) {
			// A port opened to the network by mistake must not hand out
			// every keyset's secret key.
			return o, fmt.Errorf("--admin-listen %s is not a loopback address: set --admin-token (or GROUPCAST_ADMIN_TOKEN) so that admin requests need it, or listen on 127.0.0.1", o.adminListen)
		}
	}
	return o, nil
}

// loopback reports whether addr (host:port) names only a loopback
// address: a loopback IP, or "localhost". An empty host (every interface)
// or any other name is not.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// accessMode is --access, or its default: open only on a loopback
// --listen, so that a node reachable from the network never accepts any
// keys unless told to.
func accessMode(flag, listen string) access.Mode {
	if flag == "" {
		if loopback(listen) {
			return access.Open
		}
		return access.Keysets
	}
	m, _ := access.ParseMode(flag) // checked in parseFlags
	return m
}

// parseOrigins parses --cors-origins: empty is the mode's default (any
// origin when open, none with keysets), "none" is none, "*" any; otherwise
// a comma-separated list of origins, each scheme://host[:port].
func parseOrigins(spec string, mode access.Mode) ([]string, error) {
	switch spec {
	case "":
		if mode == access.Open {
			return []string{"*"}, nil
		}
		return nil, nil
	case "none":
		return nil, nil
	case "*":
		return []string{"*"}, nil
	}
	var out []string
	for o := range strings.SplitSeq(spec, ",") {
		o = strings.TrimSpace(o)
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
			(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("%q is not an origin (scheme://host[:port], or * for any)", o)
		}
		out = append(out, u.Scheme+"://"+strings.ToLower(u.Host))
	}
	return out, nil
}

// defaultTrustedProxies are loopback and the private ranges, where load
// balancers and the cluster's other nodes (which forward subscribes with
// X-Forwarded-For) usually are; clients from the internet cannot pass for
// someone else.
const defaultTrustedProxies = "127.0.0.0/8,::1/128,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7"

func parseReplication(s, localDC string) (map[string]int, error) {
	if s == "" {
		return map[string]int{localDC: 1}, nil
	}
	out := map[string]int{}
	for part := range strings.SplitSeq(s, ",") {
		dc, n, ok := strings.Cut(part, ":")
		rf, err := strconv.Atoi(n)
		if !ok || err != nil || rf < 1 || dc == "" {
			return nil, fmt.Errorf("--cassandra-replication: %q is not dc:factor", part)
		}
		out[dc] = rf
	}
	return out, nil
}

type closer func() error

// loadSecret returns the configured secret, or the one kept in dir/secret,
// generating it on first use.
func loadSecret(configured, dir string) ([]byte, error) {
	if configured != "" {
		return []byte(configured), nil
	}
	path := filepath.Join(dir, "secret")
	if b, err := os.ReadFile(path); err == nil {
		if s := strings.TrimSpace(string(b)); len(s) >= 32 {
			return []byte(s), nil
		}
		return nil, fmt.Errorf("%s holds no usable secret (want at least 32 hex characters)", path)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	s := hex.EncodeToString(raw)
	if err := os.WriteFile(path, []byte(s+"\n"), 0o600); err != nil {
		return nil, err
	}
	return []byte(s), nil
}

// cassandraContacts splits --cassandra into contact hosts and the native
// transport port (zero: the default, 9042). gocql dials a contact point at
// its own address, but every other node it discovers (system.peers) at
// that node's rpc_address and one cluster-wide port: a port given with a
// contact point (say, a proxy's in front of Cassandra) is that port, and
// every entry that gives one must give the same. A proxy in front of
// Cassandra must therefore listen on the nodes' rpc_address, or the pools to
// discovered nodes bypass it.
func cassandraContacts(spec string) (hosts []string, port int, err error) {
	for entry := range strings.SplitSeq(spec, ",") {
		host, p := entry, 0
		if strings.Count(entry, ":") == 1 || strings.HasPrefix(entry, "[") {
			var ps string
			if host, ps, err = net.SplitHostPort(entry); err != nil {
				return nil, 0, fmt.Errorf("--cassandra: %q: %w", entry, err)
			}
			if p, err = strconv.Atoi(ps); err != nil || p < 1 || p > 65535 {
				return nil, 0, fmt.Errorf("--cassandra: %q: port must be 1-65535", entry)
			}
		}
		if host == "" {
			return nil, 0, fmt.Errorf("--cassandra: empty host in %q", spec)
		}
		if p != 0 && port != 0 && p != port {
			return nil, 0, fmt.Errorf("--cassandra: %q: every host must use the same port (gocql dials one port cluster-wide), got %d and %d", spec, port, p)
		}
		port = max(port, p)
		hosts = append(hosts, host)
	}
	return hosts, port, nil
}

// accountFilter parses --volatile-accounts.
func accountFilter(spec string) func(channelgroups.Account) bool {
	switch spec {
	case "", "all":
		return nil
	case "none":
		return func(channelgroups.Account) bool { return false }
	}
	set := map[channelgroups.Account]bool{}
	for a := range strings.SplitSeq(spec, ",") {
		set[channelgroups.Account(a)] = true
	}
	return func(a channelgroups.Account) bool { return set[a] }
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) (err error) {
	o, err := parseFlags(args, getenv, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})).With("node", o.node, "region", o.region)
	gcfloor.Set(uint64(o.gcHeapFloor)) // the process's: the last node started in one process sets it

	// Closed in reverse order of construction, errors collected.
	var closers []closer
	defer func() {
		for i := len(closers) - 1; i >= 0; i-- {
			err = errors.Join(err, closers[i]())
		}
	}()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	var (
		store       observe.Outbox
		accessStore access.Store // the same store: keysets and revocations
		storeDesc   string
		history     archive.Store // the same store: Message Persistence
	)
	if o.cassandra == "" {
		path := filepath.Join(o.data, "groups.db")
		b, err := bolt.Open(path, bolt.Config{})
		if err != nil {
			return err
		}
		closers = append(closers, b.Close)
		store, accessStore, history, storeDesc = b, b, b, "embedded bbolt "+path
	} else {
		repl, err := parseReplication(o.replication, o.cassandraDC)
		if err != nil {
			return err
		}
		hosts, port, err := cassandraContacts(o.cassandra)
		if err != nil {
			return err
		}
		c, err := cassandra.New(ctx, cassandra.Config{
			Hosts:       hosts,
			Port:        port,
			LocalDC:     o.cassandraDC,
			Region:      o.region,
			Keyspace:    o.keyspace,
			Replication: repl,
			Timeout:     o.cassandraTimeout,
			Logger:      logger,
		})
		if err != nil {
			return err
		}
		closers = append(closers, c.Close)
		store, accessStore, history, storeDesc = c, c, c, fmt.Sprintf("cassandra %s (dc %s, keyspace %s)", o.cassandra, o.cassandraDC, o.keyspace)
	}
	regionStores := map[int]channelgroups.Store{}
	if o.regionDCs != "" {
		if o.cassandra == "" {
			return errors.New("--region-dcs needs --cassandra")
		}
		for part := range strings.SplitSeq(o.regionDCs, ",") {
			r, dc, ok := strings.Cut(part, "=")
			region, err := strconv.Atoi(r)
			if !ok || err != nil || region < 1 || dc == "" {
				return fmt.Errorf("--region-dcs: %q is not region=dc", part)
			}
			hosts, port, err := cassandraContacts(o.cassandra)
			if err != nil {
				return err
			}
			remote, err := cassandra.New(ctx, cassandra.Config{Hosts: hosts, Port: port, LocalDC: dc, Region: region, Keyspace: o.keyspace, Timeout: o.cassandraTimeout, Logger: logger})
			if err != nil {
				return fmt.Errorf("region %d (dc %s): %w", region, dc, err)
			}
			closers = append(closers, remote.Close)
			regionStores[region] = remote
		}
	}
	observed, err := observe.New(store, reg)
	if err != nil {
		return err
	}
	pingers := []func(context.Context) error{observed.Ping}

	var (
		shardLog subscriber.Log
		logDesc  = "in-process"
	)
	if o.redis == "" {
		if shardLog, err = memlog.New(memlog.Config{Shards: o.shards, MaxLen: o.logMaxLen, MaxBytes: o.logBytes}); err != nil {
			return err
		}
	} else {
		rl, err := redislog.New(redislog.Config{Addr: o.redis, Prefix: o.redisPrefix, Region: o.region, Shards: o.shards, MaxLen: int64(o.logMaxLen)})
		if err != nil {
			return err
		}
		closers = append(closers, rl.Close)
		pingers = append(pingers, rl.Ping)
		shardLog, logDesc = rl, "redis "+o.redis
	}
	remotes := map[int]subscriber.Log{}
	for region, addr := range o.remotes {
		rl, err := redislog.New(redislog.Config{Addr: addr, Prefix: o.redisPrefix, Region: region, Shards: o.shards, MaxLen: int64(o.logMaxLen)})
		if err != nil {
			return err
		}
		closers = append(closers, rl.Close)
		remotes[region] = rl
	}
	if len(remotes) > 0 {
		logDesc += "; copying region " + o.remotes.String()
	}

	secret, err := loadSecret(o.secret, o.data)
	if err != nil {
		return err
	}
	if o.secret == "" && o.cassandra != "" {
		logger.Warn("no --secret: using one generated under --data; every node of the cluster must share one", "file", filepath.Join(o.data, "secret"))
	}
	tokens, err := channelgroups.NewTokenKey(secret, 0)
	if err != nil {
		return err
	}
	cache, err := storagecache.New(observed, storagecache.Config{Registerer: reg})
	if err != nil {
		return err
	}
	closers = append(closers, func() error { cache.Close(); return nil })
	overlay, err := volatile.New(volatile.Config{
		TTL:        o.volatileTTL,
		Enabled:    accountFilter(o.volatileAccounts),
		OnEvict:    cache.Invalidate,
		Registerer: reg,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return err
	}
	defer ln.Close()
	advertise := cmp.Or(o.advertise, ln.Addr().String())

	var (
		cl        *membership.Cluster
		ownership subscriber.Ownership
		status    = func() any { return single(o.node, advertise, o.region, o.shards) }
	)
	if o.gossip != "" {
		var join []string
		if o.join != "" {
			join = strings.Split(o.join, ",")
		}
		cl, err = membership.New(membership.Config{
			Name: o.node, BindAddr: o.gossip, Join: join, HTTPAddr: advertise, Region: o.region, Shards: o.shards,
			Replicas: o.replicas, ProbeInterval: o.probeInterval, ProbeTimeout: o.probeTimeout, SuspicionMult: o.suspicionMult,
			Logger: logger, Registerer: reg,
		})
		if err != nil {
			return err
		}
		closers = append(closers, cl.Shutdown)
		if err := cl.Join(ctx); err != nil {
			return err
		}
		ownership, status = cl, func() any { return cl.Status() }
		logger.Info("joined the cluster", "gossip", cl.GossipAddr(), "members", len(cl.Status().Members), "shards_owned", cl.Assignment().Count())
	}

	var router httpapi.Router // a nil *membership.Cluster must not become a non-nil Router
	if cl != nil {
		router = cl
	}
	retention := o.historyRetention
	if retention == 0 {
		retention = -1 // until deleted
	}
	if !o.history {
		history = nil
	}
	clock := channelgroups.NewClock(nil, 0)
	node, err := subscriber.NewNode(shardLog, observed, cache, overlay, clock, subscriber.Config{
		Region: o.region, Shards: o.shards, FreshWait: o.freshWait, RefreshEvery: o.refreshEvery, Ownership: ownership,
		RegionStores: regionStores, Remotes: remotes, PollHold: o.pollHold, RingSize: o.ringSize, RingAge: o.ringAge, RingBytes: o.ringBytes, PresenceMax: o.presenceMax, Logger: logger, Registerer: reg,
		Archive: history, HistoryRetention: retention,
	})
	if err != nil {
		return err
	}
	if err := node.Start(ctx); err != nil {
		return err
	}
	nodeCtx, stopNode := context.WithCancel(context.Background())
	nodeDone := make(chan error, 1)
	go func() { nodeDone <- node.Run(nodeCtx) }()
	closers = append(closers, func() error { stopNode(); return <-nodeDone })

	svc, err := channelgroups.NewService(observed, clock, channelgroups.ServiceConfig{Shards: o.shards, Region: o.region, Announcer: node})
	if err != nil {
		return err
	}
	// Keysets and revocations: loaded before the first request, then
	// polled (a change made through another node shows within the poll).
	keysets, err := access.NewRegistry(accessStore, access.RegistryConfig{Logger: logger, Registerer: reg})
	if err != nil {
		return err
	}
	if err := keysets.Refresh(ctx); err != nil {
		return fmt.Errorf("loading the keysets: %w", err)
	}
	keysetsCtx, stopKeysets := context.WithCancel(context.Background())
	keysetsDone := make(chan error, 1)
	go func() { keysetsDone <- keysets.Run(keysetsCtx) }()
	closers = append(closers, func() error { stopKeysets(); return <-keysetsDone })
	mode := accessMode(o.accessMode, o.listen)
	origins, err := parseOrigins(o.corsOrigins, mode)
	if err != nil {
		return fmt.Errorf("--cors-origins: %w", err)
	}
	guard, err := access.NewGuard(keysets, access.GuardConfig{Mode: mode, Store: accessStore, Skew: o.signatureSkew, Registerer: reg})
	if err != nil {
		return err
	}
	if mode == access.Open && !loopback(o.listen) {
		logger.Warn("--access open on a non-loopback address: anyone who reaches this node may use any keys", "listen", o.listen)
	}
	logger.Info("access", "mode", mode, "keysets", len(keysets.Keysets()), "cors_origins", strings.Join(origins, ","))

	api, err := httpapi.New(httpapi.Config{
		Groups:  svc,
		Views:   node,
		Tokens:  tokens,
		Replays: observed,
		Pubsub:  node,
		Region:  o.region,
		Shards:  o.shards,
		Node:    o.node,
		Cluster: status,
		Router:  router,
		// A forwarded long-poll waits for the owner's answer: its hold,
		// and a margin.
		ForwardTimeout: o.pollHold + 30*time.Second,
		Registerer:     reg,
		Access:         guard,
		CORSOrigins:    origins,
		Logger:         logger,
		Ready: func(ctx context.Context) error {
			for _, p := range pingers {
				if err := p(ctx); err != nil {
					return err
				}
			}
			return nil
		},
	})
	if err != nil {
		return err
	}
	if o.adminListen != "off" {
		adm, err := admin.New(accessStore, keysets, admin.Config{Token: o.adminToken, Gatherer: reg, Logger: logger})
		if err != nil {
			return err
		}
		aln, err := net.Listen("tcp", o.adminListen)
		if err != nil {
			return fmt.Errorf("admin listener (--admin-listen %s; off = none): %w", o.adminListen, err)
		}
		adminSrv := &http.Server{Handler: adm, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}
		adminDone := make(chan error, 1)
		go func() { adminDone <- adminSrv.Serve(aln) }()
		closers = append(closers, func() error {
			// The profiler's long requests (profile?seconds=) are cut
			// short rather than waited for.
			err := adminSrv.Close()
			if serr := <-adminDone; !errors.Is(serr, http.ErrServerClosed) {
				err = errors.Join(err, serr)
			}
			return err
		})
		adminURL := "http://" + aln.Addr().String()
		// On stdout, like the serving line, so that scripts and tests
		// started with --admin-listen 127.0.0.1:0 find the port.
		fmt.Fprintf(stdout, "groupcastd admin listening %s\n", adminURL)
		logger.Info("admin listening", "addr", aln.Addr().String(), "token", o.adminToken != "")
	}
	srv, err := httpapi.NewLimitedServer(api, httpapi.Limits{
		MaxConns: o.maxConns, MaxParked: o.maxParked, MaxParkedPerIP: o.maxParkedPerIP, TrustedProxies: o.trustedProxies,
	})
	if err != nil {
		return err
	}
	lim := srv.Limits()
	logger.Info("limits", "max_conns", lim.MaxConns, "max_parked", lim.MaxParked, "max_parked_per_ip", lim.MaxParkedPerIP, "trusted_proxies", len(lim.TrustedProxies))
	served := make(chan error, 1)
	// Serve returns only when the listener fails for good: out of file
	// descriptors, it pauses and retries.
	go func() { served <- srv.Serve(ln) }()
	url := "http://" + ln.Addr().String()
	gossipDesc := "single node"
	if cl != nil {
		gossipDesc = "gossip " + cl.GossipAddr()
	}
	fmt.Fprintf(stdout, "groupcastd serving %s (store: %s; log: %s; region %d; node %s; %s; access %s)\n", url, storeDesc, logDesc, o.region, o.node, gossipDesc, mode)
	logger.Info("serving", "url", url, "store", storeDesc, "log", logDesc)

	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	logger.Info("shutting down", "timeout", o.shutdownTimeout, "drain", o.drain)
	deadline := time.Now().Add(o.shutdownTimeout)
	sctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	// Readiness off; in a cluster, the others take over this node's shards
	// while it keeps serving its parked polls until they have caught up.
	api.SetDraining()
	if cl != nil {
		cl.SetDraining()
		hctx, hcancel := context.WithTimeout(sctx, o.shutdownTimeout/4)
		if err := cl.WaitHandover(hctx); err != nil {
			logger.Warn("the new owners did not all report caught up; releasing anyway", "err", err)
		}
		hcancel()
	}
	// Parked polls answer spread over --drain (their clients come back
	// through any node, not all at once), within what is left of the
	// shutdown's time; then in-flight requests finish.
	api.Drain(max(min(o.drain, time.Until(deadline)-2*time.Second), 0))
	if cl != nil {
		// Leave before the listener closes: the others stop routing here
		// while in-flight forwards still get their answers.
		if err := cl.Leave(min(2*time.Second, max(time.Until(deadline)/4, 100*time.Millisecond))); err != nil {
			logger.Warn("leaving the cluster", "err", err)
		}
	}
	if err := srv.ShutdownWithContext(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	<-served
	logger.Info("stopped")
	return nil
}

// single is GET /cluster of a node without gossip: it owns every shard.
func single(node, http string, region, shards int) membership.Status {
	s := membership.Status{Self: node, Replicas: 1, Owners: make(map[string][]string, shards),
		Members: []membership.Member{{Node: node, HTTP: http, Region: region, State: membership.Active}}}
	for i := range shards {
		s.Owners[strconv.Itoa(i)] = []string{node}
	}
	return s
}
