package filter

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

type tokKind int

const (
	tEOF tokKind = iota
	tNumber
	tString
	tName
	tLParen
	tRParen
	tLBrack
	tRBrack
	tDot
	tComma
	tNot   // !
	tAnd   // &&
	tOr    // ||
	tEq    // ==
	tNe    // !=
	tLt    // <
	tGt    // >
	tLe    // <=
	tGe    // >=
	tLike  // LIKE
	tHas   // CONTAINS
	tPlus  // +
	tMinus // -
	tStar  // *
	tSlash // /
	tPct   // %
)

var tokText = map[tokKind]string{
	tLParen: "(", tRParen: ")", tLBrack: "[", tRBrack: "]", tDot: ".", tComma: ",",
	tNot: "!", tAnd: "&&", tOr: "||", tEq: "==", tNe: "!=", tLt: "<", tGt: ">",
	tLe: "<=", tGe: ">=", tLike: "LIKE", tHas: "CONTAINS",
	tPlus: "+", tMinus: "-", tStar: "*", tSlash: "/", tPct: "%",
}

type token struct {
	kind tokKind
	pos  int
	text string  // name or string contents
	num  float64 // number value
}

func (t token) describe() string {
	switch t.kind {
	case tEOF:
		return "end of expression"
	case tNumber:
		return "number " + strconv.FormatFloat(t.num, 'g', -1, 64)
	case tString:
		return "string " + quote(t.text)
	case tName:
		return "name " + strconv.Quote(t.text)
	}
	return strconv.Quote(tokText[t.kind])
}

type lexer struct {
	src string
	pos int
}

func isNameStart(c byte) bool {
	return c == '_' || c == '$' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

func isNameByte(c byte) bool { return isNameStart(c) || '0' <= c && c <= '9' }

func (l *lexer) next() (token, error) {
	for l.pos < len(l.src) && strings.IndexByte(" \t\r\n", l.src[l.pos]) >= 0 {
		l.pos++
	}
	start := l.pos
	if l.pos >= len(l.src) {
		return token{kind: tEOF, pos: start}, nil
	}
	c := l.src[l.pos]
	two := ""
	if l.pos+1 < len(l.src) {
		two = l.src[l.pos : l.pos+2]
	}
	tok := func(k tokKind, n int) (token, error) {
		l.pos += n
		return token{kind: k, pos: start}, nil
	}
	switch two {
	case "&&":
		return tok(tAnd, 2)
	case "||":
		return tok(tOr, 2)
	case "==":
		return tok(tEq, 2)
	case "!=":
		return tok(tNe, 2)
	case "<=":
		return tok(tLe, 2)
	case ">=":
		return tok(tGe, 2)
	}
	switch c {
	case '(':
		return tok(tLParen, 1)
	case ')':
		return tok(tRParen, 1)
	case '[':
		return tok(tLBrack, 1)
	case ']':
		return tok(tRBrack, 1)
	case '.':
		if l.pos+1 < len(l.src) && '0' <= l.src[l.pos+1] && l.src[l.pos+1] <= '9' {
			return token{}, &SyntaxError{Pos: start, Msg: "a number must start with a digit (write 0.5, not .5)"}
		}
		return tok(tDot, 1)
	case ',':
		return tok(tComma, 1)
	case '!':
		return tok(tNot, 1)
	case '<':
		return tok(tLt, 1)
	case '>':
		return tok(tGt, 1)
	case '+':
		return tok(tPlus, 1)
	case '-':
		return tok(tMinus, 1)
	case '*':
		return tok(tStar, 1)
	case '/':
		return tok(tSlash, 1)
	case '%':
		return tok(tPct, 1)
	case '=':
		return token{}, &SyntaxError{Pos: start, Msg: `"=" is not an operator: write "==" to compare`}
	case '&':
		return token{}, &SyntaxError{Pos: start, Msg: `"&" is not an operator: write "&&" for and`}
	case '|':
		return token{}, &SyntaxError{Pos: start, Msg: `"|" is not an operator: write "||" for or`}
	case '\'', '"':
		return l.string(c)
	}
	if '0' <= c && c <= '9' {
		return l.number()
	}
	if isNameStart(c) {
		for l.pos < len(l.src) && isNameByte(l.src[l.pos]) {
			l.pos++
		}
		word := l.src[start:l.pos]
		switch {
		case strings.EqualFold(word, "like"):
			return token{kind: tLike, pos: start}, nil
		case strings.EqualFold(word, "contains"):
			return token{kind: tHas, pos: start}, nil
		}
		return token{kind: tName, pos: start, text: word}, nil
	}
	r, _ := utf8.DecodeRuneInString(l.src[l.pos:])
	return token{}, &SyntaxError{Pos: start, Msg: fmt.Sprintf("unexpected character %q", r)}
}

// string lexes a quoted string. A backslash before a quote or a backslash
// stands for that character; before anything else it is kept, so that
// LIKE sees \* as a literal star.
func (l *lexer) string(q byte) (token, error) {
	start := l.pos
	l.pos++
	var b strings.Builder
	for {
		if l.pos >= len(l.src) {
			return token{}, &SyntaxError{Pos: start, Msg: "string is not closed"}
		}
		c := l.src[l.pos]
		switch {
		case c == q:
			l.pos++
			s := b.String()
			if !utf8.ValidString(s) {
				return token{}, &SyntaxError{Pos: start, Msg: "string is not valid UTF-8"}
			}
			return token{kind: tString, pos: start, text: s}, nil
		case c == '\\' && l.pos+1 < len(l.src):
			n := l.src[l.pos+1]
			if n == '\\' || n == '\'' || n == '"' {
				b.WriteByte(n)
			} else {
				b.WriteByte('\\')
				b.WriteByte(n)
			}
			l.pos += 2
		default:
			b.WriteByte(c)
			l.pos++
		}
	}
}

func (l *lexer) number() (token, error) {
	start := l.pos
	digits := func() int {
		n := 0
		for l.pos < len(l.src) && '0' <= l.src[l.pos] && l.src[l.pos] <= '9' {
			l.pos++
			n++
		}
		return n
	}
	digits()
	if l.pos+1 < len(l.src) && l.src[l.pos] == '.' && '0' <= l.src[l.pos+1] && l.src[l.pos+1] <= '9' {
		l.pos++
		digits()
	}
	if l.pos < len(l.src) && (l.src[l.pos] == 'e' || l.src[l.pos] == 'E') {
		l.pos++
		if l.pos < len(l.src) && (l.src[l.pos] == '+' || l.src[l.pos] == '-') {
			l.pos++
		}
		if digits() == 0 {
			return token{}, &SyntaxError{Pos: start, Msg: "number has an exponent with no digits"}
		}
	}
	if l.pos < len(l.src) && isNameByte(l.src[l.pos]) {
		return token{}, &SyntaxError{Pos: start, Msg: fmt.Sprintf("%q is not a number", l.src[start:l.pos+1])}
	}
	f, err := strconv.ParseFloat(l.src[start:l.pos], 64)
	if err != nil || math.IsInf(f, 0) {
		return token{}, &SyntaxError{Pos: start, Msg: fmt.Sprintf("number %s is out of range", l.src[start:l.pos])}
	}
	return token{kind: tNumber, pos: start, num: f}, nil
}

// quote writes s as a single-quoted string the lexer reads back as s.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('\'')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\', '\'':
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('\'')
	return b.String()
}
