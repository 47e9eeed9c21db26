package core

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/cloister-go/cloister/listener"
)

// steadyPair: a is ready with member b, whose state reply carried the same
// members hash (b answers pings).
func steadyPair(t *testing.T) *Core {
	t.Helper()
	c := New(cfg("a@h", 1, "a@h", "b@h"))
	run(c, Start{Now: t0})
	run(c, NodeUp{Now: t0, Node: "b@h"})
	h := MembersHash([]string{"a@h", "b@h"})
	run(c, ProbeReply{Now: t0, Node: "b@h", OTPApp: "cloister", Members: []string{"a@h", "b@h"}, Hash: h, HasHash: true})
	if c.MembersHash() != h || c.State() != listener.StateReady {
		t.Fatalf("state %s hash %x, want ready %x", c.State(), c.MembersHash(), h)
	}
	return c
}

func TestMembersHashIsTheRingSnapshotHash(t *testing.T) {
	// The same length-prefixed FNV-1a as ring.View.Hash; fixed values
	// so that a change of either side is noticed (peers compare them).
	if got := MembersHash([]string{"a@h", "b@h"}); got != 0xe50ffbeaebfa718c {
		t.Fatalf("MembersHash = %#x", got)
	}
	if MembersHash([]string{"ab", "c@h"}) == MembersHash([]string{"a@h", "bc"}) {
		t.Fatal("length prefix missing")
	}
}

func TestAgreeingMemberGetsPingsNotProbes(t *testing.T) {
	c := steadyPair(t)
	fx := run(c, Tick{Now: t0.Add(600 * time.Millisecond)})
	if p, pr := kinds[Ping](fx), kinds[Probe](fx); !reflect.DeepEqual(p, []Ping{{"b@h"}}) || len(pr) != 0 {
		t.Fatalf("pings %v probes %v, want one ping and no probe", p, pr)
	}
}

func TestPeerWithoutHashIsProbedAsBefore(t *testing.T) {
	c := New(cfg("a@h", 1, "a@h", "b@h"))
	run(c, Start{Now: t0})
	run(c, NodeUp{Now: t0, Node: "b@h"})
	run(c, ProbeReply{Now: t0, Node: "b@h", OTPApp: "cloister", Members: []string{"a@h", "b@h"}}) // an Elixir peer
	for ms := 500; ms <= 3000; ms += 500 {
		now := t0.Add(time.Duration(ms) * time.Millisecond)
		fx := run(c, Tick{Now: now})
		if len(kinds[Ping](fx)) != 0 || len(kinds[Probe](fx)) != 1 {
			t.Fatalf("at %dms: %v, want one probe and no ping", ms, fx)
		}
		run(c, ProbeReply{Now: now, Node: "b@h", OTPApp: "cloister", Members: []string{"a@h", "b@h"}})
	}
}

func TestPingFromMemberCountsAsHeartbeat(t *testing.T) {
	c := steadyPair(t)
	h := c.MembersHash()
	// b pings us every interval, just before our tick: we never ping b and
	// never suspect it.
	for ms := 500; ms <= 20000; ms += 500 {
		now := t0.Add(time.Duration(ms) * time.Millisecond)
		if fx := run(c, PingedBy{Now: now.Add(-100 * time.Millisecond), Node: "b@h", Hash: h}); len(fx) != 0 {
			t.Fatalf("ping from an agreeing member gave %v", fx)
		}
		fx := run(c, Tick{Now: now})
		if len(kinds[Ping](fx))+len(kinds[Probe](fx))+len(kinds[Suspect](fx)) != 0 {
			t.Fatalf("at %dms: %v, want nothing", ms, fx)
		}
	}
}

