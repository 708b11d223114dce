package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"slices"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/groupcast/groupcast/archive"
	"github.com/groupcast/groupcast/channelgroups"
)

// The store is also an archive.Store (Message Persistence for embedded
// mode), in buckets of the same file, every write fsynced. Keys start with
// account 0 channel 0, and timetokens are 8 bytes big-endian, so a channel's
// range is one cursor walk:
//
//	archive-messages    account 0 channel 0 tt           → message (encodeMessage)
//	archive-expiry      expires(8) message key           → empty: messages by expiry
//	archive-deleted     account 0 channel 0 lo(8) hi(8)  → empty: ranges Delete removed
//	archive-actions     account 0 channel 0 action(8) message(8) → action (encodeAction)
//	archive-msgactions  account 0 channel 0 message(8) action(8) → empty: actions by message
//	archive-actexpiry   expires(8) action key            → empty: actions by expiry
//	archive-checkpoints shard(4)                         → ms(8) seq(8)
//
// Expired messages and actions are filtered out on read and purged by
// Append and AddAction in bounded sweeps (the batch's size plus sweepBatch
// index entries), as remove rows are. The ranges Delete removed are kept,
// so that a replayed Append does not bring their messages back; they are a
// few bytes per Delete call and are not purged.
var (
	bucketArchive       = []byte("archive-messages")
	bucketArchiveExpiry = []byte("archive-expiry")
	bucketDeleted       = []byte("archive-deleted")
	bucketActions       = []byte("archive-actions")
	bucketMsgActions    = []byte("archive-msgactions")
	bucketActionExpiry  = []byte("archive-actexpiry")
	bucketCheckpoints   = []byte("archive-checkpoints")
	archiveBuckets      = [][]byte{bucketArchive, bucketArchiveExpiry, bucketDeleted, bucketActions, bucketMsgActions, bucketActionExpiry, bucketCheckpoints}
)

var _ archive.Store = (*Store)(nil)

type archiveSet struct {
	msgs, expiry, deleted, actions, msgActions, actExpiry, checkpoints *bbolt.Bucket
}

func archiveBucketsOf(tx *bbolt.Tx) (archiveSet, error) {
	b := archiveSet{
		msgs: tx.Bucket(bucketArchive), expiry: tx.Bucket(bucketArchiveExpiry), deleted: tx.Bucket(bucketDeleted),
		actions: tx.Bucket(bucketActions), msgActions: tx.Bucket(bucketMsgActions), actExpiry: tx.Bucket(bucketActionExpiry),
		checkpoints: tx.Bucket(bucketCheckpoints),
	}
	if b.msgs == nil || b.expiry == nil || b.deleted == nil || b.actions == nil || b.msgActions == nil || b.actExpiry == nil || b.checkpoints == nil {
		return b, damage("an archive bucket is missing")
	}
	return b, nil
}

// chanPrefix is account 0 channel 0; names never contain control characters.
func chanPrefix(a channelgroups.Account, c channelgroups.Channel) []byte {
	k := make([]byte, 0, len(a)+len(c)+2+16)
	k = append(append(k, a...), 0)
	return append(append(k, c...), 0)
}

func ttKey(prefix []byte, tts ...channelgroups.Timetoken) []byte {
	k := slices.Clip(prefix)
	for _, tt := range tts {
		k = binary.BigEndian.AppendUint64(k, uint64(tt))
	}
	return k
}

// ttAt reads the timetoken at offset off after prefix in k.
func ttAt(k []byte, prefixLen, off int) (channelgroups.Timetoken, error) {
	if len(k) < prefixLen+off+8 {
		return 0, damage("archive key %q too short", k)
	}
	return channelgroups.Timetoken(binary.BigEndian.Uint64(k[prefixLen+off:])), nil
}

func micros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

func fromMicros(us int64) time.Time {
	if us == 0 {
		return time.Time{}
	}
	return time.UnixMicro(us)
}

// expired reports whether a row expiring at us (0: never) is gone at now (µs).
func expired(us, now int64) bool { return us != 0 && us <= now }

// appendField appends a uvarint length and b.
func appendField(v, b []byte) []byte { return append(binary.AppendUvarint(v, uint64(len(b))), b...) }

// readField reads what appendField wrote.
func readField(v []byte) (field, rest []byte, ok bool) {
	n, w := binary.Uvarint(v)
	if w <= 0 || uint64(len(v)-w) < n {
		return nil, nil, false
	}
	return v[w : w+int(n)], v[w+int(n):], true
}

