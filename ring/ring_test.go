package ring

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
)

func mustSet(t *testing.T, name string, e Engine, members []string) (*Set, *View) {
	t.Helper()
	s := NewSet()
	if err := s.Define(name, e); err != nil {
		t.Fatal(err)
	}
	snap, _, err := s.Update(name, members)
	if err != nil {
		t.Fatal(err)
	}
	return s, snap
}

func ownersOf(t *testing.T, snap *View, keys []string) []string {
	t.Helper()
	out := make([]string, len(keys))
	for i, k := range keys {
		o, err := snap.Owner(k)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = o
	}
	return out
}

func TestOwnerDependsOnlyOnMemberSet(t *testing.T) {
	keys := append(sequentialKeys(50_000), randomKeys(50_000, 1)...)
	r := rand.New(rand.NewPCG(42, 42))
	for _, n := range []int{1, 3, 10, 50} {
		members := hostMembers(n, uint64(n))
		_, ref := mustSet(t, "r", nil, members)
		want := ownersOf(t, ref, keys)
		for trial := range 4 {
			// The same members joining one by one in a random order, with
			// duplicates and a member that joins and leaves on the way.
			perm := slices.Clone(members)
			r.Shuffle(len(perm), func(i, j int) { perm[i], perm[j] = perm[j], perm[i] })
			s, _ := mustSet(t, "r", nil, nil)
			var snap *View
			for i := range perm {
				joined := append(slices.Clone(perm[:i+1]), perm[0])
				if i == len(perm)/2 {
					s.Update("r", append(slices.Clone(joined), "app@transient"))
				}
				var err error
				if snap, _, err = s.Update("r", joined); err != nil {
					t.Fatal(err)
				}
			}
			if got := ownersOf(t, snap, keys); !slices.Equal(got, want) {
				t.Fatalf("N=%d trial %d: owners differ after joining in order %v", n, trial, perm)
			}
			if snap.Hash() != ref.Hash() {
				t.Fatalf("N=%d trial %d: Hash %x, want %x", n, trial, snap.Hash(), ref.Hash())
			}
		}
	}
}

func TestUpdateUnchangedSetKeepsEpoch(t *testing.T) {
	s, first := mustSet(t, "r", nil, []string{"b", "a", "c"})
	if first.Epoch() != 1 {
		t.Fatalf("epoch after first update = %d, want 1", first.Epoch())
	}
	snap, changed, err := s.Update("r", []string{"c", "a", "b", "a"})
	if err != nil || changed || snap != first || snap.Epoch() != 1 {
		t.Fatalf("Update(same set) = epoch %d, changed %v, err %v; want the same snapshot, epoch 1", snap.Epoch(), changed, err)
	}
	snap, changed, err = s.Update("r", []string{"a", "b"})
	if err != nil || !changed || snap.Epoch() != 2 {
		t.Fatalf("Update(new set) = epoch %d, changed %v, err %v; want epoch 2, changed", snap.Epoch(), changed, err)
	}
	if got, _ := s.Get("r"); got != snap {
		t.Fatal("Get does not return the published snapshot")
	}
}

func TestUnknownRingFails(t *testing.T) {
	s := NewSet()
	_, err := s.Owner("nope", "k")
	if !errors.Is(err, ErrNoSuchRing) || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("Owner: err = %v, want ErrNoSuchRing naming the ring", err)
	}
	if _, err := s.Get("nope"); !errors.Is(err, ErrNoSuchRing) {
		t.Errorf("Get: err = %v, want ErrNoSuchRing", err)
	}
	if _, _, err := s.Update("nope", []string{"a"}); !errors.Is(err, ErrNoSuchRing) {
		t.Errorf("Update: err = %v, want ErrNoSuchRing", err)
	}
}

func TestEmptyRingFails(t *testing.T) {
	s := NewSet()
	if err := s.Define("r", nil); err != nil {
		t.Fatal(err)
	}
	_, err := s.Owner("r", "k")
	if !errors.Is(err, ErrEmptyRing) || !strings.Contains(err.Error(), `"r"`) {
		t.Errorf("Owner on a new ring: err = %v, want ErrEmptyRing naming the ring", err)
	}
	s.Update("r", []string{"a"})
	snap, changed, err := s.Update("r", nil)
	if err != nil || !changed || snap.Epoch() != 2 || snap.Len() != 0 {
		t.Fatalf("Update(nil) = epoch %d len %d changed %v err %v", snap.Epoch(), snap.Len(), changed, err)
	}
	if _, err := snap.Owner("k"); !errors.Is(err, ErrEmptyRing) {
		t.Errorf("Owner on an emptied ring: err = %v, want ErrEmptyRing", err)
	}
}

