package epmd

import (
	"container/list"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"sort"
	"strconv"
	"sync"
	"time"
)

// Server defaults; a zero field in Server means its default.
const (
	DefaultMaxPending     = 256
	DefaultMaxNames       = 1024
	DefaultRequestTimeout = 5 * time.Second
	// writeTimeout bounds every reply: a peer that does not read cannot
	// hold a goroutine.
	writeTimeout = 5 * time.Second
)

// Server serves EPMD. Set the fields, then call Listen or Serve; Close
// stops it and closes every connection, which frees every name.
//
// The rules, those of Erlang's epmd:
//   - ALIVE2_REQ is accepted only from the local host: a loopback peer, or
//     a peer whose address is the address it connected to (a node in a
//     container registering at the container's own address). Otherwise the
//     connection is closed with no reply.
//   - A name is held while the socket that registered it is open, and is
//     freed when it closes. A live registration's name is refused to others.
//   - One name per socket: any byte after a successful ALIVE2_REQ (a
//     second registration included) closes the socket, which frees the name.
//   - PORT_PLEASE2_REQ and NAMES_REQ are answered and the socket closed.
//     KILL_REQ is answered "NO" (the network never stops this server);
//     DUMP_REQ and STOP_REQ are refused (closed with no reply).
//
// Bounds: a request must arrive complete within RequestTimeout and be at
// most MaxRequestLen bytes; at most MaxPending connections may wait for or
// be served a request (a new one evicts the oldest); at most MaxNames
// names are registered.
type Server struct {
	// MaxPending caps connections that hold no registration. Default 256.
	MaxPending int
	// MaxNames caps registered names. Default 1024.
	MaxNames int
	// RequestTimeout bounds how long a connection may take to send its
	// request. Default 5 s.
	RequestTimeout time.Duration
	// Logf receives refusals (rate-limited per cause). Nil: log.Printf.
	Logf func(format string, args ...interface{})
	// isLocal replaces the local-peer rule in tests.
	isLocal func(remote, local net.Addr) bool

	mu        sync.Mutex
	lns       []net.Listener
	names     map[string]*registration
	creations map[string]uint32
	pending   *list.List // of net.Conn, oldest first
	conns     map[net.Conn]struct{}
	closed    bool
	wg        sync.WaitGroup
	lim       limiter
}

type registration struct {
	req      Alive2Req
	conn     net.Conn
	creation uint32
}

// Listen listens on addr ("127.0.0.1:4369", ":4369") and serves in the
// background until Close. It may be called again for more addresses.
func (s *Server) Listen(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("epmd: listen on %s: %w", addr, err)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return errors.New("epmd: server closed")
	}
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_ = s.Serve(ln)
	}()
	return nil
}

// Addrs returns the addresses the server listens on.
func (s *Server) Addrs() []net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	var a []net.Addr
	for _, ln := range s.lns {
		a = append(a, ln.Addr())
	}
	return a
}

// Serve accepts connections on ln until ln fails or Close is called. It
// closes ln when it returns.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return errors.New("epmd: server closed")
	}
	s.init()
	s.lns = append(s.lns, ln)
	s.mu.Unlock()
	defer ln.Close()
	backoff := 5 * time.Millisecond
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || s.isClosed() {
				return nil
			}
			// Out of file descriptors and the like: wait, do not spin.
			s.logf("accept", "epmd: accept: %v", err)
			time.Sleep(backoff)
			if backoff < time.Second {
				backoff *= 2
			}
			continue
		}
		backoff = 5 * time.Millisecond
		if !s.admit(c) {
			c.Close()
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.handle(c)
		}()
	}
}

// Close stops listening, closes every connection (freeing every name)
// and waits for the server's goroutines.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	for _, ln := range s.lns {
		ln.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// Names returns the registered names and ports, sorted by name.
