package core

import (
	"errors"
	"reflect"
	"testing"
	"time"
)

var errTest = errors.New("refused")

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

// reads is one link read at each of the peers.
func reads(at time.Time, peers ...string) map[string]time.Time {
	m := map[string]time.Time{}
	for _, p := range peers {
		m[p] = at
	}
	return m
}

// told: a steady pair after the first heartbeat, which tells b our hash.
func told(t *testing.T) *Core {
	t.Helper()
	c := steadyPair(t)
	now := t0.Add(ms(500))
	fx := run(c, Tick{Now: now, LinkRead: reads(now, "b@h"), Connected: []string{"b@h"}})
	if p := kinds[Ping](fx); !reflect.DeepEqual(p, []Ping{{"b@h"}}) {
		t.Fatalf("first heartbeat: %v, want one ping telling b our hash", fx)
	}
	run(c, Pong{Now: now, Node: "b@h", Hash: c.MembersHash()})
	return c
}

// A member whose link reads something every interval (traffic, or the
// keepalive of an idle link) is never pinged and never suspected; the
// same member without link reads is pinged every interval.
func TestLinkReadsReplacePings(t *testing.T) {
	c := told(t)
	for n := 2; n <= 120; n++ {
		now := t0.Add(time.Duration(n) * ms(500))
		fx := run(c, Tick{Now: now, LinkRead: reads(now.Add(-ms(250)), "b@h")})
		if len(fx) != 0 {
			t.Fatalf("at %v with the link read 250 ms before: %v, want nothing", now.Sub(t0), fx)
		}
	}
	if len(c.Suspects()) != 0 {
		t.Fatalf("suspects %v", c.Suspects())
	}
	c = told(t)
	for n := 2; n <= 6; n++ {
		now := t0.Add(time.Duration(n) * ms(500))
		fx := run(c, Tick{Now: now})
		if p := kinds[Ping](fx); !reflect.DeepEqual(p, []Ping{{"b@h"}}) {
			t.Fatalf("at %v without link reads: %v, want a ping", now.Sub(t0), fx)
		}
		run(c, Pong{Now: now, Node: "b@h", Hash: c.MembersHash()})
	}
}

// A read older than the interval is no proof: the member is pinged.
func TestStaleLinkReadFallsBackToPing(t *testing.T) {
	c := told(t)
	now := t0.Add(ms(1500))
	fx := run(c, Tick{Now: now, LinkRead: reads(now.Add(-ms(600)), "b@h")})
	if p := kinds[Ping](fx); !reflect.DeepEqual(p, []Ping{{"b@h"}}) {
		t.Fatalf("link silent for 600 ms: %v, want a ping", fx)
	}
}

// Link reads of a peer that is not a connected member change nothing.
func TestLinkReadsOfNonMembersAreIgnored(t *testing.T) {
	c := New(cfg("a@h", 1, "a@h"))
	run(c, Start{Now: t0})
	run(c, Tick{Now: t0.Add(ms(500)), LinkRead: reads(t0.Add(ms(400)), "x@h", "a@h")})
	if c.peers["x@h"] != nil || len(c.Members()) != 1 {
		t.Fatalf("a read on a non-member's link made it known: %v", c.Members())
	}
}

