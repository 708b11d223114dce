package bench

import (
	"fmt"
	"testing"
)

// TestDecoders checks that both formats' samples decode to the same
// messages.
func TestDecoders(t *testing.T) {
	for _, n := range decodeBatches {
		g, tt, err := decodeSubscribe(sampleSubscribe(n))
		if err != nil || tt == "" {
			t.Fatalf("groupcast %d: %v, timetoken %q", n, err, tt)
		}
		r, err := parseRawMessages(sampleRaw(n))
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(g) != fmt.Sprint(r) || len(g) != n {
			t.Fatalf("%d messages: groupcast %v, nchan %v", n, g, r)
		}
	}
	if _, _, err := decodeSubscribe([]byte(`{"t":{"t":"1"},"m":[{"d":"text"}]}`)); err == nil {
		t.Error("a message that is not an integer: no error")
	}
}

// BenchmarkDecode is the client's decode cost per answer, per format and
// batch size: what the suite's DecodeCosts reports.
func BenchmarkDecode(b *testing.B) {
	for _, d := range decoders {
		for _, n := range decodeBatches {
			body := d.sample(n)
			b.Run(fmt.Sprintf("%s/%d", d.format, n), func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(len(body)))
				for b.Loop() {
					if _, err := d.decode(body); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
