package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestDecoders checks that both formats' samples decode to the same
// messages, also into a buffer that held an earlier answer's.
func TestDecoders(t *testing.T) {
	for _, n := range decodeBatches {
		g, tt, err := decodeSubscribe(sampleSubscribe(n), []int64{-1, -2, -3})
		if err != nil || tt == "" {
			t.Fatalf("groupcast %d: %v, timetoken %q", n, err, tt)
		}
		r, err := parseRawMessages(sampleRaw(n), []int64{-1, -2, -3})
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(g) != fmt.Sprint(r) || len(g) != n {
			t.Fatalf("%d messages: groupcast %v, nchan %v", n, g, r)
		}
	}
	if _, _, err := decodeSubscribe([]byte(`{"t":{"t":"1"},"m":[{"d":"text"}]}`), nil); err == nil {
		t.Error("a message that is not an integer: no error")
	}
}

// TestScanSubscribe: the fast path reads what a node writes (the benchmark's
// samples, a group's and a wildcard's "b", meta with a "d" of its own,
// escapes in other members) and leaves everything else to the fallback.
func TestScanSubscribe(t *testing.T) {
	for _, n := range append([]int{0}, decodeBatches...) {
		body := sampleSubscribe(n)
		got, tt, ok := scanSubscribe(body, nil)
		want, wantT, err := decodeSubscribeJSON(body)
		if !ok || err != nil || fmt.Sprint(got) != fmt.Sprint(want) || tt != wantT {
			t.Fatalf("sample of %d: fast %v %q %v, reference %v %q %v", n, got, tt, ok, want, wantT, err)
		}
	}
	read := `{"t":{"t":"17","r":2},"m":[{"b":"g","a":"1","f":0,"i":"u\"1","p":{"t":"16","r":1},"k":"k","c":"c\\","u":{"d":"x","n":[1,{"d":2}]},"d":-7},` +
		`{"e":1,"d":0,"x":[true,false,null,1.5e-3,"]}"]}]}`
	if got, tt, ok := scanSubscribe([]byte(read), []int64{5, 5, 5}); !ok || fmt.Sprint(got) != "[-7 0]" || tt != "17" {
		t.Errorf("%s: %v %q %v", read, got, tt, ok)
	}
	for _, s := range []string{
		`{"t":{"t":"1","r":1},"m":[{"d":"text"}]}`, // not an integer
		`{"t":{"t":"1","r":1},"m":[{"d":1.5}]}`,    // nor this
		`{"t":{"t":"1","r":1},"m":[{"d":92233720368547758070}]}`,
		`{"t":{"t":"1","r":1},"m":[{"c":"a"}]}`,     // no d
		`{"t":{"t":"1","r":1},"m":[{"d":1,"d":2}]}`, // two
		`{"t":{"t":"1","r":1},"m":[{"\u0064":1}]}`,  // an escaped key
		`{"t":{"t":"1","r":1}, "m":[]}`,             // whitespace
		`{"t":{"t":"1","r":1},"m":[]} `,
		`{"t":{"t":"1","r":1},"m":[{"d":1}]`, // cut short
		`{"t":{"t":"1","r":1},"m":[{"d":1},]}`,
		`{"t":{"t":"1","r":1},"m":[{"d":01}]}`,
		`{"t":{"t":"1","r":1},"m":[{"d":1,"x":tru}]}`,
		`{"m":[],"t":{"t":"1","r":1}}`, // valid, laid out otherwise
	} {
		if got, tt, ok := scanSubscribe([]byte(s), nil); ok {
			t.Errorf("%s: fast path read %v %q", s, got, tt)
		}
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
				var buf []int64
				for b.Loop() {
					got, err := d.decode(body, buf)
					if err != nil {
						b.Fatal(err)
					}
					buf = got
				}
			})
		}
	}
}

// decodeSubscribeJSON is decodeSubscribe with encoding/json: the reference
// the fast decoder must agree with.
func decodeSubscribeJSON(body []byte) ([]int64, string, error) {
	var a subscribeAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		return nil, "", err
	}
	out := make([]int64, 0, len(a.M))
	for _, m := range a.M {
		v, err := strconv.ParseInt(string(m.D), 10, 64)
		if err != nil {
			return nil, "", err
		}
		out = append(out, v)
	}
	return out, a.T.T, nil
}