func (s *Server) Names() []NameEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]NameEntry, 0, len(s.names))
	for n, r := range s.names {
		out = append(out, NameEntry{Name: n, Port: r.req.Port})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// NameEntry is one line of a NAMES reply.
type NameEntry struct {
	Name string
	Port uint16
}

func (s *Server) init() {
	if s.names == nil {
		s.names = map[string]*registration{}
		s.creations = map[string]uint32{}
		s.pending = list.New()
		s.conns = map[net.Conn]struct{}{}
	}
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *Server) maxPending() int {
	if s.MaxPending > 0 {
		return s.MaxPending
	}
	return DefaultMaxPending
}

func (s *Server) maxNames() int {
	if s.MaxNames > 0 {
		return s.MaxNames
	}
	return DefaultMaxNames
}

func (s *Server) requestTimeout() time.Duration {
	if s.RequestTimeout > 0 {
		return s.RequestTimeout
	}
	return DefaultRequestTimeout
}

// admit records a new connection as pending, evicting the oldest pending
// one when the cap is reached: a legitimate request takes milliseconds,
// so the oldest is the likeliest to be idle.
func (s *Server) admit(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.init()
	if s.pending.Len() >= s.maxPending() {
		old := s.pending.Remove(s.pending.Front()).(net.Conn)
		old.Close()
		s.logfLocked("evict", "epmd: %d connections without a registration: closed the oldest, from %s", s.maxPending(), old.RemoteAddr())
	}
	s.pending.PushBack(c)
	s.conns[c] = struct{}{}
	return true
}

// settle moves c out of the pending list (it registered) or forgets it
// (it is closing).
func (s *Server) settle(c net.Conn, forget bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for e := s.pending.Front(); e != nil; e = e.Next() {
		if e.Value.(net.Conn) == c {
			s.pending.Remove(e)
			break
		}
	}
	if forget {
		delete(s.conns, c)
	}
}

func (s *Server) handle(c net.Conn) {
	defer func() {
		s.settle(c, true)
		c.Close()
	}()
	_ = c.SetReadDeadline(time.Now().Add(s.requestTimeout()))
	body, err := readRequest(c)
	if err != nil {
		if !errors.Is(err, io.EOF) {
			s.logf("read", "epmd: request from %s: %v", c.RemoteAddr(), err)
		}
		return
	}
	req, err := ParseRequest(body)
	if err != nil {
		s.logf("malformed", "epmd: request from %s refused: %v", c.RemoteAddr(), err)
		return
	}
	switch req.Code {
	case codeAlive2Req:
		s.serveAlive(c, req.Alive)
	case codePortPlease2:
		s.mu.Lock()
		r := s.names[req.Name]
		s.mu.Unlock()
		if r == nil {
			s.reply(c, []byte{codePort2Resp, 1})
			return
		}
		s.reply(c, encodePort2Resp(r.req))
	case codeNamesReq:
		s.reply(c, s.namesReply(c))
	case codeKillReq:
		s.reply(c, []byte("NO"))
	default: // DUMP, STOP
		s.logf("refused", "epmd: request %q from %s refused", req.Code, c.RemoteAddr())
	}
}

// serveAlive registers a, holds the registration while c stays open and
// silent, and frees it when c closes or sends anything.
func (s *Server) serveAlive(c net.Conn, a Alive2Req) {
	isLocal := s.isLocal
	if isLocal == nil {
		isLocal = IsLocalPeer
	}
	if !isLocal(c.RemoteAddr(), c.LocalAddr()) {
		s.logf("nonlocal", "epmd: registration of %q from %s refused: not the local host", a.Name, c.RemoteAddr())
		return
	}
	creation, err := s.register(c, a)
	if err != nil {
		s.logf("register", "epmd: registration of %q from %s refused: %v", a.Name, c.RemoteAddr(), err)
		s.reply(c, encodeAliveResp(a.High, 1, 0))
		return
	}
	defer s.unregister(c, a.Name)
	if !s.reply(c, encodeAliveResp(a.High, 0, creation)) {
		return
	}
	s.settle(c, false)
	_ = c.SetReadDeadline(time.Time{})
	if tc, ok := c.(*net.TCPConn); ok {
		// A peer that vanishes without a FIN is noticed.
		_ = tc.SetKeepAlive(true)
		_ = tc.SetKeepAlivePeriod(15 * time.Second)
	}
	var b [1]byte
	if n, _ := c.Read(b[:]); n > 0 {
		s.logf("second", "epmd: %s sent more after registering %q: closed, name freed (one name per socket)", c.RemoteAddr(), a.Name)
	}
}

func (s *Server) register(c net.Conn, a Alive2Req) (uint32, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, errors.New("server closed")
	}
	if _, taken := s.names[a.Name]; taken {
		return 0, errors.New("name taken by a live registration")
	}
	if len(s.names) >= s.maxNames() {
		return 0, fmt.Errorf("%d names registered (limit)", len(s.names))
	}
	// A new creation for each registration of a name, so that pids of a
	// restarted BEAM node differ from its previous life's. The old reply
	// carries 16 bits, and BEAM expects 1..3 there.
	last := s.creations[a.Name]
	var cr uint32
	for cr == 0 || cr == last {
		if a.High >= handshakeVersion6 {
			cr = rand.Uint32()
		} else {
			cr = 1 + rand.Uint32N(3)
		}
	}
	if len(s.creations) >= 4*s.maxNames() {
		clear(s.creations) // bounded memory; only the "differs" guarantee is lost
	}
	s.creations[a.Name] = cr
	s.names[a.Name] = &registration{req: a, conn: c, creation: cr}
	return cr, nil
}

