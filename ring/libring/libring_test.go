package libring

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cloister-go/cloister/internal/ringx"
	"github.com/cloister-go/cloister/internal/wire/phash2"
	"github.com/cloister-go/cloister/ring"
	"github.com/ergo-services/ergo/etf"
	"github.com/ergo-services/ergo/lib"
)

var _ ring.Engine = Engine()

const (
	refModule   = "testdata/libring_ref.erl"
	keysPerCase = 10000
	termKeys    = 1000 // of them, keys that are not binaries
)

// ringCase is one member list and the keys to place on it.
type ringCase struct {
	members []string
	keys    []etf.Term // string keys are binaries; the rest go through OwnerTerm
}

// TestOwnersMatchLibringModelInErlang builds rings of 1, 3 and 5 members
// (and a few more shapes) in Go and in testdata/libring_ref.erl, run by erl,
// and requires the same points, the same owner of each point, and the same
// owner for every key.
func TestOwnersMatchLibringModelInErlang(t *testing.T) {
	requireErl(t)
	r := rand.New(rand.NewPCG(7, 7))
	a, b, _ := findCollision(t)
	var cases []ringCase
	for _, n := range []int{1, 3, 5, 5, 12, 50} {
		members := make([]string, n)
		for i := range members {
			members[i] = fmt.Sprintf("app@10.0.%d.%d", r.IntN(256), r.IntN(256))
			if i%2 == 1 {
				members[i] = randomName(r)
			}
		}
		slices.Sort(members)
		members = slices.Compact(members)
		cases = append(cases, ringCase{members, randomKeys(r)})
	}
	collided := []string{a, b, "z@10.0.0.1"}
	slices.Sort(collided)
	cases = append(cases, ringCase{collided, randomKeys(r)})

	lines := erlRing(t, cases)
	checked := 0
	for ci, c := range cases {
		l := build(c.members, false)
		var wantPoints []string
		for i, p := range l.points {
			wantPoints = append(wantPoints, fmt.Sprintf("P %d %s", p, l.members[l.owners[i]]))
		}
		got := lines[ci]
		if len(got) != len(wantPoints)+len(c.keys) {
			t.Fatalf("case %d (%v): erl gave %d lines, want %d points + %d keys", ci, c.members, len(got), len(wantPoints), len(c.keys))
		}
		for i, w := range wantPoints {
			if got[i] != w {
				t.Fatalf("case %d (%v): point %d: ours %q, erl %q", ci, c.members, i, w, got[i])
			}
		}
		bad := 0
		for i, k := range c.keys {
			var owner string
			if s, ok := k.(string); ok {
				owner = l.Owner(s)
				if o, err := l.OwnerTerm(s); err != nil || o != owner {
					t.Fatalf("OwnerTerm(%q) = %q, %v; Owner gives %q", s, o, err, owner)
				}
			} else {
				var err error
				if owner, err = l.OwnerTerm(k); err != nil {
					t.Fatalf("OwnerTerm(%#v): %v", k, err)
				}
			}
			if want := strings.TrimPrefix(got[len(wantPoints)+i], "K "); owner != want {
				if bad++; bad <= 10 {
					t.Errorf("case %d: key %#v: ours %q, erl %q", ci, k, owner, want)
				}
			}
			checked++
		}
	}
	if t.Failed() {
		return
	}
	t.Logf("%d rings (%d points), %d keys (%d not binaries): same points and owners as the Erlang model",
		len(cases), totalPoints(cases), checked, len(cases)*termKeys)
}

func totalPoints(cases []ringCase) int {
	n := 0
	for _, c := range cases {
		n += build(c.members, false).Points()
	}
	return n
}

