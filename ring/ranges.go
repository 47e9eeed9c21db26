package ring

import "fmt"

// HashRange is an inclusive range of key hashes, From <= To. A member's
// share of a ring is a sorted list of them; a range across the top of the
// hash space is two ranges, one ending at the top, one starting at 0.
type HashRange struct {
	From uint32 `json:"from"`
	To   uint32 `json:"to"`
}

// Contains reports whether hash h is in the range.
func (r HashRange) Contains(h uint32) bool { return r.From <= h && h <= r.To }

// Size is the number of hashes in the range.
func (r HashRange) Size() uint64 { return uint64(r.To) - uint64(r.From) + 1 }

// String renders the range as [from, to] in hexadecimal.
func (r HashRange) String() string { return fmt.Sprintf("[%08x, %08x]", r.From, r.To) }

// A Lookup that can list the key-hash ranges a member owns and tell the hash
// a key is placed at (both engines of this module can) lets an application
// that keeps its state indexed by View.KeyHash move exactly the ranges a
// ring change gave or took (DiffRanges), without looking at every key.
var _ ranger = (*circle)(nil)

// KeyHash is crc32(key): the key is owned by the first point strictly
// above it.
func (c *circle) KeyHash(key string) uint32 { return hashKey(key) }

// Ranges: point i owns the hashes from the previous point up to just below
// itself; the first point also owns those from the last point to the top.
func (c *circle) Ranges(member string) []HashRange {
	m := int32(-1)
	for i, name := range c.members {
		if name == member {
			m = int32(i)
			break
		}
	}
	if m < 0 || len(c.hashes) == 0 {
		return nil
	}
	var rs rangeList
	last := len(c.hashes) - 1
	for i, h := range c.hashes {
		if c.owners[i] != m {
			continue
		}
		if i == 0 {
			// [last point, top] then [0, h-1]; one point owns everything.
			rs.add(c.hashes[last], ^uint32(0))
			if h > 0 {
				rs.add(0, h-1)
			}
			continue
		}
		rs.add(c.hashes[i-1], h-1)
	}
	return rs.sorted()
}

// rangeList collects ranges in any order and merges them.
type rangeList []HashRange

func (l *rangeList) add(from, to uint32) { *l = append(*l, HashRange{from, to}) }

func (l rangeList) sorted() []HashRange { return mergeRanges(l) }

// mergeRanges sorts l in place and merges touching or overlapping ranges;
// it returns the merged prefix of l.
func mergeRanges(l []HashRange) []HashRange {
	if len(l) == 0 {
		return nil
	}
	sortRanges(l)
	out := l[:1]
	for _, r := range l[1:] {
		top := &out[len(out)-1]
		if uint64(r.From) <= uint64(top.To)+1 {
			if r.To > top.To {
				top.To = r.To
			}
			continue
		}
		out = append(out, r)
	}
	return out
}

func sortRanges(l []HashRange) {
	// Mostly sorted already (points come in order): insertion sort is
	// linear then; the wrap-around range is the one out of place.
	for i := 1; i < len(l); i++ {
		for j := i; j > 0 && l[j].From < l[j-1].From; j-- {
			l[j], l[j-1] = l[j-1], l[j]
		}
	}
}

// KeyHash returns the hash the ring's engine places key at: an application
// that keeps its state indexed by it moves exactly the keys in the ranges a
// ring change gave or took (DiffRanges, listener.RingChange). It fails with
// ErrNoRanges for an engine that cannot tell (see Lookup), or ErrEmptyRing.
func (s *View) KeyHash(key string) (uint32, error) {
	r, err := s.rangeLookup()
	if err != nil {
		return 0, err
	}
	return r.KeyHash(key), nil
}

// ranges returns the sorted, merged key-hash ranges member owns in this
// ring (nil when it owns none, or the ring is empty or its engine cannot
// tell).
func (s *View) ranges(member string) []HashRange {
	if r, err := s.rangeLookup(); err == nil {
		return mergeRanges(r.Ranges(member))
	}
	return nil
}

func (s *View) rangeLookup() (ranger, error) {
	if s == nil || s.lookup == nil {
		if s == nil {
			return nil, ErrEmptyRing
		}
		return nil, s.empty
	}
	r, ok := s.lookup.(ranger)
	if !ok {
		return nil, fmt.Errorf("%w: engine %s", ErrNoRanges, s.engine.Name())
	}
	return r, nil
}

// DiffRanges returns the key-hash ranges member owns in new but not in old
// (gained) and owned in old but not in new (lost). A nil or empty snapshot
// owns nothing. Both snapshots must come from the same engine (two epochs
// of one ring); it costs time linear in the rings' points, whatever the
// number of keys.
func DiffRanges(old, new *View, member string) (gained, lost []HashRange) {
	var was, is []HashRange
	if old != nil {
		was = old.ranges(member)
	}
	if new != nil {
		is = new.ranges(member)
	}
	return subtract(is, was), subtract(was, is)
}

// subtract returns a minus b, both sorted and merged.
func subtract(a, b []HashRange) []HashRange {
	var out []HashRange
	j := 0
	for _, r := range a {
		from := uint64(r.From)
		to := uint64(r.To)
		for j < len(b) && uint64(b[j].To) < from {
			j++
		}
		k := j
		for k < len(b) && uint64(b[k].From) <= to && from <= to {
			if uint64(b[k].From) > from {
				out = append(out, HashRange{uint32(from), b[k].From - 1})
			}
			from = uint64(b[k].To) + 1
			k++
		}
		if from <= to {
			out = append(out, HashRange{uint32(from), uint32(to)})
		}
	}
	return out
}
