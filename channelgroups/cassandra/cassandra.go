// Package cassandra is the production channel-group store on Apache
// Cassandra through gocql: LOCAL_QUORUM reads and writes, a DC-aware
// token-aware host policy, and every write stamped USING TIMESTAMP with the
// edit's timetoken so Cassandra's own last-write-wins resolution is the
// group's membership rule.
//
// Schema (created idempotently by New):
//
//	members ((account, grp), channel) → state tinyint
//	    add: INSERT state=1 USING TIMESTAMP tt
//	    remove: INSERT state=0 USING TIMESTAMP tt AND TTL RemoveTTL
//	    delete group: DELETE partition USING TIMESTAMP tt
//	groups (account, grp) → version bigint, cleared bigint
//	    every edit: version=tt USING TIMESTAMP tt (the cell keeps the highest)
//	    delete group: also cleared=tt
//	outbox_by_region ((region, shard), at, account, grp) → op tinyint, channels list<text>
//	    every edit, in the same logged batch, under the region that wrote it
//	    (Config.Region); only that region's nodes read it (Pending) and
//	    delete it once announced in their log (Announced). Two edits of a
//	    group at one timetoken share a row: the larger op and both lists'
//	    channels (an add and a remove read as a remove of all); the node
//	    announces a row as the members rows hold its channels
//	    (channelgroups.Snapshot.Restate)
//	replays ((account, key)) → fingerprint text, answer blob, with a TTL
//	    answers to edits sent with an Idempotency-Key
//
// The keyspace is replicated to every region's datacenter, but an edit is
// announced in the log of the region that acknowledged it, and only there:
// so each region has its own outbox partitions, and a region never announces
// (or clears) another region's pending edits, which reach it by log
// replication instead. (The table before regions, outbox ((shard), at,
// account, grp), was shared by all regions; it is no longer written or read.)
// TestOutboxPerRegion checks this against two real datacenters.
//
// Reads return (channel, state, WRITETIME(state)). On a timestamp tie
// Cassandra prefers an expiring cell over a plain one, so a remove beats an
// add, exactly channelgroups.Entry.Supersedes (TestTieRule proves it); a
// partition deletion beats a write at its own timestamp, as Snapshot.Apply.
//
// # The channel cap
//
// This store does not enforce channelgroups.MaxChannelsPerGroup itself:
// doing it atomically would take a lightweight transaction, and Cassandra
// refuses USING TIMESTAMP on conditional writes, while every write here must
// carry the edit's timetoken for the membership rule above; a Paxos counter
// beside the members would also cost four round trips per add and could not
// follow last-writer-wins removes. channelgroups.Service checks the cap
// against a LOCAL_QUORUM read just before the write, and takes adds to one
// group one at a time per process. So the cap is exact as long as adds to a
// group come through one node; adds racing on different nodes can pass it,
// within this bound (M = channelgroups.MaxChannelsPerEdit, the most channels
// one add names):
//
//   - in one region, a group holds at most cap + (N−1+F)·M channels, where N
//     is the number of nodes adding to it at the same time and F the number
//     of adds to it that failed with a timeout in that time (a logged batch
//     that timed out may still be applied later). Of the adds that passed,
//     take the one whose read came last: it found room for its own channels
//     after every add acknowledged before that read (LOCAL_QUORUM reads and
//     writes overlap), so it can have missed only the adds then between
//     their read and their write, at most one per other node (a node's next
//     add reads only after its previous one returned, so after this read),
//     and the timed-out ones, each at most M new channels;
//   - across R regions, whose reads see each other's writes only after
//     replication (LOCAL_QUORUM is per datacenter), adds racing within the
//     replication lag give at most R·(cap + (N−1+F)·M), N and F per region.
//
// Overflow is repairable: reads return every row, so Snapshot.Count is the
// true count; the Service refuses every add that would leave a group over
// the cap, so every add while it is over, while removes and deletes go
// through: removing channels brings the group back under, and it takes adds
// again. TestCapOneNode, TestCapTwoNodes
// and TestCapOverflowRepairable check this against a real server.
package cassandra

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/gocql/gocql"

	"github.com/groupcast/groupcast/channelgroups"
)

