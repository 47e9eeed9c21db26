package distfilter

import (
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"sync/atomic"

	"github.com/ergo-services/ergo/lib"
)

// Distribution control operations (erl_dist_protocol) the filter handles.
const (
	opSend           = 2
	opUnlink         = 4
	opSendTT         = 12
	opRegSendTT      = 16
	opSendSender     = 22
	opSendSenderTT   = 23
	opAliasSend      = 33
	opAliasSendTT    = 34
	opMonitorPExit   = 21
	opPayloadMonExit = 28
	opSpawnRequest   = 29
	opSpawnRequestTT = 30
	opSpawnReply     = 31
	opUnlinkID       = 35
	opUnlinkIDAck    = 36
)

// Frame types after the 4-byte length.
const (
	framePassThrough = 112 // 'p': control and payload, each with a version byte
	frameDist        = 131 // followed by 68 (DIST_HEADER) in Ergo's frames
	distHeader       = 68
	fragHeader       = 69 // DIST_FRAG_HEADER: a message's first fragment
	fragCont         = 70 // DIST_FRAG_CONT: one of its next fragments
)

// filterConn is the socket Ergo's proto sees for a BEAM peer. Reads turn
// the peer's pass-through frames into the DIST_HEADER frames (with no atom
// cache references) Ergo decodes, after handling the operations Ergo lacks;
// writes turn Ergo's frames back into pass-through frames, translating
// UNLINK and restoring long references. Frames the filter sends itself are
// written whole, between Ergo's frames.
type filterConn struct {
	lib.NetReadWriter // the socket; deadlines pass through
	f                 *filter
	peer              *peerInfo

	// read side: only Ergo's Serve goroutine calls Read
	in   []byte // bytes from the peer not yet framed
	rbuf []byte
	rerr error
	omu  sync.Mutex
	out  []byte // complete frames for Ergo

	// write side
	wmu       sync.Mutex
	wpend     []byte // Ergo's bytes that are not a complete frame yet
	frag      []byte // the frame being put together from Ergo's fragments
	fragSeq   uint64 // its sequence ID
	unlinkSeq uint64

	rpc *rpcServer // nil unless the peer may send spawn requests

	// multi_call requests rewritten into plain calls (multicall.go)
	multi multiCalls

	// rpc out of Go (origin.go), made on first use
	originOnce sync.Once
	orig       atomic.Pointer[rpcOrigin]

	served atomic.Bool // Ergo serves this connection (not a lost race's)
}

func newFilterConn(conn lib.NetReadWriter, peer *peerInfo, f *filter) *filterConn {
	fc := &filterConn{NetReadWriter: conn, f: f, peer: peer, rbuf: make([]byte, 64*1024)}
	if peer.spawn {
		fc.rpc = newRPCServer(fc)
	}
	return fc
}

// close releases what the connection holds (rpc timers).
func (fc *filterConn) close() {
	if fc.rpc != nil {
		fc.rpc.close()
	}
	if o := fc.orig.Load(); o != nil {
		o.close()
	}
}

// Read implements io.Reader for Ergo's read loop.
func (fc *filterConn) Read(p []byte) (int, error) {
	for {
		fc.omu.Lock()
		if len(fc.out) > 0 {
			n := copy(p, fc.out)
			fc.out = fc.out[n:]
			if len(fc.out) == 0 {
				fc.out = nil
			}
			fc.omu.Unlock()
			return n, nil
		}
		fc.omu.Unlock()
		if fc.frameIn() {
			continue
		}
		if fc.rerr != nil {
			err := fc.rerr
			fc.rerr = nil
			return 0, err
		}
		n, err := fc.NetReadWriter.Read(fc.rbuf)
		fc.in = append(fc.in, fc.rbuf[:n]...)
		fc.rerr = err
	}
}

// toErgo queues complete frames for Ergo. Safe from any goroutine. The
// filter keeps no reference to frame afterwards.
func (fc *filterConn) toErgo(frame []byte) {
	fc.omu.Lock()
	if len(fc.out) == 0 {
		fc.out = frame // no copy: a large frame is handed over as is
	} else {
		fc.out = append(fc.out, frame...)
	}
	fc.omu.Unlock()
}

// maxPrealloc bounds the buffer allocated ahead for a frame from its
// announced length: four bytes from a peer must not cost gigabytes.
const maxPrealloc = 16 << 20

// bigFrame is the size from which frames are rewritten in place and
// written in pieces instead of being copied.
const bigFrame = 64 * 1024

