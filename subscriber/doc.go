// Package subscriber is the groupcast node. Its adapters live in
// sub-packages: httpapi serves the PubNub-compatible REST API on fasthttp.
// Shard ownership, group expansion, message rings and long-poll waiters are
// still to come; see docs/STATUS.md.
package subscriber
