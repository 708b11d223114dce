// Package accesstest is the conformance suite every access.Store must pass,
// run against the embedded bbolt store, a real Cassandra and Memory, so
// that all give the same answers; and Memory, an access.Store in memory for
// tests of code that uses one.
package accesstest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/groupcast/groupcast/access"
)

// Run runs the suite. open may return a store shared between the suite's
// tests (they run one after another and use keys of their own), but nothing
// else may change the store while the suite runs: it checks that reads
// leave Version alone.
func Run(t *testing.T, open func(t *testing.T) access.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s access.Store)
	}{
		{"PutAndList", testPutAndList},
		{"Replace", testReplace},
		{"Delete", testDelete},
		{"TimesRoundTrip", testTimesRoundTrip},
		{"Version", testVersion},
		{"Revocations", testRevocations},
		{"LongExpiredRevocation", testLongExpiredRevocation},
		{"InvalidInput", testInvalidInput},
		{"CanceledContext", testCanceledContext},
		{"ConcurrentPuts", testConcurrentPuts},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
}

// now is the suite's clock: real time, since Cassandra ages revocations by
// its own, to the millisecond the stores keep.
func now() time.Time { return time.Now().UTC().Truncate(time.Millisecond) }

func newKeyset(t *testing.T, pam bool) access.Keyset {
	t.Helper()
	k, err := access.NewKeyset(pam, now())
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func put(t *testing.T, s access.Store, k access.Keyset) {
	t.Helper()
	if err := s.PutKeyset(t.Context(), k); err != nil {
		t.Fatalf("PutKeyset(%s): %v", k.SubscribeKey, err)
	}
}

func keysets(t *testing.T, s access.Store) []access.Keyset {
	t.Helper()
	ks, err := s.Keysets(t.Context())
	if err != nil {
		t.Fatalf("Keysets: %v", err)
	}
	return ks
}

func version(t *testing.T, s access.Store) string {
	t.Helper()
	v, err := s.Version(t.Context())
	if err != nil {
		t.Fatalf("Version: %v", err)
	}
	return v
}

// find returns the keysets of ks with subscribe key sub.
func find(ks []access.Keyset, sub string) []access.Keyset {
	var out []access.Keyset
	for _, k := range ks {
		if k.SubscribeKey == sub {
			out = append(out, k)
		}
	}
	return out
}

func sameKeyset(a, b access.Keyset) bool {
	return a.SubscribeKey == b.SubscribeKey && a.PublishKey == b.PublishKey && a.SecretKey == b.SecretKey &&
		a.PAM == b.PAM && a.Created.Equal(b.Created)
}

// checkKeyset fails unless ks holds exactly one keyset with want's
// subscribe key, equal to want.
func checkKeyset(t *testing.T, ks []access.Keyset, want access.Keyset) {
	t.Helper()
	got := find(ks, want.SubscribeKey)
	if len(got) != 1 || !sameKeyset(got[0], want) {
		t.Fatalf("keysets with subscribe key %s: %+v; want exactly %+v", want.SubscribeKey, got, want)
	}
}

func checkAbsent(t *testing.T, ks []access.Keyset, sub string) {
	t.Helper()
	if got := find(ks, sub); len(got) != 0 {
		t.Fatalf("keysets with subscribe key %s: %+v; want none", sub, got)
	}
}

func testPutAndList(t *testing.T, s access.Store) {
	want := []access.Keyset{newKeyset(t, true), newKeyset(t, false), newKeyset(t, true)}
	for _, k := range want {
		put(t, s, k)
	}
	ks := keysets(t, s)
	for _, k := range want {
		checkKeyset(t, ks, k)
	}
	if !slices.IsSortedFunc(ks, func(a, b access.Keyset) int { return strings.Compare(a.SubscribeKey, b.SubscribeKey) }) {
		t.Fatalf("Keysets not in subscribe-key order: %v", subKeys(ks))
	}
}

func subKeys(ks []access.Keyset) []string {
	out := make([]string, len(ks))
	for i, k := range ks {
		out[i] = k.SubscribeKey
	}
	return out
}

func testReplace(t *testing.T, s access.Store) {
	k := newKeyset(t, false)
	put(t, s, k)
	k2, err := access.RotateSecret(k)
	if err != nil {
		t.Fatal(err)
	}
	k2.PAM = true
	k2.PublishKey = "pub-c-replaced-" + k.SubscribeKey[len("sub-c-"):]
	if k2.SecretKey == k.SecretKey {
		t.Fatalf("RotateSecret kept the secret %q", k.SecretKey)
	}
	put(t, s, k2)
	checkKeyset(t, keysets(t, s), k2)
}

func testDelete(t *testing.T, s access.Store) {
	k, other := newKeyset(t, true), newKeyset(t, true)
	put(t, s, k)
	put(t, s, other)
	ctx := t.Context()
	if err := s.DeleteKeyset(ctx, k.SubscribeKey); err != nil {
		t.Fatalf("DeleteKeyset: %v", err)
	}
	ks := keysets(t, s)
	checkAbsent(t, ks, k.SubscribeKey)
	checkKeyset(t, ks, other)
	if err := s.DeleteKeyset(ctx, k.SubscribeKey); err != nil {
		t.Fatalf("DeleteKeyset of a deleted keyset: %v; want nil", err)
	}
	if err := s.DeleteKeyset(ctx, "sub-c-never-existed"); err != nil {
		t.Fatalf("DeleteKeyset of an unknown keyset: %v; want nil", err)
	}
	// A deleted keyset can be put again.
	put(t, s, k)
	checkKeyset(t, keysets(t, s), k)
}

// testTimesRoundTrip: Created comes back to the millisecond, and a zero one
// stays zero.
func testTimesRoundTrip(t *testing.T, s access.Store) {
	k := newKeyset(t, false)
	k.Created = time.Date(2031, 5, 6, 7, 8, 9, 123_000_000, time.UTC)
	zero := newKeyset(t, false)
	zero.Created = time.Time{}
	put(t, s, k)
	put(t, s, zero)
	ks := keysets(t, s)
	checkKeyset(t, ks, k)
	checkKeyset(t, ks, zero)
	if got := find(ks, zero.SubscribeKey)[0].Created; !got.IsZero() {
		t.Fatalf("zero Created came back as %v", got)
	}
}

func testVersion(t *testing.T, s access.Store) {
	ctx := t.Context()
	seen := map[string]string{}
	step := func(what string) {
		t.Helper()
		v := version(t, s)
		if prev, ok := seen[v]; ok {
			t.Fatalf("Version after %s is %q, as after %s; want a new value", what, v, prev)
		}
		seen[v] = what
	}
	step("start")
	v := version(t, s)
	keysets(t, s)
	if _, err := s.Revocations(ctx); err != nil {
		t.Fatal(err)
	}
	if got := version(t, s); got != v {
		t.Fatalf("Version after reads is %q, want %q unchanged", got, v)
	}
	k := newKeyset(t, true)
	put(t, s, k)
	step("PutKeyset")
	put(t, s, k) // the same again still counts as a change
	step("PutKeyset again")
	if err := s.Revoke(ctx, access.Revocation{SubscribeKey: k.SubscribeKey, TokenID: "tok-version", Until: now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	step("Revoke")
	if err := s.DeleteKeyset(ctx, k.SubscribeKey); err != nil {
		t.Fatal(err)
	}
	step("DeleteKeyset")
}

func revocations(t *testing.T, s access.Store) []access.Revocation {
	t.Helper()
	rs, err := s.Revocations(t.Context())
	if err != nil {
		t.Fatalf("Revocations: %v", err)
	}
	return rs
}

func findRevocations(rs []access.Revocation, sub, token string) []access.Revocation {
	var out []access.Revocation
	for _, r := range rs {
		if r.SubscribeKey == sub && r.TokenID == token {
			out = append(out, r)
		}
	}
	return out
}

func checkRevocation(t *testing.T, rs []access.Revocation, want access.Revocation) {
	t.Helper()
	got := findRevocations(rs, want.SubscribeKey, want.TokenID)
	if len(got) != 1 || !got[0].Until.Equal(want.Until) {
		t.Fatalf("revocations of %s/%s: %+v; want exactly %+v", want.SubscribeKey, want.TokenID, got, want)
	}
}

func testRevocations(t *testing.T, s access.Store) {
	ctx := t.Context()
	a, b := newKeyset(t, true), newKeyset(t, true)
	until := now().Add(time.Hour)
	ra := access.Revocation{SubscribeKey: a.SubscribeKey, TokenID: "tok-1", Until: until}
	rb := access.Revocation{SubscribeKey: b.SubscribeKey, TokenID: "tok-1", Until: until.Add(time.Minute)}
	ra2 := access.Revocation{SubscribeKey: a.SubscribeKey, TokenID: "qEF2AkF0GmW-_z9DdHRsGQWgQ3Jlc6VEY2hhbqFjY2gtMRgD", Until: until.Add(2 * time.Minute)}
	for _, r := range []access.Revocation{ra, rb, ra2, ra} { // ra twice: one entry
		if err := s.Revoke(ctx, r); err != nil {
			t.Fatalf("Revoke(%+v): %v", r, err)
		}
	}
	rs := revocations(t, s)
	for _, r := range []access.Revocation{ra, rb, ra2} {
		checkRevocation(t, rs, r)
	}
	// Revocations do not need the keyset to exist, and outlive its deletion.
	put(t, s, a)
	if err := s.DeleteKeyset(ctx, a.SubscribeKey); err != nil {
		t.Fatal(err)
	}
	checkRevocation(t, revocations(t, s), ra)
}

// testLongExpiredRevocation: revoking a token whose Until has passed is not
// an error (a store may keep it or not).
func testLongExpiredRevocation(t *testing.T, s access.Store) {
	k := newKeyset(t, true)
	r := access.Revocation{SubscribeKey: k.SubscribeKey, TokenID: "old", Until: now().Add(-48 * time.Hour)}
	if err := s.Revoke(t.Context(), r); err != nil {
		t.Fatalf("Revoke of an expired token: %v; want nil", err)
	}
	if got := findRevocations(revocations(t, s), r.SubscribeKey, r.TokenID); len(got) > 1 {
		t.Fatalf("revocations of %s/%s: %+v; want at most one", r.SubscribeKey, r.TokenID, got)
	}
}

func testInvalidInput(t *testing.T, s access.Store) {
	ctx := t.Context()
	good := newKeyset(t, true)
	v := version(t, s)
	with := func(f func(k *access.Keyset)) access.Keyset {
		k := good
		f(&k)
		return k
	}
	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"empty subscribe key", func() error { return s.PutKeyset(ctx, with(func(k *access.Keyset) { k.SubscribeKey = "" })) }},
		{"empty publish key", func() error { return s.PutKeyset(ctx, with(func(k *access.Keyset) { k.PublishKey = "" })) }},
		{"empty secret key", func() error { return s.PutKeyset(ctx, with(func(k *access.Keyset) { k.SecretKey = "" })) }},
		{"slash in subscribe key", func() error { return s.PutKeyset(ctx, with(func(k *access.Keyset) { k.SubscribeKey = "sub/c" })) }},
		{"NUL in subscribe key", func() error { return s.PutKeyset(ctx, with(func(k *access.Keyset) { k.SubscribeKey = "sub\x00c" })) }},
		{"space in secret key", func() error { return s.PutKeyset(ctx, with(func(k *access.Keyset) { k.SecretKey = "sec c" })) }},
		{"long publish key", func() error {
			return s.PutKeyset(ctx, with(func(k *access.Keyset) { k.PublishKey = strings.Repeat("p", access.MaxKeyLen+1) }))
		}},
		{"delete empty subscribe key", func() error { return s.DeleteKeyset(ctx, "") }},
		{"revoke empty token", func() error {
			return s.Revoke(ctx, access.Revocation{SubscribeKey: good.SubscribeKey, Until: now().Add(time.Hour)})
		}},
		{"revoke no subscribe key", func() error {
			return s.Revoke(ctx, access.Revocation{TokenID: "t", Until: now().Add(time.Hour)})
		}},
		{"revoke zero until", func() error {
			return s.Revoke(ctx, access.Revocation{SubscribeKey: good.SubscribeKey, TokenID: "t"})
		}},
		{"revoke control character", func() error {
			return s.Revoke(ctx, access.Revocation{SubscribeKey: good.SubscribeKey, TokenID: "t\n", Until: now().Add(time.Hour)})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); !errors.Is(err, access.ErrInvalid) {
				t.Fatalf("got error %v, want one wrapping access.ErrInvalid", err)
			}
		})
	}
	if got := version(t, s); got != v {
		t.Fatalf("Version after refused input is %q, want %q unchanged", got, v)
	}
	checkAbsent(t, keysets(t, s), good.SubscribeKey)
	if rs := revocations(t, s); len(findRevocations(rs, good.SubscribeKey, "t")) != 0 {
		t.Fatalf("a refused revocation was stored: %+v", rs)
	}
}

