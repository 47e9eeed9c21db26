package actors

import (
	"slices"
	"testing"
	"time"

	"github.com/cloister-go/cloister/internal/core"
	"github.com/cloister-go/cloister/internal/testenv"
	"github.com/cloister-go/cloister/listener"
	"github.com/cloister-go/cloister/ring"
)

// connectIn makes peer dial us (it is not one of our sentries).
func (r *rig) connectIn(peer string) {
	r.net.mu.Lock()
	r.net.connected[peer] = true
	r.net.mu.Unlock()
	r.d.step(core.NodeUp{Now: r.now, Node: peer})
	r.settle()
}

func (r *rig) heardSnaps() []listener.Snapshot {
	r.d.disp.Flush(10 * time.Second)
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.snaps)
}

func (r *rig) acked() []string {
	r.net.mu.Lock()
	defer r.net.mu.Unlock()
	return slices.Clone(r.net.acked)
}

// A member that says it leaves is dropped at once with reason left (no
// grace, no suspicion), acknowledged only after the listener returned from
// the change, and never re-dialled as a lost member.
func TestDriverSurvivorDropsALeaverAtOnce(t *testing.T) {
	o := testOptions()
	o.Sentry = []string{"a@h"}
	o.FlapGrace = time.Second
	r := newRig(t, o, "b@h", "c@h")
	r.net.leaves["b@h"], r.net.leaves["c@h"] = true, true
	r.begin()
	r.connectIn("b@h")
	r.connectIn("c@h")
	r.until(time.Second)
	if got := r.d.core.Members(); !slices.Equal(got, []string{"a@h", "b@h", "c@h"}) {
		t.Fatalf("members %v", got)
	}
	before := len(r.heardSnaps())

	hold := make(chan struct{})
	r.mu.Lock()
	r.hold = hold
	r.mu.Unlock()
	r.net.set(r.net.leaving, "b@h", true)
	r.d.step(core.LeaveNotice{Now: r.now, Node: "b@h"})
	r.settle()
	if at := r.first("removed b@h left"); at != time.Second {
		t.Fatalf("removed (left) at %s, want at the notice (1s): %q", at, r.eventLines())
	}
	if r.count("grace b@h") != 0 || r.count("suspected b@h") != 0 {
		t.Fatalf("a leaver got a grace or a suspicion: %q", r.eventLines())
	}
	// The listener is inside the change (called, held): no
	// acknowledgement yet.
	testenv.WaitFor(t, 10*time.Second, "the listener called with the change", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.snaps) > before
	})
	r.settle()
	if a := r.acked(); len(a) != 0 {
		t.Fatalf("acknowledged %v before the listener returned", a)
	}
	r.mu.Lock()
	r.hold = nil
	r.mu.Unlock()
	close(hold)
	snaps := r.heardSnaps()
	r.settle()
	if a := r.acked(); !slices.Equal(a, []string{"b@h"}) {
		t.Fatalf("acknowledged %v, want [b@h]", a)
	}
	// The change told carries what this node gained, and nothing lost.
	var ch *listener.RingChange
	for _, s := range snaps[before:] {
		for i := range s.RingChanges {
			if ch == nil {
				ch = &s.RingChanges[i]
			} else {
				t.Fatalf("the change was told twice: %+v", snaps[before:])
			}
		}
	}
	if ch == nil || len(ch.Gained) == 0 || len(ch.Lost) != 0 {
		t.Fatalf("ring change told %+v, want gained ranges and none lost", ch)
	}
	// Exactly the keys that moved to a@h are in the gained ranges.
	snap, _ := r.c.Rings.Get("cloister")
	old := snapWith(t, []string{"a@h", "b@h", "c@h"})
	for i := 0; i < 5000; i++ {
		k := "key-" + itoa(i)
		was, _ := old.Owner(k)
		is, _ := snap.Owner(k)
		h, _ := snap.KeyHash(k)
		in := false
		for _, g := range ch.Gained {
			in = in || g.Contains(h)
		}
		if in != (was != "a@h" && is == "a@h") {
			t.Fatalf("key %s: %s -> %s, in the gained ranges: %v", k, was, is, in)
		}
	}

	// It stops: no grace, no re-dial as a lost member, no removal again.
	r.net.set(r.net.up, "b@h", false)
	r.net.set(r.net.gone, "b@h", true)
	r.net.drop("b@h")
	r.until(5 * time.Second)
	if n := r.count("dial b@h"); n != 0 {
		t.Fatalf("the leaver was dialled %d times: %q", n, r.eventLines())
	}
	if r.count("removed b@h") != 1 || r.count("grace b@h") != 0 {
		t.Fatalf("events after the leaver stopped: %q", r.eventLines())
	}
}

func snapWith(t *testing.T, members []string) *ring.View {
	t.Helper()
	var s ring.Set
	if err := s.Define("x", nil); err != nil {
		t.Fatal(err)
	}
	sn, _, err := s.Update("x", members)
	if err != nil {
		t.Fatal(err)
	}
	return sn
}

