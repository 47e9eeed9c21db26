package distfilter

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"io"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ergo-services/ergo/etf"
	"github.com/ergo-services/ergo/lib"
)

// Terms recorded with term_to_binary on OTP 25.2.3, 27.3.4.1 and 29.1.1
// (hex, version byte included) and the number of NEWER_REFERENCE_EXT in each.
var recordedTerms = []struct {
	hex  string
	refs int
	what string
}{
	{"836101", 0, "1"},
	{"8362FFFFFFFF", 0, "-1"},
	{"836E0600000000000001", 0, "1 bsl 40"},
	{"836E0901000000000000000040", 0, "-(1 bsl 70)"},
	{"83463FF8000000000000", 0, "1.5"},
	{"83640003FC6EEF", 0, "'ünï' (latin-1 ATOM_EXT)"},
	{"836B0003737472", 0, `"str"`},
	{"836A", 0, "[]"},
	{"836C00000002610161026103", 0, "[1,2|3]"},
	{"836800", 0, "{}"},
	{"8368026400016164000162", 0, "{a,b}"},
	{"834D000000010320", 0, "<<1:3>>"},
	{"8374000000026400016161016B00016B6C00000001640001786A", 0, `#{a => 1,"k" => [x]}`},
	{"835864000D6E6F6E6F6465406E6F686F7374000000090000000000000000", 0, "pid (25)"},
	{"835A000364000D6E6F6E6F6465406E6F686F73740000000000026DC6C8780001183F5EE4", 1, "make_ref() (25)"},
	{"835964000D6E6F6E6F6465406E6F686F73740000000000000000", 0, "port (25)"},
	{"8378770D6E6F6E6F6465406E6F686F7374000000000000000000000000", 0, "port (29, V4_PORT_EXT)"},
	{"837164000665726C616E676400046E6F64656100", 0, "fun erlang:node/0"},
	{"83700000004700A8091FA3349BD6D80F2AAE2C2D29F63D0000000000000000640003726563610062054048FD5864000D6E6F6E6F6465406E6F686F7374000000090000000000000000", 0, "fun() -> ok end (25)"},
	{"8368026D000000006C000000016A6A", 0, "{<<>>,[[]]}"},
	{"835A0005770D6E6F6E6F6465406E6F686F7374000000000003A33338710001B0EA91070000050300000000", 1, "alias, 5 words (27)"},
	{"835A0005770D6E6F6E6F6465406E6F686F7374000000000001A4A3587900024CB5BA010000050300000000", 1, "alias, 5 words (29)"},
}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSkipTermWalksRecordedTerms(t *testing.T) {
	for _, c := range recordedTerms {
		b := unhex(t, c.hex)[1:]
		refs := 0
		n, err := skipTerm(b, func(int, int) { refs++ })
		if err != nil || n != len(b) || refs != c.refs {
			t.Errorf("%s: length %d of %d, %d refs (want %d), err %v", c.what, n, len(b), refs, c.refs, err)
		}
		// a cut term must be an error, never a panic or a wrong length
		for cut := 0; cut < len(b); cut++ {
			if n, err := skipTerm(b[:cut], nil); err == nil {
				t.Errorf("%s cut to %d bytes: no error (length %d)", c.what, cut, n)
			}
		}
	}
	// a tuple of all of them, with a list around: lengths add up
	var all [][]byte
	for _, c := range recordedTerms {
		all = append(all, unhex(t, c.hex)[1:])
	}
	term := putList(nil, tuple(all...), tuple())
	if n, err := skipTerm(term, nil); err != nil || n != len(term) {
		t.Fatalf("nested: %d of %d, %v", n, len(term), err)
	}
}

// sock is an in-memory socket: Read serves the given bytes then io.EOF,
// Write collects.
type sock struct {
	r       *bytes.Reader
	mu      sync.Mutex
	w       bytes.Buffer
	discard bool // count only (benchmarks)
	n       int
}

func (s *sock) Read(p []byte) (int, error) { return s.r.Read(p) }
func (s *sock) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n += len(p)
	if s.discard {
		return len(p), nil
	}
	return s.w.Write(p)
}
func (s *sock) SetReadDeadline(time.Time) error  { return nil }
func (s *sock) SetWriteDeadline(time.Time) error { return nil }
func (s *sock) written() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]byte(nil), s.w.Bytes()...)
}

var _ lib.NetReadWriter = (*sock)(nil)

