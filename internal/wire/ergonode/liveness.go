package ergonode

import (
	"context"
	"encoding/binary"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ergo-services/ergo/gen"
	"github.com/ergo-services/ergo/lib"
	"github.com/ergo-services/ergo/node"
)

// Link liveness. A link that carries traffic proves its peer's process is
// running, so the Monitor need not ping that peer: Links tells it when each
// link last read a byte. An idle link carries nothing (Ergo's own keepalive
// is every 15 s), so at its keepalive ticks the Monitor has each link
// that wrote nothing for a while write the distribution protocol's tick,
// four zero bytes that Ergo and BEAM nodes both read and drop
// (Links.Keepalive). A frozen peer writes nothing, its link goes silent,
// and the Monitor falls back to its ping, which goes unanswered; so does a
// peer whose Monitor stopped running.

// envLinks is the node environment key of the node's *Links.
const envLinks gen.EnvKey = "cloister:wire-links"

// epoch anchors the link clocks: times are kept as offsets from it, so
// that they keep Go's monotonic reading when turned back into time.Time.
var epoch = time.Now()

func sinceEpoch() int64 { return int64(time.Since(epoch)) }

// Links is the liveness of one node's links (see LinksOf).
type Links struct {
	mu    sync.Mutex
	peers map[string]*liveConn // the served link of each peer
	all   map[*liveConn]bool   // every served link (a peer may briefly have two)
	// writing: a Keepalive's writes are under way; buf is the links they
	// go to (reused: one Keepalive writes at a time).
	writing atomic.Bool
	buf     []*liveConn
}

func newLinks() *Links {
	return &Links{peers: map[string]*liveConn{}, all: map[*liveConn]bool{}}
}

// LinksOf returns the link liveness of a node started by Start (nil for
// any other node).
func LinksOf(n node.Node) *Links {
	if n == nil {
		return nil
	}
	l, _ := n.Env(envLinks).(*Links)
	return l
}

// Served reports whether peer has a link that Ergo is serving. Ergo
// registers a connection before it serves it and unregisters it after, so
// true means Ergo holds a connection to peer; false may also mean one just
// registered or about to go. Unlike node.Nodes it copies nothing.
func (l *Links) Served(peer string) bool {
	if l == nil {
		return false
	}
	l.mu.Lock()
	_, ok := l.peers[peer]
	l.mu.Unlock()
	return ok
}

// ReadTimes fills dst (cleared first) with the time each link last read a
// byte from its peer, by peer name; a link that read nothing yet is
// absent.
func (l *Links) ReadTimes(dst map[string]time.Time) {
	clear(dst)
	l.mu.Lock()
	defer l.mu.Unlock()
	for name, c := range l.peers {
		if r := c.lastRead.Load(); r != 0 {
			dst[name] = epoch.Add(time.Duration(r))
		}
	}
}

// Keepalive has every link that wrote nothing for idle write a tick now,
// on a goroutine of its own: a write that blocks (a peer that reads
// nothing and a full socket) holds up only the ticks, not the caller, and
// the next Keepalive is skipped until it returns. One goroutine for all
// links, woken by the caller's own timer, costs less than a timer per
// link. With only not nil, only the links to those peers tick (the others
// stay silent: their peers do not watch this node).
func (l *Links) Keepalive(idle time.Duration, only []string) {
	if idle <= 0 || !l.writing.CompareAndSwap(false, true) {
		return
	}
	l.mu.Lock()
	l.buf = l.buf[:0]
	if only == nil {
		for c := range l.all {
			l.buf = append(l.buf, c)
		}
	} else {
		for _, name := range only {
			if c := l.peers[name]; c != nil {
				l.buf = append(l.buf, c)
			}
		}
	}
	conns := l.buf
	l.mu.Unlock()
	go func() {
		defer l.writing.Store(false)
		now := sinceEpoch()
		for _, c := range conns {
			c.tickIfIdle(now, int64(idle))
		}
	}()
}

// Ticks returns how many keepalive ticks each served link wrote, by peer
// (tests and diagnostics).
func (l *Links) Ticks() map[string]uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]uint64, len(l.peers))
	for name, c := range l.peers {
		out[name] = c.ticks.Load()
	}
	return out
}

// wait waits for the writes of the last Keepalive (tests).
func (l *Links) wait() {
	for l.writing.Load() {
		time.Sleep(100 * time.Microsecond)
	}
}

func (l *Links) add(name string, c *liveConn) {
	l.mu.Lock()
	l.peers[name] = c
	l.all[c] = true
	l.mu.Unlock()
}

func (l *Links) remove(name string, c *liveConn) {
	l.mu.Lock()
	if l.peers[name] == c {
		delete(l.peers, name)
	}
	delete(l.all, c)
	l.mu.Unlock()
	c.mu.Lock()
	c.stopped = true
	c.mu.Unlock()
}

