package memlog_test

import (
	"testing"

	"github.com/groupcast/groupcast/subscriber"
	"github.com/groupcast/groupcast/subscriber/logtest"
	"github.com/groupcast/groupcast/subscriber/memlog"
)

func TestConformance(t *testing.T) {
	logtest.Run(t, func(t *testing.T, shards int) subscriber.Log {
		l, err := memlog.New(memlog.Config{Shards: shards})
		if err != nil {
			t.Fatal(err)
		}
		return l
	})
}