// When our members change, every agreeing member is pinged once with the
// new hash, traffic on its link or not: it would otherwise go on believing
// we agree. Then silence again.
func TestHashChangeIsAnnouncedOnce(t *testing.T) {
	c := New(cfg("a@h", 1, "a@h", "b@h", "c@h"))
	run(c, Start{Now: t0})
	h2 := MembersHash([]string{"a@h", "b@h"})
	run(c, NodeUp{Now: t0, Node: "b@h"})
	run(c, ProbeReply{Now: t0, Node: "b@h", OTPApp: "cloister", Members: []string{"a@h", "b@h"}, Hash: h2, HasHash: true})
	now := t0.Add(ms(500))
	run(c, Tick{Now: now, LinkRead: reads(now, "b@h")}) // tells b
	run(c, Pong{Now: now, Node: "b@h", Hash: h2})
	// c joins: our hash changes.
	run(c, NodeUp{Now: now, Node: "c@h"})
	h3 := MembersHash([]string{"a@h", "b@h", "c@h"})
	run(c, ProbeReply{Now: now, Node: "c@h", OTPApp: "cloister", Members: []string{"a@h", "b@h", "c@h"}, Hash: h3, HasHash: true})
	if c.MembersHash() != h3 {
		t.Fatal("c not admitted")
	}
	now = t0.Add(ms(1000))
	fx := run(c, Tick{Now: now, LinkRead: reads(now, "b@h", "c@h")})
	// b still has the old hash as far as we know: a ping (not a probe)
	// tells it ours; c agrees and has not been told: a ping too.
	if p, pr := kinds[Ping](fx), kinds[Probe](fx); !reflect.DeepEqual(p, []Ping{{"b@h"}, {"c@h"}}) || len(pr) != 0 {
		t.Fatalf("after our hash changed: pings %v probes %v, want b and c pinged", p, pr)
	}
	run(c, Pong{Now: now, Node: "b@h", Hash: h3})
	run(c, Pong{Now: now, Node: "c@h", Hash: h3})
	for n := 3; n <= 20; n++ {
		now := t0.Add(time.Duration(n) * ms(500))
		if fx := run(c, Tick{Now: now, LinkRead: reads(now, "b@h", "c@h")}); len(fx) != 0 {
			t.Fatalf("at %v, all agreeing and heard: %v", now.Sub(t0), fx)
		}
	}
}

// A member whose hash differs is probed for its list while we lack it,
// once per ProbeTimeout (not at every heartbeat: a state answer is two
// lists of the members), and pinged again now and then (every
// SuspectAfter) in case our ping with the hash was lost: it must not go on
// believing we agree.
func TestDifferingMemberIsReToldNowAndThen(t *testing.T) {
	c := told(t)
	other := MembersHash([]string{"a@h", "b@h", "z@h"})
	run(c, PingedBy{Now: t0.Add(ms(600)), Node: "b@h", Hash: other})
	pings, probes := 0, 0
	for n := 2; n <= 14; n++ { // 1 s … 7 s
		now := t0.Add(time.Duration(n) * ms(500))
		fx := run(c, Tick{Now: now, LinkRead: reads(now, "b@h")})
		pings += len(kinds[Ping](fx))
		probes += len(kinds[Probe](fx))
	}
	if pings != 2 || probes != 2 {
		t.Fatalf("in 6.5 s of differing lists, no answer: %d pings, %d probes; want 2 pings (every 3 s) and a probe at most every 2 s", pings, probes)
	}
}

// A frozen member stops writing: its link's last read stays where it was.
// It is suspected SuspectAfter and removed RemoveAfter after that read,
// never before, whether the driver ticks every 50 ms or only at NextTick.
func TestFrozenMemberByLinkSilence(t *testing.T) {
	for _, mode := range []string{"50ms", "NextTick"} {
		t.Run(mode, func(t *testing.T) {
			c := told(t)
			frozen := t0.Add(ms(2000))
			lastRead := frozen.Add(-ms(200)) // its last keepalive
			now := t0.Add(ms(600))
			var suspected, removed time.Time
			for now.Before(t0.Add(20*time.Second)) && removed.IsZero() {
				read := now.Add(-ms(100))
				if now.After(frozen) {
					read = lastRead
				}
				fx := run(c, Tick{Now: now, LinkRead: reads(read, "b@h")})
				if len(kinds[Suspect](fx)) > 0 {
					suspected = now
				}
				if len(kinds[Removed](fx)) > 0 {
					removed = now
				}
				// Its pings go unanswered once frozen.
				for range kinds[Ping](fx) {
					if now.Before(frozen) {
						run(c, Pong{Now: now, Node: "b@h", Hash: c.MembersHash()})
					}
				}
				if mode == "50ms" {
					now = now.Add(ms(50))
				} else {
					// The driver's clamp: at least 50 ms, at most 250 ms.
					next := c.NextTick()
					now = now.Add(min(max(next.Sub(now), ms(50)), ms(250)))
				}
			}
			if s := suspected.Sub(lastRead); s < 3*time.Second || s > 3*time.Second+ms(250) {
				t.Fatalf("suspected %v after the last read, want SuspectAfter (3s) and at most a tick later", s)
			}
			if r := removed.Sub(lastRead); r < 5*time.Second || r > 5*time.Second+ms(250) {
				t.Fatalf("removed %v after the last read, want RemoveAfter (5s) and at most a tick later", r)
			}
		})
	}
}

