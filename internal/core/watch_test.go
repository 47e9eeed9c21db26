package core

import (
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"
)

// watchNames: eight members n0..n7; the core under test is n0, whose
// neighbours (k = 2, the list taken as a circle) are n1, n2, n6 and n7.
func watchNames() []string {
	var ns []string
	for i := range 8 {
		ns = append(ns, fmt.Sprintf("n%d@h", i))
	}
	return ns
}

var (
	watchNeighbours = []string{"n1@h", "n2@h", "n6@h", "n7@h"}
)

func watchCfg() Config {
	ns := watchNames()
	c := cfg(ns[0], 1, ns...)
	c.LinkGap = ms(750)
	c.WatchNeighbours = 2
	return c
}

// narrowCluster is n0 in a steady cluster of eight that agree and all run
// the neighbour watch with k = 2: narrowed, at the returned time.
func narrowCluster(t *testing.T, watch int) (*Core, time.Time) {
	t.Helper()
	ns := watchNames()
	c := New(watchCfg())
	run(c, Start{Now: t0})
	h := MembersHash(ns)
	for _, n := range ns[1:] {
		run(c, NodeUp{Now: t0, Node: n})
		run(c, ProbeReply{Now: t0, Node: n, OTPApp: "cloister", Members: ns, Hash: h, HasHash: true, Leaves: true, Watch: watch})
	}
	if !reflect.DeepEqual(c.Members(), ns) {
		t.Fatalf("members %v", c.Members())
	}
	now := t0.Add(ms(500))
	fx := run(c, Tick{Now: now, LinkRead: reads(now, ns[1:]...), Connected: ns[1:]})
	for _, p := range kinds[Ping](fx) {
		run(c, Pong{Now: now, Node: p.Node, Hash: h})
	}
	now = now.Add(ms(600))
	run(c, Tick{Now: now, LinkRead: reads(now, ns[1:]...)})
	return c, now
}

// In a steady cluster that agrees, a member keeps alive and judges only
// its neighbours: the others are neither kept alive, nor pinged, nor
// suspected, however long their links stay silent.
func TestNarrowWatchKeepsAliveOnlyTheNeighbours(t *testing.T) {
	c, now := narrowCluster(t, 2)
	if got := c.KeepaliveTo(); !reflect.DeepEqual(got, watchNeighbours) {
		t.Fatalf("KeepaliveTo = %v, want the neighbours %v", got, watchNeighbours)
	}
	for range 100 {
		now = now.Add(ms(600))
		if fx := run(c, Tick{Now: now, LinkRead: reads(now.Add(-ms(100)), watchNeighbours...)}); len(fx) != 0 {
			t.Fatalf("at %v with only the neighbours heard: %v", now.Sub(t0), fx)
		}
		if next := c.NextTick(); next.Sub(now) < ms(500) {
			t.Fatalf("next tick %v after a tick: a non-neighbour's silence is a deadline", next.Sub(now))
		}
	}
	if !c.Narrow() || len(c.Suspects()) != 0 {
		t.Fatalf("narrow %v, suspects %v", c.Narrow(), c.Suspects())
	}
}

// The narrow watch needs every member to run it with the same k, to agree
// on the list, and a list longer than 2k + 1.
func TestNarrowWatchNeedsAgreement(t *testing.T) {
	if c, _ := narrowCluster(t, 0); c.Narrow() || c.KeepaliveTo() != nil {
		t.Fatal("members that do not run the neighbour watch: narrowed")
	}
	if c, _ := narrowCluster(t, 3); c.Narrow() {
		t.Fatal("members that run it with another k: narrowed")
	}
	c, now := narrowCluster(t, 2)
	// A member tells a different list: every member is watched until
	// the lists agree again.
	now = now.Add(ms(100))
	run(c, PingedBy{Now: now, Node: "n4@h", Hash: 42})
	now = now.Add(ms(500))
	run(c, Tick{Now: now, LinkRead: reads(now, watchNeighbours...)})
	if c.Narrow() || c.KeepaliveTo() != nil {
		t.Fatal("a member with another list: still narrowed")
	}
	run(c, PingedBy{Now: now, Node: "n4@h", Hash: c.MembersHash()})
	now = now.Add(ms(600))
	run(c, Tick{Now: now, LinkRead: reads(now, watchNeighbours...)})
	if !c.Narrow() {
		t.Fatal("lists agree again: not narrowed")
	}
	// Seven members or fewer with k = 2: everyone is a neighbour.
	ns := watchNames()[:5]
	c = New(cfg(ns[0], 1, ns...))
	c.cfg.WatchNeighbours = 2
	run(c, Start{Now: t0})
	for _, n := range ns[1:] {
		run(c, NodeUp{Now: t0, Node: n})
		run(c, ProbeReply{Now: t0, Node: n, OTPApp: "cloister", Members: ns, Hash: MembersHash(ns), HasHash: true, Watch: 2})
	}
	run(c, Tick{Now: t0.Add(ms(500)), LinkRead: reads(t0.Add(ms(500)), ns[1:]...)})
	if c.Narrow() {
		t.Fatal("five members, k = 2: narrowed")
	}
}

