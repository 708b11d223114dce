package accesstest_test

import (
	"testing"

	"github.com/groupcast/groupcast/access"
	"github.com/groupcast/groupcast/access/accesstest"
)

func TestMemory(t *testing.T) {
	accesstest.Run(t, func(*testing.T) access.Store { return accesstest.NewMemory() })
}
