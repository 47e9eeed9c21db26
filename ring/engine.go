package ring

import (
	"crypto/sha256"
	"encoding/hex"
	"hash/crc32"
	"maps"
	"slices"
	"strconv"
	"sync"
	"unsafe"
	"weak"

	"github.com/ergo-services/ergo/etf"
)

// Engine builds an immutable lookup from a member list. Engines must be
// deterministic: the same members give the same owners on every node.
type Engine interface {
	// Name identifies the engine and its parameters; nodes that compare rings
	// should use engines with the same name.
	Name() string
	// Build returns a lookup over members, which the caller guarantees to be
	// non-empty, sorted and free of duplicates. Build must not keep members
	// for writing; it may keep it for reading.
	Build(members []string) Lookup
}

// Lookup maps a key to its owner. It is immutable and safe for concurrent use.
//
// Owner is all a custom engine must provide. A Lookup may also have any of
// these methods, which the ring finds by type assertion (both engines of
// this module have them all):
//
//   - AppendOwners(dst []string, key string, n int) []string appends key's
//     replica set to dst: up to n distinct members, in the order the engine
//     walks the ring, without allocating when dst has room. Without it,
//     View.AppendOwners and View.OwnersN fail with ErrNoReplicas.
//   - KeyHash(key string) uint32, the hash the engine places key at, and
//     Ranges(member string) []HashRange, the hashes member owns (in any
//     order; the ring sorts and merges them). Without them, View.KeyHash
//     fails with ErrNoRanges and DiffRanges and a listener's RingChanges
//     find no ranges.
//   - Shares() map[string]float64, each member's fraction (0..1) of the
//     key hashes, adding up to 1: shown on the operator's page.
//
// An engine that hashes Erlang terms itself (the libring engine) also has
// OwnerTerm and AppendOwnersTerm taking an etf.Term; any other
// is given a term key's canonical text (cloister.Key).
type Lookup interface {
	// Owner returns the member owning key.
	Owner(key string) string
}

// The optional methods of a Lookup (see Lookup).
type (
	replicaLookup interface {
		Lookup
		AppendOwners(dst []string, key string, n int) []string
	}
	ranger interface {
		Lookup
		KeyHash(key string) uint32
		Ranges(member string) []HashRange
	}
	sharer interface {
		Lookup
		Shares() map[string]float64
	}
	termLookup interface {
		Lookup
		OwnerTerm(key etf.Term) (string, error)
	}
	termReplicaLookup interface {
		replicaLookup
		AppendOwnersTerm(dst []string, key etf.Term, n int) ([]string, error)
	}
)

// replicas is the number of points the default engine places on the circle
// for each member. Chosen by measurement (bench/ring.md): it is the smallest
// count tried for which, over 200 random member sets of 3..50 members, no
// member's share exceeded 1.2 times the mean, so that one member leaving moves
// at most 1.2 times its ideal share of keys.
const replicas = 512

// Consistent returns the default engine: github.com/stathat/consistent's
// circle with each member represented by 512 labels (see labelScheme).
//
// The lookup does not call consistent.Get, which takes an RWMutex, allocates
// and looks up a map on every call: Build computes the same sorted circle
// that consistent builds when the labels are added in sorted member order,
// and Owner searches it without locks. Tests check it against consistent.Get.
func Consistent() Engine {
	return defaultEngine
}

var defaultEngine = &circleEngine{name: "consistent/sha256-labels/" + strconv.Itoa(replicas), scheme: labelScheme(replicas)}

// scheme says how a member becomes elements of a stathat/consistent circle:
// with NumberOfReplicas set to replicas, Add each of the member's count
// elements in order.
type scheme struct {
	replicas int
	count    int
	// appendElt appends element j (0 <= j < count) of member to dst.
	appendElt func(dst []byte, member string, j int) []byte
}

// elts returns member's elements (for tests and references; Build appends
// them into a reused buffer instead).
func (s scheme) elts(member string) []string {
	out := make([]string, s.count)
	for j := range out {
		out[j] = string(s.appendElt(nil, member, j))
	}
	return out
}

