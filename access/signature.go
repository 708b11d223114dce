package access

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Signature errors. VerifySignature's errors wrap exactly one of them.
var (
	// ErrUnsigned: the request carries no signature.
	ErrUnsigned = errors.New("access: request is not signed")
	// ErrSignature: the signature does not match the request under the
	// keyset's secret key, or is malformed, or the timestamp is missing.
	ErrSignature = errors.New("access: signature does not match")
	// ErrSignatureStale: the request's timestamp is further from now than
	// the allowed skew.
	ErrSignatureStale = errors.New("access: signature timestamp outside the allowed skew")
)

// SignedRequest is a request as its signature covers it.
type SignedRequest struct {
	// Method is the HTTP method (GET, POST, ...).
	Method string
	// Path is the path exactly as sent, still percent-encoded, without the
	// query: "/publish/pub/sub/0/ch/0/%7B%22a%22%3A1%7D". A decoded or
	// normalised path does not verify.
	Path string
	// Query is the decoded query. Its "signature" is ignored by Sign and
	// used by VerifySignature when Signature is empty; "timestamp" (unix
	// seconds) is signed like any other parameter.
	Query url.Values
	// Body is the request body; it is signed for POST and PATCH.
	Body []byte
	// Signature, when set, is the signature to verify instead of
	// Query["signature"].
	Signature string
}

// ParseSignedRequest builds a SignedRequest from a request's method, its
// request URI as sent (path and raw query, "/v2/subscribe/sub/ch/0?uuid=u")
// and its body. Query names and values are percent-decoded; "+" stays "+"
// (the Python SDK sends a channel "e+f" as add=e+f, and signs "e+f"; the
// JavaScript SDK sends "+" as %2B), so a form-encoded space ("+") does not
// verify. An empty parameter ("&&") is skipped; one without "=" has the
// empty value.
func ParseSignedRequest(method, requestURI string, body []byte) (SignedRequest, error) {
	path, rawQuery, _ := strings.Cut(requestURI, "?")
	q := url.Values{}
	for rawQuery != "" {
		var kv string
		kv, rawQuery, _ = strings.Cut(rawQuery, "&")
		if kv == "" {
			continue
		}
		rk, rv, _ := strings.Cut(kv, "=")
		k, err := url.PathUnescape(rk)
		if err == nil {
			var v string
			if v, err = url.PathUnescape(rv); err == nil {
				q[k] = append(q[k], v)
				continue
			}
		}
		return SignedRequest{}, fmt.Errorf("%w: query parameter %q: %v", ErrSignature, kv, err)
	}
	return SignedRequest{Method: method, Path: path, Query: q, Body: body}, nil
}

// Sign returns the v2 signature of r under k, as PubNub's SDKs compute it:
// "v2." + base64url without padding of HMAC-SHA256(secret key, s), where s
// is
//
//	method "\n" publish key "\n" path "\n" query "\n" body
//
// method is GET for any path under /publish (the JavaScript SDK signs a
// publish sent by POST as a GET), query is r.Query without "signature",
// sorted by name (and a name's values sorted), each value percent-encoded
// as PubNub does (everything but A-Z a-z 0-9 - _ . as %XX of its UTF-8
// bytes; names as they are), joined by "&"; body is r.Body for POST and
// PATCH outside /publish, empty otherwise. Set r.Query["timestamp"] first.
func Sign(r SignedRequest, k Keyset) string {
	return "v2." + base64.RawURLEncoding.EncodeToString(mac(k.SecretKey, v2Input(r, k)))
}

