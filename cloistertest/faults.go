package cloistertest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Network cuts are made with TCP proxies on 127.0.0.1, one per directed
// pair of nodes: node A reaches node B only through proxy A→B, because A
// gets a static route "B = 127.0.0.1:<port of proxy A→B>" (the test
// node's -route), which Ergo consults before EPMD. Every connection between A and
// B, whichever side dials, therefore crosses proxy A→B or B→A, and cutting
// the pair {A, B} acts on both. A proxy finds B's real port through the
// harness's epmd on every new connection, so a restarted B is reached at
// its new port. Nothing needs root, network namespaces or iptables.
//
// Two kinds of cut:
//
//   - Reject, as a firewall REJECT or a peer's host going away: live
//     connections are closed on both sides at once and new ones are
//     closed as soon as they are accepted. Both nodes see the link drop.
//   - Drop, as a firewall DROP or a pulled cable: nothing crosses any more,
//     not even a close; live connections stall with their data held and new
//     ones hang in the handshake. Only the heartbeat can notice. When the
//     cut heals, what was held flows on (as TCP retransmission would
//     deliver it), including the closes either side made meanwhile.

// CutMode is how a network cut behaves (see Network).
type CutMode int

// The cut modes.
const (
	// Reject closes live connections and refuses new ones.
	Reject CutMode = iota + 1
	// Drop silently stops all traffic; closes are delivered at the heal.
	Drop
)

func (m CutMode) String() string {
	switch m {
	case Reject:
		return "reject"
	case Drop:
		return "drop"
	}
	return "open"
}

// Network routes the connections between a fixed set of node names through
// proxies that a test can cut and heal. Create it with Harness.Network
// before starting the nodes; nodes of the harness whose names are in the
// set then get their routes.
type Network struct {
	h     *Harness
	names []string

	mu      sync.Mutex
	links   map[[2]string]*link // unordered pair, sorted
	proxies map[[2]string]*proxy
	closed  bool

	// first bytes seen by the proxies, to tell TLS from plain TCP
	tlsConns, plainConns int
}

type link struct {
	mu       sync.Mutex
	mode     CutMode // 0: open
	changed  chan struct{}
	sessions map[*session]bool
}

type proxy struct {
	from, to string
	ln       net.Listener
	link     *link
	n        *Network
}

// Network creates the proxies between every pair of names. Call it before
// starting the nodes; it may be called once per harness.
func (h *Harness) Network(names ...string) (*Network, error) {
	h.mu.Lock()
	if h.net != nil {
		h.mu.Unlock()
		return nil, errors.New("cloistertest: the harness already has a network")
	}
	h.mu.Unlock()
	n := &Network{h: h, names: append([]string(nil), names...),
		links: map[[2]string]*link{}, proxies: map[[2]string]*proxy{}}
	for _, a := range names {
		for _, b := range names {
			if a == b {
				continue
			}
			key := pairKey(a, b)
			l := n.links[key]
			if l == nil {
				l = &link{changed: make(chan struct{}), sessions: map[*session]bool{}}
				n.links[key] = l
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				n.Close()
				return nil, err
			}
			p := &proxy{from: a, to: b, ln: ln, link: l, n: n}
			n.proxies[[2]string{a, b}] = p
			go p.serve()
		}
	}
	h.mu.Lock()
	h.net = n
	h.mu.Unlock()
	return n, nil
}

func pairKey(a, b string) [2]string {
	if a > b {
		a, b = b, a
	}
	return [2]string{a, b}
}

// routes are the -route flags for node from: every other name through its
// proxy.
func (n *Network) routes(from string) []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []string
	for _, to := range n.names {
		if p := n.proxies[[2]string{from, to}]; p != nil {
			out = append(out, "-route", to+"="+p.ln.Addr().String())
		}
	}
	return out
}

// Cut cuts the pair {a, b} in the given mode (a cut pair is cut again in
// the new mode).
func (n *Network) Cut(a, b string, mode CutMode) error {
	l := n.link(a, b)
	if l == nil {
		return fmt.Errorf("cloistertest: no route between %s and %s", a, b)
	}
	l.mu.Lock()
	l.mode = mode
	var kill []*session
	if mode == Reject {
		for s := range l.sessions {
			kill = append(kill, s)
		}
	}
	close(l.changed)
	l.changed = make(chan struct{})
	l.mu.Unlock()
	for _, s := range kill {
		s.close()
	}
	return nil
}

// Heal reopens the pair {a, b}.
func (n *Network) Heal(a, b string) error {
	l := n.link(a, b)
	if l == nil {
		return fmt.Errorf("cloistertest: no route between %s and %s", a, b)
	}
	l.mu.Lock()
	l.mode = 0
	close(l.changed)
	l.changed = make(chan struct{})
	l.mu.Unlock()
	return nil
}

// Partition cuts every pair whose nodes are in different groups; pairs
// within a group are left as they are.
func (n *Network) Partition(mode CutMode, groups ...[]string) error {
	for i, g := range groups {
		for _, h := range groups[i+1:] {
			for _, a := range g {
				for _, b := range h {
					if err := n.Cut(a, b, mode); err != nil {
						return err
					}
				}
			}
		}
	}
	return nil
}

