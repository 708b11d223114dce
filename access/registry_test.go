package access

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/groupcast/groupcast/internal/metrictest"
)

// fakeStore is a Store whose version and rows the test sets apart, as a
// datacenter that has received one before the other.
type fakeStore struct {
	mu          sync.Mutex
	version     int
	keysets     map[string]Keyset
	revocations []Revocation
	err         error
	loads       int    // calls of Keysets
	onLoad      func() // called by Keysets, outside the lock
}

func newFakeStore() *fakeStore { return &fakeStore{keysets: map[string]Keyset{}} }

// put stores k and bumps the version, as a Store does.
func (f *fakeStore) put(k Keyset) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.keysets[k.SubscribeKey] = k
	f.version++
}

func (f *fakeStore) revoke(r Revocation) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.revocations = append(f.revocations, r)
	f.version++
}

func (f *fakeStore) setErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

func (f *fakeStore) loadCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.loads
}

func (f *fakeStore) PutKeyset(context.Context, Keyset) error    { panic("not used") }
func (f *fakeStore) DeleteKeyset(context.Context, string) error { panic("not used") }
func (f *fakeStore) Revoke(context.Context, Revocation) error   { panic("not used") }
func (f *fakeStore) Revocations(context.Context) ([]Revocation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.revocations), f.err
}

func (f *fakeStore) Keysets(context.Context) ([]Keyset, error) {
	f.mu.Lock()
	f.loads++
	var out []Keyset
	for _, k := range f.keysets {
		out = append(out, k)
	}
	err, hook := f.err, f.onLoad
	f.mu.Unlock()
	if hook != nil {
		hook()
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (f *fakeStore) Version(context.Context) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return "", f.err
	}
	return strconv.Itoa(f.version), nil
}

