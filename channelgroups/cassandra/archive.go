package cassandra

import (
	"context"
	"slices"
	"time"

	"github.com/gocql/gocql"

	"github.com/groupcast/groupcast/archive"
	"github.com/groupcast/groupcast/channelgroups"
)

// The store is also an archive.Store (Message Persistence), in five tables
// of the same keyspace, read and written at LOCAL_QUORUM:
//
//	archive_messages ((account, channel, bucket), tt) → payload, publisher, meta,
//	    custom_type, mtype, expires; bucket is the UTC day of tt (bucketWidth),
//	    so a channel's partition grows by one day's messages at most
//	archive_buckets ((account, channel), bucket): the days that hold messages,
//	    so a read pages across buckets without visiting empty days
//	archive_actions ((account, channel), action_tt, message_tt) → type, value,
//	    publisher, expires: get-message-actions, by action time
//	archive_message_actions ((account, channel), message_tt, action_tt) → the
//	    same: history-with-actions, by message time
//	archive_checkpoints ((region, shard)) → ms, seq: the archiver's position in
//	    this region's shard log (Config.Region), as the outbox is per region
//
// Rows carry USING TTL until the message's Expires (none for the zero time)
// and USING TIMESTAMP the message's (or action's) timetoken in µs. A Delete
// writes range tombstones stamped one µs after the newest timetoken it
// covers (which is at most the deleting node's clock): so a replayed Append
// of a deleted message, whose write is stamped with its own older
// timetoken, stays shadowed, and a message published later is not. The
// same holds for RemoveAction. Bucket rows have no TTL and are never
// deleted: one row per channel and day, and a read that meets an expired
// or deleted day reads an empty partition.
//
// Action partitions are per channel, not per day: actions are far fewer
// than messages.

// bucketWidth is one UTC day in timetoken units: a history page (at most
// 100 messages) is usually in one or two partitions, and a day of a busy
// channel (a message a second: 86,400 rows) stays a modest partition.
const bucketWidth = channelgroups.Timetoken(24 * time.Hour / 100)

// appendBatch is how many messages go in one unlogged single-partition batch.
const appendBatch = 50

func bucketOf(tt channelgroups.Timetoken) int { return int(tt / bucketWidth) }

var _ archive.Store = (*Store)(nil)

func archiveTables(ks string) []string {
	return []string{
		`CREATE TABLE IF NOT EXISTS ` + ks + `.archive_messages (account text, channel text, bucket int, tt bigint,
			payload blob, publisher text, meta blob, custom_type text, mtype tinyint, expires bigint,
			PRIMARY KEY ((account, channel, bucket), tt))`,
		`CREATE TABLE IF NOT EXISTS ` + ks + `.archive_buckets (account text, channel text, bucket int,
			PRIMARY KEY ((account, channel), bucket))`,
		`CREATE TABLE IF NOT EXISTS ` + ks + `.archive_actions (account text, channel text, action_tt bigint, message_tt bigint,
			type text, value text, publisher text, expires bigint,
			PRIMARY KEY ((account, channel), action_tt, message_tt))`,
		`CREATE TABLE IF NOT EXISTS ` + ks + `.archive_message_actions (account text, channel text, message_tt bigint, action_tt bigint,
			type text, value text, publisher text, expires bigint,
			PRIMARY KEY ((account, channel), message_tt, action_tt))`,
		`CREATE TABLE IF NOT EXISTS ` + ks + `.archive_checkpoints (region int, shard int, ms bigint, seq bigint,
			PRIMARY KEY ((region, shard)))`,
	}
}

// ttlFor returns the TTL in seconds for something expiring at expires (0:
// none), and false if it has already expired.
func ttlFor(expires, now time.Time) (int, bool) {
	if expires.IsZero() {
		return 0, true
	}
	d := expires.Sub(now)
	if d <= 0 {
		return 0, false
	}
	secs := int((min(d, maxTTL) + time.Second - 1) / time.Second)
	return secs, true
}

