package filter

import (
	"math"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

type kind uint8

const (
	kMissing kind = iota // a field that is not there, or arithmetic that failed
	kNull
	kBool
	kNum
	kStr
	kArr
	kObj
	kList // a list literal: (a, b, …)
)

// value is the result of evaluating a value node; it is passed by value
// and points into the decoded message or the expression, so evaluating
// allocates nothing.
type value struct {
	k    kind
	b    bool
	n    float64
	s    string
	arr  []any
	list []*node
}

func fromJSON(v any) value {
	switch v := v.(type) {
	case nil:
		return value{k: kNull}
	case bool:
		return value{k: kBool, b: v}
	case float64:
		return value{k: kNum, n: v}
	case string:
		return value{k: kStr, s: v}
	case []any:
		return value{k: kArr, arr: v}
	case map[string]any:
		return value{k: kObj}
	}
	return value{}
}

func (n *node) field(s *Subject) value {
	cur, ok := s.root(n.root)
	if !ok {
		return value{}
	}
	for _, sg := range n.path {
		if sg.index >= 0 {
			a, ok := cur.([]any)
			if !ok || sg.index >= len(a) {
				return value{}
			}
			cur = a[sg.index]
			continue
		}
		m, ok := cur.(map[string]any)
		if !ok {
			return value{}
		}
		if cur, ok = m[sg.key]; !ok {
			return value{}
		}
	}
	return fromJSON(cur)
}

func (n *node) eval(s *Subject) value {
	switch n.op {
	case opNum:
		return value{k: kNum, n: n.num}
	case opStr:
		return value{k: kStr, s: n.str}
	case opField:
		return n.field(s)
	case opList:
		return value{k: kList, list: n.list}
	case opNeg:
		x, ok := n.l.eval(s).number()
		if !ok {
			return value{}
		}
		return value{k: kNum, n: -x}
	}
	a, ok1 := n.l.eval(s).number()
	b, ok2 := n.r.eval(s).number()
	if !ok1 || !ok2 {
		return value{}
	}
	var r float64
	switch n.op {
	case opAdd:
		r = a + b
	case opSub:
		r = a - b
	case opMul:
		r = a * b
	case opDiv:
		if b == 0 {
			return value{}
		}
		r = a / b
	case opMod:
		if b == 0 {
			return value{}
		}
		r = math.Mod(a, b)
	}
	if math.IsNaN(r) || math.IsInf(r, 0) {
		return value{}
	}
	return value{k: kNum, n: r}
}

// number is v as a number: a number, or a string holding a JSON number.
func (v value) number() (float64, bool) {
	switch v.k {
	case kNum:
		return v.n, true
	case kStr:
		if !isJSONNumber(v.s) {
			return 0, false
		}
		f, err := strconv.ParseFloat(v.s, 64)
		return f, err == nil
	}
	return 0, false
}

// isJSONNumber reports whether s is a number as JSON writes one (checked
// first so that a string that is not one never reaches ParseFloat, whose
// error allocates, and "Inf" or "0x10" are not numbers).
func isJSONNumber(s string) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	digits := func() int {
		n := 0
		for i < len(s) && '0' <= s[i] && s[i] <= '9' {
			i++
			n++
		}
		return n
	}
	if digits() == 0 {
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(s)
}

func equal(a, b value) bool {
	switch {
	case a.k == kNum && b.k == kNum:
		return a.n == b.n
	case a.k == kStr && b.k == kStr:
		return a.s == b.s
	case a.k == kNum && b.k == kStr, a.k == kStr && b.k == kNum:
		x, ok1 := a.number()
		y, ok2 := b.number()
		return ok1 && ok2 && x == y
	case a.k == kBool && b.k == kBool:
		return a.b == b.b
	case a.k == kBool && b.k == kStr:
		return b.s == strconv.FormatBool(a.b)
	case a.k == kStr && b.k == kBool:
		return a.s == strconv.FormatBool(b.b)
	case a.k == kNull && b.k == kNull:
		return true
	}
	return false
}

func (n *node) test(s *Subject) bool {
	switch n.op {
	case opOr:
		return n.l.test(s) || n.r.test(s)
	case opAnd:
		return n.l.test(s) && n.r.test(s)
	case opNot:
		return !n.l.test(s)
	}
	l, r := n.l.eval(s), n.r.eval(s)
	switch n.op {
	case opEq:
		return equal(l, r)
	case opNe:
		return !equal(l, r)
	case opLike:
		return r.k == kStr && anyMember(l, s, func(v value) bool { return v.k == kStr && like(v.s, r.s) })
	case opHas:
		if l.k == kStr {
			return containsValue(l.s, r)
		}
		return anyMember(l, s, func(v value) bool { return equal(v, r) })
	}
	a, ok1 := l.number()
	b, ok2 := r.number()
	if !ok1 || !ok2 {
		return false
	}
	switch n.op {
	case opLt:
		return a < b
	case opGt:
		return a > b
	case opLe:
		return a <= b
	case opGe:
		return a >= b
	}
	return false
}

// anyMember applies f to v, or to each member when v is an array or a list.
func anyMember(v value, s *Subject, f func(value) bool) bool {
	switch v.k {
	case kArr:
		for _, e := range v.arr {
			if f(fromJSON(e)) {
				return true
			}
		}
		return false
	case kList:
		for _, m := range v.list {
			if f(m.eval(s)) {
				return true
			}
		}
		return false
	}
	return f(v)
}

// containsValue is str CONTAINS v: a substring test; a number is looked
// for as JSON writes it.
func containsValue(str string, v value) bool {
	switch v.k {
	case kStr:
		return strings.Contains(str, v.s)
	case kNum:
		var buf [32]byte
		sub := strconv.AppendFloat(buf[:0], v.n, 'f', -1, 64)
		for i := 0; i+len(sub) <= len(str); i++ {
			if str[i:i+len(sub)] == string(sub) {
				return true
			}
		}
	}
	return false
}

// like matches s against a pattern in which * is any run of characters and
// \* a literal star, ignoring case.
func like(s, p string) bool {
	si, pi := 0, 0
	starP, starS := -1, 0
	for si < len(s) {
		if pi < len(p) {
			if p[pi] == '*' {
				starP, starS = pi+1, si
				pi++
				continue
			}
			pr, pw := patternRune(p, pi)
			sr, sw := utf8.DecodeRuneInString(s[si:])
			if equalFold(pr, sr) {
				pi += pw
				si += sw
				continue
			}
		}
		if starP < 0 {
			return false
		}
		_, sw := utf8.DecodeRuneInString(s[starS:])
		starS += sw
		si, pi = starS, starP
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

func patternRune(p string, i int) (rune, int) {
	if p[i] == '\\' && i+1 < len(p) && p[i+1] == '*' {
		return '*', 2
	}
	return utf8.DecodeRuneInString(p[i:])
}

func equalFold(a, b rune) bool {
	if a == b {
		return true
	}
	for r := unicode.SimpleFold(a); r != a; r = unicode.SimpleFold(r) {
		if r == b {
			return true
		}
	}
	return false
}
