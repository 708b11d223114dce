package bench

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// DecodeCost is what decoding one poll answer costs this benchmark's
// client, per format: the groupcast (PubNub) JSON envelope or Nchan's raw
// multipart body, with Batch messages in the answer. It is the client's
// cost, stated so that a heavier envelope is not charged to the server.
type DecodeCost struct {
	Format        string
	Batch         int
	Bytes         int     // of the answer's body
	NsPerAnswer   float64 // decoding the whole answer
	NsPerMessage  float64
	AllocsPerCall int64
}

// decodeBatches are the answer sizes DecodeCosts measures.
var decodeBatches = []int{1, 10, 100}

// sampleSubscribe is a groupcast subscribe answer with n messages, as a
// node writes it for this benchmark's messages (one integer each).
func sampleSubscribe(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"t":{"t":"17332384000000000","r":1},"m":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"a":"0","f":0,"i":"","p":{"t":"1733238400%07d","r":1},"k":"bench","c":"fan1733238400000000000","d":%d}`, i, 1733238400000000+int64(i))
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

// sampleRaw is an Nchan raw multipart answer with n messages.
func sampleRaw(n int) []byte {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(strconv.FormatInt(1733238400000000+int64(i), 10))
	}
	return []byte(b.String())
}

// decoders are the two formats' decoders, as the targets' Poll use them:
// appending to a buffer a subscriber reuses.
var decoders = []struct {
	format string
	sample func(int) []byte
	decode func(b []byte, into []int64) ([]int64, error)
}{
	{"groupcast JSON envelope", sampleSubscribe, func(b []byte, into []int64) ([]int64, error) {
		m, _, err := decodeSubscribe(b, into)
		return m, err
	}},
	{"Nchan raw multipart", sampleRaw, parseRawMessages},
}

// DecodeCosts measures both formats' decoding (testing.Benchmark, about a
// second per format and batch size).
func DecodeCosts() []DecodeCost {
	var out []DecodeCost
	for _, d := range decoders {
		for _, n := range decodeBatches {
			body := d.sample(n)
			r := testing.Benchmark(func(b *testing.B) {
				b.ReportAllocs()
				var buf []int64
				for b.Loop() {
					got, err := d.decode(body, buf[:0])
					if err != nil || len(got) != n {
						b.Fatalf("%s: %d messages, %v; want %d", d.format, len(got), err, n)
					}
					buf = got
				}
			})
			if r.N == 0 {
				continue
			}
			ns := float64(r.T.Nanoseconds()) / float64(r.N)
			out = append(out, DecodeCost{Format: d.format, Batch: n, Bytes: len(body), NsPerAnswer: ns, NsPerMessage: ns / float64(n), AllocsPerCall: r.AllocsPerOp()})
		}
	}
	return out
}
