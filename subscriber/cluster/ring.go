package cluster

import (
	"encoding/binary"
	"slices"

	"github.com/cespare/xxhash/v2"

	"github.com/groupcast/groupcast/subscriber"
)

// versionBits is how many bits a ring version keeps, so that it survives a
// round trip through a JSON number in JavaScript.
const versionBits = 53

// Ring maps each shard to its owners among a set of nodes by rendezvous
// (highest random weight) hashing: every node is scored against the shard
// with a 64-bit hash of (shard, node name) and the min(replicas, nodes)
// highest scores own it, the highest being the primary. Adding a node moves
// only the shards the new node comes to own; removing one moves only the
// shards it owned.
//
// A Ring is immutable and safe for concurrent use.
type Ring struct {
	version  uint64
	shards   int
	replicas int
	width    int      // owners per shard: min(replicas, len(nodes))
	nodes    []string // sorted, distinct
	owners   []string // shards rows of width names, each in rendezvous order
}

// NewRing computes the ring of shards shards, each owned by replicas of
// nodes (order and duplicates do not matter). It panics if shards or
// replicas is not positive.
func NewRing(nodes []string, shards, replicas int) *Ring {
	if shards <= 0 || replicas <= 0 {
		panic("cluster: NewRing needs shards > 0 and replicas > 0")
	}
	nodes = slices.Clone(nodes)
	slices.Sort(nodes)
	nodes = slices.Compact(nodes)
	r := &Ring{
		shards:   shards,
		replicas: replicas,
		width:    min(replicas, len(nodes)),
		nodes:    nodes,
	}
	r.version = ringVersion(nodes, shards, replicas)
	r.owners = make([]string, shards*r.width)
	if r.width == 0 {
		return r
	}
	d := xxhash.New()
	scores := make([]uint64, r.width)
	for shard := range shards {
		row := r.owners[shard*r.width : (shard+1)*r.width]
		n := 0 // filled entries of row and scores
		for _, node := range nodes {
			s := score(d, shard, node)
			// Insert in descending score; on a tie the earlier name wins,
			// which is deterministic because nodes is sorted.
			i := n
			for i > 0 && s > scores[i-1] {
				i--
			}
			if i >= r.width {
				continue
			}
			if n < r.width {
				n++
			}
			copy(scores[i+1:n], scores[i:n-1])
			copy(row[i+1:n], row[i:n-1])
			scores[i], row[i] = s, node
		}
	}
	return r
}

// score is the rendezvous weight of node for shard.
func score(d *xxhash.Digest, shard int, node string) uint64 {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(shard))
	d.Reset()
	_, _ = d.Write(b[:])
	_, _ = d.WriteString(node)
	return d.Sum64()
}

// ringVersion hashes what determines a ring: its sorted node names, shards
// and replicas. It is the same in every process.
func ringVersion(nodes []string, shards, replicas int) uint64 {
	d := xxhash.New()
	var b [8]byte
	put := func(v uint64) {
		binary.LittleEndian.PutUint64(b[:], v)
		_, _ = d.Write(b[:])
	}
	_, _ = d.WriteString("groupcast ring 1")
	put(uint64(shards))
	put(uint64(replicas))
	for _, n := range nodes {
		put(uint64(len(n)))
		_, _ = d.WriteString(n)
	}
	return d.Sum64() & (1<<versionBits - 1)
}

// Version identifies the ring: equal node names, shards and replicas give
// an equal version in every process. It fits in 53 bits.
func (r *Ring) Version() uint64 { return r.version }

// Shards returns the number of shards.
func (r *Ring) Shards() int { return r.shards }

// Replicas returns the configured number of owners per shard; a shard has
// fewer when there are fewer nodes.
func (r *Ring) Replicas() int { return r.replicas }

// Nodes returns the ring's nodes, sorted.
func (r *Ring) Nodes() []string { return slices.Clone(r.nodes) }

// Owners returns the shard's owners, primary first; nil if the shard is
// out of range or the ring has no node.
func (r *Ring) Owners(shard int) []string {
	return slices.Clone(r.row(shard))
}

// Primary returns the shard's primary; "" if it has none.
func (r *Ring) Primary(shard int) string {
	if row := r.row(shard); len(row) > 0 {
		return row[0]
	}
	return ""
}

// row returns the shard's owners without copying; callers must not modify
// it.
func (r *Ring) row(shard int) []string {
	if shard < 0 || shard >= r.shards || r.width == 0 {
		return nil
	}
	return r.owners[shard*r.width : (shard+1)*r.width : (shard+1)*r.width]
}

// Assignment returns node's assignment under the ring.
func (r *Ring) Assignment(node string) *subscriber.Assignment {
	a := &subscriber.Assignment{
		Version: r.version,
		Owned:   make([]bool, r.shards),
		Primary: make([]bool, r.shards),
	}
	for shard := range r.shards {
		for i, o := range r.row(shard) {
			if o == node {
				a.Owned[shard] = true
				a.Primary[shard] = i == 0
			}
		}
	}
	return a
}
