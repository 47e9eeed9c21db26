package ergonode

import (
	"container/list"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ergo-services/ergo/gen"
	"github.com/ergo-services/ergo/lib"
	"github.com/ergo-services/ergo/node"
)

// Defaults for incoming handshakes (Options.AcceptTimeout and
// Options.MaxPendingHandshakes).
const (
	DefaultAcceptTimeout        = 2 * time.Second
	DefaultMaxPendingHandshakes = 128
)

// envGate is the node environment key under which a node started by Start
// keeps its gate, so that Connect finds the dial's handshake failure.
const envGate gen.EnvKey = "cloister:wire-gate"

// defaultHandshakeTimeout bounds an outgoing handshake (Ergo's default).
const defaultHandshakeTimeout = 5 * time.Second

// gate is the outermost handshake of every node: it is what Ergo calls.
//
// Incoming: Ergo's listener runs the handshake of each accepted connection
// inline in its accept loop, so one peer that connects and says nothing
// holds every later peer back for the whole handshake timeout. The gate
// returns to Ergo at once: it takes its own descriptor of the socket (Ergo
// then closes its copy without a word), runs the handshake on a goroutine
// of its own under AcceptTimeout, with at most MaxPendingHandshakes in
// progress (the oldest is dropped for a new one), and hands a finished
// link back to Ergo through Ergo's own listener: it dials that listener
// from this host, and when Ergo accepts this stand-in connection the gate
// answers at once with the finished handshake, and the proto (gateProto)
// serves the accepted socket in its place. The stand-in stays open while
// the link lives: Ergo closing it (a disconnect, the end of the link)
// closes the link's socket.
//
// Outgoing: with TLS configured, every link is TLS, whatever the peer's
// EPMD entry says; the gate makes the TLS handshake itself (Ergo's own
// dial would skip TLS for a peer registered without it, and would verify a
// peer with its own empty configuration).
//
// Failures are logged through a per-cause throttle and, for a dial, kept
// for Connect to return with the dial's result.
type gate struct {
	inner         node.HandshakeInterface
	proto         node.ProtoInterface
	tls           *tls.Config
	acceptTimeout time.Duration
	dialTimeout   time.Duration
	maxPending    int
	logs          *throttle

	mu      sync.Mutex
	local   string
	node    node.Node
	closed  bool
	pending *list.List // of *pendingConn, oldest first
	// handovers: finished links by the local address of their stand-in
	// dial, until Ergo accepts it; standIns: by Ergo's side of the
	// stand-in, until the proto takes it; dialling: stand-in dials not
	// yet in handovers.
	handovers map[string]*adoption
	standIns  map[lib.NetReadWriter]*adoption
	dialling  int
	dialSeq   uint64
	dials     map[string]dialFailure
	// resolutions: per peer name, where it last resolved (see
	// LastAddress) and how often it was looked up.
	resolutions map[string]*resolution
	// listenPort: the distribution port this node registered (0 until
	// then), which its Monitor tells peers (see ListenPort).
	listenPort uint16
}

type resolution struct {
	addr    string // host:port; "" when unknown or forgotten
	lookups uint64
}

type dialFailure struct {
	seq uint64
	err *HandshakeError
}

const maxDialFailures = 1024

func every(d time.Duration) time.Duration {
	if d <= 0 {
		return LogEvery
	}
	return d
}

func newGate(inner node.HandshakeInterface, proto node.ProtoInterface, o Options, logf func(string, ...interface{})) *gate {
	g := &gate{
		inner:         inner,
		proto:         proto,
		tls:           o.TLS,
		acceptTimeout: o.AcceptTimeout,
		dialTimeout:   o.HandshakeTimeout,
		maxPending:    o.MaxPendingHandshakes,
		logs:          newThrottle(every(o.LogEvery), logf),
		pending:       list.New(),
		handovers:     map[string]*adoption{},
		standIns:      map[lib.NetReadWriter]*adoption{},
		dials:         map[string]dialFailure{},
		resolutions:   map[string]*resolution{},
	}
	if g.acceptTimeout <= 0 {
		g.acceptTimeout = DefaultAcceptTimeout
	}
	if g.dialTimeout <= 0 {
		g.dialTimeout = defaultHandshakeTimeout
	}
	if g.maxPending <= 0 {
		g.maxPending = DefaultMaxPendingHandshakes
	}
	return g
}

