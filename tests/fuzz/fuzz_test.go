// Package fuzz holds the Go fuzz targets for what peers can send a node:
// the bytes of a distribution message decoded to a term (Ergo's decoder),
// a peer Monitor's state reply (clusterstate.ParseState), the ring key of a term
// (cloister.Key), and the owner of any key (ring). The config file has its
// own target, config.FuzzParse. Each runs its seed corpus with `go test`; to fuzz:
//
//	go test -fuzz FuzzParseState -fuzztime 1m ./tests/fuzz
//	go test -fuzz FuzzDecodeTerm -fuzztime 1m ./tests/fuzz
//	go test -fuzz FuzzKey -fuzztime 1m ./tests/fuzz
//	go test -fuzz FuzzRingOwner -fuzztime 1m ./tests/fuzz
//
// The Monitor's decisions have their own target, core.FuzzSteps.
//
// Found here, in Ergo v2.2.4 itself: its decoder allocates a tuple, list or
// map from the length in the header before reading a single element, so
// five bytes ("l" and a length of about 1.8 G) make it ask for tens of GB
// and the process dies with "fatal error: out of memory", which no recover
// catches. Any peer that completes a handshake (that is, knows the cookie)
// can send that. The targets therefore skip inputs whose headers claim
// more elements or bytes than the input holds (see plausible), and fuzz
// everything else; docs/failures.md lists the issue.
package fuzz

import (
	"fmt"
	"testing"

	"github.com/cloister-go/cloister"
	"github.com/cloister-go/cloister/internal/clusterstate"
	"github.com/cloister-go/cloister/internal/core"
	"github.com/cloister-go/cloister/ring"
	"github.com/ergo-services/ergo/etf"
	"github.com/ergo-services/ergo/lib"
)

// encode is a seed helper: the external term format of t, with the 131
// version byte Ergo's decoder does not expect stripped.
func encode(tb testing.TB, t etf.Term) []byte {
	b := lib.TakeBuffer()
	defer lib.ReleaseBuffer(b)
	if err := etf.Encode(t, b, etf.EncodeOptions{}); err != nil {
		tb.Fatal(err)
	}
	return append([]byte(nil), b.B...)
}

// plausible rejects input in which any byte that could be a tuple, list,
// map, string, binary or bignum tag is followed by a length larger than
// the whole input: those are the headers Ergo's decoder allocates from
// before checking. It over-rejects (a tag-like byte inside a binary), which
// only costs coverage.
func plausible(data []byte) bool {
	if len(data) > 1<<16 {
		return false
	}
	max := uint64(len(data))
	for i, b := range data {
		var n uint64
		switch b {
		case 104, 110: // SMALL_TUPLE, SMALL_BIG: 1-byte length
			continue
		case 100, 107, 118, 114, 90: // ATOM, STRING, ATOM_UTF8, NEW_REFERENCE, NEWER_REFERENCE: 2-byte length
			if i+2 < len(data) {
				n = uint64(data[i+1])<<8 | uint64(data[i+2])
			}
		case 105, 108, 109, 111, 116, 77, 112, 117: // LARGE_TUPLE, LIST, BINARY, LARGE_BIG, MAP, BIT_BINARY, NEW_FUN, FUN
			if i+4 < len(data) {
				n = uint64(data[i+1])<<24 | uint64(data[i+2])<<16 | uint64(data[i+3])<<8 | uint64(data[i+4])
			}
		default:
			continue
		}
		if n > max {
			return false
		}
		if b == 112 && i+29 < len(data) {
			// NEW_FUN's NumFree, 26 bytes after the tag, is a count too
			if uint64(data[i+26])<<24|uint64(data[i+27])<<16|uint64(data[i+28])<<8|uint64(data[i+29]) > max {
				return false
			}
		}
	}
	return true
}

