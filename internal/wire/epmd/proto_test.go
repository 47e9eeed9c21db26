package epmd

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

// killer is the ALIVE2_REQ with a name length of 0xFFFF that crashed
// every process serving Ergo's embedded EPMD (a slice out of range).
var killer = []byte{0x00, 0x0b, 0x78, 0x3a, 0x98, 0x4d, 0x00, 0x00, 0x06, 0x00, 0x05, 0xff, 0xff}

func alive(name string, extra []byte) Alive2Req {
	return Alive2Req{Port: 15000, NodeType: nodeTypeNormal, Protocol: protocolTCP, High: 6, Low: 5, Name: name, Extra: extra}
}

func mustEncode(t testing.TB, a Alive2Req) []byte {
	t.Helper()
	b, err := EncodeAlive2(a)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseRejectsTheKillerPacket(t *testing.T) {
	n := int(binary.BigEndian.Uint16(killer[:2]))
	if n != len(killer)-2 {
		t.Fatalf("seed framing: length %d, body %d", n, len(killer)-2)
	}
	_, err := ParseRequest(killer[2:])
	if !errors.Is(err, ErrMalformed) {
		t.Fatalf("want ErrMalformed, got %v", err)
	}
}

func TestParseAlive2RoundTrip(t *testing.T) {
	for _, a := range []Alive2Req{
		alive("a", nil),
		alive("cloister_0", []byte{0x11, 0x3b, 1, 1}),
		alive("ünïcødé", nil),
		alive(string(bytes.Repeat([]byte("n"), MaxNameLen)), bytes.Repeat([]byte{7}, MaxExtraLen)),
		{Port: 1, NodeType: nodeTypeHidden, High: 5, Low: 5, Name: "h"},
	} {
		b := mustEncode(t, a)
		r, err := ParseRequest(b[2:])
		if err != nil {
			t.Fatalf("%q: %v", a.Name, err)
		}
		got := r.Alive
		if r.Code != codeAlive2Req || got.Name != a.Name || got.Port != a.Port || got.High != a.High ||
			got.Low != a.Low || got.NodeType != a.NodeType || !bytes.Equal(got.Extra, a.Extra) {
			t.Fatalf("round trip of %+v gave %+v", a, got)
		}
	}
}

func TestParseRejectsEveryBadLength(t *testing.T) {
	good := mustEncode(t, alive("node", []byte{1, 2}))[2:]
	// Every truncation of a good request is refused.
	for i := 0; i < len(good); i++ {
		if _, err := ParseRequest(good[:i]); err == nil {
			t.Errorf("truncated to %d bytes: accepted", i)
		}
	}
	// And every extension by a byte.
	if _, err := ParseRequest(append(append([]byte(nil), good...), 0)); err == nil {
		t.Error("one trailing byte: accepted")
	}
	// Lengths that point past the packet, in the name and in the extra.
	for _, tc := range []struct {
		off int
		val uint16
	}{{9, 0xffff}, {9, 5}, {9, 0}, {9 + 2 + 4, 0xffff}, {9 + 2 + 4, 3}, {9 + 2 + 4, 1}} {
		b := append([]byte(nil), good...)
		binary.BigEndian.PutUint16(b[tc.off:], tc.val)
		if _, err := ParseRequest(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("length %d at %d: want ErrMalformed, got %v", tc.val, tc.off, err)
		}
	}
}

func TestParseRejectsBadNamesAndFields(t *testing.T) {
	for name, a := range map[string]Alive2Req{
		"newline":      alive("a\nname b at port 1", nil),
		"at":           alive("a@b", nil),
		"nul":          alive("a\x00", nil),
		"invalid utf8": alive("\xff\xfe", nil),
		"node type":    {Port: 1, NodeType: 1, High: 6, Low: 5, Name: "x"},
		"protocol":     {Port: 1, NodeType: 77, Protocol: 1, High: 6, Low: 5, Name: "x"},
		"versions":     {Port: 1, NodeType: 77, High: 5, Low: 6, Name: "x"},
	} {
		// Encode without the encoder's own name check.
		b := []byte{codeAlive2Req}
		b = binary.BigEndian.AppendUint16(b, a.Port)
		b = append(b, a.NodeType, a.Protocol)
		b = binary.BigEndian.AppendUint16(b, a.High)
		b = binary.BigEndian.AppendUint16(b, a.Low)
		b = binary.BigEndian.AppendUint16(b, uint16(len(a.Name)))
		b = append(b, a.Name...)
		b = binary.BigEndian.AppendUint16(b, 0)
		if _, err := ParseRequest(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: want ErrMalformed, got %v", name, err)
		}
	}
	long := string(bytes.Repeat([]byte("n"), MaxNameLen+1))
	if _, err := EncodeAlive2(alive(long, nil)); err == nil {
		t.Error("name over the limit encoded")
	}
}

func TestParseOtherRequests(t *testing.T) {
	for _, tc := range []struct {
		body []byte
		ok   bool
	}{
		{[]byte("n"), true}, {[]byte("d"), true}, {[]byte("k"), true},
		{[]byte("zfoo"), true}, {[]byte("z"), true}, {[]byte("sfoo"), true},
		{[]byte("nx"), false}, {[]byte("q"), false}, {nil, false},
	} {
		_, err := ParseRequest(tc.body)
		if (err == nil) != tc.ok {
			t.Errorf("%q: err %v, want ok=%v", tc.body, err, tc.ok)
		}
	}
}

func TestPort2RespRoundTrip(t *testing.T) {
	a := alive("peer", []byte{0x11, 0x3b, 1, 0})
	b := encodePort2Resp(a)
	for i := 0; i < len(b); i++ {
		if _, done := port2RespLen(b[:i]); done && i >= 2 {
			t.Fatalf("complete at %d of %d bytes", i, len(b))
		}
	}
	if need, done := port2RespLen(b); !done || need != len(b) {
		t.Fatalf("port2RespLen = %d, %v; want %d, true", need, done, len(b))
	}
	got, found, err := ParsePort2Resp(b)
	if err != nil || !found || got.Name != a.Name || got.Port != a.Port || !bytes.Equal(got.Extra, a.Extra) {
		t.Fatalf("got %+v %v %v", got, found, err)
	}
	if _, found, err := ParsePort2Resp([]byte{codePort2Resp, 1}); found || err != nil {
		t.Fatalf("not found reply: found=%v err=%v", found, err)
	}
}

// FuzzParseRequest: no input panics the request parser, and whatever it
// accepts as ALIVE2_REQ encodes back to the same bytes.
func FuzzParseRequest(f *testing.F) {
	f.Add(killer[2:])
	f.Add(mustEncode(f, alive("node", []byte{0x11, 0x3b, 1, 0}))[2:])
	f.Add(mustEncode(f, Alive2Req{Port: 1, NodeType: 72, High: 5, Low: 5, Name: "h"})[2:])
	f.Add([]byte("zfoo"))
	f.Add([]byte("n"))
	f.Add([]byte("k"))
	f.Add([]byte("sfoo"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := ParseRequest(body)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error not ErrMalformed: %v", err)
			}
			return
		}
		if r.Code == codeAlive2Req {
			b, err := EncodeAlive2(r.Alive)
			if err != nil {
				t.Fatalf("accepted %x but cannot encode it: %v", body, err)
			}
			if !bytes.Equal(b[2:], body) {
				t.Fatalf("round trip: %x became %x", body, b[2:])
			}
		}
	})
}

// FuzzPort2Resp: the client's reply parser neither panics nor accepts a
// reply whose lengths disagree with its size.
func FuzzPort2Resp(f *testing.F) {
	f.Add(encodePort2Resp(alive("peer", []byte{0x11, 0x3b, 1, 0})))
	f.Add([]byte{codePort2Resp, 1})
	f.Add([]byte{codePort2Resp, 0, 0x3a, 0x98, 77, 0, 0, 6, 0, 5, 0xff, 0xff})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		need, done := port2RespLen(b)
		if !done && need <= len(b) {
			t.Fatalf("incomplete but needs only %d of %d bytes", need, len(b))
		}
		a, found, err := ParsePort2Resp(b)
		if err == nil && found {
			if !bytes.Equal(encodePort2Resp(a), b) {
				t.Fatalf("accepted %x, which does not encode back", b)
			}
		}
	})
}
