package core

import (
	"errors"
	"testing"
	"time"
)

// The dial policy of a first contact: the lower name dials, the higher
// one waits FirstDialGrace before dialling anyway; while this node
// assembles, a higher name not met yet is re-dialled at most
// AssemblyBackoffMax apart. Every other re-dial backs off to BackoffMax.

const (
	testGrace       = 400 * time.Millisecond
	testAssemblyCap = 200 * time.Millisecond
)

func dialCfg(self string, consensus int, sentries ...string) Config {
	c := cfg(self, consensus, sentries...)
	c.FirstDialGrace, c.AssemblyBackoffMax = testGrace, testAssemblyCap
	return c
}

// dialsTo runs c from Start for d in 10 ms ticks, failing every dial to
// peer at once, and returns when each dial to peer was asked (from t0).
func dialsTo(c *Core, peer string, d time.Duration, join bool) []time.Duration {
	var at []time.Duration
	note := func(now time.Time, fx []Effect) {
		for _, x := range kinds[Dial](fx) {
			if x.Node == peer {
				at = append(at, now.Sub(t0))
				run(c, DialDone{Now: now, Node: peer, Err: errors.New("no route to node")})
			}
		}
	}
	note(t0, run(c, Start{Now: t0}))
	if join {
		note(t0, run(c, Join{Now: t0, Node: peer}))
	}
	for now := t0.Add(10 * time.Millisecond); now.Sub(t0) <= d; now = now.Add(10 * time.Millisecond) {
		note(now, run(c, Tick{Now: now}))
	}
	return at
}

func TestFirstContactDialPolicy(t *testing.T) {
	for _, tc := range []struct {
		name      string
		cfg       Config
		peer      string
		join      bool
		firstLo   time.Duration // first dial asked within [firstLo, firstHi]
		firstHi   time.Duration
		lastGapLo time.Duration // the last gaps between dials within [lastGapLo, lastGapHi]
		lastGapHi time.Duration
	}{
		// We owe a higher name the first dial: at once, then, while
		// assembling, never more than the cap apart (the old code backed
		// off to 1 s).
		{name: "higher name while assembling", cfg: dialCfg("a@h", 2, "a@h", "b@h"), peer: "b@h",
			firstHi: 0, lastGapLo: 150 * time.Millisecond, lastGapHi: 210 * time.Millisecond},
		// A lower name dials us: the first dial waits the grace (the old
		// code dialled at once), then backs off as always.
		{name: "lower name waits the grace", cfg: dialCfg("b@h", 2, "a@h", "b@h"), peer: "a@h",
			firstLo: testGrace, firstHi: testGrace + 10*time.Millisecond, lastGapLo: 750 * time.Millisecond, lastGapHi: 1010 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			at := dialsTo(New(tc.cfg), tc.peer, 10*time.Second, tc.join)
			if len(at) < 6 {
				t.Fatalf("dials at %v: want at least 6", at)
			}
			if at[0] < tc.firstLo || at[0] > tc.firstHi {
				t.Fatalf("first dial at %v, want within [%v, %v]; dials at %v", at[0], tc.firstLo, tc.firstHi, at)
			}
			for i := len(at) - 4; i < len(at); i++ {
				if g := at[i] - at[i-1]; g < tc.lastGapLo || g > tc.lastGapHi {
					t.Fatalf("gap %v before dial %d, want within [%v, %v]; dials at %v", g, i, tc.lastGapLo, tc.lastGapHi, at)
				}
			}
		})
	}
}

