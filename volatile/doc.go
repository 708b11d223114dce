// Package volatile will hold the overlay of recent timestamped adds and
// removes per group, aged out by a TTL on an injected clock and confirmed
// early by storage snapshots. Nothing is built here yet; see docs/STATUS.md.
package volatile
