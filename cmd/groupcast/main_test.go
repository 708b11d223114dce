package main

import (
	"bytes"
	"context"
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