func seeds(f *testing.F) {
	states := []etf.Term{
		etf.Map{etf.Atom("fsm"): []byte("monitor_cloister"), etf.Atom("ring"): etf.Atom("cloister"),
			etf.Atom("groups"): etf.List{etf.Tuple{etf.Atom("ring"), etf.List{etf.Atom("a@h"), etf.Atom("b@h")}}}},
		etf.Map{etf.Atom("fsm"): etf.Atom("monitor_billing")},
		etf.Map{etf.Atom("fsm"): 42, etf.Atom("groups"): etf.Map{}},
		etf.Map{etf.Atom("fsm"): "monitor_x", etf.Atom("groups"): etf.List{etf.Tuple{etf.Atom("ring"), "abc"}, 7, etf.Tuple{}}},
		etf.Tuple{etf.Atom("$gen_call"), etf.Tuple{etf.Atom("x"), etf.Ref{}}, etf.Atom("state")},
		etf.List{etf.List{etf.List{}}, []byte{}, 3.5, int64(-1) << 62},
	}
	for _, s := range states {
		f.Add(encode(f, s))
	}
	f.Add([]byte{})
	f.Add([]byte{108, 0, 0, 0, 3, 97, 1, 97, 2, 106}) // [1, 2 | []] by hand
	f.Add([]byte{116, 0, 0, 0, 1, 100, 0, 1, 'a'})
}

// FuzzDecodeTerm: whatever bytes a peer sends, decoding returns (Ergo
// recovers its own panics) and what it returns goes through ParseState and
// Key without a panic.
func FuzzDecodeTerm(f *testing.F) {
	seeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		if !plausible(data) {
			return
		}
		term, _, err := etf.Decode(data, []etf.Atom{}, etf.DecodeOptions{})
		if err != nil {
			return
		}
		clusterstate.ParseState(term)
		_ = cloister.Key(term)
	})
}

// FuzzParseState: a state reply of any shape gives either "not a
// Monitor" or an OTP application and member names; never a panic, never
// more names than the bound, and the core keeps only sane ones.
func FuzzParseState(f *testing.F) {
	seeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		if !plausible(data) {
			return
		}
		term, _, err := etf.Decode(data, []etf.Atom{}, etf.DecodeOptions{})
		if err != nil {
			return
		}
		app, members, ok := clusterstate.ParseState(term)
		if !ok {
			if app != "" || members != nil {
				t.Fatalf("not ok but %q %v", app, members)
			}
			return
		}
		if len(members) > 4*core.MaxReported {
			t.Fatalf("%d members read", len(members))
		}
		c := core.New(core.Config{Self: "a@h", OTPApp: app, Consensus: 1, Sentries: []string{"a@h"}})
		for _, fx := range c.Step(core.ProbeReply{Node: "b@h", OTPApp: app, Members: members}) {
			if d, isDial := fx.(core.Dial); isDial && !core.ValidName(d.Node) {
				t.Fatalf("dial of a malformed name %q", d.Node)
			}
		}
	})
}

// FuzzKey: the ring key of any term a peer can send is computed without a
// panic and is deterministic, so every node holding the term computes the
// same owner.
func FuzzKey(f *testing.F) {
	seeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		if !plausible(data) {
			return
		}
		term, _, err := etf.Decode(data, []etf.Atom{}, etf.DecodeOptions{})
		if err != nil {
			return
		}
		if k1, k2 := cloister.Key(term), cloister.Key(term); k1 != k2 {
			t.Fatalf("Key not deterministic: %q vs %q", k1, k2)
		}
	})
}

// FuzzRingOwner: any key has an owner among the members, the same whatever
// order the members were given in (two nodes that joined in different
// orders agree), and the same on every lookup.
func FuzzRingOwner(f *testing.F) {
	f.Add("user:42", uint8(3))
	f.Add("", uint8(1))
	f.Add("\x00\xff\u00e9", uint8(7))
	f.Fuzz(func(t *testing.T, key string, n uint8) {
		count := 1 + int(n%16)
		members := make([]string, count)
		for i := range members {
			members[i] = fmt.Sprintf("n%02d@127.0.0.1", i)
		}
		reversed := make([]string, count)
		for i := range members {
			reversed[count-1-i] = members[i]
		}
		a, b := ring.NewSet(), ring.NewSet()
		for _, s := range []*ring.Set{a, b} {
			if err := s.Define("r", ring.Consistent()); err != nil {
				t.Fatal(err)
			}
		}
		if _, _, err := a.Update("r", members); err != nil {
			t.Fatal(err)
		}
		if _, _, err := b.Update("r", reversed); err != nil {
			t.Fatal(err)
		}
		oa, err := a.Owner("r", key)
		if err != nil {
			t.Fatal(err)
		}
		ob, _ := b.Owner("r", key)
		again, _ := a.Owner("r", key)
		if oa != ob || oa != again {
			t.Fatalf("owners differ: %q %q %q", oa, ob, again)
		}
		found := false
		for _, m := range members {
			found = found || m == oa
		}
		if !found {
			t.Fatalf("owner %q is not a member", oa)
		}
	})
}
