package bolt_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/groupcast/groupcast/archive"
	"github.com/groupcast/groupcast/archive/archivetest"
	"github.com/groupcast/groupcast/channelgroups"
	"github.com/groupcast/groupcast/channelgroups/bolt"
)

func TestArchiveConformance(t *testing.T) {
	clock := archivetest.NewClock(time.Now())
	opt := clock.Options()
	opt.AppendThrough = true
	archivetest.Run(t, func(t *testing.T) archive.Store { return open(t, bolt.Config{Now: clock.Now}) }, opt)
}

// TestArchiveSurvivesReopen: messages, actions, deleted ranges and
// checkpoints are in the file.
func TestArchiveSurvivesReopen(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "groups.db")
	s, err := bolt.Open(path, bolt.Config{})
	if err != nil {
		t.Fatal(err)
	}
	tt := channelgroups.TimetokenOf(time.Now().Add(-time.Hour))
	msgs := []archive.Message{
		{Account: "a", Channel: "c", Timetoken: tt, Payload: []byte(`1`)},
		{Account: "a", Channel: "c", Timetoken: tt + 10, Payload: []byte(`2`)},
	}
	check := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	check(s.Append(ctx, msgs))
	check(s.Delete(ctx, "a", "c", tt+1, tt))
	check(s.AddAction(ctx, archive.Action{Account: "a", Channel: "c", Message: tt + 10, Timetoken: tt + 20, Type: "t", Value: "v"}))
	check(s.SetCheckpoint(ctx, 3, channelgroups.Position{Ms: 7, Seq: 1}))
	check(s.Close())

	s, err = bolt.Open(path, bolt.Config{})
	check(err)
	defer s.Close()
	check(s.Append(ctx, msgs)) // a replay: the deleted message stays deleted
	got, _, err := s.Messages(ctx, archive.Query{Account: "a", Channel: "c", Max: 10})
	check(err)
	if len(got) != 1 || got[0].Timetoken != tt+10 {
		t.Fatalf("after reopen: %+v, want only the message at %d", got, tt+10)
	}
	acts, err := s.MessageActions(ctx, "a", "c", tt, tt+10)
	check(err)
	if len(acts) != 1 {
		t.Fatalf("after reopen: %d actions, want 1", len(acts))
	}
	pos, err := s.Checkpoint(ctx, 3)
	check(err)
	if pos != (channelgroups.Position{Ms: 7, Seq: 1}) {
		t.Fatalf("checkpoint after reopen: %v", pos)
	}
}
