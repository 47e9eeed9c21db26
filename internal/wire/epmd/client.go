package epmd

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ergo-services/ergo/etf"
	"github.com/ergo-services/ergo/lib"
	"github.com/ergo-services/ergo/node"
)

// DefaultPort is EPMD's well-known port.
const DefaultPort uint16 = 4369

// PortFromEnv is the EPMD port every BEAM tool uses: $ERL_EPMD_PORT when
// it holds a port number, else 4369. A value that is set but not a port
// is an error naming it, so a typo is not silently ignored.
func PortFromEnv() (uint16, error) {
	v, ok := os.LookupEnv("ERL_EPMD_PORT")
	if !ok || v == "" {
		return DefaultPort, nil
	}
	p, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || p < 1 || p > 65535 {
		return 0, fmt.Errorf("cloister: ERL_EPMD_PORT=%q is not a port (1..65535)", v)
	}
	return uint16(p), nil
}

// ErrNotRegistered is returned by Lookup and Resolve when the EPMD
// answered that it does not know the name. Its text is the one Ergo's own
// registrar uses, which callers match on.
var ErrNotRegistered = errors.New("desired node not found")

// Mode says whether a Registrar may serve EPMD itself.
type Mode int

const (
	// Auto registers with a running EPMD, and when none answers serves
	// one in this process (then keeps it for the node's life, and takes
	// over when the EPMD it used goes away).
	Auto Mode = iota
	// ClientOnly never serves: with no EPMD running, Register fails.
	ClientOnly
)

// Registrar is an Ergo node.Registrar speaking EPMD through this
// package, so that no reply from the network reaches Ergo's parser.
// Fields are read at Register.
type Registrar struct {
	// Host is the EPMD this node registers with. Default 127.0.0.1.
	Host string
	// Port is the EPMD port, for registration and for lookups at peers'
	// hosts. Zero means PortFromEnv.
	Port uint16
	// Mode: Auto (default) or ClientOnly.
	Mode Mode
	// ServeHost is the interface an EPMD served here listens on: "" for
	// every interface (peers on other hosts can look names up; this is
	// what Erlang's epmd does). When unset (nil) it is 127.0.0.1 for a
	// node whose host is loopback, else every interface.
	ServeHost *string
	// Logf receives the one line saying which EPMD is used, and losses of
	// the registration. Nil: log.Printf.
	Logf func(format string, args ...interface{})
	// Server configures an EPMD served here (limits); may be nil.
	Server *Server

	mu      sync.Mutex
	running bool
	served  *Server
}

// ergoExtra is the extra data Ergo nodes put in their registration: a
// magic number, a version and whether the node speaks TLS. Other Ergo
// nodes read it back from PORT2_RESP.
const (
	ergoExtraMagic    = 4411
	ergoExtraVersion1 = 1
)

const (
	dialTimeout  = 3 * time.Second
	replyTimeout = 10 * time.Second // what BEAM's client waits
	retryEvery   = time.Second
)

func (r *Registrar) port() uint16 {
	if r.Port != 0 {
		return r.Port
	}
	p, err := PortFromEnv()
	if err != nil {
		return DefaultPort
	}
	return p
}

func (r *Registrar) host() string {
	if r.Host == "" {
		return "127.0.0.1"
	}
	return r.Host
}

func (r *Registrar) logf(format string, args ...interface{}) {
	if r.Logf != nil {
		r.Logf(format, args...)
		return
	}
	log.Printf(format, args...)
}

// Register registers the node and keeps the registration for the life of
// ctx, re-registering when the connection to EPMD is lost.
func (r *Registrar) Register(ctx context.Context, nodename string, o node.RegisterOptions) error {
	alive, host, ok := strings.Cut(nodename, "@")
	if !ok || alive == "" || host == "" || strings.Contains(host, "@") {
		return fmt.Errorf("epmd: node name %q: want name@host", nodename)
	}
	if r.Port == 0 {
		if _, err := PortFromEnv(); err != nil {
			return err
		}
	}
	r.mu.Lock()
	if r.running {
		r.mu.Unlock()
		return errors.New("epmd: registrar is already running")
	}
	r.running = true
	r.mu.Unlock()

	extra := binary.BigEndian.AppendUint16(nil, ergoExtraMagic)
	extra = append(extra, ergoExtraVersion1, 0)
	if o.EnableTLS {
		extra[3] = 1
	}
	a := Alive2Req{Port: o.Port, NodeType: nodeTypeNormal, Protocol: protocolTCP,
		High: handshakeVersion6, Low: handshakeVersion5, Name: alive, Extra: extra}
	req, err := EncodeAlive2(a)
	if err != nil {
		r.stop()
		return fmt.Errorf("epmd: node name %q: %w", nodename, err)
	}
	serveHost := "127.0.0.1"
	if r.ServeHost != nil {
		serveHost = *r.ServeHost
	} else if !isLoopbackHost(host) {
		serveHost = ""
	}
	conn, how, err := r.registerOnce(req, serveHost)
	if err != nil {
		r.stop()
		return err
	}
	r.logf("cloister: %s: %s", nodename, how)
	go r.keep(ctx, nodename, conn, req, serveHost)
	return nil
}