// erlRing runs the Erlang model on the cases; it returns each case's lines.
func erlRing(t *testing.T, cases []ringCase) [][]string {
	t.Helper()
	var wire etf.List
	for _, c := range cases {
		var names, keys etf.List
		for _, m := range c.members {
			names = append(names, etf.String(m))
		}
		for _, k := range c.keys {
			if s, ok := k.(string); ok {
				k = etf.String(s) // a binary, as in phash2's reading of a Go string
			}
			keys = append(keys, k)
		}
		wire = append(wire, etf.Tuple{names, keys})
	}
	buf := lib.TakeBuffer()
	defer lib.ReleaseBuffer(buf)
	buf.AppendByte(131)
	if err := etf.Encode(wire, buf, etf.EncodeOptions{FlagBigCreation: true, FlagBigPidRef: true}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	in, out := filepath.Join(dir, "cases.bin"), filepath.Join(dir, "owners.txt")
	if err := os.WriteFile(in, buf.B, 0o600); err != nil {
		t.Fatal(err)
	}
	src, err := filepath.Abs(refModule)
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
	for sc.Scan() {
		all = append(all, sc.Text())
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	// Split per case: every case starts with its points.
	var res [][]string
	for _, c := range cases {
		n := 0
		for n < len(all) && strings.HasPrefix(all[n], "P ") {
			n++
		}
		n += len(c.keys)
		if n > len(all) {
			t.Fatalf("erl output ends early")
		}
		res = append(res, all[:n])
		all = all[n:]
	}
	return res
}

func randomName(r *rand.Rand) string {
	const letters = "abcdefghijklmnopqrstuvwxyz0123456789_"
	var sb strings.Builder
	for range 1 + r.IntN(12) {
		sb.WriteByte(letters[r.IntN(len(letters))])
	}
	if r.IntN(4) == 0 {
		sb.WriteString("ñΩ") // not Latin-1 throughout
	}
	return sb.String() + "@host" + strconv.Itoa(r.IntN(100))
}

// randomKeys returns keysPerCase keys, termKeys of them not binaries.
func randomKeys(r *rand.Rand) []etf.Term {
	keys := make([]etf.Term, 0, keysPerCase)
	for range keysPerCase - termKeys {
		switch r.IntN(3) {
		case 0:
			keys = append(keys, "user:"+strconv.Itoa(r.IntN(1_000_000)))
		case 1:
			keys = append(keys, string(rune(0x61+r.IntN(26)))+strconv.FormatUint(r.Uint64(), 36))
		default:
			b := make([]byte, r.IntN(40))
			for i := range b {
				b[i] = byte(r.Uint32())
			}
			keys = append(keys, string(b))
		}
	}
	atoms := []string{"foo", "bar", "", "ünïcødé", "Ωmega", "日本", strings.Repeat("é", 200), "user_42"}
	for i := range termKeys {
		switch i % 6 {
		case 0:
			keys = append(keys, etf.Atom(atoms[r.IntN(len(atoms))]+strconv.Itoa(r.IntN(1000))))
		case 1:
			keys = append(keys, r.IntN(2) == 0)
		case 2:
			keys = append(keys, r.Int64N(1<<40)-1<<39)
		case 3:
			keys = append(keys, etf.Tuple{etf.Atom("user"), r.IntN(100000)})
		case 4:
			keys = append(keys, etf.List{etf.Atom("job"), []byte("x"), r.IntN(256)})
		default:
			keys = append(keys, etf.Map{etf.Atom("id"): r.IntN(100000)})
		}
	}
	return keys
}

// findCollision returns two member names with a point in common, searching
// a fixed sequence of names (deterministic).
func findCollision(t *testing.T) (a, b string, point uint32) {
	t.Helper()
	owner := map[uint32]string{}
	for n := range 20000 {
		name := fmt.Sprintf("node%d@127.0.0.1", n)
		for i := 1; i <= weight; i++ {
			h, err := phash2.Hash(etf.Tuple{etf.Atom(name), i}, hashRange)
			if err != nil {
				t.Fatal(err)
			}
			if o, ok := owner[h]; ok && o != name {
				return o, name, h
			}
			owner[h] = name
		}
	}
	t.Fatal("no point collision among 20000 names")
	return "", "", 0
}

func TestCollidingPointGoesToMemberAddedFirst(t *testing.T) {
	a, b, p := findCollision(t)
	for _, order := range [][]string{{a, b}, {b, a}} {
		l := build(order, false)
		if l.Points() != 2*weight-1 {
			t.Fatalf("%v: %d points, want %d", order, l.Points(), 2*weight-1)
		}
		if got := l.ownerOfHash(p); got != order[0] {
			t.Errorf("%v: point %d owned by %s, want %s (added first)", order, p, got, order[0])
		}
	}
}

func TestKeysPastTheLastPointWrapToTheFirst(t *testing.T) {
	l := build([]string{"a@h", "b@h", "c@h"}, false)
	last := l.points[len(l.points)-1]
	if last == hashRange-1 {
		t.Skip("the last point is the largest hash")
	}
	if got, want := l.ownerOfHash(last+1), l.members[l.owners[0]]; got != want {
		t.Errorf("hash after the last point: %s, want the first point's %s", got, want)
	}
	if got, want := l.ownerOfHash(0), l.members[l.owners[0]]; got != want {
		t.Errorf("hash 0: %s, want %s", got, want)
	}
	if got, want := l.ownerOfHash(l.points[5]), l.members[l.owners[5]]; got != want {
		t.Errorf("a hash equal to a point belongs to that point: %s, want %s", got, want)
	}
}

func TestEmptyRingHasNoOwner(t *testing.T) {
	if o := build(nil, false).Owner("k"); o != "" {
		t.Errorf("owner %q", o)
	}
}

func TestEngineBuildsLookups(t *testing.T) {
	e := Engine()
	if e.Name() != "libring/phash2/128" {
		t.Errorf("name %q", e.Name())
	}
	members := []string{"a@h", "b@h"}
	if _, ok := e.Build(members).(*hashRing); !ok {
		t.Error("Build does not return a *hashRing")
	}
	l := build(members, false)
	if got := l.Members(); !slices.Equal(got, members) {
		t.Errorf("members %v", got)
	}
}

func TestOwnerDoesNotAllocate(t *testing.T) {
	l := build([]string{"a@h", "b@h", "c@h"}, false)
	if n := testing.AllocsPerRun(100, func() { _ = l.Owner("user:42") }); n != 0 {
		t.Errorf("Owner allocates %.0f times", n)
	}
	var k etf.Term = etf.Atom("user_42")
	if n := testing.AllocsPerRun(100, func() { _, _ = l.OwnerTerm(k) }); n != 0 {
		t.Errorf("OwnerTerm(atom) allocates %.0f times", n)
	}
}

// A ring on this engine answers term keys the libring way through
// ring.View.OwnerTerm (what cloister.WhoisTerm and a Monitor's whois
// use), not through a text rendering of the term.
func TestSnapshotOwnerTermHashesTerms(t *testing.T) {
	members := []string{"a@h", "b@h", "c@h", "d@h", "e@h"}
	set := ring.NewSet()
	if err := set.Define("r", Engine()); err != nil {
		t.Fatal(err)
	}
	snap, _, err := set.Update("r", members)
	if err != nil {
		t.Fatal(err)
	}
	l := build(members, false)
	noText := func(k etf.Term) string { t.Fatalf("text of %#v asked for: the engine hashes terms", k); return "" }
	differ := 0
	for i := 0; i < 200; i++ {
		for _, k := range []etf.Term{etf.Atom(fmt.Sprintf("key_%d", i)), etf.Tuple{etf.Atom("user"), i}, i, []byte(fmt.Sprint(i))} {
			got, err := ringx.OwnerTerm(snap, k, noText)
			want, werr := l.OwnerTerm(k)
			if err != nil || werr != nil || got != want {
				t.Fatalf("%#v: snapshot %q %v, lookup %q %v", k, got, err, want, werr)
			}
			if a, ok := k.(etf.Atom); ok && got != l.Owner(string(a)) {
				differ++
			}
		}
	}
	// An atom hashes as term_to_binary of the atom, not as a binary of
	// its name: about 4 in 5 owners differ with 5 members.
	if differ < 100 {
		t.Fatalf("only %d of 200 atom keys differ from their name as a binary: the term path is not used", differ)
	}
	if _, err := ringx.OwnerTerm(snap, struct{}{}, noText); err == nil {
		t.Fatal("a Go value with no Erlang term must be an error")
	}
	empty, _, _ := set.Update("r", nil)
	if _, err := ringx.OwnerTerm(empty, etf.Atom("k"), noText); !errors.Is(err, ring.ErrEmptyRing) {
		t.Fatalf("empty ring: %v", err)
	}
}

// The default engine has no term hashing: OwnerTerm looks up the text the
// caller gives.
func TestSnapshotOwnerTermFallsBackToText(t *testing.T) {
	set := ring.NewSet()
	if err := set.Define("r", ring.Consistent()); err != nil {
		t.Fatal(err)
	}
	snap, _, err := set.Update("r", []string{"a@h", "b@h", "c@h"})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		text := func(k etf.Term) string { return fmt.Sprintf("t:%v", k) }
		k := etf.Tuple{etf.Atom("user"), i}
		got, err := ringx.OwnerTerm(snap, k, text)
		want, _ := snap.Owner(text(k))
		if err != nil || got != want {
			t.Fatalf("%v: %q %v, want %q", k, got, err, want)
		}
	}
}
