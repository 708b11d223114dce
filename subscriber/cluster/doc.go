// Package cluster decides which node serves which account shard. It finds
// the other nodes of a groupcast cluster over memberlist gossip (the only
// package that imports memberlist), maps every shard to its owners with
// rendezvous hashing, and implements [subscriber.Ownership] for the local
// node and the routing the HTTP layer needs to forward a request.
//
// # Membership and the ring
//
// Each node gossips a small metadata record (see [Member]): its HTTP
// address, its region, whether it is active or draining, and the ring
// version it last reported [Cluster.Ready] for. The ring ([Ring]) is a pure
// function of the names of the active members of the local region, the
// number of shards and the number of replicas, so every node that sees the
// same membership computes the same owners and the same [Ring.Version].
// The first owner of a shard is its primary.
//
// # Lifecycle
//
// [New] binds the gossip address and starts memberlist, whose listeners and
// probe loops are goroutines of memberlist's own; they live until
// [Cluster.Shutdown]. [Cluster.Join] contacts the seeds, retrying until one
// answers or its context ends. A stopping node calls [Cluster.SetDraining],
// waits with [Cluster.WaitHandover] until its peers serve the shards it
// gives up, releases its parked polls, then calls [Cluster.Leave] and
// [Cluster.Shutdown]. The package starts no goroutine of its own.
//
// # Concurrency contract
//
// Every method of [Cluster] is safe for concurrent use. Assignment,
// Changed, Route, Status, Self, HTTPAddr and GossipAddr never block: they
// read an immutable view published through an atomic pointer. Ready,
// SetDraining and Refused only update local state and queue a gossip
// message; they never wait for the network. WaitHandover blocks until its
// condition holds or its context ends; Join blocks until a seed answers or
// its context ends; Leave blocks for at most its timeout.
//
// memberlist's delegate and event callbacks never block and never call
// back into memberlist: they copy what they need from the gossiped bytes,
// recompute the view under a leaf mutex, store it atomically and signal
// waiters by closing a channel.
package cluster
