package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"

	"github.com/groupcast/groupcast/channelgroups"
	"github.com/groupcast/groupcast/internal/rywcheck"
	"github.com/groupcast/groupcast/internal/testenv"
)

func TestCassandraContacts(t *testing.T) {
	for _, tc := range []struct {
		spec  string
		hosts []string
		port  int
		bad   bool
	}{
		{spec: "127.0.0.1", hosts: []string{"127.0.0.1"}},
		{spec: "a,b", hosts: []string{"a", "b"}},
		{spec: "a:9043,b:9043", hosts: []string{"a", "b"}, port: 9043},
		{spec: "a,b:9043", hosts: []string{"a", "b"}, port: 9043},
		{spec: "[::1]:9043", hosts: []string{"::1"}, port: 9043},
		{spec: "::1", hosts: []string{"::1"}},
		{spec: "a:1,b:2", bad: true},
		{spec: "a:x", bad: true},
		{spec: "a:0", bad: true},
		{spec: "a:70000", bad: true},
		{spec: "a,,b", bad: true},
		{spec: ":9042", bad: true},
	} {
		hosts, port, err := cassandraContacts(tc.spec)
		if tc.bad {
			if err == nil {
				t.Errorf("cassandraContacts(%q) = %q, %d; want an error", tc.spec, hosts, port)
			}
			continue
		}
		if err != nil || !slices.Equal(hosts, tc.hosts) || port != tc.port {
			t.Errorf("cassandraContacts(%q) = %q, %d, %v; want %q, %d", tc.spec, hosts, port, err, tc.hosts, tc.port)
		}
	}
}

// cassandraProxy is a TCP fault proxy (toxiproxy, in process) in front of
// the shared Cassandra, which is never stopped: one listener per Cassandra
// host, on that host's address (its rpc_address, which gocql dials for
// every node it discovers) and one port for all (gocql dials every
// discovered node at one cluster-wide port). The nodes get its --cassandra.
type cassandraProxy struct {
	t       *testing.T
	proxies []*toxiproxy.Proxy
	spec    string // --cassandra for the nodes: host:port,...
}

func newCassandraProxy(t *testing.T) *cassandraProxy {
	t.Helper()
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	cp := &cassandraProxy{t: t}
	port := "0"
	var spec []string
	for i, h := range testenv.CassandraHosts(t) {
		host, upstream := h, net.JoinHostPort(h, "9042")
		if hh, _, err := net.SplitHostPort(h); err == nil {
			host, upstream = hh, h
		}
		p := toxiproxy.NewProxy(srv, fmt.Sprintf("cassandra%d", i), net.JoinHostPort(host, port), upstream)
		if err := p.Start(); err != nil {
			t.Fatalf("proxy in front of %s: %v", upstream, err)
		}
		t.Cleanup(p.Stop)
		_, port, _ = net.SplitHostPort(p.Listen)
		cp.proxies = append(cp.proxies, p)
		spec = append(spec, p.Listen)
	}
	cp.spec = strings.Join(spec, ",")
	return cp
}

// down makes Cassandra unreachable: listeners closed (new connections
// refused) and every open connection closed.
func (cp *cassandraProxy) down() {
	for _, p := range cp.proxies {
		p.Stop()
	}
}

// up listens again on the same addresses. A port taken meanwhile (it is
// free while down) is retried until the deadline.
func (cp *cassandraProxy) up() {
	cp.t.Helper()
	for _, p := range cp.proxies {
		eventually(cp.t, 30*time.Second, "proxy listening again on "+p.Listen, func() bool { return p.Start() == nil })
	}
}

// blackhole drops every answer from Cassandra on the open connections
// and on new ones: requests still arrive (and writes are applied), the
// answers never do, and connections stay open.
func (cp *cassandraProxy) blackhole() {
	cp.t.Helper()
	for _, p := range cp.proxies {
		if _, err := p.Toxics.AddToxicJson(strings.NewReader(`{"name":"blackhole","type":"timeout","stream":"downstream","toxicity":1,"attributes":{"timeout":0}}`)); err != nil {
			cp.t.Fatal(err)
		}
	}
}

// clear removes the blackhole; the connections it held are closed.
func (cp *cassandraProxy) clear() {
	cp.t.Helper()
	for _, p := range cp.proxies {
		if err := p.Toxics.RemoveToxic(context.Background(), "blackhole"); err != nil {
			cp.t.Fatal(err)
		}
	}
}

// faultSecret signs the nodes' tokens, so the test can make one.
const faultSecret = "fault-test-secret-0123456789"