// Init implements node.HandshakeInterface.
func (g *gate) Init(nodename string, creation uint32, flags node.Flags) error {
	g.mu.Lock()
	g.local = nodename
	g.mu.Unlock()
	return g.inner.Init(nodename, creation, flags)
}

// Version implements node.HandshakeInterface.
func (g *gate) Version() node.HandshakeVersion { return g.inner.Version() }

// attach gives the gate its started node (to name the peers of static
// routes), and closes the pending handshakes when the node stops.
func (g *gate) attach(n node.Node) {
	g.mu.Lock()
	g.node = n
	g.mu.Unlock()
	go func() {
		n.Wait()
		g.close()
	}()
}

func (g *gate) close() {
	g.mu.Lock()
	g.closed = true
	for e := g.pending.Front(); e != nil; e = e.Next() {
		e.Value.(*pendingConn).conn.Close()
	}
	for _, a := range g.handovers {
		a.conn.Close()
	}
	for _, a := range g.standIns {
		a.conn.Close()
	}
	clear(g.handovers)
	clear(g.standIns)
	g.mu.Unlock()
}

// Accept implements node.HandshakeInterface; Ergo calls it in its accept
// loop, so it never waits on a peer.
func (g *gate) Accept(remote net.Addr, conn lib.NetReadWriter, useTLS bool, cookie string) (node.HandshakeDetails, error) {
	if a := g.handover(remote, conn); a != nil {
		g.mu.Lock()
		g.standIns[conn] = a
		g.mu.Unlock()
		return a.details, nil
	}
	c, isConn := conn.(net.Conn)
	if isConn {
		if own, err := detach(c, useTLS, g.tls); err == nil {
			// Admitted here, in accept order: the oldest is dropped first.
			p := g.admit(own)
			if p == nil {
				own.Close()
				return node.HandshakeDetails{}, io.EOF
			}
			go g.accept(remote, c.LocalAddr(), own, p, useTLS, cookie)
			// io.EOF: Ergo closes its descriptor and logs nothing.
			return node.HandshakeDetails{}, io.EOF
		}
	}
	// A socket that cannot be detached: inline, but bounded.
	if isConn {
		_ = c.SetDeadline(time.Now().Add(g.acceptTimeout))
	}
	d, err := g.inner.Accept(remote, conn, useTLS, cookie)
	if err != nil {
		g.incomingFailed(err)
		return d, io.EOF
	}
	if isConn {
		_ = c.SetDeadline(time.Time{})
	}
	return d, nil
}

