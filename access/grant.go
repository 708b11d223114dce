package access

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"time"
	"unicode/utf8"
)

// ErrBadGrant: a grant request's body is not one Access Manager can grant
// (the HTTP layer answers 400 with the error's message).
var ErrBadGrant = errors.New("access: invalid grant request")

// Grant bounds: PubNub's ttl range in minutes, and the longest resource
// name, pattern, authorized uuid or meta key, and the most meta keys.
const (
	MinGrantTTL   = 1
	MaxGrantTTL   = 43200 // 30 days
	MaxNameLen    = 256
	MaxMetaKeys   = 100
	maxMetaValue  = 4096
	allPermBits   = Read | Write | Manage | Delete | Create | Get | Update | Join
	maxGrantBytes = 256 << 10
)

// grantBody is POST /v3/pam/{sub_key}/grant's body as the SDKs send it.
type grantBody struct {
	TTL         json.RawMessage `json:"ttl"`
	Permissions *struct {
		Resources  grantSet                   `json:"resources"`
		Patterns   grantSet                   `json:"patterns"`
		Meta       map[string]json.RawMessage `json:"meta"`
		UUID       *string                    `json:"uuid"`
		Categories json.RawMessage            `json:"categories"`
	} `json:"permissions"`
}

// grantSet is "resources" or "patterns". The Python SDK repeats channels as
// spaces and uuids as users (PubNub's old Objects names); the JavaScript
// SDK sends them empty. They are merged.
type grantSet struct {
	Channels map[string]uint64 `json:"channels"`
	Groups   map[string]uint64 `json:"groups"`
	UUIDs    map[string]uint64 `json:"uuids"`
	Users    map[string]uint64 `json:"users"`
	Spaces   map[string]uint64 `json:"spaces"`
}

func badGrant(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrBadGrant}, args...)...)
}

