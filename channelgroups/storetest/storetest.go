// Package storetest is the conformance suite every channelgroups.Store must
// pass. It runs against the embedded bbolt store and against a real
// Cassandra, so that both give exactly the answers of Snapshot.Apply.
package storetest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/groupcast/groupcast/channelgroups"
)

// Options tunes the suite for a store.
type Options struct {
	// Interleavings is how many random edit histories the property test
	// applies; zero means 1000.
	Interleavings int
}

// Store is what the suite checks: a channel-group store with its outbox.
type Store interface {
	channelgroups.Store
	channelgroups.Outbox
	channelgroups.Replays
}

// Run runs the suite. newStore may return a store shared between tests: the
// suite makes its own unique accounts and shards.
func Run(t *testing.T, newStore func(t *testing.T) Store, opt Options) {
	if opt.Interleavings == 0 {
		opt.Interleavings = 1000
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, s Store)
	}{
		{"EmptyGroup", testEmptyGroup},
		{"AddRemove", testAddRemove},
		{"LaterWins", testLaterWins},
		{"RemoveWinsTie", testRemoveWinsTie},
		{"Clear", testClear},
		{"ClearTieAndShadow", testClearTieAndShadow},
		{"GroupsListing", testGroupsListing},
		{"Isolation", testIsolation},
		{"NamesRoundTrip", testNamesRoundTrip},
		{"CanceledContext", testCanceledContext},
		{"Outbox", testOutbox},
		{"Replays", testReplays},
		{"ReplaysOverwrite", testReplaysOverwrite},
		{"ManyReplays", testManyReplays},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newStore(t))
		})
	}
	t.Run("RandomInterleavings", func(t *testing.T) {
		testRandomInterleavings(t, newStore(t), opt.Interleavings)
	})
}

// account returns an account name unique to this test and run.
func account(t *testing.T) channelgroups.Account {
	t.Helper()
	return channelgroups.Account(fmt.Sprintf("t%d-%x", time.Now().UnixNano(), rand.Uint32()))
}

const base = channelgroups.Timetoken(17_000_000_000_000_000)

func tt(n int64) channelgroups.Timetoken { return base + channelgroups.Timetoken(n*10) }

func write(t *testing.T, s channelgroups.Store, e channelgroups.Edit) {
	t.Helper()
	if err := s.Write(t.Context(), e); err != nil {
		t.Fatalf("Write(%v %v at %v): %v", e.Op, e.Channels, e.At, err)
	}
}

func read(t *testing.T, s channelgroups.Store, a channelgroups.Account, g channelgroups.Group) channelgroups.Snapshot {
	t.Helper()
	snap, err := s.Read(t.Context(), a, g)
	if err != nil {
		t.Fatalf("Read(%s, %s): %v", a, g, err)
	}
	return snap
}

func chs(names ...string) []channelgroups.Channel {
	out := make([]channelgroups.Channel, len(names))
	for i, n := range names {
		out[i] = channelgroups.Channel(n)
	}
	return out
}

func add(a channelgroups.Account, g channelgroups.Group, at channelgroups.Timetoken, names ...string) channelgroups.Edit {
	return channelgroups.Edit{Account: a, Group: g, Op: channelgroups.OpAdd, Channels: chs(names...), At: at}
}

func remove(a channelgroups.Account, g channelgroups.Group, at channelgroups.Timetoken, names ...string) channelgroups.Edit {
	return channelgroups.Edit{Account: a, Group: g, Op: channelgroups.OpRemove, Channels: chs(names...), At: at}
}

func del(a channelgroups.Account, g channelgroups.Group, at channelgroups.Timetoken) channelgroups.Edit {
	return channelgroups.Edit{Account: a, Group: g, Op: channelgroups.OpClear, At: at}
}

func model(edits ...channelgroups.Edit) channelgroups.Snapshot {
	var m channelgroups.Snapshot
	for _, e := range edits {
		m.Apply(e)
	}
	return m
}

func equal(a, b channelgroups.Snapshot) bool {
	return a.Version == b.Version && a.Cleared == b.Cleared &&
		len(a.Entries) == len(b.Entries) && (len(a.Entries) == 0 || reflect.DeepEqual(a.Entries, b.Entries))
}

func check(t *testing.T, s channelgroups.Store, a channelgroups.Account, g channelgroups.Group, want channelgroups.Snapshot) {
	t.Helper()
	if got := read(t, s, a, g); !equal(got, want) {
		t.Fatalf("Read(%s) = %+v, want %+v", g, got, want)
	}
}