// NextTick: in a steady cluster, the next heartbeat; earlier deadlines
// (a suspicion, a re-dial) come first; nothing when not running.
func TestNextTick(t *testing.T) {
	c := New(cfg("a@h", 1, "a@h", "b@h"))
	if !c.NextTick().IsZero() {
		t.Fatal("not started: want zero")
	}
	c = told(t)
	now := t0.Add(ms(500))
	if got := c.NextTick(); !got.Equal(now.Add(ms(500))) {
		t.Fatalf("steady: next tick at %v, want the next heartbeat %v", got.Sub(t0), ms(1000))
	}
	// b's last sign of life was at 500 ms: with heartbeats far apart, its
	// suspicion would be the next deadline.
	c.cfg.Heartbeat, c.cfg.Reconcile = time.Hour, time.Hour
	if got := c.NextTick(); !got.Equal(now.Add(3 * time.Second)) {
		t.Fatalf("next tick at %v, want b's suspicion at %v", got.Sub(t0), ms(3500))
	}
	// b's link drops (no flap grace here): removed, and re-dialled (it is
	// a sentry) when the backoff runs out.
	run(c, NodeDown{Now: now, Node: "b@h"})
	run(c, DialDone{Now: now.Add(ms(10)), Node: "b@h", Err: errTest})
	p := c.peers["b@h"]
	if p.member || p.nextDial.IsZero() {
		t.Fatalf("b member %v, next dial %v", p.member, p.nextDial)
	}
	if got := c.NextTick(); !got.Equal(p.nextDial) {
		t.Fatalf("next tick at %v, want b's re-dial at %v", got.Sub(t0), p.nextDial.Sub(t0))
	}
}

