//go:build race

package httpapi

// raceEnabled: the race detector slows the test enough for the runtime's
// monitor to step in where a test relies on scheduling order.
const raceEnabled = true
