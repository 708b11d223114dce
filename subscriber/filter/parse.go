package filter

import (
	"fmt"
	"math"
	"strconv"
)

type opcode int

const (
	// conditions
	opOr opcode = iota
	opAnd
	opNot
	opEq
	opNe
	opLt
	opGt
	opLe
	opGe
	opLike
	opHas
	// values
	opAdd
	opSub
	opMul
	opDiv
	opMod
	opNeg
	opNum
	opStr
	opField
	opList
)

var opText = [...]string{
	opOr: "||", opAnd: "&&", opNot: "!", opEq: "==", opNe: "!=", opLt: "<", opGt: ">",
	opLe: "<=", opGe: ">=", opLike: "LIKE", opHas: "CONTAINS",
	opAdd: "+", opSub: "-", opMul: "*", opDiv: "/", opMod: "%", opNeg: "-",
}

type rootKind int

const (
	rootMeta rootKind = iota // meta.… or a bare name
	rootData                 // data.…
)

// seg is one step of a field path: an object key or an array index.
type seg struct {
	key   string
	index int // >= 0 for an array index, -1 for a key
}

type node struct {
	op   opcode
	pos  int
	l, r *node
	num  float64
	str  string
	root rootKind
	bare bool // a field written without meta. (printed as meta.)
	path []seg
	list []*node
}

func (n *node) isBool() bool { return n.op <= opHas }

func (n *node) walk(f func(*node)) {
	f(n)
	for _, c := range []*node{n.l, n.r} {
		if c != nil {
			c.walk(f)
		}
	}
	for _, c := range n.list {
		c.walk(f)
	}
}

type parser struct {
	lx    lexer
	tok   token
	depth int
}

func (p *parser) next() error {
	t, err := p.lx.next()
	if err != nil {
		return err
	}
	p.tok = t
	return nil
}

func (p *parser) errf(format string, args ...any) error {
	return &SyntaxError{Pos: p.tok.pos, Msg: fmt.Sprintf(format, args...)}
}

func (p *parser) enter() error {
	p.depth++
	if p.depth > MaxDepth {
		return p.errf("nested deeper than %d", MaxDepth)
	}
	return nil
}

func (p *parser) leave() { p.depth-- }

func needBool(n *node, what string) error {
	if !n.isBool() {
		return &SyntaxError{Pos: n.pos, Msg: fmt.Sprintf("operand of %s is a value, not a condition: compare it (==, !=, <, >, <=, >=, LIKE, CONTAINS)", what)}
	}
	return nil
}

func needValue(n *node, what string) error {
	if n.isBool() {
		return &SyntaxError{Pos: n.pos, Msg: fmt.Sprintf("operand of %s is a condition, not a value", what)}
	}
	if n.op == opList {
		return &SyntaxError{Pos: n.pos, Msg: fmt.Sprintf("a list (a, b, …) cannot be an operand of %s: it goes before LIKE or CONTAINS", what)}
	}
	return nil
}

func (p *parser) parseOr() (*node, error) { return p.logical(tOr, opOr, "||", p.parseAnd) }

func (p *parser) parseAnd() (*node, error) { return p.logical(tAnd, opAnd, "&&", p.parseNot) }

// logical parses operands joined by the token kind, left-associative, into
// op nodes; sym names the operator in errors. Both operands must be
// conditions (checked after both parsed, so an error inside the right one
// is reported first).
func (p *parser) logical(kind tokKind, op opcode, sym string, operand func() (*node, error)) (*node, error) {
	l, err := operand()
	if err != nil {
		return nil, err
	}
	for p.tok.kind == kind {
		pos := p.tok.pos
		if err := p.next(); err != nil {
			return nil, err
		}
		r, err := operand()
		if err != nil {
			return nil, err
		}
		if err := needBool(l, sym); err != nil {
			return nil, err
		}
		if err := needBool(r, sym); err != nil {
			return nil, err
		}
		l = &node{op: op, pos: pos, l: l, r: r}
	}
	return l, nil
}

