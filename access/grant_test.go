package access

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// Grant bodies as the SDKs sent them (captured by TestSDKSignatures).
const (
	jsGrantBody = `{"ttl":15,"permissions":{"uuid":"alice","resources":{"channels":{"ch-1":3,"ch 2,ü":1},"groups":{"cg-1":5},"uuids":{"u-1":96},"users":{},"spaces":{}},"patterns":{"channels":{"^room-.*":3},"groups":{},"uuids":{},"users":{},"spaces":{}},"meta":{"k":"v","n":3}}}`
	pyGrantBody = `{"ttl": 15, "permissions": {"resources": {"channels": {"ch-1": 3, "ch 2,\u00fc": 1}, "groups": {"cg-1": 5}, "uuids": {"u-1": 96}, "users": {"u-1": 96}, "spaces": {"ch-1": 3, "ch 2,\u00fc": 1}}, "patterns": {"channels": {"^room-.*": 3}, "groups": {}, "uuids": {}, "users": {}, "spaces": {"^room-.*": 3}}, "meta": {"k": "v", "n": 3}, "uuid": "alice"}}`
)

func TestParseGrant(t *testing.T) {
	want := &Token{
		Version: TokenVersion, TTL: 15 * time.Minute, AuthorizedUUID: "alice",
		Resources: Grants{
			Channels: map[string]Perm{"ch-1": Read | Write, "ch 2,ü": Read},
			Groups:   map[string]Perm{"cg-1": Read | Manage},
			UUIDs:    map[string]Perm{"u-1": Get | Update},
		},
		Patterns: Grants{Channels: map[string]Perm{"^room-.*": Read | Write}, Groups: map[string]Perm{}, UUIDs: map[string]Perm{}},
		Meta:     map[string]any{"k": "v", "n": int64(3)},
	}
	for name, body := range map[string]string{"js": jsGrantBody, "python": pyGrantBody} {
		t.Run(name, func(t *testing.T) {
			got, err := ParseGrant([]byte(body))
			if err != nil {
				t.Fatal(err)
			}
			if got.Version != want.Version || got.TTL != want.TTL || got.AuthorizedUUID != want.AuthorizedUUID ||
				!reflect.DeepEqual(got.Resources, want.Resources) || !reflect.DeepEqual(got.Patterns, want.Patterns) ||
				!reflect.DeepEqual(got.Meta, want.Meta) {
				t.Errorf("got %+v\nwant %+v", got, want)
			}
			if !got.Issued.IsZero() {
				t.Errorf("Issued %s: want it left to the caller", got.Issued)
			}
			got.Issued = testIssued
			s := mustSign(t, got, testSecret)
			v, err := VerifyToken(s, testSecret, testIssued)
			if err != nil {
				t.Fatal(err)
			}
			if !v.Allows(Need{Channel, "room-9", Write}) || v.Allows(Need{Group, "cg-1", Write}) {
				t.Error("the signed grant does not allow what was asked")
			}
		})
	}
}

// TestParseGrantObjectsNames: users and spaces (PubNub's old Objects
// names, which the Python SDK repeats and the JavaScript SDK sends for
// authorizedUserId-style grants) are uuids and channels; bits are merged.
func TestParseGrantObjectsNames(t *testing.T) {
	tok, err := ParseGrant([]byte(`{"ttl":1,"permissions":{
		"resources":{"channels":{"c":1},"spaces":{"c":2,"s":255},"users":{"u":32}},
		"patterns":{"spaces":{"^s-.*":128},"uuids":{"^u":64},"users":{"^u":32}}}}`))
	if err != nil {
		t.Fatal(err)
	}
	want := Grants{Channels: map[string]Perm{"c": Read | Write, "s": 255}, Groups: map[string]Perm{}, UUIDs: map[string]Perm{"u": Get}}
	if !reflect.DeepEqual(tok.Resources, want) {
		t.Errorf("resources: got %v, want %v", tok.Resources, want)
	}
	want = Grants{Channels: map[string]Perm{"^s-.*": Join}, Groups: map[string]Perm{}, UUIDs: map[string]Perm{"^u": Update | Get}}
	if !reflect.DeepEqual(tok.Patterns, want) {
		t.Errorf("patterns: got %v, want %v", tok.Patterns, want)
	}
}