// frames splits a stream into frames (without lengths).
func frames(t *testing.T, b []byte) [][]byte {
	t.Helper()
	var out [][]byte
	for len(b) > 0 {
		if len(b) < 4 {
			t.Fatalf("stream ends in a length: %x", b)
		}
		l := int(binary.BigEndian.Uint32(b))
		if len(b) < 4+l {
			t.Fatalf("stream ends inside a frame")
		}
		out = append(out, b[4:4+l])
		b = b[4+l:]
	}
	return out
}

const (
	erlNode = "erl@127.0.0.1"
	goNodeU = "go@127.0.0.1"
)

var (
	erlPidT = putPid(nil, erlNode, 85, 0, 1700000000)
	goPidT  = putPid(nil, goNodeU, 1001, 0, 1700000001)
)

// newTestConn is a filterConn over an in-memory socket holding in.
func newTestConn(in []byte, unlinkID, spawn bool) (*filterConn, *sock) {
	s := &sock{r: bytes.NewReader(in)}
	f := newFilter(Options{})
	f.name, f.creation = goNodeU, 1700000001
	peer := &peerInfo{name: erlNode, creation: 1700000000, beam: true, unlinkID: unlinkID, spawn: spawn}
	return newFilterConn(s, peer, f), s
}

// readAll reads what Ergo would read until the socket's EOF.
func readAll(t *testing.T, fc *filterConn) []byte {
	t.Helper()
	var out []byte
	buf := make([]byte, 7) // small on purpose: frames cross reads
	for i := 0; i < 1<<20; i++ {
		n, err := fc.Read(buf)
		out = append(out, buf[:n]...)
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Fatal("read did not end")
	return nil
}

// ergoFrame is a frame as Ergo's sender writes it to a peer without the
// atom cache, encoded by Ergo's own encoder.
func ergoFrame(t *testing.T, ctrl, payload etf.Term) []byte {
	t.Helper()
	opts := etf.EncodeOptions{FlagBigCreation: true, FlagBigPidRef: true}
	b := lib.TakeBuffer()
	defer lib.ReleaseBuffer(b)
	if err := etf.Encode(ctrl, b, opts); err != nil {
		t.Fatal(err)
	}
	if payload != nil {
		if err := etf.Encode(payload, b, opts); err != nil {
			t.Fatal(err)
		}
	}
	terms := append([]byte(nil), b.B...)
	n, _ := skipTerm(terms, nil)
	var p []byte
	if n < len(terms) {
		p = terms[n:]
	}
	return distFrame(terms[:n], p)
}

// decodeErgo decodes a frame Ergo would read, as Ergo does.
func decodeErgo(t *testing.T, frame []byte) (ctrl, payload etf.Term) {
	t.Helper()
	if len(frame) < 3 || frame[0] != frameDist || frame[1] != distHeader || frame[2] != 0 {
		t.Fatalf("not a DIST_HEADER frame without atom cache: %x", frame)
	}
	opts := etf.DecodeOptions{FlagBigPidRef: true}
	ctrl, rest, err := etf.Decode(frame[3:], nil, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(rest) > 0 {
		payload, rest, err = etf.Decode(rest, nil, opts)
		if err != nil || len(rest) != 0 {
			t.Fatalf("payload: %v, %d bytes left", err, len(rest))
		}
	}
	return ctrl, payload
}

func TestUnlinkIDBecomesUnlinkAndAck(t *testing.T) {
	in := passThroughFrame(tuple(integer(opUnlinkID), integer(7), erlPidT, goPidT), nil)
	in = append(in, passThroughFrame(tuple(integer(opUnlinkIDAck), integer(3), erlPidT, goPidT), nil)...)
	in = append(in, 0, 0, 0, 0) // tick
	fc, s := newTestConn(in, true, false)
	got := frames(t, readAll(t, fc))
	if len(got) != 2 || len(got[1]) != 0 {
		t.Fatalf("Ergo read %d frames %x, want UNLINK and a tick (the ACK dropped)", len(got), got)
	}
	ctrl, _ := decodeErgo(t, got[0])
	c := ctrl.(etf.Tuple)
	if c[0] != opUnlink || c[1].(etf.Pid).Node != erlNode || c[2].(etf.Pid).Node != goNodeU {
		t.Fatalf("Ergo got %#v, want {4, ErlPid, GoPid}", ctrl)
	}
	wantAck := passThroughFrame(tuple(integer(opUnlinkIDAck), integer(7), goPidT, erlPidT), nil)
	if !bytes.Equal(s.written(), wantAck) {
		t.Fatalf("peer got %x\nwant UNLINK_ID_ACK %x", s.written(), wantAck)
	}
}

func TestErgoUnlinkBecomesUnlinkID(t *testing.T) {
	goPid := etf.Pid{Node: goNodeU, ID: 1001, Creation: 1700000001}
	erlPid := etf.Pid{Node: erlNode, ID: 85, Creation: 1700000000}
	frame := ergoFrame(t, etf.Tuple{opUnlink, goPid, erlPid}, nil)
	for _, unlinkID := range []bool{true, false} {
		fc, s := newTestConn(nil, unlinkID, false)
		// written in two pieces, as bufio may cut it
		if _, err := fc.Write(frame[:5]); err != nil {
			t.Fatal(err)
		}
		if len(s.written()) != 0 {
			t.Fatal("a partial frame reached the socket")
		}
		if _, err := fc.Write(append(append([]byte(nil), frame[5:]...), 0, 0, 0, 0)); err != nil {
			t.Fatal(err)
		}
		want := passThroughFrame(tuple(integer(opUnlink), goPidT, erlPidT), nil)
		if unlinkID {
			want = passThroughFrame(tuple(integer(opUnlinkID), integer(1), goPidT, erlPidT), nil)
		}
		want = append(want, 0, 0, 0, 0)
		if !bytes.Equal(s.written(), want) {
			t.Fatalf("unlinkID=%v: peer got %x\nwant %x", unlinkID, s.written(), want)
		}
	}
}

func TestLongReferenceRestored(t *testing.T) {
	for _, c := range recordedTerms {
		if !strings.HasPrefix(c.what, "alias") {
			continue
		}
		ref := unhex(t, c.hex)[1:]
		// {'$gen_call', {ErlPid, [alias|Ref]}, ping} to go_echo, as OTP 26+ sends it
		from := tuple(erlPidT, append(append(binary.BigEndian.AppendUint32([]byte{tagList}, 1), atom("alias")...), ref...))
		msg := tuple(atom("$gen_call"), from, atom("ping"))
		in := passThroughFrame(tuple(integer(6), erlPidT, atom(""), atom("go_echo")), msg)
		fc, s := newTestConn(in, true, false)
		got := frames(t, readAll(t, fc))
		if len(got) != 1 {
			t.Fatalf("%d frames", len(got))
		}
		_, payload := decodeErgo(t, got[0])
		// Ergo's view: the improper list decodes as a 2-element list
		goRef := payload.(etf.Tuple)[1].(etf.Tuple)[1].(etf.List)[1].(etf.Ref)
		// Ergo replies to the alias: {33, GoPid, Alias} with {Ref, pong}
		goPid := etf.Pid{Node: goNodeU, ID: 1001, Creation: 1700000001}
		reply := ergoFrame(t, etf.Tuple{33, goPid, goRef}, etf.Tuple{goRef, etf.Atom("pong")})
		if short := frames(t, reply)[0]; bytes.Contains(short, ref) {
			t.Fatal("Ergo's encoding already holds the long reference: test proves nothing")
		}
		if _, err := fc.Write(reply); err != nil {
			t.Fatal(err)
		}
		out := frames(t, s.written())
		if len(out) != 1 {
			t.Fatalf("%d frames to the peer", len(out))
		}
		wantCtrl := tuple(integer(33), goPidT, ref)
		wantPayload := tuple(ref, atom("pong"))
		if !bytes.Equal(out[0], passThroughFrame(wantCtrl, wantPayload)[4:]) {
			t.Fatalf("%s: peer got %x\nwant %x", c.what, out[0], passThroughFrame(wantCtrl, wantPayload)[4:])
		}
	}
}

func TestRefStoreIsBounded(t *testing.T) {
	s := newRefStore(4)
	mk := func(i uint32) []byte { return putRef(nil, erlNode, 1, i, 2, 3, 4, 5) }
	for i := uint32(0); i < 10; i++ {
		s.remember(mk(i))
	}
	if s.len() != 4 {
		t.Fatalf("store holds %d, want 4", s.len())
	}
	short := func(i uint32) []byte { return putRef(nil, erlNode, 1, i, 2, 3) }
	if _, ok := s.original(short(5)); ok {
		t.Fatal("evicted entry still found")
	}
	if o, ok := s.original(short(9)); !ok || !bytes.Equal(o, mk(9)) {
		t.Fatal("newest entry lost")
	}
	// three-word references Ergo reproduces are not stored at all
	s.remember(putRef(nil, erlNode, 1, 77, 2, 3))
	if _, ok := s.original(short(77)); ok {
		t.Fatal("a plain reference was stored")
	}
}

// A node that never meets a long reference (a Go-only cluster) pays
// nothing for the store: the old one allocated its bound up front, 1 MB of
// string headers at the default size, on every node's heap.
func TestRefStoreCostsNothingUntilUsed(t *testing.T) {
	r := testing.Benchmark(func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			_ = newRefStore(0)
		}
	})
	if got := r.AllocedBytesPerOp(); got > 256 {
		t.Fatalf("an unused store allocates %d bytes, want at most 256", got)
	}
	s := newRefStore(0)
	long := putRef(nil, erlNode, 1, 7, 2, 3, 4, 5)
	s.remember(long)
	if o, ok := s.original(putRef(nil, erlNode, 1, 7, 2, 3)); !ok || !bytes.Equal(o, long) {
		t.Fatal("a long reference was not kept")
	}
}

