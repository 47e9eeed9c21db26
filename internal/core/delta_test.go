package core

import (
	"fmt"
	"math/rand"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/cloister-go/cloister/listener"
)

// mesh runs cores against each other in memory, as their drivers would:
// dials connect at once, probes are answered with a state answer, pings
// with a pong carrying News when the ping did. Messages are delivered in
// a shuffled order at each step of the clock (a seeded shuffle), so
// crossed messages happen.
type mesh struct {
	t      *testing.T
	now    time.Time
	rng    *rand.Rand
	nodes  map[string]*Core
	queue  []msg
	states int // state answers served
	// started: when each node starts (staggered); a dial to one not
	// started fails.
	started map[string]time.Time
	last    map[string]time.Time // by "from to": the latest delivery queued
	// spread: the starts are spread over it; delay bounds a message's.
	spread, delay time.Duration
}

// msg is a delivery due at a time.
type msg struct {
	at time.Time
	f  func()
}

// send queues f, from node from to node to, after a random delay of up
// to 150 ms, in order with the pair's earlier messages (one link).
func (m *mesh) send(from, to string, f func()) {
	at := m.now.Add(time.Duration(m.rng.Int63n(int64(m.delay))))
	if last := m.last[from+" "+to]; at.Before(last) {
		at = last
	}
	m.last[from+" "+to] = at
	m.queue = append(m.queue, msg{at, f})
}

func newMesh(t *testing.T, seed int64, full map[string]bool, names ...string) *mesh {
	m := &mesh{t: t, now: t0, rng: rand.New(rand.NewSource(seed)), nodes: map[string]*Core{}, started: map[string]time.Time{}, last: map[string]time.Time{}}
	for _, n := range names {
		c := cfg(n, len(names), names...)
		c.ListDeltas = !full[n]
		m.nodes[n] = New(c)
	}
	m.spread, m.delay = 300*time.Millisecond, 150*time.Millisecond
	return m
}

func (m *mesh) step(n string, ev Event) {
	for _, f := range run(m.nodes[n], ev) {
		m.effect(n, f)
	}
}

func (m *mesh) effect(from string, f Effect) {
	switch e := f.(type) {
	case Dial:
		m.send(from, e.Node, func() {
			if m.now.Before(m.started[e.Node]) {
				m.step(from, DialDone{Now: m.now, Node: e.Node, Err: fmt.Errorf("not up")})
				return
			}
			m.step(e.Node, NodeUp{Now: m.now, Node: from})
			m.step(from, NodeUp{Now: m.now, Node: e.Node})
			m.step(from, DialDone{Now: m.now, Node: e.Node})
		})
	case Probe:
		m.send(from, e.Node, func() {
			to := m.nodes[e.Node]
			m.states++
			to.Answered(from)
			reply := ProbeReply{Now: m.now, Node: e.Node, OTPApp: "cloister", Members: slices.Clone(to.Members()),
				Hash: to.MembersHash(), HasHash: true, Leaves: true, Deltas: to.cfg.ListDeltas}
			m.step(e.Node, ProbedBy{Now: m.now, Node: from})
			m.send(e.Node, from, func() { m.step(from, reply) })
		})
	case Ping:
		c := m.nodes[from]
		hash, news := c.MembersHash(), c.News(e.Node)
		m.send(from, e.Node, func() {
			to := m.nodes[e.Node]
			m.step(e.Node, PingedBy{Now: m.now, Node: from, Hash: hash, News: news})
			var answer *ListNews
			if news != nil {
				if answer = to.News(from); answer == nil {
					answer = &ListNews{}
				}
			}
			pong := Pong{Now: m.now, Node: e.Node, Hash: to.MembersHash(), News: answer}
			m.send(e.Node, from, func() { m.step(from, pong) })
		})
	}
}

