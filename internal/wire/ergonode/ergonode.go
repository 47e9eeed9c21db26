// Package ergonode is the one place where cloister configures Ergo nodes.
//
// Ergo v2.2.4 (module v1.999.224) ships defaults that are wrong for a cluster
// that talks to BEAM nodes: handshake v5 cannot initiate a
// connection to OTP 25.0–25.2, several proto handlers reorder messages on a
// link, so do messages over 64000 bytes (fragmentUnit), the node calls home with anonymous metrics (and gathers racy statistics
// every minute), a remote spawn request
// from an Erlang rpc breaks the link, and the default registrar embeds an EPMD
// listening on every interface. Its edges need guarding too: it handshakes
// incoming connections one at a time (one silent socket holds every peer
// back), dials a peer in plain TCP when the peer's EPMD entry says so even
// with TLS configured, and writes a log line for every bad packet a
// stranger sends (gate.go, ergolog.go). Every node that cloister starts, or
// helps a user start, goes through Options here so none of these can be
// forgotten.
package ergonode

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"reflect"
	"time"

	"github.com/ergo-services/ergo"
	"github.com/ergo-services/ergo/apps/erlang"
	"github.com/ergo-services/ergo/etf"
	"github.com/ergo-services/ergo/gen"
	"github.com/ergo-services/ergo/node"
	"github.com/ergo-services/ergo/proto/dist"

	"github.com/cloister-go/cloister/internal/nodename"
)

// DefaultEPMDPort is the EPMD port used when Options.EPMDPort is zero.
const DefaultEPMDPort uint16 = 4369

// NetworkMailbox is the mailbox size for processes fed from the network.
// Ergo drops a network message silently when the mailbox is full (its
// default is 100), so anything peers write to gets a large one.
const NetworkMailbox uint16 = 8192

// fragmentUnit is the fragmentation unit of every node: a message of this
// many bytes or more goes out in fragments, to a peer that takes them.
// Ergo's link writer buffers packets of up to 64000 bytes and writes a
// longer one straight to the socket, ahead of the packets it still
// buffers: messages overtake each other, or the long packet lands inside
// a half-written one and the link stalls. Ergo's default unit (65000)
// makes fragments over that limit; with this one a packet stays under it
// unless its atom cache header (the message's atoms new to the link)
// exceeds 31978 bytes.
const fragmentUnit = 32000

// Options are the few node settings cloister lets a user choose. The zero
// value is valid: the EPMD on 127.0.0.1:$ERL_EPMD_PORT (4369), served in
// this process when none runs, any free listen port from 15000, no TLS.
type Options struct {
	// Cookie is the distribution cookie. Empty means "cloister".
	Cookie string
	// EPMDHost and EPMDPort name the EPMD this node registers with.
	// Defaults: 127.0.0.1, and $ERL_EPMD_PORT or else 4369. Peers are
	// looked up at EPMDPort on their own hosts.
	EPMDHost string
	EPMDPort uint16
	// With no EPMD answering at EPMDHost:EPMDPort, the node serves
	// cloister's EPMD in its own process (one log line says which EPMD is
	// used), on 127.0.0.1 for a node named @127.0.0.1 or @localhost, else
	// on every interface. EmbeddedEPMD makes that every interface always
	// (one EPMD per container); EPMDClientOnly forbids serving, so that
	// the node fails fast when no EPMD runs.
	EmbeddedEPMD   bool
	EPMDClientOnly bool
	// ListenPort fixes the distribution port; 0 scans ListenBegin..ListenEnd
	// (defaults 15000..65000).
	ListenPort             uint16
	ListenBegin, ListenEnd uint16
	// ListenHost is the interface to listen on; default: the node name's host.
	ListenHost string
	// TLS, when set, is used for the listener and every outgoing
	// connection: the node then neither accepts nor sends a plaintext
	// distribution link, whatever a peer's EPMD entry says. It must hold
	// a certificate (Start fails otherwise). Peers are verified with its
	// RootCAs (outgoing) and, with ClientAuth set, ClientCAs (incoming).
	TLS *tls.Config
	// HandshakeTimeout bounds one outgoing handshake. Default 5 s.
	HandshakeTimeout time.Duration
	// AcceptTimeout bounds one incoming handshake, from the accepted
	// connection to the peer's last handshake message. Incoming
	// handshakes run concurrently, so a slow or silent peer delays no
	// other. Default DefaultAcceptTimeout (2 s).
	AcceptTimeout time.Duration
	// MaxPendingHandshakes caps the incoming handshakes in progress; a new
	// connection past it drops the oldest pending one. Default
	// DefaultMaxPendingHandshakes (128).
	MaxPendingHandshakes int
	// Applications are started in order inside Start, after Ergo's own.
	Applications []gen.ApplicationBehavior
	// Env is the node environment inherited by every process.
	Env map[gen.EnvKey]interface{}
	// WrapHandshake and WrapProto let a distribution filter wrap Ergo's
	// handshake and proto handlers (BEAM interop, see package distfilter).
	WrapHandshake func(node.HandshakeInterface) node.HandshakeInterface
	WrapProto     func(node.ProtoInterface) node.ProtoInterface
	// PlainDistribution tells cloister.StartNode not to install the BEAM
	// distribution filter (package distfilter) it adds by default when no
	// Wrap hook is set.
	PlainDistribution bool
	// LogEvery is the throttle window of the log lines a peer can
	// trigger: each cause is written at once, then at most once per window
	// with the count of lines held back. Default LogEvery (30 s).
	LogEvery time.Duration
	// Logf receives the node's own diagnostics, such as the cause of a
	// failed handshake, each cause at most once per LogEvery with a count
	// of the lines held back. Nil means log.Printf.
	Logf func(format string, args ...interface{})
}

