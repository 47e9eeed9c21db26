package ring

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
)

// Test-only balance statistics. The keys are hashed once; owners are then
// found on the precomputed circle by hash, which is what circle.Owner does
// after hashing.

func (c *circle) ownerOfHash(h uint32) int32 { return c.owners[c.search(h)] }

// owners returns, for each key hash, the owner's name.
func owners(c *circle, hashes []uint32) []string {
	out := make([]string, len(hashes))
	for i, h := range hashes {
		out[i] = c.members[c.ownerOfHash(h)]
	}
	return out
}

// loadRatios returns max/mean and min/mean of keys per member.
func loadRatios(members []string, own []string) (maxr, minr float64) {
	count := make(map[string]int, len(members))
	for _, o := range own {
		count[o]++
	}
	mean := float64(len(own)) / float64(len(members))
	lo, hi := len(own), 0
	for _, m := range members {
		lo, hi = min(lo, count[m]), max(hi, count[m])
	}
	return float64(hi) / mean, float64(lo) / mean
}

// moves counts keys whose owner differs between before and after, and among
// them those that moved between two members that are in both rings.
func moves(before, after []string, inBoth func(string) bool) (moved, untouched int) {
	for i := range before {
		if before[i] != after[i] {
			moved++
			if inBoth(before[i]) && inBoth(after[i]) {
				untouched++
			}
		}
	}
	return moved, untouched
}

func keyHashes(keys []string) []uint32 {
	out := make([]uint32, len(keys))
	for i, k := range keys {
		out[i] = hashKey(k)
	}
	return out
}

type balanceRow struct {
	n                  int
	maxLoad, minLoad   float64
	worstJoin          float64 // keys moved / ideal K/(N+1), worst of the joins tried
	worstLeave         float64 // keys moved / ideal K/N, worst over every member leaving
	untouched          int     // keys moved between members present before and after, all cases
	points, collisions int
}

func without(members []string, i int) []string {
	return append(slices.Clone(members[:i]), members[i+1:]...)
}

func withMember(members []string, m string) []string {
	out := append(slices.Clone(members), m)
	slices.Sort(out)
	return out
}

// measure computes the balance row for one engine, member set and key set.
// joiners are names tried one at a time as the (N+1)th member.
func measure(e *circleEngine, members, joiners []string, hashes []uint32) balanceRow {
	k := float64(len(hashes))
	n := len(members)
	c := e.Build(members).(*circle)
	base := owners(c, hashes)
	row := balanceRow{n: n, points: len(c.hashes)}
	row.collisions = n*e.scheme.count*e.scheme.replicas - len(c.hashes)
	row.maxLoad, row.minLoad = loadRatios(members, base)
	for _, j := range joiners {
		after := owners(e.Build(withMember(members, j)).(*circle), hashes)
		moved, untouched := moves(base, after, func(m string) bool { return m != j })
		row.worstJoin = max(row.worstJoin, float64(moved)/(k/float64(n+1)))
		row.untouched += untouched
	}
	if n > 1 {
		for i := range members {
			left := members[i]
			after := owners(e.Build(without(members, i)).(*circle), hashes)
			moved, untouched := moves(base, after, func(m string) bool { return m != left })
			row.worstLeave = max(row.worstLeave, float64(moved)/(k/float64(n)))
			row.untouched += untouched
		}
	}
	return row
}

