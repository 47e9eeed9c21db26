// Package libring is a ring engine that places members and keys exactly as
// Elixir's libring (HashRing) does, so that Go nodes and Elixir cloister
// nodes in one cluster agree on the owner of every key.
//
// # What libring does
//
// Read in bitwalker/libring, lib/ring.ex (module HashRing), at commit
// 09eec758437cdae0d7796c369509674521e8f841, and the same in the other stored
// version of that file (the one that rejects empty binary node names);
// cloister uses it through HashRing.Managed, whose worker calls these
// functions:
//
//   - @hash_range is trunc(:math.pow(2, 32) - 1) = 4294967295.
//   - add_node(ring, node) with the default weight 128 computes, for
//     i in 1..128, the point :erlang.phash2({node, i}, @hash_range) and
//     inserts it with :gb_trees.insert(point, node). When the point is
//     already taken, gb_trees raises {:key_exists, point}, which add_node
//     catches and ignores: the node added earlier keeps the point.
//   - key_to_node(ring, key) first replaces an atom key by
//     :erlang.term_to_binary(key) ("as phash does not distribute them
//     evenly"), then takes hash = :erlang.phash2(key, @hash_range) and returns
//     the node of the smallest point >= hash (:gb_trees.iterator_from), or,
//     when there is none, of the smallest point of all (:gb_trees.smallest):
//     the ring wraps.
//
// Elixir cloister (lib/cloister/monitor/fsm.ex) adds each member as its node
// name atom, so a member "app@10.0.0.1" here is the atom :"app@10.0.0.1".
//
// # Where this engine can differ from a live libring
//
// Collisions: a point both members hash to goes to the member added first.
// Build adds members in the order given, which the ring package makes sorted;
// cloister adds the nodes of one membership change in MapSet order, which for
// up to 32 atoms is term order, that is sorted too. A node that joins later is
// added after the existing ones, though, so after a collision between a newer
// node and an older one that sorts after it the two rings give that one point
// (about 1/(128*N) of the keys) to different owners. Such a collision needs two
// of the 128*N points of different nodes to meet in 2^32: for 10 nodes the
// chance is about 1 in 5,800.
//
// Atom keys (OwnerTerm only): term_to_binary changed in OTP 26, which encodes
// every atom as UTF-8 (SMALL_ATOM_UTF8_EXT); OTP 25 and older encode an atom
// whose characters are all Latin-1 as ATOM_EXT. So libring itself puts an
// atom key on different nodes depending on the OTP release it runs on. Engine
// encodes as OTP 25 does, EngineFor(26) and later as OTP 26+ does (both
// verified against live erl nodes: OTP 25, 27 and 29). Pick the release of
// the Elixir nodes in the cluster; an Elixir cluster mixing OTP 25 and 26+
// disagrees with itself on atom keys. Other keys (binaries, tuples, numbers,
// and the members' own points) do not depend on the OTP version.
package libring

import (
	"fmt"
	"slices"
	"unicode/utf8"
	"unsafe"

	"github.com/cloister-go/cloister/internal/wire/phash2"
	"github.com/cloister-go/cloister/ring"
	"github.com/ergo-services/ergo/etf"
)

// hashRange is libring's @hash_range, the range of every phash2 it takes.
const hashRange = 4294967295

// weight is the number of points per member: libring's default weight.
const weight = 128

// Engine returns the libring-compatible engine. Atom keys are hashed as on OTP 25 (see EngineFor).
func Engine() ring.Engine { return engine{} }

// EngineFor returns the engine that agrees with libring running on the given
// OTP release, which matters for atom keys only: from OTP 26 term_to_binary
// encodes atoms as UTF-8 (see the package doc).
func EngineFor(otpRelease int) ring.Engine {
	return engine{utf8Atoms: utf8AtomsOn(otpRelease)}
}

// utf8AtomsOn reports whether term_to_binary on an OTP release encodes every
// atom as UTF-8 (OTP 26 and later).
func utf8AtomsOn(otpRelease int) bool { return otpRelease >= 26 }

type engine struct{ utf8Atoms bool }

// Name identifies the engine and its parameters.
func (e engine) Name() string {
	if e.utf8Atoms {
		return fmt.Sprintf("libring/phash2/%d/otp26-atoms", weight)
	}
	return fmt.Sprintf("libring/phash2/%d", weight)
}

// Build returns the members' ring for the engine's atom encoding.
func (e engine) Build(members []string) ring.Lookup { return build(members, e.utf8Atoms) }

// hashRing is an immutable libring ring, safe for concurrent use. Besides
// Owner it has every optional method of a ring.Lookup, the term ones
// included.
type hashRing struct {
	members   []string
	points    []uint32 // sorted, distinct
	owners    []int32  // owners[i] indexes members: the owner of points[i]
	utf8Atoms bool     // atom keys encoded as OTP 26+ does
}