func TestParseGrantMeta(t *testing.T) {
	tok, err := ParseGrant([]byte(`{"ttl":1,"permissions":{"resources":{"channels":{"c":1}},"meta":{"s":"x","i":-3,"u":18446744073709551615,"f":1.5,"e":1e300,"b":false,"z":null}}}`))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"s": "x", "i": int64(-3), "u": uint64(18446744073709551615), "f": 1.5, "e": 1e300, "b": false, "z": nil}
	if !reflect.DeepEqual(tok.Meta, want) {
		t.Errorf("meta: got %#v, want %#v", tok.Meta, want)
	}
	if tok.AuthorizedUUID != "" {
		t.Errorf("authorized uuid %q, want none", tok.AuthorizedUUID)
	}
}

func TestParseGrantErrors(t *testing.T) {
	body := func(ttl, perms string) string {
		return fmt.Sprintf(`{"ttl":%s,"permissions":%s}`, ttl, perms)
	}
	res := func(s string) string { return `{"resources":` + s + `}` }
	many := func(n, size int) string {
		var b strings.Builder
		for i := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, "%q:1", fmt.Sprintf("%0*d", size, i))
		}
		return res(`{"channels":{` + b.String() + `}}`)
	}
	ok := res(`{"channels":{"c":1}}`)
	meta := func(n int) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, `,"k%d":%d`, i, i)
		}
		return `{"resources":{"channels":{"c":1}},"meta":{` + b.String()[1:] + `}}`
	}
	cases := map[string]struct{ body, want string }{
		"not JSON":         {`ttl=1`, "not the grant JSON"},
		"trailing data":    {body("1", ok) + `{}`, "after the JSON object"},
		"unknown field":    {`{"ttl":1,"permissions":{},"x":1}`, "unknown field"},
		"no ttl":           {`{"permissions":` + ok + `}`, "ttl is required"},
		"ttl 0":            {body("0", ok), "ttl 0 is not"},
		"ttl too long":     {body("43201", ok), "ttl 43201 is not"},
		"ttl fraction":     {body("1.5", ok), "ttl 1.5 is not"},
		"ttl string":       {body(`"10"`, ok), `ttl "10" is not`},
		"ttl null":         {body("null", ok), "ttl is required"},
		"no permissions":   {`{"ttl":1}`, "permissions are required"},
		"nothing":          {body("1", `{"resources":{},"patterns":{"channels":{}}}`), "no resources or patterns"},
		"empty name":       {body("1", res(`{"groups":{"":1}}`)), "empty resources group name"},
		"long name":        {body("1", res(`{"uuids":{"`+strings.Repeat("u", 257)+`":1}}`)), "is 257 bytes, at most 256"},
		"unknown bit":      {body("1", res(`{"channels":{"c":256}}`)), "permission bits 256"},
		"negative bits":    {body("1", res(`{"channels":{"c":-1}}`)), "not the grant JSON"},
		"bad pattern":      {body("1", `{"patterns":{"channels":{"(":1}}}`), "is not a regular expression"},
		"nested meta":      {body("1", `{"resources":{"channels":{"c":1}},"meta":{"m":{"a":1}}}`), "meta must be flat"},
		"array meta":       {body("1", `{"resources":{"channels":{"c":1}},"meta":{"m":[1]}}`), "meta must be flat"},
		"meta not object":  {body("1", `{"resources":{"channels":{"c":1}},"meta":[1]}`), "not the grant JSON"},
		"huge meta number": {body("1", `{"resources":{"channels":{"c":1}},"meta":{"m":1e999}}`), "out of range"},
		"empty uuid":       {body("1", `{"resources":{"channels":{"c":1}},"uuid":""}`), "empty uuid"},
		"too much meta":    {body("1", meta(101)), "meta has 101 keys, at most 100"},
		"categories":       {body("1", `{"resources":{"channels":{"c":1}},"categories":{"channels":32}}`), "categories are not supported"},
		"too many":         {body("1", many(201, 3)), "201 resources and patterns, at most 200"},
		"token too long":   {body("1", many(200, 200)), "the token would be"},
		"unknown kind":     {body("1", res(`{"rooms":{"c":1}}`)), "unknown field"},
		"resources a list": {body("1", `{"resources":["c"]}`), "not the grant JSON"},
		"body too large":   {strings.Repeat(" ", maxGrantBytes+1), "at most"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			tok, err := ParseGrant([]byte(c.body))
			if !errors.Is(err, ErrBadGrant) {
				t.Fatalf("got %v, %v; want ErrBadGrant", tok, err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q: want it to say %q", err, c.want)
			}
		})
	}
	// At the bounds, the grant is made and its token verifies.
	for _, b := range []string{body("1", meta(100)), body("1", ok), body("43200", ok), body("1", many(200, 3)),
		body("1", many(140, 160)), body("1", res(`{"channels":{"c":255}}`))} {
		tok, err := ParseGrant([]byte(b))
		if err != nil {
			t.Errorf("%.80s: %v", b, err)
			continue
		}
		tok.Issued = testIssued
		s, err := tok.Sign(testSecret)
		if err == nil {
			_, err = VerifyToken(s, testSecret, testIssued)
		}
		if err != nil {
			t.Errorf("%.80s: %v", b, err)
		}
	}
}

