package distfilter

import (
	"encoding/binary"
	"net"

	"github.com/ergo-services/ergo/lib"
	"github.com/ergo-services/ergo/node"
)

// Distribution flags (erl_dist_protocol) the filter reads or changes.
const (
	dflagDistHdrAtomCache = 0x2000
	dflagSendSender       = 0x80000
	dflagExitPayload      = 0x400000
	dflagFragments        = 0x800000
	dflagUnlinkID         = 0x2000000
	dflagSpawn            = 1 << 32
	// Ergo's own flags (compression, proxy), which only Ergo nodes set
	ergoFlagProxy       = 1 << 62
	ergoFlagCompression = 1 << 63
)

// peerInfo is what the handshake learnt about the peer, handed to the proto
// wrapper through HandshakeDetails.Custom.
type peerInfo struct {
	name     string
	creation uint32
	flags    uint64
	// beam: the peer is an Erlang/Elixir node; its link is filtered
	beam bool
	// unlinkID: both sides announced DFLAG_UNLINK_ID
	unlinkID bool
	// spawn: we announced DFLAG_SPAWN and answer spawn requests
	spawn bool
}

// isBEAM tells a BEAM node from an Ergo node by flags only BEAM sets
// (OTP 21+ and 22+ respectively; Ergo v2.2.4 announces neither).
func isBEAM(flags uint64) bool {
	return flags&(dflagSendSender|dflagExitPayload) != 0
}

// isErgo tells an Ergo node by the flags of Ergo's own features.
func isErgo(flags uint64) bool {
	return !isBEAM(flags) && flags&(ergoFlagProxy|ergoFlagCompression) != 0
}

// handshake wraps Ergo's handshake, editing the flags it announces.
type handshake struct {
	inner node.HandshakeInterface
	f     *filter
}

// Init implements node.HandshakeInterface.
func (h *handshake) Init(nodename string, creation uint32, flags node.Flags) error {
	h.f.mu.Lock()
	h.f.name, h.f.creation = nodename, creation
	h.f.mu.Unlock()
	registry.Store(nodename, h.f)
	return h.inner.Init(nodename, creation, flags)
}

// Version implements node.HandshakeInterface.
func (h *handshake) Version() node.HandshakeVersion { return h.inner.Version() }

// Start implements node.HandshakeInterface (we dial).
func (h *handshake) Start(remote net.Addr, conn lib.NetReadWriter, tls bool, cookie string) (node.HandshakeDetails, error) {
	sc := &sniffConn{NetReadWriter: conn, tls: tls, f: h.f}
	d, err := h.inner.Start(remote, sc, tls, cookie)
	return h.finish(d, sc, err)
}

// Accept implements node.HandshakeInterface (the peer dials).
func (h *handshake) Accept(remote net.Addr, conn lib.NetReadWriter, tls bool, cookie string) (node.HandshakeDetails, error) {
	sc := &sniffConn{NetReadWriter: conn, tls: tls, f: h.f}
	d, err := h.inner.Accept(remote, sc, tls, cookie)
	return h.finish(d, sc, err)
}

func (h *handshake) finish(d node.HandshakeDetails, sc *sniffConn, err error) (node.HandshakeDetails, error) {
	if err != nil || !sc.peerKnown {
		return d, err
	}
	p := &peerInfo{
		name:     d.Name,
		creation: d.Creation,
		flags:    sc.peerFlags,
		beam:     isBEAM(sc.peerFlags),
	}
	if p.beam {
		p.unlinkID = sc.peerFlags&dflagUnlinkID != 0 && sc.sentFlags&dflagUnlinkID != 0
		p.spawn = sc.sentFlags&dflagSpawn != 0
		// we did not announce the atom cache to a BEAM peer; make Ergo's
		// sender agree
		d.Flags.EnableHeaderAtomCache = false
	}
	// Ergo fragments every message it sends over the link, whatever the
	// peer announced: without fragments, a message over Ergo's 64000-byte
	// writer limit overtakes the packets buffered before it (see
	// ergonode.fragmentUnit). The filter puts them back together for a
	// BEAM peer (filterConn.defragment); an Ergo node takes fragments
	// whatever it announced (one of ours that dialed announced none, see
	// flags). Other peers keep what they announced.
	if p.beam || isErgo(sc.peerFlags) {
		d.Flags.EnableFragmentation = true
	}
	d.Custom = p
	return d, nil
}

