package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
)

// State is a member's part in the ring.
type State string

const (
	// Active members own shards.
	Active State = "active"
	// Draining members are stopping: they own no shard in anyone's ring
	// but still answer the polls they have parked.
	Draining State = "draining"
)

// Member is one node of the cluster as gossip describes it.
type Member struct {
	// Node is the node's name.
	Node string `json:"node"`
	// HTTP is the node's public HTTP address, host:port.
	HTTP string `json:"http"`
	// Region is the node's region.
	Region int `json:"region"`
	// State is active or draining.
	State State `json:"state"`
	// ReadyVersion is the ring version the node last reported it serves
	// (see Cluster.Ready); 0 before its first report.
	ReadyVersion uint64 `json:"ready_version"`
}

// meta is a member's gossiped metadata: compact, because memberlist caps
// it at 512 bytes. It never carries the shard map, which every node
// computes for itself.
type meta struct {
	HTTP   string `json:"h"`
	Region int    `json:"r"`
	State  string `json:"s"` // "a" active, "d" draining
	Ready  uint64 `json:"v"`
}

// encodeMeta returns m's metadata.
func encodeMeta(m Member) []byte {
	s := "a"
	if m.State == Draining {
		s = "d"
	}
	b, err := json.Marshal(meta{HTTP: m.HTTP, Region: m.Region, State: s, Ready: m.ReadyVersion})
	if err != nil {
		panic("cluster: encoding metadata: " + err.Error()) // only strings and numbers
	}
	return b
}

var errMeta = errors.New("cluster: bad node metadata")

// decodeMeta parses the metadata node gossiped.
func decodeMeta(node string, b []byte) (Member, error) {
	var md meta
	if err := json.Unmarshal(b, &md); err != nil {
		return Member{}, fmt.Errorf("%w from %q: %w", errMeta, node, err)
	}
	m := Member{Node: node, HTTP: md.HTTP, Region: md.Region, ReadyVersion: md.Ready}
	switch md.State {
	case "a":
		m.State = Active
	case "d":
		m.State = Draining
	default:
		return Member{}, fmt.Errorf("%w from %q: state %q", errMeta, node, md.State)
	}
	if m.HTTP == "" || m.Region <= 0 {
		return Member{}, fmt.Errorf("%w from %q: no HTTP address or region", errMeta, node)
	}
	return m, nil
}