// frameIn handles every complete frame in fc.in; it reports whether any
// was handled.
func (fc *filterConn) frameIn() bool {
	off := 0
	lent := false // a frame inside fc.in was handed to Ergo by reference
	for len(fc.in)-off >= 4 {
		l := int(binary.BigEndian.Uint32(fc.in[off:]))
		if len(fc.in)-off-4 < l {
			if off == 0 && cap(fc.in) < 4+l && l <= maxPrealloc {
				// a large frame is coming: one allocation, not doublings
				// (only up to maxPrealloc: the length is the peer's word,
				// and a larger frame grows as its bytes really arrive)
				fc.in = append(make([]byte, 0, 4+l), fc.in...)
			}
			break
		}
		if fc.incoming(fc.in[off : off+4+l]) {
			lent = true
		}
		off += 4 + l
	}
	if off == 0 {
		return false
	}
	if lent {
		fc.in = append([]byte(nil), fc.in[off:]...)
	} else {
		n := copy(fc.in, fc.in[off:])
		fc.in = fc.in[:n]
	}
	return true
}

// incoming handles one frame from the peer (with its length); it reports
// whether it handed the frame's own bytes to Ergo.
func (fc *filterConn) incoming(lframe []byte) bool {
	frame := lframe[4:]
	if len(frame) == 0 {
		fc.toErgo([]byte{0, 0, 0, 0}) // tick
		return false
	}
	ctrl, payload, ok := splitPassThrough(frame)
	if !ok {
		fc.f.logOnce("in-frame", "unexpected frame type %d from %s passed to Ergo unchanged", frame[0], fc.peer.name)
		fc.toErgo(append([]byte(nil), lframe...))
		return false
	}
	if implausible(ctrl) || implausible(payload) {
		// Ergo would allocate from the claimed lengths and then fail to
		// decode the frame anyway: drop it before it costs memory
		fc.f.droppedImplausible.Add(1)
		fc.f.logOnce("implausible", "a frame from %s claiming more elements than it holds was dropped (it would make Ergo's decoder allocate from the claim); further ones are dropped silently", fc.peer.name)
		return false
	}
	fc.f.refs.rememberAll(ctrl)
	if payload != nil {
		fc.f.refs.rememberAll(payload)
	}
	op := ctrlOp(ctrl)
	if o := fc.orig.Load(); o != nil && toStandIn(op) && o.incoming(op, ctrl, payload) {
		return false
	}
	switch op {
	case opUnlinkID:
		// {35, Id, From, To}: Ergo knows {4, From, To}; the peer waits
		// for {36, Id, To, From}
		if e, err := elements(ctrl); err == nil && len(e) == 4 {
			fc.f.unlinkIn.Add(1)
			fc.toErgo(distFrame(tuple(integer(opUnlink), e[2], e[3]), nil))
			_ = fc.toPeer(tuple(integer(opUnlinkIDAck), e[1], e[3], e[2]), nil)
			return false
		}
	case opUnlinkIDAck:
		return false // the answer to an UNLINK_ID we made from Ergo's UNLINK
	case opSpawnRequest, opSpawnRequestTT:
		if fc.rpc != nil {
			fc.rpc.spawnRequest(ctrl, payload)
			return false
		}
	}
	if op == opRegSend || op == opRegSendTT {
		if p, ok := fc.rewriteMultiCall(payload); ok {
			fc.toErgo(distFrame(ctrl, p))
			return false
		}
	}
	if len(payload) == 1 && payload[0] == tagNil {
		// Ergo's decoder fails on a top-level [] and drops the link; the
		// empty STRING_EXT is the same Erlang term and decodes to ""
		fc.f.repairedNil.Add(1)
		fc.f.logOnce("nil", "a top-level [] message from %s is delivered as \"\" (Ergo cannot decode [] alone)", fc.peer.name)
		payload = []byte{tagString, 0, 0}
	}
	if isEmptyTuple(payload) && carriesMessage(ctrlOp(ctrl)) {
		// Ergo's gen.Server loop reads the first element of every tuple it
		// receives: a {} kills the receiving process outside its callbacks
		// (no Terminate). No Ergo process can take one, so it is dropped.
		fc.f.droppedEmptyTuple.Add(1)
		fc.f.logOnce("tuple0", "a {} message from %s was dropped (it would kill the receiving Ergo gen.Server); further ones are dropped silently", fc.peer.name)
		return false
	}
	if len(payload) < bigFrame {
		fc.toErgo(distFrame(ctrl, payload))
		return false
	}
	// 'p' 131 Ctrl 131 Payload and 131 68 0 Ctrl Payload have the same
	// length and the payload at the same place: rewrite the head in place
	c := len(ctrl)
	copy(frame[3:3+c], frame[2:2+c])
	frame[0], frame[1], frame[2] = frameDist, distHeader, 0
	// capped: appending to fc.out must not write over the frames after it
	fc.toErgo(lframe[:len(lframe):len(lframe)])
	return true
}

