package bench

import (
	"bytes"
	"encoding/binary"
	"strconv"
)

// scanSubscribe is the fast path of decodeSubscribe: it reads a subscribe
// answer laid out exactly as a groupcast node writes it (no whitespace,
// `{"t":{"t":"…","r":…},"m":[…]}`, every message an object with an integer
// "d"), skipping each message's other members without building them. At the
// load generator's highest rates the client decodes over a million messages
// a second on one core; a general parser there made the client, not the
// server, the bottleneck of the latency measured (DecodeCost reports what
// each format costs). Anything else, a valid answer laid out otherwise
// included, reports ok false, and decodeSubscribe reads it with fastjson.
func scanSubscribe(body []byte, into []int64) (msgs []int64, tt string, ok bool) { // msgs reuses into's array
	const head = `{"t":{"t":"`
	if !bytes.HasPrefix(body, []byte(head)) {
		return nil, "", false
	}
	i := len(head)
	end := bytes.IndexByte(body[i:], '"')
	if end < 0 {
		return nil, "", false
	}
	ttb := body[i : i+end]
	for _, c := range ttb {
		if c < '0' || c > '9' {
			return nil, "", false // escapes and the rest: fastjson's to read
		}
	}
	i += end + 1
	if !bytes.HasPrefix(body[i:], []byte(`,"r":`)) {
		return nil, "", false
	}
	i += len(`,"r":`)
	if i = skipNumber(body, i); i < 0 || !bytes.HasPrefix(body[i:], []byte(`},"m":[`)) {
		return nil, "", false
	}
	i += len(`},"m":[`)
	msgs = into[:0]
	if i < len(body) && body[i] == ']' {
		i++
	} else {
		for {
			var d int64
			if d, i, ok = scanMessage(body, i); !ok {
				return nil, "", false
			}
			msgs = append(msgs, d)
			if i >= len(body) {
				return nil, "", false
			}
			if body[i] == ']' {
				i++
				break
			}
			if body[i] != ',' {
				return nil, "", false
			}
			i++
		}
	}
	if i != len(body)-1 || body[i] != '}' {
		return nil, "", false
	}
	return msgs, string(ttb), true
}

// scanMessage reads the message object at body[i:] and returns its "d"
// and where the object ends.
func scanMessage(body []byte, i int) (d int64, next int, ok bool) {
	if i >= len(body) || body[i] != '{' {
		return 0, 0, false
	}
	i++
	seen := false
	for {
		// A key: a plain string (one with an escape is left to fastjson).
		if i >= len(body) || body[i] != '"' {
			return 0, 0, false
		}
		k := i + 1
		for k < len(body) && body[k] != '"' && body[k] != '\\' {
			k++
		}
		if k >= len(body) || body[k] != '"' {
			return 0, 0, false
		}
		key := body[i+1 : k]
		i = k + 1
		if i >= len(body) || body[i] != ':' {
			return 0, 0, false
		}
		i++
		if len(key) == 1 && key[0] == 'd' {
			if seen {
				return 0, 0, false
			}
			v, e, ok := scanInt(body, i)
			if !ok {
				return 0, 0, false // not a number, a fraction, an exponent, out of range: not this benchmark's message
			}
			d, seen, i = v, true, e
		} else if i = skipValue(body, i); i < 0 {
			return 0, 0, false
		}
		if i >= len(body) {
			return 0, 0, false
		}
		switch body[i] {
		case ',':
			i++
		case '}':
			return d, i + 1, seen
		default:
			return 0, 0, false
		}
	}
}

// skipNumber returns where the JSON number at body[i:] ends: -1 unless it
// is one (an optional minus, then 0 or a digit string not starting with 0,
// optionally a fraction and an exponent).
func skipNumber(body []byte, i int) int {
	if i < len(body) && body[i] == '-' {
		i++
	}
	digits := func() int {
		s := i
		for i < len(body) && body[i] >= '0' && body[i] <= '9' {
			i++
		}
		return i - s
	}
	if i < len(body) && body[i] == '0' {
		i++
	} else if digits() == 0 {
		return -1
	}
	if i < len(body) && body[i] == '.' {
		i++
		if digits() == 0 {
			return -1
		}
	}
	if i < len(body) && (body[i] == 'e' || body[i] == 'E') {
		i++
		if i < len(body) && (body[i] == '+' || body[i] == '-') {
			i++
		}
		if digits() == 0 {
			return -1
		}
	}
	return i
}