func (p *parser) parseNot() (*node, error) {
	if p.tok.kind != tNot {
		return p.parseComparison()
	}
	pos := p.tok.pos
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer p.leave()
	if err := p.next(); err != nil {
		return nil, err
	}
	x, err := p.parseNot()
	if err != nil {
		return nil, err
	}
	if err := needBool(x, "!"); err != nil {
		return nil, err
	}
	return &node{op: opNot, pos: pos, l: x}, nil
}

var comparisons = map[tokKind]opcode{
	tEq: opEq, tNe: opNe, tLt: opLt, tGt: opGt, tLe: opLe, tGe: opGe, tLike: opLike, tHas: opHas,
}

func (p *parser) parseComparison() (*node, error) {
	l, err := p.parseSum()
	if err != nil {
		return nil, err
	}
	op, ok := comparisons[p.tok.kind]
	if !ok {
		return l, nil
	}
	pos := p.tok.pos
	if err := p.next(); err != nil {
		return nil, err
	}
	if p.tok.kind == tEOF {
		return nil, p.errf("want a value after %s", opText[op])
	}
	r, err := p.parseSum()
	if err != nil {
		return nil, err
	}
	if l.isBool() { // (a == b) == c
		return nil, &SyntaxError{Pos: pos, Msg: fmt.Sprintf("%s compares values, and its left side is a condition", opText[op])}
	}
	if l.op == opList && op != opLike && op != opHas {
		return nil, &SyntaxError{Pos: l.pos, Msg: fmt.Sprintf("a list (a, b, …) can only be followed by LIKE or CONTAINS, not %s", opText[op])}
	}
	if err := needValue(r, opText[op]); err != nil {
		return nil, err
	}
	if _, again := comparisons[p.tok.kind]; again {
		return nil, p.errf("comparisons do not chain: put parentheses and && between them")
	}
	return &node{op: op, pos: pos, l: l, r: r}, nil
}

func (p *parser) parseSum() (*node, error) {
	l, err := p.parseProduct()
	if err != nil {
		return nil, err
	}
	for p.tok.kind == tPlus || p.tok.kind == tMinus {
		op := opAdd
		if p.tok.kind == tMinus {
			op = opSub
		}
		if l, err = p.binary(l, op, p.parseProduct); err != nil {
			return nil, err
		}
	}
	return l, nil
}

func (p *parser) parseProduct() (*node, error) {
	l, err := p.parseUnary()
	if err != nil {
		return nil, err
	}
	for {
		var op opcode
		switch p.tok.kind {
		case tStar:
			op = opMul
		case tSlash:
			op = opDiv
		case tPct:
			op = opMod
		default:
			return l, nil
		}
		if l, err = p.binary(l, op, p.parseUnary); err != nil {
			return nil, err
		}
	}
}

func (p *parser) binary(l *node, op opcode, operand func() (*node, error)) (*node, error) {
	pos := p.tok.pos
	if err := needValue(l, opText[op]); err != nil {
		return nil, err
	}
	if err := p.next(); err != nil {
		return nil, err
	}
	r, err := operand()
	if err != nil {
		return nil, err
	}
	if err := needValue(r, opText[op]); err != nil {
		return nil, err
	}
	return &node{op: op, pos: pos, l: l, r: r}, nil
}

func (p *parser) parseUnary() (*node, error) {
	if p.tok.kind != tMinus {
		return p.parsePrimary()
	}
	pos := p.tok.pos
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer p.leave()
	if err := p.next(); err != nil {
		return nil, err
	}
	x, err := p.parseUnary()
	if err != nil {
		return nil, err
	}
	if err := needValue(x, "-"); err != nil {
		return nil, err
	}
	return &node{op: opNeg, pos: pos, l: x}, nil
}

func (p *parser) parsePrimary() (*node, error) {
	t := p.tok
	switch t.kind {
	case tNumber:
		return &node{op: opNum, pos: t.pos, num: t.num}, p.next()
	case tString:
		return &node{op: opStr, pos: t.pos, str: t.text}, p.next()
	case tName:
		return p.parseField()
	case tLParen:
		return p.parseParen()
	case tEOF:
		return nil, p.errf("expression ends where a value is wanted")
	}
	return nil, p.errf("want a value (a number, a string, a field or a parenthesis), got %s", t.describe())
}

