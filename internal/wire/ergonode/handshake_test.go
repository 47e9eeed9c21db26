package ergonode

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
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
		{"accept deadline", true, false, 0, 0, false, fmt.Errorf("read: %w", os.ErrDeadlineExceeded), ErrHandshakeTimeout},
		{"tls listener, peer cert from another CA", true, true, 0, 0, false, errors.New("tls: failed to verify certificate: x509: certificate signed by unknown authority"), ErrTLSCertificate},
		{"tls listener, peer refused our cert", true, true, 0, 0, false, errors.New("remote error: tls: bad certificate"), ErrTLSCertificate},
		{"tls listener, plain peer", true, true, 0, 0, false, tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, ErrTLSMismatch},
		{"plain listener, TLS peer", true, false, 0x16, 200, false, errors.New("malformed handshake (wrong packet length)"), ErrTLSMismatch},
		{"plain dialer, TLS answer", false, false, 0x15, 7, false, errors.New("malformed handshake (wrong packet length)"), ErrTLSMismatch},
		{"tls dialer, plain peer", false, true, 0, 0, false, io.EOF, ErrTLSMismatch},
		{"plain dialer, silent close", false, false, 0, 0, false, io.EOF, ErrNoAnswer},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := &watched{first: c.first, got: c.got, sentReply: c.sentReply}
			detail, cause := classify(c.incoming, c.tls, w, c.err)
			if !errors.Is(cause, c.want) {
				t.Fatalf("cause %v (%s), want %v", cause, detail, c.want)
			}
			e := &HandshakeError{Local: "a@h", Peer: "b@h", Remote: "127.0.0.1:1", Incoming: c.incoming, Cause: cause, Detail: detail}
			if !errors.Is(e, c.want) || !strings.Contains(e.Error(), "b@h") {
				t.Fatalf("error %q", e)
			}
		})
	}
	// A send_status other than ok (the peer's first message) is Ergo's
	// "handshake negotiation failed"; the status says why.
	negotiation := errors.New("handshake negotiation failed")
	for _, c := range []struct {
		status string
		tls    bool
		want   error
		detail string
	}{
		{"alive", false, ErrAlreadyConnected, "status alive"},
		{"nok", false, ErrAlreadyConnected, "status nok"},
		{"alive", true, ErrAlreadyConnected, "status alive"},
		{"not_allowed", false, nil, "does not allow this node"},
	} {
		msg := append([]byte{0, byte(1 + len(c.status)), 's'}, c.status...)
		if c.tls {
			msg = append([]byte{0, 0}, msg...)
		}
		w := &watched{tls: c.tls}
		w.head, w.got, w.first = msg, len(msg), msg[0]
		detail, cause := classify(false, c.tls, w, negotiation)
		if c.want != nil && !errors.Is(cause, c.want) || cause == negotiation || !strings.Contains(detail, c.detail) {
			t.Errorf("status %s (tls %v): %v (%s)", c.status, c.tls, cause, detail)
		}
		if errors.Is(cause, ErrCookieMismatch) {
			t.Errorf("status %s read as a cookie mismatch", c.status)
		}
	}
	// Anything else keeps Ergo's error as the cause.
	other := errors.New("handshake negotiation failed")
	if _, cause := classify(false, false, &watched{got: 10}, other); cause != other {
		t.Fatalf("cause %v", cause)
	}
}

// A misconfigured peer retrying every second is logged once per cause and
// window; the window's summary says how many lines it stands for, and a
// flood of distinct causes stays bounded.
func TestThrottleLogsOncePerCauseWithACount(t *testing.T) {
	var lines []string
	th := newThrottle(time.Minute, func(f string, a ...interface{}) { lines = append(lines, fmt.Sprintf(f, a...)) })
	var timers []func()
	th.after = func(_ time.Duration, fn func()) { timers = append(timers, fn) }
	for i := 0; i < 100; i++ {
		th.log("cookie", fmt.Sprintf("cookie mismatch %d", i))
	}
	th.log("tls", "tls mismatch")
	if len(lines) != 2 || lines[0] != "cookie mismatch 0" || lines[1] != "tls mismatch" {
		t.Fatalf("lines %q", lines)
	}
	if len(timers) != 1 {
		t.Fatalf("%d summaries scheduled, want 1 (tls had nothing suppressed)", len(timers))
	}
	timers[0]() // the window ends
	if len(lines) != 3 || !strings.Contains(lines[2], "cookie mismatch 99") || !strings.Contains(lines[2], "[99 more like this") {
		t.Fatalf("summary %q", lines[len(lines)-1])
	}
	// A quiet window forgets the cause: the next occurrence is logged at once.
	timers[1]()
	th.log("cookie", "cookie mismatch again")
	if len(lines) != 4 || lines[3] != "cookie mismatch again" {
		t.Fatalf("lines %q", lines)
	}
	for i := 0; i < 3*maxCauses; i++ {
		th.log(fmt.Sprintf("peer%d", i), "x")
	}
	th.mu.Lock()
	n := len(th.causes)
	th.mu.Unlock()
	if n > maxCauses+1 {
		t.Fatalf("%d causes kept", n)
	}
	if len(lines) > 4+maxCauses+1 {
		t.Fatalf("%d lines for %d distinct causes", len(lines)-4, 3*maxCauses)
	}
}