// keep holds the registration until ctx ends, re-registering (and, in
// Auto mode, serving EPMD if nobody does any more) when it is lost.
func (r *Registrar) keep(ctx context.Context, nodename string, conn net.Conn, req []byte, serveHost string) {
	defer r.stop()
	for {
		lost := make(chan struct{})
		go func() {
			var b [16]byte
			for {
				if _, err := conn.Read(b[:]); err != nil {
					close(lost)
					return
				}
			}
		}()
		select {
		case <-ctx.Done():
			conn.Close()
			<-lost
			return
		case <-lost:
			conn.Close()
		}
		r.logf("cloister: %s: lost the EPMD registration at %s; registering again", nodename, r.addr())
		// The EPMD's process may still be going away (its port accepting,
		// then resetting): retry soon, then every retryEvery.
		wait := 20 * time.Millisecond
		for {
			var how string
			var err error
			conn, how, err = r.registerOnce(req, serveHost)
			if err == nil {
				r.logf("cloister: %s: registered again: %s", nodename, how)
				break
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			if wait *= 2; wait > retryEvery {
				wait = retryEvery
			}
		}
	}
}

func (r *Registrar) stop() {
	r.mu.Lock()
	s := r.served
	r.served = nil
	r.running = false
	r.mu.Unlock()
	if s != nil {
		s.Close()
	}
}

func (r *Registrar) addr() string {
	return net.JoinHostPort(r.host(), strconv.Itoa(int(r.port())))
}

// registerOnce dials the EPMD (serving one first when none answers and
// the mode allows) and registers; how says which EPMD it was.
func (r *Registrar) registerOnce(req []byte, serveHost string) (net.Conn, string, error) {
	addr := r.addr()
	how := "registered with the EPMD at " + addr
	c, err := net.DialTimeout("tcp", addr, dialTimeout)
	if err != nil && r.Mode == Auto && errors.Is(err, syscall.ECONNREFUSED) {
		listen := net.JoinHostPort(serveHost, strconv.Itoa(int(r.port())))
		if serr := r.serve(listen); serr == nil {
			where := listen
			if serveHost == "" {
				where = "every interface, port " + strconv.Itoa(int(r.port()))
			}
			how = "no EPMD was running at " + addr + "; serving EPMD in this process on " + where
		}
		// Served here, or someone else started one meanwhile: dial again.
		c, err = net.DialTimeout("tcp", addr, dialTimeout)
	}
	if err != nil {
		hint := ""
		if r.Mode == ClientOnly {
			hint = " (none runs there: start one with `epmd -daemon` or `cloister epmd`, or give the port of a running one, e.g. in ERL_EPMD_PORT)"
		}
		return nil, "", fmt.Errorf("epmd: cannot reach the EPMD at %s%s: %w", addr, hint, err)
	}
	if err := register(c, req); err != nil {
		c.Close()
		return nil, "", fmt.Errorf("epmd: register with the EPMD at %s: %w", addr, err)
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetKeepAlive(true)
		_ = tc.SetKeepAlivePeriod(15 * time.Second)
	}
	return c, how, nil
}

func (r *Registrar) serve(listen string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.served != nil {
		return errors.New("already serving")
	}
	s := r.Server
	if s == nil {
		s = &Server{}
	} else {
		s = &Server{MaxPending: s.MaxPending, MaxNames: s.MaxNames, RequestTimeout: s.RequestTimeout, Logf: s.Logf}
	}
	if s.Logf == nil {
		s.Logf = r.Logf
	}
	if err := s.Listen(listen); err != nil {
		return err
	}
	r.served = s
	return nil
}

// Serving returns the EPMD this registrar serves, or nil.
func (r *Registrar) Serving() *Server {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.served
}

// register sends a framed ALIVE2_REQ on c and reads the reply.
func register(c net.Conn, req []byte) error {
	_ = c.SetDeadline(time.Now().Add(replyTimeout))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write(req); err != nil {
		return err
	}
	var b [6]byte
	if _, err := io.ReadFull(c, b[:2]); err != nil {
		return fmt.Errorf("no reply: %w", err)
	}
	var n int
	switch b[0] {
	case codeAlive2XResp:
		n = 6
	case codeAlive2Resp:
		n = 4
	default:
		return fmt.Errorf("reply code %d is not an ALIVE2 reply", b[0])
	}
	if b[1] != 0 {
		return fmt.Errorf("name refused (result %d): is a live node already registered under it?", b[1])
	}
	if _, err := io.ReadFull(c, b[2:n]); err != nil {
		return fmt.Errorf("short reply: %w", err)
	}
	return nil
}

// Lookup asks the EPMD at host:port for a node's registration.
func Lookup(ctx context.Context, host string, port uint16, name string) (Alive2Req, error) {
	addr := net.JoinHostPort(host, strconv.Itoa(int(port)))
	d := net.Dialer{Timeout: dialTimeout}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return Alive2Req{}, err
	}
	defer c.Close()
	deadline := time.Now().Add(replyTimeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	_ = c.SetDeadline(deadline)
	if _, err := c.Write(appendRequest(nil, []byte{codePortPlease2}, []byte(name))); err != nil {
		return Alive2Req{}, err
	}
	var buf []byte
	const most = 2 + 10 + 2 + MaxNameLen + 2 + MaxExtraLen
	for {
		need, done := port2RespLen(buf)
		if done {
			break
		}
		if need > most {
			return Alive2Req{}, malformed("PORT2_RESP of %d bytes from %s", need, addr)
		}
		more := make([]byte, need-len(buf))
		if _, err := io.ReadFull(c, more); err != nil {
			return Alive2Req{}, fmt.Errorf("epmd at %s: reply to a lookup of %q: %w", addr, name, err)
		}
		buf = append(buf, more...)
	}
	a, found, err := ParsePort2Resp(buf)
	if err != nil {
		return Alive2Req{}, fmt.Errorf("epmd at %s: %w", addr, err)
	}
	if !found {
		return Alive2Req{}, fmt.Errorf("epmd at %s: %q: %w", addr, name, ErrNotRegistered)
	}
	return a, nil
}

// Names asks the EPMD at host:port for its NAMES list.
func Names(ctx context.Context, host string, port uint16) ([]NameEntry, error) {
	addr := net.JoinHostPort(host, strconv.Itoa(int(port)))
	d := net.Dialer{Timeout: dialTimeout}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(replyTimeout))
	if _, err := c.Write(appendRequest(nil, []byte{codeNamesReq})); err != nil {
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(c, 4+DefaultMaxNames*(MaxNameLen+32)))
	if err != nil {
		return nil, err
	}
	if len(b) < 4 {
		return nil, malformed("NAMES reply of %d bytes", len(b))
	}
	var out []NameEntry
	for _, line := range strings.Split(string(b[4:]), "\n") {
		rest, ok := strings.CutPrefix(line, "name ")
		if !ok {
			continue
		}
		i := strings.LastIndex(rest, " at port ")
		if i < 0 {
			continue
		}
		p, err := strconv.Atoi(rest[i+len(" at port "):])
		if err != nil || p < 0 || p > 65535 {
			continue
		}
		out = append(out, NameEntry{Name: rest[:i], Port: uint16(p)})
	}
	return out, nil
}