// encodeMessage: type(1) expires(8) payload publisher custom-type, then
// meta with a flag byte (0: nil), each field length-prefixed.
func encodeMessage(m archive.Message) []byte {
	v := make([]byte, 0, 9+len(m.Payload)+len(m.Meta)+len(m.Publisher)+len(m.CustomType)+12)
	v = append(v, byte(m.Type))
	v = binary.BigEndian.AppendUint64(v, uint64(micros(m.Expires)))
	v = appendField(v, m.Payload)
	v = appendField(v, []byte(m.Publisher))
	v = appendField(v, []byte(m.CustomType))
	if m.Meta == nil {
		return append(v, 0)
	}
	return appendField(append(v, 1), m.Meta)
}

func messageExpires(v []byte) (int64, error) {
	if len(v) < 9 {
		return 0, damage("archived message of %d bytes", len(v))
	}
	return int64(binary.BigEndian.Uint64(v[1:])), nil
}

func decodeMessage(v []byte) (archive.Message, error) {
	var m archive.Message
	exp, err := messageExpires(v)
	if err != nil {
		return m, err
	}
	m.Type, m.Expires = archive.MessageType(v[0]), fromMicros(exp)
	rest := v[9:]
	var payload, pub, cmt []byte
	ok := true
	for _, f := range []*[]byte{&payload, &pub, &cmt} {
		if ok {
			*f, rest, ok = readField(rest)
		}
	}
	if !ok || len(rest) == 0 {
		return m, damage("archived message of %d bytes", len(v))
	}
	m.Payload, m.Publisher, m.CustomType = bytes.Clone(payload), string(pub), string(cmt)
	if rest[0] == 1 {
		meta, tail, ok := readField(rest[1:])
		if !ok || len(tail) != 0 {
			return m, damage("archived message of %d bytes", len(v))
		}
		m.Meta = bytes.Clone(meta)
		if m.Meta == nil {
			m.Meta = []byte{}
		}
	}
	return m, nil
}

// encodeAction: expires(8) type value publisher, length-prefixed.
func encodeAction(act archive.Action) []byte {
	v := binary.BigEndian.AppendUint64(nil, uint64(micros(act.Expires)))
	v = appendField(v, []byte(act.Type))
	v = appendField(v, []byte(act.Value))
	return appendField(v, []byte(act.Publisher))
}

func decodeAction(v []byte, act *archive.Action) error {
	if len(v) < 8 {
		return damage("archived action of %d bytes", len(v))
	}
	act.Expires = fromMicros(int64(binary.BigEndian.Uint64(v)))
	rest := v[8:]
	var typ, val, pub []byte
	ok := true
	for _, f := range []*[]byte{&typ, &val, &pub} {
		if ok {
			*f, rest, ok = readField(rest)
		}
	}
	if !ok || len(rest) != 0 {
		return damage("archived action of %d bytes", len(v))
	}
	act.Type, act.Value, act.Publisher = string(typ), string(val), string(pub)
	return nil
}

// deletedRanges returns the ranges removed from the channel with prefix p.
func deletedRanges(b archiveSet, p []byte) ([][2]channelgroups.Timetoken, error) {
	var out [][2]channelgroups.Timetoken
	c := b.deleted.Cursor()
	for k, _ := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, _ = c.Next() {
		if len(k) != len(p)+16 {
			return nil, damage("deleted range key %q", k)
		}
		out = append(out, [2]channelgroups.Timetoken{
			channelgroups.Timetoken(binary.BigEndian.Uint64(k[len(p):])),
			channelgroups.Timetoken(binary.BigEndian.Uint64(k[len(p)+8:])),
		})
	}
	return out, nil
}