// labelScheme is the default encoding: each member becomes n labels, the
// first 16 hex digits of sha256(member + "#" + j), each added to consistent
// with NumberOfReplicas = 1. The decimal j after the last '#' makes the
// hashed strings of different (member, j) pairs distinct.
//
// Why not consistent's own replicas on the bare name: consistent places
// replica i of elt at crc32(strconv.Itoa(i) + elt), and CRC-32 is affine over
// GF(2), so every member's points are one fixed pattern XOR a per-member
// constant. The points of different members are then not independent and
// no replica count tried balanced 50 members within 1.25 (bench/ring.md).
// Hashing (member, j) with sha256 first makes each point independent.
func labelScheme(n int) scheme {
	return scheme{replicas: 1, count: n, appendElt: func(dst []byte, member string, j int) []byte {
		var buf [128]byte
		in := append(buf[:0], member...)
		in = append(in, '#')
		in = strconv.AppendInt(in, int64(j), 10)
		sum := sha256.Sum256(in)
		return hex.AppendEncode(dst, sum[:8])
	}}
}

// nativeScheme adds the bare member name with consistent's own replicas: the
// way stathat/consistent is normally used.
func nativeScheme(n int) scheme {
	return scheme{replicas: n, count: 1, appendElt: func(dst []byte, member string, _ int) []byte {
		return append(dst, member...)
	}}
}

// circleEngine precomputes a stathat/consistent circle.
type circleEngine struct {
	name   string
	scheme scheme

	// A member's points depend only on its name, so each member's sorted
	// points are computed once and kept: a rebuild after a join hashes only
	// the newcomer and merges (sha256 of every label of every member was
	// most of a rebuild's cost). Guarded by mu; bounded by pointCacheMax.
	mu    sync.Mutex
	cache map[string][]uint32
	// recent are the last circles built (most recent last, at most
	// recentCircles): a build whose members differ from one of them by a
	// few joins or leaves starts from it (see buildFrom). Weak: the engine
	// keeps no circle alive that no snapshot uses any more (a ring's
	// current one is what the next build of that ring starts from).
	recent []weak.Pointer[circle]
}

// recentCircles bounds the circles an engine remembers for incremental
// builds: the last build, and the current circle of a second ring of other
// members.
const recentCircles = 2

// maxIncremental bounds the members added or removed for which a build
// starts from a previous circle instead of merging every member's points.
const maxIncremental = 8

// pointCacheMax bounds the members whose points an engine keeps (2 KiB each
// with 512 points): beyond it, the entries of members not in the ring
// being built are dropped.
const pointCacheMax = 1024

func (e *circleEngine) Name() string { return e.name }

// points returns member's point hashes, sorted and distinct (two of its own
// points on one hash are one point, owned by it either way).
func (e *circleEngine) points(member string, key, elt []byte) ([]uint32, []byte, []byte) {
	if pts, ok := e.cache[member]; ok {
		return pts, key, elt
	}
	pts := make([]uint32, 0, e.scheme.count*e.scheme.replicas)
	for j := 0; j < e.scheme.count; j++ {
		elt = e.scheme.appendElt(elt[:0], member, j)
		for i := 0; i < e.scheme.replicas; i++ {
			key = strconv.AppendInt(key[:0], int64(i), 10) // consistent's eltKey
			key = append(key, elt...)
			pts = append(pts, crc32.ChecksumIEEE(key))
		}
	}
	slices.Sort(pts)
	pts = slices.Clip(slices.Compact(pts))
	if e.cache == nil {
		e.cache = make(map[string][]uint32)
	}
	e.cache[member] = pts
	return pts, key, elt
}

func (e *circleEngine) Build(members []string) Lookup {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.cache)+len(members) > pointCacheMax {
		keep := make(map[string]bool, len(members))
		for _, m := range members {
			keep[m] = true
		}
		maps.DeleteFunc(e.cache, func(m string, _ []uint32) bool { return !keep[m] })
	}
	var c *circle
	if prev, remap, added := e.closest(members); prev != nil {
		if len(added) == 0 && countGone(remap) == 0 {
			return prev // the same members (another ring of them): immutable, shared
		}
		c = e.buildFrom(prev, remap, added, members)
	} else {
		c = e.buildAll(members)
	}
	c.buildIndex()
	if len(e.recent) == recentCircles {
		e.recent = append(e.recent[:0], e.recent[1:]...)
	}
	e.recent = append(e.recent, weak.Make(c))
	return c
}

