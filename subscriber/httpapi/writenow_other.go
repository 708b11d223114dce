//go:build !unix

package httpapi

import (
	"net"
	"time"
)

// writeNow writes nothing off Unix: the whole answer is written by the
// goroutine that goes on to serve the connection.
func writeNow(net.Conn, []byte) int { return 0 }

// rawReader reads nothing off Unix: servedConn reads plainly.
type rawReader struct{}

func newRawReader(net.Conn, func() *[]byte, func(*[]byte), *repollQueue, *time.Time) *rawReader {
	return &rawReader{}
}

func (*rawReader) cancel() {}

func (*rawReader) readSome() (*[]byte, int, error) { return nil, 0, nil }
