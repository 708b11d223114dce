package abuse

import (
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestSnapshotDiff(t *testing.T) {
	before := Snapshot{"abuse": {"family": {"news", "sports"}, "gone": {"x"}}}
	after := Snapshot{"abuse": {"family": {"%Gx", "news", "sports"}, "esc": {"%"}}}
	got := before.Diff(after)
	want := `abuse/family: ["news" "sports"] → ["%Gx" "news" "sports"]; abuse/gone deleted; abuse/esc created with ["%"]`
	if got != want {
		t.Errorf("Diff:\ngot  %s\nwant %s", got, want)
	}
	if d := before.Diff(before); d != "" {
		t.Errorf("a snapshot against itself: got %q, want no difference", d)
	}
}

func TestWatcherCountsFailures(t *testing.T) {
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1)%2 == 0 {
			http.Error(w, `{"error":true}`, http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("[17959942787177970]"))
	}))
	defer srv.Close()
	start := time.Now()
	w := Watch(srv.URL, 5*time.Millisecond)
	for deadline := time.Now().Add(10 * time.Second); w.Window(start, time.Time{}).Asked < 6 && time.Now().Before(deadline); {
		<-time.After(5 * time.Millisecond)
	}
	w.Stop()
	s := w.Window(start, time.Time{})
	if s.Asked < 6 || s.Failures != s.Asked/2 || len(s.Failed) == 0 || !strings.Contains(s.Failed[0], "503") {
		t.Errorf("every other answer a 503: got %+v, want half of at least 6 failed with their status", s)
	}
	if none := w.Window(time.Now().Add(time.Hour), time.Time{}); none.Asked != 0 {
		t.Errorf("a window in the future: got %+v, want nothing asked", none)
	}
}

func TestProcReaders(t *testing.T) {
	pid := os.Getpid()
	if rss, err := RSS(pid); err != nil || rss <= 0 {
		t.Errorf("RSS(self) = %d, %v; want > 0", rss, err)
	}
	if n, err := FDs(pid); err != nil || n < 3 {
		t.Errorf("FDs(self) = %d, %v; want at least stdin, stdout, stderr", n, err)
	}
	if !Alive(pid) {
		t.Error("Alive(self) = false")
	}
	if Alive(1 << 30) {
		t.Error("Alive(no such pid) = true")
	}
	old, err := getNoFile(pid)
	if err != nil || old.Cur == 0 {
		t.Fatalf("getNoFile(self) = %+v, %v", old, err)
	}
	if err := setNoFile(pid, old.Cur, old.Max); err != nil {
		t.Errorf("setNoFile(self, unchanged) = %v", err)
	}
}

func TestProbeNamesAreUnique(t *testing.T) {
	seen := map[string]bool{}
	for _, p := range Probes() {
		if seen[p.Name] || p.Name == "" || strings.ContainsAny(p.Name, " /") || p.Run == nil || p.What == "" {
			t.Errorf("probe %q: want a unique name without spaces or slashes (go test -run TestAbuse/<name>), a What and a Run", p.Name)
		}
		seen[p.Name] = true
	}
}
