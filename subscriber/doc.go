// Package subscriber is the groupcast node: it follows the logs of the
// account shards it owns and serves group views, causal reads, publishes,
// long-poll subscribes, history and presence for them. Node keeps the
// consume loop and the wiring of its parts, each in a file of its own:
// views.go (group views and causal reads), announce.go (edits into the log,
// the outbox), hub.go (message rings under a node-wide byte cap, parked
// polls, G3 tracking), presence.go (bounded by PresenceMax) and gap.go (a
// log trimmed past this node's position: detected, counted, repaired by
// re-reading storage before serving the shard again). Which shards a node serves comes from an Ownership
// (ownership.go); nil means all of them.
//
// Adapters live in sub-packages: httpapi (the PubNub-compatible REST API on
// fasthttp, with forwarding to a shard's owners), cluster (membership and
// the shard ring on memberlist), redislog and memlog (the shard logs, one
// conformance suite in logtest).
package subscriber