// sweepIndex deletes up to limit entries of an expiry index due at or before
// now, calling drop for each indexed key whose row still expires then.
func sweepIndex(index *bbolt.Bucket, now int64, limit int, drop func(k []byte, expires int64) error) error {
	var due [][]byte
	c := index.Cursor()
	for k, _ := c.First(); k != nil && len(due) < limit; k, _ = c.Next() {
		if len(k) < 8 {
			return damage("expiry index key %q", k)
		}
		if int64(binary.BigEndian.Uint64(k)) > now {
			break
		}
		due = append(due, bytes.Clone(k))
	}
	for _, k := range due {
		if err := drop(k[8:], int64(binary.BigEndian.Uint64(k))); err != nil {
			return err
		}
		if err := index.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// Append implements archive.Store in one fsynced transaction.
func (s *Store) Append(ctx context.Context, msgs []archive.Message) error {
	return s.AppendThrough(ctx, msgs, nil)
}

// AppendThrough implements archive.AppendThrougher: the batch and the
// checkpoints in one fsynced transaction.
func (s *Store) AppendThrough(ctx context.Context, msgs []archive.Message, checkpoints map[int]channelgroups.Position) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, m := range msgs {
		if err := m.Validate(); err != nil {
			return err
		}
	}
	for shard := range checkpoints {
		if err := archive.CheckShard(shard); err != nil {
			return err
		}
	}
	now := s.cfg.Now().UnixMicro()
	return s.update(func(tx *bbolt.Tx) error {
		b, err := archiveBucketsOf(tx)
		if err != nil {
			return err
		}
		if err := appendMessages(b, msgs, now); err != nil {
			return err
		}
		for shard, pos := range checkpoints {
			if err := putCheckpoint(b, shard, pos); err != nil {
				return err
			}
		}
		return nil
	})
}

// appendMessages stores msgs (Append's rules) and sweeps what expired.
func appendMessages(b archiveSet, msgs []archive.Message, now int64) error {
	deleted := map[string][][2]channelgroups.Timetoken{}
	for _, m := range msgs {
		exp := micros(m.Expires)
		if expired(exp, now) {
			continue
		}
		p := chanPrefix(m.Account, m.Channel)
		ranges, seen := deleted[string(p)]
		if !seen {
			var err error
			if ranges, err = deletedRanges(b, p); err != nil {
				return err
			}
			deleted[string(p)] = ranges
		}
		if slices.ContainsFunc(ranges, func(r [2]channelgroups.Timetoken) bool { return r[0] <= m.Timetoken && m.Timetoken <= r[1] }) {
			continue
		}
		k := ttKey(p, m.Timetoken)
		if old := b.msgs.Get(k); old != nil {
			oldExp, err := messageExpires(old)
			if err != nil {
				return err
			}
			if oldExp != 0 {
				if err := b.expiry.Delete(expiryKey(oldExp, k)); err != nil {
					return err
				}
			}
		}
		if err := b.msgs.Put(k, encodeMessage(m)); err != nil {
			return err
		}
		if exp != 0 {
			if err := b.expiry.Put(expiryKey(exp, k), nil); err != nil {
				return err
			}
		}
	}
	return sweepIndex(b.expiry, now, len(msgs)+sweepBatch, func(k []byte, exp int64) error {
		if v := b.msgs.Get(k); v != nil {
			if e, err := messageExpires(v); err == nil && e == exp {
				return b.msgs.Delete(k)
			}
		}
		return nil
	})
}

// Messages implements archive.Store: one cursor walk from the end of the
// range the query reads from.
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
	now := s.cfg.Now().UnixMicro()
	var (
		out  []archive.Message
		more bool
	)
	err := s.view(func(tx *bbolt.Tx) error {
		b, err := archiveBucketsOf(tx)
		if err != nil {
			return err
		}
		p := chanPrefix(q.Account, q.Channel)
		return walkRange(b.msgs.Cursor(), p, lo, hi, q.Reverse, func(_, v []byte, tt channelgroups.Timetoken) (bool, error) {
			exp, err := messageExpires(v)
			if err != nil || expired(exp, now) {
				return true, err
			}
			if len(out) == q.Max {
				more = true
				return false, nil
			}
			m, err := decodeMessage(v)
			if err != nil {
				return false, err
			}
			m.Account, m.Channel, m.Timetoken = q.Account, q.Channel, tt
			out = append(out, m)
			return true, nil
		})
	})
	if err != nil {
		return nil, false, err
	}
	if !q.Reverse {
		slices.Reverse(out)
	}
	return out, more, nil
}

// walkRange calls fn for the rows of prefix p whose first timetoken after p
// is in [lo, hi], ascending when up, else descending, until fn returns false.
func walkRange(c *bbolt.Cursor, p []byte, lo, hi channelgroups.Timetoken, up bool, fn func(k, v []byte, tt channelgroups.Timetoken) (bool, error)) error {
	var k, v []byte
	if up {
		k, v = c.Seek(ttKey(p, lo))
	} else {
		k, v = c.Seek(ttKey(p, hi, archive.MaxTimetoken))
		if k == nil {
			k, v = c.Last()
		} else if !bytes.HasPrefix(k, p) || len(k) < len(p)+8 || channelgroups.Timetoken(binary.BigEndian.Uint64(k[len(p):])) > hi {
			k, v = c.Prev()
		}
	}
	for ; k != nil && bytes.HasPrefix(k, p); k, v = step(c, up) {
		tt, err := ttAt(k, len(p), 0)
		if err != nil {
			return err
		}
		if tt < lo || tt > hi {
			return nil
		}
		if cont, err := fn(k, v, tt); err != nil || !cont {
			return err
		}
	}
	return nil
}

