package archive_test

import (
	"testing"
	"time"

	"github.com/groupcast/groupcast/archive"
	"github.com/groupcast/groupcast/archive/archivetest"
)

func TestMemoryConformance(t *testing.T) {
	clock := archivetest.NewClock(time.Now())
	archivetest.Run(t, func(*testing.T) archive.Store { return archive.NewMemory(clock.Now) }, clock.Options())
}
