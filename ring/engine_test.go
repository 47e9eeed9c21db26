package ring

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sort"
	"testing"

	"github.com/stathat/consistent"
)

// reference builds the stathat/consistent circle that e's lookup copies: the
// elements of each member, in sorted member order, added with the scheme's
// replica count. label maps an element back to its member.
func reference(e *circleEngine, members []string) (c *consistent.Consistent, label map[string]string) {
	c = consistent.New()
	c.NumberOfReplicas = e.scheme.replicas
	label = make(map[string]string)
	for _, m := range members {
		for _, elt := range e.scheme.elts(m) {
			c.Add(elt)
			label[elt] = m
		}
	}
	return c, label
}

// checkAgainstConsistent asserts that e's lookup and consistent.Get agree on
// every key.
func checkAgainstConsistent(t *testing.T, e *circleEngine, members, keys []string) {
	t.Helper()
	ref, label := reference(e, members)
	l := e.Build(members)
	bad := 0
	for _, k := range keys {
		elt, err := ref.Get(k)
		if err != nil {
			t.Fatalf("consistent.Get(%q): %v", k, err)
		}
		if got, want := l.Owner(k), label[elt]; got != want {
			if bad++; bad <= 5 {
				t.Errorf("%s, %d members: Owner(%q) = %q, consistent.Get says %q", e.name, len(members), k, got, want)
			}
		}
	}
	if bad > 0 {
		t.Errorf("%s, %d members: %d of %d keys differ from consistent.Get", e.name, len(members), bad, len(keys))
	}
}

// Building the reference takes consistent.Add once per point, and each Add
// re-sorts the whole circle, so the reference costs O(points^2 log points):
// the default engine is checked up to 10 members (5120 points); 50 members
// are checked with the same scheme at fewer labels.
func TestConsistentMatchesStathatGet(t *testing.T) {
	keys := append(sequentialKeys(50_000), randomKeys(50_000, 3)...)
	for _, c := range []struct {
		e     *circleEngine
		sizes []int
	}{
		{defaultEngine, []int{1, 2, 3, 10}},
		{&circleEngine{name: "sha256-labels/64", scheme: labelScheme(64)}, []int{50}},
		{&circleEngine{name: "native/20", scheme: nativeScheme(20)}, []int{3, 50}},
	} {
		for _, n := range c.sizes {
			checkAgainstConsistent(t, c.e, ipMembers(n), keys)
		}
	}
}

// Keys that hash exactly onto a point go to the next point in consistent;
// keys of 64 bytes and more take consistent's other hashing branch.
func TestConsistentMatchesStathatGetOnPointsAndLongKeys(t *testing.T) {
	e := &circleEngine{name: "native/40", scheme: nativeScheme(40)}
	members := ipMembers(7)
	var keys []string
	for _, m := range members {
		for i := range e.scheme.replicas {
			keys = append(keys, fmt.Sprint(i)+m) // consistent's own point names
		}
	}
	for i := range 1000 {
		keys = append(keys, fmt.Sprintf("%064d", i), fmt.Sprintf("%0200d", i), fmt.Sprintf("%063d", i))
	}
	keys = append(keys, "")
	checkAgainstConsistent(t, e, members, keys)
}

// crcCollision finds two distinct strings a, b with equal consistent
// points, crc32("0"+a) == crc32("0"+b), by a bounded birthday search over
// random strings (strings differing in a few bytes never collide: CRC-32
// detects short bursts).
func crcCollision(t *testing.T) (a, b string) {
	seen := make(map[uint32]string)
	r := rand.New(rand.NewPCG(9, 9))
	for range 2_000_000 {
		s := fmt.Sprintf("%016x", r.Uint64())
		h := hashKey("0" + s)
		if prev, ok := seen[h]; ok {
			return prev, s
		}
		seen[h] = s
	}
	t.Fatal("no CRC-32 collision in 2M strings")
	return "", ""
}

