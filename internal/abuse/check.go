package abuse

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"
)

// readAnswer reads one HTTP answer from c.
func readAnswer(c net.Conn) (Answer, error) {
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return Answer{}, fmt.Errorf("%w: connection closed (%w)", errNoAnswer, err)
		}
		return Answer{}, fmt.Errorf("%w: %w", errNoAnswer, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBody))
	a := Answer{Status: resp.StatusCode, Header: resp.Header, Body: body}
	if err != nil {
		return a, fmt.Errorf("reading the body of a %d: %w", resp.StatusCode, err)
	}
	return a, nil
}

// failures collects a probe's broken expectations; it is safe for
// concurrent use.
type failures struct {
	mu   sync.Mutex
	errs []error
}

func (f *failures) add(format string, args ...any) { f.addErr(fmt.Errorf(format, args...)) }

func (f *failures) addErr(err error) {
	if err != nil {
		f.mu.Lock()
		f.errs = append(f.errs, err)
		f.mu.Unlock()
	}
}

// maxFailures bounds the broken expectations a probe reports in full.
const maxFailures = 12

func (f *failures) err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.errs) > maxFailures {
		return errors.Join(append(f.errs[:maxFailures:maxFailures], fmt.Errorf("… and %d more", len(f.errs)-maxFailures))...)
	}
	return errors.Join(f.errs...)
}

// expect checks an answer: no transport error, a status among want, and,
// for an error status, a JSON body (bad input gets a clear 4xx with a JSON
// body). It returns whether the answer was as wanted.
func (f *failures) expect(what string, a Answer, err error, want ...int) bool {
	if err != nil {
		f.add("%s: %w; want %s", what, err, statuses(want))
		return false
	}
	if !slices.Contains(want, a.Status) {
		f.add("%s: got %d %s, want %s", what, a.Status, clip(a.Body), statuses(want))
		return false
	}
	if a.Status >= 400 {
		if err := jsonBody(a); err != nil {
			f.add("%s: %d answer: %w", what, a.Status, err)
			return false
		}
	}
	return true
}

// jsonBody checks that an answer is JSON, by its content type and its body.
func jsonBody(a Answer) error {
	if ct := a.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return fmt.Errorf("content type %q, want application/json (body %s)", ct, clip(a.Body))
	}
	if !json.Valid(a.Body) {
		return fmt.Errorf("body %s is not JSON", clip(a.Body))
	}
	return nil
}

// retryAfter checks that a refusal tells the client when to come back.
func retryAfter(a Answer) error {
	if a.Header.Get("Retry-After") == "" {
		return fmt.Errorf("%d without Retry-After", a.Status)
	}
	return nil
}

func statuses(want []int) string {
	s := make([]string, len(want))
	for i, w := range want {
		s[i] = fmt.Sprint(w)
	}
	return strings.Join(s, " or ")
}

// clip shortens a body or a request target for a failure message.
func clip[T ~string | ~[]byte](b T) string {
	s := string(b)
	if len(s) > 160 {
		s = s[:160] + fmt.Sprintf("…(%d bytes)", len(s))
	}
	if !utf8.ValidString(s) {
		return fmt.Sprintf("%q", s)
	}
	return s
}

// label names a request in a failure message without its megabytes.
func label(method, target string) string { return method + " " + clip(target) }
