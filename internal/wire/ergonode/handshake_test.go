package ergonode

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"
)

// The classification of failed handshakes, from Ergo's own errors and what
// crossed the wire. The live counterparts (a wrong cookie, TLS on one side)
// are in tests/security.
func TestClassifyHandshakeFailures(t *testing.T) {
	cases := []struct {
		name      string
		incoming  bool
		tls       bool
		first     byte
		got       int
		sentReply bool
		err       error
		want      error
	}{
		{"acceptor: bad challenge reply", true, false, 0, 40, false, errors.New("malformed handshake ('r' invalid reply)"), ErrCookieMismatch},
		{"dialer: closed after our reply", false, false, 0, 30, true, io.EOF, ErrCookieMismatch},
		{"dialer: reset after our reply", false, false, 0, 30, true, errors.New("read tcp: connection reset by peer"), ErrCookieMismatch},
		{"dialer: bad ack digest", false, false, 0, 50, true, errors.New("malformed handshake ('a' digest)"), ErrCookieMismatch},
		{"timeout", false, false, 0, 0, false, errors.New("handshake timeout"), ErrHandshakeTimeout},
		{"tls listener, plain peer", true, true, 0, 0, false, tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, ErrTLSMismatch},
		{"plain listener, TLS peer", true, false, 0x16, 200, false, errors.New("malformed handshake (wrong packet length)"), ErrTLSMismatch},
		{"plain dialer, TLS answer", false, false, 0x15, 7, false, errors.New("malformed handshake (wrong packet length)"), ErrTLSMismatch},
		{"tls dialer, plain peer", false, true, 0, 0, false, io.EOF, ErrTLSMismatch},
		{"plain dialer, silent close", false, false, 0, 0, false, io.EOF, ErrNoAnswer},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := &watched{first: c.first, got: c.got, sentReply: c.sentReply}
			cause, detail := classify(c.incoming, c.tls, w, c.err)
			if !errors.Is(cause, c.want) {
				t.Fatalf("cause %v (%s), want %v", cause, detail, c.want)
			}
			e := &HandshakeError{Local: "a@h", Peer: "b@h", Remote: "127.0.0.1:1", Incoming: c.incoming, Cause: cause, Detail: detail}
			if !errors.Is(e, c.want) || !strings.Contains(e.Error(), "b@h") {
				t.Fatalf("error %q", e)
			}
		})
	}
	// Anything else keeps Ergo's error as the cause.
	other := errors.New("handshake negotiation failed")
	if cause, _ := classify(false, false, &watched{got: 10}, other); cause != other {
		t.Fatalf("cause %v", cause)
	}
}

// A misconfigured peer retrying every second is logged once per cause, and
// the record stays bounded.
func TestHandshakeFailuresAreThrottledAndBounded(t *testing.T) {
	var lines []string
	logf := func(f string, a ...interface{}) { lines = append(lines, fmt.Sprintf(f, a...)) }
	// The record is process-wide: a name of its own per run (-count=N).
	local := fmt.Sprintf("throttle%d@h", time.Now().UnixNano())
	for i := 0; i < 100; i++ {
		record(&HandshakeError{Local: local, Peer: "wrong@h", Remote: "127.0.0.1:2", Cause: ErrCookieMismatch}, logf)
	}
	if len(lines) != 1 || !strings.Contains(lines[0], "cookie mismatch") {
		t.Fatalf("lines %q", lines)
	}
	if e := LastHandshakeError(local, "wrong@h", 1e9); e == nil || !errors.Is(e, ErrCookieMismatch) {
		t.Fatalf("last %v", e)
	}
	for i := 0; i < 3*maxFailures; i++ {
		record(&HandshakeError{Local: "flood@h", Remote: fmt.Sprintf("127.0.0.1:%d", i), Cause: io.EOF}, func(string, ...interface{}) {})
	}
	failures.mu.Lock()
	n := len(failures.byPeer)
	failures.mu.Unlock()
	if n > maxFailures {
		t.Fatalf("%d records kept", n)
	}
}