// When two members' points hash to the same value, consistent keeps the one
// added last, so its circle depends on the order of Add: that is why rings are
// built in sorted member order. The flat circle must pick the same winner.
func TestConsistentMatchesStathatGetOnCollisions(t *testing.T) {
	a, b := crcCollision(t)
	p := hashKey("0" + a)
	// alpha's and beta's first elements collide; the rest are labels.
	fixed := map[string]string{"alpha": a, "beta": b}
	label := labelScheme(20)
	e := &circleEngine{name: "collision", scheme: scheme{replicas: 1, count: 20, appendElt: func(dst []byte, m string, j int) []byte {
		if j == 0 && fixed[m] != "" {
			return append(dst, fixed[m]...)
		}
		return label.appendElt(dst, m, j)
	}}}
	members := []string{"alpha", "beta", "gamma"}
	c := e.Build(members).(*circle)
	i, found := slices.BinarySearch(c.hashes, p)
	if !found || c.members[c.owners[i]] != "beta" {
		t.Fatalf("point %08x should belong to beta, the member added last", p)
	}
	// Keys owned by the collided point: hash in [previous point, point).
	prev := c.hashes[(i+len(c.hashes)-1)%len(c.hashes)]
	var keys []string
	for j := 0; j < 10_000_000 && len(keys) < 10; j++ {
		k := fmt.Sprintf("probe-%d", j)
		if h := hashKey(k); h-prev < p-prev { // in [prev, p), modulo 2^32
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		t.Fatalf("no probe key hashes into [%08x, %08x)", prev, p)
	}
	for _, k := range keys {
		if got := c.Owner(k); got != "beta" {
			t.Errorf("Owner(%q) = %q, want beta", k, got)
		}
	}
	checkAgainstConsistent(t, e, members, keys)
}

// search must find the first point strictly above h, wrapping, for hashes
// on, next to and between points and at both ends of the range.
func TestSearchMatchesBinarySearch(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	for _, n := range []int{1, 2, 3, 7, 100, 300} {
		for _, e := range []*circleEngine{defaultEngine, {name: "native/1", scheme: nativeScheme(1)}} {
			c := e.Build(hostMembers(n, uint64(n))).(*circle)
			probes := []uint32{0, 1, 1<<31 - 1, 1 << 31, 1<<32 - 1}
			for _, p := range c.hashes {
				probes = append(probes, p-1, p, p+1)
			}
			for range 10_000 {
				probes = append(probes, r.Uint32())
			}
			for _, h := range probes {
				want := sort.Search(len(c.hashes), func(i int) bool { return c.hashes[i] > h })
				if want == len(c.hashes) {
					want = 0
				}
				if got := c.search(h); got != want {
					t.Fatalf("%s, %d members: search(%08x) = %d, want %d", e.name, n, h, got, want)
				}
			}
		}
	}
}

// A build from a previous circle (a few joins or leaves) gives the circle
// a build from scratch gives, collisions included, through a random walk
// of joins and leaves.
func TestIncrementalBuildMatchesFullBuild(t *testing.T) {
	a, b := crcCollision(t)
	fixed := map[string]string{"m03": a, "m07": b} // m03's and m07's first points collide
	label := labelScheme(64)
	sch := scheme{replicas: 1, count: 64, appendElt: func(dst []byte, m string, j int) []byte {
		if j == 0 && fixed[m] != "" {
			return append(dst, fixed[m]...)
		}
		return label.appendElt(dst, m, j)
	}}
	inc := &circleEngine{name: "inc", scheme: sch}
	rng := rand.New(rand.NewPCG(1, 2))
	in := map[string]bool{}
	incremental, collided := 0, 0
	var held *circle // the ring's current circle, as its snapshot holds it
	for step := 0; step < 300; step++ {
		// One to three members flip in or out, sometimes a dozen.
		flips := 1 + rng.IntN(3)
		if step%37 == 0 {
			flips = 12
		}
		for f := 0; f < flips; f++ {
			m := fmt.Sprintf("m%02d", rng.IntN(30))
			in[m] = !in[m]
		}
		var members []string
		for m, ok := range in {
			if ok {
				members = append(members, m)
			}
		}
		if len(members) == 0 {
			continue
		}
		slices.Sort(members)
		if prev, _, _ := inc.closest(members); prev != nil {
			incremental++
		}
		got := inc.Build(members).(*circle)
		held = got
		want := (&circleEngine{name: "full", scheme: sch}).Build(members).(*circle)
		if !slices.Equal(got.hashes, want.hashes) || !slices.Equal(got.owners, want.owners) ||
			!slices.Equal(got.shadowed, want.shadowed) || !slices.Equal(got.index, want.index) || got.shift != want.shift {
			t.Fatalf("step %d, members %v: the incremental circle differs from a full build", step, members)
		}
		if len(want.shadowed) > 0 {
			collided++
		}
	}
	runtime.KeepAlive(held)
	if collided == 0 {
		t.Fatal("no build had both colliding members: the shadowed points were not exercised")
	}
	if incremental < 200 {
		t.Fatalf("only %d of 300 builds were incremental", incremental)
	}
}

// The same members again (another ring of them) share the circle.
func TestBuildOfTheSameMembersSharesTheCircle(t *testing.T) {
	e := &circleEngine{name: defaultEngine.name, scheme: defaultEngine.scheme}
	ms := []string{"a@h", "b@h", "c@h", "d@h"}
	if e.Build(ms) != e.Build(slices.Clone(ms)) {
		t.Fatal("a second build of the same members made another circle")
	}
}

// The engine keeps no circle alive by itself: once no snapshot holds it,
// the next build of its members starts from scratch.
func TestEngineDoesNotKeepCirclesAlive(t *testing.T) {
	e := &circleEngine{name: defaultEngine.name, scheme: defaultEngine.scheme}
	ms := []string{"a@h", "b@h", "c@h", "d@h"}
	_ = e.Build(ms)
	runtime.GC()
	if prev, _, _ := e.closest(ms); prev != nil {
		t.Fatal("a circle nobody holds is still there after a GC")
	}
}