func TestTopLevelNilRepaired(t *testing.T) {
	in := passThroughFrame(tuple(integer(opSend), atom(""), goPidT), []byte{tagNil})
	in = append(in, passThroughFrame(tuple(integer(opSend), atom(""), goPidT), putList(nil, []byte{tagNil}))...)
	fc, _ := newTestConn(in, true, false)
	got := frames(t, readAll(t, fc))
	if len(got) != 2 {
		t.Fatalf("%d frames", len(got))
	}
	if _, p := decodeErgo(t, got[0]); p != "" {
		t.Fatalf("top-level [] reached Ergo as %#v, want \"\"", p)
	}
	// a nested [] is left alone
	if _, p := decodeErgo(t, got[1]); len(p.(etf.List)) != 1 {
		t.Fatalf("[[]] reached Ergo as %#v", p)
	}
	if fc.f.repairedNil.Load() != 1 {
		t.Fatalf("repaired %d, want 1", fc.f.repairedNil.Load())
	}
}

func TestEmptyTupleMessageDropped(t *testing.T) {
	send := tuple(integer(opSend), atom(""), goPidT)
	regSend := tuple(integer(opRegSend), goPidT, atom(""), atom("go_echo"))
	in := passThroughFrame(send, []byte{tagSmallTuple, 0})
	in = append(in, passThroughFrame(regSend, []byte{tagLargeTuple, 0, 0, 0, 0})...)
	in = append(in, passThroughFrame(send, []byte{tagSmallTuple, 1, tagSmallTuple, 0})...) // {{}} is fine
	in = append(in, passThroughFrame(send, []byte{tagSmallTuple, 0, tagNil})...)           // {} with bytes after it
	fc, _ := newTestConn(in, true, false)
	got := frames(t, readAll(t, fc))
	if len(got) != 1 {
		t.Fatalf("%d frames reached Ergo, want 1 ({{}})", len(got))
	}
	if _, p := decodeErgo(t, got[0]); !reflect.DeepEqual(p, etf.Tuple{etf.Tuple{}}) {
		t.Fatalf("{{}} reached Ergo as %#v", p)
	}
	if n := fc.f.droppedEmptyTuple.Load(); n != 3 {
		t.Fatalf("dropped %d, want 3", n)
	}
}