// HealAll reopens every pair.
func (n *Network) HealAll() {
	for _, k := range n.pairs() {
		_ = n.Heal(k[0], k[1])
	}
}

// Cuts lists the pairs cut now, as "a|b".
func (n *Network) Cuts() []string {
	var out []string
	for _, k := range n.pairs() {
		l := n.link(k[0], k[1])
		l.mu.Lock()
		if l.mode != 0 {
			out = append(out, k[0]+"|"+k[1]+" ("+l.mode.String()+")")
		}
		l.mu.Unlock()
	}
	return out
}

// Connections reports how many proxied connections began with a TLS record
// and how many with anything else, since the network was created.
func (n *Network) Connections() (tlsConns, plainConns int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.tlsConns, n.plainConns
}

func (n *Network) pairs() [][2]string {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([][2]string, 0, len(n.links))
	for k := range n.links {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i][0]+out[i][1] < out[j][0]+out[j][1] })
	return out
}

func (n *Network) link(a, b string) *link {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.links[pairKey(a, b)]
}

// Close stops the proxies and closes every connection through them.
func (n *Network) Close() {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	n.closed = true
	proxies := n.proxies
	links := n.links
	n.mu.Unlock()
	for _, p := range proxies {
		p.ln.Close()
	}
	for _, l := range links {
		l.mu.Lock()
		var all []*session
		for s := range l.sessions {
			all = append(all, s)
		}
		l.mode = Reject
		close(l.changed)
		l.changed = make(chan struct{})
		l.mu.Unlock()
		for _, s := range all {
			s.close()
		}
	}
}

func (p *proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s := &session{p: p, client: c, done: make(chan struct{})}
		if !p.link.add(s) {
			c.Close()
			continue
		}
		go s.run()
	}
}

func (l *link) add(s *session) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.mode == Reject {
		return false
	}
	l.sessions[s] = true
	return true
}

func (l *link) remove(s *session) {
	l.mu.Lock()
	delete(l.sessions, s)
	l.mu.Unlock()
}

// pass waits while the link drops traffic; false means the session must
// end (rejected, or closed).
func (l *link) pass(s *session) bool {
	for {
		l.mu.Lock()
		mode, ch := l.mode, l.changed
		l.mu.Unlock()
		switch mode {
		case 0:
			return true
		case Reject:
			return false
		}
		select {
		case <-ch:
		case <-s.done:
			return false
		}
	}
}

// session is one proxied connection.
type session struct {
	p      *proxy
	client net.Conn
	once   sync.Once
	done   chan struct{}

	mu     sync.Mutex
	server net.Conn
}

func (s *session) close() {
	s.once.Do(func() {
		close(s.done)
		s.client.Close()
		s.mu.Lock()
		if s.server != nil {
			s.server.Close()
		}
		s.mu.Unlock()
	})
}

func (s *session) run() {
	defer s.p.link.remove(s)
	defer s.close()
	// A new connection across a dropped link hangs until the heal.
	if !s.p.link.pass(s) {
		return
	}
	port, err := resolvePort(s.p.n.h.EPMD.Port, s.p.to)
	if err != nil {
		return
	}
	server, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), 2*time.Second)
	if err != nil {
		return
	}
	s.mu.Lock()
	select {
	case <-s.done:
		s.mu.Unlock()
		server.Close()
		return
	default:
	}
	s.server = server
	s.mu.Unlock()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); s.pipe(server, s.client, true) }()
	go func() { defer wg.Done(); s.pipe(s.client, server, false) }()
	wg.Wait()
}

// pipe copies src to dst a chunk at a time, each chunk (and the final
// close) waiting for the link to pass.
func (s *session) pipe(dst, src net.Conn, outbound bool) {
	buf := make([]byte, 32<<10)
	first := outbound
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if first {
				first = false
				s.p.n.mu.Lock()
				if buf[0] == 0x16 {
					s.p.n.tlsConns++
				} else {
					s.p.n.plainConns++
				}
				s.p.n.mu.Unlock()
			}
			if !s.p.link.pass(s) {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				s.close()
				return
			}
		}
		if err != nil {
			if !s.p.link.pass(s) {
				return
			}
			if errors.Is(err, io.EOF) {
				if tc, ok := dst.(*net.TCPConn); ok {
					_ = tc.CloseWrite()
					return
				}
			}
			s.close()
			return
		}
	}
}

// resolvePort asks the epmd on 127.0.0.1:epmdPort for a node's port
// (PORT_PLEASE2_REQ).
func resolvePort(epmdPort uint16, nodeName string) (int, error) {
	name, _, _ := strings.Cut(nodeName, "@")
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(epmdPort))), 2*time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	req := make([]byte, 3+len(name))
	binary.BigEndian.PutUint16(req, uint16(1+len(name)))
	req[2] = 122
	copy(req[3:], name)
	if _, err := c.Write(req); err != nil {
		return 0, err
	}
	resp := make([]byte, 4)
	if _, err := io.ReadFull(c, resp[:2]); err != nil {
		return 0, err
	}
	if resp[0] != 119 || resp[1] != 0 {
		return 0, fmt.Errorf("cloistertest: epmd does not know %s", nodeName)
	}
	if _, err := io.ReadFull(c, resp[2:4]); err != nil {
		return 0, err
	}
	return int(binary.BigEndian.Uint16(resp[2:4])), nil
}