func TestDefineAndBadNames(t *testing.T) {
	s := NewSet()
	if err := s.Define("r", nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Define("r", nil); !errors.Is(err, ErrRingDefined) {
		t.Errorf("second Define: err = %v, want ErrRingDefined", err)
	}
	if err := s.Define("", nil); !errors.Is(err, ErrBadName) {
		t.Errorf("Define(\"\"): err = %v, want ErrBadName", err)
	}
	if _, _, err := s.Update("r", []string{"a", ""}); !errors.Is(err, ErrBadName) {
		t.Errorf("Update with an empty member: err = %v, want ErrBadName", err)
	}
	snap, _ := s.Get("r")
	if snap.engine != Consistent() || snap.Epoch() != 0 || snap.Name() != "r" {
		t.Errorf("new ring: engine %v epoch %d name %q", snap.engine.Name(), snap.Epoch(), snap.Name())
	}
}

// firstEngine gives every key to the first member: a custom engine.
type firstEngine struct{}

func (firstEngine) Name() string                  { return "first" }
func (firstEngine) Build(members []string) Lookup { return firstLookup(members[0]) }

type firstLookup string

func (f firstLookup) Owner(string) string { return string(f) }

func TestCustomEngine(t *testing.T) {
	_, snap := mustSet(t, "r", firstEngine{}, []string{"b", "a"})
	if o, _ := snap.Owner("anything"); o != "a" {
		t.Errorf("Owner = %q, want a (the first sorted member)", o)
	}
}

func TestMembersAreCopies(t *testing.T) {
	in := []string{"c", "a", "b"}
	_, snap := mustSet(t, "r", nil, in)
	if !slices.Equal(in, []string{"c", "a", "b"}) {
		t.Errorf("Update modified the caller's slice: %v", in)
	}
	m := snap.Members()
	if !slices.Equal(m, []string{"a", "b", "c"}) || snap.Len() != 3 {
		t.Fatalf("Members = %v, Len = %d", m, snap.Len())
	}
	m[0] = "zzz"
	if snap.Members()[0] != "a" {
		t.Error("Members returned the snapshot's own slice")
	}
}

func TestZeroSetIsEmpty(t *testing.T) {
	var s Set
	if len(s.Names()) != 0 || len(s.views()) != 0 || s.views() == nil {
		t.Error("zero Set is not empty")
	}
	if _, err := s.Owner("r", "k"); !errors.Is(err, ErrNoSuchRing) {
		t.Errorf("Owner: err = %v, want ErrNoSuchRing", err)
	}
	if err := s.Define("r", nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Update("r", []string{"a"}); err != nil {
		t.Fatal(err)
	}
	if o, err := s.Owner("r", "k"); o != "a" || err != nil {
		t.Errorf("Owner = %q, %v", o, err)
	}
}

func TestNamesAndViews(t *testing.T) {
	s := NewSet()
	for _, n := range []string{"b", "c", "a"} {
		s.Define(n, nil)
	}
	if got := s.Names(); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Errorf("Names = %v", got)
	}
	view := s.views()
	s.Update("a", []string{"x"})
	if view["a"].Len() != 0 || len(view) != 3 {
		t.Error("Views changed after an Update")
	}
	delete(view, "b")
	if _, err := s.Get("b"); err != nil {
		t.Error("deleting from the Views copy removed a ring")
	}
}

func TestHashDependsOnlyOnMemberSet(t *testing.T) {
	_, a := mustSet(t, "r", nil, []string{"x", "y", "z"})
	s, b := mustSet(t, "other", firstEngine{}, []string{"z", "x", "y", "x"})
	if a.Hash() != b.Hash() {
		t.Errorf("equal sets: Hash %x != %x", a.Hash(), b.Hash())
	}
	s.Update("other", []string{"x"})
	c, _, _ := s.Update("other", []string{"x", "y", "z"})
	if c.Epoch() != 3 || c.Hash() != a.Hash() {
		t.Errorf("epoch %d, Hash %x: want epoch 3, Hash %x", c.Epoch(), c.Hash(), a.Hash())
	}
	_, d := mustSet(t, "r", nil, []string{"ab", "c"})
	_, e := mustSet(t, "r", nil, []string{"a", "bc"})
	_, f := mustSet(t, "r", nil, []string{"x", "y"})
	if d.Hash() == e.Hash() || f.Hash() == a.Hash() {
		t.Error("different member sets have the same Hash")
	}
}

func TestOwnerDoesNotAllocate(t *testing.T) {
	s, snap := mustSet(t, "r", nil, ipMembers(10))
	key := strings.Repeat("k", 100) // longer than consistent's 64-byte scratch
	for name, f := range map[string]func(){
		"View.Owner": func() { snap.Owner(key) },
		"Set.Owner":  func() { s.Owner("r", key) },
		"empty ring": func() { mustEmpty(s).Owner("k") },
	} {
		if n := testing.AllocsPerRun(1000, f); n != 0 {
			t.Errorf("%s: %v allocs/op, want 0", name, n)
		}
	}
}

func mustEmpty(s *Set) *View {
	if snap, err := s.Get("empty"); err == nil {
		return snap
	}
	s.Define("empty", nil)
	snap, _ := s.Get("empty")
	return snap
}

// Readers must always see a whole snapshot: the owner is one of the members
// of the snapshot that answered, and epochs never go back.
func TestConcurrentReadersAndWriter(t *testing.T) {
	all := ipMembers(12)
	sets := [][]string{all[:3], all[2:9], all, all[5:6], nil}
	s, _ := mustSet(t, "r", nil, sets[0])
	keys := sequentialKeys(1000)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan error, 8)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var epoch uint64
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				snap, err := s.Get("r")
				if err != nil {
					errs <- err
					return
				}
				if snap.Epoch() < epoch {
					errs <- fmt.Errorf("epoch went back from %d to %d", epoch, snap.Epoch())
					return
				}
				epoch = snap.Epoch()
				o, err := snap.Owner(keys[i%len(keys)])
				if err != nil {
					if !errors.Is(err, ErrEmptyRing) || snap.Len() != 0 {
						errs <- err
						return
					}
					continue
				}
				if !slices.Contains(snap.Members(), o) {
					errs <- fmt.Errorf("owner %q not in epoch %d members %v", o, snap.Epoch(), snap.Members())
					return
				}
				if _, err := s.Owner("r", keys[i%len(keys)]); err != nil && !errors.Is(err, ErrEmptyRing) {
					errs <- err
					return
				}
			}
		}()
	}
	for i := range 500 {
		if _, _, err := s.Update("r", sets[i%len(sets)]); err != nil {
			t.Fatal(err)
		}
		if i%50 == 0 {
			s.Define(fmt.Sprintf("extra-%d", i), nil) // republishes the map too
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if snap, _ := s.Get("r"); snap.Epoch() != 500 {
		t.Errorf("epoch after 500 changes = %d", snap.Epoch())
	}
}

func TestDiff(t *testing.T) {
	keys := sequentialKeys(20_000)
	all := ipMembers(8)
	cases := []struct {
		name     string
		old, new []string
	}{
		{"join", all[:5], all[:6]},
		{"leave", all[:6], all[1:6]},
		{"replace two", all[:5], append(slices.Clone(all[:3]), all[6:8]...)},
		{"from empty", nil, all[:3]},
		{"to empty", all[:3], nil},
		{"unchanged", all[:4], all[:4]},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, old := mustSet(t, "r", nil, c.old)
			var next *View
			if slices.Equal(c.old, c.new) {
				next = old
			} else {
				next, _, _ = s.Update("r", c.new)
			}
			gained, lost := diff(old, next, keys)
			inGained, inLost := index(gained), index(lost)
			for _, k := range keys {
				from, to := old.ownerOrNone(k), next.ownerOrNone(k)
				wantG, wantL := "", ""
				if from != to {
					wantG, wantL = to, from
				}
				if inGained[k] != wantG || inLost[k] != wantL {
					t.Fatalf("key %q (%q -> %q): gained by %q, lost by %q", k, from, to, inGained[k], inLost[k])
				}
			}
			if total(gained) != len(inGained) || total(lost) != len(inLost) {
				t.Fatal("a key is listed twice")
			}
		})
	}
	if g, l := diff(nil, nil, keys); len(g) != 0 || len(l) != 0 || g == nil || l == nil {
		t.Error("diff(nil, nil) must be two empty, non-nil maps")
	}
}