// Config selects and tunes the cluster.
type Config struct {
	// Hosts are contact points; required.
	Hosts []string
	// Port is the native transport port; zero means 9042.
	Port int
	// LocalDC is this region's datacenter; empty means "dc1".
	LocalDC string
	// Region is this region's number: the outbox holds this region's edits
	// only. Zero means 1.
	Region int
	// Keyspace is created if missing; empty means "groupcast".
	Keyspace string
	// Replication is the replication factor per datacenter used when the
	// keyspace is created; nil means {LocalDC: 1}.
	Replication map[string]int
	// RemoveTTL is how long remove rows live; zero means 24h. It must be
	// positive: the TTL is what makes a remove win a timestamp tie.
	RemoveTTL time.Duration
	// Timeout bounds each query; zero means 5s.
	Timeout time.Duration
	// ConnectTimeout bounds session creation, retried until it passes; zero means 60s.
	ConnectTimeout time.Duration
	// Logger receives driver and schema messages; nil discards them.
	Logger *slog.Logger
}

// Store is a channelgroups.Store on Cassandra.
type Store struct {
	s   *gocql.Session
	cfg Config

	qAdd, qRemove, qClear, qVersion, qClearGroup string
	qMembers, qGroup, qGroups                    string
	qOutbox, qPending, qAnnounced                string
	qRecall, qRemember                           string
}

var identifier = regexp.MustCompile(`^[a-z][a-z0-9_]{0,47}$`)

