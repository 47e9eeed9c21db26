package main

import (
	"slices"
	"sort"

	"github.com/cloister-go/cloister/ring"
)

// hashIndex is the key space sorted by the ring engine's key hash
// (ring.View.KeyHash). With it, the keys a ring change moves are read
// straight out of the hash ranges the change gave or took
// (ring.DiffRanges, or listener.Snapshot.RingChanges in a listener): a binary
// search per range, instead of asking the owner of every key twice
// (diffOwners, the scan this replaces).
type hashIndex struct {
	hashes []uint32
	keys   []string
}

// newHashIndex hashes every key once with the ring's engine. The hash
// depends on the engine only, never on the members, so the index is built
// once for the node's life.
func newHashIndex(snap *ring.View, keys []string) (*hashIndex, error) {
	type hk struct {
		h uint32
		k string
	}
	all := make([]hk, len(keys))
	for i, k := range keys {
		h, err := snap.KeyHash(k)
		if err != nil {
			return nil, err
		}
		all[i] = hk{h, k}
	}
	slices.SortFunc(all, func(a, b hk) int {
		switch {
		case a.h < b.h:
			return -1
		case a.h > b.h:
			return 1
		}
		return 0
	})
	ix := &hashIndex{hashes: make([]uint32, len(all)), keys: make([]string, len(all))}
	for i, e := range all {
		ix.hashes[i], ix.keys[i] = e.h, e.k
	}
	return ix, nil
}

// in returns the keys whose hash lies in one of rs (sorted, as ring
// ranges are), appended to dst: two binary searches per range, one copy.
func (ix *hashIndex) in(dst []string, rs []ring.HashRange) []string {
	spans := make([][2]int, len(rs))
	n := 0
	for i, r := range rs {
		lo := sort.Search(len(ix.hashes), func(j int) bool { return ix.hashes[j] >= r.From })
		hi := lo + sort.Search(len(ix.hashes)-lo, func(j int) bool { return ix.hashes[lo+j] > r.To })
		spans[i] = [2]int{lo, hi}
		n += hi - lo
	}
	dst = slices.Grow(dst, n)
	for _, sp := range spans {
		dst = append(dst, ix.keys[sp[0]:sp[1]]...)
	}
	return dst
}

// diffOwners is the scan the ranges replace: it asks both rings for the
// owner of every key and returns, per member, the keys it gained and lost.
// A nil or empty ring owns nothing.
func diffOwners(old, cur *ring.View, keys []string) (gained, lost map[string][]string) {
	gained, lost = make(map[string][]string), make(map[string][]string)
	owner := func(v *ring.View, k string) string {
		if v == nil {
			return ""
		}
		o, _ := v.Owner(k) // "" for an empty ring
		return o
	}
	for _, k := range keys {
		from, to := owner(old, k), owner(cur, k)
		if from == to {
			continue
		}
		if from != "" {
			lost[from] = append(lost[from], k)
		}
		if to != "" {
			gained[to] = append(gained[to], k)
		}
	}
	return gained, lost
}
