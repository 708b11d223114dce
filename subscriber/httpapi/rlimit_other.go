//go:build !unix

package httpapi

// openFileLimit returns 0: the descriptor limit is unknown here.
func openFileLimit() uint64 { return 0 }