// watchRun ticks n0 every 50 ms from now until end, each link reading
// what heard says (nil: nothing new), answering pings of those heard;
// it returns when each peer was suspected and removed.
func watchRun(c *Core, now, end time.Time, heard func(n string, now time.Time) bool) (suspected, removed map[string]time.Time, sent []SendSuspect) {
	suspected, removed = map[string]time.Time{}, map[string]time.Time{}
	last := map[string]time.Time{}
	for ; now.Before(end); now = now.Add(ms(50)) {
		for _, n := range watchNames()[1:] {
			if heard(n, now) {
				last[n] = now.Add(-ms(20))
			}
		}
		lr := map[string]time.Time{}
		for n, at := range last {
			lr[n] = at
		}
		fx := run(c, Tick{Now: now, LinkRead: lr})
		for _, s := range kinds[Suspect](fx) {
			suspected[s.Node] = now
		}
		for _, r := range kinds[Removed](fx) {
			removed[r.Node] = now
		}
		sent = append(sent, kinds[SendSuspect](fx)...)
		for _, p := range kinds[Ping](fx) {
			if heard(p.Node, now) {
				run(c, Pong{Now: now, Node: p.Node, Hash: c.MembersHash()})
			}
		}
	}
	return suspected, removed, sent
}

// A frozen neighbour is suspected and removed on its own link's silence,
// as with every member watched; the suspicion is sent to every other
// member, and this node watches everyone from then on: the members it did
// not judge get a fresh window, so none of them is removed.
func TestFrozenNeighbourIsReportedToEveryMember(t *testing.T) {
	c, now := narrowCluster(t, 2)
	frozen := now.Add(ms(1000))
	victim := "n1@h"
	suspected, removed, sent := watchRun(c, now, frozen.Add(8*time.Second), func(n string, at time.Time) bool {
		// the others hear it: the neighbours always, the rest once
		// they are asked (they watch everyone after the notice)
		return n != victim || at.Before(frozen)
	})
	if s := suspected[victim].Sub(frozen); s < 3*time.Second || s > 3*time.Second+ms(800) {
		t.Fatalf("suspected %v after the freeze, want SuspectAfter (+ the link gap)", s)
	}
	if r := removed[victim].Sub(frozen); r < 5*time.Second || r > 5*time.Second+ms(800) {
		t.Fatalf("removed %v after the freeze, want RemoveAfter (+ the link gap)", r)
	}
	if len(removed) != 1 || len(suspected) != 1 {
		t.Fatalf("suspected %v, removed %v: only %s", suspected, removed, victim)
	}
	want := slices.DeleteFunc(watchNames()[1:], func(n string) bool { return n == victim })
	if len(sent) != 1 || sent[0].Node != victim || !reflect.DeepEqual(sent[0].To, want) {
		t.Fatalf("sent %+v, want one notice about %s to %v", sent, victim, want)
	}
	if d := sent[0].LastSeen.Sub(frozen); d < 0 || d > ms(750) {
		t.Fatalf("notice: last seen %v after the freeze, want within the link gap", d)
	}
	// It travels as a silence, not a time: the suspicion came at
	// suspected[victim], when the member had been silent since LastSeen.
	if want := suspected[victim].Sub(sent[0].LastSeen); sent[0].Silent != want {
		t.Fatalf("notice: silent %v, want %v (the suspicion's time minus the last read)", sent[0].Silent, want)
	}
}