func TestHandshakeFlagsRewritten(t *testing.T) {
	const beamFlags = 0x3_07df_7fbd // what OTP 25 sends (SEND_SENDER, EXIT_PAYLOAD, atom cache...)
	const ergoFlags = 0xc_0186_7fff // Ergo v2.2.4's flags as ergonode sets them (no SPAWN)
	for _, c := range []struct {
		name        string
		peer        uint64
		rpc         bool
		wantSet     uint64
		wantCleared uint64
	}{
		{"beam", beamFlags, false, dflagUnlinkID, dflagDistHdrAtomCache | dflagFragments | dflagSpawn},
		{"beam+rpc", beamFlags, true, dflagUnlinkID | dflagSpawn, dflagDistHdrAtomCache | dflagFragments},
		{"ergo", ergoFlags &^ (dflagSendSender | dflagExitPayload), true, dflagUnlinkID | dflagDistHdrAtomCache | dflagFragments, dflagSpawn},
	} {
		// the peer's send_name 'N' (v6): flags 8, creation 4, name length 2, name
		m := binary.BigEndian.AppendUint64([]byte{'N'}, c.peer)
		m = binary.BigEndian.AppendUint32(m, 42)
		m = binary.BigEndian.AppendUint16(m, uint16(len(erlNode)))
		m = append(m, erlNode...)
		m = append(binary.BigEndian.AppendUint16(nil, uint16(len(m))), m...)
		s := &sock{r: bytes.NewReader(m)}
		sc := &sniffConn{NetReadWriter: s, f: newFilter(Options{ServeRPC: c.rpc})}
		buf := make([]byte, 5) // the message arrives in pieces
		for {
			if _, err := sc.Read(buf); err != nil {
				break
			}
		}
		if !sc.peerKnown || sc.peerFlags != c.peer {
			t.Fatalf("%s: peer flags %x known=%v", c.name, sc.peerFlags, sc.peerKnown)
		}
		// our challenge 'N': flags 8, challenge 4, creation 4, name
		ours := binary.BigEndian.AppendUint64([]byte{'N'}, ergoFlags)
		ours = append(ours, make([]byte, 10)...)
		msg := append(binary.BigEndian.AppendUint16(nil, uint16(len(ours))), ours...)
		if _, err := sc.Write(msg); err != nil {
			t.Fatal(err)
		}
		w := s.written()
		sent := binary.BigEndian.Uint64(w[3:11])
		if sent&c.wantSet != c.wantSet || sent&c.wantCleared != 0 {
			t.Fatalf("%s: sent flags %x, want %x set and %x clear", c.name, sent, c.wantSet, c.wantCleared)
		}
		if !bytes.Equal(w[11:], ours[9:]) {
			t.Fatalf("%s: handshake body changed beyond the flags", c.name)
		}
	}
}