// Ergo's warnings that repeat cloister's own lines or say nothing
// actionable are dropped; the others are kept by cause.
func TestErgoWarningsByCause(t *testing.T) {
	drop := []string{
		"[a@h] Can't handshake with 127.0.0.1:5555: EOF",
		"Handshake error: malformed handshake ('r' invalid reply)",
		`Could not connect to "b@h" (127.0.0.1:1): dial tcp: connection refused`,
		`initialization process failed <5A8.0.1011>["x"] &app.StartError{} at a.go[x:1]`,
		"Erlang sent a etf.Tuple as a map key: etf.Tuple{} => 1. Ignored this item. Ergo doesn't support it.",
	}
	for _, m := range drop {
		if k, _ := ergoCause(m); k != "" {
			t.Errorf("%q kept as %q", m, k)
		}
	}
	a, _ := ergoCause(`mailbox of <5A8.0.1011>["x"] is full. dropped message from <1.0.2>`)
	b, line := ergoCause(`mailbox of <5A8.0.1012>["y"] is full. dropped message from <1.0.3>`)
	if a != b || a == "" || !strings.HasPrefix(line, "cloister: ") {
		t.Fatalf("mailbox causes %q %q, line %q", a, b, line)
	}
	if _, l := ergoCause(strings.Repeat("x", 5000)); len(l) > 400 {
		t.Fatalf("a %d-byte line", len(l))
	}
}

// The filter on the standard logger's output: Ergo's lines are taken out
// and kept per cause, once per window; every other line passes untouched.
func TestErgoLogFilter(t *testing.T) {
	var out strings.Builder
	f := &ergoFilter{next: &out}
	f.throttle = newThrottle(time.Minute, f.emit)
	f.throttle.after = func(time.Duration, func()) {}
	write := func(s string) {
		if n, err := f.Write([]byte(s)); err != nil || n != len(s) {
			t.Fatalf("write: %d %v", n, err)
		}
	}
	for i := 0; i < 100; i++ {
		write(fmt.Sprintf("2026/12/03 08:00:00 WARNING! mailbox of <5A8.0.%d>[\"x\"] is full. dropped message from <1.0.2>\n", i))
		write("2026/12/03 08:00:00 WARNING! [a@h] Can't handshake with 127.0.0.1:1: malformed handshake\n")
	}
	write("2026/12/03 08:00:01 the program's own line\n")
	want := "2026/12/03 08:00:00 cloister: ergo: a process mailbox is full, a message was dropped: mailbox of <5A8.0.0>[\"x\"] is full. dropped message from <1.0.2>\n" +
		"2026/12/03 08:00:01 the program's own line\n"
	if out.String() != want {
		t.Fatalf("output:\n%s\nwant:\n%s", out.String(), want)
	}
}

// Ergo's own handshake timer stays a backstop well behind the socket
// deadlines: when it fires first, Ergo returns while its reader still
// fills the buffer it releases (a data race under -race, seen with the
// timer one second behind a 60 s accept deadline on a loaded machine).
func TestErgoTimerTrailsTheDeadlines(t *testing.T) {
	for _, o := range []Options{{}, {AcceptTimeout: 60 * time.Second}, {HandshakeTimeout: 30 * time.Second}} {
		d := max(o.AcceptTimeout, o.HandshakeTimeout, DefaultAcceptTimeout, defaultHandshakeTimeout)
		if got := innerTimeout(o); got < 2*d {
			t.Errorf("%+v: Ergo's timer %v, deadline %v", o, got, d)
		}
	}
}
