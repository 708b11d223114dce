// Package filter is PubNub's subscribe filter language (the filter-expr
// query parameter of a subscribe): an expression is parsed once into an
// Expr, then matched against each message a subscriber would receive.
//
// An expression reads the message's meta (the publisher's meta=) and its
// payload:
//
//	meta.priority == "high" && (data.score > 80 || meta.tags CONTAINS "urgent")
//
// The grammar, lowest precedence first:
//
//	expr       = and { "||" and }
//	and        = not { "&&" not }
//	not        = "!" not | comparison
//	comparison = sum [ op sum ]            op: == != < > <= >= LIKE CONTAINS
//	sum        = product { ("+" | "-") product }
//	product    = unary { ("*" | "/" | "%") unary }
//	unary      = "-" unary | primary
//	primary    = number | string | field | "(" expr ")" | "(" sum "," sum { "," sum } ")"
//	field      = name { "." name | "[" string "]" | "[" integer "]" }
//
// A field that starts with meta reads the meta object, one that starts with
// data reads the payload, and any other name is a field of meta (PubNub's
// older documents write uuid != 'x' for meta.uuid). Keywords LIKE and
// CONTAINS are case-insensitive; strings take single or double quotes with
// backslash escapes. A comparison without an operator is not a condition:
// every && || ! operand, and the whole expression, must be a comparison.
//
// Meaning, following PubNub's documents:
//   - == and != compare strings exactly and numbers numerically; a string
//     that holds a JSON number compares with a number as that number, and a
//     JSON true or false equals the string "true" or "false". a != b is
//     !(a == b), so a field that is missing is != anything.
//   - < > <= >= compare numbers only; anything else is false.
//   - LIKE matches a string against a pattern where * is any run of
//     characters and \* is a literal star, ignoring case.
//   - CONTAINS is a substring test on a string (a number on the right is
//     written in decimal first), membership in an array, and membership in
//     a list written in parentheses: ('a','b') CONTAINS meta.x. A list (or
//     an array field) on the left of LIKE matches if any member does.
//   - + - * / % are arithmetic on numbers; anything else (a missing field,
//     a string, a division by zero) makes the comparison false.
//
// Matching allocates nothing: a message's meta and payload are decoded
// once, by its Subject, and shared by every subscriber's expression.
package filter

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
)

// Limits on an expression.
const (
	// MaxLength is the longest expression, in bytes. PubNub documents no
	// limit; a subscribe URL is bounded by its 32 KiB, and real filters are
	// a few hundred bytes.
	MaxLength = 2048
	// MaxDepth is the deepest nesting of parentheses and unary operators.
	MaxDepth = 32
)

// ErrInvalid is wrapped by every *SyntaxError.
var ErrInvalid = errors.New("filter: invalid expression")

// SyntaxError reports an expression that does not parse: where (a byte
// offset into the expression) and what is wrong.
type SyntaxError struct {
	Pos int
	Msg string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("filter expression: at byte %d: %s", e.Pos, e.Msg)
}

func (e *SyntaxError) Unwrap() error { return ErrInvalid }

// Expr is a compiled filter expression. It is immutable and safe for
// concurrent use.
type Expr struct {
	root      *node
	readsData bool
}

// Parse compiles a filter expression.
func Parse(s string) (*Expr, error) {
	if len(s) > MaxLength {
		return nil, &SyntaxError{Pos: MaxLength, Msg: fmt.Sprintf("expression is %d bytes, longer than %d", len(s), MaxLength)}
	}
	p := &parser{lx: lexer{src: s}}
	if err := p.next(); err != nil {
		return nil, err
	}
	if p.tok.kind == tEOF {
		return nil, &SyntaxError{Pos: p.tok.pos, Msg: "empty expression"}
	}
	n, err := p.parseOr()
	if err != nil {
		return nil, err
	}
	if p.tok.kind != tEOF {
		return nil, p.errf("unexpected %s after a complete expression", p.tok.describe())
	}
	if !n.isBool() {
		return nil, &SyntaxError{Pos: n.pos, Msg: "expression is a value, not a condition: compare it (==, !=, <, >, <=, >=, LIKE, CONTAINS)"}
	}
	e := &Expr{root: n}
	n.walk(func(n *node) {
		if n.op == opField && n.root == rootData {
			e.readsData = true
		}
	})
	return e, nil
}

// ReadsData reports whether the expression reads the payload (data.…).
func (e *Expr) ReadsData() bool { return e.readsData }

// String is the expression in a canonical form, fully parenthesised:
// Parse(e.String()) is an expression with the same String and meaning.
func (e *Expr) String() string { return string(e.root.appendTo(nil)) }

// Match reports whether the message s describes passes the filter.
func (e *Expr) Match(s *Subject) bool { return e.root.test(s) }

// Subject is what a filter reads of one message: its meta and payload,
// each decoded the first time an expression reads it and then shared. It
// is safe for concurrent use.
type Subject struct {
	meta, data         []byte
	metaOnce, dataOnce sync.Once
	metaV, dataV       any
	metaOK, dataOK     bool
}

// NewSubject describes a message with the given meta and payload (JSON;
// empty or invalid reads as missing). It decodes nothing yet and keeps the
// slices, which must not change afterwards.
func NewSubject(meta, payload []byte) *Subject {
	return &Subject{meta: meta, data: payload}
}

func (s *Subject) root(r rootKind) (any, bool) {
	if r == rootData {
		s.dataOnce.Do(func() { s.dataV, s.dataOK = decode(s.data) })
		return s.dataV, s.dataOK
	}
	s.metaOnce.Do(func() { s.metaV, s.metaOK = decode(s.meta) })
	return s.metaV, s.metaOK
}

func decode(b []byte) (any, bool) {
	if len(b) == 0 {
		return nil, false
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, false
	}
	return v, true
}
