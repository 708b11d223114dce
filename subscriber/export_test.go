package subscriber

import "github.com/groupcast/groupcast/channelgroups"

// SetAfterInsert installs the seam between a message's ring insert and the
// advance of its shard's applied position. Set it before the node runs.
func SetAfterInsert(n *Node, f func(channelgroups.Position)) { n.hub.afterInsert = f }

// SetBeforeApply installs the seam before a log entry is applied. Set it
// before the node runs.
func SetBeforeApply(n *Node, f func(channelgroups.Position)) { n.hub.beforeApply = f }

// DropCached drops a group's cached snapshot and published view, as an
// eviction does: the next read loads it from storage.
func DropCached(n *Node, key channelgroups.GroupKey) {
	n.views.mu.Lock()
	defer n.views.mu.Unlock()
	n.views.cache.Invalidate(key)
	n.views.cache.Unpublish(key)
}

// Applied returns where the node is in a shard's log.
func Applied(n *Node, shard int) channelgroups.Position { return n.applied(shard) }

// ReplicationWaits counts the times a copy waited for a third region's
// entries it depends on.
func ReplicationWaits(n *Node) int64 { return n.repl.waited.Load() }

// ArchiveBatchBytes is the byte bound of one archiver batch.
const ArchiveBatchBytes = archiveBatchBytes

// AnsweredAtOnce reports whether w was answered without registering for
// wake-ups or starting its hold's timer: StartPoll returned no Parked.
func AnsweredAtOnce(w *Parked) bool { return w == nil }
