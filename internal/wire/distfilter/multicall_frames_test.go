package distfilter

import (
	"bytes"
	"testing"

	"github.com/ergo-services/ergo/etf"
)

// improper builds [Head | Tail] (one element, a non-list tail).
func improper(head, tail []byte) []byte {
	b := append([]byte{tagList, 0, 0, 0, 1}, head...)
	return append(b, tail...)
}

// TestMultiCallFramesRewritten: both multi_call forms reach Ergo as a plain
// call {Pid, Ref}, and Ergo's {Ref, Reply} leaves in the form the caller
// waits for; a plain call (OTP 26+ [alias | Ref]) and other messages pass
// unchanged.
func TestMultiCallFramesRewritten(t *testing.T) {
	tag := putRef(nil, erlNode, 1700000000, 0x3ffff, 2, 3)         // OTP 25 Tag
	alias := putRef(nil, erlNode, 1700000000, 0x7ffff, 2, 3, 4, 5) // 5 words, as OTP 26+
	mon := putRef(nil, erlNode, 1700000000, 0x1ffff, 9, 9, 9, 9)
	regSend := tuple(integer(opRegSend), erlPidT, atom(""), atom("srv"))
	forms := []struct {
		name        string
		from        []byte // the From's second element
		wantTo      []byte // where the reply goes
		wantAliasOp bool
	}{
		{"OTP 25 {Tag, Node}", tuple(tag, atom(erlNode)), erlPidT, false},
		{"OTP 26+ [[alias | Alias] | Mon]", improper(improper(atom("alias"), alias), mon), alias, true},
	}
	for _, f := range forms {
		msg := tuple(atom("$gen_call"), tuple(erlPidT, f.from), atom("req"))
		in := passThroughFrame(regSend, msg)
		fc, s := newTestConn(in, true, false)
		got := frames(t, readAll(t, fc))
		if len(got) != 1 {
			t.Fatalf("%s: Ergo read %d frames", f.name, len(got))
		}
		_, payload := decodeErgo(t, got[0])
		p, ok := payload.(etf.Tuple)
		if !ok || len(p) != 3 || p[0] != etf.Atom("$gen_call") || p[2] != etf.Atom("req") {
			t.Fatalf("%s: Ergo got %#v", f.name, payload)
		}
		from := p[1].(etf.Tuple)
		ref, ok := from[1].(etf.Ref)
		if !ok || from[0].(etf.Pid).Node != erlNode {
			t.Fatalf("%s: From %#v is not {Pid, Ref}", f.name, from)
		}
		// Ergo's reply to it
		reply := ergoFrame(t, etf.Tuple{opSend, etf.Atom(""), from[0]}, etf.Tuple{ref, etf.Atom("answer")})
		if _, err := fc.Write(reply); err != nil {
			t.Fatal(err)
		}
		out := frames(t, s.written())
		if len(out) != 1 {
			t.Fatalf("%s: peer got %d frames", f.name, len(out))
		}
		ctrl, pl, ok := splitPassThrough(out[0])
		if !ok {
			t.Fatalf("%s: not a pass-through frame: %x", f.name, out[0])
		}
		e, _ := elements(ctrl)
		wantOp := opSend
		if f.wantAliasOp {
			wantOp = opAliasSend
		}
		if ctrlOp(ctrl) != wantOp || !bytes.Equal(e[2], f.wantTo) {
			t.Fatalf("%s: reply control %x, want op %d to %x", f.name, ctrl, wantOp, f.wantTo)
		}
		if want := tuple(f.from, atom("answer")); !bytes.Equal(pl, want) {
			t.Fatalf("%s: reply payload %x\nwant %x", f.name, pl, want)
		}
		// a second reply with the same ref is not rewritten again
		if _, err := fc.Write(reply); err != nil {
			t.Fatal(err)
		}
		if out := frames(t, s.written()); len(out) != 2 {
			t.Fatalf("%s: %d frames", f.name, len(out))
		} else if c, _, _ := splitPassThrough(out[1]); ctrlOp(c) != opSend {
			t.Fatalf("%s: a stray reply went out as op %d", f.name, ctrlOp(c))
		}
	}
	// a plain OTP 26+ call and a plain message pass as they came
	for _, msg := range [][]byte{
		tuple(atom("$gen_call"), tuple(erlPidT, improper(atom("alias"), alias)), atom("req")),
		tuple(atom("$gen_call"), tuple(erlPidT, tag), atom("req")),
		tuple(atom("hello"), integer(1)),
	} {
		fc, _ := newTestConn(passThroughFrame(regSend, msg), true, false)
		got := frames(t, readAll(t, fc))
		if want := distFrame(regSend, msg)[4:]; len(got) != 1 || !bytes.Equal(got[0], want) {
			t.Fatalf("%x changed: %x", msg, got)
		}
		if fc.multi.n.Load() != 0 {
			t.Fatal("a plain message was recorded as a multi_call")
		}
	}
}

// TestMultiCallsBounded: unanswered multi_calls are forgotten oldest first.
func TestMultiCallsBounded(t *testing.T) {
	var m multiCalls
	peer := &peerInfo{name: erlNode, creation: 1}
	first := m.add(peer, &multiCall{})
	for i := 0; i < maxMultiCalls; i++ {
		m.add(peer, &multiCall{})
	}
	if n := m.n.Load(); n != maxMultiCalls {
		t.Fatalf("%d pending, want %d", n, maxMultiCalls)
	}
	k, _, _ := refKey(first)
	if m.take(k) != nil {
		t.Fatal("the oldest was kept")
	}
	if len(m.order) > 2*maxMultiCalls {
		t.Fatalf("order grew to %d", len(m.order))
	}
}