// runFor starts every node and runs the clock for d, in 10 ms steps.
func (m *mesh) runFor(d time.Duration) {
	names := m.names()
	for _, n := range names {
		m.started[n] = t0.Add(time.Duration(m.rng.Int63n(int64(m.spread))))
	}
	for end := m.now.Add(d); m.now.Before(end); m.now = m.now.Add(10 * time.Millisecond) {
		for _, n := range names {
			if !m.now.Before(m.started[n]) && m.nodes[n].State() == listener.StateDown {
				m.step(n, Start{Now: m.now})
			}
		}
		q := m.queue
		m.queue = nil
		slices.SortStableFunc(q, func(a, b msg) int { return a.at.Compare(b.at) })
		for _, x := range q {
			if m.now.Before(x.at) {
				m.queue = append(m.queue, x)
				continue
			}
			x.f()
		}
		for _, n := range names {
			if m.nodes[n].State() != listener.StateDown {
				m.step(n, Tick{Now: m.now})
			}
		}
	}
}

func (m *mesh) names() []string {
	var out []string
	for n := range m.nodes {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// assembled checks that every node is ready with every node.
func (m *mesh) assembled() {
	m.t.Helper()
	names := m.names()
	for _, n := range names {
		c := m.nodes[n]
		if c.State() != listener.StateReady || !reflect.DeepEqual(c.Members(), names) {
			m.t.Fatalf("%s: %s with %v, want ready with all %d", n, c.State(), c.Members(), len(names))
		}
		// Every member's list as this node holds it is the real one.
		for _, p := range names {
			if pr := c.peers[p]; p != n && pr.hasList && pr.listHash == MembersHash(names) && !reflect.DeepEqual(pr.list, names) {
				m.t.Fatalf("%s holds %s's list %v under the hash of all", n, p, pr.list)
			}
		}
	}
}

func (m *mesh) deltas() (applied, missed int) {
	for _, c := range m.nodes {
		a, b := c.ListStats()
		applied, missed = applied+a, missed+b
	}
	return applied, missed
}

func meshNames(n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("n%02d@h", i))
	}
	return out
}

// While a cluster forms, the members' list changes travel in pings and
// pongs: far fewer state answers than when each changed list is fetched
// whole, and the same cluster in the end. The nodes start over a second
// and messages take up to 300 ms, so lists differ for a while and
// messages cross.
func TestListDeltasSpareStateAnswers(t *testing.T) {
	names := meshNames(16)
	all := map[string]bool{}
	for _, n := range names {
		all[n] = true
	}
	for seed := int64(1); seed <= 4; seed++ {
		full := newMesh(t, seed, all, names...)
		full.spread, full.delay = time.Second, 300*time.Millisecond
		full.runFor(5 * time.Second)
		full.assembled()
		delta := newMesh(t, seed, nil, names...)
		delta.spread, delta.delay = time.Second, 300*time.Millisecond
		delta.runFor(5 * time.Second)
		delta.assembled()
		applied, missed := delta.deltas()
		t.Logf("seed %d: state answers %d whole lists, %d with deltas (%d applied, %d missed)", seed, full.states, delta.states, applied, missed)
		if applied == 0 || delta.states*10 > full.states*9 {
			t.Fatalf("seed %d: %d state answers with deltas (%d applied), %d without: want at least 10 %% fewer", seed, delta.states, applied, full.states)
		}
	}
}

// A node that takes no deltas (an older version) still assembles with
// nodes that do, and they with it: they fetch its list whole.

func TestMixedVersionsAssemble(t *testing.T) {
	names := meshNames(8)
	for seed := int64(1); seed <= 5; seed++ {
		m := newMesh(t, seed, map[string]bool{names[0]: true, names[5]: true}, names...)
		m.runFor(3 * time.Second)
		m.assembled()
		if a, _ := m.nodes[names[0]].ListStats(); a != 0 {
			t.Fatalf("the full-list node applied %d deltas", a)
		}
		if a, _ := m.deltas(); a == 0 {
			t.Fatal("no delta applied between the others")
		}
	}
}