func testCanceledContext(t *testing.T, s access.Store) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	k := newKeyset(t, true)
	if err := s.PutKeyset(ctx, k); err == nil {
		t.Fatal("PutKeyset with a cancelled context succeeded")
	}
	if err := s.Revoke(ctx, access.Revocation{SubscribeKey: k.SubscribeKey, TokenID: "t", Until: now().Add(time.Hour)}); err == nil {
		t.Fatal("Revoke with a cancelled context succeeded")
	}
	if err := s.DeleteKeyset(ctx, k.SubscribeKey); err == nil {
		t.Fatal("DeleteKeyset with a cancelled context succeeded")
	}
	if _, err := s.Keysets(ctx); err == nil {
		t.Fatal("Keysets with a cancelled context succeeded")
	}
	if _, err := s.Revocations(ctx); err == nil {
		t.Fatal("Revocations with a cancelled context succeeded")
	}
	if _, err := s.Version(ctx); err == nil {
		t.Fatal("Version with a cancelled context succeeded")
	}
	checkAbsent(t, keysets(t, s), k.SubscribeKey)
	if rs := revocations(t, s); len(findRevocations(rs, k.SubscribeKey, "t")) != 0 {
		t.Fatalf("a revocation under a cancelled context was stored: %+v", rs)
	}
}

func testConcurrentPuts(t *testing.T, s access.Store) {
	const n = 16
	want := make([]access.Keyset, n)
	for i := range want {
		want[i] = newKeyset(t, i%2 == 0)
	}
	v := version(t, s)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, k := range want {
		wg.Go(func() {
			if err := s.PutKeyset(t.Context(), k); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("PutKeyset(%s): %w", k.SubscribeKey, err))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	ks := keysets(t, s)
	for _, k := range want {
		checkKeyset(t, ks, k)
	}
	if got := version(t, s); got == v {
		t.Fatalf("Version after %d puts is %q, unchanged", n, got)
	}
}