// Resolve finds a peer's distribution port at the EPMD on the peer's host.
func (r *Registrar) Resolve(peername string) (node.Route, error) {
	alive, host, ok := strings.Cut(peername, "@")
	if !ok || alive == "" || host == "" {
		return node.Route{}, fmt.Errorf("epmd: node name %q: want name@host", peername)
	}
	ctx, cancel := context.WithTimeout(context.Background(), dialTimeout+replyTimeout)
	defer cancel()
	a, err := Lookup(ctx, host, r.port(), alive)
	if err != nil {
		return node.Route{}, err
	}
	route := node.Route{Node: alive, Host: host, Port: a.Port}
	// Another Ergo node says so in its extra data, with its TLS setting.
	if len(a.Extra) >= 4 && binary.BigEndian.Uint16(a.Extra[0:2]) == ergoExtraMagic && a.Extra[2] == ergoExtraVersion1 {
		route.Options.IsErgo = true
		if a.Extra[3] == 1 {
			route.Options.TLS = &tls.Config{}
		}
	}
	return route, nil
}

// ResolveProxy is not supported over EPMD.
func (r *Registrar) ResolveProxy(string) (node.ProxyRoute, error) {
	return node.ProxyRoute{}, lib.ErrProxyNoRoute
}

// RegisterProxy is not supported over EPMD.
func (r *Registrar) RegisterProxy(string, int, node.ProxyFlags) error { return lib.ErrUnsupported }

// UnregisterProxy is not supported over EPMD.
func (r *Registrar) UnregisterProxy(string) error { return lib.ErrUnsupported }

// Config is not supported over EPMD.
func (r *Registrar) Config() (node.RegistrarConfig, error) {
	return node.RegistrarConfig{}, lib.ErrUnsupported
}

// ConfigItem is not supported over EPMD.
func (r *Registrar) ConfigItem(string) (etf.Term, error) { return nil, lib.ErrUnsupported }

// SetConfigUpdateCallback is not supported over EPMD.
func (r *Registrar) SetConfigUpdateCallback(func(string, etf.Term) error) error {
	return lib.ErrUnsupported
}

func isLoopbackHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

var _ node.Registrar = (*Registrar)(nil)
