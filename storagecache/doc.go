// Package storagecache will hold the bounded cache of group snapshots over
// the channel-group store (otter v2: loader with single-flight,
// expire-after-access, refresh of hot groups), each snapshot with its
// version. Nothing is built here yet; see docs/STATUS.md.
package storagecache