// buildAll merges every member's sorted points.
func (e *circleEngine) buildAll(members []string) *circle {
	// Each point packed as hash<<32 | member index: merging the members'
	// sorted lists orders by hash, then by member. consistent's circle is a
	// map filled in sorted member order, so on a hash shared by two members
	// the later Add (the higher index) overwrote the earlier.
	all := make([][]uint32, len(members))
	total := 0
	var key, elt []byte
	for m, member := range members {
		all[m], key, elt = e.points(member, key, elt)
		total += len(all[m])
	}
	src := make([]uint64, 0, total)
	ends := make([]int, len(members)) // run m is src[ends[m-1]:ends[m]]
	for m, pts := range all {
		for _, h := range pts {
			src = append(src, uint64(h)<<32|uint64(m))
		}
		ends[m] = len(src)
	}
	merged := mergeRuns(src, ends)
	c := &circle{members: members, hashes: make([]uint32, 0, len(merged)), owners: make([]int32, 0, len(merged))}
	for i, p := range merged {
		if i+1 < len(merged) && merged[i+1]>>32 == p>>32 {
			c.shadowed = append(c.shadowed, p)
			continue // a later member's point on the same hash overwrote this one
		}
		c.hashes = append(c.hashes, uint32(p>>32))
		c.owners = append(c.owners, int32(uint32(p)))
	}
	return c
}

// closest finds the recent circle whose members differ least from members,
// within maxIncremental joins and leaves (and fewer than half of them). It
// returns the circle, the new index of each of its members (-1: gone),
// and the indexes in members of the newcomers; nil when none is close.
func (e *circleEngine) closest(members []string) (*circle, []int32, []int32) {
	var best *circle
	var bestRemap, bestAdded []int32
	limit := min(maxIncremental, len(members)/2)
	for i := len(e.recent) - 1; i >= 0; i-- {
		prev := e.recent[i].Value()
		if prev == nil {
			continue // no snapshot holds it any more
		}
		remap := make([]int32, len(prev.members))
		var added []int32
		changes, x, y := 0, 0, 0
		for (x < len(prev.members) || y < len(members)) && changes <= limit {
			switch {
			case y == len(members) || x < len(prev.members) && prev.members[x] < members[y]:
				remap[x] = -1 // left
				x++
				changes++
			case x == len(prev.members) || members[y] < prev.members[x]:
				added = append(added, int32(y))
				y++
				changes++
			default:
				remap[x] = int32(y)
				x++
				y++
			}
		}
		if changes <= limit && (best == nil || changes < len(bestAdded)+countGone(bestRemap)) {
			best, bestRemap, bestAdded = prev, remap, added
		}
	}
	return best, bestRemap, bestAdded
}

func countGone(remap []int32) int {
	n := 0
	for _, r := range remap {
		if r < 0 {
			n++
		}
	}
	return n
}

// buildFrom builds the circle of members from prev, a circle of almost the
// same members: one merge pass over prev's points (those of members that
// left dropped, the others renumbered) and the newcomers' points, instead
// of a merge of every member's points. The result is the same circle:
// points are ordered by hash and then by member index, and renumbering
// keeps the order of the members that stay.
func (e *circleEngine) buildFrom(prev *circle, remap, added []int32, members []string) *circle {
	// The newcomers' points, packed with their new index, in one sorted run.
	var fresh []uint64
	var key, elt []byte
	if len(added) > 0 {
		ends := make([]int, len(added))
		for i, m := range added {
			var pts []uint32
			pts, key, elt = e.points(members[m], key, elt)
			for _, h := range pts {
				fresh = append(fresh, uint64(h)<<32|uint64(m))
			}
			ends[i] = len(fresh)
		}
		fresh = mergeRuns(fresh, ends)
	}
	size := len(prev.hashes) + len(prev.shadowed) + len(fresh)
	c := &circle{members: members, hashes: make([]uint32, 0, size), owners: make([]int32, 0, size)}
	// Three sorted streams: prev's visible points, prev's shadowed points
	// (both renumbered, those that left skipped) and the newcomers'.
	i, j, k := 0, 0, 0
	next := func() (uint64, bool) {
		for i < len(prev.hashes) && remap[prev.owners[i]] < 0 {
			i++
		}
		for j < len(prev.shadowed) && remap[uint32(prev.shadowed[j])] < 0 {
			j++
		}
		var best uint64
		src := 0
		if i < len(prev.hashes) {
			best, src = uint64(prev.hashes[i])<<32|uint64(remap[prev.owners[i]]), 1
		}
		if j < len(prev.shadowed) {
			if p := prev.shadowed[j]>>32<<32 | uint64(remap[uint32(prev.shadowed[j])]); src == 0 || p < best {
				best, src = p, 2
			}
		}
		if k < len(fresh) {
			if p := fresh[k]; src == 0 || p < best {
				best, src = p, 3
			}
		}
		switch src {
		case 1:
			i++
		case 2:
			j++
		case 3:
			k++
		default:
			return 0, false
		}
		return best, true
	}
	p, ok := next()
	for ok {
		q, more := next()
		if more && q>>32 == p>>32 {
			c.shadowed = append(c.shadowed, p) // overwritten by the later member
		} else {
			c.hashes = append(c.hashes, uint32(p>>32))
			c.owners = append(c.owners, int32(uint32(p)))
		}
		p, ok = q, more
	}
	return c
}