func testEmptyGroup(t *testing.T, s Store) {
	got := read(t, s, account(t), "nothing")
	if !equal(got, channelgroups.Snapshot{}) || got.Exists() {
		t.Fatalf("Read of a never-written group = %+v, want the zero snapshot", got)
	}
}

func testAddRemove(t *testing.T, s Store) {
	a := account(t)
	e1, e2 := add(a, "g", tt(1), "b", "a", "c"), remove(a, "g", tt(2), "b", "zz")
	write(t, s, e1)
	check(t, s, a, "g", model(e1))
	write(t, s, e2)
	want := model(e1, e2)
	check(t, s, a, "g", want)
	got := read(t, s, a, "g")
	if ch := got.Channels(); !slices.Equal(ch, chs("a", "c")) {
		t.Fatalf("Channels() = %v, want [a c]", ch)
	}
	if got.Version != tt(2) || !got.Exists() {
		t.Fatalf("Version = %v, Exists = %v; want %v, true", got.Version, got.Exists(), tt(2))
	}
}

func testLaterWins(t *testing.T, s Store) {
	a := account(t)
	// Written out of order: the remove at 5 arrives before the add at 3.
	e1, e2 := remove(a, "g", tt(5), "x"), add(a, "g", tt(3), "x", "y")
	write(t, s, e1)
	write(t, s, e2)
	got := read(t, s, a, "g")
	if e, _ := got.Lookup("x"); e.State != channelgroups.Removed || e.At != tt(5) {
		t.Fatalf("x = %+v, want removed at %v (the later write)", e, tt(5))
	}
	check(t, s, a, "g", model(e1, e2))
}

func testRemoveWinsTie(t *testing.T, s Store) {
	a := account(t)
	for i, order := range [][]channelgroups.Edit{
		{add(a, "g1", tt(7), "c"), remove(a, "g1", tt(7), "c")},
		{remove(a, "g2", tt(7), "c"), add(a, "g2", tt(7), "c")},
	} {
		g := order[0].Group
		for _, e := range order {
			write(t, s, e)
		}
		got := read(t, s, a, g)
		if e, _ := got.Lookup("c"); e.State != channelgroups.Removed {
			t.Fatalf("order %d: c = %+v, want removed: a remove wins a timetoken tie", i, e)
		}
		check(t, s, a, g, model(order...))
	}
}

func testClear(t *testing.T, s Store) {
	a := account(t)
	edits := []channelgroups.Edit{
		add(a, "g", tt(1), "a", "b"),
		remove(a, "g", tt(2), "b"),
		add(a, "g", tt(9), "late"), // after the delete: survives it
		del(a, "g", tt(5)),
	}
	for _, e := range edits {
		write(t, s, e)
	}
	got := read(t, s, a, "g")
	if ch := got.Channels(); !slices.Equal(ch, chs("late")) || got.Cleared != tt(5) || got.Version != tt(9) {
		t.Fatalf("after delete = %+v, want only [late], cleared %v, version %v", got, tt(5), tt(9))
	}
	check(t, s, a, "g", model(edits...))
	// An older delete changes nothing.
	write(t, s, del(a, "g", tt(4)))
	check(t, s, a, "g", model(append(edits, del(a, "g", tt(4)))...))
}

func testClearTieAndShadow(t *testing.T, s Store) {
	a := account(t)
	edits := []channelgroups.Edit{
		del(a, "g", tt(10)),
		add(a, "g", tt(10), "tie"),    // same timetoken as the delete: the delete wins
		add(a, "g", tt(8), "old"),     // before the delete, arriving after it: shadowed
		remove(a, "g", tt(11), "new"), // after it: kept
	}
	for _, e := range edits {
		write(t, s, e)
	}
	got := read(t, s, a, "g")
	if len(got.Entries) != 1 || got.Entries[0].Channel != "new" {
		t.Fatalf("entries = %+v, want only the remove of new", got.Entries)
	}
	check(t, s, a, "g", model(edits...))
}

func testGroupsListing(t *testing.T, s Store) {
	a := account(t)
	write(t, s, add(a, "beta", tt(1), "x"))
	write(t, s, add(a, "alpha", tt(2), "x"))
	write(t, s, add(a, "gone", tt(3), "x"))
	write(t, s, del(a, "gone", tt(4)))
	write(t, s, del(a, "back", tt(5)))
	write(t, s, add(a, "back", tt(6), "x"))
	got, err := s.Groups(t.Context(), a)
	if err != nil {
		t.Fatal(err)
	}
	if want := []channelgroups.Group{"alpha", "back", "beta"}; !slices.Equal(got, want) {
		t.Fatalf("Groups = %v, want %v", got, want)
	}
	none, err := s.Groups(t.Context(), account(t))
	if err != nil || len(none) != 0 {
		t.Fatalf("Groups of a new account = %v, %v; want none", none, err)
	}
}