// handover returns the finished link a stand-in connection from remote
// stands for, if it is one. Ergo may accept a stand-in a moment before
// its dial has returned and been recorded: while a stand-in dial is under
// way, a connection from this host waits for it briefly.
func (g *gate) handover(remote net.Addr, conn lib.NetReadWriter) *adoption {
	ta, ok := remote.(*net.TCPAddr)
	if !ok {
		return nil
	}
	if c, ok := conn.(net.Conn); !ok || !ta.IP.IsLoopback() && !sameIP(ta, c.LocalAddr()) {
		return nil
	}
	key := remote.String()
	for end := time.Now().Add(time.Second); ; {
		g.mu.Lock()
		a := g.handovers[key]
		delete(g.handovers, key)
		waiting := a == nil && g.dialling > 0 && !g.closed
		g.mu.Unlock()
		if !waiting || time.Now().After(end) {
			return a
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// detach returns a connection on a descriptor of its own for the socket
// under c, which Ergo is about to close; TLS is set up afresh on it (no
// byte has been read yet, so the TLS handshake has not begun).
func detach(c net.Conn, useTLS bool, cfg *tls.Config) (net.Conn, error) {
	raw := c
	if tc, ok := c.(*tls.Conn); ok {
		raw = tc.NetConn()
	}
	tcp, ok := raw.(*net.TCPConn)
	if !ok {
		return nil, errors.New("not a TCP connection")
	}
	f, err := tcp.File()
	if err != nil {
		return nil, err
	}
	defer f.Close()
	own, err := net.FileConn(f)
	if err != nil {
		return nil, err
	}
	if useTLS {
		own = tls.Server(own, cfg)
	}
	return own, nil
}

type pendingConn struct {
	conn    net.Conn
	elem    *list.Element
	evicted bool
}

// admit records a handshake in progress, dropping the oldest one when the
// cap is reached: a crowd of silent sockets cannot keep a new peer out.
func (g *gate) admit(c net.Conn) *pendingConn {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil
	}
	for g.pending.Len() >= g.maxPending {
		old := g.pending.Remove(g.pending.Front()).(*pendingConn)
		old.evicted = true
		old.conn.Close()
	}
	p := &pendingConn{conn: c}
	p.elem = g.pending.PushBack(p)
	return p
}

// release ends a handshake in progress; it reports whether it was
// dropped for a newer one meanwhile.
func (g *gate) release(p *pendingConn) (evicted bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !p.evicted {
		g.pending.Remove(p.elem)
	}
	return p.evicted
}

// accept runs one incoming handshake and hands the link to Ergo through
// its listener at listen.
func (g *gate) accept(remote, listen net.Addr, c net.Conn, p *pendingConn, useTLS bool, cookie string) {
	_ = c.SetDeadline(time.Now().Add(g.acceptTimeout))
	d, err := g.inner.Accept(remote, c, useTLS, cookie)
	if g.release(p) {
		c.Close()
		return
	}
	if err != nil {
		g.incomingFailed(err)
		c.Close()
		return
	}
	_ = c.SetDeadline(time.Time{})
	if d.Name == "" || !g.handOver(listen, &adoption{conn: c, details: d}) {
		c.Close()
	}
}

func (g *gate) incomingFailed(err error) {
	var he *HandshakeError
	if errors.As(err, &he) {
		he.Incoming = true
		g.logFailure(he)
	}
}

// adoption is an accepted, handshaken connection on its way to Ergo.
type adoption struct {
	conn    net.Conn
	details node.HandshakeDetails
}

// handOver dials Ergo's listener at listen with a stand-in connection for
// a: Ergo accepts it, Accept answers with a's handshake, gateProto serves
// a's socket. The stand-in is held open until Ergo closes it; then a's
// socket is closed too.
func (g *gate) handOver(listen net.Addr, a *adoption) bool {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return false
	}
	g.dialling++
	g.mu.Unlock()
	sc, err := net.DialTimeout("tcp", listen.String(), g.acceptTimeout)
	g.mu.Lock()
	g.dialling--
	if err == nil && !g.closed {
		g.handovers[sc.LocalAddr().String()] = a
	}
	g.mu.Unlock()
	if err != nil {
		return false
	}
	go func() {
		_, _ = io.Copy(io.Discard, sc)
		sc.Close()
		a.conn.Close()
		// Never accepted (the node stopped): forget it.
		g.mu.Lock()
		delete(g.handovers, sc.LocalAddr().String())
		g.mu.Unlock()
	}()
	return true
}

func sameIP(a *net.TCPAddr, b net.Addr) bool {
	tb, ok := b.(*net.TCPAddr)
	return ok && a.IP.Equal(tb.IP)
}

// gateProto is the node's proto: it serves a handed-over link's socket in
// place of its stand-in.
type gateProto struct {
	node.ProtoInterface
	g *gate
}

// Init implements node.ProtoInterface.
func (p *gateProto) Init(ctx context.Context, conn lib.NetReadWriter, nodename string, d node.HandshakeDetails) (node.ConnectionInterface, error) {
	p.g.mu.Lock()
	a := p.g.standIns[conn]
	delete(p.g.standIns, conn)
	p.g.mu.Unlock()
	if a != nil {
		conn = a.conn
	}
	return p.ProtoInterface.Init(ctx, conn, nodename, d)
}

// Start implements node.HandshakeInterface for a dial Ergo makes without
// the routes below (a static route).
func (g *gate) Start(remote net.Addr, conn lib.NetReadWriter, useTLS bool, cookie string) (node.HandshakeDetails, error) {
	return g.start(g.staticPeer(remote), remote, conn, useTLS, cookie)
}

// staticPeer names the node a static route to remote leads to, if one does.
func (g *gate) staticPeer(remote net.Addr) string {
	g.mu.Lock()
	n := g.node
	g.mu.Unlock()
	ta, ok := remote.(*net.TCPAddr)
	if n == nil || !ok {
		return ""
	}
	for _, r := range n.StaticRoutes() {
		if int(r.Port) == ta.Port {
			return r.Node
		}
	}
	return ""
}

func (g *gate) start(peer string, remote net.Addr, conn lib.NetReadWriter, useTLS bool, cookie string) (node.HandshakeDetails, error) {
	if g.tls != nil && !useTLS {
		he := &HandshakeError{Peer: peer, Cause: ErrTLSRequired, Detail: "this node uses TLS and does not send a plaintext link"}
		return node.HandshakeDetails{}, g.dialFailed(peer, remote, he)
	}
	c, isConn := conn.(net.Conn)
	if isConn {
		_ = c.SetDeadline(time.Now().Add(g.dialTimeout))
	}
	d, err := g.inner.Start(remote, conn, useTLS, cookie)
	if isConn {
		_ = c.SetDeadline(time.Time{})
	}
	if err != nil {
		var he *HandshakeError
		if !errors.As(err, &he) {
			he = &HandshakeError{Cause: err}
		}
		if he.Peer == "" {
			he.Peer = peer
		}
		return d, g.dialFailed(peer, remote, he)
	}
	return d, nil
}

// dialFailed logs a failed dial and keeps it for Connect.
func (g *gate) dialFailed(peer string, remote net.Addr, he *HandshakeError) *HandshakeError {
	he.Incoming = false
	if remote != nil && he.Remote == "" {
		he.Remote = remote.String()
	}
	if he.At.IsZero() {
		he.At = time.Now()
	}
	g.mu.Lock()
	if he.Local == "" {
		he.Local = g.local
	}
	if peer == "" {
		peer = he.Peer
	}
	if peer != "" {
		if len(g.dials) >= maxDialFailures {
			clear(g.dials)
		}
		g.dialSeq++
		g.dials[peer] = dialFailure{seq: g.dialSeq, err: he}
	}
	g.mu.Unlock()
	g.logFailure(he)
	return he
}

// logFailure writes a failed handshake once per peer (by name, else by
// host: every retry comes from a new port), direction and cause per
// window.
func (g *gate) logFailure(he *HandshakeError) {
	who := he.Peer
	if who == "" {
		who = he.Remote
		if host, _, err := net.SplitHostPort(he.Remote); err == nil {
			who = host
		}
	}
	if he.Local == "" {
		g.mu.Lock()
		he.Local = g.local
		g.mu.Unlock()
	}
	g.logs.log(fmt.Sprintf("handshake\x00%s\x00%v\x00%v", who, he.Incoming, he.Cause), he.Error())
}

// seq is the current dial-failure sequence number.
func (g *gate) seq() uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.dialSeq
}