// A frozen non-neighbour is reported by its neighbours: from the notice,
// this node judges it from the time reported, and removes it RemoveAfter
// after that, as they do.
func TestFrozenOtherIsRemovedFromTheNotice(t *testing.T) {
	c, now := narrowCluster(t, 2)
	victim := "n4@h"
	frozen := now.Add(ms(1000))
	lastSeen := frozen.Add(ms(500)) // its neighbour's last read + the link gap
	noticeAt := lastSeen.Add(3 * time.Second)
	// up to the notice: only the neighbours are heard
	_, removed, _ := watchRun(c, now, noticeAt, func(n string, _ time.Time) bool { return slices.Contains(watchNeighbours, n) })
	if len(removed) != 0 || !c.Narrow() {
		t.Fatalf("removed %v before any notice (narrow %v)", removed, c.Narrow())
	}
	run(c, SuspectNotice{Now: noticeAt, From: "n3@h", Node: victim, LastSeen: lastSeen})
	if c.Narrow() || c.KeepaliveTo() != nil {
		t.Fatal("a notice: still narrowed")
	}
	_, removed, sent := watchRun(c, noticeAt, noticeAt.Add(5*time.Second), func(n string, _ time.Time) bool { return n != victim })
	if r := removed[victim].Sub(lastSeen); r < 5*time.Second || r > 5*time.Second+ms(100) {
		t.Fatalf("removed %v after the reported last sign of life, want RemoveAfter", r)
	}
	if len(removed) != 1 || len(sent) != 0 {
		t.Fatalf("removed %v, sent %v: want only %s, and no notice from a non-neighbour", removed, sent, victim)
	}
	// Suspicions over: narrowed again once RemoveAfter passed.
	watchRun(c, noticeAt.Add(5*time.Second), noticeAt.Add(12*time.Second), func(n string, _ time.Time) bool { return n != victim })
	if !c.Narrow() {
		t.Fatal("not narrowed again after the removal settled")
	}
}

// A notice from a node that is not a member changes nothing.
func TestNoticeFromANonMemberIsIgnored(t *testing.T) {
	c, now := narrowCluster(t, 2)
	run(c, SuspectNotice{Now: now, From: "x@h", Node: "n4@h", LastSeen: t0})
	run(c, Tick{Now: now.Add(ms(50)), LinkRead: reads(now, watchNeighbours...)})
	if !c.Narrow() {
		t.Fatal("a stranger's notice ended the narrow watch")
	}
}

// A node cut off from everyone finds all its neighbours silent: it
// watches every member from then on, their windows counted from its
// neighbours' last signs of life, and removes everyone about when it
// removes its neighbours.
func TestCutOffNodeRemovesEveryone(t *testing.T) {
	c, now := narrowCluster(t, 2)
	cut := now.Add(ms(1000))
	_, removed, _ := watchRun(c, now, cut.Add(8*time.Second), func(n string, at time.Time) bool {
		return at.Before(cut) && slices.Contains(watchNeighbours, n)
	})
	if len(removed) != 7 {
		t.Fatalf("removed %v, want all seven", removed)
	}
	for n, at := range removed {
		if r := at.Sub(cut); r < 5*time.Second || r > 5*time.Second+ms(1000) {
			t.Errorf("%s removed %v after the cut, want RemoveAfter (+ the link gap and a batch)", n, r)
		}
	}
	if !slices.Equal(c.Members(), watchNames()[:1]) {
		t.Fatalf("members %v", c.Members())
	}
}

// A member that leaves moves the neighbour sets at once: n3, not watched
// until then, becomes n0's neighbour. It gets a fresh window when the
// watch widens, as the others do: a long silence on a link nobody kept
// alive is no sign of death.
func TestNewNeighbourGetsAFreshWindow(t *testing.T) {
	c, now := narrowCluster(t, 2)
	_, removed, _ := watchRun(c, now, now.Add(20*time.Second), func(n string, _ time.Time) bool { return slices.Contains(watchNeighbours, n) })
	now = now.Add(20 * time.Second)
	if len(removed) != 0 {
		t.Fatalf("removed %v", removed)
	}
	ns := watchNames()
	run(c, ProbeReply{Now: now, Node: "n2@h", OTPApp: "cloister", Members: ns, Hash: MembersHash(ns), HasHash: true, Leaves: true, Leaving: true, Watch: 2})
	// everyone else is heard from now on (they watch everyone too)
	// (n3 only a second later: its first keepalive or answer)
	_, removed, _ = watchRun(c, now.Add(ms(10)), now.Add(10*time.Second), func(n string, at time.Time) bool {
		return n != "n2@h" && (n != "n3@h" || !at.Before(now.Add(time.Second)))
	})
	if len(removed) != 0 {
		t.Fatalf("removed %v after n2 left, want nobody", removed)
	}
	if !reflect.DeepEqual(c.Members(), without(ns, "n2@h")) {
		t.Fatalf("members %v", c.Members())
	}
}

func without(ns []string, drop string) []string {
	return slices.DeleteFunc(slices.Clone(ns), func(n string) bool { return n == drop })
}