// Members cut off at once were last heard up to half a heartbeat apart
// (each link's last keepalive): they leave in one change, none before its
// own RemoveAfter and none later than the first deadline plus half a
// heartbeat. Members last heard further apart leave one by one, each at
// its own deadline.
func TestSilentMembersLeaveTogether(t *testing.T) {
	for _, tc := range []struct {
		name     string
		gap      time.Duration // between b's and c's last reads
		together bool
	}{{"150ms apart", ms(150), true}, {"400ms apart", ms(400), false}} {
		t.Run(tc.name, func(t *testing.T) {
			all := []string{"a@h", "b@h", "c@h", "d@h"}
			c := New(cfg("a@h", 2, all...))
			run(c, Start{Now: t0})
			h := MembersHash(all)
			for _, p := range all[1:] {
				run(c, NodeUp{Now: t0, Node: p})
				run(c, ProbeReply{Now: t0, Node: p, OTPApp: "cloister", Members: all, Hash: h, HasHash: true})
			}
			if !reflect.DeepEqual(c.Members(), all) {
				t.Fatalf("members %v", c.Members())
			}
			lastB := t0.Add(ms(1000))
			lastC := lastB.Add(tc.gap)
			removed := map[string]time.Time{}
			publishes := 0
			for now := t0.Add(ms(50)); now.Before(t0.Add(10 * time.Second)); now = now.Add(ms(50)) {
				read := map[string]time.Time{"d@h": now}
				read["b@h"], read["c@h"] = now, now
				if now.After(lastB) {
					read["b@h"] = lastB
				}
				if now.After(lastC) {
					read["c@h"] = lastC
				}
				fx := run(c, Tick{Now: now, LinkRead: read})
				for _, p := range kinds[Ping](fx) { // only the live d answers
					if p.Node == "d@h" {
						run(c, Pong{Now: now, Node: "d@h", Hash: c.MembersHash()})
					}
				}
				for _, r := range kinds[Removed](fx) {
					removed[r.Node] = now
				}
				if len(kinds[Removed](fx)) > 0 {
					publishes += len(kinds[Publish](fx))
				}
			}
			rb, rc := removed["b@h"], removed["c@h"]
			if rb.IsZero() || rc.IsZero() || !removed["d@h"].IsZero() {
				t.Fatalf("removed %v, want b and c, not d", removed)
			}
			if rb.Sub(lastB) < 5*time.Second || rc.Sub(lastC) < 5*time.Second {
				t.Fatalf("removed b %v and c %v after their last reads, before RemoveAfter", rb.Sub(lastB), rc.Sub(lastC))
			}
			if tc.together {
				if !rb.Equal(rc) || publishes != 1 {
					t.Fatalf("b removed at +%v, c at +%v, %d ring changes: want one change", rb.Sub(lastB), rc.Sub(lastB), publishes)
				}
				if late := rb.Sub(lastB.Add(5 * time.Second)); late > ms(250)+ms(50) {
					t.Fatalf("b removed %v past its deadline, want at most half a heartbeat (and a tick)", late)
				}
			} else if rb.Sub(lastB) > 5*time.Second+ms(50) || rb.Equal(rc) {
				t.Fatalf("b removed %v after its last read, c at +%v: want each at its own deadline", rb.Sub(lastB), rc.Sub(lastB))
			}
		})
	}
}

// Links that closed together (a partition that rejects) end their flap
// graces in one change of the rings, none before its own FlapGrace.
func TestGracesEndingTogetherAreOneChange(t *testing.T) {
	all := []string{"a@h", "b@h", "c@h", "d@h"}
	conf := cfg("a@h", 2, all...)
	conf.FlapGrace = time.Second
	c := New(conf)
	run(c, Start{Now: t0})
	h := MembersHash(all)
	for _, p := range all[1:] {
		run(c, NodeUp{Now: t0, Node: p})
		run(c, ProbeReply{Now: t0, Node: p, OTPApp: "cloister", Members: all, Hash: h, HasHash: true})
	}
	downB, downC := t0.Add(ms(100)), t0.Add(ms(130))
	run(c, NodeDown{Now: downB, Node: "b@h"})
	run(c, NodeDown{Now: downC, Node: "c@h"})
	removed := map[string]time.Time{}
	publishes := 0
	for now := t0.Add(ms(110)); now.Before(t0.Add(3 * time.Second)); now = now.Add(ms(10)) {
		fx := run(c, Tick{Now: now, LinkRead: reads(now, "d@h")})
		for _, r := range kinds[Removed](fx) {
			removed[r.Node] = now
			publishes = len(kinds[Publish](fx))
		}
		for _, d := range kinds[Dial](fx) { // the re-dials are refused
			run(c, DialDone{Now: now, Node: d.Node, Err: errTest})
		}
	}
	rb, rc := removed["b@h"], removed["c@h"]
	if rb.IsZero() || !rb.Equal(rc) || publishes != 1 {
		t.Fatalf("b removed at %v, c at %v, %d publishes in that step: want one change", rb.Sub(t0), rc.Sub(t0), publishes)
	}
	if rc.Sub(downC) < time.Second || rb.Sub(downB) > time.Second+ms(250)+ms(10) {
		t.Fatalf("removed %v after b's link closed and %v after c's: want FlapGrace, at most half a heartbeat later", rb.Sub(downB), rc.Sub(downC))
	}
}

