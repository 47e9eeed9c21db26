package ring

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/ergo-services/ergo/etf"
	"github.com/stathat/consistent"
)

var _ replicaLookup = (*circle)(nil)

// getNMembers is the reference for the default engine's replica sets:
// stathat/consistent's own GetN on the circle the lookup copies (it walks
// from the key's point and returns distinct elements in ring order), mapped
// back to members, de-duplicated and cut at n. GetN is asked for 16
// elements, then more until n members or every element are there (its own
// de-duplication is quadratic in what it is asked for).
func getNMembers(t *testing.T, ref *consistent.Consistent, label map[string]string, all int, key string, n int) []string {
	t.Helper()
	for ask := 16; ; ask *= 4 {
		elts, err := ref.GetN(key, min(ask, all))
		if err != nil {
			t.Fatalf("consistent.GetN(%q): %v", key, err)
		}
		var ms []string
		for _, elt := range elts {
			if m := label[elt]; !slices.Contains(ms, m) {
				ms = append(ms, m)
			}
		}
		if len(ms) >= n || ask >= all {
			return ms[:min(n, len(ms))]
		}
	}
}

// The default engine's replica sets are consistent's GetN walk over
// members: for the labelled circle (each member many elements) and for the
// native one (bare names, where GetN itself returns members), 1000 keys,
// n = 1..4 and several member sets.
func TestAppendOwnersMatchesStathatGetN(t *testing.T) {
	keys := append(sequentialKeys(500), randomKeys(500, 11)...)
	native := &circleEngine{name: "native/20", scheme: nativeScheme(20)}
	for _, c := range []struct {
		e       *circleEngine
		members []string
	}{
		{defaultEngine, ipMembers(1)},
		{defaultEngine, ipMembers(2)},
		{defaultEngine, ipMembers(3)},
		{defaultEngine, hostMembers(5, 4)},
		{native, ipMembers(3)},
		{native, hostMembers(7, 8)},
	} {
		l := c.e.Build(c.members).(*circle)
		ref, label := reference(c.e, c.members)
		all := len(c.members) * c.e.scheme.count
		for n := 1; n <= 4; n++ {
			for _, k := range keys {
				got := l.AppendOwners(nil, k, n)
				if want := getNMembers(t, ref, label, all, k, n); !slices.Equal(got, want) {
					t.Fatalf("%s %v n=%d key %q: %v, consistent's walk gives %v", c.e.name, c.members, n, k, got, want)
				}
				if len(got) != min(n, len(c.members)) || got[0] != l.Owner(k) {
					t.Fatalf("%s n=%d key %q: %v: want %d members starting with the owner %s", c.e.name, n, k, got, min(n, len(c.members)), l.Owner(k))
				}
				if c.e.scheme.count == 1 { // bare names: GetN itself answers
					direct, err := ref.GetN(k, n)
					if err != nil || !slices.Equal(got, direct) {
						t.Fatalf("%s n=%d key %q: %v, consistent.GetN %v %v", c.e.name, n, k, got, direct, err)
					}
				}
			}
		}
	}
}

func TestAppendOwnersDoesNotAllocate(t *testing.T) {
	set := benchSet(t, Consistent(), ipMembers(5))
	snap, _ := set.Get("bench")
	buf := make([]string, 0, 3)
	for n := 1; n <= 3; n++ {
		if a := testing.AllocsPerRun(200, func() { buf, _ = snap.AppendOwners(buf[:0], "user:42", n) }); a != 0 {
			t.Errorf("View.AppendOwners n=%d allocates %.0f times", n, a)
		}
		if a := testing.AllocsPerRun(200, func() { buf, _ = set.AppendOwners(buf[:0], "bench", "user:42", n) }); a != 0 {
			t.Errorf("Set.AppendOwners n=%d allocates %.0f times", n, a)
		}
	}
}

func TestOwnersNEdgeCases(t *testing.T) {
	set := NewSet()
	if err := set.Define("r", nil); err != nil {
		t.Fatal(err)
	}
	snap, _ := set.Get("r")
	if _, err := snap.OwnersN("k", 2); !errors.Is(err, ErrEmptyRing) {
		t.Errorf("empty ring: %v", err)
	}
	snap, _, _ = set.Update("r", []string{"c@h", "a@h", "b@h"})
	for _, n := range []int{0, -1} {
		if _, err := snap.OwnersN("k", n); !errors.Is(err, ErrBadCount) {
			t.Errorf("n=%d: %v, want ErrBadCount", n, err)
		}
	}
	// More than the members: every member once, owner first.
	all, err := snap.OwnersN("k", 10)
	if err != nil || len(all) != 3 || all[0] != must(snap.Owner("k")) {
		t.Fatalf("n=10 of 3: %v %v", all, err)
	}
	sorted := slices.Clone(all)
	slices.Sort(sorted)
	if !slices.Equal(sorted, []string{"a@h", "b@h", "c@h"}) {
		t.Fatalf("n=10 of 3: %v are not the members", all)
	}
	// A prefix property: the first n of n+1 are the n.
	for i := range 200 {
		k := fmt.Sprint("key", i)
		three, _ := snap.OwnersN(k, 3)
		two, _ := snap.OwnersN(k, 2)
		if !slices.Equal(three[:2], two) {
			t.Fatalf("%q: n=2 %v is not a prefix of n=3 %v", k, two, three)
		}
	}
	if _, err := set.AppendOwners(nil, "nope", "k", 1); !errors.Is(err, ErrNoSuchRing) {
		t.Errorf("unknown ring: %v", err)
	}
	// An engine without replica sets says so.
	if err := set.Define("plain", ownerOnly{}); err != nil {
		t.Fatal(err)
	}
	p, _, _ := set.Update("plain", []string{"a@h"})
	if _, err := p.OwnersN("k", 1); !errors.Is(err, ErrNoReplicas) {
		t.Errorf("owner-only engine: %v", err)
	}
	// Term keys on the default engine go through the caller's text.
	got, err := snap.appendOwnersTerm(nil, etf.Tuple{etf.Atom("user"), 1}, 2, func(etf.Term) string { return "user:1" })
	want, _ := snap.OwnersN("user:1", 2)
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("term key: %v %v, want %v", got, err, want)
	}
}

type ownerOnly struct{}

func (ownerOnly) Name() string                  { return "owner-only" }
func (ownerOnly) Build(members []string) Lookup { return ownerOnlyLookup(members[0]) }

type ownerOnlyLookup string

func (o ownerOnlyLookup) Owner(string) string { return string(o) }

func must(s string, err error) string {
	if err != nil {
		panic(err)
	}
	return s
}