func (c *Config) fill() error {
	if len(c.Hosts) == 0 {
		return errors.New("cassandra: Hosts is required")
	}
	if c.Port == 0 {
		c.Port = 9042
	}
	if c.LocalDC == "" {
		c.LocalDC = "dc1"
	}
	if c.Region < 0 {
		return errors.New("cassandra: Region must be >= 0")
	}
	if c.Region == 0 {
		c.Region = 1
	}
	if c.Keyspace == "" {
		c.Keyspace = "groupcast"
	}
	if !identifier.MatchString(c.Keyspace) {
		return fmt.Errorf("cassandra: keyspace %q must match %s", c.Keyspace, identifier)
	}
	if c.Replication == nil {
		c.Replication = map[string]int{c.LocalDC: 1}
	}
	for dc, rf := range c.Replication {
		if rf < 1 || strings.ContainsAny(dc, "'\"") || dc == "" {
			return fmt.Errorf("cassandra: bad replication %q: %d", dc, rf)
		}
	}
	if c.RemoveTTL < 0 {
		return errors.New("cassandra: RemoveTTL must be > 0")
	}
	if c.RemoveTTL == 0 {
		c.RemoveTTL = 24 * time.Hour
	}
	if c.RemoveTTL < time.Second {
		return errors.New("cassandra: RemoveTTL must be at least 1s")
	}
	if c.Timeout == 0 {
		c.Timeout = 5 * time.Second
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = 60 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

func (c *Config) cluster() *gocql.ClusterConfig {
	cl := gocql.NewCluster(c.Hosts...)
	cl.Port = c.Port
	cl.ProtoVersion = 4
	cl.Consistency = gocql.LocalQuorum
	cl.SerialConsistency = gocql.LocalSerial
	cl.PoolConfig.HostSelectionPolicy = gocql.TokenAwareHostPolicy(gocql.DCAwareRoundRobinPolicy(c.LocalDC))
	cl.Timeout = c.Timeout
	cl.ConnectTimeout = c.Timeout
	cl.ReconnectInterval = time.Second
	cl.RetryPolicy = &gocql.ExponentialBackoffRetryPolicy{NumRetries: 2, Min: 50 * time.Millisecond, Max: time.Second}
	cl.MaxWaitSchemaAgreement = 30 * time.Second
	cl.Logger = log.New(io.Discard, "", 0)
	return cl
}

// New connects, retrying until cfg.ConnectTimeout, and creates the keyspace
// and tables if they are missing.
func New(ctx context.Context, cfg Config) (*Store, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer cancel()
	var (
		sess *gocql.Session
		err  error
	)
	for {
		// A fresh ClusterConfig each attempt: gocql panics when a token-aware
		// policy is reused after a failed CreateSession.
		if sess, err = cfg.cluster().CreateSession(); err == nil {
			break
		}
		cfg.Logger.Warn("cassandra: connect failed, retrying", "hosts", cfg.Hosts, "err", err)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("cassandra: connect to %v: %w", cfg.Hosts, errors.Join(err, ctx.Err()))
		case <-time.After(500 * time.Millisecond):
		}
	}
	s := &Store{s: sess, cfg: cfg}
	if err := s.createSchema(ctx); err != nil {
		sess.Close()
		return nil, err
	}
	ks := cfg.Keyspace
	s.qAdd = `INSERT INTO ` + ks + `.members (account, grp, channel, state) VALUES (?, ?, ?, 1) USING TIMESTAMP ?`
	s.qRemove = `INSERT INTO ` + ks + `.members (account, grp, channel, state) VALUES (?, ?, ?, 0) USING TIMESTAMP ? AND TTL ?`
	s.qClear = `DELETE FROM ` + ks + `.members USING TIMESTAMP ? WHERE account = ? AND grp = ?`
	s.qVersion = `UPDATE ` + ks + `.groups USING TIMESTAMP ? SET version = ? WHERE account = ? AND grp = ?`
	s.qClearGroup = `UPDATE ` + ks + `.groups USING TIMESTAMP ? SET version = ?, cleared = ? WHERE account = ? AND grp = ?`
	s.qMembers = `SELECT channel, state, WRITETIME(state) FROM ` + ks + `.members WHERE account = ? AND grp = ?`
	s.qGroup = `SELECT version, cleared FROM ` + ks + `.groups WHERE account = ? AND grp = ?`
	s.qGroups = `SELECT grp, version, cleared FROM ` + ks + `.groups WHERE account = ?`
	s.qOutbox = `INSERT INTO ` + ks + `.outbox_by_region (region, shard, at, account, grp, op, channels) VALUES (?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?`
	s.qPending = `SELECT at, account, grp, op, channels FROM ` + ks + `.outbox_by_region WHERE region = ? AND shard = ? LIMIT ?`
	s.qAnnounced = `DELETE FROM ` + ks + `.outbox_by_region WHERE region = ? AND shard = ? AND at = ? AND account = ? AND grp = ?`
	s.qRecall = `SELECT fingerprint, answer FROM ` + ks + `.replays WHERE account = ? AND key = ?`
	s.qRemember = `INSERT INTO ` + ks + `.replays (account, key, fingerprint, answer) VALUES (?, ?, ?, ?) USING TTL ?`
	return s, nil
}

func (s *Store) createSchema(ctx context.Context) error {
	var repl strings.Builder
	repl.WriteString(`{'class': 'NetworkTopologyStrategy'`)
	for _, dc := range slices.Sorted(maps.Keys(s.cfg.Replication)) {
		fmt.Fprintf(&repl, ", '%s': %d", dc, s.cfg.Replication[dc])
	}
	repl.WriteString("}")
	ks := s.cfg.Keyspace
	stmts := []string{
		`CREATE KEYSPACE IF NOT EXISTS ` + ks + ` WITH replication = ` + repl.String(),
		`CREATE TABLE IF NOT EXISTS ` + ks + `.members (account text, grp text, channel text, state tinyint,
			PRIMARY KEY ((account, grp), channel))`,
		`CREATE TABLE IF NOT EXISTS ` + ks + `.groups (account text, grp text, version bigint, cleared bigint,
			PRIMARY KEY (account, grp))`,
		// A re-announced edit is harmless (changes are idempotent), so a
		// resurrected outbox row costs nothing: short gc_grace keeps the
		// queue's tombstones few. The region is in the partition key: each
		// region drains only its own edits.
		`CREATE TABLE IF NOT EXISTS ` + ks + `.outbox_by_region (region int, shard int, at bigint, account text, grp text,
			op tinyint, channels list<text>,
			PRIMARY KEY ((region, shard), at, account, grp)) WITH gc_grace_seconds = 600`,
		`CREATE TABLE IF NOT EXISTS ` + ks + `.replays (account text, key text, fingerprint text, answer blob,
			PRIMARY KEY ((account, key)))`,
		// Keysets and revoked tokens (access.Store; see access.go). A
		// revocation only expires (TTL), never deleted, so its tombstones
		// cannot resurrect it: a short gc_grace keeps reads of the table
		// clear of them.
		`CREATE TABLE IF NOT EXISTS ` + ks + `.keysets (subscribe_key text PRIMARY KEY, publish_key text,
			secret_key text, pam boolean, created timestamp)`,
		`CREATE TABLE IF NOT EXISTS ` + ks + `.revocations (subscribe_key text, token_id text, until timestamp,
			PRIMARY KEY ((subscribe_key), token_id)) WITH gc_grace_seconds = 3600`,
		`CREATE TABLE IF NOT EXISTS ` + ks + `.access_version (id int PRIMARY KEY, changes counter)`,
	}
	stmts = append(stmts, archiveTables(ks)...) // Message Persistence (archive.go)
	for _, q := range stmts {
		if err := s.s.Query(q).WithContext(ctx).Exec(); err != nil {
			return fmt.Errorf("cassandra: schema: %w", err)
		}
	}
	if err := s.s.AwaitSchemaAgreement(ctx); err != nil {
		return fmt.Errorf("cassandra: schema agreement: %w", err)
	}
	return nil
}

// Close closes the session.
func (s *Store) Close() error {
	s.s.Close()
	return nil
}

// Ping runs a trivial query at LOCAL_ONE.
func (s *Store) Ping(ctx context.Context) error {
	var v string
	err := s.s.Query(`SELECT release_version FROM system.local`).WithContext(ctx).Consistency(gocql.LocalOne).Scan(&v)
	return wrap("ping", err)
}

// wrap translates driver errors: everything a retry may cure becomes
// channelgroups.ErrUnavailable; a cancelled context stays itself.
func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("cassandra: %s: %w", op, err)
	}
	return fmt.Errorf("cassandra: %s: %w: %w", op, channelgroups.ErrUnavailable, err)
}