// parseParen parses a parenthesised expression or a list (a, b, …).
func (p *parser) parseParen() (*node, error) {
	pos := p.tok.pos
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer p.leave()
	if err := p.next(); err != nil {
		return nil, err
	}
	x, err := p.parseOr()
	if err != nil {
		return nil, err
	}
	if p.tok.kind == tComma {
		list := &node{op: opList, pos: pos, list: []*node{x}}
		for p.tok.kind == tComma {
			if err := p.next(); err != nil {
				return nil, err
			}
			y, err := p.parseOr()
			if err != nil {
				return nil, err
			}
			list.list = append(list.list, y)
		}
		for _, m := range list.list {
			if m.isBool() || m.op == opList {
				return nil, &SyntaxError{Pos: m.pos, Msg: "a list member must be a value"}
			}
		}
		x = list
	}
	if p.tok.kind != tRParen {
		return nil, p.errf("want \")\" to close the parenthesis at byte %d, got %s", pos, p.tok.describe())
	}
	return x, p.next()
}

func (p *parser) parseField() (*node, error) {
	t := p.tok
	n := &node{op: opField, pos: t.pos}
	switch t.text {
	case "meta":
	case "data":
		n.root = rootData
	default:
		n.bare = true
		n.path = append(n.path, seg{key: t.text, index: -1})
	}
	if err := p.next(); err != nil {
		return nil, err
	}
	for {
		switch p.tok.kind {
		case tDot:
			if err := p.next(); err != nil {
				return nil, err
			}
			if p.tok.kind != tName {
				return nil, p.errf("want a field name after \".\", got %s", p.tok.describe())
			}
			n.path = append(n.path, seg{key: p.tok.text, index: -1})
			if err := p.next(); err != nil {
				return nil, err
			}
		case tLBrack:
			if err := p.next(); err != nil {
				return nil, err
			}
			switch k := p.tok; {
			case k.kind == tString:
				n.path = append(n.path, seg{key: k.text, index: -1})
			case k.kind == tNumber && k.num >= 0 && k.num == math.Trunc(k.num) && k.num < 1<<31:
				n.path = append(n.path, seg{index: int(k.num)})
			default:
				return nil, p.errf("want a string key or an array index (0, 1, …) in [ ], got %s", k.describe())
			}
			if err := p.next(); err != nil {
				return nil, err
			}
			if p.tok.kind != tRBrack {
				return nil, p.errf("want \"]\", got %s", p.tok.describe())
			}
			if err := p.next(); err != nil {
				return nil, err
			}
		default:
			return n, nil
		}
	}
}

// appendTo writes n in canonical form: every operation parenthesised,
// fields in bracket form, strings single-quoted.
func (n *node) appendTo(b []byte) []byte {
	switch n.op {
	case opNum:
		return strconv.AppendFloat(b, n.num, 'g', -1, 64)
	case opStr:
		return append(b, quote(n.str)...)
	case opField:
		if n.root == rootData {
			b = append(b, "data"...)
		} else {
			b = append(b, "meta"...)
		}
		for _, s := range n.path {
			if s.index >= 0 {
				b = append(strconv.AppendInt(append(b, '['), int64(s.index), 10), ']')
			} else {
				b = append(append(append(b, '['), quote(s.key)...), ']')
			}
		}
		return b
	case opList:
		b = append(b, '(')
		for i, m := range n.list {
			if i > 0 {
				b = append(b, ", "...)
			}
			b = m.appendTo(b)
		}
		return append(b, ')')
	case opNot, opNeg:
		b = append(append(b, '('), opText[n.op]...)
		return append(n.l.appendTo(b), ')')
	}
	b = append(b, '(')
	b = n.l.appendTo(b)
	b = append(append(append(b, ' '), opText[n.op]...), ' ')
	b = n.r.appendTo(b)
	return append(b, ')')
}