func testIsolation(t *testing.T, s Store) {
	a, b := account(t), account(t)
	write(t, s, add(a, "g", tt(1), "a-only"))
	write(t, s, add(b, "g", tt(1), "b-only"))
	write(t, s, add(a, "g2", tt(1), "other-group"))
	write(t, s, del(a, "g2", tt(2)))
	check(t, s, a, "g", model(add(a, "g", tt(1), "a-only")))
	check(t, s, b, "g", model(add(b, "g", tt(1), "b-only")))
}

func testNamesRoundTrip(t *testing.T, s Store) {
	a := account(t)
	long := ""
	for range channelgroups.MaxNameRunes {
		long += "é"
	}
	names := []string{"ünïcødé-チャンネル", "with.dots_and-dashes", "emoji-🙂", long, "UPPER", "lower"}
	for _, n := range names {
		if _, err := channelgroups.ParseChannel(n); err != nil {
			t.Fatalf("test name %q is invalid: %v", n, err)
		}
	}
	g := channelgroups.Group(long)
	e := add(a, g, tt(1), names...)
	write(t, s, e)
	check(t, s, a, g, model(e))
	gs, err := s.Groups(t.Context(), a)
	if err != nil || !slices.Equal(gs, []channelgroups.Group{g}) {
		t.Fatalf("Groups = %v, %v; want [%s]", gs, err, g)
	}
}