// Write applies e in one logged batch at LOCAL_QUORUM, every statement at the
// edit's timetoken.
func (s *Store) Write(ctx context.Context, e channelgroups.Edit) error {
	ts := e.At.Micros()
	a, g := string(e.Account), string(e.Group)
	b := s.s.NewBatch(gocql.LoggedBatch).WithContext(ctx)
	switch e.Op {
	case channelgroups.OpAdd:
		for _, c := range e.Channels {
			b.Query(s.qAdd, a, g, string(c), ts)
		}
		b.Query(s.qVersion, ts, int64(e.At), a, g)
	case channelgroups.OpRemove:
		ttl := int(s.cfg.RemoveTTL / time.Second)
		for _, c := range e.Channels {
			b.Query(s.qRemove, a, g, string(c), ts, ttl)
		}
		b.Query(s.qVersion, ts, int64(e.At), a, g)
	case channelgroups.OpClear:
		b.Query(s.qClear, ts, a, g)
		b.Query(s.qClearGroup, ts, int64(e.At), int64(e.At), a, g)
	default:
		return fmt.Errorf("cassandra: unknown op %d", e.Op)
	}
	names := make([]string, len(e.Channels))
	for i, c := range e.Channels {
		names[i] = string(c)
	}
	b.Query(s.qOutbox, s.cfg.Region, e.Shard, int64(e.At), a, g, int8(e.Op), names, ts)
	b.SetConsistency(gocql.LocalQuorum)
	return wrap("write", s.s.ExecuteBatch(b))
}