// unprovable returns tok moved to a log position no node has reached (half
// a minute ahead, within the skew a token may have): a node cannot prove
// from memory that it is fresh for it, and must read storage.
func unprovable(t *testing.T, acct, tok string) string {
	t.Helper()
	key, err := channelgroups.NewTokenKey([]byte(faultSecret), 0)
	if err != nil {
		t.Fatal(err)
	}
	tk, err := key.Decode(channelgroups.Account(acct), tok, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ahead := channelgroups.Position{Ms: uint64(time.Now().Add(30 * time.Second).UnixMilli())}
	tk.Positions = []channelgroups.RegionPosition{{Region: 1, Pos: ahead}}
	return key.Encode(channelgroups.Account(acct), tk)
}

// probe is one GET's outcome.
type probe struct {
	status     int
	retryAfter string
	body       []byte
	took       time.Duration
}

var probeClient = &http.Client{Timeout: 30 * time.Second}

func probeGet(t *testing.T, u string) probe {
	t.Helper()
	start := time.Now()
	resp, err := probeClient.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return probe{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"), body: body, took: time.Since(start)}
}

// refused asserts an edit was answered 503 with Retry-After and PubNub's
// JSON error body.
func (p probe) refused(t *testing.T, what string) {
	t.Helper()
	var e struct {
		Status int  `json:"status"`
		Error  bool `json:"error"`
	}
	if secs, err := strconv.Atoi(p.retryAfter); p.status != 503 || err != nil || secs < 1 || json.Unmarshal(p.body, &e) != nil || e.Status != 503 || !e.Error {
		t.Fatalf("%s: got %d Retry-After %q %s; want 503 with Retry-After and a JSON error body", what, p.status, p.retryAfter, p.body)
	}
}

// TestCassandraOutage: Cassandra becomes unreachable for 20 s in the middle
// of a read-your-writes run on three nodes (first its answers are lost on
// open connections, then every connection is closed and new ones refused)
// and comes back. Edits answer 503 with Retry-After and a JSON body; token
// reads keep being answered from the nodes' caches, never stale; the nodes
// recover by themselves, without a restart. Each phase waits for evidence.
func TestCassandraOutage(t *testing.T) {
	cp := newCassandraProxy(t)
	// The later --cassandra and --secret win: the nodes reach Cassandra
	// only through the proxy (the test's keyspace is dropped directly).
	nodes := cluster(t, 3, testenv.RedisAddr(t), "--cassandra", cp.spec, "--secret", faultSecret)
	const (
		// While Cassandra is unreachable a list answered 200 can only come
		// from a node's memory.
		listsServed = `groupcast_http_requests_total{code="200",endpoint="cg_list"}`
		storeErrors = `groupcast_store_duration_seconds_count{op="read",outcome="error"}`
	)
	refusedEdits := func() float64 {
		return sum(t, nodes, `groupcast_http_requests_total{code="503",endpoint="cg_add"}`) +
			sum(t, nodes, `groupcast_http_requests_total{code="503",endpoint="cg_remove"}`)
	}

	// A probe group every node has cached, and a token covering its edit.
	probeBase := nodes[0].url + "/v1/channel-registration/sub-key/outage/channel-group/probe"
	var added struct {
		Token string `json:"token"`
	}
	if p := probeGet(t, probeBase+"?add=kept"); p.status != 200 || json.Unmarshal(p.body, &added) != nil || added.Token == "" {
		t.Fatalf("probe edit: %d %s", p.status, p.body)
	}
	tokenRead := func(s *server, tok string) probe {
		return probeGet(t, strings.Replace(probeBase, nodes[0].url, s.url, 1)+"?token="+url.QueryEscape(tok))
	}
	for i, s := range nodes {
		if p := tokenRead(s, added.Token); p.status != 200 || !strings.Contains(string(p.body), `"kept"`) {
			t.Fatalf("node %d: token read before the outage: %d %s", i, p.status, p.body)
		}
		// A token no node can prove fresh from memory is answered from
		// storage.
		if p := tokenRead(s, unprovable(t, "outage", added.Token)); p.status != 200 || !strings.Contains(string(p.body), `"kept"`) {
			t.Fatalf("node %d: read with a token ahead of the log before the outage: %d %s", i, p.status, p.body)
		}
	}

	var progress atomic.Int64
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan rywcheck.Result, 1)
	go func() {
		done <- rywcheck.Run(ctx, rywcheck.Config{Nodes: urls(nodes), Clients: 8, Duration: time.Hour, Account: "outage", Group: "g", Progress: &progress})
	}()
	eventually(t, time.Minute, "200 edits before the outage", func() bool { return progress.Load() >= 200 })

	// Phase 1: Cassandra's answers are lost on the open connections.
	outage := time.Now()
	cp.blackhole()
	refused0, served0 := refusedEdits(), sum(t, nodes, listsServed)
	eventually(t, time.Minute, "edits refused and token reads served while answers are lost", func() bool {
		// An edit waits for gocql's timeout here, so the clients are slow.
		return refusedEdits() >= refused0+8 && sum(t, nodes, listsServed) >= served0+8
	})
	p := probeGet(t, probeBase+"?add=blackholed")
	p.refused(t, "edit while answers are lost")
	t.Logf("answers lost: an edit was refused after %v; %v edits refused, %v lists served", p.took.Round(time.Millisecond), refusedEdits()-refused0, sum(t, nodes, listsServed)-served0)

	// Phase 2: down: connections closed, new ones refused.
	cp.down()
	cp.clear()
	refused1, served1 := refusedEdits(), sum(t, nodes, listsServed)
	eventually(t, time.Minute, "edits refused and token reads served while Cassandra is down", func() bool {
		return refusedEdits() >= refused1+30 && sum(t, nodes, listsServed) >= served1+50
	})
	// Every node reaches Cassandra only through the proxy: each failed
	// reading it, and no edit is acknowledged while it is down.
	for i, s := range nodes {
		if n := metricValue(t, s, storeErrors); n == 0 {
			t.Fatalf("node %d: no failed store read during the outage: it reaches Cassandra around the proxy", i)
		}
	}
	acked := progress.Load()
	for i, s := range nodes {
		p := probeGet(t, strings.Replace(probeBase, nodes[0].url, s.url, 1)+"?add=down")
		p.refused(t, fmt.Sprintf("node %d: edit while Cassandra is down", i))
		t.Logf("node %d: edit refused after %v: Retry-After %s, %s", i, p.took.Round(time.Millisecond), p.retryAfter, p.body)
		if p := tokenRead(s, added.Token); p.status != 200 || !strings.Contains(string(p.body), `"kept"`) {
			t.Fatalf("node %d: token read of a cached group while Cassandra is down: %d %s; want 200 listing kept", i, p.status, p.body)
		}
		// One it cannot prove fresh is refused, never answered from the
		// cache.
		p = tokenRead(s, unprovable(t, "outage", added.Token))
		p.refused(t, fmt.Sprintf("node %d: read with a token ahead of the log while Cassandra is down", i))
	}
	// Readiness includes a storage ping: a load balancer using it takes
	// the nodes out while they could still serve reads. Logged, not
	// asserted.
	ready := probeGet(t, nodes[0].url+"/readyz")
	t.Logf("/readyz while Cassandra is down: %d %s", ready.status, ready.body)
	// The outage lasts 20 s in all: its length is the fault, not a wait
	// for something to happen.
	select {
	case <-t.Context().Done():
		t.Fatal(t.Context().Err())
	case <-time.After(time.Until(outage.Add(20 * time.Second))):
	}
	if got := progress.Load(); got != acked {
		t.Fatalf("%d edits acknowledged while Cassandra was down: some node reaches it around the proxy", got-acked)
	}
	t.Logf("down: %v edits refused, %v lists served, %v failed store reads", refusedEdits()-refused1, sum(t, nodes, listsServed)-served1, sum(t, nodes, storeErrors))

	// Phase 3: back. The same processes (started once, on the same
	// addresses) recover by themselves.
	cp.up()
	back := time.Now()
	atUp := progress.Load()
	eventually(t, time.Minute, "edits acknowledged through every node again", func() bool {
		for _, s := range nodes {
			if p := probeGet(t, strings.Replace(probeBase, nodes[0].url, s.url, 1)+"?add=back"); p.status != 200 {
				return false
			}
		}
		return true
	})
	t.Logf("every node took edits again %v after Cassandra came back", time.Since(back).Round(100*time.Millisecond))
	eventually(t, time.Minute, "200 more edits after recovery", func() bool { return progress.Load() >= atUp+200 })
	cancel()
	res := <-done
	t.Logf("%s; outage %v", res, time.Since(outage).Round(time.Second))
	fmt.Printf("cassandra outage: %s\n", res)
	if res.Violations != 0 || res.EditsUnavailable == 0 || res.Reads == 0 {
		t.Fatalf("%s; first: %s", res, res.First)
	}
}
