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
// is every 15 s), so while a Monitor asks for it (Links.Keepalive) every
// link writes the distribution protocol's tick, four zero bytes that Ergo
// and BEAM nodes both read and drop, when it has written nothing for the
// period the Monitor gives. A frozen peer writes nothing, its link goes
// silent, and the Monitor falls back to its ping, which goes unanswered.

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
	every atomic.Int64         // keepalive period (ns); 0: off
	until atomic.Int64         // keepalives are written until then (sinceEpoch)
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

// Keepalive makes every link write a tick when it has written nothing for
// every, until the time until; every <= 0 stops them. The lease lets a
// caller that stops running (a wedged Monitor) stop the ticks: its peers
// then hear nothing and fall back to pinging it.
func (l *Links) Keepalive(every time.Duration, until time.Time) {
	l.until.Store(int64(until.Sub(epoch)))
	old := l.every.Swap(int64(max(every, 0)))
	if every <= 0 || old == int64(every) {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for c := range l.all {
		c.arm(every)
	}
}

func (l *Links) add(name string, c *liveConn) {
	l.mu.Lock()
	l.peers[name] = c
	l.all[c] = true
	l.mu.Unlock()
	if every := time.Duration(l.every.Load()); every > 0 {
		c.arm(every)
	}
}

func (l *Links) remove(name string, c *liveConn) {
	l.mu.Lock()
	if l.peers[name] == c {
		delete(l.peers, name)
	}
	delete(l.all, c)
	l.mu.Unlock()
	c.stop()
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
// is tracked, and a tick waits for the end of the packet in progress.
type liveConn struct {
	lib.NetReadWriter
	links    *Links
	peer     string
	lastRead atomic.Int64 // sinceEpoch of the last read that returned bytes

	mu        sync.Mutex
	lastWrite int64   // sinceEpoch
	head      int     // bytes of the current packet's length read so far (rem == 0)
	hbuf      [4]byte // those bytes
	rem       uint32  // bytes of the current packet's body still to come
	stopped   bool
	// timer: the keepalive timer (nil: not armed); set under mu, read by
	// the timer's own function without it.
	timer atomic.Pointer[time.Timer]
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

// arm starts the keepalive timer if it is not running.
func (c *liveConn) arm(every time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped || c.timer.Load() != nil {
		return
	}
	// Stored before it can fire: keepalive reads it.
	t := time.AfterFunc(time.Hour, c.keepalive)
	c.timer.Store(t)
	t.Reset(every)
}

func (c *liveConn) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopped = true
	if t := c.timer.Load(); t != nil {
		t.Stop()
	}
}

// retryBoundary is how soon a tick that found a packet half written is
// tried again: Ergo's flusher writes the rest within microseconds.
const retryBoundary = time.Millisecond

// keepalive runs on the timer: a tick when the link has written nothing
// for a period (and the lease holds), then the timer is set for when the
// link will next have been idle that long.
func (c *liveConn) keepalive() {
	every := c.links.every.Load()
	t := c.timer.Load()
	if !c.mu.TryLock() {
		// Ergo is writing (maybe blocked on a full socket): not idle.
		// Asked again later, under the lock.
		d := time.Second
		if every > 0 {
			d = time.Duration(every)
		}
		t.Reset(d)
		return
	}
	defer c.mu.Unlock()
	if c.stopped {
		return
	}
	if every <= 0 {
		c.timer.Store(nil) // Keepalive re-arms when asked again
		return
	}
	next, err := c.idleTick(sinceEpoch(), every, c.links.until.Load())
	if err != nil {
		c.stopped = true // the link is going down
		return
	}
	t.Reset(time.Duration(next))
}

// idleTick writes a tick if the link has written nothing for every, the
// last packet is complete and now is before until; it returns the wait
// before the next check. Called with mu held.
func (c *liveConn) idleTick(now, every, until int64) (int64, error) {
	next := every - (now - c.lastWrite)
	if next > 0 {
		return next, nil
	}
	switch {
	case !c.boundary():
		return int64(retryBoundary), nil
	case now < until:
		if _, err := c.NetReadWriter.Write(tick); err != nil {
			return 0, err
		}
		c.lastWrite = now
	}
	return every, nil
}