func TestGrantResponse(t *testing.T) {
	var got struct {
		Status int `json:"status"`
		Data   struct {
			Message string `json:"message"`
			Token   string `json:"token"`
		} `json:"data"`
		Service string `json:"service"`
	}
	if err := json.Unmarshal(GrantResponse("tok=="), &got); err != nil {
		t.Fatal(err)
	}
	if got.Status != 200 || got.Data.Message != "Success" || got.Data.Token != "tok==" || got.Service != "Access Manager" {
		t.Errorf("got %+v", got)
	}
}

func FuzzParseGrant(f *testing.F) {
	f.Add([]byte(jsGrantBody))
	f.Add([]byte(pyGrantBody))
	f.Add([]byte(`{"ttl":1,"permissions":{"patterns":{"uuids":{"^u-[0-9]+$":32}},"meta":{"a":null}}}`))
	f.Add([]byte(`{"ttl":1e1,"permissions":{"resources":{"groups":{"g":128}}}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		tok, err := ParseGrant(body)
		if err != nil {
			if !errors.Is(err, ErrBadGrant) {
				t.Fatalf("error %v does not wrap ErrBadGrant", err)
			}
			return
		}
		// What ParseGrant accepts signs, verifies and reads back.
		tok.Issued = testIssued
		s, err := tok.Sign(testSecret)
		if err != nil {
			t.Fatalf("Sign of an accepted grant: %v", err)
		}
		v, err := VerifyToken(s, testSecret, testIssued)
		if err != nil {
			t.Fatalf("VerifyToken of an accepted grant: %v", err)
		}
		if !reflect.DeepEqual(v.Resources, tok.Resources) || !reflect.DeepEqual(v.Patterns, tok.Patterns) || v.TTL != tok.TTL || v.AuthorizedUUID != tok.AuthorizedUUID {
			t.Fatalf("read back %+v, signed %+v", v, tok)
		}
		if len(v.compiled().chans) != len(tok.Patterns.Channels) {
			t.Fatalf("a pattern ParseGrant accepted does not compile")
		}
	})
}