func itoa(i int) string { return time.Duration(i).String() }

// Anyone connected can send a leave notice; the named node's own answer
// decides, so a forged one changes nothing and is not acknowledged.
func TestDriverForgedLeaveNoticeIsIgnored(t *testing.T) {
	o := testOptions()
	o.Sentry = []string{"a@h", "b@h"}
	r := newRig(t, o, "b@h")
	r.net.leaves["b@h"] = true
	r.begin()
	r.until(time.Second)
	r.d.step(core.LeaveNotice{Now: r.now, Node: "b@h"})
	r.settle()
	r.until(2 * time.Second)
	r.d.disp.Flush(10 * time.Second)
	r.settle()
	if r.count("removed") != 0 || len(r.acked()) != 0 {
		t.Fatalf("a forged notice removed or acknowledged: %q, acked %v", r.eventLines(), r.acked())
	}
}

// The leaver tells only the members that take leave notices (never an
// Elixir one), hands every range over in its own listener's change, and
// its leave ends when they all acknowledged, or went away.
func TestDriverLeaverTellsGoMembersAndWaitsForThem(t *testing.T) {
	o := testOptions()
	o.Sentry = []string{"a@h", "b@h", "c@h", "e@h"}
	r := newRig(t, o, "b@h", "c@h", "e@h")
	r.net.leaves["b@h"], r.net.leaves["c@h"] = true, true // e@h: an Elixir cloister
	r.begin()
	r.until(time.Second)
	before := len(r.heardSnaps())
	done, _ := r.d.leave()
	r.settle()
	r.net.mu.Lock()
	sent := slices.Clone(r.net.leaveSent)
	r.net.mu.Unlock()
	if !slices.Equal(sent, []string{"b@h", "c@h"}) {
		t.Fatalf("leave notices sent to %v, want the Go members [b@h c@h]", sent)
	}
	snaps := r.heardSnaps()
	var lost int
	for _, s := range snaps[before:] {
		for _, c := range s.RingChanges {
			if len(c.Gained) != 0 {
				t.Fatalf("the leaver gained %v", c.Gained)
			}
			lost += len(c.Lost)
		}
		if !s.Leaving {
			t.Fatalf("snapshot of a leaving node says not leaving: %+v", s)
		}
	}
	if lost == 0 {
		t.Fatal("the leaver's listener was not told what it hands over")
	}
	if sn, _ := r.c.Rings.Get("cloister"); slices.Contains(sn.Members(), "a@h") {
		t.Fatalf("the leaver still owns keys: %v", sn.Members())
	}
	select {
	case <-done:
		t.Fatal("leave over before any acknowledgement")
	default:
	}
	r.d.step(core.LeaveAck{Now: r.now, Node: "b@h"})
	select {
	case <-done:
		t.Fatal("leave over with c@h still due")
	default:
	}
	// c@h goes away instead of acknowledging: not waited for.
	r.net.drop("c@h")
	r.settle()
	select {
	case <-done:
	default:
		t.Fatalf("leave not over: %q", r.eventLines())
	}
	if r.count("leave-done c@h") != 1 {
		t.Fatalf("events: %q", r.eventLines())
	}
	// While leaving it admits nobody and dials nobody.
	r.until(3 * time.Second)
	if sn, _ := r.c.Rings.Get("cloister"); slices.Contains(sn.Members(), "c@h") || slices.Contains(sn.Members(), "a@h") {
		t.Fatalf("ring after the leave: %v", sn.Members())
	}
}

// Join adds a peer at run time: dialled, admitted, and re-dialled like a
// listed sentry after it went away.
func TestDriverJoinDialsAndKeepsAPeer(t *testing.T) {
	o := testOptions()
	o.Sentry = []string{"a@h"}
	o.FlapGrace = 0
	r := newRig(t, o, "b@h")
	r.begin()
	r.until(500 * time.Millisecond)
	if len(r.d.core.Members()) != 1 {
		t.Fatalf("members before the join: %v", r.d.core.Members())
	}
	r.d.step(core.Join{Now: r.now, Node: "b@h"})
	r.settle()
	if got := r.d.core.Members(); !slices.Equal(got, []string{"a@h", "b@h"}) {
		t.Fatalf("members after the join: %v (%q)", got, r.eventLines())
	}
	r.net.set(r.net.up, "b@h", false)
	r.net.drop("b@h")
	r.until(time.Second)
	if len(r.d.core.Members()) != 1 {
		t.Fatalf("members after b@h went: %v", r.d.core.Members())
	}
	r.net.set(r.net.up, "b@h", true)
	r.until(3 * time.Second)
	if got := r.d.core.Members(); !slices.Equal(got, []string{"a@h", "b@h"}) {
		t.Fatalf("a joined peer was not re-dialled: %v (%q)", got, r.eventLines())
	}
}
