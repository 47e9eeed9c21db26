package libring

import (
	"github.com/cloister-go/cloister/internal/wire/phash2"
	"github.com/cloister-go/cloister/ring"
	"github.com/ergo-services/ergo/etf"
)

// Replica sets: libring's HashRing.key_to_nodes(ring, key, count), which
// Elixir code calls for replication, read in the same file as key_to_node
// (see the package doc):
//
//   - The key is hashed as phash2(key, @hash_range) whatever its type: unlike
//     key_to_node, key_to_nodes does not turn an atom into its
//     term_to_binary first. So for an atom key the first of the replica set
//     is in general not the owner key_to_node gives.
//   - count becomes min(count, number of nodes).
//   - From :gb_trees.iterator_from(hash), the first point >= hash, it walks
//     the tree upwards with :gb_trees.next, collecting each node not yet
//     collected, until count are collected; they come back in ring order.
//   - It does not wrap. When the walk reaches the largest point first, the
//     nodes collected so far come back as they were accumulated, that is in
//     reverse ring order (the last found first), and fewer than count.
//   - When no point is >= hash (the key is past the largest point) the
//     answer is the one node of the smallest point, whatever count is.
//
// The last two are libring's open issue #39 (a key past the end gets one
// node); AppendOwners reproduces them so that Go and Elixir nodes name the
// same replicas for every key. They touch only the keys that hash beyond
// the last few points of the ring, but the gap above the last point is as
// random as any other: measured over 1M keys, 0.4% to 2.1% of the answers
// were short for rings of 2 to 10 nodes and counts 2 and 3.

// The ring finds these methods by type assertion (see ring.Lookup).
var _ interface {
	ring.Lookup
	AppendOwners(dst []string, key string, n int) []string
	AppendOwnersTerm(dst []string, key etf.Term, n int) ([]string, error)
	OwnerTerm(key etf.Term) (string, error)
} = (*hashRing)(nil)

// replicaStack bounds the replica sets collected without allocating.
const replicaStack = 16

// AppendOwners appends what key_to_nodes(ring, key, n) returns for key taken
// as an Erlang binary (an Elixir string) to dst: see the comment above for
// libring's order and its short answers near the top of the ring. It does
// not allocate for n <= 16 when dst has room for n members.
func (l *hashRing) AppendOwners(dst []string, key string, n int) []string {
	return l.appendOwnersOfHash(dst, phash2.Binary(key, hashRange), n)
}

// AppendOwnersTerm is AppendOwners for any key term, hashed with phash2 as
// key_to_nodes does: an atom is hashed as the atom itself, not as its
// term_to_binary (OwnerTerm's and key_to_node's way). It fails only for a
// key phash2 cannot hash.
func (l *hashRing) AppendOwnersTerm(dst []string, key etf.Term, n int) ([]string, error) {
	h, err := phash2.Hash(key, hashRange)
	if err != nil {
		return dst, err
	}
	return l.appendOwnersOfHash(dst, h, n), nil
}

// OwnersN returns key_to_nodes(ring, key, n) for a binary key, in a new
// slice; nil for a ring without members or n < 1.
func (l *hashRing) OwnersN(key string, n int) []string {
	if n < 1 || len(l.points) == 0 {
		return nil
	}
	return l.AppendOwners(make([]string, 0, min(n, len(l.members))), key, n)
}

func (l *hashRing) appendOwnersOfHash(dst []string, h uint32, n int) []string {
	if n > len(l.members) {
		n = len(l.members)
	}
	if n <= 0 || len(l.points) == 0 {
		return dst
	}
	if n == 1 {
		return append(dst, l.ownerOfHash(h)) // the walk's first node, wrapping as key_to_nodes does
	}
	i := l.firstAtOrAbove(h)
	if i == len(l.points) {
		// Past the largest point: libring answers the smallest point's node.
		return append(dst, l.members[l.owners[0]])
	}
	var stack [replicaStack]int32
	taken := stack[:0]
	if n > replicaStack {
		taken = make([]int32, 0, n)
	}
	base := len(dst)
	for ; i < len(l.points) && len(taken) < n; i++ {
		o := l.owners[i]
		if !contains(taken, o) {
			taken = append(taken, o)
			dst = append(dst, l.members[o])
		}
	}
	if len(taken) < n {
		// The walk ran off the top: libring returns its accumulator as is,
		// the last node found first.
		got := dst[base:]
		for a, b := 0, len(got)-1; a < b; a, b = a+1, b-1 {
			got[a], got[b] = got[b], got[a]
		}
	}
	return dst
}

// firstAtOrAbove returns the index of the first point >= h, or len(points).
func (l *hashRing) firstAtOrAbove(h uint32) int {
	lo, hi := 0, len(l.points)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if l.points[mid] < h {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo
}

func contains(s []int32, v int32) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
