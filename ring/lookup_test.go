package ring_test

import (
	"errors"
	"fmt"
	"hash/crc32"
	"slices"
	"testing"

	"github.com/cloister-go/cloister/internal/ringx"
	"github.com/cloister-go/cloister/ring"
)

// sliceEngine is a custom engine written only against the public API and
// the optional methods ring.Lookup documents: the hash space is cut into
// one equal slice per member, in member order.
type sliceEngine struct{}

func (sliceEngine) Name() string                       { return "slices" }
func (sliceEngine) Build(members []string) ring.Lookup { return sliceLookup(members) }

type sliceLookup []string

func (l sliceLookup) width() uint64 { return (1 << 32) / uint64(len(l)) }

func (l sliceLookup) index(h uint32) int { return min(int(uint64(h)/l.width()), len(l)-1) }

func (l sliceLookup) Owner(key string) string { return l[l.index(l.KeyHash(key))] }

func (l sliceLookup) KeyHash(key string) uint32 { return crc32.ChecksumIEEE([]byte(key)) }

// Ranges hands its slice back in two touching pieces, the upper one first:
// the ring must sort and merge them (the Lookup documentation says so).
func (l sliceLookup) Ranges(member string) []ring.HashRange {
	i := slices.Index(l, member)
	if i < 0 {
		return nil
	}
	from := uint64(i) * l.width()
	to := from + l.width() - 1
	if i == len(l)-1 {
		to = 1<<32 - 1
	}
	mid := from + (to-from)/2
	return []ring.HashRange{{From: uint32(mid + 1), To: uint32(to)}, {From: uint32(from), To: uint32(mid)}}
}

func (l sliceLookup) AppendOwners(dst []string, key string, n int) []string {
	i := l.index(l.KeyHash(key))
	for j := 0; j < min(n, len(l)); j++ {
		dst = append(dst, l[(i+j)%len(l)])
	}
	return dst
}

func (l sliceLookup) Shares() map[string]float64 {
	out := map[string]float64{}
	for _, m := range l {
		out[m] = 1 / float64(len(l))
	}
	return out
}

// bareEngine's lookup has only Owner.
type bareEngine struct{}

func (bareEngine) Name() string                       { return "bare" }
func (bareEngine) Build(members []string) ring.Lookup { return bareLookup(members[0]) }

type bareLookup string

func (b bareLookup) Owner(string) string { return string(b) }

func viewOf(t *testing.T, e ring.Engine, members ...string) *ring.View {
	t.Helper()
	s := ring.NewSet()
	if err := s.Define("r", e); err != nil {
		t.Fatal(err)
	}
	v, _, err := s.Update("r", members)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// A custom engine's optional methods, as ring.Lookup documents them, are
// found and used: replica sets, key hashes, merged ranges, shares.
func TestCustomLookupOptionalMethods(t *testing.T) {
	before := viewOf(t, sliceEngine{}, "a", "b")
	after := viewOf(t, sliceEngine{}, "a", "b", "c")
	for _, m := range []string{"a", "b", "c"} {
		rs := ringx.Ranges(after, m)
		if len(rs) != 1 {
			t.Fatalf("ranges of %s: %v, want the two pieces merged into one", m, rs)
		}
	}
	if sh := ringx.Shares(after); len(sh) != 3 || sh["c"] != 1.0/3 {
		t.Fatalf("shares %v", sh)
	}
	for _, m := range []string{"a", "b", "c"} {
		gained, lost := ring.DiffRanges(before, after, m)
		for i := 0; i < 3000; i++ {
			k := fmt.Sprintf("key-%d", i)
			h, err := after.KeyHash(k)
			if err != nil || h != crc32.ChecksumIEEE([]byte(k)) {
				t.Fatalf("KeyHash(%s) = %d, %v", k, h, err)
			}
			was, _ := before.Owner(k)
			is, _ := after.Owner(k)
			in := func(rs []ring.HashRange) bool {
				return slices.ContainsFunc(rs, func(r ring.HashRange) bool { return r.Contains(h) })
			}
			if (is == m && was != m) != in(gained) || (was == m && is != m) != in(lost) {
				t.Fatalf("%s: key %s %s -> %s; in gained %v, in lost %v", m, k, was, is, in(gained), in(lost))
			}
		}
	}
	owners, err := after.OwnersN("key-1", 2)
	want := sliceLookup{"a", "b", "c"}.AppendOwners(nil, "key-1", 2)
	if err != nil || !slices.Equal(owners, want) {
		t.Fatalf("OwnersN = %v, %v; want the engine's %v", owners, err, want)
	}
}

// A lookup with only Owner still serves owners; the rest says it cannot.
func TestBareLookup(t *testing.T) {
	v := viewOf(t, bareEngine{}, "b", "a")
	if o, err := v.Owner("k"); err != nil || o != "a" {
		t.Fatalf("Owner = %q, %v", o, err)
	}
	if _, err := v.KeyHash("k"); !errors.Is(err, ring.ErrNoRanges) {
		t.Fatalf("KeyHash: %v, want ErrNoRanges", err)
	}
	if _, err := v.OwnersN("k", 2); !errors.Is(err, ring.ErrNoReplicas) {
		t.Fatalf("OwnersN: %v, want ErrNoReplicas", err)
	}
	if g, l := ring.DiffRanges(nil, v, "a"); g != nil || l != nil || ringx.Shares(v) != nil {
		t.Fatalf("ranges %v %v, shares %v: want none", g, l, ringx.Shares(v))
	}
}
