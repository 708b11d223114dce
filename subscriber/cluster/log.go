package cluster

import (
	"context"
	"log"
	"log/slog"
	"strings"
)

// newMemberlistLogger returns a *log.Logger, the kind memberlist takes,
// whose lines go to l at debug level: memberlist logs every probe and
// join, which is noise unless one is debugging the gossip itself.
func newMemberlistLogger(l *slog.Logger) *log.Logger {
	return log.New(debugWriter{l.With("component", "memberlist")}, "", 0)
}

// debugWriter logs each line written to it at debug level.
type debugWriter struct{ l *slog.Logger }

func (w debugWriter) Write(p []byte) (int, error) {
	if w.l.Enabled(context.Background(), slog.LevelDebug) {
		w.l.Debug(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}