// deltaPair: a is ready with member b; both take deltas, and a holds b's
// list [a b].
func deltaPair(t *testing.T) *Core {
	t.Helper()
	conf := cfg("a@h", 1, "a@h", "b@h")
	conf.ListDeltas = true
	c := New(conf)
	run(c, Start{Now: t0})
	run(c, NodeUp{Now: t0, Node: "b@h"})
	ab := []string{"a@h", "b@h"}
	run(c, ProbeReply{Now: t0, Node: "b@h", OTPApp: "cloister", Members: ab, Hash: MembersHash(ab), HasHash: true, Deltas: true})
	if c.State() != listener.StateReady {
		t.Fatalf("state %s", c.State())
	}
	return c
}

// b's list gained c: the pong's delta gives it, with the hash the pong
// carries, so c is dialled and nothing is fetched.
func TestDeltaGivesTheListWithoutAFetch(t *testing.T) {
	c := deltaPair(t)
	abc := []string{"a@h", "b@h", "c@h"}
	now := t0.Add(ms(600))
	fx := run(c, Pong{Now: now, Node: "b@h", Hash: MembersHash(abc), News: &ListNews{Added: []string{"c@h"}}})
	if p, d := kinds[Probe](fx), kinds[Dial](fx); len(p) != 0 || !reflect.DeepEqual(d, []Dial{{"c@h"}}) {
		t.Fatalf("%v: want a dial of c and no fetch", fx)
	}
	if a, m := c.ListStats(); a != 1 || m != 0 {
		t.Fatalf("applied %d missed %d", a, m)
	}
	if pr := c.peers["b@h"]; !reflect.DeepEqual(pr.list, abc) || !reflect.DeepEqual(pr.reported, []string{"b@h", "c@h"}) {
		t.Fatalf("b's list %v reported %v", pr.list, pr.reported)
	}
	// Then c leaves b's list: applied too, and c is no longer a target.
	fx = run(c, PingedBy{Now: now.Add(ms(10)), Node: "b@h", Hash: MembersHash([]string{"a@h", "b@h"}), News: &ListNews{Removed: []string{"c@h"}}})
	if p := kinds[Probe](fx); len(p) != 0 {
		t.Fatalf("%v: want no fetch", fx)
	}
	if c.peers["c@h"] != nil && c.peers["c@h"].gossip {
		t.Fatal("c still a dial target")
	}
}

// A delta that does not give the list of the hash it came with (it ran
// from a list other than the one we hold: crossed or lost messages) is
// not kept: the list is fetched whole, as without deltas. So is a hash we
// do not know that comes with no delta. (A delta from another base that
// still gives the right list, as set operations often do, is kept: the
// hash is what is checked.)
func TestDeltaFromAnotherBaseFallsBackToAFetch(t *testing.T) {
	abc, abcd := []string{"a@h", "b@h", "c@h"}, []string{"a@h", "b@h", "c@h", "d@h"}
	for _, tc := range []struct {
		name string
		list []string // b's list, whose hash the pong carries
		news *ListNews
	}{
		// b's delta runs from [a b c], a list we never held.
		{"stale base", abcd, &ListNews{Added: []string{"d@h"}}},
		{"wrong hash", abc, &ListNews{Added: []string{"d@h"}}},
		{"no delta", abc, &ListNews{}},
	} {
		name := tc.name
		c := deltaPair(t)
		fx := run(c, Pong{Now: t0.Add(ms(600)), Node: "b@h", Hash: MembersHash(tc.list), News: tc.news})
		if p := kinds[Probe](fx); !reflect.DeepEqual(p, []Probe{{"b@h"}}) {
			t.Fatalf("%s: %v, want a fetch of b's list", name, fx)
		}
		if a, m := c.ListStats(); a != 0 || m != 1 {
			t.Fatalf("%s: applied %d missed %d", name, a, m)
		}
		if pr := c.peers["b@h"]; pr.listHash != MembersHash([]string{"a@h", "b@h"}) {
			t.Fatalf("%s: the held list changed", name)
		}
	}
}