func expiresMicros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

func expiresTime(us int64) time.Time {
	if us == 0 {
		return time.Time{}
	}
	return time.UnixMicro(us)
}

// Append implements archive.Store: per partition, the bucket row and then
// unlogged single-partition batches of the messages.
func (s *Store) Append(ctx context.Context, msgs []archive.Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, m := range msgs {
		if err := m.Validate(); err != nil {
			return err
		}
	}
	type part struct {
		a channelgroups.Account
		c channelgroups.Channel
		b int
	}
	now := time.Now()
	parts := map[part][]archive.Message{}
	var order []part
	for _, m := range msgs {
		if _, ok := ttlFor(m.Expires, now); !ok {
			continue
		}
		p := part{m.Account, m.Channel, bucketOf(m.Timetoken)}
		if _, seen := parts[p]; !seen {
			order = append(order, p)
		}
		parts[p] = append(parts[p], m)
	}
	ks := s.cfg.Keyspace
	qBucket := `INSERT INTO ` + ks + `.archive_buckets (account, channel, bucket) VALUES (?, ?, ?)`
	qMsg := `INSERT INTO ` + ks + `.archive_messages (account, channel, bucket, tt, payload, publisher, meta, custom_type, mtype, expires)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ? AND TTL ?`
	for _, p := range order {
		if err := s.s.Query(qBucket, string(p.a), string(p.c), p.b).WithContext(ctx).Exec(); err != nil {
			return wrap("archive bucket", err)
		}
		for chunk := range slices.Chunk(parts[p], appendBatch) {
			b := s.s.NewBatch(gocql.UnloggedBatch).WithContext(ctx)
			for _, m := range chunk {
				ttl, _ := ttlFor(m.Expires, now)
				var meta []byte
				if m.Meta != nil {
					meta = m.Meta
				}
				b.Query(qMsg, string(p.a), string(p.c), p.b, int64(m.Timetoken), []byte(m.Payload), m.Publisher, meta,
					m.CustomType, int8(m.Type), expiresMicros(m.Expires), m.Timetoken.Micros(), ttl)
			}
			if err := s.s.ExecuteBatch(b); err != nil {
				return wrap("archive append", err)
			}
		}
	}
	return nil
}

// buckets lists the channel's buckets from lo's to hi's, ascending or not.
func (s *Store) buckets(ctx context.Context, a channelgroups.Account, c channelgroups.Channel, lo, hi channelgroups.Timetoken, up bool) ([]int, error) {
	q := `SELECT bucket FROM ` + s.cfg.Keyspace + `.archive_buckets WHERE account = ? AND channel = ? AND bucket >= ? AND bucket <= ?`
	if !up {
		q += ` ORDER BY bucket DESC`
	}
	iter := s.s.Query(q, string(a), string(c), bucketOf(lo), bucketOf(hi)).WithContext(ctx).Iter()
	var (
		out []int
		b   int
	)
	for iter.Scan(&b) {
		out = append(out, b)
	}
	if err := iter.Close(); err != nil {
		return nil, wrap("archive buckets", err)
	}
	return out, nil
}