// skipValue returns where the JSON value at body[i:] ends, or -1. It is
// exact for valid JSON and only needs to find the end of what is not: a
// value it skips badly makes the answer as a whole fail elsewhere, or is
// read the same by the fallback (FuzzDecodeSubscribe checks the two agree).
func skipValue(body []byte, i int) int {
	if i >= len(body) {
		return -1
	}
	switch c := body[i]; {
	case c == '"':
		return skipString(body, i)
	case c == '{' || c == '[':
		depth := 0
		for i < len(body) {
			switch body[i] {
			case '"':
				if i = skipString(body, i); i < 0 {
					return -1
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return -1
	case c == '-' || c >= '0' && c <= '9':
		return skipNumber(body, i)
	default:
		for _, lit := range []string{"true", "false", "null"} {
			if bytes.HasPrefix(body[i:], []byte(lit)) {
				return i + len(lit)
			}
		}
		return -1
	}
}

// skipString returns where the JSON string starting at body[i] ends. It
// looks at 8 bytes at a time for a quote or a backslash (the strings of an
// envelope are 1 to 25 bytes: IndexByte's call costs more than it saves),
// then byte by byte from the first it finds.
func skipString(body []byte, i int) int {
	i++
	for ; i+8 <= len(body); i += 8 {
		w := binary.LittleEndian.Uint64(body[i:])
		if hasByte(w, '"') || hasByte(w, '\\') {
			break
		}
	}
	for ; i < len(body); i++ {
		switch body[i] {
		case '"':
			return i + 1
		case '\\':
			i++ // the next byte is escaped (\u's four digits are plain)
		}
	}
	return -1
}

// hasByte reports whether any byte of w is b (the "has zero byte" test on
// w with b's bytes cleared).
func hasByte(w uint64, b byte) bool {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	x := w ^ (lo * uint64(b))
	return (x-lo)&^x&hi != 0
}

// scanInt reads the JSON integer at body[i:] and returns it and where it
// ends. An integer of 1 to 18 digits without a leading zero, followed by
// neither a fraction nor an exponent, is summed in one pass; anything else
// is left to skipNumber and strconv, which read it as before.
func scanInt(body []byte, i int) (v int64, end int, ok bool) {
	j := i
	if j < len(body) && body[j] == '-' {
		j++
	}
	start := j
	// 8 digits at a time while the integer stays within 16 (a timestamp
	// in µs, the benchmark's message, is 16), then one by one.
	for j+8 <= len(body) && j-start <= 8 {
		w := binary.LittleEndian.Uint64(body[j:])
		if w&0xF0F0F0F0F0F0F0F0 != 0x3030303030303030 || (w+0x0606060606060606)&0xF0F0F0F0F0F0F0F0 != 0x3030303030303030 {
			break // not 8 digits
		}
		v = v*100_000_000 + int64(eightDigits(w))
		j += 8
	}
	for ; j < len(body); j++ {
		c := body[j] - '0'
		if c > 9 {
			break
		}
		v = v*10 + int64(c)
	}
	n := j - start
	plain := n >= 1 && n <= 18 && (n == 1 || body[start] != '0') &&
		(j == len(body) || body[j] != '.' && body[j] != 'e' && body[j] != 'E')
	if plain {
		if start > i {
			v = -v
		}
		return v, j, true
	}
	if end = skipNumber(body, i); end < 0 {
		return 0, 0, false
	}
	v, err := strconv.ParseInt(string(body[i:end]), 10, 64)
	return v, end, err == nil
}

// eightDigits is the value of the 8 ASCII digits in w, the first in its
// lowest byte: pairs, then fours, then the eight (each step multiplies the
// higher part by its weight and adds the lower).
func eightDigits(w uint64) uint64 {
	w = (w & 0x0F0F0F0F0F0F0F0F) * 2561 >> 8
	w = (w & 0x00FF00FF00FF00FF) * 6553601 >> 16
	return (w & 0x0000FFFF0000FFFF) * 42949672960001 >> 32
}
