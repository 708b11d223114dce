package clustercheck

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// StreamEntry is one entry of a region's shard log as a test read it
// (from Redis: the stream ID, and of the record in field "r" its kind "k",
// origin region "or" and origin position "op"; "p" is the ID of the entry
// before it).
type StreamEntry struct {
	Shard     int
	ID        string // its position in this region's log, "ms-seq"
	Prev      string // the position of the entry before it when appended; "0-0" for a stream's first
	Kind      string // "e" edit, "m" message, "p" presence
	Origin    int    // the region it was copied from; 0 for an entry appended here
	OriginPos string // its position in Origin's log
}

// ReplicationResult is what CheckReplication found: Lost and Twice must be 0.
type ReplicationResult struct {
	Lost      int // (edit or message, other region) pairs with no copy in that region's log of the same shard
	Twice     int // (origin entry, region) pairs copied more than once
	Originals int // edits and messages appended in their own region, within the logs read
	Copies    int // entries copied from another region
	Gaps      int // gap records: entries of another region's log trimmed before they were copied

	First    string
	Examples []string
}

// String is the one-line report, starting with "replicated_lost=".
func (r ReplicationResult) String() string {
	return fmt.Sprintf("replicated_lost=%d replicated_twice=%d replicated_originals=%d replicated_copies=%d replicated_gaps=%d", r.Lost, r.Twice, r.Originals, r.Copies, r.Gaps)
}

func (r *ReplicationResult) violation(format string, args ...any) {
	if r.First == "" {
		r.First = fmt.Sprintf(format, args...)
	}
	if len(r.Examples) < maxExamples {
		r.Examples = append(r.Examples, fmt.Sprintf(format, args...))
	}
}

// CheckReplication checks, given every region's shard logs (logs[region],
// each shard's entries in log order), that every edit and message appended
// in a region appears exactly once as a copy in every other region's log
// of the same shard. Only positions still inside the logs count: an entry
// whose copy would sit before the start of a trimmed log, or a copy of an
// entry trimmed from its origin's log, is not judged missing.
func CheckReplication(logs map[int][]StreamEntry) ReplicationResult {
	var res ReplicationResult
	type originKey struct {
		shard, region int
		pos           string
	}
	type streamKey struct{ region, shard int }
	copies := map[int]map[originKey]int{} // copying region → origin → times
	oldest := map[streamKey]map[int]string{}
	trimmed := map[streamKey]bool{}
	regions := slices.Sorted(func(yield func(int) bool) {
		for r := range logs {
			if !yield(r) {
				return
			}
		}
	})
	for _, region := range regions {
		copies[region] = map[originKey]int{}
		seen := map[int]bool{}
		for _, e := range logs[region] {
			sk := streamKey{region, e.Shard}
			if !seen[e.Shard] {
				seen[e.Shard] = true
				trimmed[sk] = e.Prev != "" && e.Prev != "0-0"
			}
			if e.Kind == "g" {
				res.Gaps++
				continue
			}
			if e.Origin == 0 {
				continue
			}
			res.Copies++
			k := originKey{e.Shard, e.Origin, e.OriginPos}
			copies[region][k]++
			if copies[region][k] == 2 {
				res.Twice++
				res.violation("replicated twice: region %d's entry %s (shard %d) is copied more than once into region %d's log (the second at %s)", e.Origin, e.OriginPos, e.Shard, region, e.ID)
			}
			if oldest[sk] == nil {
				oldest[sk] = map[int]string{}
			}
			if o, found := oldest[sk][e.Origin]; !found || comparePos(e.OriginPos, o) < 0 {
				oldest[sk][e.Origin] = e.OriginPos
			}
		}
	}
	for _, region := range regions {
		for _, e := range logs[region] {
			if e.Origin != 0 || (e.Kind != "e" && e.Kind != "m") {
				continue
			}
			res.Originals++
			for _, to := range regions {
				if to == region {
					continue
				}
				sk := streamKey{to, e.Shard}
				if copies[to][originKey{e.Shard, region, e.ID}] > 0 {
					continue
				}
				if trimmed[sk] {
					// The copy may have been trimmed: judged only if a
					// copy of an older entry of region is still there.
					if o, found := oldest[sk][region]; !found || comparePos(e.ID, o) < 0 {
						continue
					}
				}
				res.Lost++
				res.violation("replication lost: region %d's %s %s (shard %d) has no copy in region %d's log", region, map[string]string{"e": "edit", "m": "message"}[e.Kind], e.ID, e.Shard, to)
			}
		}
	}
	return res
}

// comparePos orders two "ms-seq" positions; unparsable ones compare as
// strings.
func comparePos(a, b string) int {
	am, as, okA := splitPos(a)
	bm, bs, okB := splitPos(b)
	if !okA || !okB {
		return strings.Compare(a, b)
	}
	return cmp.Or(cmp.Compare(am, bm), cmp.Compare(as, bs))
}

func splitPos(p string) (uint64, uint64, bool) {
	ms, seq, found := strings.Cut(p, "-")
	m, err1 := strconv.ParseUint(ms, 10, 64)
	s, err2 := strconv.ParseUint(seq, 10, 64)
	return m, s, found && err1 == nil && err2 == nil
}