// Messages implements archive.Store: bucket by bucket from the end the
// query reads from, until Max+1 messages are found.
func (s *Store) Messages(ctx context.Context, q archive.Query) ([]archive.Message, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	if err := q.Validate(); err != nil {
		return nil, false, err
	}
	lo, hi, ok := archive.Bounds(q.Start, q.End)
	if !ok {
		return nil, false, nil
	}
	buckets, err := s.buckets(ctx, q.Account, q.Channel, lo, hi, q.Reverse)
	if err != nil {
		return nil, false, err
	}
	cql := `SELECT tt, payload, publisher, meta, custom_type, mtype, expires FROM ` + s.cfg.Keyspace + `.archive_messages
		WHERE account = ? AND channel = ? AND bucket = ? AND tt >= ? AND tt <= ?`
	if !q.Reverse {
		cql += ` ORDER BY tt DESC`
	}
	cql += ` LIMIT ?`
	var out []archive.Message
	for _, b := range buckets {
		iter := s.s.Query(cql, string(q.Account), string(q.Channel), b, int64(lo), int64(hi), q.Max+1-len(out)).WithContext(ctx).Iter()
		var (
			tt, expires   int64
			payload, meta []byte
			pub, cmt      string
			mtype         int8
		)
		for iter.Scan(&tt, &payload, &pub, &meta, &cmt, &mtype, &expires) {
			out = append(out, archive.Message{
				Account: q.Account, Channel: q.Channel, Timetoken: channelgroups.Timetoken(tt),
				Payload: payload, Publisher: pub, Meta: meta, CustomType: cmt, Type: archive.MessageType(mtype),
				Expires: expiresTime(expires),
			})
			payload, meta = nil, nil
		}
		if err := iter.Close(); err != nil {
			return nil, false, wrap("archive messages", err)
		}
		if len(out) > q.Max {
			break
		}
	}
	more := len(out) > q.Max
	if more {
		out = out[:q.Max]
	}
	if !q.Reverse {
		slices.Reverse(out)
	}
	return out, more, nil
}

// Count implements archive.Store: a COUNT per bucket after after.
func (s *Store) Count(ctx context.Context, a channelgroups.Account, c channelgroups.Channel, after channelgroups.Timetoken) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if err := archive.CheckChannel(a, c); err != nil {
		return 0, err
	}
	if err := archive.CheckRange(after, 0); err != nil {
		return 0, err
	}
	if after == archive.MaxTimetoken {
		return 0, nil
	}
	buckets, err := s.buckets(ctx, a, c, after+1, archive.MaxTimetoken, true)
	if err != nil {
		return 0, err
	}
	q := `SELECT COUNT(*) FROM ` + s.cfg.Keyspace + `.archive_messages WHERE account = ? AND channel = ? AND bucket = ? AND tt > ?`
	var total int64
	for _, b := range buckets {
		var n int64
		if err := s.s.Query(q, string(a), string(c), b, int64(after)).WithContext(ctx).Scan(&n); err != nil {
			return 0, wrap("archive count", err)
		}
		total += n
	}
	return total, nil
}

// Delete implements archive.Store: range tombstones in every bucket of the
// range, and the actions of the range's messages.
func (s *Store) Delete(ctx context.Context, a channelgroups.Account, c channelgroups.Channel, start, end channelgroups.Timetoken) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := archive.CheckChannel(a, c); err != nil {
		return err
	}
	if err := archive.CheckRange(start, end); err != nil {
		return err
	}
	lo, hi, ok := archive.DeleteBounds(start, end, time.Now())
	if !ok {
		return nil
	}
	ts := hi.Micros() + 1 // after every write in the range
	buckets, err := s.buckets(ctx, a, c, lo, hi, true)
	if err != nil {
		return err
	}
	ks := s.cfg.Keyspace
	q := `DELETE FROM ` + ks + `.archive_messages USING TIMESTAMP ? WHERE account = ? AND channel = ? AND bucket = ? AND tt >= ? AND tt <= ?`
	for _, b := range buckets {
		if err := s.s.Query(q, ts, string(a), string(c), b, int64(lo), int64(hi)).WithContext(ctx).Exec(); err != nil {
			return wrap("archive delete", err)
		}
	}
	iter := s.s.Query(`SELECT message_tt, action_tt FROM `+ks+`.archive_message_actions WHERE account = ? AND channel = ? AND message_tt >= ? AND message_tt <= ?`,
		string(a), string(c), int64(lo), int64(hi)).WithContext(ctx).Iter()
	var (
		ids    [][2]int64
		m, act int64
	)
	for iter.Scan(&m, &act) {
		ids = append(ids, [2]int64{m, act})
	}
	if err := iter.Close(); err != nil {
		return wrap("archive delete actions", err)
	}
	for _, id := range ids {
		// Stamped after the action's own write, which may be later than hi.
		ats := max(ts, channelgroups.Timetoken(id[1]).Micros()+1)
		b := s.s.NewBatch(gocql.LoggedBatch).WithContext(ctx)
		b.Query(`DELETE FROM `+ks+`.archive_actions USING TIMESTAMP ? WHERE account = ? AND channel = ? AND action_tt = ? AND message_tt = ?`,
			ats, string(a), string(c), id[1], id[0])
		b.Query(`DELETE FROM `+ks+`.archive_message_actions USING TIMESTAMP ? WHERE account = ? AND channel = ? AND message_tt = ? AND action_tt = ?`,
			ats, string(a), string(c), id[0], id[1])
		if err := s.s.ExecuteBatch(b); err != nil {
			return wrap("archive delete actions", err)
		}
	}
	return nil
}