// News run from the list of ours the peer was last known to hold: our
// state answer, our last delta (assumed applied), or what its own news
// says it holds. A list older than the history gets no delta.
func TestNewsRunFromTheListThePeerHolds(t *testing.T) {
	c := deltaPair(t)
	ab := MembersHash([]string{"a@h", "b@h"})
	if n := c.News("b@h"); n == nil || !n.HasHave || n.Have != ab || len(n.Added)+len(n.Removed) != 0 {
		t.Fatalf("news %+v: want what we hold of b, no delta (b's holding unknown)", n)
	}
	c.Answered("b@h") // b fetched our [a b]
	run(c, NodeUp{Now: t0.Add(ms(100)), Node: "c@h"})
	abc := []string{"a@h", "b@h", "c@h"}
	run(c, ProbeReply{Now: t0.Add(ms(100)), Node: "c@h", OTPApp: "cloister", Members: abc, Hash: MembersHash(abc), HasHash: true, Deltas: true})
	if n := c.News("b@h"); !reflect.DeepEqual(n.Added, []string{"c@h"}) || len(n.Removed) != 0 {
		t.Fatalf("news %+v, want c added", n)
	}
	if n := c.News("b@h"); len(n.Added)+len(n.Removed) != 0 {
		t.Fatalf("news %+v after the delta, want none", n)
	}
	// b says it still holds [a b] (our delta was lost): from there again.
	run(c, PingedBy{Now: t0.Add(ms(200)), Node: "b@h", Hash: ab, News: &ListNews{Have: ab, HasHave: true}})
	if n := c.News("b@h"); !reflect.DeepEqual(n.Added, []string{"c@h"}) {
		t.Fatalf("news %+v, want c added again", n)
	}
	// A list older than the history: no delta.
	run(c, PingedBy{Now: t0.Add(ms(300)), Node: "b@h", Hash: ab, News: &ListNews{Have: 12345, HasHave: true}})
	if n := c.News("b@h"); len(n.Added)+len(n.Removed) != 0 {
		t.Fatalf("news %+v from an unknown list, want none", n)
	}
}

// Only a peer that said it takes news is sent any, and only by a node
// that takes them itself.
func TestNewsOnlyBetweenNodesThatTakeThem(t *testing.T) {
	for _, tc := range []struct{ ours, theirs bool }{{true, false}, {false, true}, {false, false}} {
		conf := cfg("a@h", 1, "a@h", "b@h")
		conf.ListDeltas = tc.ours
		c := New(conf)
		run(c, Start{Now: t0})
		run(c, NodeUp{Now: t0, Node: "b@h"})
		ab := []string{"a@h", "b@h"}
		run(c, ProbeReply{Now: t0, Node: "b@h", OTPApp: "cloister", Members: ab, Hash: MembersHash(ab), HasHash: true, Deltas: tc.theirs})
		if n := c.News("b@h"); n != nil {
			t.Fatalf("ours %v theirs %v: news %+v", tc.ours, tc.theirs, n)
		}
		// Its news, if any came, is not applied either.
		abc := []string{"a@h", "b@h", "c@h"}
		fx := run(c, Pong{Now: t0.Add(ms(600)), Node: "b@h", Hash: MembersHash(abc), News: &ListNews{Added: []string{"c@h"}}})
		if p := kinds[Probe](fx); len(p) != 1 {
			t.Fatalf("ours %v theirs %v: %v, want a fetch", tc.ours, tc.theirs, fx)
		}
	}
}

func TestApplyDelta(t *testing.T) {
	got, ok := applyDelta([]string{"a", "c", "e"}, []string{"d", "b", "c"}, []string{"e", "x"})
	if !ok || !reflect.DeepEqual(got, []string{"a", "b", "c", "d"}) {
		t.Fatalf("%v %v", got, ok)
	}
	if _, ok := applyDelta(nil, make([]string, 4*MaxReported+1), nil); ok {
		t.Fatal("an oversized delta was applied")
	}
}
