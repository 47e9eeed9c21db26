package ring_test

import (
	"fmt"
	"math/rand"
	"testing"

	"github.com/cloister-go/cloister/internal/ringx"
	"github.com/cloister-go/cloister/ring"
	"github.com/cloister-go/cloister/ring/libring"
)

func snapOf(t *testing.T, e ring.Engine, members []string) *ring.View {
	t.Helper()
	var s ring.Set
	if err := s.Define("r", e); err != nil {
		t.Fatal(err)
	}
	sn, _, err := s.Update("r", members)
	if err != nil {
		t.Fatal(err)
	}
	return sn
}

func inRanges(rs []ring.HashRange, h uint32) bool {
	for _, r := range rs {
		if r.Contains(h) {
			return true
		}
	}
	return false
}

// Every member's ranges hold exactly the keys it owns, and the members'
// ranges cover the hash space once; a member's gained and lost ranges hold
// exactly the keys that moved to and from it (the scan they replace).
func TestRangesMatchOwners(t *testing.T) {
	engines := []ring.Engine{ring.Consistent(), libring.Engine()}
	rng := rand.New(rand.NewSource(7))
	keys := make([]string, 20000)
	for i := range keys {
		keys[i] = fmt.Sprintf("key-%d-%d", i, rng.Int63())
	}
	for _, e := range engines {
		for _, n := range []int{1, 2, 3, 7} {
			var members []string
			for i := 0; i < n; i++ {
				members = append(members, fmt.Sprintf("n%d@127.0.0.1", i))
			}
			sn := snapOf(t, e, members)
			var total uint64
			for _, m := range members {
				rs := ringx.Ranges(sn, m)
				for i, r := range rs {
					if r.From > r.To || (i > 0 && uint64(rs[i-1].To)+1 >= uint64(r.From)) {
						t.Fatalf("%s: ranges of %s not sorted and merged: %v", e.Name(), m, rs[max(0, i-1):i+1])
					}
					total += r.Size()
				}
			}
			if total != 1<<32 {
				t.Fatalf("%s %d members: ranges cover %d hashes, want 2^32", e.Name(), n, total)
			}
			all := map[string][]ring.HashRange{}
			for _, m := range members {
				all[m] = ringx.Ranges(sn, m)
			}
			for _, k := range keys {
				owner, _ := sn.Owner(k)
				h, err := sn.KeyHash(k)
				if err != nil {
					t.Fatal(err)
				}
				for _, m := range members {
					if inRanges(all[m], h) != (m == owner) {
						t.Fatalf("%s: key %q (hash %08x) owned by %s; in the ranges of %s: %v", e.Name(), k, h, owner, m, m != owner)
					}
				}
			}
			if n < 2 {
				continue
			}
			// Leave: the last member goes; joins are the same diff reversed.
			after := snapOf(t, e, members[:n-1])
			for _, self := range members[:n-1] {
				gained, lost := ring.DiffRanges(sn, after, self)
				if len(lost) != 0 {
					t.Fatalf("%s: %s lost %v when another member left", e.Name(), self, lost)
				}
				back, _ := ring.DiffRanges(after, sn, self)
				if len(back) != 0 {
					t.Fatalf("%s: %s gained %v when a member joined", e.Name(), self, back)
				}
				moved := 0
				for _, k := range keys {
					was, _ := sn.Owner(k)
					is, _ := after.Owner(k)
					h, _ := after.KeyHash(k)
					if (is == self && was != self) != inRanges(gained, h) {
						t.Fatalf("%s: key %q %s -> %s, in %s's gained ranges: %v", e.Name(), k, was, is, self, inRanges(gained, h))
					}
					if is == self && was != self {
						moved++
					}
				}
				if moved == 0 {
					t.Fatalf("%s: no key moved to %s", e.Name(), self)
				}
			}
			gained, lost := ring.DiffRanges(sn, after, members[n-1])
			if len(gained) != 0 || !equalRanges(lost, ringx.Ranges(sn, members[n-1])) {
				t.Fatalf("%s: the leaver gains %v and loses %d ranges, want none and all of its %d", e.Name(), gained, len(lost), len(ringx.Ranges(sn, members[n-1])))
			}
		}
	}
}

func equalRanges(a, b []ring.HashRange) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestKeyHashOnEmptyRing(t *testing.T) {
	sn := snapOf(t, ring.Consistent(), nil)
	if _, err := sn.KeyHash("k"); err == nil {
		t.Fatal("KeyHash on an empty ring: no error")
	}
	if ringx.Ranges(sn, "x") != nil {
		t.Fatal("ranges on an empty ring")
	}
}