func TestHashMismatchFetchesTheList(t *testing.T) {
	c := steadyPair(t)
	now := t0.Add(600 * time.Millisecond)
	run(c, Tick{Now: now})
	fx := run(c, Pong{Now: now, Node: "b@h", Hash: MembersHash([]string{"a@h", "b@h", "c@h"})})
	if p := kinds[Probe](fx); !reflect.DeepEqual(p, []Probe{{"b@h"}}) {
		t.Fatalf("after a pong with another hash: %v, want a probe of b", fx)
	}
	// Its list names c: dialled, as with every probe answer.
	fx = run(c, ProbeReply{Now: now, Node: "b@h", OTPApp: "cloister", Members: []string{"a@h", "b@h", "c@h"},
		Hash: MembersHash([]string{"a@h", "b@h", "c@h"}), HasHash: true})
	if d := kinds[Dial](fx); !reflect.DeepEqual(d, []Dial{{"c@h"}}) {
		t.Fatalf("dials %v, want c", d)
	}
	// A ping with another hash does the same, one probe at a time.
	c = steadyPair(t)
	other := MembersHash([]string{"a@h", "b@h", "d@h"})
	fx = run(c, PingedBy{Now: now, Node: "b@h", Hash: other})
	fx = append(fx, run(c, PingedBy{Now: now.Add(10 * time.Millisecond), Node: "b@h", Hash: other})...)
	if p := kinds[Probe](fx); len(p) != 1 {
		t.Fatalf("two pings with another hash: %v, want one probe", fx)
	}
}

// A frozen member answers no ping and sends none: suspected at
// SuspectAfter and removed at RemoveAfter, as with probes.
func TestSilentPingedMemberIsSuspectedThenRemoved(t *testing.T) {
	c := steadyPair(t)
	var suspected, removed time.Duration
	for ms := 50; ms <= 6000 && removed == 0; ms += 50 {
		d := time.Duration(ms) * time.Millisecond
		fx := run(c, Tick{Now: t0.Add(d)})
		if len(kinds[Suspect](fx)) > 0 && suspected == 0 {
			suspected = d
		}
		if len(kinds[Removed](fx)) > 0 {
			removed = d
		}
	}
	if suspected != 3*time.Second || removed != 5*time.Second {
		t.Fatalf("suspected at %v, removed at %v; want 3s and 5s", suspected, removed)
	}
}

// A ping from a peer that is not a member in good standing is a cloister
// asking: it is probed back (it may be joining), as for ProbedBy.
func TestPingFromNonMemberIsProbedBack(t *testing.T) {
	c := New(cfg("a@h", 1, "a@h"))
	run(c, Start{Now: t0})
	fx := run(c, PingedBy{Now: t0, Node: "x@h", Hash: 42})
	if p := kinds[Probe](fx); !reflect.DeepEqual(p, []Probe{{"x@h"}}) {
		t.Fatalf("%v, want a probe of x", fx)
	}
}

// A peer whose Monitor was not registered yet when our probe reached it
// never answers that probe; when its Monitor asks us, we probe it back
// probeBackEvery later rather than after ProbeTimeout (assembly waited
// for it). Usually our probe was not lost: its answer follows the peer's
// call on the same link and cancels the second probe.
func TestProbedByWhileOurProbeIsOutstandingProbesBack(t *testing.T) {
	for _, answered := range []bool{false, true} {
		c := New(cfg("a@h", 2, "a@h", "b@h"))
		run(c, Start{Now: t0})
		if p := kinds[Probe](run(c, NodeUp{Now: t0, Node: "b@h"})); len(p) != 1 {
			t.Fatalf("probes on NodeUp %v", p)
		}
		asked := t0.Add(150 * time.Millisecond)
		fx := run(c, ProbedBy{Now: asked, Node: "b@h"})
		if answered {
			fx = append(fx, run(c, ProbeReply{Now: asked.Add(ms(20)), Node: "b@h", OTPApp: "cloister",
				Members: []string{"a@h", "b@h"}, Hash: MembersHash([]string{"a@h", "b@h"}), HasHash: true})...)
		}
		if next := c.NextTick(); next.After(asked.Add(c.probeBackEvery())) {
			t.Fatalf("next tick at %v, want by the probe back", next.Sub(t0))
		}
		fx = append(fx, run(c, Tick{Now: asked.Add(c.probeBackEvery() - time.Millisecond)})...)
		if p := kinds[Probe](fx); len(p) != 0 {
			t.Fatalf("answered %v: %v before probeBackEvery, want no probe", answered, fx)
		}
		fx = run(c, Tick{Now: asked.Add(c.probeBackEvery())})
		want := []Probe{{"b@h"}}
		if answered {
			want = nil
		}
		if p := kinds[Probe](fx); !reflect.DeepEqual(p, want) {
			t.Fatalf("answered %v: %v, want probes %v", answered, fx, want)
		}
	}
}