// ValidateName checks a node name by the project's one rule (package
// nodename): name@host, at most 255 bytes, no spaces.
func ValidateName(name string) error {
	if err := nodename.Check(name); err != nil {
		return fmt.Errorf("cloister: %w", err)
	}
	return nil
}

// NodeOptions returns Ergo options with every safe setting applied.
func NodeOptions(o Options) node.Options {
	po := node.DefaultProtoOptions()
	// One handler per link: several reorder messages.
	po.NumHandlers = 1
	// Every packet through Ergo's link writer, in order (see fragmentUnit).
	po.FragmentationUnit = fragmentUnit

	flags := node.DefaultFlags()
	// A BEAM rpc arrives as a spawn request that stock Ergo answers by
	// dropping the link half-open; without the flag OTP answers
	// {badrpc, notsup} locally and the link survives.
	flags.EnableRemoteSpawn = false

	hs := dist.CreateHandshake(dist.HandshakeOptions{
		Version: dist.HandshakeVersion6, // v5 cannot dial OTP 25.0–25.2
		Timeout: innerTimeout(o),
	})
	proto := dist.CreateProto(po)
	// Link liveness (liveness.go): right above Ergo's proto, so it sees
	// every byte Ergo writes and reads.
	links := newLinks()
	proto = withLiveness(proto, links)
	// Name the cause of a failed handshake (cookie, TLS, timeout): Ergo
	// only says "no route to node".
	hs = Diagnose(hs)
	if o.WrapHandshake != nil {
		hs = o.WrapHandshake(hs)
	}
	if o.WrapProto != nil {
		proto = o.WrapProto(proto)
	}
	// Terminate the connections Ergo sets up and drops without serving (a
	// lost simultaneous-connect race): they leak goroutines otherwise.
	// Above every wrapper, so each one sees the Terminate of what it saw
	// set up (the filter keeps each connection's peer until then).
	proto = ReapUnserved(proto)
	// Outermost: concurrent incoming handshakes, TLS on every outgoing
	// link when configured, failures logged throttled and kept for
	// Connect (gate.go).
	g := newGate(hs, proto, o, logfOrDefault(o.Logf))
	env := make(map[gen.EnvKey]interface{}, len(o.Env)+2)
	for k, v := range o.Env {
		env[k] = v
	}
	env[envGate] = g
	env[envLinks] = links

	l := node.Listener{
		Listen:      o.ListenPort,
		ListenBegin: o.ListenBegin,
		ListenEnd:   o.ListenEnd,
		Hostname:    o.ListenHost,
	}
	return node.Options{
		Applications: o.Applications,
		Env:          env,
		Flags:        flags,
		TLS:          o.TLS,
		Handshake:    g,
		Proto:        &gateProto{ProtoInterface: proto, g: g},
		// Dials go through the gate (routes): named, and TLS when set.
		Registrar: &routes{Registrar: registrar(o), g: g},
		Listeners: []node.Listener{l},
		// The call-home to metrics.ergo.services is on by default.
		System: node.System{DisableAnonMetrics: true},
	}
}

