package subscriber

import (
	"encoding/json"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/groupcast/groupcast/channelgroups"
	"github.com/groupcast/groupcast/internal/testenv"
)

// FuzzDecodeRecord: any bytes read from a log (a peer region's too) decode
// to one record or an error, never a panic; a copied record's origin and a
// message's dependencies survive encoding.
func FuzzDecodeRecord(f *testing.F) {
	f.Add([]byte(`{"k":"m","a":"acct","ch":"c","d":"hi","dp":["1:5-0","3:7-2"],"or":2,"op":"9-1"}`))
	f.Add([]byte(`{"k":"e","a":"acct","g":"g","o":1,"c":["c"],"t":17000000000000000,"or":1,"op":"1-1"}`))
	f.Add([]byte(`{"k":"g","or":1,"op":"12-0"}`))
	f.Add([]byte(`{"k":"g"}`))
	f.Add([]byte(`{"k":"m","dp":["x"]}`))
	f.Add([]byte(`{"k":"p","a":"acct","ch":"c","pa":"join","pu":"u"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := decodeRecord(b, 0)
		if err != nil {
			return
		}
		kinds := 0
		for _, set := range []bool{d.edit != nil, d.msg != nil, d.presence != nil, d.gap} {
			if set {
				kinds++
			}
		}
		if kinds != 1 {
			t.Fatalf("%q decoded to %d kinds", b, kinds)
		}
		if d.gap && d.origin == 0 {
			t.Fatalf("%q: a gap record without its origin", b)
		}
		if d.msg != nil {
			if got, want := encodeMessage(d.msg), marshalMessage(d.msg); string(got) != string(want) {
				t.Fatalf("%q: encoded as %q, json.Marshal gives %q", b, got, want)
			}
			again, err := decodeRecord(encodeMessage(d.msg), 0)
			if err != nil || !slices.Equal(again.msg.Deps, d.msg.Deps) {
				t.Fatalf("%q: dependencies %v do not survive encoding: %v %v", b, d.msg.Deps, again.msg, err)
			}
		}
	})
}

// marshalMessage is how a message's record was encoded before the pooled
// encoder: json.Marshal of the record.
func marshalMessage(m *Message) []byte {
	b, _ := json.Marshal(record{Kind: "m", Account: m.Account, Channel: m.Channel, Payload: m.Payload, Publisher: m.Publisher,
		Meta: m.Meta, CustomType: m.CustomType, Signal: m.Signal, NoStore: m.NoStore, Key: m.Key, Deps: encodeDeps(m.Deps),
		TTL: encodeTTL(m.TTL)})
	return b
}

// TestMessageEncoderMatchesMarshal: the pooled encoder writes the bytes
// json.Marshal wrote (HTML escaped, payload compacted, fields omitted when
// empty), one message after another in the same encoder.
func TestMessageEncoderMatchesMarshal(t *testing.T) {
	msgs := []*Message{
		{Account: "acct", Channel: "ch", Payload: json.RawMessage(`123`)},
		{Account: "acct", Channel: "c<h>&", Payload: json.RawMessage(` { "a" : "<b>&\u2028" , "n": [1, 2] } `), Publisher: "u\u00e9",
			Meta: json.RawMessage(`{"x": "</script>"}`), CustomType: "t", Signal: true, NoStore: true, Key: "k", TTL: 3 * time.Hour,
			Deps: []channelgroups.RegionPosition{{Region: 2, Pos: channelgroups.Position{Ms: 9, Seq: 1}}}},
		{Account: "acct", Channel: "ch", Payload: json.RawMessage(`"héllo\n"`), TTL: -1},
		{Account: "acct", Channel: "ch", Payload: json.RawMessage(`"` + strings.Repeat("x", 100<<10) + `"`)}, // grows the buffer past what is kept
		{Account: "acct", Channel: "ch", Payload: json.RawMessage(`null`)},
	}
	e := messageEncoders.Get().(*messageEncoder)
	for i, m := range msgs {
		if got, want := e.encode(m), marshalMessage(m); string(got) != string(want) {
			t.Errorf("message %d: encoded as %.200q, json.Marshal gives %.200q", i, got, want)
		}
		if got, want := encodeMessage(m), marshalMessage(m); string(got) != string(want) {
			t.Errorf("message %d: encodeMessage gives %.200q, json.Marshal %.200q", i, got, want)
		}
	}
	e.release()
}

// TestMessageEncoderAllocs: encoding a message allocates nothing once the
// pool is warm.
func TestMessageEncoderAllocs(t *testing.T) {
	testenv.CountAllocs(t)
	m := &Message{Account: "acct", Channel: "ch", Payload: json.RawMessage(`{"n":123,"s":"<x>"}`), Publisher: "u", TTL: time.Hour}
	if n := testing.AllocsPerRun(100, func() {
		e := messageEncoders.Get().(*messageEncoder)
		e.encode(m)
		e.release()
	}); n != 0 {
		t.Errorf("encoding a message: %.0f allocations, want 0", n)
	}
}

func TestDepsRoundTrip(t *testing.T) {
	ds := []channelgroups.RegionPosition{{Region: 1, Pos: channelgroups.Position{Ms: 5}}, {Region: 3, Pos: channelgroups.Position{Ms: 7, Seq: 2}}}
	got, err := decodeDeps(encodeDeps(ds))
	if err != nil || !slices.Equal(got, ds) {
		t.Fatalf("round trip: %v %v", got, err)
	}
	for _, bad := range []string{"", "1", "0:1-1", "-1:1-1", "1:x", "a:1-1"} {
		if _, err := decodeDeps([]string{bad}); err == nil {
			t.Errorf("dependency %q accepted", bad)
		}
	}
}

// TestReaderTurns: the two readers' reads with nothing new never end within
// blockSpread of each other, whenever each starts.
func TestReaderTurns(t *testing.T) {
	var turns readerTurns
	start := time.Unix(1_700_000_000, 0)
	now := [2]time.Time{start, start}
	r := rand.New(rand.NewPCG(1, 2))
	for step := range 10_000 {
		i := r.IntN(2)
		// Reader i's read ended (or returned with entries earlier);
		// it starts again after a round trip of up to 250 ms.
		now[i] = now[i].Add(time.Duration(r.Int64N(int64(250 * time.Millisecond))))
		if now[i].Before(now[1-i]) {
			now[i] = now[1-i]
		}
		b := turns.block(i, now[i])
		if b < blockBase || b > blockBase+2*blockSpread {
			t.Fatalf("step %d: block %v outside [%v, %v]", step, b, blockBase, blockBase+2*blockSpread)
		}
		end, other := now[i].Add(b), time.Unix(0, turns.ends[1-i].Load())
		if d := end.Sub(other); d > -blockSpread && d < blockSpread {
			t.Fatalf("step %d: reader %d's read ends %v from the other's", step, i, d)
		}
		// The read blocks until it ends, or an entry ends it sooner.
		if r.IntN(3) == 0 {
			now[i] = now[i].Add(time.Duration(r.Int64N(int64(b))))
		} else {
			now[i] = end
		}
	}
}