// failureSince is the latest failed handshake with peer after seq.
func (g *gate) failureSince(peer string, seq uint64) *HandshakeError {
	g.mu.Lock()
	defer g.mu.Unlock()
	if f, ok := g.dials[peer]; ok && f.seq > seq {
		return f.err
	}
	return nil
}

// named is the handshake of one dial to peer (set on the route by
// routes.Resolve): it knows whom it dials, and with TLS configured it makes
// the TLS handshake itself. The proto of the same route (namedProto) then
// serves the TLS connection in place of Ergo's plain socket.
type named struct {
	g    *gate
	peer string
	host string
	// epmdTLS: the peer's EPMD entry says it uses TLS.
	epmdTLS bool
	mu      sync.Mutex
	tconn   *tls.Conn
}

func (h *named) Init(string, uint32, node.Flags) error { return nil }
func (h *named) Version() node.HandshakeVersion        { return h.g.inner.Version() }
func (h *named) Accept(remote net.Addr, conn lib.NetReadWriter, useTLS bool, cookie string) (node.HandshakeDetails, error) {
	return h.g.Accept(remote, conn, useTLS, cookie)
}

// Start implements node.HandshakeInterface.
func (h *named) Start(remote net.Addr, conn lib.NetReadWriter, useTLS bool, cookie string) (node.HandshakeDetails, error) {
	c, ok := conn.(net.Conn)
	if h.g.tls == nil || useTLS || !ok {
		d, err := h.g.start(h.peer, remote, conn, useTLS, cookie)
		var he *HandshakeError
		if err != nil && h.epmdTLS && errors.As(err, &he) && he.Detail != "" {
			he.Detail += "; its EPMD entry says it uses TLS and this node does not"
		}
		return d, err
	}
	cfg := h.g.tls.Clone()
	if cfg.ServerName == "" {
		cfg.ServerName = h.host
	}
	tc := tls.Client(c, cfg)
	_ = tc.SetDeadline(time.Now().Add(h.g.dialTimeout))
	if err := tc.Handshake(); err != nil {
		he := &HandshakeError{Peer: h.peer, Cause: ErrTLSMismatch, Detail: "TLS handshake failed: " + err.Error()}
		switch {
		case isCertError(err):
			he.Cause, he.Detail = ErrTLSCertificate, err.Error()
		case isTimeout(err):
			he.Cause, he.Detail = ErrHandshakeTimeout, "no TLS handshake answer in time"
		case !h.epmdTLS:
			he.Detail += "; its EPMD entry says it does not use TLS"
		}
		return node.HandshakeDetails{}, h.g.dialFailed(h.peer, remote, he)
	}
	_ = tc.SetDeadline(time.Time{})
	h.mu.Lock()
	h.tconn = tc
	h.mu.Unlock()
	return h.g.start(h.peer, remote, tc, true, cookie)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// namedProto serves the TLS connection a named handshake made.
type namedProto struct {
	node.ProtoInterface
	h *named
}

// Init implements node.ProtoInterface.
func (p *namedProto) Init(ctx context.Context, conn lib.NetReadWriter, nodename string, d node.HandshakeDetails) (node.ConnectionInterface, error) {
	p.h.mu.Lock()
	tc := p.h.tconn
	p.h.mu.Unlock()
	if tc != nil {
		conn = tc
	}
	return p.ProtoInterface.Init(ctx, conn, nodename, d)
}

// routes wraps the node's registrar: a resolved peer is dialled through
// the gate (named, with TLS made by the gate when configured).
type routes struct {
	node.Registrar
	g *gate
}

// Unwrap returns the registrar that speaks EPMD.
func (r *routes) Unwrap() node.Registrar { return r.Registrar }

// Register implements node.Registrar, noting the port registered.
func (r *routes) Register(ctx context.Context, name string, o node.RegisterOptions) error {
	r.g.mu.Lock()
	r.g.listenPort = o.Port
	r.g.mu.Unlock()
	return r.Registrar.Register(ctx, name, o)
}

// Resolve implements node.Registrar.
func (r *routes) Resolve(name string) (node.Route, error) {
	rt, err := r.Registrar.Resolve(name)
	r.g.resolved(name, "")
	if err != nil {
		return rt, err
	}
	h := &named{g: r.g, peer: name, host: rt.Host, epmdTLS: rt.Options.TLS != nil}
	if h.host == "" {
		h.host = strings.SplitN(name, "@", 2)[1]
	}
	r.g.resolved(name, net.JoinHostPort(h.host, strconv.Itoa(int(rt.Port))))
	// Ergo dials in plain TCP; the gate makes TLS itself when this node
	// has it, and never when it has not.
	rt.Options.TLS = nil
	rt.Options.IsErgo = true
	rt.Options.Handshake = h
	rt.Options.Proto = &namedProto{ProtoInterface: r.g.proto, h: h}
	return rt, nil
}

// maxResolutions bounds the names whose resolutions are kept (a flood of
// names is not remembered past it).
const maxResolutions = 4096

// resolved counts one lookup of name (addr "") or remembers where it
// resolved to.
func (g *gate) resolved(name, addr string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	r := g.resolutions[name]
	if r == nil {
		if len(g.resolutions) >= maxResolutions {
			return
		}
		r = &resolution{}
		g.resolutions[name] = r
	}
	if addr == "" {
		r.lookups++
		return
	}
	r.addr = addr
}

// LastAddress is the address (host:port) peer's name last resolved to on
// node n (a node started by Start), if n resolved it since it was last
// forgotten (ForgetAddress). A dial there that is refused proves the
// process that registered it gone, without asking its EPMD again.
func LastAddress(n node.Node, peer string) (string, bool) {
	g, _ := n.Env(envGate).(*gate)
	if g == nil {
		return "", false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if r := g.resolutions[peer]; r != nil && r.addr != "" {
		return r.addr, true
	}
	return "", false
}

// RememberAddress sets peer's last address as LastAddress gives it, when
// it is known otherwise than by a lookup (the peer said where it listens).
func RememberAddress(n node.Node, peer, addr string) {
	if g, _ := n.Env(envGate).(*gate); g != nil && addr != "" {
		g.resolved(peer, addr)
	}
}

// ListenPort is the distribution port node n (a node started by Start)
// registered with its EPMD; 0 when unknown.
func ListenPort(n node.Node) uint16 {
	g, _ := n.Env(envGate).(*gate)
	if g == nil {
		return 0
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.listenPort
}

// ForgetAddress drops peer's last address: the next dial resolves it
// again (a peer that came back may listen elsewhere).
func ForgetAddress(n node.Node, peer string) {
	if g, _ := n.Env(envGate).(*gate); g != nil {
		g.mu.Lock()
		if r := g.resolutions[peer]; r != nil {
			r.addr = ""
		}
		g.mu.Unlock()
	}
}

// Lookups is how many times node n (a node started by Start) looked
// peer's name up at its EPMD, for dials and for diagnoses alike.
func Lookups(n node.Node, peer string) uint64 {
	g, _ := n.Env(envGate).(*gate)
	if g == nil {
		return 0
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if r := g.resolutions[peer]; r != nil {
		return r.lookups
	}
	return 0
}

// ConnectError is a failed Connect whose handshake failed: Ergo's own
// error (always "no route to node") and the handshake's cause.
type ConnectError struct {
	Peer      string
	Err       error
	Handshake *HandshakeError
}

func (e *ConnectError) Error() string {
	return fmt.Sprintf("cloister: connect to %s: %v: %s", e.Peer, e.Err, strings.TrimPrefix(e.Handshake.Error(), "cloister: "))
}

// Unwrap gives Ergo's error and the handshake failure, so errors.Is finds
// both lib.ErrNoRoute and the cause (ErrCookieMismatch, ...).
func (e *ConnectError) Unwrap() []error { return []error{e.Err, e.Handshake} }

// Connect connects n to peer, as n.Connect does, but a failed handshake
// comes back with its cause: a *ConnectError wrapping the *HandshakeError
// of this dial (errors.As). Ergo reports every failed connect as "no route
// to node".
func Connect(n node.Node, peer string) error {
	g, _ := n.Env(envGate).(*gate)
	var seq uint64
	if g != nil {
		seq = g.seq()
	}
	err := n.Connect(peer)
	if err == nil || g == nil {
		return err
	}
	if he := g.failureSince(peer, seq); he != nil {
		return &ConnectError{Peer: peer, Err: err, Handshake: he}
	}
	return err
}