func (s *Server) unregister(c net.Conn, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.names[name]; r != nil && r.conn == c {
		delete(s.names, name)
	}
}

// namesReply is the port the client reached (BEAM checks it against its
// own idea of the EPMD port) followed by one line per name.
func (s *Server) namesReply(c net.Conn) []byte {
	var port uint32
	if ta, ok := c.LocalAddr().(*net.TCPAddr); ok {
		port = uint32(ta.Port)
	}
	b := binary.BigEndian.AppendUint32(nil, port)
	for _, e := range s.Names() {
		b = append(b, "name "...)
		b = append(b, e.Name...)
		b = append(b, " at port "...)
		b = strconv.AppendUint(b, uint64(e.Port), 10)
		b = append(b, '\n')
	}
	return b
}

// reply writes b in one write: Ergo's client reads a reply with a single
// read.
func (s *Server) reply(c net.Conn, b []byte) bool {
	_ = c.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err := c.Write(b)
	_ = c.SetWriteDeadline(time.Time{})
	return err == nil
}

// readRequest reads one length-prefixed request, refusing a length of 0
// or above MaxRequestLen before reading the body.
func readRequest(r io.Reader) ([]byte, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(hdr[:]))
	if n == 0 || n > MaxRequestLen {
		return nil, malformed("request length %d (allowed 1..%d)", n, MaxRequestLen)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return body, nil
}

// IsLocalPeer is Erlang epmd's rule for who may register: a loopback
// peer, or one whose address is the local address of the connection (the
// host dialling one of its own addresses).
func IsLocalPeer(remote, local net.Addr) bool {
	rip := addrIP(remote)
	if rip == nil {
		return false
	}
	if rip.IsLoopback() {
		return true
	}
	lip := addrIP(local)
	return lip != nil && rip.Equal(lip)
}

func addrIP(a net.Addr) net.IP {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.IP
	case nil:
		return nil
	default:
		host, _, err := net.SplitHostPort(a.String())
		if err != nil {
			return nil
		}
		return net.ParseIP(host)
	}
}

func (s *Server) logf(cause, format string, args ...interface{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.logfLocked(cause, format, args...)
}

func (s *Server) logfLocked(cause, format string, args ...interface{}) {
	line, ok := s.lim.allow(cause, time.Now())
	if !ok {
		return
	}
	msg := fmt.Sprintf(format, args...) + line
	if s.Logf != nil {
		s.Logf("%s", msg)
	} else {
		log.Print(msg)
	}
}

// limiter lets one line per cause through every logEvery, and says how
// many were held back meanwhile: a stranger cannot flood the log.
type limiter struct {
	causes map[string]*limitState
}

type limitState struct {
	last       time.Time
	suppressed int
}

const logEvery = 10 * time.Second

func (l *limiter) allow(cause string, now time.Time) (string, bool) {
	if l.causes == nil {
		l.causes = map[string]*limitState{}
	}
	st := l.causes[cause]
	if st == nil {
		st = &limitState{}
		l.causes[cause] = st
	} else if now.Sub(st.last) < logEvery {
		st.suppressed++
		return "", false
	}
	st.last = now
	suffix := ""
	if st.suppressed > 0 {
		suffix = fmt.Sprintf(" (and %d more like it since the last report)", st.suppressed)
	}
	st.suppressed = 0
	return suffix, true
}
