package distfilter

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"runtime"
	"testing"

	"github.com/ergo-services/ergo/etf"
)

// FuzzIncomingStream feeds any byte stream a connected peer could send
// through the filter's read side, as Ergo's read loop would pull it: the
// filter must never panic, never allocate from a length it has not
// received, and hand Ergo only whole, length-prefixed frames.
func FuzzIncomingStream(f *testing.F) {
	frame := func(b []byte) []byte {
		return append(binary.BigEndian.AppendUint32(nil, uint32(len(b))), b...)
	}
	pass := func(ctrl, payload []byte) []byte {
		b := []byte{'p', 131}
		b = append(b, ctrl...)
		if payload != nil {
			b = append(b, 131)
			b = append(b, payload...)
		}
		return frame(b)
	}
	f.Add([]byte{0, 0, 0, 0})                                                            // tick
	f.Add(pass(tuple(integer(opRegSend), erlPidT, atom(""), atom("x")), []byte{tagNil})) // top-level []
	f.Add(pass(tuple(integer(opSend), atom(""), goPidT), tuple()))                       // {}
	f.Add(pass(tuple(integer(opUnlinkID), integer(7), erlPidT, goPidT), nil))
	f.Add(pass(tuple(integer(opLink), erlPidT, goPidT), nil))
	f.Add([]byte{0xff, 0xff, 0xff, 0xf0, 'p', 131})       // a 4 GB frame announced
	f.Add(pass([]byte{108, 0xff, 0xff, 0xff, 0xff}, nil)) // a list header of 4 G elements
	f.Fuzz(func(t *testing.T, stream []byte) {
		fc, _ := newTestConn(stream, true, true)
		defer fc.close()
		buf := make([]byte, 4096)
		var out []byte
		for i := 0; ; i++ {
			if i > 1<<16 {
				t.Fatal("read did not end")
			}
			n, err := fc.Read(buf)
			out = append(out, buf[:n]...)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		for len(out) > 0 {
			if len(out) < 4 {
				t.Fatalf("Ergo got a torn length: %x", out)
			}
			l := int(binary.BigEndian.Uint32(out))
			if len(out)-4 < l {
				t.Fatalf("Ergo got a frame of %d bytes announced as %d", len(out)-4, l)
			}
			out = out[4+l:]
		}
	})
}

// TestAnnouncedLengthIsNotAllocated: a peer that announces a 4 GB frame
// and sends a few bytes of it costs the node those bytes, not 4 GB.
func TestAnnouncedLengthIsNotAllocated(t *testing.T) {
	stream := append([]byte{0xff, 0xff, 0xff, 0xf0, 'p', 131}, make([]byte, 1000)...)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	fc, _ := newTestConn(stream, true, true)
	defer fc.close()
	buf := make([]byte, 4096)
	for i := 0; i < 100; i++ {
		if _, err := fc.Read(buf); err != nil {
			break
		}
	}
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 64<<20 {
		t.Fatalf("reading 1 KB of a frame announced as 4 GB allocated %d MB", grew>>20)
	}
}

// TestImplausibleTermDropped: a message whose list header claims 4 G
// elements in five bytes never reaches Ergo's decoder, which would
// allocate from the claim; the frames around it still do.
func TestImplausibleTermDropped(t *testing.T) {
	pass := func(ctrl, payload []byte) []byte {
		b := append([]byte{'p', 131}, ctrl...)
		b = append(append(b, 131), payload...)
		return append(binary.BigEndian.AppendUint32(nil, uint32(len(b))), b...)
	}
	ctrl := tuple(integer(opSend), atom(""), goPidT)
	var in []byte
	in = append(in, pass(ctrl, atom("before"))...)
	in = append(in, pass(ctrl, []byte{tagList, 0xff, 0xff, 0xff, 0xff, tagNil})...)
	in = append(in, pass(ctrl, tuple(atom("a"), atom("b"), atom("c")))...)
	in = append(in, pass(ctrl, atom("after"))...)
	fc, _ := newTestConn(in, true, true)
	defer fc.close()
	got := frames(t, readAll(t, fc))
	if len(got) != 3 {
		t.Fatalf("Ergo got %d frames, want 3 (the implausible one dropped)", len(got))
	}
	if n := fc.f.droppedImplausible.Load(); n != 1 {
		t.Fatalf("dropped %d implausible frames, want 1", n)
	}
}

// TestImplausibleFunDropped: a fun whose NumFree claims millions of free
// variables in a frame of a few bytes (found by fuzzing Ergo's decoder,
// which allocates NumFree elements at once) never reaches Ergo.
func TestImplausibleFunDropped(t *testing.T) {
	fun := []byte("p\x00\x00\x00\x04l\x00\x00\x00\x01jjm\x00\x00\x00\x00F@\f\x00\x00\x00\x00\x00\x00n\b\x01\x00\x00\x00\x00\x00\x00\x00@j")
	if _, err := skipTerm(fun, nil); !errors.Is(err, errImplausible) {
		t.Fatalf("skipTerm of a fun claiming 7 M free variables: %v, want errImplausible", err)
	}
}

// FuzzOutgoingFragments: whatever the size of a message, the fragment
// size Ergo used and how its writes cut the stream (with keepalive ticks
// between fragments), a BEAM peer gets exactly the bytes of the message
// sent whole, followed by the next message.
func FuzzOutgoingFragments(f *testing.F) {
	f.Add(uint32(100_000), uint16(32000), uint16(4093), uint8(1))
	f.Add(uint32(64_001), uint16(256), uint16(1), uint8(0))
	f.Add(uint32(10), uint16(300), uint16(65535), uint8(3))
	f.Fuzz(func(t *testing.T, size uint32, unit, cut uint16, tickAfter uint8) {
		size %= 300_000
		if unit < 256 || cut == 0 {
			return // Ergo's first fragment holds the whole control message
		}
		if int(size)/int(unit) > 20_000 {
			return // bounded work per input
		}
		erlPid := etf.Pid{Node: erlNode, ID: 85, Creation: 1700000000}
		msg := ergoFrame(t, etf.Tuple{opSend, etf.Atom(""), erlPid}, etf.Tuple{1, bytes.Repeat([]byte{7}, int(size))})
		next := ergoFrame(t, etf.Tuple{opSend, etf.Atom(""), erlPid}, etf.Tuple{2, "after"})
		ref, rs := newTestConn(nil, true, false)
		if _, err := ref.Write(append(append([]byte(nil), msg...), next...)); err != nil {
			t.Fatal(err)
		}
		want := rs.written()
		var stream []byte
		frags := ergoFragments(msg, 9, int(unit))
		for i, fr := range frags {
			stream = append(stream, fr...)
			if len(frags) > 1 && i == int(tickAfter)%len(frags) && i < len(frags)-1 {
				stream = append(stream, 0, 0, 0, 0)
			}
		}
		stream = append(stream, next...)
		fc, s := newTestConn(nil, true, false)
		for b := stream; len(b) > 0; {
			k := min(int(cut), len(b))
			if _, err := fc.Write(b[:k]); err != nil {
				t.Fatal(err)
			}
			b = b[k:]
		}
		got := s.written()
		// A tick between fragments reaches the peer (ahead of the
		// message, which leaves once whole); drop ticks to compare.
		if !bytes.Equal(dropTicks(t, got), dropTicks(t, want)) {
			t.Fatalf("size %d unit %d cut %d: peer got %d bytes, want %d", size, unit, cut, len(got), len(want))
		}
	})
}

func dropTicks(t *testing.T, b []byte) []byte {
	var out []byte
	for _, fr := range frames(t, b) {
		if len(fr) > 0 {
			out = binary.BigEndian.AppendUint32(out, uint32(len(fr)))
			out = append(out, fr...)
		}
	}
	return out
}