// AddAction implements archive.Store: both action tables in one logged
// batch, stamped with the action's timetoken.
func (s *Store) AddAction(ctx context.Context, act archive.Action) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := act.Validate(); err != nil {
		return err
	}
	ttl, ok := ttlFor(act.Expires, time.Now())
	if !ok {
		return nil
	}
	ks := s.cfg.Keyspace
	a, c, exp := string(act.Account), string(act.Channel), expiresMicros(act.Expires)
	ts := act.Timetoken.Micros()
	b := s.s.NewBatch(gocql.LoggedBatch).WithContext(ctx)
	b.Query(`INSERT INTO `+ks+`.archive_actions (account, channel, action_tt, message_tt, type, value, publisher, expires)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ? AND TTL ?`,
		a, c, int64(act.Timetoken), int64(act.Message), act.Type, act.Value, act.Publisher, exp, ts, ttl)
	b.Query(`INSERT INTO `+ks+`.archive_message_actions (account, channel, message_tt, action_tt, type, value, publisher, expires)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ? AND TTL ?`,
		a, c, int64(act.Message), int64(act.Timetoken), act.Type, act.Value, act.Publisher, exp, ts, ttl)
	return wrap("archive add action", s.s.ExecuteBatch(b))
}

// RemoveAction implements archive.Store, stamped after the action's own
// write so that a replayed AddAction stays removed.
func (s *Store) RemoveAction(ctx context.Context, a channelgroups.Account, c channelgroups.Channel, message, action channelgroups.Timetoken) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := archive.CheckChannel(a, c); err != nil {
		return err
	}
	if err := archive.CheckRange(message, action); err != nil {
		return err
	}
	ks := s.cfg.Keyspace
	ts := max(time.Now().UnixMicro(), action.Micros()+1)
	b := s.s.NewBatch(gocql.LoggedBatch).WithContext(ctx)
	b.Query(`DELETE FROM `+ks+`.archive_actions USING TIMESTAMP ? WHERE account = ? AND channel = ? AND action_tt = ? AND message_tt = ?`,
		ts, string(a), string(c), int64(action), int64(message))
	b.Query(`DELETE FROM `+ks+`.archive_message_actions USING TIMESTAMP ? WHERE account = ? AND channel = ? AND message_tt = ? AND action_tt = ?`,
		ts, string(a), string(c), int64(message), int64(action))
	return wrap("archive remove action", s.s.ExecuteBatch(b))
}

func scanActions(iter *gocql.Iter, a channelgroups.Account, c channelgroups.Channel, byMessage bool) ([]archive.Action, error) {
	var (
		out           []archive.Action
		k1, k2, exp   int64
		typ, val, pub string
	)
	for iter.Scan(&k1, &k2, &typ, &val, &pub, &exp) {
		act := archive.Action{Account: a, Channel: c, Timetoken: channelgroups.Timetoken(k1), Message: channelgroups.Timetoken(k2),
			Type: typ, Value: val, Publisher: pub, Expires: expiresTime(exp)}
		if byMessage {
			act.Timetoken, act.Message = act.Message, act.Timetoken
		}
		out = append(out, act)
	}
	return out, iter.Close()
}