// sniffConn sits under Ergo's handshake: it reads the peer's flags from the
// handshake messages it receives and rewrites the flags of those it sends.
// Handshake messages are framed by a 2-byte length (4 with TLS).
type sniffConn struct {
	lib.NetReadWriter
	tls bool
	f   *filter

	rbuf      []byte
	peerKnown bool
	peerFlags uint64

	wbuf      []byte
	sentFlags uint64
}

func (c *sniffConn) hdr() int {
	if c.tls {
		return 4
	}
	return 2
}

// next cuts one complete handshake message off buf.
func (c *sniffConn) next(buf []byte) (msg, rest []byte, ok bool) {
	h := c.hdr()
	if len(buf) < h {
		return nil, buf, false
	}
	var l int
	if h == 2 {
		l = int(binary.BigEndian.Uint16(buf))
	} else {
		l = int(binary.BigEndian.Uint32(buf))
	}
	if len(buf) < h+l {
		return nil, buf, false
	}
	return buf[:h+l], buf[h+l:], true
}

// Read implements io.Reader, watching for the peer's name or challenge.
func (c *sniffConn) Read(p []byte) (int, error) {
	n, err := c.NetReadWriter.Read(p)
	if n > 0 && !c.peerKnown {
		c.rbuf = append(c.rbuf, p[:n]...)
		for !c.peerKnown {
			msg, rest, ok := c.next(c.rbuf)
			if !ok {
				break
			}
			c.rbuf = rest
			m := msg[c.hdr():]
			switch {
			case len(m) >= 9 && m[0] == 'N': // send_name or challenge, v6
				c.peerFlags = binary.BigEndian.Uint64(m[1:9])
				c.peerKnown = true
			case len(m) >= 7 && m[0] == 'n': // v5
				c.peerFlags = uint64(binary.BigEndian.Uint32(m[3:7]))
				c.peerKnown = true
			}
		}
		if c.peerKnown {
			c.rbuf = nil
		}
	}
	return n, err
}

// flags is what we announce: Ergo's flags plus UNLINK_ID; to a BEAM peer
// (or a peer not known yet, when we dial) without the atom cache and
// fragmentation, and with SPAWN when we serve rpc.
func (c *sniffConn) flags(ergo uint64) uint64 {
	f := ergo | dflagUnlinkID
	if !c.peerKnown || isBEAM(c.peerFlags) {
		f &^= dflagDistHdrAtomCache | dflagFragments
		if c.f.opts.ServeRPC {
			f |= dflagSpawn
		}
	}
	return f
}

// Write implements io.Writer, rewriting the flags of our messages.
func (c *sniffConn) Write(p []byte) (int, error) {
	c.wbuf = append(c.wbuf, p...)
	for {
		msg, rest, ok := c.next(c.wbuf)
		if !ok {
			return len(p), nil
		}
		m := msg[c.hdr():]
		switch {
		case len(m) >= 9 && m[0] == 'N':
			c.sentFlags = c.flags(binary.BigEndian.Uint64(m[1:9]))
			binary.BigEndian.PutUint64(m[1:9], c.sentFlags)
		case len(m) >= 7 && m[0] == 'n':
			c.sentFlags = c.flags(uint64(binary.BigEndian.Uint32(m[3:7])))
			binary.BigEndian.PutUint32(m[3:7], uint32(c.sentFlags))
		case len(m) >= 5 && m[0] == 'c': // complement: the high flag word
			hi := c.flags(uint64(binary.BigEndian.Uint32(m[1:5]))<<32|c.sentFlags&0xffffffff) >> 32
			binary.BigEndian.PutUint32(m[1:5], uint32(hi))
			c.sentFlags = c.sentFlags&0xffffffff | hi<<32
		}
		if err := writeAll(c.NetReadWriter, msg); err != nil {
			return 0, err
		}
		c.wbuf = rest
	}
}

func writeAll(w interface{ Write([]byte) (int, error) }, b []byte) error {
	for len(b) > 0 {
		n, err := w.Write(b)
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}