// What keeps the full backoff or the prompt first dial, with the policy
// configured: a higher name once this node was ready (a dead name costs
// little), a lower name added by Join (an operator asked), a peer met
// before whose link dropped.
func TestFirstContactDialPolicyKeeps(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     Config
		peer    string
		join    bool
		firstHi time.Duration
	}{
		{name: "higher name after ready", cfg: dialCfg("a@h", 1, "a@h", "b@h"), peer: "b@h"},
		{name: "lower name added by Join", cfg: dialCfg("b@h", 1, "b@h"), peer: "a@h", join: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			at := dialsTo(New(tc.cfg), tc.peer, 10*time.Second, tc.join)
			if len(at) < 6 || at[0] > tc.firstHi {
				t.Fatalf("dials at %v: want the first at once", at)
			}
			for i := len(at) - 4; i < len(at); i++ {
				if g := at[i] - at[i-1]; g < 750*time.Millisecond || g > 1010*time.Millisecond {
					t.Fatalf("gap %v before dial %d, want the full backoff; dials at %v", g, i, at)
				}
			}
		})
	}
}

// A lower name that dials us within the grace is never dialled by us: one
// link, no crossing dials.
func TestLowerNameThatDialsFirstIsNotDialled(t *testing.T) {
	c := New(dialCfg("b@h", 2, "a@h", "b@h"))
	var dials []Dial
	dials = append(dials, kinds[Dial](run(c, Start{Now: t0}))...)
	now := t0
	for ; now.Sub(t0) < testGrace/2; now = now.Add(10 * time.Millisecond) {
		dials = append(dials, kinds[Dial](run(c, Tick{Now: now}))...)
	}
	if next := c.NextTick(); next.IsZero() || next.After(t0.Add(testGrace)) {
		t.Fatalf("next tick %v, want by the end of the grace", next.Sub(t0))
	}
	dials = append(dials, kinds[Dial](run(c, NodeUp{Now: now, Node: "a@h"}))...)
	for end := now.Add(5 * time.Second); now.Before(end); now = now.Add(10 * time.Millisecond) {
		dials = append(dials, kinds[Dial](run(c, Tick{Now: now}))...)
	}
	if len(dials) != 0 {
		t.Fatalf("dialled %v; the lower name dialled us within the grace", dials)
	}
}

// A peer met before is re-dialled with the full backoff even while this
// node assembles: the cap is for first contacts only.
func TestMetPeerKeepsTheFullBackoffWhileAssembling(t *testing.T) {
	c := New(dialCfg("a@h", 3, "a@h", "b@h", "c@h"))
	run(c, Start{Now: t0})
	run(c, NodeUp{Now: t0, Node: "b@h"})
	now := t0.Add(10 * time.Millisecond)
	run(c, NodeDown{Now: now, Node: "b@h"})
	var at []time.Time
	for end := now.Add(10 * time.Second); now.Before(end); now = now.Add(10 * time.Millisecond) {
		for _, d := range kinds[Dial](run(c, Tick{Now: now})) {
			if d.Node == "b@h" {
				at = append(at, now)
				run(c, DialDone{Now: now, Node: "b@h", Err: errors.New("no route to node")})
			}
		}
	}
	if len(at) < 6 {
		t.Fatalf("%d dials", len(at))
	}
	if g := at[len(at)-1].Sub(at[len(at)-2]); g < 750*time.Millisecond {
		t.Fatalf("last gap %v, want the full backoff", g)
	}
}

// Only a member in its flap grace needs to know whether a failed dial
// found its process gone.
func TestAwaitsGoneOnlyForAnAwayMember(t *testing.T) {
	cf := dialCfg("a@h", 2, "a@h", "b@h", "c@h")
	cf.FlapGrace = time.Second
	c := New(cf)
	run(c, Start{Now: t0})
	for _, n := range []string{"b@h", "c@h"} {
		run(c, NodeUp{Now: t0, Node: n})
		run(c, ProbeReply{Now: t0, Node: n, OTPApp: "cloister"})
	}
	if c.AwaitsGone("b@h") || c.AwaitsGone("c@h") || c.AwaitsGone("x@h") {
		t.Fatal("a connected member or an unknown name awaits gone")
	}
	run(c, NodeDown{Now: t0.Add(time.Millisecond), Node: "b@h"})
	if !c.AwaitsGone("b@h") || c.AwaitsGone("c@h") {
		t.Fatalf("after b's link dropped: b %v, c %v; want b only", c.AwaitsGone("b@h"), c.AwaitsGone("c@h"))
	}
}