// toStandIn reports whether a control operation is addressed to the pid
// in its third element (where the rpc origin's stand-ins are looked for).
func toStandIn(op int) bool {
	switch op {
	case opSpawnReply, opMonitorPExit, opPayloadMonExit, opSend, opSendTT, opSendSender, opSendSenderTT,
		opMonitor, opDemonitor, opLink, opExit, opExit2, opPayloadExit, opPayloadExt2:
		return true
	}
	return false
}

// isEmptyTuple reports whether an encoded payload is {} (SMALL_TUPLE_EXT
// or LARGE_TUPLE_EXT of arity 0). Bytes after it do not matter: the
// decoder reads the first term.
func isEmptyTuple(t []byte) bool {
	return (len(t) >= 2 && t[0] == tagSmallTuple && t[1] == 0) ||
		(len(t) >= 5 && t[0] == tagLargeTuple && t[1]|t[2]|t[3]|t[4] == 0)
}

// carriesMessage reports whether a control operation's payload is a message
// delivered to a process's mailbox (the send operations), not an exit
// reason or a spawn's arguments.
func carriesMessage(op int) bool {
	switch op {
	case opSend, opRegSend, opSendTT, opRegSendTT, opSendSender, opSendSenderTT, opAliasSend, opAliasSendTT:
		return true
	}
	return false
}

// splitPassThrough cuts a pass-through frame into control and payload
// (nil when absent), without their version bytes.
func splitPassThrough(frame []byte) (ctrl, payload []byte, ok bool) {
	if len(frame) < 2 || frame[0] != framePassThrough || frame[1] != tagVersion {
		return nil, nil, false
	}
	body := frame[2:]
	n, err := skipTerm(body, nil)
	if err != nil {
		return nil, nil, false
	}
	ctrl, rest := body[:n], body[n:]
	if len(rest) == 0 {
		return ctrl, nil, true
	}
	if rest[0] != tagVersion || len(rest) < 2 {
		return nil, nil, false
	}
	return ctrl, rest[1:], true
}

// ctrlOp is the operation of a control tuple, or -1.
func ctrlOp(ctrl []byte) int {
	if len(ctrl) >= 4 && (ctrl[0] == tagSmallTuple) && ctrl[2] == tagSmallInt {
		return int(ctrl[3])
	}
	return -1
}

// distFrame builds the frame Ergo reads: DIST_HEADER with no atom cache
// references, then the terms without version bytes.
func distFrame(ctrl, payload []byte) []byte {
	l := 3 + len(ctrl) + len(payload)
	b := binary.BigEndian.AppendUint32(make([]byte, 0, 4+l), uint32(l))
	b = append(b, frameDist, distHeader, 0)
	b = append(b, ctrl...)
	return append(b, payload...)
}

// passThroughFrame builds the frame a BEAM node reads from a peer without
// the atom cache: 'p', then each term with its version byte.
func passThroughFrame(ctrl, payload []byte) []byte {
	l := 2 + len(ctrl)
	if payload != nil {
		l += 1 + len(payload)
	}
	b := binary.BigEndian.AppendUint32(make([]byte, 0, 4+l), uint32(l))
	b = append(b, framePassThrough, tagVersion)
	b = append(b, ctrl...)
	if payload != nil {
		b = append(b, tagVersion)
		b = append(b, payload...)
	}
	return b
}

// toPeer sends a control message (and payload, nil for none) of the
// filter's own to the peer, between Ergo's frames. Any goroutine except
// one inside Write.
func (fc *filterConn) toPeer(ctrl, payload []byte) error {
	frame := fc.outFrame(ctrl, payload)
	fc.wmu.Lock()
	defer fc.wmu.Unlock()
	return writeAll(fc.NetReadWriter, frame)
}

// outFrame restores long references and builds a pass-through frame.
func (fc *filterConn) outFrame(ctrl, payload []byte) []byte {
	ctrl = fc.f.refs.restore(ctrl)
	if payload != nil {
		payload = fc.f.refs.restore(payload)
	}
	return passThroughFrame(ctrl, payload)
}