// mergeRuns sorts src, made of sorted runs ending at ends, by merging the
// runs pairwise: log2(len(ends)) linear passes between two buffers.
func mergeRuns(src []uint64, ends []int) []uint64 {
	if len(ends) <= 1 {
		return src
	}
	dst := make([]uint64, len(src))
	next := make([]int, 0, (len(ends)+1)/2)
	for len(ends) > 1 {
		next = next[:0]
		start := 0
		for i := 0; i < len(ends); i += 2 {
			if i+1 == len(ends) { // a lone last run moves over as it is
				copy(dst[start:ends[i]], src[start:ends[i]])
				next = append(next, ends[i])
				continue
			}
			a, b := src[start:ends[i]], src[ends[i]:ends[i+1]]
			k, x, y := start, 0, 0
			for x < len(a) && y < len(b) {
				if a[x] <= b[y] {
					dst[k] = a[x]
					x++
				} else {
					dst[k] = b[y]
					y++
				}
				k++
			}
			k += copy(dst[k:], a[x:])
			copy(dst[k:], b[y:])
			start = ends[i+1]
			next = append(next, ends[i+1])
		}
		src, dst = dst, src
		ends = append(ends[:0], next...)
	}
	return src
}

// circle is a flat, sorted copy of a consistent.Consistent circle.
type circle struct {
	members []string
	hashes  []uint32 // sorted, distinct
	owners  []int32  // owners[i] is the index in members of the point hashes[i]
	// shadowed are the points (hash<<32 | member index, sorted) that a
	// later member's point on the same hash overwrote: no key goes to
	// them, but a build from this circle needs them once that member
	// leaves. Almost always empty.
	shadowed []uint64
	// index[b] is the first i with hashes[i]>>shift >= b, for the 2^(32-shift)
	// buckets of the top hash bits, plus index[len-1] = len(hashes). It turns
	// the search into one bucket of about one point.
	index []uint32
	shift uint
}

func (c *circle) buildIndex() {
	bits := uint(0)
	for 1<<bits < len(c.hashes) && bits < 24 {
		bits++
	}
	c.shift = 32 - bits
	c.index = make([]uint32, 1<<bits+1)
	i := 0
	for b := range c.index {
		for i < len(c.hashes) && uint64(c.hashes[i])>>c.shift < uint64(b) {
			i++
		}
		c.index[b] = uint32(i)
	}
}

// Owner returns the owner of the first point strictly above crc32(key),
// wrapping to the first point, exactly as consistent.Get does.
func (c *circle) Owner(key string) string {
	return c.members[c.owners[c.search(hashKey(key))]]
}

// search returns the index of the first point > h, or 0 if there is none.
func (c *circle) search(h uint32) int {
	b := h >> c.shift // shift 32 (one point) gives bucket 0
	i, end := int(c.index[b]), int(c.index[b+1])
	for i < end && c.hashes[i] <= h {
		i++
	}
	if i == len(c.hashes) {
		i = 0
	}
	return i
}

// hashKey is consistent's key hash, CRC-32 (IEEE) of the key's bytes. It
// reads the string's bytes in place: converting to []byte would allocate,
// because the argument escapes through crc32's function-valued dispatch.
// crc32 only reads the slice.
func hashKey(key string) uint32 {
	return crc32.ChecksumIEEE(unsafe.Slice(unsafe.StringData(key), len(key)))
}