// clock is a settable clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newRegistry(t *testing.T, s Store, cfg RegistryConfig) *Registry {
	t.Helper()
	r, err := NewRegistry(s, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func keyset(n int) Keyset {
	return Keyset{SubscribeKey: fmt.Sprintf("sub-%d", n), PublishKey: fmt.Sprintf("pub-%d", n), SecretKey: "sec-0", PAM: n%2 == 0}
}

func TestRegistryLookups(t *testing.T) {
	f := newFakeStore()
	for _, n := range []int{3, 1, 2} {
		f.put(keyset(n))
	}
	r := newRegistry(t, f, RegistryConfig{})
	if r.Ready() {
		t.Fatal("Ready before any load")
	}
	if _, ok := r.Keyset("sub-1"); ok {
		t.Fatal("Keyset found before any load")
	}
	if got := r.Keysets(); len(got) != 0 {
		t.Fatalf("Keysets before any load = %+v, want none", got)
	}
	if err := r.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	if !r.Ready() {
		t.Fatal("not Ready after Refresh")
	}
	for n := 1; n <= 3; n++ {
		want := keyset(n)
		if got, ok := r.Keyset(want.SubscribeKey); !ok || got != want {
			t.Fatalf("Keyset(%s) = %+v, %v; want %+v", want.SubscribeKey, got, ok, want)
		}
		if got, ok := r.ByPublishKey(want.PublishKey); !ok || got != want {
			t.Fatalf("ByPublishKey(%s) = %+v, %v; want %+v", want.PublishKey, got, ok, want)
		}
	}
	for _, miss := range []string{"sub-4", "pub-1", ""} {
		if got, ok := r.Keyset(miss); ok {
			t.Fatalf("Keyset(%q) = %+v, want none", miss, got)
		}
	}
	if got, ok := r.ByPublishKey("sub-1"); ok {
		t.Fatalf("ByPublishKey(a subscribe key) = %+v, want none", got)
	}
	ks := r.Keysets()
	if want := []Keyset{keyset(1), keyset(2), keyset(3)}; !slices.Equal(ks, want) {
		t.Fatalf("Keysets = %+v, want %+v", ks, want)
	}
	ks[0].SecretKey = "changed by the caller"
	if got, _ := r.Keyset("sub-1"); got.SecretKey != "sec-0" {
		t.Fatalf("changing Keysets' result changed the registry: %+v", got)
	}
}

// TestRegistrySharedPublishKey: a publish key two keysets share finds
// neither (which keyset would be a guess).
func TestRegistrySharedPublishKey(t *testing.T) {
	f := newFakeStore()
	a, b := keyset(1), keyset(2)
	b.PublishKey = a.PublishKey
	f.put(a)
	f.put(b)
	f.put(keyset(3))
	r := newRegistry(t, f, RegistryConfig{})
	if err := r.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got, ok := r.ByPublishKey(a.PublishKey); ok {
		t.Fatalf("ByPublishKey(shared key) = %+v; want none", got)
	}
	if _, ok := r.ByPublishKey("pub-3"); !ok {
		t.Fatal("ByPublishKey of an unshared key found nothing")
	}
	if _, ok := r.Keyset(b.SubscribeKey); !ok {
		t.Fatal("Keyset of a keyset with a shared publish key found nothing")
	}
}

// TestRegistryPollFollowsVersion drives the poll step with an injected
// clock: a poll reads only the version while it is unchanged, loads when it
// changes, and loads in full every Reload even when it did not, which is
// what catches rows that arrived after their version (another datacenter).
func TestRegistryPollFollowsVersion(t *testing.T) {
	f := newFakeStore()
	f.put(keyset(1))
	c := &clock{now: time.Unix(1_700_000_000, 0)}
	r := newRegistry(t, f, RegistryConfig{Reload: 5 * time.Second, Now: c.Now})
	ctx := t.Context()

	r.poll(ctx) // not loaded yet: loads
	if _, ok := r.Keyset("sub-1"); !ok || f.loadCount() != 1 {
		t.Fatalf("first poll: keyset found %v after %d loads; want found after 1", ok, f.loadCount())
	}
	c.advance(time.Second)
	r.poll(ctx)
	if n := f.loadCount(); n != 1 {
		t.Fatalf("a poll with the version unchanged loaded (%d loads, want 1)", n)
	}

	f.put(keyset(2))
	c.advance(time.Second)
	r.poll(ctx)
	if _, ok := r.Keyset("sub-2"); !ok {
		t.Fatal("a poll after the version changed did not load the new keyset")
	}

	// The version arrives before the row it announces: the poll loads
	// without it; the row then arrives with no version change.
	f.mu.Lock()
	f.version++
	f.mu.Unlock()
	c.advance(time.Second)
	r.poll(ctx)
	loads := f.loadCount()
	f.mu.Lock()
	f.keysets["sub-3"] = keyset(3)
	f.mu.Unlock()
	c.advance(time.Second)
	r.poll(ctx)
	if _, ok := r.Keyset("sub-3"); ok || f.loadCount() != loads {
		t.Fatalf("before Reload: found %v after %d loads; want not found, %d loads (the version did not change)", ok, f.loadCount(), loads)
	}
	c.advance(4 * time.Second) // 5s since the last load
	r.poll(ctx)
	if _, ok := r.Keyset("sub-3"); !ok {
		t.Fatal("the full reload after Reload did not find the late row")
	}
}

// TestRegistryReloadKeepsAnUnchangedSnapshot: a full reload that finds
// what the registry has keeps its snapshot (connections' memos stay
// valid); one that finds any difference, even without a version change,
// or a revocation aged out, publishes a new one.
func TestRegistryReloadKeepsAnUnchangedSnapshot(t *testing.T) {
	f := newFakeStore()
	f.put(keyset(1))
	c := &clock{now: time.Unix(1_700_000_000, 0)}
	f.revoke(Revocation{SubscribeKey: "sub-1", TokenID: "t", Until: c.Now().Add(time.Minute)})
	r := newRegistry(t, f, RegistryConfig{Reload: 5 * time.Second, Now: c.Now})
	ctx := t.Context()
	r.poll(ctx)
	first := r.snap.Load()

	reload := func(what string) *snapshot {
		t.Helper()
		loads := f.loadCount()
		c.advance(5 * time.Second)
		r.poll(ctx)
		if f.loadCount() != loads+1 {
			t.Fatalf("%s: the poll after Reload did not load", what)
		}
		return r.snap.Load()
	}
	if s := reload("nothing changed"); s != first {
		t.Fatal("a reload that found nothing new replaced the snapshot")
	}

	// A row changed without a version change (the late row of another
	// datacenter): a new snapshot with it.
	changed := keyset(1)
	changed.PAM = !changed.PAM
	f.mu.Lock()
	f.keysets["sub-1"] = changed
	f.mu.Unlock()
	second := reload("a changed row")
	if second == first {
		t.Fatal("a reload that found a changed keyset kept the old snapshot")
	}
	if k, _ := r.Keyset("sub-1"); k.PAM != changed.PAM {
		t.Fatalf("keyset PAM = %v after the reload, want %v", k.PAM, changed.PAM)
	}

	// The revocation ages out: a new snapshot without it.
	c.advance(time.Minute)
	if s := reload("a revocation aged out"); s == second || len(s.revoked) != 0 {
		t.Fatalf("after the revocation's Until: same snapshot %v, %d revocations; want a new one with none", s == second, len(s.revoked))
	}
}

// TestKeysetEqualComparesEveryField: changing any one field of a keyset
// makes it unequal, so a reload never keeps a snapshot that differs from
// the store in a field equal does not look at.
func TestKeysetEqualComparesEveryField(t *testing.T) {
	base := Keyset{SubscribeKey: "sub", PublishKey: "pub", SecretKey: "sec", PAM: true, Created: time.Unix(1_700_000_000, 0)}
	if !base.equal(base) {
		t.Fatal("a keyset is not equal to itself")
	}
	if !base.equal(Keyset{SubscribeKey: "sub", PublishKey: "pub", SecretKey: "sec", PAM: true, Created: base.Created.UTC()}) {
		t.Fatal("the same instant in another location is unequal")
	}
	typ := reflect.TypeFor[Keyset]()
	for i := range typ.NumField() {
		k := base
		f := reflect.ValueOf(&k).Elem().Field(i)
		switch f.Kind() {
		case reflect.String:
			f.SetString(f.String() + "x")
		case reflect.Bool:
			f.SetBool(!f.Bool())
		default:
			if f.Type() != reflect.TypeFor[time.Time]() {
				t.Fatalf("field %s of kind %s: teach this test (and Keyset.equal) about it", typ.Field(i).Name, f.Kind())
			}
			f.Set(reflect.ValueOf(base.Created.Add(time.Second)))
		}
		if base.equal(k) {
			t.Errorf("a keyset differing in %s is equal", typ.Field(i).Name)
		}
	}
}

// TestRegistryErrorsKeepLastState: a failing store leaves the last good
// snapshot in place; failures are counted; the next good poll catches up.
func TestRegistryErrorsKeepLastState(t *testing.T) {
	f := newFakeStore()
	f.put(keyset(1))
	reg := prometheus.NewRegistry()
	c := &clock{now: time.Unix(1_700_000_000, 0)}
	r := newRegistry(t, f, RegistryConfig{Now: c.Now, Registerer: reg})
	ctx := t.Context()

	outage := errors.New("store down")
	f.setErr(outage)
	if err := r.Refresh(ctx); !errors.Is(err, outage) {
		t.Fatalf("Refresh with the store down: %v, want %v", err, outage)
	}
	if r.Ready() {
		t.Fatal("Ready though no load succeeded")
	}
	f.setErr(nil)
	if err := r.Refresh(ctx); err != nil {
		t.Fatal(err)
	}

	f.put(keyset(2))
	f.setErr(outage)
	for range 3 {
		c.advance(time.Second)
		r.poll(ctx)
	}
	c.advance(10 * time.Second) // a full reload is due, and fails too
	r.poll(ctx)
	if err := r.Refresh(ctx); !errors.Is(err, outage) {
		t.Fatalf("Refresh with the store down: %v, want %v", err, outage)
	}
	if !r.Ready() {
		t.Fatal("not Ready after the store failed")
	}
	if got, ok := r.Keyset("sub-1"); !ok || got != keyset(1) {
		t.Fatalf("during the outage Keyset(sub-1) = %+v, %v; want the last loaded %+v", got, ok, keyset(1))
	}
	if got := metrictest.Value(t, reg, "groupcast_access_reloads_total", "result", "error"); got != 6 {
		t.Fatalf("reloads_total{result=error} = %v, want 6 (2 Refresh and 4 polls failed)", got)
	}
	if got := metrictest.Value(t, reg, "groupcast_access_keysets"); got != 1 {
		t.Fatalf("groupcast_access_keysets = %v during the outage, want 1 (the last good state)", got)
	}

	f.setErr(nil)
	c.advance(time.Second)
	r.poll(ctx)
	if _, ok := r.Keyset("sub-2"); !ok {
		t.Fatal("after the outage the next poll did not load the change made during it")
	}
	if got := metrictest.Value(t, reg, "groupcast_access_reloads_total", "result", "ok"); got != 2 {
		t.Fatalf("reloads_total{result=ok} = %v, want 2", got)
	}
	if got := metrictest.Value(t, reg, "groupcast_access_keysets"); got != 2 {
		t.Fatalf("groupcast_access_keysets = %v, want 2", got)
	}
}

// TestRegistryRevocations: a revoked token is refused until its Until; the
// first load after that forgets it.
func TestRegistryRevocations(t *testing.T) {
	f := newFakeStore()
	reg := prometheus.NewRegistry()
	c := &clock{now: time.Unix(1_700_000_000, 0)}
	r := newRegistry(t, f, RegistryConfig{Now: c.Now, Registerer: reg})
	ctx := t.Context()
	f.revoke(Revocation{SubscribeKey: "sub-1", TokenID: "short", Until: c.Now().Add(time.Minute)})
	f.revoke(Revocation{SubscribeKey: "sub-1", TokenID: "long", Until: c.Now().Add(time.Hour)})
	f.revoke(Revocation{SubscribeKey: "sub-1", TokenID: "past", Until: c.Now().Add(-time.Second)})
	if err := r.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		sub, token string
		want       bool
	}{
		{"sub-1", "short", true},
		{"sub-1", "long", true},
		{"sub-1", "past", false},    // already expired
		{"sub-2", "short", false},   // another keyset's token of the same id
		{"sub-1", "unknown", false}, // never revoked
	} {
		if got := r.Revoked(tc.sub, tc.token); got != tc.want {
			t.Errorf("Revoked(%s, %s) = %v, want %v", tc.sub, tc.token, got, tc.want)
		}
	}
	if got := metrictest.Value(t, reg, "groupcast_access_revocations"); got != 2 {
		t.Fatalf("groupcast_access_revocations = %v, want 2", got)
	}
	c.advance(2 * time.Minute)
	if err := r.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if r.Revoked("sub-1", "short") || !r.Revoked("sub-1", "long") {
		t.Fatalf("after 2m: Revoked(short) = %v, Revoked(long) = %v; want false, true", r.Revoked("sub-1", "short"), r.Revoked("sub-1", "long"))
	}
	if got := metrictest.Value(t, reg, "groupcast_access_revocations"); got != 1 {
		t.Fatalf("groupcast_access_revocations = %v, want 1", got)
	}
}