// build places weight points for each member, in the order given (see the
// package doc for why the order matters only on a point collision), with
// atom keys encoded as OTP 26+ does when utf8Atoms. It keeps members for
// reading.
func build(members []string, utf8Atoms bool) *hashRing {
	type placed struct {
		hash  uint32
		owner int32
	}
	pts := make([]placed, 0, len(members)*weight)
	for m, name := range members {
		point := etf.Tuple{etf.Atom(name), nil} // {Node, I}, reused for every I
		var term etf.Term = point               // boxed once; shares point's array
		for i := 1; i <= weight; i++ {
			point[1] = i
			h, err := phash2.Hash(term, hashRange)
			if err != nil {
				panic("libring: " + err.Error()) // an atom and an int always hash
			}
			pts = append(pts, placed{h, int32(m)})
		}
	}
	// Stable: among equal points the one added first stays first, and is the
	// one libring keeps.
	slices.SortStableFunc(pts, func(a, b placed) int {
		switch {
		case a.hash < b.hash:
			return -1
		case a.hash > b.hash:
			return 1
		}
		return 0
	})
	l := &hashRing{members: members, points: make([]uint32, 0, len(pts)), owners: make([]int32, 0, len(pts)), utf8Atoms: utf8Atoms}
	for i, p := range pts {
		if i > 0 && pts[i-1].hash == p.hash {
			continue
		}
		l.points = append(l.points, p.hash)
		l.owners = append(l.owners, p.owner)
	}
	return l
}

// Owner returns the owner of key taken as an Erlang binary, which is what an
// Elixir string is: the member libring's key_to_node returns for it. It
// returns "" for a ring without members, and does not allocate.
func (l *hashRing) Owner(key string) string {
	return l.ownerOfHash(phash2.Binary(key, hashRange))
}

// OwnerTerm returns the owner of any key term (see package phash2 for how Go
// values stand for Erlang terms); atom keys are hashed as their
// term_to_binary, as libring does. It fails only for a key phash2 cannot hash.
func (l *hashRing) OwnerTerm(key etf.Term) (string, error) {
	h, err := l.KeyHashTerm(key)
	if err != nil {
		return "", err
	}
	return l.ownerOfHash(h), nil
}

// KeyHashTerm is the hash libring places a key term at: phash2 of the term,
// of its term_to_binary for an atom.
func (l *hashRing) KeyHashTerm(key etf.Term) (uint32, error) {
	var h uint32
	switch k := key.(type) {
	case etf.Atom:
		h = atomKeyHash(string(k), l.utf8Atoms)
	case bool:
		if k {
			h = atomKeyHash("true", l.utf8Atoms)
		} else {
			h = atomKeyHash("false", l.utf8Atoms)
		}
	default:
		var err error
		if h, err = phash2.Hash(key, hashRange); err != nil {
			return 0, err
		}
	}
	return h, nil
}

// Members returns the members, in the order they were added.
func (l *hashRing) Members() []string { return slices.Clone(l.members) }

// Points returns the number of distinct points on the ring (weight per
// member, less any collisions).
func (l *hashRing) Points() int { return len(l.points) }

// ownerOfHash returns the owner of the first point >= h, wrapping to the
// first point.
func (l *hashRing) ownerOfHash(h uint32) string {
	lo, hi := 0, len(l.points)
	if hi == 0 {
		return ""
	}
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if l.points[mid] < h {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo == len(l.points) {
		lo = 0
	}
	return l.members[l.owners[lo]]
}

// atomKeyHash is phash2(term_to_binary(Atom), hashRange). OTP 25 encodes
// an atom whose characters are all Latin-1 as ATOM_EXT (100) with the
// Latin-1 bytes; any other atom, and from OTP 26 (utf8Atoms) every atom, as
// SMALL_ATOM_UTF8_EXT (119) or, from 256 bytes, ATOM_UTF8_EXT (118) with
// the UTF-8 bytes.
func atomKeyHash(name string, utf8Atoms bool) uint32 {
	var stack [512]byte // enough for most atoms without allocating
	b := append(stack[:0], 131)
	latin1 := !utf8Atoms && utf8.ValidString(name)
	n := 0
	for _, r := range name {
		if r > 0xFF {
			latin1 = false
			break
		}
		n++
	}
	switch {
	case latin1:
		b = append(b, 100, byte(n>>8), byte(n))
		for _, r := range name {
			b = append(b, byte(r))
		}
	case len(name) < 256:
		b = append(b, 119, byte(len(name)))
		b = append(b, name...)
	default:
		b = append(b, 118, byte(len(name)>>8), byte(len(name)))
		b = append(b, name...)
	}
	// b is not modified while Binary reads it; string(b) would allocate.
	return phash2.Binary(unsafe.String(&b[0], len(b)), hashRange)
}
