package subscriber

import "github.com/groupcast/groupcast/channelgroups"

// SetAfterInsert installs the seam between a message's ring insert and the
// advance of its shard's applied position. Set it before the node runs.
func SetAfterInsert(n *Node, f func(channelgroups.Position)) { n.hub.afterInsert = f }