// VerifySignature checks r's signature under k's secret key and that its
// timestamp is within skew of now. Besides v2 signatures it accepts the one
// v1 signature an official SDK still sends: the Python SDK's for a publish
// sent by POST (HMAC over subscribe key "\n" publish key "\n" path "\n"
// query, base64url, no "v2." prefix). Errors wrap ErrUnsigned, ErrSignature
// or ErrSignatureStale.
func VerifySignature(r SignedRequest, k Keyset, now time.Time, skew time.Duration) error {
	sig := r.Signature
	if sig == "" {
		switch vs := r.Query["signature"]; len(vs) {
		case 0:
			return ErrUnsigned
		case 1:
			sig = vs[0]
		default:
			return fmt.Errorf("%w: %d signature parameters", ErrSignature, len(vs))
		}
		if sig == "" {
			return ErrUnsigned
		}
	}
	ts := r.Query["timestamp"]
	if len(ts) != 1 {
		return fmt.Errorf("%w: want one timestamp parameter, got %d", ErrSignature, len(ts))
	}
	sec, err := strconv.ParseInt(ts[0], 10, 64)
	if err != nil {
		return fmt.Errorf("%w: timestamp %q is not unix seconds", ErrSignature, ts[0])
	}
	if d := now.Sub(time.Unix(sec, 0)); d > skew || d < -skew {
		return fmt.Errorf("%w: timestamp %d is %s from now (at most %s)", ErrSignatureStale, sec, d.Round(time.Second), skew)
	}
	if k.SecretKey == "" {
		return fmt.Errorf("%w: the keyset has no secret key", ErrSignature)
	}
	var want []byte
	switch {
	case strings.HasPrefix(sig, "v2."):
		sig = sig[len("v2."):]
		want = mac(k.SecretKey, v2Input(r, k))
	case r.Method == "POST" && strings.HasPrefix(r.Path, "/publish"):
		want = mac(k.SecretKey, v1Input(r, k))
	default:
		return fmt.Errorf("%w: not a v2 signature", ErrSignature)
	}
	got, err := base64.RawURLEncoding.Strict().DecodeString(strings.TrimRight(sig, "="))
	if err != nil || !hmac.Equal(got, want) {
		return ErrSignature
	}
	return nil
}

func mac(secret, s string) []byte {
	h := hmac.New(sha256.New, []byte(secret))
	h.Write([]byte(s))
	return h.Sum(nil)
}

func v2Input(r SignedRequest, k Keyset) string {
	method := strings.ToUpper(r.Method)
	publish := strings.HasPrefix(r.Path, "/publish")
	if publish {
		method = "GET"
	}
	var b strings.Builder
	b.WriteString(method)
	b.WriteByte('\n')
	b.WriteString(k.PublishKey)
	b.WriteByte('\n')
	b.WriteString(r.Path)
	b.WriteByte('\n')
	writeQuery(&b, r.Query)
	b.WriteByte('\n')
	if !publish && (method == "POST" || method == "PATCH") {
		b.Write(r.Body)
	}
	return b.String()
}

func v1Input(r SignedRequest, k Keyset) string {
	var b strings.Builder
	b.WriteString(k.SubscribeKey)
	b.WriteByte('\n')
	b.WriteString(k.PublishKey)
	b.WriteByte('\n')
	b.WriteString(r.Path)
	b.WriteByte('\n')
	writeQuery(&b, r.Query)
	return b.String()
}

// writeQuery writes q as the SDKs sign it: sorted, "signature" left out.
func writeQuery(b *strings.Builder, q url.Values) {
	names := make([]string, 0, len(q))
	for name := range q {
		if name != "signature" {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	first := true
	for _, name := range names {
		vs := q[name]
		if len(vs) > 1 {
			vs = slices.Sorted(slices.Values(vs))
		}
		for _, v := range vs {
			if !first {
				b.WriteByte('&')
			}
			first = false
			b.WriteString(name)
			b.WriteByte('=')
			pnEncode(b, v)
		}
	}
}

// pnEncode percent-encodes s as PubNub's SDKs do (JavaScript:
// encodeURIComponent plus !~*'(); Python: quote(safe="~") then ~ and the
// rest): every byte but A-Z a-z 0-9 - _ . becomes %XX, upper case.
func pnEncode(b *strings.Builder, s string) {
	const hexDigits = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&15])
	}
}