// ergoFragments cuts one of Ergo's frames (from ergoFrame) into the
// fragments Ergo's sender writes for it with fragmentation unit unit: the
// first holds the atom cache header and unit bytes, IDs count down to 1
// from len/unit+1, and the last may be empty (a length that is a multiple
// of unit).
func ergoFragments(frame []byte, seq uint64, unit int) [][]byte {
	data := frame[4+2:] // atom cache header (0), then the terms
	n := (len(data)-1)/unit + 1
	var out [][]byte
	for i := 0; i < n; i++ {
		k := min(unit, len(data))
		typ := byte(fragCont)
		if i == 0 {
			k = min(unit+1, len(data))
			typ = fragHeader
		}
		b := binary.BigEndian.AppendUint32(nil, uint32(18+k))
		b = append(b, frameDist, typ)
		b = binary.BigEndian.AppendUint64(b, seq)
		b = binary.BigEndian.AppendUint64(b, uint64(n-i))
		out = append(out, append(b, data[:k]...))
		data = data[k:]
	}
	return out
}

// Ergo's fragments of a message leave as the one frame the unfragmented
// message makes, whatever pieces its writer cuts them into; a tick
// between fragments goes out before it; the next frame follows.
func TestErgoFragmentsLeaveWhole(t *testing.T) {
	erlPid := etf.Pid{Node: erlNode, ID: 85, Creation: 1700000000}
	big := ergoFrame(t, etf.Tuple{opSend, etf.Atom(""), erlPid}, etf.Tuple{1, bytes.Repeat([]byte{7}, 100_000)})
	small := ergoFrame(t, etf.Tuple{opSend, etf.Atom(""), erlPid}, etf.Tuple{2, "after"})

	ref, rs := newTestConn(nil, true, false)
	if _, err := ref.Write(append(append([]byte(nil), big...), small...)); err != nil {
		t.Fatal(err)
	}
	want := append([]byte{0, 0, 0, 0}, rs.written()...)

	frags := ergoFragments(big, 9, 32000)
	if len(frags) != 4 {
		t.Fatalf("%d fragments, want 4", len(frags))
	}
	var stream []byte
	for i, f := range frags {
		stream = append(stream, f...)
		if i == 1 {
			stream = append(stream, 0, 0, 0, 0) // a tick
		}
	}
	stream = append(stream, small...)
	for _, cut := range []int{1, 4093, 32000, len(stream)} {
		fc, s := newTestConn(nil, true, false)
		for b := stream; len(b) > 0; {
			k := min(cut, len(b))
			if _, err := fc.Write(b[:k]); err != nil {
				t.Fatal(err)
			}
			b = b[k:]
		}
		if got := s.written(); !bytes.Equal(got, want) {
			t.Fatalf("pieces of %d: peer got %d bytes in %d frames, want %d bytes in %d frames",
				cut, len(got), len(frames(t, got)), len(want), len(frames(t, want)))
		}
	}
}