// TestRegistryRun runs the poll loop in a synctest bubble (its ticker on the
// bubble's fake clock): it loads at once, follows a change at its next
// poll, and returns when its context ends.
func TestRegistryRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeStore()
		f.put(keyset(1))
		loads := make(chan struct{}, 100)
		f.onLoad = func() { loads <- struct{}{} }
		r := newRegistry(t, f, RegistryConfig{Poll: time.Second, Reload: time.Hour})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- r.Run(ctx) }()
		waitLoad := func(what string) {
			t.Helper()
			select {
			case <-loads:
			case <-time.After(time.Minute): // on the bubble's clock
				t.Fatalf("%s: no load within a minute", what)
			}
		}
		waitLoad("start")
		synctest.Wait() // the load is stored
		if _, ok := r.Keyset("sub-1"); !ok {
			t.Fatal("Run's first load did not find sub-1")
		}
		f.put(keyset(2))
		start := time.Now()
		waitLoad("after a change")
		synctest.Wait()
		if _, ok := r.Keyset("sub-2"); !ok {
			t.Fatal("Run's load after a change did not find sub-2")
		}
		if waited := time.Since(start); waited > time.Second {
			t.Fatalf("the change was loaded after %v, more than one Poll", waited)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run returned %v, want nil when its context ends", err)
		}
	})
}

