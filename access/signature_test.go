package access

import (
	"encoding/base64"
	"errors"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

var sigKeys = Keyset{SubscribeKey: "sub", PublishKey: "pub", SecretKey: "secret"}

const sigTS = 1_700_000_000

var sigNow = time.Unix(sigTS, 0)

func cloneValues(q url.Values) url.Values {
	out := url.Values{}
	for k, vs := range q {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

// signed returns r with its timestamp and signature set.
func signed(r SignedRequest, k Keyset, ts int64) SignedRequest {
	r.Query = cloneValues(r.Query)
	r.Query.Set("timestamp", strconv.FormatInt(ts, 10))
	r.Query.Set("signature", Sign(r, k))
	return r
}

// TestSignInput pins the signed string, written out by hand from the SDKs'
// code, for a publish by GET with a JSON path and a query full of
// characters PubNub percent-encodes.
func TestSignInput(t *testing.T) {
	r := SignedRequest{
		Method: "GET",
		Path:   "/publish/pub/sub/0/ch/0/%7B%22a%22%3A1%7D",
		Query: url.Values{
			"uuid":      {"u 1"},
			"timestamp": {"1700000000"},
			"pnsdk":     {"PubNub-JS-Nodejs/11.0.2"},
			"meta":      {`{"q":"+ ! * ' ( ) ~ % é"}`},
			"signature": {"ignored"},
		},
	}
	want := "GET\npub\n/publish/pub/sub/0/ch/0/%7B%22a%22%3A1%7D\n" +
		"meta=%7B%22q%22%3A%22%2B%20%21%20%2A%20%27%20%28%20%29%20%7E%20%25%20%C3%A9%22%7D" +
		"&pnsdk=PubNub-JS-Nodejs%2F11.0.2&timestamp=1700000000&uuid=u%201\n"
	if got := v2Input(r, sigKeys); got != want {
		t.Fatalf("signed string:\n got %q\nwant %q", got, want)
	}
	if got, want := Sign(r, sigKeys), "v2."+base64.RawURLEncoding.EncodeToString(mac("secret", want)); got != want {
		t.Errorf("Sign: got %s, want %s", got, want)
	}
	// A POST outside /publish signs its body; a DELETE and a publish by
	// POST (signed as a GET) do not.
	for _, c := range []struct {
		method, path, want string
	}{
		{"POST", "/v3/pam/sub/grant", "POST\npub\n/v3/pam/sub/grant\nx=%2C\n{\"ttl\":1}"},
		{"PATCH", "/v2/objects", "PATCH\npub\n/v2/objects\nx=%2C\n{\"ttl\":1}"},
		{"DELETE", "/v3/pam/sub/grant/t", "DELETE\npub\n/v3/pam/sub/grant/t\nx=%2C\n"},
		{"POST", "/publish/pub/sub/0/ch/0", "GET\npub\n/publish/pub/sub/0/ch/0\nx=%2C\n"},
	} {
		r := SignedRequest{Method: c.method, Path: c.path, Query: url.Values{"x": {","}}, Body: []byte(`{"ttl":1}`)}
		if got := v2Input(r, sigKeys); got != c.want {
			t.Errorf("%s %s:\n got %q\nwant %q", c.method, c.path, got, c.want)
		}
	}
	// Values of a repeated name are sorted.
	r = SignedRequest{Method: "GET", Path: "/p", Query: url.Values{"b": {"2", "1"}, "a": {"z"}}}
	if got, want := v2Input(r, sigKeys), "GET\npub\n/p\na=z&b=1&b=2\n"; got != want {
		t.Errorf("repeated name: got %q, want %q", got, want)
	}
}

func TestPNEncode(t *testing.T) {
	for in, want := range map[string]string{
		"aZ09-_.": "aZ09-_.",
		"+":       "%2B", "!": "%21", "*": "%2A", "'": "%27", "(": "%28", ")": "%29", "~": "%7E", "%": "%25",
		" ": "%20", ",": "%2C", "/": "%2F", "ü": "%C3%BC", "😀": "%F0%9F%98%80", "\x00\xff": "%00%FF",
	} {
		var b strings.Builder
		pnEncode(&b, in)
		if b.String() != want {
			t.Errorf("pnEncode(%q): got %q, want %q", in, b.String(), want)
		}
	}
}

// TestSignatureRoundTrip: a request signed over the decoded query verifies
// from its request URI however the client percent-encoded the query
// (PubNub's way, or Go's url.QueryEscape with %20 for spaces), and paths
// keep their encoding.
func TestSignatureRoundTrip(t *testing.T) {
	odd := `+ ! * ' ( ) ~ % & = ? / ü 😀 ,`
	q := url.Values{"uuid": {"u " + odd}, "meta": {`{"q":"` + odd + `"}`}, "channel-group": {"g 1,g,2"}}
	for _, path := range []string{
		"/publish/pub/sub/0/ch/0/%7B%22a%22%3A1%7D",
		"/v2/subscribe/sub/room%201%2C%C3%BC,c%7E2/0",
		"/v1/channel-registration/sub-key/sub/channel-group/g%201",
		"/v3/pam/sub/grant",
	} {
		r := signed(SignedRequest{Method: "GET", Path: path, Query: q}, sigKeys, sigTS)
		var pn strings.Builder
		for k, vs := range r.Query {
			for _, v := range vs {
				if pn.Len() > 0 {
					pn.WriteByte('&')
				}
				pn.WriteString(k + "=")
				pnEncode(&pn, v)
			}
		}
		var goEnc []string
		for k, vs := range r.Query {
			for _, v := range vs {
				goEnc = append(goEnc, qEscape(k)+"="+qEscape(v))
			}
		}
		for name, raw := range map[string]string{"PubNub encoding": pn.String(), "Go encoding": strings.Join(goEnc, "&")} {
			got, err := ParseSignedRequest("GET", path+"?"+raw, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := VerifySignature(got, sigKeys, sigNow, time.Minute); err != nil {
				t.Errorf("%s, %s: %v", path, name, err)
			}
			got.Path, _ = url.PathUnescape(path)
			if got.Path != path {
				if err := VerifySignature(got, sigKeys, sigNow, time.Minute); !errors.Is(err, ErrSignature) {
					t.Errorf("%s decoded: got %v, want ErrSignature", path, err)
				}
			}
		}
	}
}

func qEscape(s string) string { return strings.ReplaceAll(url.QueryEscape(s), "+", "%20") }

func TestVerifySignature(t *testing.T) {
	base := SignedRequest{Method: "POST", Path: "/v3/pam/sub/grant", Query: url.Values{"uuid": {"u"}}, Body: []byte(`{"ttl":5}`)}
	ok := signed(base, sigKeys, sigTS)
	pub := signed(SignedRequest{Method: "GET", Path: "/publish/pub/sub/0/ch/0/1", Query: url.Values{}}, sigKeys, sigTS)
	with := func(r SignedRequest, f func(*SignedRequest)) SignedRequest {
		r.Query = cloneValues(r.Query)
		f(&r)
		return r
	}
	v1 := func(r SignedRequest) SignedRequest {
		r.Query = cloneValues(r.Query)
		r.Query.Del("signature")
		r.Query.Set("signature", base64.URLEncoding.EncodeToString(mac(sigKeys.SecretKey, v1Input(r, sigKeys))))
		return r
	}
	cases := []struct {
		name string
		r    SignedRequest
		keys Keyset
		now  time.Time
		want error
	}{
		{"signed", ok, sigKeys, sigNow, nil},
		{"skew at the bound, late", ok, sigKeys, sigNow.Add(time.Minute), nil},
		{"skew at the bound, early", ok, sigKeys, sigNow.Add(-time.Minute), nil},
		{"stale", ok, sigKeys, sigNow.Add(time.Minute + time.Second), ErrSignatureStale},
		{"from the future", ok, sigKeys, sigNow.Add(-time.Minute - time.Second), ErrSignatureStale},
		{"unsigned", base, sigKeys, sigNow, ErrUnsigned},
		{"empty signature", with(ok, func(r *SignedRequest) { r.Query.Set("signature", "") }), sigKeys, sigNow, ErrUnsigned},
		{"two signatures", with(ok, func(r *SignedRequest) { r.Query.Add("signature", "v2.x") }), sigKeys, sigNow, ErrSignature},
		{"no timestamp", with(ok, func(r *SignedRequest) { r.Query.Del("timestamp") }), sigKeys, sigNow, ErrSignature},
		{"bad timestamp", with(ok, func(r *SignedRequest) { r.Query.Set("timestamp", "soon") }), sigKeys, sigNow, ErrSignature},
		{"timestamp changed", with(ok, func(r *SignedRequest) { r.Query.Set("timestamp", "1700000001") }), sigKeys, sigNow, ErrSignature},
		{"another secret", ok, Keyset{PublishKey: "pub", SecretKey: "other"}, sigNow, ErrSignature},
		{"another publish key", ok, Keyset{PublishKey: "pub2", SecretKey: "secret"}, sigNow, ErrSignature},
		{"no secret", ok, Keyset{PublishKey: "pub"}, sigNow, ErrSignature},
		{"body changed", with(ok, func(r *SignedRequest) { r.Body = []byte(`{"ttl":6}`) }), sigKeys, sigNow, ErrSignature},
		{"method changed", with(ok, func(r *SignedRequest) { r.Method = "PATCH" }), sigKeys, sigNow, ErrSignature},
		{"query added", with(ok, func(r *SignedRequest) { r.Query.Set("auth", "t") }), sigKeys, sigNow, ErrSignature},
		{"padded", with(ok, func(r *SignedRequest) { r.Query.Set("signature", r.Query.Get("signature")+"=") }), sigKeys, sigNow, nil},
		{"not base64", with(ok, func(r *SignedRequest) { r.Query.Set("signature", "v2.!!") }), sigKeys, sigNow, ErrSignature},
		{"Signature field", with(base, func(r *SignedRequest) {
			r.Query.Set("timestamp", strconv.Itoa(sigTS))
			r.Signature = ok.Query.Get("signature")
		}), sigKeys, sigNow, nil},
		{"publish by POST, signed as GET", with(pub, func(r *SignedRequest) { r.Method = "POST"; r.Body = []byte(`{"a":1}`) }), sigKeys, sigNow, nil},
		{"v1 (Python publish by POST)", v1(with(pub, func(r *SignedRequest) { r.Method = "POST" })), sigKeys, sigNow, nil},
		{"v1 elsewhere", v1(ok), sigKeys, sigNow, ErrSignature},
		{"v1 publish by GET", v1(pub), sigKeys, sigNow, ErrSignature},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := VerifySignature(c.r, c.keys, c.now, time.Minute)
			if c.want == nil {
				if err != nil {
					t.Fatalf("got %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			for _, e := range []error{ErrUnsigned, ErrSignature, ErrSignatureStale} {
				if e != c.want && errors.Is(err, e) {
					t.Errorf("%v also wraps %v", err, e)
				}
			}
		})
	}
}

func TestParseSignedRequest(t *testing.T) {
	r, err := ParseSignedRequest("GET", "/v2/subscribe/sub/a%2Cb/0?uuid=a+b&x=%2B&&y&add=a%20b,c~d,x'y,e+f&x=%C3%BC", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := url.Values{"uuid": {"a+b"}, "x": {"+", "ü"}, "y": {""}, "add": {"a b,c~d,x'y,e+f"}}
	if r.Path != "/v2/subscribe/sub/a%2Cb/0" || !reflect.DeepEqual(r.Query, want) {
		t.Errorf("got path %q query %v, want /v2/subscribe/sub/a%%2Cb/0 %v", r.Path, r.Query, want)
	}
	if _, err := ParseSignedRequest("GET", "/p?a=%zz", nil); !errors.Is(err, ErrSignature) {
		t.Errorf("bad query: got %v, want ErrSignature", err)
	}
}

func BenchmarkVerifySignature(b *testing.B) {
	r := signed(SignedRequest{Method: "GET", Path: "/publish/pub/sub/0/ch/0/%7B%22a%22%3A1%7D",
		Query: url.Values{"uuid": {"u"}, "pnsdk": {"PubNub-JS-Nodejs/11.0.2"}}}, sigKeys, sigTS)
	b.ReportAllocs()
	for b.Loop() {
		if err := VerifySignature(r, sigKeys, sigNow, time.Minute); err != nil {
			b.Fatal(err)
		}
	}
}

func FuzzVerifySignature(f *testing.F) {
	f.Add("GET", "/publish/pub/sub/0/ch/0/%7B%22a%22%3A1%7D?uuid=u&pnsdk=x%2Fy", []byte(nil), int64(0))
	f.Add("POST", "/v3/pam/sub/grant?uuid=u+1&x=%2B%21", []byte(`{"ttl":1}`), int64(30))
	f.Add("POST", "/publish/pub/sub/0/ch/0?a=1&a=0", []byte(`{}`), int64(-61))
	f.Add("DELETE", "/v3/pam/sub/grant/qEF2?signature=v2.abc&timestamp=1700000000", []byte(nil), int64(0))
	f.Fuzz(func(t *testing.T, method, uri string, body []byte, offset int64) {
		r, err := ParseSignedRequest(method, uri, body)
		if err != nil {
			return
		}
		// Whatever arrives: no panic, and an error of the three kinds.
		if err := VerifySignature(r, sigKeys, sigNow, time.Minute); err != nil &&
			!errors.Is(err, ErrUnsigned) && !errors.Is(err, ErrSignature) && !errors.Is(err, ErrSignatureStale) {
			t.Fatalf("error %v of no kind", err)
		}
		// Signed, it verifies within the skew and is stale beyond it.
		s := signed(r, sigKeys, sigTS+offset%120)
		s.Signature = ""
		err = VerifySignature(s, sigKeys, sigNow, time.Minute)
		if d := offset % 120; d >= -60 && d <= 60 {
			if err != nil {
				t.Fatalf("signed %s %q: %v", method, uri, err)
			}
		} else if !errors.Is(err, ErrSignatureStale) {
			t.Fatalf("signed %d s away: got %v, want ErrSignatureStale", d, err)
		}
		// Another key does not verify it.
		if err := VerifySignature(s, Keyset{PublishKey: "pub", SecretKey: "secreT"}, sigNow, 2*time.Minute); !errors.Is(err, ErrSignature) {
			t.Fatalf("another secret: got %v, want ErrSignature", err)
		}
	})
}
