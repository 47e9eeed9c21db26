package ring

import (
	"math"
	"math/rand/v2"
	"testing"
)

// Shares are exact: they add up to 1 and agree with the owners of 400,000
// random hashes within 0.5 percentage points.
func TestSharesMatchSampledOwners(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 3))
	for _, n := range []int{1, 2, 5, 20} {
		set := benchSet(t, Consistent(), hostMembers(n, uint64(n)))
		snap, _ := set.Get("bench")
		c := snap.lookup.(*circle)
		shares := snap.shares()
		sum := 0.0
		for _, s := range shares {
			sum += s
		}
		if len(shares) != n || math.Abs(sum-1) > 1e-9 {
			t.Fatalf("%d members: %d shares adding up to %v", n, len(shares), sum)
		}
		const samples = 400_000
		count := map[string]int{}
		for range samples {
			count[c.members[c.owners[c.search(r.Uint32())]]]++
		}
		for m, s := range shares {
			if got := float64(count[m]) / samples; math.Abs(got-s) > 0.005 {
				t.Errorf("%d members: %s share %.4f, sampled %.4f", n, m, s, got)
			}
		}
	}
	var empty *View = newSnapshot("e", 0, Consistent(), nil)
	if empty.shares() != nil {
		t.Error("an empty ring has no shares")
	}
}
