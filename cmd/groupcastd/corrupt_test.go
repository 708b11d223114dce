package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/groupcast/groupcast/channelgroups"
	"github.com/groupcast/groupcast/channelgroups/bolt"
)

// TestCorruptDataFile: groupcastd on a data file truncated to half exits at
// once with a message naming the file and saying what to do, never with a
// stack trace (issue 10: it used to panic at start, a crash loop).
func TestCorruptDataFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "groups.db")
	s, err := bolt.Open(path, bolt.Config{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		chs := make([]channelgroups.Channel, 50)
		for j := range chs {
			chs[j] = channelgroups.Channel(fmt.Sprintf("channel-%04d-%04d", i, j))
		}
		e := channelgroups.Edit{Account: "a", Group: channelgroups.Group(fmt.Sprint("g", i)), Op: channelgroups.OpAdd, Channels: chs, At: channelgroups.Timetoken(17e15 + i)}
		if err := s.Write(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, info.Size()/2); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "--listen", "127.0.0.1:0", "--data", dir)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("groupcastd on a truncated file: %v, want exit status 1; output:\n%s", err, out)
	}
	want := "groupcastd: data file " + path + " is corrupt: "
	if !strings.HasPrefix(string(out), want) || !strings.Contains(string(out), "restore it from a backup or move it away") {
		t.Fatalf("output %q, want it to start %q and say what to do", out, want)
	}
	if strings.Contains(string(out), "goroutine ") || strings.Contains(string(out), "panic") {
		t.Fatalf("output has a stack trace:\n%s", out)
	}
}
