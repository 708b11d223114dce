package filter_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/groupcast/groupcast/subscriber/filter"
)

// The expressions below are PubNub's documented examples (the subscribe
// filter pages, the "Filter Language Definition" table and the stream
// filtering tutorials), matched against messages chosen to pass or fail.
func TestMatch(t *testing.T) {
	const (
		meta = `{"priority":"high","region":"us-west","level":7,"status":"active","category":"news",
			"version":"2.1.4","uuid":"user-1","user":{"role":"moderator","tier":"premium"},
			"permissions":["read","write"],"categories":["finance","tech"],"scores":[10,75],
			"enabled":true,"eventId":300,"base":16,"name":"Anne","count":"42","star":"a*b",
			"teams":[{"lead":"bob"}],"tags":"news,urgent"}`
		data = `{"score":85,"text":"Hello World","type":"announcement","total":100,"used":95,
			"title":"News of the day","body":"scheduled maintenance tonight","subject":"[URGENT] disk"}`
	)
	s := filter.NewSubject([]byte(meta), []byte(data))
	for _, tc := range []struct {
		expr string
		want bool
	}{
		// Server-side subscribe filter expressions (pubnub.com/docs).
		{`(meta.priority == "high") && (data.score > 80)`, true},
		{`(meta.priority == "high") && (data.score > 90)`, false},
		{`meta.status == "active"`, true},
		{`data.score != 0`, true},
		{`meta.user["role"] == "moderator"`, true},
		{`meta.user["role"] == "admin"`, false},
		{`meta.permissions[0] == "read"`, true},
		{`meta.permissions[5] == "read"`, false},
		{`meta.categories CONTAINS "finance"`, true},
		{`meta.categories CONTAINS "sports"`, false},
		{`meta.scores[1] >= 75`, true},
		{`meta.version LIKE "2.*"`, true},
		{`meta.version LIKE "3.*"`, false},
		{`data.title LIKE "News*"`, true},
		{`data.title LIKE "news*"`, true}, // LIKE ignores case
		{`data.title LIKE "*DAY"`, true},
		{`data.title LIKE "*of*"`, true},
		{`data.title LIKE "News"`, false},
		{`meta.tags CONTAINS "urgent"`, true},
		{`data.text CONTAINS "World"`, true},
		{`data.text CONTAINS "world"`, false}, // CONTAINS does not
		{`meta.eventId % 100 == 0`, true},
		{`meta.eventId % 7 == 0`, false},
		{`meta.base + 5 > 20`, true},
		{`data.total - data.used < 10`, true},
		{`data.total / data.used > 5`, false},
		{`meta.level * 100 > 50`, true},
		{`!(data.type == "system")`, true},
		{`!(data.type == "announcement")`, false},
		{`(meta.priority == "high" || meta.priority == "critical") && data.text CONTAINS "Hello" && meta.region != "test"`, true},
		{`data.subject LIKE "*[URGENT]*" && data.body CONTAINS "maintenance" && !(data.body LIKE "*test*")`, true},
		{`meta.teams[0]["lead"] == "bob"`, true},
		{`meta.enabled == "true"`, true}, // a JSON true is the string "true"
		{`meta.enabled != "false"`, true},
		{`meta.count == 42`, true}, // a numeric string is its number
		{`meta.count > 41.5`, true},
		// The "Filter Language Definition" table.
		{`name == 'Anne'`, true}, // a bare name is a meta field
		{`name LIKE 'ann*'`, true},
		{`('Anne','anna','Ann') LIKE 'ann*'`, true},
		{`('Bob','Rob') LIKE 'ann*'`, false},
		{`('a','b','us-west') CONTAINS region`, true},
		{`('a','b','c') CONTAINS region`, false},
		{`(3,5,7) contains level`, true},
		{`!((3,5,7) contains level)`, false},
		{`version contains 2`, true}, // str(numValue) in string
		{`level > (base - 10 + 0)`, true},
		{`star LIKE 'a\*b'`, true},
		{`star LIKE 'a\*c'`, false},
		{`meta.name LIKE 'a\*e'`, false}, // \* is a star, not a wildcard
		// Tutorials: exclude your own messages.
		{`uuid != 'user-1'`, false},
		{`uuid != 'user-2'`, true},
		// Missing fields.
		{`meta.nothing == "x"`, false},
		{`meta.nothing != "x"`, true},
		{`meta.nothing > 1`, false},
		{`meta.nothing LIKE "*"`, false},
		{`meta.level / 0 > 1`, false},
		{`meta.priority > 1`, false}, // ordering is for numbers
		// Precedence: && before ||, arithmetic before comparison.
		{`meta.level == 1 || meta.level == 7 && meta.priority == "high"`, true},
		{`meta.level == 7 || meta.level == 1 && meta.priority == "low"`, true},
		{`(meta.level == 7 || meta.level == 1) && meta.priority == "low"`, false},
		{`meta.level + 3 * 2 == 13`, true},
		{`-meta.level == -7`, true},
		{`! meta.level == 7`, false}, // ! negates the comparison
	} {
		e, err := filter.Parse(tc.expr)
		if err != nil {
			t.Errorf("Parse(%s): %v", tc.expr, err)
			continue
		}
		if got := e.Match(s); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.expr, got, tc.want)
		}
		// The canonical form means the same.
		e2, err := filter.Parse(e.String())
		if err != nil {
			t.Errorf("Parse(String(%s) = %s): %v", tc.expr, e, err)
			continue
		}
		if got := e2.Match(s); got != tc.want {
			t.Errorf("%s (as %s): got %v, want %v", tc.expr, e, got, tc.want)
		}
	}
}