// Actions implements archive.Store: one partition read, newest first.
func (s *Store) Actions(ctx context.Context, a channelgroups.Account, c channelgroups.Channel, start, end channelgroups.Timetoken, limit int) ([]archive.Action, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	if err := archive.CheckChannel(a, c); err != nil {
		return nil, false, err
	}
	if err := archive.CheckRange(start, end); err != nil {
		return nil, false, err
	}
	if err := archive.CheckLimit(limit); err != nil {
		return nil, false, err
	}
	lo, hi, ok := archive.Bounds(start, end)
	if !ok {
		return nil, false, nil
	}
	iter := s.s.Query(`SELECT action_tt, message_tt, type, value, publisher, expires FROM `+s.cfg.Keyspace+`.archive_actions
		WHERE account = ? AND channel = ? AND action_tt >= ? AND action_tt <= ? ORDER BY action_tt DESC LIMIT ?`,
		string(a), string(c), int64(lo), int64(hi), limit+1).WithContext(ctx).Iter()
	out, err := scanActions(iter, a, c, false)
	if err != nil {
		return nil, false, wrap("archive actions", err)
	}
	more := len(out) > limit
	if more {
		out = out[:limit]
	}
	slices.Reverse(out)
	return out, more, nil
}

// MessageActions implements archive.Store: one partition read.
func (s *Store) MessageActions(ctx context.Context, a channelgroups.Account, c channelgroups.Channel, first, last channelgroups.Timetoken) ([]archive.Action, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := archive.CheckChannel(a, c); err != nil {
		return nil, err
	}
	if err := archive.CheckRange(first, last); err != nil {
		return nil, err
	}
	iter := s.s.Query(`SELECT message_tt, action_tt, type, value, publisher, expires FROM `+s.cfg.Keyspace+`.archive_message_actions
		WHERE account = ? AND channel = ? AND message_tt >= ? AND message_tt <= ?`,
		string(a), string(c), int64(first), int64(last)).WithContext(ctx).Iter()
	out, err := scanActions(iter, a, c, true)
	if err != nil {
		return nil, wrap("archive message actions", err)
	}
	return out, nil
}

// Checkpoint implements archive.Store for this store's region.
func (s *Store) Checkpoint(ctx context.Context, shard int) (channelgroups.Position, error) {
	if err := ctx.Err(); err != nil {
		return channelgroups.Position{}, err
	}
	if err := archive.CheckShard(shard); err != nil {
		return channelgroups.Position{}, err
	}
	var ms, seq int64
	err := s.s.Query(`SELECT ms, seq FROM `+s.cfg.Keyspace+`.archive_checkpoints WHERE region = ? AND shard = ?`,
		s.cfg.Region, shard).WithContext(ctx).Scan(&ms, &seq)
	if err == gocql.ErrNotFound {
		return channelgroups.Position{}, nil
	}
	if err != nil {
		return channelgroups.Position{}, wrap("archive checkpoint", err)
	}
	return channelgroups.Position{Ms: uint64(ms), Seq: uint64(seq)}, nil
}

// SetCheckpoint implements archive.Store for this store's region.
func (s *Store) SetCheckpoint(ctx context.Context, shard int, pos channelgroups.Position) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := archive.CheckShard(shard); err != nil {
		return err
	}
	err := s.s.Query(`INSERT INTO `+s.cfg.Keyspace+`.archive_checkpoints (region, shard, ms, seq) VALUES (?, ?, ?, ?)`,
		s.cfg.Region, shard, int64(pos.Ms), int64(pos.Seq)).WithContext(ctx).Exec()
	return wrap("archive set checkpoint", err)
}