// ParseGrant reads the body of a grant request, as the JavaScript and
// Python SDKs send it:
//
//	{"ttl": 60, "permissions": {
//	  "resources": {"channels": {"ch": 3}, "groups": {}, "uuids": {}, "users": {}, "spaces": {}},
//	  "patterns":  {"channels": {"^room-.*": 1}, ...},
//	  "meta": {"k": "v"}, "uuid": "authorized uuid"}}
//
// and returns the token it asks for, not yet issued: set Issued, then Sign.
// It requires a ttl of 1..43200 minutes, at least one resource or pattern
// (MaxTokenResources at most), names of 1..256 bytes of UTF-8, patterns that
// compile as Go regexps, only PubNub's permission bits, and a flat meta
// (string, number, bool or null values). Errors wrap ErrBadGrant and say
// what is wrong.
func ParseGrant(body []byte) (*Token, error) {
	if len(body) > maxGrantBytes {
		return nil, badGrant("body is %d bytes, at most %d", len(body), maxGrantBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	var g grantBody
	if err := dec.Decode(&g); err != nil {
		return nil, badGrant("body is not the grant JSON: %v", err)
	}
	if dec.More() {
		return nil, badGrant("body has data after the JSON object")
	}
	if len(g.TTL) == 0 || string(g.TTL) == "null" {
		return nil, badGrant("ttl is required (%d..%d minutes)", MinGrantTTL, MaxGrantTTL)
	}
	ttl, err := strconv.ParseInt(string(g.TTL), 10, 64)
	if err != nil || ttl < MinGrantTTL || ttl > MaxGrantTTL {
		return nil, badGrant("ttl %.20s is not a whole number of minutes in %d..%d", g.TTL, MinGrantTTL, MaxGrantTTL)
	}
	p := g.Permissions
	if p == nil {
		return nil, badGrant("permissions are required")
	}
	if len(p.Categories) > 0 && !bytes.Equal(bytes.TrimSpace(p.Categories), []byte("null")) {
		return nil, badGrant("categories are not supported")
	}
	t := &Token{Version: TokenVersion, TTL: time.Duration(ttl) * time.Minute, Meta: map[string]any{}}
	if t.Resources, err = p.Resources.grants("resources", false); err != nil {
		return nil, err
	}
	if t.Patterns, err = p.Patterns.grants("patterns", true); err != nil {
		return nil, err
	}
	switch n := t.Resources.Len() + t.Patterns.Len(); {
	case n == 0:
		return nil, badGrant("no resources or patterns to grant on")
	case n > MaxTokenResources:
		return nil, badGrant("%d resources and patterns, at most %d", n, MaxTokenResources)
	}
	if p.UUID != nil {
		if err := checkName("uuid", *p.UUID); err != nil {
			return nil, err
		}
		t.AuthorizedUUID = *p.UUID
	}
	if len(p.Meta) > MaxMetaKeys {
		return nil, badGrant("meta has %d keys, at most %d", len(p.Meta), MaxMetaKeys)
	}
	for k, raw := range p.Meta {
		if err := checkName("meta key", k); err != nil {
			return nil, err
		}
		v, err := metaValue(raw)
		if err != nil {
			return nil, badGrant("meta %q: %v", k, err)
		}
		t.Meta[k] = v
	}
	// Refuse here, as a 400, a grant whose token would be too long.
	w, err := t.wire()
	if err != nil {
		return nil, badGrant("%v", err)
	}
	b, err := w.encode(false)
	if err != nil {
		return nil, badGrant("%v", err)
	}
	// The token adds sig (a 4-byte key, a 2-byte head, 32 bytes), then
	// padded base64.
	if n := (len(b) + 38 + 2) / 3 * 4; n > MaxTokenLen {
		return nil, badGrant("the token would be %d characters, at most %d: grant on fewer or shorter names", n, MaxTokenLen)
	}
	return t, nil
}

func (s grantSet) grants(what string, patterns bool) (Grants, error) {
	g := Grants{Channels: map[string]Perm{}, Groups: map[string]Perm{}, UUIDs: map[string]Perm{}}
	add := func(dst map[string]Perm, kind string, src map[string]uint64) error {
		for name, bits := range src {
			if err := checkName(what+" "+kind+" name", name); err != nil {
				return err
			}
			if bits&^uint64(allPermBits) != 0 {
				return badGrant("%s %s %q: permission bits %d: only read 1, write 2, manage 4, delete 8, create 16, get 32, update 64, join 128", what, kind, name, bits)
			}
			if patterns {
				if _, err := regexp.Compile(name); err != nil {
					return badGrant("%s %s %q is not a regular expression: %v", what, kind, name, err)
				}
			}
			dst[name] |= Perm(bits)
		}
		return nil
	}
	for _, x := range []struct {
		dst  map[string]Perm
		kind string
		src  map[string]uint64
	}{
		{g.Channels, "channel", s.Channels}, {g.Channels, "space", s.Spaces},
		{g.Groups, "group", s.Groups},
		{g.UUIDs, "uuid", s.UUIDs}, {g.UUIDs, "user", s.Users},
	} {
		if err := add(x.dst, x.kind, x.src); err != nil {
			return Grants{}, err
		}
	}
	return g, nil
}

func checkName(what, s string) error {
	switch {
	case s == "":
		return badGrant("empty %s", what)
	case len(s) > MaxNameLen:
		return badGrant("%s %.32q... is %d bytes, at most %d", what, s, len(s), MaxNameLen)
	case !utf8.ValidString(s):
		return badGrant("%s %q is not UTF-8", what, s)
	}
	return nil
}

// metaValue turns a JSON meta value into what the token carries.
func metaValue(raw json.RawMessage) (any, error) {
	if len(raw) > maxMetaValue {
		return nil, fmt.Errorf("value is %d bytes, at most %d", len(raw), maxMetaValue)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	switch v := v.(type) {
	case nil, bool, string:
		return v, nil
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return i, nil
		}
		if u, err := strconv.ParseUint(v.String(), 10, 64); err == nil {
			return u, nil
		}
		f, err := v.Float64()
		if err != nil || math.IsInf(f, 0) {
			return nil, fmt.Errorf("number %s out of range", v)
		}
		return f, nil
	}
	return nil, errors.New("meta must be flat: string, number, bool or null values")
}

// GrantResponse is the answer to a successful grant, as PubNub sends it and
// the SDKs read it (data.token).
func GrantResponse(token string) []byte {
	b, _ := json.Marshal(map[string]any{
		"status":  200,
		"data":    map[string]string{"message": "Success", "token": token},
		"service": "Access Manager",
	})
	return b
}