// TestBalanceReport prints the balance and movement table used to choose the
// default engine's parameters (bench/ring.md). It takes minutes, so it runs
// only with CLOISTER_BALANCE_REPORT=1. CLOISTER_BALANCE_SCHEMES=all measures
// every candidate instead of the default engine; a comma-separated list of
// candidate names (native/320,sha256-labels/256) measures those.
func TestBalanceReport(t *testing.T) {
	if os.Getenv("CLOISTER_BALANCE_REPORT") != "1" {
		t.Skip("set CLOISTER_BALANCE_REPORT=1 to print the balance table")
	}
	engines := []*circleEngine{defaultEngine}
	switch sel := os.Getenv("CLOISTER_BALANCE_SCHEMES"); sel {
	case "":
	case "all":
		engines = candidateEngines()
	default: // comma-separated candidate names
		engines = nil
		for _, e := range candidateEngines() {
			if slices.Contains(strings.Split(sel, ","), e.name) {
				engines = append(engines, e)
			}
		}
	}
	const numKeys = 1_000_000
	keySets := []struct {
		name   string
		hashes []uint32
	}{
		{"key-0 .. key-999999", keyHashes(sequentialKeys(numKeys))},
		{"random 24-hex-digit keys", keyHashes(randomKeys(numKeys, 7))},
	}
	families := []struct {
		name    string
		members func(n int) []string
	}{
		{"app@10.0.x.y", ipMembers},
		{"app@<random 12 hex>", func(n int) []string { return hostMembers(n, 11) }},
	}
	var out strings.Builder
	fmt.Fprintf(&out, "\nK = %d keys; join: worst of 5 new members; leave: worst over every member leaving\n", numKeys)
	for _, ks := range keySets {
		for _, fam := range families {
			fmt.Fprintf(&out, "\nkeys: %s, members: %s\n", ks.name, fam.name)
			fmt.Fprintf(&out, "%-34s %3s %8s %8s %8s %8s %9s %6s %5s\n", "engine", "N", "max/mean", "min/mean", "join", "leave", "untouched", "points", "coll")
			for _, e := range engines {
				worst := 0.0
				for _, n := range []int{3, 5, 10, 25, 50} {
					all := fam.members(n + 5)
					members := slices.Clone(all[:n])
					joiners := all[n:]
					row := measure(e, members, joiners, ks.hashes)
					worst = max(worst, row.maxLoad)
					fmt.Fprintf(&out, "%-34s %3d %8.3f %8.3f %8.3f %8.3f %9d %6d %5d\n", e.name, n,
						row.maxLoad, row.minLoad, row.worstJoin, row.worstLeave, row.untouched, row.points, row.collisions)
				}
			}
		}
	}
	fmt.Fprintf(&out, "\nmax share/mean share over 200 random member sets (app@<random 12 hex>), exact arc lengths, no key sampling\n")
	fmt.Fprintf(&out, "%-34s %3s %8s %8s %8s\n", "engine", "N", "median", "p95", "worst")
	for _, e := range engines {
		for _, n := range []int{3, 5, 10, 25, 50} {
			sp := maxShareSpread(e, n, 200)
			fmt.Fprintf(&out, "%-34s %3d %8.3f %8.3f %8.3f\n", e.name, n, sp.median, sp.p95, sp.worst)
		}
	}
	t.Log(out.String())
}

func candidateEngines() []*circleEngine {
	var out []*circleEngine
	for _, r := range []int{20, 80, 160, 320, 640} {
		out = append(out, &circleEngine{name: fmt.Sprintf("native/%d", r), scheme: nativeScheme(r)})
	}
	// consistent's own replicas on a hashed name: a different encoding of the
	// name, the same affine placement of replicas.
	for _, r := range []int{160, 640} {
		out = append(out, &circleEngine{name: fmt.Sprintf("native-sha256-name/%d", r), scheme: scheme{replicas: r, count: 1,
			appendElt: func(dst []byte, member string, _ int) []byte {
				sum := sha256.Sum256([]byte(member))
				return hex.AppendEncode(dst, sum[:8])
			}}})
	}
	for _, r := range []int{80, 160, 256, 320, 400, 512} {
		out = append(out, &circleEngine{name: fmt.Sprintf("sha256-labels/%d", r), scheme: labelScheme(r)})
	}
	return out
}

// arcShares returns each member's exact share of the circle: the arc ending
// at each point belongs to that point's owner.
func arcShares(c *circle) []float64 {
	shares := make([]float64, len(c.members))
	prev := uint64(c.hashes[len(c.hashes)-1])
	for i, h := range c.hashes {
		arc := (uint64(h) - prev) & 0xffffffff // wraps for the first point
		if len(c.hashes) == 1 {
			arc = 1 << 32
		}
		shares[c.owners[i]] += float64(arc) / (1 << 32)
		prev = uint64(h)
	}
	return shares
}

// spread summarises max share/mean share over many random member sets: the
// worst member of a ring is also the worst one to leave.
type spread struct{ median, p95, worst float64 }

func maxShareSpread(e *circleEngine, n, sets int) spread {
	ratios := make([]float64, sets)
	for s := range ratios {
		members := hostMembers(n, uint64(1000+s))
		shares := arcShares(e.Build(members).(*circle))
		ratios[s] = slices.Max(shares) * float64(n)
	}
	slices.Sort(ratios)
	return spread{ratios[sets/2], ratios[sets*95/100], ratios[sets-1]}
}