// During an assembly every list changes: after each change of ours we
// ping the members, and each pong with a hash other than ours used to
// fetch the member's list again, even the list its last answer brought
// (a state call and N names per member and per change). A list already
// known by its hash is not fetched again; a new one is.
func TestKnownListIsNotFetchedAgain(t *testing.T) {
	c := steadyPair(t)
	abc := []string{"a@h", "b@h", "c@h"}
	h3 := MembersHash(abc)
	now := t0.Add(600 * time.Millisecond)
	run(c, Tick{Now: now})
	if p := kinds[Probe](run(c, Pong{Now: now, Node: "b@h", Hash: h3})); len(p) != 1 {
		t.Fatalf("a new list: probes %v, want one", p)
	}
	fx := run(c, ProbeReply{Now: now, Node: "b@h", OTPApp: "cloister", Members: abc, Hash: h3, HasHash: true})
	if d := kinds[Dial](fx); !reflect.DeepEqual(d, []Dial{{"c@h"}}) {
		t.Fatalf("dials %v, want c", d)
	}
	// c is not connected yet, so our hash still differs from b's. Later
	// pongs and pings from b with the list we have: nothing to fetch.
	for i, at := range []time.Duration{2 * time.Second, 4 * time.Second} {
		now := t0.Add(at)
		fx := run(c, Pong{Now: now, Node: "b@h", Hash: h3})
		fx = append(fx, run(c, PingedBy{Now: now.Add(time.Millisecond), Node: "b@h", Hash: h3})...)
		if p := kinds[Probe](fx); len(p) != 0 {
			t.Fatalf("round %d: the known list was fetched again: %v", i, fx)
		}
	}
	// b's list changes again: fetched.
	h4 := MembersHash([]string{"a@h", "b@h", "c@h", "d@h"})
	if p := kinds[Probe](run(c, Pong{Now: t0.Add(5 * time.Second), Node: "b@h", Hash: h4})); len(p) != 1 {
		t.Fatalf("another new list: probes %v, want one", p)
	}
}

// A member removed as gone (its process is dead) is lost by every member
// linked to it: the survivors' lists still agree, and a member that knew
// our list is not pinged to be told the new one. One whose list differed
// is told as before, and a member whose list then differs says so itself.
func TestGoneRemovalTellsNoAgreeingMember(t *testing.T) {
	conf := cfg("a@h", 1, "a@h", "b@h", "c@h", "d@h")
	conf.FlapGrace = time.Second
	c := New(conf)
	run(c, Start{Now: t0})
	all := []string{"a@h", "b@h", "c@h", "d@h"}
	h, without := MembersHash(all), MembersHash([]string{"a@h", "b@h", "d@h"})
	hashes := map[string]uint64{"b@h": h, "c@h": h, "d@h": without} // d's list differs
	for _, n := range all[1:] {
		run(c, NodeUp{Now: t0, Node: n})
		run(c, ProbeReply{Now: t0, Node: n, OTPApp: "cloister", Members: all, Hash: hashes[n], HasHash: true})
	}
	// Every member is told our list by a ping.
	now := t0.Add(600 * time.Millisecond)
	if p := kinds[Ping](run(c, Tick{Now: now})); len(p) != 3 {
		t.Fatalf("pings %v, want one to each member", p)
	}
	for _, n := range all[1:] {
		run(c, Pong{Now: now, Node: n, Hash: hashes[n]})
	}
	// c is killed: its link drops and the re-dial proves it gone.
	now = now.Add(100 * time.Millisecond)
	if fx := run(c, NodeDown{Now: now, Node: "c@h"}); len(kinds[Dial](fx)) != 1 {
		t.Fatalf("no re-dial of the lost member: %v", fx)
	}
	fx := run(c, DialDone{Now: now, Node: "c@h", Err: errors.New("refused"), Gone: true})
	if r := kinds[Removed](fx); len(r) != 1 || r[0].Reason != listener.RemovedGone {
		t.Fatalf("removals %v, want c gone", r)
	}
	// The next heartbeats, both links heard: only d, which did not know
	// our list, is pinged.
	for _, ms := range []int{1300, 1900} {
		now = t0.Add(time.Duration(ms) * time.Millisecond)
		fx = run(c, Tick{Now: now, LinkRead: map[string]time.Time{"b@h": now, "d@h": now}})
		want := []Ping{{"d@h"}}
		if ms > 1300 {
			want = nil
		}
		if p := kinds[Ping](fx); !reflect.DeepEqual(p, want) {
			t.Fatalf("at %dms pings %v, want %v", ms, p, want)
		}
		if ms == 1300 {
			run(c, Pong{Now: now, Node: "d@h", Hash: c.MembersHash()})
		}
	}
	// b's list turned out otherwise: its ping says so, and it is fetched.
	fx = run(c, PingedBy{Now: now, Node: "b@h", Hash: MembersHash([]string{"a@h", "b@h"})})
	if len(kinds[Probe](fx)) != 1 {
		t.Fatalf("a differing hash from b: %v, want its list fetched", fx)
	}
}

