package libring

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cloister-go/cloister/internal/ringx"
	"github.com/cloister-go/cloister/internal/wire/phash2"
	"github.com/cloister-go/cloister/ring"
	"github.com/ergo-services/ergo/etf"
	"github.com/ergo-services/ergo/lib"
)

const replicasModule = "testdata/libring_replicas_ref.erl"

// replicaCounts are the counts asked for each key: 1..4 and one above
// every member count used (clamped to the members).
var replicaCounts = []int{1, 2, 3, 4, 60}

// TestReplicasMatchLibringModelInErlang compares AppendOwners and
// AppendOwnersTerm with key_to_nodes as testdata/libring_replicas_ref.erl
// computes it in erl, on the same gb_trees calls libring makes: 1000 keys
// per ring (binaries, atoms, tuples, integers, lists, maps, and keys
// placed near the top of the ring), counts 1..4 and 60, rings of 1, 2, 3,
// 5, 12 and 50 members and one with a shared point. It also requires that
// libring's peculiar answers (one node past the top, short and reversed
// answers when the walk runs off the top, atoms hashed as themselves) were
// met, so that an implementation that wraps around would fail.
func TestReplicasMatchLibringModelInErlang(t *testing.T) {
	requireErl(t)
	r := rand.New(rand.NewPCG(21, 21))
	a, b, _ := findCollision(t)
	var cases []ringCase
	for _, n := range []int{1, 2, 3, 5, 12, 50} {
		var members []string
		for len(members) < n {
			members = append(members, fmt.Sprintf("app@10.0.%d.%d", r.IntN(256), r.IntN(256)))
			if len(members)%2 == 0 {
				members[len(members)-1] = randomName(r)
			}
			slices.Sort(members)
			members = slices.Compact(members)
		}
		cases = append(cases, ringCase{members, replicaKeys(t, r, members)})
	}
	collided := []string{a, b, "z@10.0.0.1"}
	slices.Sort(collided)
	cases = append(cases, ringCase{collided, replicaKeys(t, r, collided)})

	lines := erlReplicas(t, cases)
	var pastTop, ranOff, atomsDiffer, compared int
	buf := make([]string, 0, 64)
	for ci, c := range cases {
		l := build(c.members, false)
		for ki, k := range c.keys {
			for qi, n := range replicaCounts {
				var err error
				if s, ok := k.(string); ok {
					buf = l.AppendOwners(buf[:0], s, n)
				} else if buf, err = l.AppendOwnersTerm(buf[:0], k, n); err != nil {
					t.Fatalf("AppendOwnersTerm(%#v): %v", k, err)
				}
				want := lines[ci][ki*len(replicaCounts)+qi]
				if got := strings.Join(append([]string{"R"}, buf...), " "); got != want {
					t.Fatalf("ring %v, key %#v, n=%d: ours %q, erl %q", c.members, k, n, got, want)
				}
				compared++
				h := keyHash(t, k)
				switch {
				case h > l.points[len(l.points)-1]:
					if n > 1 && len(c.members) > 1 {
						pastTop++
					}
				case len(buf) < min(n, len(c.members)):
					ranOff++
				}
				if at, ok := k.(etf.Atom); ok && n == 1 {
					if o, _ := l.OwnerTerm(at); o != buf[0] {
						atomsDiffer++
					}
				}
			}
		}
	}
	t.Logf("%d replica sets (%d rings) equal to the Erlang model's; %d answers past the top (one node), %d walks off the top (short, reversed), %d atom keys whose first replica is not key_to_node's",
		compared, len(cases), pastTop, ranOff, atomsDiffer)
	if pastTop == 0 || ranOff == 0 || atomsDiffer == 0 {
		t.Fatalf("libring's own answers near the top and for atoms were not all met (%d, %d, %d): the keys do not test them", pastTop, ranOff, atomsDiffer)
	}
}

