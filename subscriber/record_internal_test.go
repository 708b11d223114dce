package subscriber

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/groupcast/groupcast/channelgroups"
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
			again, err := decodeRecord(encodeMessage(d.msg), 0)
			if err != nil || !slices.Equal(again.msg.Deps, d.msg.Deps) {
				t.Fatalf("%q: dependencies %v do not survive encoding: %v %v", b, d.msg.Deps, again.msg, err)
			}
		}
	})
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