// liveness is the proto layer that gives each link a liveConn; it sits
// right above Ergo's proto, so every byte Ergo writes passes through it.
type liveness struct {
	node.ProtoInterface
	links *Links
	conns sync.Map // node.ConnectionInterface -> *liveConn
}

func withLiveness(p node.ProtoInterface, l *Links) node.ProtoInterface {
	return &liveness{ProtoInterface: p, links: l}
}

// Init implements node.ProtoInterface.
func (p *liveness) Init(ctx context.Context, conn lib.NetReadWriter, nodename string, d node.HandshakeDetails) (node.ConnectionInterface, error) {
	c := &liveConn{NetReadWriter: conn, links: p.links, peer: d.Name}
	ci, err := p.ProtoInterface.Init(ctx, c, nodename, d)
	if err != nil || ci == nil {
		return ci, err
	}
	p.conns.Store(ci, c)
	return ci, nil
}

// Serve implements node.ProtoInterface. Only a served link counts: Ergo
// sets up the loser of a simultaneous-connect race too, and never serves it.
func (p *liveness) Serve(ci node.ConnectionInterface, router node.CoreRouter) {
	v, ok := p.conns.Load(ci)
	if !ok {
		p.ProtoInterface.Serve(ci, router)
		return
	}
	c := v.(*liveConn)
	p.links.add(c.peer, c)
	defer p.links.remove(c.peer, c)
	p.ProtoInterface.Serve(ci, router)
}

// Terminate implements node.ProtoInterface.
func (p *liveness) Terminate(ci node.ConnectionInterface) {
	p.ProtoInterface.Terminate(ci)
	if v, ok := p.conns.LoadAndDelete(ci); ok {
		c := v.(*liveConn)
		p.links.remove(c.peer, c)
	}
}

// tick is the distribution protocol's keepalive: a packet of length 0.
var tick = []byte{0, 0, 0, 0}

// liveConn is a link's socket as Ergo's proto sees it: it records when a
// byte was last read, and writes ticks on an idle link, only between two
// packets. After the handshake the stream is packets of a 4-byte
// big-endian length and that many bytes; Ergo's writer is a bufio.Writer
// that may hand over part of a packet, so the framing of what was written
// is tracked, and no tick is written while a packet is half written.
type liveConn struct {
	lib.NetReadWriter
	links    *Links
	peer     string
	lastRead atomic.Int64  // sinceEpoch of the last read that returned bytes
	ticks    atomic.Uint64 // keepalive ticks written

	mu        sync.Mutex // held over every write
	lastWrite int64      // sinceEpoch
	head      int        // bytes of the current packet's length written so far (rem == 0)
	hbuf      [4]byte    // those bytes
	rem       uint32     // bytes of the current packet's body still to come
	stopped   bool
}

// Read implements io.Reader (Ergo's read loop is the only reader).
func (c *liveConn) Read(p []byte) (int, error) {
	n, err := c.NetReadWriter.Read(p)
	if n > 0 {
		c.lastRead.Store(max(sinceEpoch(), 1))
	}
	return n, err
}

// Write implements io.Writer (Ergo's flusher, one write at a time).
func (c *liveConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, err := c.NetReadWriter.Write(p)
	c.track(p[:n])
	c.lastWrite = sinceEpoch()
	return n, err
}

// track follows the framing over bytes written.
func (c *liveConn) track(b []byte) {
	for len(b) > 0 {
		if c.rem > 0 {
			k := uint32(min(uint64(c.rem), uint64(len(b))))
			c.rem -= k
			b = b[k:]
			continue
		}
		k := copy(c.hbuf[c.head:], b)
		c.head += k
		b = b[k:]
		if c.head == 4 {
			c.head = 0
			c.rem = binary.BigEndian.Uint32(c.hbuf[:])
		}
	}
}

// boundary reports whether the bytes written so far end a packet.
func (c *liveConn) boundary() bool { return c.head == 0 && c.rem == 0 }

// tickIfIdle writes a tick when the link wrote nothing for idle (as of
// now) and no packet is half written. A link Ergo is writing to right now
// is not idle.
func (c *liveConn) tickIfIdle(now, idle int64) {
	if !c.mu.TryLock() {
		return
	}
	defer c.mu.Unlock()
	_, _ = c.idleTick(now, idle)
}

// idleTick is tickIfIdle with mu held; it reports whether it wrote.
func (c *liveConn) idleTick(now, idle int64) (bool, error) {
	if c.stopped || now-c.lastWrite < idle || !c.boundary() {
		return false, nil
	}
	if _, err := c.NetReadWriter.Write(tick); err != nil {
		c.stopped = true // the link is going down
		return false, err
	}
	c.lastWrite = now
	c.ticks.Add(1)
	return true, nil
}