// Write implements io.Writer for Ergo's flusher; it is called with whole
// or partial frames, never concurrently with itself.
func (fc *filterConn) Write(p []byte) (int, error) {
	fc.wmu.Lock()
	defer fc.wmu.Unlock()
	data := p
	if len(fc.wpend) > 0 {
		fc.wpend = append(fc.wpend, p...)
		data = fc.wpend
	}
	var pieces net.Buffers
	off := 0
	for len(data)-off >= 4 {
		l := int(binary.BigEndian.Uint32(data[off:]))
		if len(data)-off-4 < l {
			break
		}
		if frame := fc.defragment(data[off : off+4+l]); frame != nil {
			pieces = append(pieces, fc.outgoing(frame)...)
		}
		off += 4 + l
	}
	var err error
	if len(pieces) > 0 {
		_, err = pieces.WriteTo(fc.NetReadWriter) // writev on a TCP socket
	}
	// keep the incomplete tail; pieces may point into data, so only now
	rest := data[off:]
	if len(fc.wpend) > 0 {
		n := copy(fc.wpend, rest)
		fc.wpend = fc.wpend[:n]
	} else {
		fc.wpend = append(fc.wpend, rest...)
	}
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

// defragment puts Ergo's fragments of a message back together: it returns
// frame itself when it is not a fragment, nil while fragments are due, and
// the whole message as one DIST_HEADER frame (a buffer of its own) at its
// last fragment. Ergo fragments messages on BEAM links so that none of its
// packets passes its writer's 64000-byte limit (ergonode.fragmentUnit);
// the peer gets each message whole, in the order Ergo wrote them, so it
// never sees a fragment and the filter rewrites whole messages only. One
// sender per link writes a message's fragments back to back, first to
// last (fragment IDs count down to 1).
func (fc *filterConn) defragment(frame []byte) []byte {
	body := frame[4:]
	if len(body) < 18 || body[0] != frameDist || (body[1] != fragHeader && body[1] != fragCont) {
		return frame
	}
	seq := binary.BigEndian.Uint64(body[2:10])
	id := binary.BigEndian.Uint64(body[10:18])
	switch {
	case body[1] == fragHeader:
		if fc.frag != nil {
			fc.f.logOnce("out-frag", "unfinished fragmented message from Ergo to %s dropped", fc.peer.name)
		}
		fc.frag = append(make([]byte, 0, 4+2+int(min(id, 1<<10))*len(body)), 0, 0, 0, 0, frameDist, distHeader)
		fc.fragSeq = seq
	case fc.frag == nil || seq != fc.fragSeq:
		fc.f.logOnce("out-frag", "stray fragment from Ergo to %s dropped", fc.peer.name)
		return nil
	}
	fc.frag = append(fc.frag, body[18:]...)
	if id > 1 {
		return nil
	}
	whole := fc.frag
	fc.frag = nil
	binary.BigEndian.PutUint32(whole, uint32(len(whole)-4))
	return whole
}

// outgoing turns one of Ergo's frames (with length) into the pieces the
// peer gets, in order; none to drop it. Pieces may point into frame.
func (fc *filterConn) outgoing(frame []byte) [][]byte {
	body := frame[4:]
	if len(body) == 0 {
		return [][]byte{frame} // tick
	}
	if len(body) < 3 || body[0] != frameDist || body[1] != distHeader || body[2] != 0 {
		fc.f.logOnce("out-frame", "unexpected frame type %d/%d from Ergo to %s sent unchanged", body[0], body[1%len(body)], fc.peer.name)
		return [][]byte{frame}
	}
	terms := body[3:]
	n, err := skipTerm(terms, nil)
	if err != nil {
		fc.f.logOnce("out-term", "undecodable control from Ergo to %s sent unchanged: %v", fc.peer.name, err)
		return [][]byte{frame}
	}
	ctrl, payload := terms[:n], terms[n:]
	if len(payload) == 0 {
		payload = nil
	}
	switch ctrlOp(ctrl) {
	case opUnlink:
		if fc.peer.unlinkID {
			if e, err := elements(ctrl); err == nil && len(e) == 3 {
				fc.unlinkSeq++
				fc.f.unlinkOut.Add(1)
				ctrl = tuple(integer(opUnlinkID), integer(int64(fc.unlinkSeq)), e[1], e[2])
			}
		}
	case opSend, opMonitorPExit:
		if ctrlOp(ctrl) == opSend {
			if f := fc.multiCallReply(payload); f != nil {
				return [][]byte{f}
			}
		}
		if fc.rpc != nil && fc.rpc.intercept(ctrl, payload) {
			return nil
		}
	}
	ctrl = fc.f.refs.restore(ctrl)
	if len(payload) < bigFrame {
		return [][]byte{passThroughFrame(ctrl, fc.f.refs.restore(payload))}
	}
	// a large payload goes out from Ergo's buffer: only the head is new
	payload = fc.f.refs.restore(payload)
	head := passThroughFrame(ctrl, []byte{})
	binary.BigEndian.PutUint32(head, uint32(len(head)-4+len(payload)))
	return [][]byte{head, payload}
}

// implausible reports whether t (nil for none) claims more elements than
// it holds.
func implausible(t []byte) bool {
	if t == nil {
		return false
	}
	_, err := skipTerm(t, nil)
	return errors.Is(err, errImplausible)
}