// Read returns the group's snapshot at LOCAL_QUORUM.
func (s *Store) Read(ctx context.Context, acct channelgroups.Account, g channelgroups.Group) (channelgroups.Snapshot, error) {
	var snap channelgroups.Snapshot
	a, gs := string(acct), string(g)
	var version, cleared int64
	err := s.s.Query(s.qGroup, a, gs).WithContext(ctx).Scan(&version, &cleared)
	if err != nil && !errors.Is(err, gocql.ErrNotFound) {
		return snap, wrap("read group", err)
	}
	snap.Version, snap.Cleared = channelgroups.Timetoken(version), channelgroups.Timetoken(cleared)
	iter := s.s.Query(s.qMembers, a, gs).WithContext(ctx).Iter()
	var (
		ch    string
		state int8
		wt    int64
	)
	for iter.Scan(&ch, &state, &wt) {
		snap.Entries = append(snap.Entries, channelgroups.Entry{
			Channel: channelgroups.Channel(ch), State: channelgroups.State(state), At: channelgroups.TimetokenFromMicros(wt),
		})
	}
	if err := iter.Close(); err != nil {
		return channelgroups.Snapshot{}, wrap("read members", err)
	}
	return snap, nil
}

// Groups lists the account's existing groups in name order.
func (s *Store) Groups(ctx context.Context, acct channelgroups.Account) ([]channelgroups.Group, error) {
	iter := s.s.Query(s.qGroups, string(acct)).WithContext(ctx).Iter()
	var (
		out              []channelgroups.Group
		g                string
		version, cleared int64
	)
	for iter.Scan(&g, &version, &cleared) {
		if version > cleared {
			out = append(out, channelgroups.Group(g))
		}
	}
	if err := iter.Close(); err != nil {
		return nil, wrap("list groups", err)
	}
	return out, nil
}

// Pending implements channelgroups.Outbox: shard's edits written in this
// region (Config.Region) only.
func (s *Store) Pending(ctx context.Context, shard, limit int) ([]channelgroups.Edit, error) {
	iter := s.s.Query(s.qPending, s.cfg.Region, shard, limit).WithContext(ctx).Iter()
	var (
		out   []channelgroups.Edit
		at    int64
		a, g  string
		op    int8
		names []string
	)
	for iter.Scan(&at, &a, &g, &op, &names) {
		e := channelgroups.Edit{Account: channelgroups.Account(a), Group: channelgroups.Group(g), Shard: shard,
			Op: channelgroups.Op(op), At: channelgroups.Timetoken(at)}
		for _, n := range names {
			e.Channels = append(e.Channels, channelgroups.Channel(n))
		}
		out = append(out, e)
		names = nil
	}
	if err := iter.Close(); err != nil {
		return nil, wrap("outbox pending", err)
	}
	return out, nil
}

// Announced implements channelgroups.Outbox: it removes e's record from
// this region's outbox.
func (s *Store) Announced(ctx context.Context, e channelgroups.Edit) error {
	err := s.s.Query(s.qAnnounced, s.cfg.Region, e.Shard, int64(e.At), string(e.Account), string(e.Group)).WithContext(ctx).Exec()
	return wrap("outbox announced", err)
}

// Recall implements channelgroups.Replays.
func (s *Store) Recall(ctx context.Context, a channelgroups.Account, key string) (string, []byte, bool, error) {
	var (
		fp     string
		answer []byte
	)
	err := s.s.Query(s.qRecall, string(a), key).WithContext(ctx).Scan(&fp, &answer)
	if errors.Is(err, gocql.ErrNotFound) {
		return "", nil, false, nil
	}
	if err != nil {
		return "", nil, false, wrap("recall", err)
	}
	return fp, answer, true, nil
}

// Remember implements channelgroups.Replays.
func (s *Store) Remember(ctx context.Context, a channelgroups.Account, key, fingerprint string, answer []byte, ttl time.Duration) error {
	secs := max(1, int(ttl/time.Second))
	return wrap("remember", s.s.Query(s.qRemember, string(a), key, fingerprint, answer, secs).WithContext(ctx).Exec())
}