// index maps each key to the member it is listed under ("" if none).
func index(m map[string][]string) map[string]string {
	out := make(map[string]string)
	for member, keys := range m {
		for _, k := range keys {
			out[k] = member
		}
	}
	return out
}

func total(m map[string][]string) (n int) {
	for _, keys := range m {
		n += len(keys)
	}
	return n
}

// Consistent hashing's promise: a join moves keys only to the new member and
// a leave only away from the leaving one; untouched members swap nothing.
func TestJoinAndLeaveMoveNoKeysBetweenOthers(t *testing.T) {
	keys := append(sequentialKeys(50_000), randomKeys(50_000, 2)...)
	for _, n := range []int{2, 3, 10, 25} {
		all := hostMembers(n+1, uint64(100+n))
		s, before := mustSet(t, "r", nil, all[:n])
		joined, _, _ := s.Update("r", all)
		left, _, _ := s.Update("r", all[1:])
		for _, step := range []struct {
			name     string
			old, new *View
			changed  string
		}{{"join", before, joined, all[n]}, {"leave", joined, left, all[0]}} {
			gained, lost := diff(step.old, step.new, keys)
			for m := range gained {
				if m != step.changed && step.name == "join" {
					t.Errorf("N=%d %s: %d keys moved to untouched member %s", n, step.name, len(gained[m]), m)
				}
			}
			for m := range lost {
				if m != step.changed && step.name == "leave" {
					t.Errorf("N=%d %s: %d keys moved from untouched member %s", n, step.name, len(lost[m]), m)
				}
			}
			if total(gained) == 0 {
				t.Errorf("N=%d %s: no key moved", n, step.name)
			}
		}
	}
}
