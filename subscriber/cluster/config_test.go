package cluster

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestNewRejectsBadConfig(t *testing.T) {
	good := fastConfig("n")
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"no name", func(c *Config) { c.Name = "" }, "Name"},
		{"no bind address", func(c *Config) { c.BindAddr = "" }, "BindAddr"},
		{"bind address without port", func(c *Config) { c.BindAddr = "127.0.0.1" }, "BindAddr"},
		{"bind address not an IP", func(c *Config) { c.BindAddr = "localhost:0" }, "BindAddr"},
		{"bind port out of range", func(c *Config) { c.BindAddr = "127.0.0.1:70000" }, "BindAddr"},
		{"no HTTP address", func(c *Config) { c.HTTPAddr = "" }, "HTTPAddr"},
		{"HTTP address without port", func(c *Config) { c.HTTPAddr = "example" }, "HTTPAddr"},
		{"HTTP address too long", func(c *Config) { c.HTTPAddr = strings.Repeat("h", 300) + ":80" }, "HTTPAddr"},
		{"negative region", func(c *Config) { c.Region = -1 }, "Region"},
		{"no shards", func(c *Config) { c.Shards = 0 }, "Shards"},
		{"negative replicas", func(c *Config) { c.Replicas = -1 }, "Replicas"},
		{"negative duration", func(c *Config) { c.Quarantine = -1 }, "durations"},
		{"negative suspicion", func(c *Config) { c.SuspicionMult = -1 }, "SuspicionMult"},
		{"probe timeout not below interval", func(c *Config) { c.ProbeTimeout = c.ProbeInterval }, "ProbeTimeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			tc.mutate(&cfg)
			c, err := New(cfg)
			if err == nil {
				_ = c.Shutdown()
				t.Fatalf("got no error, want one about %s", tc.want)
			}
			if !strings.HasPrefix(err.Error(), "cluster: ") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %q, want a cluster: error about %s", err, tc.want)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	cfg, err := Config{Name: "n", BindAddr: "127.0.0.1:0", HTTPAddr: "h:80", Shards: 4}.withDefaults()
	if err != nil {
		t.Fatalf("withDefaults: %v", err)
	}
	if cfg.Region != 1 || cfg.Replicas != 2 || cfg.Logger == nil || cfg.Now == nil {
		t.Errorf("got region %d, replicas %d, logger %v, now set %t; want 1, 2, a logger, a clock",
			cfg.Region, cfg.Replicas, cfg.Logger, cfg.Now != nil)
	}
	mc := cfg.memberlistConfig()
	if mc.ProbeInterval.Seconds() != 1 || mc.ProbeTimeout.Milliseconds() != 500 || mc.SuspicionMult != 4 ||
		mc.GossipInterval.Milliseconds() != 200 || mc.PushPullInterval.Seconds() != 30 {
		t.Errorf("got probe %s/%s, suspicion %d, gossip %s, push/pull %s; want memberlist's LAN defaults",
			mc.ProbeInterval, mc.ProbeTimeout, mc.SuspicionMult, mc.GossipInterval, mc.PushPullInterval)
	}
}

func TestNewRejectsDuplicateMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	cfg := fastConfig("a")
	cfg.Registerer = reg
	a, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = a.Shutdown() })
	cfg.Name = "b"
	if b, err := New(cfg); err == nil {
		_ = b.Shutdown()
		t.Fatalf("got a second cluster on the same registry, want an error")
	}
}