// FuzzDecodeSubscribe: the fast decoder accepts exactly the answers
// encoding/json reads as a timetoken and integer messages, with the same
// result.
func FuzzDecodeSubscribe(f *testing.F) {
	for _, n := range decodeBatches {
		f.Add(sampleSubscribe(n))
	}
	for _, s := range []string{
		`{"t":{"t":"1","r":1},"m":[]}`,
		`{"t":{"t":"1"},"m":[{"d":"text"}]}`,
		`{"t":{"t":"1"},"m":[{"d":1.5}]}`,
		`{"t":{"t":"1"},"m":[{"d":1e3}]}`,
		`{"t":{"t":"1"},"m":[{"d":-7,"u":{"d":"x"}},{"p":{"t":"2"},"d":9223372036854775807}]}`,
		`{"t":{"t":"1"},"m":[{"d":9223372036854775808}]}`,
		`{"t":{"t":""},"m":null}`,
		`{"m":[{"d":1}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if duplicateKeys(body) {
			return // which of two equal keys counts is not JSON's to say; a node never sends them
		}
		if !utf8.Valid(body) {
			return // encoding/json reads a bad byte as U+FFFD, fastjson keeps it; a node writes UTF-8
		}
		want, wantT, wantErr := decodeSubscribeJSON(body)
		got, gotT, err := decodeSubscribe(body, nil)
		if wantErr != nil || !json.Valid(body) {
			if err == nil && json.Valid(body) {
				t.Fatalf("fast decoder accepted %q (%v %q), the reference refuses it: %v", body, got, gotT, wantErr)
			}
			return
		}
		if err != nil {
			// The fast decoder insists on t.t being present (the reference
			// reads a missing one as ""), and on a string.
			var probe struct {
				T *struct {
					T *string `json:"t"`
				} `json:"t"`
			}
			if json.Unmarshal(body, &probe) == nil && (probe.T == nil || probe.T.T == nil) {
				return
			}
			t.Fatalf("fast decoder refused %q (reference: %v %q): %v", body, want, wantT, err)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) || gotT != wantT {
			t.Fatalf("%q: fast %v %q, reference %v %q", body, got, gotT, want, wantT)
		}
	})
}

// duplicateKeys reports whether some object in body (valid JSON or not)
// repeats a key.
func duplicateKeys(body []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(body))
	type frame struct {
		keys   map[string]bool
		object bool
		key    bool // the next token is a key
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.object && top.key {
			if k, ok := tok.(string); ok {
				if top.keys[k] {
					return true
				}
				top.keys[k] = true
				top.key = false
				continue
			}
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{keys: map[string]bool{}, object: true, key: true})
			continue
		case json.Delim('['):
			stack = append(stack, &frame{})
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
		if len(stack) > 0 && stack[len(stack)-1].object {
			stack[len(stack)-1].key = true // a value ended: a key comes next
		}
	}
}

// TestScanIntAgreesWithStrconv: the scanner's integer reader ends where
// skipNumber ends and reads what strconv.ParseInt reads there, on each side
// of its 18-digit fast path and its 8-digit words, alone or inside an
// object.
func TestScanIntAgreesWithStrconv(t *testing.T) {
	for _, s := range []string{"0", "-0", "7", "-7", "12345678", "-87654321", "1733238400000042", "-1733238400000042", "90000000000000001", "123456789012345678", "-123456789012345678", "999999999999999999",
		"1234567890123456789", "9223372036854775807", "-9223372036854775808", "9223372036854775808", "1.5", "1e3", "-", "", "12a", "0123"} {
		for _, after := range []string{"}", `,"x":"12345678"}`, ""} {
			b := []byte(s + after)
			end := skipNumber(b, 0)
			got, gotEnd, ok := scanInt(b, 0)
			if end < 0 {
				if ok {
					t.Errorf("scanInt(%q) = %d, %d, true; skipNumber finds no number there", b, got, gotEnd)
				}
				continue
			}
			want, err := strconv.ParseInt(string(b[:end]), 10, 64)
			if ok != (err == nil) || ok && (got != want || gotEnd != end) {
				t.Errorf("scanInt(%q) = %d, %d, %v; want %d, %d (strconv: %v)", b, got, gotEnd, ok, want, end, err)
			}
		}
	}
}

// TestSkipStringFindsEveryEnd: the 8-bytes-at-a-time skip finds the closing
// quote, and steps over an escaped one, wherever they fall in the words it
// reads.
func TestSkipStringFindsEveryEnd(t *testing.T) {
	for n := range 24 {
		for _, inner := range []string{strings.Repeat("x", n), strings.Repeat("x", n) + `\"y`, `\\` + strings.Repeat("x", n), strings.Repeat("x", n) + `\\`} {
			s := `"` + inner + `"` + `,"more":"z"}`
			want := len(inner) + 2
			if got := skipString([]byte(s), 0); got != want {
				t.Errorf("skipString(%q) = %d, want %d", s, got, want)
			}
			if got := skipString([]byte(`"`+inner), 0); got != -1 {
				t.Errorf("skipString of the unterminated %q = %d, want -1", `"`+inner, got)
			}
		}
	}
}