// A member proven gone is re-dialled at the longest backoff: its survivors'
// re-dials (an EPMD lookup each) would otherwise follow the removal within
// tens of milliseconds, while other survivors still notice it.
func TestGoneMemberIsRedialledAtTheLongestBackoff(t *testing.T) {
	conf := cfg("a@h", 1, "a@h", "b@h")
	conf.FlapGrace = time.Second
	c := New(conf)
	run(c, Start{Now: t0})
	run(c, NodeUp{Now: t0, Node: "b@h"})
	run(c, ProbeReply{Now: t0, Node: "b@h", OTPApp: "cloister", Members: []string{"a@h", "b@h"}})
	gone := t0.Add(time.Second)
	run(c, NodeDown{Now: gone, Node: "b@h"})
	run(c, DialDone{Now: gone, Node: "b@h", Err: errors.New("refused"), Gone: true})
	first := time.Duration(0)
	for at := gone; at.Before(gone.Add(2 * conf.BackoffMax)); at = at.Add(50 * time.Millisecond) {
		if len(kinds[Dial](run(c, Tick{Now: at}))) > 0 {
			first = at.Sub(gone)
			break
		}
	}
	if least := time.Duration(float64(conf.BackoffMax) * BackoffJitterMin); first < least {
		t.Fatalf("a member proven gone re-dialled %s after, want at least %s", first, least)
	}
}

// A gone member known only from the members' lists (not a sentry) is not
// re-dialled once the survivors' lists agree without it: the members that
// agreed with us are taken to hold our new list, which no longer names it.
func TestGoneGossipedMemberIsForgotten(t *testing.T) {
	conf := cfg("a@h", 1, "a@h", "b@h")
	conf.FlapGrace = time.Second
	c := New(conf)
	run(c, Start{Now: t0})
	all := []string{"a@h", "b@h", "c@h"}
	h := MembersHash(all)
	for _, n := range all[1:] {
		run(c, NodeUp{Now: t0, Node: n})
		run(c, ProbeReply{Now: t0, Node: n, OTPApp: "cloister", Members: all, Hash: h, HasHash: true})
	}
	now := t0.Add(600 * time.Millisecond)
	run(c, Tick{Now: now})
	for _, n := range all[1:] {
		run(c, Pong{Now: now, Node: n, Hash: h})
	}
	now = now.Add(100 * time.Millisecond)
	run(c, NodeDown{Now: now, Node: "c@h"})
	run(c, DialDone{Now: now, Node: "c@h", Err: errors.New("refused"), Gone: true})
	for end := now.Add(3 * conf.BackoffMax); now.Before(end); now = now.Add(50 * time.Millisecond) {
		fx := run(c, Tick{Now: now, LinkRead: map[string]time.Time{"b@h": now}})
		for _, d := range kinds[Dial](fx) {
			t.Fatalf("at %s: %v re-dialled, gossiped by b's list from before the removal", now.Sub(t0), d)
		}
	}
}