func step(c *bbolt.Cursor, up bool) ([]byte, []byte) {
	if up {
		return c.Next()
	}
	return c.Prev()
}

// Count implements archive.Store; it walks the messages after after.
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
	now := s.cfg.Now().UnixMicro()
	var n int64
	err := s.view(func(tx *bbolt.Tx) error {
		b, err := archiveBucketsOf(tx)
		if err != nil {
			return err
		}
		return walkRange(b.msgs.Cursor(), chanPrefix(a, c), after+1, archive.MaxTimetoken, true, func(_, v []byte, _ channelgroups.Timetoken) (bool, error) {
			exp, err := messageExpires(v)
			if err == nil && !expired(exp, now) {
				n++
			}
			return true, err
		})
	})
	return n, err
}

// Delete implements archive.Store in one fsynced transaction: it removes
// the range's messages and their actions and records the range.
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
	lo, hi, ok := archive.DeleteBounds(start, end, s.cfg.Now())
	if !ok {
		return nil
	}
	p := chanPrefix(a, c)
	return s.update(func(tx *bbolt.Tx) error {
		b, err := archiveBucketsOf(tx)
		if err != nil {
			return err
		}
		if err := b.deleted.Put(ttKey(p, lo, hi), nil); err != nil {
			return err
		}
		type row struct {
			k   []byte
			exp int64
		}
		var rows []row
		err = walkRange(b.msgs.Cursor(), p, lo, hi, true, func(_, v []byte, tt channelgroups.Timetoken) (bool, error) {
			exp, err := messageExpires(v)
			rows = append(rows, row{ttKey(p, tt), exp})
			return true, err
		})
		if err != nil {
			return err
		}
		for _, r := range rows {
			if err := b.msgs.Delete(r.k); err != nil {
				return err
			}
			if r.exp != 0 {
				if err := b.expiry.Delete(expiryKey(r.exp, r.k)); err != nil {
					return err
				}
			}
		}
		var ids [][2]channelgroups.Timetoken
		err = walkRange(b.msgActions.Cursor(), p, lo, hi, true, func(k, _ []byte, m channelgroups.Timetoken) (bool, error) {
			at, err := ttAt(k, len(p), 8)
			ids = append(ids, [2]channelgroups.Timetoken{m, at})
			return true, err
		})
		if err != nil {
			return err
		}
		for _, id := range ids {
			if err := removeAction(b, p, id[0], id[1]); err != nil {
				return err
			}
		}
		return nil
	})
}

// removeAction deletes an action's rows, if it is stored.
func removeAction(b archiveSet, p []byte, message, action channelgroups.Timetoken) error {
	k := ttKey(p, action, message)
	v := b.actions.Get(k)
	if v == nil {
		return nil
	}
	if len(v) < 8 {
		return damage("archived action of %d bytes", len(v))
	}
	if exp := int64(binary.BigEndian.Uint64(v)); exp != 0 {
		if err := b.actExpiry.Delete(expiryKey(exp, k)); err != nil {
			return err
		}
	}
	if err := b.actions.Delete(k); err != nil {
		return err
	}
	return b.msgActions.Delete(ttKey(p, message, action))
}

// AddAction implements archive.Store; it sweeps a bounded batch of expired
// actions.
func (s *Store) AddAction(ctx context.Context, act archive.Action) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := act.Validate(); err != nil {
		return err
	}
	now := s.cfg.Now().UnixMicro()
	exp := micros(act.Expires)
	if expired(exp, now) {
		return nil
	}
	p := chanPrefix(act.Account, act.Channel)
	return s.update(func(tx *bbolt.Tx) error {
		b, err := archiveBucketsOf(tx)
		if err != nil {
			return err
		}
		if err := removeAction(b, p, act.Message, act.Timetoken); err != nil {
			return err
		}
		k := ttKey(p, act.Timetoken, act.Message)
		if err := b.actions.Put(k, encodeAction(act)); err != nil {
			return err
		}
		if err := b.msgActions.Put(ttKey(p, act.Message, act.Timetoken), nil); err != nil {
			return err
		}
		if exp != 0 {
			if err := b.actExpiry.Put(expiryKey(exp, k), nil); err != nil {
				return err
			}
		}
		return sweepIndex(b.actExpiry, now, 1+sweepBatch, func(k []byte, exp int64) error {
			v := b.actions.Get(k)
			if len(v) < 8 || int64(binary.BigEndian.Uint64(v)) != exp {
				return nil
			}
			// k is account 0 channel 0 action message.
			if len(k) < 16 {
				return damage("action key %q", k)
			}
			p := k[:len(k)-16]
			return removeAction(b, p, channelgroups.Timetoken(binary.BigEndian.Uint64(k[len(k)-8:])),
				channelgroups.Timetoken(binary.BigEndian.Uint64(k[len(k)-16:])))
		})
	})
}

