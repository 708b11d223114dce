package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/groupcast/groupcast/internal/nodetest"
	"github.com/groupcast/groupcast/subscriber"
)

// syncBuffer is a bytes.Buffer safe for one writer and one reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func TestCLI(t *testing.T) {
	_, cfg := nodetest.Embedded(t, nil, subscriber.Config{})
	origin := nodetest.Serve(t, cfg)
	cli := func(args ...string) string {
		t.Helper()
		var out, errs bytes.Buffer
		if err := run(t.Context(), append([]string{"--origin", origin}, args...), &out, &errs); err != nil {
			t.Fatalf("groupcast %v: %v (%s)", args, err, errs.String())
		}
		return out.String()
	}
	if out := cli("groups", "add", "fam", "news", "sports"); !strings.HasPrefix(out, "OK timetoken=") || !strings.Contains(out, "token=") {
		t.Fatalf("groups add: %q", out)
	}
	if out := cli("groups", "list", "fam"); out != "news\nsports\n" {
		t.Fatalf("groups list fam: %q", out)
	}
	if out := cli("groups", "list"); out != "fam\n" {
		t.Fatalf("groups list: %q", out)
	}
	cli("groups", "remove", "fam", "news")
	if out := cli("time"); len(strings.TrimSpace(out)) != 17 {
		t.Fatalf("time: %q", out)
	}

	// subscribe prints what is published to the group.
	ctx, cancel := context.WithCancel(t.Context())
	var subOut syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--origin", origin, "subscribe", "-g", "fam"}, &subOut, &bytes.Buffer{})
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(subOut.String(), `"hello"`) {
		cli("publish", "sports", `"hello"`) // until the subscriber has connected and gets one
		if time.Now().After(deadline) {
			t.Fatalf("subscribe printed %q", subOut.String())
		}
		select {
		case <-time.After(50 * time.Millisecond):
		case err := <-done:
			t.Fatalf("subscribe ended: %v", err)
		}
	}
	cancel()
	<-done
	if !strings.Contains(subOut.String(), `"b":"fam"`) {
		t.Fatalf("subscribe output lacks the group: %q", subOut.String())
	}

	var errs bytes.Buffer
	if err := run(t.Context(), []string{"--origin", origin, "groups", "add", "bad:group", "x"}, &bytes.Buffer{}, &errs); err == nil || !strings.Contains(err.Error(), "400") {
		t.Fatalf("bad group name: %v", err)
	}
	if err := run(t.Context(), []string{"--origin", origin, "publish", "c", "not json"}, &bytes.Buffer{}, &errs); err == nil {
		t.Fatal("publish of non-JSON accepted")
	}
}

const clusterJSON = `{"self":"n1","ring_version":123,"replicas":2,` +
	`"members":[{"node":"n1","http":"127.0.0.1:8081","region":1,"state":"active","ready_version":123},` +
	`{"node":"n2","http":"127.0.0.1:8082","region":1,"state":"active","ready_version":123},` +
	`{"node":"n3","http":"127.0.0.1:8083","region":2,"state":"draining","ready_version":120}],` +
	`"owners":{"0":["n1","n2"],"1":["n2","n3"],"2":["n2","n1"]}}`

func TestRenderCluster(t *testing.T) {
	var out bytes.Buffer
	if err := renderCluster(&out, []byte(clusterJSON)); err != nil {
		t.Fatal(err)
	}
	want := `NODE  HTTP            REGION  STATE     READY_VERSION  SHARDS  PRIMARY
n1 *  127.0.0.1:8081  1       active    123            2       1
n2    127.0.0.1:8082  1       active    123            3       2
n3    127.0.0.1:8083  2       draining  120            1       0
self=n1 ring_version=123 replicas=2 shards=3
`
	if got := out.String(); got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	if err := renderCluster(&out, []byte(`{"members":`)); err == nil {
		t.Fatal("a truncated answer rendered without error")
	}
}

func TestClusterCommand(t *testing.T) {
	var paths []string
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.URL.Path)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, clusterJSON)
	}))
	t.Cleanup(srv.Close)
	var out bytes.Buffer
	if err := run(t.Context(), []string{"--origin", srv.URL, "cluster", "--json"}, &out, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(out.String()); got != clusterJSON {
		t.Fatalf("--json printed %s, want %s", got, clusterJSON)
	}
	out.Reset()
	if err := run(t.Context(), []string{"--origin", srv.URL, "cluster"}, &out, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "NODE ") || !strings.Contains(out.String(), "self=n1 ring_version=123 replicas=2") {
		t.Fatalf("table: %q", out.String())
	}
	mu.Lock()
	defer mu.Unlock()
	if !reflect.DeepEqual(paths, []string{"/cluster", "/cluster"}) {
		t.Fatalf("requested %v", paths)
	}

	// A node without a cluster answers 404 in PubNub's error shape.
	_, cfg := nodetest.Embedded(t, nil, subscriber.Config{})
	origin := nodetest.Serve(t, cfg)
	err := run(t.Context(), []string{"--origin", origin, "cluster"}, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("cluster on a single node: %v, want a 404 error", err)
	}
}

// TestBenchAtRefusesBadArguments: bench at says what is wrong before it
// starts anything.
func TestBenchAtRefusesBadArguments(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"bench", "at", "--groupcastd", "/bin/true"}, `--loads: "" is not a positive number`},
		{[]string{"bench", "at", "--groupcastd", "/bin/true", "--loads", "1000,x"}, `--loads: "x" is not a positive number`},
		{[]string{"bench", "at", "--groupcastd", "/bin/true", "--loads", "-5"}, `--loads: "-5" is not a positive number`},
		{[]string{"bench", "at", "--loads", "1000"}, "--groupcastd or --nchan-module is required"},
		{[]string{"bench", "at", "--groupcastd", "/bin/true", "--loads", "1000", "--rounds", "0"}, "must be positive"},
	} {
		var out, errOut bytes.Buffer
		err := run(t.Context(), c.args, &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: err %v, want one saying %q", c.args, err, c.want)
		}
		if out.Len() > 0 {
			t.Errorf("%v printed %q before refusing", c.args, out.String())
		}
	}
}
