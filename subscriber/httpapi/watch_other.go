//go:build !linux

package httpapi

import (
	"log/slog"
	"net"
)

// connWatcher would notice parked connections whose client went away; off
// Linux it watches nothing, and a dropped poll holds its connection until
// it answers (at its hold at the latest).
type connWatcher struct{ log *slog.Logger }

func (w *connWatcher) watch(net.Conn, func()) (unwatch func()) { return nil }