func testCanceledContext(t *testing.T, s Store) {
	a := account(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.Write(ctx, add(a, "g", tt(1), "x")); err == nil {
		t.Fatal("Write with a cancelled context succeeded")
	}
	check(t, s, a, "g", channelgroups.Snapshot{})
}

// testRandomInterleavings is the property test: random histories of adds,
// removes and deletes from several concurrent writers, with timetokens drawn
// from a small range so that ties are common, must leave the store holding
// exactly what the Go model computes.
func testRandomInterleavings(t *testing.T, s channelgroups.Store, n int) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d, %d interleavings", seed, n)
	a := account(t)
	const writers = 4
	var (
		mu       sync.Mutex
		failures []string
		ties     int
	)
	work := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Go(func() {
			for i := range work {
				msg, tied, err := interleaving(t.Context(), s, a, seed, i, writers)
				mu.Lock()
				ties += tied
				if err != nil {
					failures = append(failures, err.Error())
				} else if msg != "" {
					failures = append(failures, msg)
				}
				mu.Unlock()
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	t.Logf("%d interleavings, %d with timetoken ties", n, ties)
	if len(failures) > 0 {
		t.Fatalf("%d of %d interleavings differ from the model (seed %d), first: %s", len(failures), n, seed, failures[0])
	}
	if ties == 0 {
		t.Fatal("no interleaving had a timetoken tie: the property test did not exercise the tie rule")
	}
}

func interleaving(ctx context.Context, s channelgroups.Store, a channelgroups.Account, seed uint64, i, writers int) (string, int, error) {
	r := rand.New(rand.NewPCG(seed, uint64(i)))
	g := channelgroups.Group(fmt.Sprintf("g%d", i))
	pool := chs("a", "b", "c", "d")
	var all []channelgroups.Edit
	perWriter := make([][]channelgroups.Edit, writers)
	seen := map[channelgroups.Timetoken]int{}
	for w := range writers {
		for range 1 + r.IntN(3) {
			e := channelgroups.Edit{Account: a, Group: g, At: tt(int64(1 + r.IntN(6)))}
			switch x := r.IntN(10); {
			case x < 5:
				e.Op = channelgroups.OpAdd
			case x < 9:
				e.Op = channelgroups.OpRemove
			default:
				e.Op = channelgroups.OpClear
			}
			if e.Op != channelgroups.OpClear {
				for _, c := range pool {
					if r.IntN(2) == 0 {
						e.Channels = append(e.Channels, c)
					}
				}
				if len(e.Channels) == 0 {
					e.Channels = pool[:1]
				}
			}
			seen[e.At]++
			perWriter[w] = append(perWriter[w], e)
			all = append(all, e)
		}
	}
	tied := 0
	for _, c := range seen {
		if c > 1 {
			tied = 1
		}
	}
	// The writers run concurrently, each in its own order.
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for w := range writers {
		wg.Go(func() {
			for _, e := range perWriter[w] {
				if err := s.Write(ctx, e); err != nil {
					errs[w] = err
					return
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return "", tied, err
		}
	}
	got, err := s.Read(ctx, a, g)
	if err != nil {
		return "", tied, err
	}
	// The model is order-independent; apply in a shuffled order to show it.
	r.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	if want := model(all...); !equal(got, want) {
		return fmt.Sprintf("interleaving %d: store %+v, model %+v, edits %+v", i, got, want, all), tied, nil
	}
	return "", tied, nil
}

func testOutbox(t *testing.T, s Store) {
	a := account(t)
	shard := 1000 + rand.IntN(1<<16) // private to this run
	edits := []channelgroups.Edit{
		{Account: a, Group: "g", Shard: shard, Op: channelgroups.OpAdd, Channels: chs("x", "y"), At: tt(3)},
		{Account: a, Group: "g", Shard: shard, Op: channelgroups.OpClear, At: tt(5)},
		{Account: a, Group: "h", Shard: shard, Op: channelgroups.OpRemove, Channels: chs("z"), At: tt(1)},
		{Account: a, Group: "g", Shard: shard + 1, Op: channelgroups.OpAdd, Channels: chs("other-shard"), At: tt(2)},
	}
	for _, e := range edits {
		write(t, s, e)
	}
	got, err := s.Pending(t.Context(), shard, 100)
	if err != nil {
		t.Fatal(err)
	}
	want := []channelgroups.Edit{edits[2], edits[0], edits[1]} // oldest first
	if !sameEdits(got, want) {
		t.Fatalf("Pending = %+v, want %+v", got, want)
	}
	if got, _ := s.Pending(t.Context(), shard, 2); len(got) != 2 {
		t.Fatalf("Pending(limit 2) returned %d", len(got))
	}
	if err := s.Announced(t.Context(), edits[0]); err != nil {
		t.Fatal(err)
	}
	got, err = s.Pending(t.Context(), shard, 100)
	if err != nil {
		t.Fatal(err)
	}
	if !sameEdits(got, []channelgroups.Edit{edits[2], edits[1]}) {
		t.Fatalf("after Announced: %+v", got)
	}
	// Announcing is idempotent.
	if err := s.Announced(t.Context(), edits[0]); err != nil {
		t.Fatal(err)
	}
}

func sameEdits(a, b []channelgroups.Edit) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.Account != y.Account || x.Group != y.Group || x.Shard != y.Shard || x.Op != y.Op || x.At != y.At || !slices.Equal(x.Channels, y.Channels) {
			return false
		}
	}
	return true
}

func testReplays(t *testing.T, s Store) {
	a := account(t)
	if _, _, found, err := s.Recall(t.Context(), a, "k1"); err != nil || found {
		t.Fatalf("Recall of an unknown key: found=%v err=%v", found, err)
	}
	if err := s.Remember(t.Context(), a, "k1", "GET /x", []byte(`{"status":200}`), time.Minute); err != nil {
		t.Fatal(err)
	}
	fp, answer, found, err := s.Recall(t.Context(), a, "k1")
	if err != nil || !found || fp != "GET /x" || string(answer) != `{"status":200}` {
		t.Fatalf("Recall = %q %q %v %v", fp, answer, found, err)
	}
	if _, _, found, _ := s.Recall(t.Context(), account(t), "k1"); found {
		t.Fatal("another account recalled the key")
	}
}

// testReplaysOverwrite: remembering a key again replaces its answer.
func testReplaysOverwrite(t *testing.T, s Store) {
	a := account(t)
	for _, answer := range []string{"first", "second"} {
		if err := s.Remember(t.Context(), a, "k", "fp-"+answer, []byte(answer), time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	fp, answer, found, err := s.Recall(t.Context(), a, "k")
	if err != nil || !found || fp != "fp-second" || string(answer) != "second" {
		t.Fatalf("Recall = %q %q %v %v, want the second answer", fp, answer, found, err)
	}
}

// testManyReplays: every one of many keys, in two accounts, recalls its own
// answer; keys that share a prefix stay apart.
func testManyReplays(t *testing.T, s Store) {
	accts := []channelgroups.Account{account(t), account(t)}
	const n = 50
	for _, a := range accts {
		for i := range n {
			key := fmt.Sprint("key-", i)
			if err := s.Remember(t.Context(), a, key, "fp", []byte(string(a)+key), time.Minute); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, a := range accts {
		for i := range n {
			key := fmt.Sprint("key-", i)
			_, answer, found, err := s.Recall(t.Context(), a, key)
			if err != nil || !found || string(answer) != string(a)+key {
				t.Fatalf("Recall(%s, %s) = %q %v %v, want %q", a, key, answer, found, err, string(a)+key)
			}
		}
		if _, _, found, err := s.Recall(t.Context(), a, "key-"); err != nil || found {
			t.Fatalf("Recall of a prefix of stored keys: found=%v err=%v", found, err)
		}
	}
}
