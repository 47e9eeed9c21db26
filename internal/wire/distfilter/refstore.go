package distfilter

import (
	"encoding/binary"
	"sync"
)

// Ergo decodes a reference into etf.Ref{ID [5]uint32} but encodes it back
// with three words, the first masked to 18 bits. From OTP 26 the aliases
// that gen_server:call replies go to are five-word references, so every
// reply Ergo sends would go to a reference Erlang never made. The store
// remembers each reference that Ergo cannot reproduce, keyed by what Ergo
// will write, and the outgoing filter puts the original back.

// refMask is what Ergo keeps of a reference's first word.
const refMask = 1<<18 - 1

// DefaultRefStoreSize bounds the long-reference store when
// Options.RefStoreSize is zero.
const DefaultRefStoreSize = 1 << 16

// refStore is a bounded map from Ergo's rendering of a reference to the
// original encoding; the oldest entry goes first when full. It grows with
// use: only BEAM peers send references Ergo cannot reproduce, so a node
// that talks to Go nodes alone never holds one. Allocated up front, the
// bound (1 MB of string headers by default) was a fixed part of every
// node's heap, marked by every GC from the first.
type refStore struct {
	mu   sync.Mutex
	m    map[string][]byte
	ring []string // insertion order, at most size; next is the oldest once full
	size int
	next int
}

func newRefStore(size int) *refStore {
	if size <= 0 {
		size = DefaultRefStoreSize
	}
	return &refStore{size: size}
}

// refKey parses a NEWER_REFERENCE_EXT term and returns the key Ergo's
// re-encoding of it maps to, and whether Ergo's re-encoding differs from t.
func refKey(t []byte) (key string, lossy bool, ok bool) {
	if len(t) < 3 || t[0] != tagNewerRef {
		return "", false, false
	}
	words := int(binary.BigEndian.Uint16(t[1:]))
	n, err := atomLen(t[3:])
	if err != nil || words < 1 || words > 5 || len(t) != 3+n+4+4*words {
		return "", false, false
	}
	node, ok := atomText(t[3 : 3+n])
	if !ok {
		return "", false, false
	}
	rest := t[3+n:] // creation, words
	var w [3]uint32
	for i := 0; i < words && i < 3; i++ {
		w[i] = binary.BigEndian.Uint32(rest[4+4*i:])
	}
	lossy = words != 3 || w[0]&^refMask != 0
	w[0] &= refMask
	k := make([]byte, 0, len(node)+17)
	k = append(k, node...)
	k = append(k, 0)
	k = append(k, rest[:4]...)
	for _, x := range w {
		k = binary.BigEndian.AppendUint32(k, x)
	}
	return string(k), lossy, true
}

// remember stores t if Ergo cannot reproduce it.
func (s *refStore) remember(t []byte) {
	key, lossy, ok := refKey(t)
	if !ok || !lossy {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.m[key]; dup {
		return
	}
	if s.m == nil {
		s.m = make(map[string][]byte)
	}
	if len(s.ring) < s.size {
		s.ring = append(s.ring, key)
	} else {
		delete(s.m, s.ring[s.next])
		s.ring[s.next] = key
		s.next = (s.next + 1) % s.size
	}
	s.m[key] = append([]byte(nil), t...)
}

// original returns the original encoding of the reference Ergo wrote as t.
func (s *refStore) original(t []byte) ([]byte, bool) {
	key, _, ok := refKey(t)
	if !ok {
		return nil, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	o, found := s.m[key]
	return o, found
}

// len is the number of stored references.
func (s *refStore) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// rememberAll records the lossy references anywhere in term t.
func (s *refStore) rememberAll(t []byte) {
	_, _ = skipTerm(t, func(a, b int) { s.remember(t[a:b]) })
}

// restore returns t with every reference Ergo shortened put back; t itself
// when there is none (no copy).
func (s *refStore) restore(t []byte) []byte {
	var out []byte
	last := 0
	_, err := skipTerm(t, func(a, b int) {
		o, ok := s.original(t[a:b])
		if !ok {
			return
		}
		if out == nil {
			out = make([]byte, 0, len(t)+32)
		}
		out = append(out, t[last:a]...)
		out = append(out, o...)
		last = b
	})
	if err != nil || out == nil {
		return t
	}
	return append(out, t[last:]...)
}
