package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"
)

// maxHTTPAddr bounds Config.HTTPAddr so that a node's gossiped metadata
// stays well under memberlist's 512-byte limit.
const maxHTTPAddr = 256

// Config configures a Cluster. It is passed by value and checked by New;
// each field says what its zero value means.
type Config struct {
	// Name is this node's name, unique in the cluster. Required.
	Name string
	// BindAddr is the gossip address, "host:port", for both UDP and TCP.
	// The host must be an IP address; port 0 picks a free port (see
	// Cluster.GossipAddr). Required.
	BindAddr string
	// Join lists the gossip addresses of nodes to join through. Empty means
	// this is the first node.
	Join []string

	// HTTPAddr is this node's public HTTP address, "host:port", to which
	// peers forward requests. Required.
	HTTPAddr string
	// Region is this node's region; only nodes of the same region share
	// shards. Zero means 1.
	Region int
	// Shards is the number of account shards. Required, > 0.
	Shards int
	// Replicas is how many nodes own each shard. Zero means 2.
	Replicas int

	// ProbeInterval is how often a random member is probed for failure.
	// Zero means memberlist's LAN default (1s). The full state exchange
	// runs every 30 probe intervals and TCP operations time out after 10.
	ProbeInterval time.Duration
	// ProbeTimeout is how long to wait for a probe's ack; it must be less
	// than ProbeInterval. Zero means memberlist's LAN default (500ms).
	ProbeTimeout time.Duration
	// SuspicionMult scales how long a suspected node has to refute the
	// suspicion before it is declared dead. Zero means memberlist's LAN
	// default (4).
	SuspicionMult int
	// GossipInterval is how often gossip messages are sent. Zero means
	// memberlist's LAN default (200ms).
	GossipInterval time.Duration
	// Quarantine is how long Route skips a node whose forward was refused
	// (see Cluster.Refused). Zero means 2s.
	Quarantine time.Duration

	// Logger receives the cluster's logs; memberlist's own lines are
	// logged at debug level. Nil means discard.
	Logger *slog.Logger
	// Registerer registers the cluster's metrics. Nil means none.
	Registerer prometheus.Registerer
	// Now is the clock used for quarantines. Nil means time.Now.
	Now func() time.Time
}

// withDefaults checks c and returns it with its zero values replaced by
// their defaults.
func (c Config) withDefaults() (Config, error) {
	lan := memberlist.DefaultLANConfig()
	if c.Name == "" {
		return c, errors.New("cluster: Name is required")
	}
	if c.BindAddr == "" {
		return c, errors.New("cluster: BindAddr is required")
	}
	if _, _, err := splitBindAddr(c.BindAddr); err != nil {
		return c, err
	}
	if c.HTTPAddr == "" {
		return c, errors.New("cluster: HTTPAddr is required")
	}
	if len(c.HTTPAddr) > maxHTTPAddr {
		return c, fmt.Errorf("cluster: HTTPAddr is longer than %d bytes", maxHTTPAddr)
	}
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		return c, fmt.Errorf("cluster: HTTPAddr must be host:port: %w", err)
	}
	switch {
	case c.Region < 0:
		return c, errors.New("cluster: Region must be >= 0")
	case c.Region == 0:
		c.Region = 1
	}
	if c.Shards <= 0 {
		return c, errors.New("cluster: Shards must be > 0")
	}
	switch {
	case c.Replicas < 0:
		return c, errors.New("cluster: Replicas must be >= 0")
	case c.Replicas == 0:
		c.Replicas = 2
	}
	if c.ProbeInterval < 0 || c.ProbeTimeout < 0 || c.GossipInterval < 0 || c.Quarantine < 0 {
		return c, errors.New("cluster: durations must be >= 0")
	}
	if c.SuspicionMult < 0 {
		return c, errors.New("cluster: SuspicionMult must be >= 0")
	}
	if c.ProbeInterval == 0 {
		c.ProbeInterval = lan.ProbeInterval
	}
	if c.ProbeTimeout == 0 {
		c.ProbeTimeout = lan.ProbeTimeout
	}
	if c.ProbeTimeout >= c.ProbeInterval {
		return c, fmt.Errorf("cluster: ProbeTimeout (%s) must be less than ProbeInterval (%s)", c.ProbeTimeout, c.ProbeInterval)
	}
	if c.SuspicionMult == 0 {
		c.SuspicionMult = lan.SuspicionMult
	}
	if c.GossipInterval == 0 {
		c.GossipInterval = lan.GossipInterval
	}
	if c.Quarantine == 0 {
		c.Quarantine = 2 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	c.Join = append([]string(nil), c.Join...)
	return c, nil
}

// splitBindAddr splits a gossip bind address into its IP and port.
func splitBindAddr(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("cluster: BindAddr must be host:port: %w", err)
	}
	if net.ParseIP(host) == nil {
		return "", 0, fmt.Errorf("cluster: BindAddr host %q must be an IP address", host)
	}
	port, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return "", 0, fmt.Errorf("cluster: BindAddr port %q: %w", p, err)
	}
	return host, int(port), nil
}

// memberlistConfig translates c (with defaults) into memberlist's config.
func (c Config) memberlistConfig() *memberlist.Config {
	host, port, _ := splitBindAddr(c.BindAddr) // checked by withDefaults
	mc := memberlist.DefaultLANConfig()
	mc.Name = c.Name
	mc.BindAddr = host
	mc.BindPort = port
	mc.AdvertisePort = port // memberlist sets both when it picks the port
	mc.ProbeInterval = c.ProbeInterval
	mc.ProbeTimeout = c.ProbeTimeout
	mc.SuspicionMult = c.SuspicionMult
	mc.GossipInterval = c.GossipInterval
	// Keep the LAN defaults' proportions: with the 1s default probe interval
	// these are memberlist's own 30s push/pull and 10s TCP timeout.
	mc.PushPullInterval = 30 * c.ProbeInterval
	mc.GossipToTheDeadTime = mc.PushPullInterval
	mc.TCPTimeout = 10 * c.ProbeInterval
	mc.Logger = newMemberlistLogger(c.Logger)
	return mc
}
