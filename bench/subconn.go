package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"
)

// SubConn is one subscriber's connection to the server under test, over
// which its long-polls go one after the other. It speaks just the HTTP/1.1
// the fan-out needs (a GET with a few header lines; an answer with
// Content-Length, chunked or ended by closing, whose status, body, Last-Modified and Etag are
// read), with a request built in a buffer it keeps and an answer read into
// another: at 1,000 subscribers the load generator's core was the
// saturated one in groupcast's runs (9.8–9.9 s of CPU per 10 s step, the
// node's 9.4–9.5), a general client's work per answer (fasthttp's
// connection pool, URI and header parsing, deadlines) charged to whichever
// server answers more often. Both servers are polled through it.
type SubConn struct {
	addr string
	c    net.Conn
	br   *bufio.Reader
	req  []byte
	body []byte
	// LastModified and Etag are the last answer's headers of those names
	// (empty when it had none), valid until the next Get.
	LastModified, Etag []byte
	hdr                []byte // LastModified and Etag point into it
}

// maxSubBody bounds an answer's body: more is an error, not an allocation
// of whatever size a broken answer names.
const maxSubBody = 64 << 20

// subReadTimeout bounds one long-poll's wait for its answer (the servers
// hold a poll at most a few minutes).
const subReadTimeout = 5 * time.Minute

// NewSubConn returns a subscriber's connection to addr (host:port),
// dialled at its first Get.
func NewSubConn(addr string) *SubConn { return &SubConn{addr: addr} }

// Close closes the connection; the next Get dials again.
func (s *SubConn) Close() error {
	if s.c == nil {
		return nil
	}
	err := s.c.Close()
	s.c = nil
	return err
}

// Get sends GET target (a path and query) with extra header lines (each
// ending in CRLF; nil for none) and returns the answer's status and body,
// the body valid until the next Get. A failed exchange closes the
// connection.
func (s *SubConn) Get(target, extra []byte) (status int, body []byte, err error) {
	if s.c == nil {
		c, err := net.DialTimeout("tcp", s.addr, 30*time.Second)
		if err != nil {
			return 0, nil, err
		}
		s.c = c
		if s.br == nil {
			s.br = bufio.NewReaderSize(c, 16<<10)
		} else {
			s.br.Reset(c)
		}
	}
	req := append(s.req[:0], "GET "...)
	req = append(req, target...)
	req = append(req, " HTTP/1.1\r\nHost: "...)
	req = append(req, s.addr...)
	req = append(req, "\r\n"...)
	req = append(req, extra...)
	req = append(req, "\r\n"...)
	s.req = req
	if err := s.c.SetDeadline(time.Now().Add(subReadTimeout)); err != nil {
		s.Close()
		return 0, nil, err
	}
	if _, err := s.c.Write(req); err != nil {
		s.Close()
		return 0, nil, err
	}
	status, body, err = s.read()
	if err != nil {
		s.Close()
	}
	return status, body, err
}

// read reads one answer.
func (s *SubConn) read() (status int, body []byte, err error) {
	line, err := s.br.ReadSlice('\n')
	if err != nil {
		return 0, nil, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, nil, fmt.Errorf("bad status line %q", line)
	}
	if status, err = strconv.Atoi(string(line[9:12])); err != nil {
		return 0, nil, fmt.Errorf("bad status line %q", line)
	}
	length, chunked, closing := -1, false, false
	s.hdr, s.LastModified, s.Etag = s.hdr[:0], nil, nil
	var lmAt, etAt [2]int // where in hdr
	for {
		line, err := s.br.ReadSlice('\n')
		if err != nil {
			return 0, nil, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return 0, nil, fmt.Errorf("bad header line %q", line)
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(value)); err != nil || length < 0 || length > maxSubBody {
				return 0, nil, fmt.Errorf("bad Content-Length %q", value)
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(value, []byte("chunked"))
		case bytes.EqualFold(name, []byte("Connection")):
			closing = bytes.EqualFold(value, []byte("close"))
		case bytes.EqualFold(name, []byte("Last-Modified")):
			lmAt = [2]int{len(s.hdr), len(s.hdr) + len(value)}
			s.hdr = append(s.hdr, value...)
		case bytes.EqualFold(name, []byte("Etag")):
			etAt = [2]int{len(s.hdr), len(s.hdr) + len(value)}
			s.hdr = append(s.hdr, value...)
		}
	}
	s.LastModified, s.Etag = s.hdr[lmAt[0]:lmAt[1]], s.hdr[etAt[0]:etAt[1]]
	switch {
	case chunked:
		body, err = s.readChunked()
	case length >= 0:
		if cap(s.body) < length {
			s.body = make([]byte, length, length+length/4)
		}
		body = s.body[:length]
		_, err = io.ReadFull(s.br, body)
	case status == 204 || status == 304 || status/100 == 1:
		body = s.body[:0]
	default: // the body ends with the connection (Nchan's multi-channel answers)
		body, err = s.readToEOF()
		closing = true
	}
	if err != nil {
		return 0, nil, err
	}
	if closing {
		s.Close()
	}
	return status, body, nil
}

// readToEOF reads a body that ends with the connection into s.body.
func (s *SubConn) readToEOF() ([]byte, error) {
	body := s.body[:0]
	for {
		if len(body) == cap(body) {
			body = append(body, 0)[:len(body)]
		}
		n, err := s.br.Read(body[len(body):cap(body)])
		body = body[:len(body)+n]
		if len(body) > maxSubBody {
			return nil, errors.New("an answer's body past the bound")
		}
		if errors.Is(err, io.EOF) {
			s.body = body
			return body, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// readChunked reads a chunked body into s.body.
func (s *SubConn) readChunked() ([]byte, error) {
	body := s.body[:0]
	for {
		line, err := s.br.ReadSlice('\n')
		if err != nil {
			return nil, err
		}
		size, _, _ := bytes.Cut(bytes.TrimRight(line, "\r\n"), []byte(";"))
		n, err := strconv.ParseInt(string(bytes.TrimSpace(size)), 16, 32)
		if err != nil || n < 0 || int64(len(body))+n > maxSubBody {
			return nil, fmt.Errorf("bad chunk size %q", line)
		}
		if n == 0 {
			for { // trailers, then the empty line
				line, err := s.br.ReadSlice('\n')
				if err != nil {
					return nil, err
				}
				if len(bytes.TrimRight(line, "\r\n")) == 0 {
					s.body = body
					return body, nil
				}
			}
		}
		at := len(body)
		body = append(body, make([]byte, n)...)
		if _, err := io.ReadFull(s.br, body[at:]); err != nil {
			return nil, err
		}
		if crlf, err := s.br.ReadSlice('\n'); err != nil || len(bytes.TrimRight(crlf, "\r\n")) != 0 {
			return nil, fmt.Errorf("chunk not ended by CRLF: %v", err)
		}
	}
}
