package libring

import (
	"math"
	"math/rand/v2"
	"testing"
)

// Shares add up to 1 and agree with the owners of 400,000 random hashes
// within 0.5 percentage points.
func TestSharesMatchSampledOwners(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 4))
	for _, members := range [][]string{{"a@h"}, {"a@h", "b@h"}, {"a@h", "b@h", "c@h", "d@h", "e@h"}} {
		l := build(members, false)
		shares := l.Shares()
		sum := 0.0
		for _, s := range shares {
			sum += s
		}
		if len(shares) != len(members) || math.Abs(sum-1) > 1e-9 {
			t.Fatalf("%v: %d shares adding up to %v", members, len(shares), sum)
		}
		const samples = 400_000
		count := map[string]int{}
		for range samples {
			count[l.ownerOfHash(r.Uint32N(hashRange))]++
		}
		for m, s := range shares {
			if got := float64(count[m]) / samples; math.Abs(got-s) > 0.005 {
				t.Errorf("%v: %s share %.4f, sampled %.4f", members, m, s, got)
			}
		}
	}
}