// With LinkGap, a member whose link reads something every LinkGap (longer
// than a heartbeat) is never pinged; frozen just before its next keepalive
// was due, and having pinged us after its last one, it is still suspected
// no sooner than SuspectAfter and removed no sooner than RemoveAfter after
// the freeze (the silence counts from the last read plus LinkGap, and an
// earlier sign of life does not pull it back), and at most LinkGap and a
// tick later. The driver ticks at NextTick (clamped as it does) or at
// least every 600 ms.
func TestLinkGapAnchorsTheSilence(t *testing.T) {
	const gap = 750 * time.Millisecond
	c := told(t)
	c.cfg.LinkGap = gap
	lastRead := t0.Add(3 * gap) // its keepalives: every 750 ms up to here
	frozen := lastRead.Add(gap - ms(50))
	now := t0.Add(ms(600))
	var suspected, removed time.Time
	pings := 0
	pinged := false
	for now.Before(t0.Add(20*time.Second)) && removed.IsZero() {
		read := now.Truncate(gap)
		if read.After(lastRead) {
			read = lastRead
		}
		var rs map[string]time.Time
		if !pinged {
			rs = reads(read, "b@h")
		}
		fx := run(c, Tick{Now: now, LinkRead: rs})
		if !pinged && read.Equal(lastRead) {
			// b's own ping, after its last keepalive and before the
			// freeze; later ticks carry no reads (unknown), so only
			// what the core kept counts
			pinged = true
			at := now
			if at.After(frozen) {
				at = frozen
			}
			run(c, PingedBy{Now: at, Node: "b@h", Hash: c.MembersHash()})
		}
		if len(kinds[Suspect](fx)) > 0 {
			suspected = now
		}
		if len(kinds[Removed](fx)) > 0 {
			removed = now
		}
		if n := len(kinds[Ping](fx)); n > 0 && now.Before(frozen) {
			pings += n
		}
		now = now.Add(min(max(c.NextTick().Sub(now), ms(50)), ms(600)))
	}
	if pings != 0 {
		t.Fatalf("%d pings to a member read every %s while it ran, want none", pings, gap)
	}
	if s := suspected.Sub(frozen); suspected.IsZero() || s < c.cfg.SuspectAfter || s > c.cfg.SuspectAfter+gap+ms(50) {
		t.Fatalf("suspected %v after the freeze, want SuspectAfter (%s) and at most %s more", s, c.cfg.SuspectAfter, gap+ms(50))
	}
	if r := removed.Sub(frozen); removed.IsZero() || r < c.cfg.RemoveAfter || r > c.cfg.RemoveAfter+gap+ms(50) {
		t.Fatalf("removed %v after the freeze, want RemoveAfter (%s) and at most %s more", r, c.cfg.RemoveAfter, gap+ms(50))
	}
}

// NextTick in a steady cluster whose members are heard on their links is
// not driven by the heartbeat: nothing is due until a member's ping would
// be (its last sign of life plus a heartbeat). Nor by reconciliation (due
// at 1.5 s here), which rides the next tick. A member that needs a ping
// (not yet told our hash) brings it back to the next heartbeat.
func TestNextTickSkipsHeartbeatsWithNothingToSend(t *testing.T) {
	c := told(t)
	c.cfg.LinkGap = 750 * time.Millisecond
	now := t0.Add(ms(1000))
	run(c, Tick{Now: now, LinkRead: reads(now, "b@h")})
	want := now.Add(c.cfg.LinkGap + c.cfg.Heartbeat)
	if got := c.NextTick(); !got.Equal(want) {
		t.Fatalf("next tick at %v, want b's ping due at %v (not the heartbeat, nor reconciliation, at %v)", got.Sub(t0), want.Sub(t0), now.Add(c.cfg.Heartbeat).Sub(t0))
	}
	c.peers["b@h"].told = 0
	if got := c.NextTick(); !got.Equal(now.Add(c.cfg.Heartbeat)) {
		t.Fatalf("b not told our hash: next tick at %v, want the heartbeat at %v", got.Sub(t0), now.Add(c.cfg.Heartbeat).Sub(t0))
	}
}