// TestRegistryConcurrentLookups: lookups racing with reloads (run with
// -race) see whole snapshots, and never an older one after a newer.
func TestRegistryConcurrentLookups(t *testing.T) {
	f := newFakeStore()
	const keysets = 8
	for n := range keysets {
		f.put(keyset(n))
	}
	r := newRegistry(t, f, RegistryConfig{})
	ctx := t.Context()
	if err := r.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	const generations = 200
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	stop := make(chan struct{}) // closed if the writer gives up
	for reader := range 4 {
		wg.Go(func() {
			last := 0
			for last < generations {
				select {
				case <-stop:
					return
				default:
				}
				n := reader % keysets
				k, ok := r.Keyset(fmt.Sprintf("sub-%d", n))
				byPub, okPub := r.ByPublishKey(fmt.Sprintf("pub-%d", n))
				all := r.Keysets()
				if !ok || !okPub || len(all) != keysets || k.SubscribeKey != byPub.SubscribeKey {
					errs <- fmt.Errorf("reader %d: Keyset %+v %v, ByPublishKey %+v %v, %d keysets", reader, k, ok, byPub, okPub, len(all))
					return
				}
				gen, err := strconv.Atoi(k.SecretKey[len("sec-"):])
				if err != nil || gen < last {
					errs <- fmt.Errorf("reader %d: secret %q after generation %d", reader, k.SecretKey, last)
					return
				}
				last = gen
				_ = r.Revoked(k.SubscribeKey, "t")
			}
		})
	}
	for gen := 1; gen <= generations; gen++ {
		for n := range keysets {
			k := keyset(n)
			k.SecretKey = fmt.Sprintf("sec-%d", gen)
			f.put(k)
		}
		f.revoke(Revocation{SubscribeKey: "sub-0", TokenID: strconv.Itoa(gen), Until: time.Now().Add(time.Hour)})
		if err := r.Refresh(ctx); err != nil {
			t.Error(err)
			close(stop)
			break
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestRegistryConfig(t *testing.T) {
	f := newFakeStore()
	for _, tc := range []struct {
		name string
		s    Store
		cfg  RegistryConfig
	}{
		{"no store", nil, RegistryConfig{}},
		{"negative poll", f, RegistryConfig{Poll: -time.Second}},
		{"negative reload", f, RegistryConfig{Reload: -time.Second}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewRegistry(tc.s, tc.cfg); err == nil {
				t.Fatal("NewRegistry accepted it")
			}
		})
	}
	reg := prometheus.NewRegistry()
	newRegistry(t, f, RegistryConfig{Registerer: reg})
	if _, err := NewRegistry(f, RegistryConfig{Registerer: reg}); err == nil {
		t.Fatal("a second registry registered the same metrics in one Registerer")
	}
}

func BenchmarkRegistryLookup(b *testing.B) {
	f := newFakeStore()
	for n := range 1000 {
		f.put(keyset(n))
	}
	r, err := NewRegistry(f, RegistryConfig{})
	if err != nil {
		b.Fatal(err)
	}
	if err := r.Refresh(b.Context()); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, ok := r.Keyset("sub-500"); !ok || r.Revoked("sub-500", "tok") {
				b.Fatal("wrong answer")
			}
		}
	})
}