// Start starts an Ergo node named name with the safe options.
func Start(name string, o Options) (node.Node, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	cookie := o.Cookie
	if cookie == "" {
		cookie = "cloister"
	}
	if err := checkTLS(o.TLS); err != nil {
		return nil, err
	}
	captureErgoLog(o.Logf, o.LogEvery)
	opts := NodeOptions(o)
	// Ergo's StartNode prepends its "system" application, whose only
	// process, system_metrics, gathers node and network statistics every
	// minute by reading the links' counters without synchronisation (a
	// data race under -race) and hosts the anonymous
	// call-home. cloister has its own metrics, so the node is started
	// without it: Ergo's "erlang" application (net_kernel, global
	// name server) first, then the caller's.
	env := make(map[gen.EnvKey]interface{}, len(opts.Env)+1)
	for k, v := range opts.Env {
		env[k] = v
	}
	env[node.EnvKeyVersion] = node.Version{Release: ergo.Version, Prefix: ergo.VersionPrefix, OTP: ergo.VersionOTP}
	opts.Env = env
	opts.Applications = append([]gen.ApplicationBehavior{erlang.CreateApp()}, opts.Applications...)
	n, err := node.StartWithContext(context.Background(), name, cookie, opts)
	if err != nil {
		return nil, fmt.Errorf("cloister: start node %s: %w", name, err)
	}
	if g, ok := opts.Env[envGate].(*gate); ok {
		g.attach(n)
	}
	return n, nil
}

// innerTimeout is the timer of Ergo's own handshake, set well past the
// deadlines the gate puts on the socket: a deadline ends the handshake
// with a read error, while Ergo's timer returns with its reader goroutine
// still reading into the buffer the return releases (a data race inside
// Ergo). One second past was not enough: under -race at load 100 the
// deadline's read error came later than that.
func innerTimeout(o Options) time.Duration {
	d := max(o.HandshakeTimeout, o.AcceptTimeout, DefaultAcceptTimeout, defaultHandshakeTimeout)
	return 2 * d
}

// checkTLS refuses a TLS configuration Ergo would silently ignore: without
// a certificate, Ergo's listener falls back to plain TCP.
func checkTLS(c *tls.Config) error {
	if c != nil && len(c.Certificates) == 0 && c.GetCertificate == nil {
		return errors.New("cloister: TLS is configured without a certificate (set Certificates or GetCertificate): " +
			"refusing to start, the distribution would run in plain TCP")
	}
	return nil
}

func logfOrDefault(logf func(string, ...interface{})) func(string, ...interface{}) {
	if logf == nil {
		return log.Printf
	}
	return logf
}

// ErrEmptyTerm is returned for a message Ergo cannot send safely: a
// top-level nil or empty list sends Ergo's encoder into an endless loop or
// makes the peer drop the link.
var ErrEmptyTerm = errors.New("cloister: refusing to send a top-level nil or empty list (Ergo cannot encode it safely)")

// CheckSendable reports ErrEmptyTerm for a term that must never be sent:
// nil, or an empty list of any Go slice type Ergo encodes as a list (an
// empty []byte is a binary and is fine). Nested empty lists are fine.
func CheckSendable(t interface{}) error {
	if t == nil {
		return ErrEmptyTerm
	}
	if _, ok := t.(etf.Tuple); ok {
		return nil // an empty tuple {} is a fine term
	}
	v := reflect.ValueOf(t)
	switch v.Kind() {
	case reflect.Slice:
		if v.Type().Elem().Kind() != reflect.Uint8 && v.Len() == 0 {
			return ErrEmptyTerm
		}
	case reflect.Ptr, reflect.Interface:
		if v.IsNil() {
			return ErrEmptyTerm
		}
	}
	return nil
}
