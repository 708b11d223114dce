package cluster

import (
	"strings"
	"testing"

	"github.com/groupcast/groupcast/subscriber"
)

func TestMetaRoundTrip(t *testing.T) {
	for _, m := range []Member{
		{Node: "n", HTTP: "127.0.0.1:8080", Region: 1, State: Active},
		{Node: "n", HTTP: "[::1]:80", Region: 3, State: Draining, ReadyVersion: 1<<53 - 1},
	} {
		b := encodeMeta(m)
		got, err := decodeMeta(m.Node, b)
		if err != nil {
			t.Fatalf("decodeMeta(%s): %v", b, err)
		}
		if got != m {
			t.Errorf("got %+v from %s, want %+v", got, b, m)
		}
	}
	long := Member{HTTP: strings.Repeat("h", maxHTTPAddr-6) + ":65535", Region: 1 << 30, State: Draining, ReadyVersion: 1<<53 - 1}
	if b := encodeMeta(long); len(b) >= 512 {
		t.Errorf("got %d bytes of metadata for the longest HTTP address, want < 512", len(b))
	}
	if got, want := string(encodeMeta(Member{HTTP: "127.0.0.1:8080", Region: 1, State: Active, ReadyVersion: 7})),
		`{"h":"127.0.0.1:8080","r":1,"s":"a","v":7}`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestMetaRejectsBadInput(t *testing.T) {
	for _, b := range []string{``, `{`, `[]`, `{"h":"x:1","r":1,"s":"z"}`, `{"r":1,"s":"a"}`, `{"h":"x:1","s":"a"}`} {
		if m, err := decodeMeta("n", []byte(b)); err == nil {
			t.Errorf("decodeMeta(%q): got %+v, want an error", b, m)
		}
	}
}

func FuzzDecodeMeta(f *testing.F) {
	f.Add([]byte(`{"h":"127.0.0.1:8080","r":1,"s":"a","v":7}`))
	f.Add([]byte(`{"h":"x","r":2,"s":"d"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMeta("n", b)
		if err != nil {
			return
		}
		again, err := decodeMeta("n", encodeMeta(m))
		if err != nil || again != m {
			t.Fatalf("got %+v, %v re-decoding %+v, want it back", again, err, m)
		}
	})
}

func TestMoved(t *testing.T) {
	a := &subscriber.Assignment{Owned: []bool{true, true, false, false}}
	b := &subscriber.Assignment{Owned: []bool{true, false, true, false}}
	if got := moved(a, b); got != 2 {
		t.Errorf("got %d shards moved, want 2", got)
	}
	if got := moved(a, subscriber.All(4)); got != 2 {
		t.Errorf("got %d shards moved, want 2", got)
	}
}