// RemoveAction implements archive.Store.
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
	return s.update(func(tx *bbolt.Tx) error {
		b, err := archiveBucketsOf(tx)
		if err != nil {
			return err
		}
		return removeAction(b, chanPrefix(a, c), message, action)
	})
}

// Actions implements archive.Store: a walk of the channel's actions from
// the newest in the range.
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
	now := s.cfg.Now().UnixMicro()
	var (
		out  []archive.Action
		more bool
	)
	p := chanPrefix(a, c)
	err := s.view(func(tx *bbolt.Tx) error {
		b, err := archiveBucketsOf(tx)
		if err != nil {
			return err
		}
		return walkRange(b.actions.Cursor(), p, lo, hi, false, func(k, v []byte, at channelgroups.Timetoken) (bool, error) {
			if len(v) < 8 {
				return false, damage("archived action of %d bytes", len(v))
			}
			if expired(int64(binary.BigEndian.Uint64(v)), now) {
				return true, nil
			}
			if len(out) == limit {
				more = true
				return false, nil
			}
			m, err := ttAt(k, len(p), 8)
			if err != nil {
				return false, err
			}
			act := archive.Action{Account: a, Channel: c, Message: m, Timetoken: at}
			if err := decodeAction(v, &act); err != nil {
				return false, err
			}
			out = append(out, act)
			return true, nil
		})
	})
	if err != nil {
		return nil, false, err
	}
	slices.Reverse(out)
	return out, more, nil
}

// MessageActions implements archive.Store: a walk of the by-message index
// from first to last.
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
	now := s.cfg.Now().UnixMicro()
	var out []archive.Action
	p := chanPrefix(a, c)
	err := s.view(func(tx *bbolt.Tx) error {
		b, err := archiveBucketsOf(tx)
		if err != nil {
			return err
		}
		return walkRange(b.msgActions.Cursor(), p, first, last, true, func(k, _ []byte, m channelgroups.Timetoken) (bool, error) {
			at, err := ttAt(k, len(p), 8)
			if err != nil {
				return false, err
			}
			v := b.actions.Get(ttKey(p, at, m))
			if len(v) < 8 {
				return false, damage("action %d of message %d: index without row", at, m)
			}
			if expired(int64(binary.BigEndian.Uint64(v)), now) {
				return true, nil
			}
			act := archive.Action{Account: a, Channel: c, Message: m, Timetoken: at}
			if err := decodeAction(v, &act); err != nil {
				return false, err
			}
			out = append(out, act)
			return true, nil
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Checkpoint implements archive.Store. An embedded node is its own region.
func (s *Store) Checkpoint(ctx context.Context, shard int) (channelgroups.Position, error) {
	if err := ctx.Err(); err != nil {
		return channelgroups.Position{}, err
	}
	if err := archive.CheckShard(shard); err != nil {
		return channelgroups.Position{}, err
	}
	var pos channelgroups.Position
	err := s.view(func(tx *bbolt.Tx) error {
		b, err := archiveBucketsOf(tx)
		if err != nil {
			return err
		}
		v := b.checkpoints.Get(binary.BigEndian.AppendUint32(nil, uint32(shard)))
		if v == nil {
			return nil
		}
		if len(v) != 16 {
			return damage("checkpoint of %d bytes", len(v))
		}
		pos = channelgroups.Position{Ms: binary.BigEndian.Uint64(v), Seq: binary.BigEndian.Uint64(v[8:])}
		return nil
	})
	return pos, err
}

// SetCheckpoint implements archive.Store.
func (s *Store) SetCheckpoint(ctx context.Context, shard int, pos channelgroups.Position) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := archive.CheckShard(shard); err != nil {
		return err
	}
	return s.update(func(tx *bbolt.Tx) error {
		b, err := archiveBucketsOf(tx)
		if err != nil {
			return err
		}
		return putCheckpoint(b, shard, pos)
	})
}

// putCheckpoint records pos as shard's checkpoint.
func putCheckpoint(b archiveSet, shard int, pos channelgroups.Position) error {
	v := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, pos.Ms), pos.Seq)
	return b.checkpoints.Put(binary.BigEndian.AppendUint32(nil, uint32(shard)), v)
}
