package ergonode

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/ergo-services/ergo/lib"
	"github.com/ergo-services/ergo/node"
)

// Likely causes of a failed distribution handshake, for errors.Is on a
// *HandshakeError. Ergo itself reports "no route to node" for every failed
// connect and logs at most "malformed handshake" or "EOF": users' top
// complaint is "unable to connect" with no reason, so every node cloister
// configures names the cause in its log.
var (
	// ErrCookieMismatch: the two nodes' distribution cookies differ.
	ErrCookieMismatch = errors.New("cloister: distribution cookie mismatch")
	// ErrTLSMismatch: one node uses TLS for distribution and the other not.
	ErrTLSMismatch = errors.New("cloister: TLS on one side only")
	// ErrHandshakeTimeout: the peer accepted the TCP connection but never
	// finished the handshake (frozen, overloaded, or traffic dropped).
	ErrHandshakeTimeout = errors.New("cloister: handshake timed out")
	// ErrNoAnswer: the peer closed the connection before answering our
	// name. A TLS-only listener does that to a plain dialer; so does a
	// port that is not a distribution listener, or a proxy that refuses.
	ErrNoAnswer = errors.New("cloister: the peer closed the connection without answering")
	// ErrTLSRequired: this node uses TLS and refused to send or accept a
	// plaintext distribution link.
	ErrTLSRequired = errors.New("cloister: TLS required")
	// ErrTLSCertificate: the TLS handshake failed on a certificate (not
	// signed by a trusted authority, wrong name, expired, or missing).
	ErrTLSCertificate = errors.New("cloister: TLS certificate refused")
	// ErrAlreadyConnected: the peer refused the link because it already
	// has one to this node, or is making one: a BEAM node answers our name
	// with status alive (a link it has not seen close, e.g. of this node's
	// previous run) or nok (its own dial to this node wins). The cookie was
	// not checked.
	ErrAlreadyConnected = errors.New("cloister: the peer already has a link to this node")
)

// HandshakeError is a failed distribution handshake: who, which way, and
// the likely cause (one of the Err* sentinels when it could be told, else
// Ergo's own error).
type HandshakeError struct {
	Local string
	// Peer is the peer's node name when it got far enough to say it.
	Peer string
	// Remote is the peer's address.
	Remote string
	// Incoming: the peer dialled us.
	Incoming bool
	// Cause is the likely cause; Detail says how it was told.
	Cause  error
	Detail string
	At     time.Time
}

func (e *HandshakeError) Error() string {
	who := e.Remote
	if e.Peer != "" {
		who = e.Peer + " at " + e.Remote
	}
	dir := "outgoing"
	if e.Incoming {
		dir = "incoming"
	}
	msg := fmt.Sprintf("cloister: handshake with %s (%s) failed: %s", who, dir, strings.TrimPrefix(e.Cause.Error(), "cloister: "))
	if e.Detail != "" {
		msg += " (" + e.Detail + ")"
	}
	return msg
}

// Unwrap gives the cause.
func (e *HandshakeError) Unwrap() error { return e.Cause }

// diagnosing wraps Ergo's handshake: it watches the bytes of the
// handshake and, when it fails, returns a *HandshakeError with the likely
// cause (cookie, TLS, timeout) in place of Ergo's bare error. It logs
// nothing: the gate above it names the peer and logs, throttled.
// Successful handshakes are untouched.
type diagnosing struct {
	node.HandshakeInterface
	mu    sync.Mutex
	local string
}

// Diagnose wraps a handshake so that its failures come back as
// *HandshakeError (a connection closed before its first byte, a port
// probe, keeps Ergo's io.EOF). NodeOptions applies it to every node.
func Diagnose(h node.HandshakeInterface) node.HandshakeInterface {
	return &diagnosing{HandshakeInterface: h}
}

// Init implements node.HandshakeInterface.
func (d *diagnosing) Init(nodename string, creation uint32, flags node.Flags) error {
	d.mu.Lock()
	d.local = nodename
	d.mu.Unlock()
	return d.HandshakeInterface.Init(nodename, creation, flags)
}

func (d *diagnosing) name() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.local
}

// Start implements node.HandshakeInterface: we dial.
func (d *diagnosing) Start(remote net.Addr, conn lib.NetReadWriter, useTLS bool, cookie string) (node.HandshakeDetails, error) {
	w := &watched{NetReadWriter: conn, tls: useTLS}
	details, err := d.HandshakeInterface.Start(remote, w, useTLS, cookie)
	if err != nil {
		return details, d.fail(remote, details.Name, false, useTLS, w, err)
	}
	return details, nil
}

// Accept implements node.HandshakeInterface: the peer dialled us.
func (d *diagnosing) Accept(remote net.Addr, conn lib.NetReadWriter, useTLS bool, cookie string) (node.HandshakeDetails, error) {
	w := &watched{NetReadWriter: conn, tls: useTLS}
	details, err := d.HandshakeInterface.Accept(remote, w, useTLS, cookie)
	if err != nil && !(errors.Is(err, io.EOF) && w.received() == 0) {
		// A connection closed before a single byte is a port probe, not
		// a failed handshake.
		return details, d.fail(remote, details.Name, true, useTLS, w, err)
	}
	return details, err
}

func (d *diagnosing) fail(remote net.Addr, peer string, incoming, useTLS bool, w *watched, err error) *HandshakeError {
	e := &HandshakeError{Local: d.name(), Peer: peer, Incoming: incoming, At: time.Now()}
	if remote != nil {
		e.Remote = remote.String()
	}
	e.Detail, e.Cause = classify(incoming, useTLS, w, err)
	return e
}

