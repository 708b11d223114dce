package cassandra

import (
	"testing"

	"github.com/groupcast/groupcast/archive"
	"github.com/groupcast/groupcast/archive/archivetest"
)

func TestArchiveConformance(t *testing.T) {
	s := newStore(t) // one keyspace for the suite: each test uses its own accounts and shards
	archivetest.Run(t, func(*testing.T) archive.Store { return s }, archivetest.Options{})
}
