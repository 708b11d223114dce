package subscriber

import "time"

// RingBytes returns what the node's rings hold, as RingBytes counts it.
func RingBytes(n *Node) int64 {
	n.hub.mu.Lock()
	defer n.hub.mu.Unlock()
	return n.hub.bytes
}

// Rings returns how many channels' rings the node keeps.
func Rings(n *Node) int {
	n.hub.mu.Lock()
	defer n.hub.mu.Unlock()
	return len(n.hub.rings)
}

// Sweep runs the janitor's sweep of old messages as at now.
func Sweep(n *Node, now time.Time) { n.hub.sweep(now) }