// classify tells the likely cause of a failed handshake from Ergo's error
// and what went over the wire.
func classify(incoming, useTLS bool, w *watched, err error) (detail string, cause error) {
	msg := err.Error()
	first, got, sentReply := w.facts()
	var rh tls.RecordHeaderError
	switch {
	case !incoming && strings.Contains(msg, "handshake negotiation failed"):
		// Ergo's error for any send_status other than ok.
		if status := w.status(); status != "" {
			return refusedStatus(status)
		}
	case strings.Contains(msg, "handshake timeout"), strings.Contains(msg, "handshake accept timeout"), errors.Is(err, os.ErrDeadlineExceeded):
		return "no handshake answer in time: the peer is frozen or overloaded, or the traffic is dropped", ErrHandshakeTimeout
	case incoming && strings.Contains(msg, "'r' invalid reply"):
		return "its challenge reply does not match our cookie", ErrCookieMismatch
	case !incoming && strings.Contains(msg, "'a' digest"):
		return "its challenge ack does not match our cookie", ErrCookieMismatch
	case useTLS && isCertError(err):
		return msg, ErrTLSCertificate
	case useTLS && errors.As(err, &rh):
		return "the peer speaks plain TCP and this node TLS", ErrTLSMismatch
	case !useTLS && got > 0 && (first == 0x16 || first == 0x15):
		// A TLS record (handshake 0x16 or alert 0x15) where a 2-byte
		// distribution length was expected.
		if incoming {
			return "the peer speaks TLS and this node plain TCP", ErrTLSMismatch
		}
		return "the peer answered in TLS and this node speaks plain TCP", ErrTLSMismatch
	case useTLS && got == 0 && !sentReply:
		return "TLS handshake failed: " + msg + "; is TLS enabled on both nodes?", ErrTLSMismatch
	case !incoming && sentReply && isClosed(err):
		// Erlang and Ergo both close the link on a bad challenge reply.
		return "the peer closed the link after our challenge reply", ErrCookieMismatch
	case !incoming && !useTLS && got == 0 && isClosed(err):
		return "it may require TLS (this node speaks plain TCP), refuse this node, or not be a distribution port", ErrNoAnswer
	}
	return "", err
}

// refusedStatus tells what a send_status other than ok (the peer's first
// answer to our name) means.
func refusedStatus(status string) (detail string, cause error) {
	switch status {
	case "alive":
		return "it answered status alive: it holds a link to this node that it has not seen close (a previous run of this node?)", ErrAlreadyConnected
	case "nok":
		return "it answered status nok: it is dialling this node at the same time and keeps its own link", ErrAlreadyConnected
	case "not_allowed":
		return "it answered status not_allowed: it does not allow this node (net_kernel:allow/1)", errors.New("cloister: the peer does not allow this node")
	}
	return fmt.Sprintf("it answered status %q", status), errors.New("cloister: the peer refused the link")
}

// isCertError tells a TLS handshake that failed on a certificate, ours
// (the peer's alert) or the peer's (our verification).
func isCertError(err error) bool {
	var ve *tls.CertificateVerificationError
	if errors.As(err, &ve) {
		return true
	}
	s := err.Error()
	for _, m := range []string{"bad certificate", "unknown certificate authority", "certificate required", "certificate expired", "x509:"} {
		if strings.Contains(s, m) {
			return true
		}
	}
	return false
}

func isClosed(err error) bool {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
		return true
	}
	s := err.Error()
	return strings.Contains(s, "connection reset") || strings.Contains(s, "broken pipe")
}

// watched records the first bytes received, how much was received, and
// whether the challenge reply ('r', our answer to the peer's challenge)
// went out. Ergo reads on another goroutine, hence the lock.
type watched struct {
	lib.NetReadWriter
	tls       bool
	mu        sync.Mutex
	head      []byte // the first headLen bytes received
	first     byte
	got       int
	sentReply bool
}

// headLen is how much of the peer's first bytes watched keeps: a status
// message ('s' and at most "ok_simultaneous" or "not_allowed") fits.
const headLen = 32

func (w *watched) Read(b []byte) (int, error) {
	n, err := w.NetReadWriter.Read(b)
	if n > 0 {
		w.mu.Lock()
		if w.got == 0 {
			w.first = b[0]
		}
		if len(w.head) < headLen {
			w.head = append(w.head, b[:min(n, headLen-len(w.head))]...)
		}
		w.got += n
		w.mu.Unlock()
	}
	return n, err
}

func (w *watched) Write(b []byte) (int, error) {
	// Handshake messages are a 2-byte length and a tag (a 4-byte length
	// over TLS); Ergo writes each in one call.
	tag := 2
	if w.tls {
		tag = 4
	}
	if len(b) > tag && b[tag] == 'r' {
		w.mu.Lock()
		w.sentReply = true
		w.mu.Unlock()
	}
	return w.NetReadWriter.Write(b)
}

func (w *watched) facts() (first byte, got int, sentReply bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.first, w.got, w.sentReply
}

// status is the peer's send_status ("ok", "alive", ...) when its first
// message was one, else "".
func (w *watched) status() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	h := 2
	if w.tls {
		h = 4
	}
	if len(w.head) < h+1 || w.head[h] != 's' {
		return ""
	}
	l := 0
	for _, b := range w.head[:h] {
		l = l<<8 | int(b)
	}
	end := min(h+l, len(w.head))
	if end <= h {
		return ""
	}
	return string(w.head[h+1 : end])
}

func (w *watched) received() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.got
}