// keyHash is phash2(key, hashRange), as key_to_nodes takes it.
func keyHash(t *testing.T, k etf.Term) uint32 {
	if s, ok := k.(string); ok {
		return phash2.Binary(s, hashRange)
	}
	h, err := phash2.Hash(k, hashRange)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// replicaKeys returns 1000 keys for members: 700 binaries and 260 other
// terms (randomKeys' mix), 20 binaries past the largest point and 20 whose
// walk starts among the last 8 points.
func replicaKeys(t *testing.T, r *rand.Rand, members []string) []etf.Term {
	all := randomKeys(r)
	keys := append(slices.Clone(all[:700]), all[keysPerCase-termKeys:keysPerCase-termKeys+260]...)
	l := build(members, false)
	last := l.points[len(l.points)-1]
	tail := l.points[max(0, len(l.points)-8)]
	var past, near int
	for i := 0; past < 20 || near < 20; i++ {
		if i == 50_000_000 {
			t.Fatalf("%v: no keys near the top of the ring", members)
		}
		k := fmt.Sprintf("tail:%d", i)
		switch h := phash2.Binary(k, hashRange); {
		case h > last && past < 20:
			keys = append(keys, k)
			past++
		case h > tail && h <= last && near < 20:
			keys = append(keys, k)
			near++
		}
	}
	return keys
}

// erlReplicas runs the Erlang model on the cases; it returns each case's
// lines, len(keys)*len(replicaCounts) of them.
func erlReplicas(t *testing.T, cases []ringCase) [][]string {
	t.Helper()
	var counts etf.List
	for _, n := range replicaCounts {
		counts = append(counts, n)
	}
	var wire etf.List
	for _, c := range cases {
		var names, keys etf.List
		for _, m := range c.members {
			names = append(names, etf.String(m))
		}
		for _, k := range c.keys {
			if s, ok := k.(string); ok {
				k = etf.String(s) // a binary
			}
			keys = append(keys, k)
		}
		wire = append(wire, etf.Tuple{names, keys, counts})
	}
	buf := lib.TakeBuffer()
	defer lib.ReleaseBuffer(buf)
	buf.AppendByte(131)
	if err := etf.Encode(wire, buf, etf.EncodeOptions{FlagBigCreation: true, FlagBigPidRef: true}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	in, out := filepath.Join(dir, "cases.bin"), filepath.Join(dir, "replicas.txt")
	if err := os.WriteFile(in, buf.B, 0o600); err != nil {
		t.Fatal(err)
	}
	src, err := filepath.Abs(replicasModule)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := runErl(t, src, in, out); err != nil {
		t.Fatalf("erl: %v", err)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var all []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		all = append(all, sc.Text())
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	var res [][]string
	for _, c := range cases {
		n := len(c.keys) * len(replicaCounts)
		if n > len(all) {
			t.Fatalf("erl output ends early: %d lines left, want %d", len(all), n)
		}
		res = append(res, all[:n])
		all = all[n:]
	}
	if len(all) != 0 {
		t.Fatalf("erl gave %d lines too many", len(all))
	}
	return res
}

func TestLibringReplicasDoNotAllocate(t *testing.T) {
	set := ring.NewSet()
	if err := set.Define("r", Engine()); err != nil {
		t.Fatal(err)
	}
	snap, _, _ := set.Update("r", []string{"a@h", "b@h", "c@h", "d@h", "e@h"})
	buf := make([]string, 0, 3)
	var k etf.Term = etf.Tuple{etf.Atom("user"), 42}
	for n := 1; n <= 3; n++ {
		if a := testing.AllocsPerRun(200, func() { buf, _ = snap.AppendOwners(buf[:0], "user:42", n) }); a != 0 {
			t.Errorf("AppendOwners n=%d allocates %.0f times", n, a)
		}
		if a := testing.AllocsPerRun(200, func() { buf, _ = ringx.AppendOwnersTerm(snap, buf[:0], k, n, nil) }); a != 0 {
			t.Errorf("AppendOwnersTerm n=%d allocates %.0f times", n, a)
		}
	}
}

// Away from the top of the ring a replica set is n distinct members in
// ring order starting with the owner, and a prefix of the larger sets.
func TestLibringReplicasInRingOrder(t *testing.T) {
	members := []string{"a@h", "b@h", "c@h", "d@h", "e@h"}
	l := build(members, false)
	checked := 0
	for i := range 5000 {
		k := fmt.Sprint("k", i)
		h := phash2.Binary(k, hashRange)
		if h > l.points[len(l.points)-64] {
			continue // near the top libring answers short (see replicas.go)
		}
		four := l.OwnersN(k, 4)
		if len(four) != 4 || four[0] != l.Owner(k) {
			t.Fatalf("%q: %v, want 4 starting with the owner %s", k, four, l.Owner(k))
		}
		if s := slices.Compact(slices.Sorted(slices.Values(four))); len(s) != 4 {
			t.Fatalf("%q: %v not distinct", k, four)
		}
		for n := 1; n < 4; n++ {
			if got := l.OwnersN(k, n); !slices.Equal(got, four[:n]) {
				t.Fatalf("%q: n=%d %v is not a prefix of %v", k, n, got, four)
			}
		}
		checked++
	}
	if checked < 4000 {
		t.Fatalf("only %d keys checked", checked)
	}
	if l.OwnersN("k", 0) != nil || build(nil, false).OwnersN("k", 2) != nil {
		t.Fatal("n=0 or an empty ring must give nil")
	}
}