func mustParse(t testing.TB, s string) *filter.Expr {
	t.Helper()
	e, err := filter.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestMatchWithoutMeta(t *testing.T) {
	for _, meta := range []string{"", "not json", `"a string"`, `[1,2]`} {
		s := filter.NewSubject([]byte(meta), []byte(`{"a":1}`))
		for expr, want := range map[string]bool{
			`meta.a == 1`: false, `meta.a != 1`: true, `data.a == 1`: true, `a == 1`: false,
		} {
			if got := mustParse(t, expr).Match(s); got != want {
				t.Errorf("meta %q, %s: got %v, want %v", meta, expr, got, want)
			}
		}
	}
	s := filter.NewSubject(nil, []byte(`"hello world"`))
	if !mustParse(t, `data LIKE "hello*"`).Match(s) {
		t.Errorf(`a string payload: data LIKE "hello*" is false`)
	}
}

func TestReadsData(t *testing.T) {
	for expr, want := range map[string]bool{
		`meta.a == 1`: false, `a == 1 && b == 2`: false, `meta.a == 1 || data.b == 2`: true, `(1, data.x) CONTAINS 3`: true,
	} {
		if got := mustParse(t, expr).ReadsData(); got != want {
			t.Errorf("%s: ReadsData %v, want %v", expr, got, want)
		}
	}
}

func TestString(t *testing.T) {
	for expr, want := range map[string]string{
		`a == 1`:                       `(meta['a'] == 1)`,
		`meta.user["ro'le"] LIKE 'x*'`: `(meta['user']['ro\'le'] LIKE 'x*')`,
		`!(a==1)&&b!=2||data[0]<3`:     `(((!(meta['a'] == 1)) && (meta['b'] != 2)) || (data[0] < 3))`,
		`('a', 2) contains meta.x`:     `(('a', 2) CONTAINS meta['x'])`,
		`a % 10 == -1`:                 `((meta['a'] % 10) == (-1))`,
		`s LIKE 'a\*b\\c'`:             `(meta['s'] LIKE 'a\\*b\\c')`,
		`x == 1.5e3`:                   `(meta['x'] == 1500)`,
	} {
		if got := mustParse(t, expr).String(); got != want {
			t.Errorf("%s: String %s, want %s", expr, got, want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		expr string
		pos  int
		msg  string
	}{
		{``, 0, "empty"},
		{`   `, 3, "empty"},
		{`meta.a`, 0, "not a condition"},
		{`meta.a = 1`, 7, `write "=="`},
		{`a == 1 & b == 2`, 7, `"&&"`},
		{`a == 1 | b == 2`, 7, `"||"`},
		{`a == `, 5, "want a value after =="},
		{`a == 1 &&`, 9, "ends where a value is wanted"},
		{`(a == 1`, 7, `want ")"`},
		{`a == 1)`, 6, "unexpected"},
		{`a == "x`, 5, "not closed"},
		{`a == 1 == 2`, 7, "do not chain"},
		{`(a == 1) == 2`, 9, "left side is a condition"},
		{`a == (b == 1)`, 8, "condition, not a value"},
		{`a && b == 1`, 0, "not a condition"},
		{`!a`, 1, "not a condition"},
		{`(1, 2) == a`, 0, "only be followed by LIKE or CONTAINS"},
		{`a == (1, 2)`, 5, "list"},
		{`(1, a == 2) CONTAINS 1`, 6, "list member"},
		{`a.b. == 1`, 5, "want a field name"},
		{`a[-1] == 1`, 2, "array index"},
		{`a[1.5] == 1`, 2, "array index"},
		{`a[x] == 1`, 2, "array index"},
		{`a[1 == 1`, 4, `want "]"`},
		{`a == 1e`, 5, "exponent"},
		{`a == 1e999`, 5, "out of range"},
		{`a == 12abc`, 5, "not a number"},
		{`a == .5`, 5, "start with a digit"},
		{`a == #`, 5, "unexpected character"},
		{`a == 1 +`, 8, "ends where a value"},
		{`(a == 1) + 1 > 2`, 3, "condition, not a value"},
		{strings.Repeat("(", filter.MaxDepth+1) + "a == 1" + strings.Repeat(")", filter.MaxDepth+1), filter.MaxDepth, "nested deeper"},
		{strings.Repeat("!", filter.MaxDepth+1) + "a == 1", filter.MaxDepth, "nested deeper"},
		{"a == '" + strings.Repeat("x", filter.MaxLength) + "'", filter.MaxLength, "longer than"},
		{"a == '\xff'", 5, "UTF-8"},
	} {
		_, err := filter.Parse(tc.expr)
		var se *filter.SyntaxError
		if !errors.As(err, &se) || !errors.Is(err, filter.ErrInvalid) {
			t.Errorf("Parse(%.40q): got %v, want a *SyntaxError", tc.expr, err)
			continue
		}
		if se.Pos != tc.pos || !strings.Contains(se.Msg, tc.msg) {
			t.Errorf("Parse(%.40q): got %q at %d, want %q at %d", tc.expr, se.Msg, se.Pos, tc.msg, tc.pos)
		}
	}
}

func TestSubjectConcurrent(t *testing.T) {
	s := filter.NewSubject([]byte(`{"a":{"b":[1,2,3]}}`), []byte(`{"c":"x"}`))
	e := mustParse(t, `meta.a["b"] CONTAINS 2 && data.c LIKE "X"`)
	done := make(chan bool)
	for range 4 {
		go func() { done <- e.Match(s) }()
	}
	for range 4 {
		if !<-done {
			t.Fatal("no match")
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`(meta.priority == "high") && (data.score > 80)`, `meta.user["role"] == "moderator"`,
		`('Anne','anna','Ann') LIKE 'ann*'`, `!((3,5,9) contains numValue)`, `numValue > (numA + numB - numC)`,
		`meta.eventId % 100 == 0`, `a LIKE 'x\*y'`, `a[0][1]["k"] != -1.5e-3`, `uuid != 'me'`, `((a == 1))`,
	} {
		f.Add(s)
	}
	s := filter.NewSubject([]byte(`{"a":1,"priority":"high","user":{"role":"x"},"numValue":3}`), []byte(`{"score":81}`))
	f.Fuzz(func(t *testing.T, expr string) {
		e, err := filter.Parse(expr)
		if err != nil {
			var se *filter.SyntaxError
			if !errors.As(err, &se) || se.Pos < 0 || se.Pos > len(expr) {
				t.Fatalf("Parse(%q): error %v without a position inside the expression", expr, err)
			}
			return
		}
		want := e.Match(s)
		str := e.String()
		e2, err := filter.Parse(str)
		if err != nil {
			t.Fatalf("Parse(%q) = %s, which does not parse: %v", expr, str, err)
		}
		if got := e2.String(); got != str {
			t.Fatalf("Parse(%q): String %s, then %s", expr, str, got)
		}
		if got := e2.Match(s); got != want {
			t.Fatalf("Parse(%q): %v, but its String %s gives %v", expr, want, str, got)
		}
	})
}

func BenchmarkMatch(b *testing.B) {
	s := filter.NewSubject([]byte(`{"priority":"high","region":"us-west","level":7,"tags":["a","b","urgent"]}`), nil)
	e, err := filter.Parse(`(meta.priority == "high" || meta.level > 5) && meta.region LIKE "us-*" && meta.tags CONTAINS "urgent"`)
	if err != nil {
		b.Fatal(err)
	}
	e.Match(s) // decode the meta once
	b.ReportAllocs()
	for b.Loop() {
		if !e.Match(s) {
			b.Fatal("no match")
		}
	}
}
