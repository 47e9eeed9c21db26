// Package failures tests how a cluster of node processes lives through
// frozen nodes, killed nodes and network cuts (issue 5), and measures how
// fast it notices and heals. This test process starts no Ergo node: the
// nodes are `cloister node` processes driven by cloistertest, and the cuts
// are made by cloistertest's proxies (see cloistertest/faults.go).
package failures

import (
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cloister-go/cloister/cloistertest"
	"github.com/cloister-go/cloister/internal/localcluster"
	"github.com/cloister-go/cloister/internal/testenv"
	"github.com/cloister-go/cloister/listener"
)

// The defaults the nodes run with (cloister.DefaultOptions), for the bounds
// the configuration implies.
const (
	defHeartbeat   = 500 * time.Millisecond
	defRemoveAfter = 5 * time.Second
	defFlapGrace   = time.Second
	defSuspect     = 3 * time.Second
)

// Generous timeouts for waiting (not bounds on what is measured).
const (
	formWait   = 30 * time.Second
	removeWait = 10 * time.Second
	healWait   = 10 * time.Second
)

func startAll(t *testing.T, h *cloistertest.Harness, ns []string, consensus int, args ...string) []*cloistertest.Node {
	t.Helper()
	var nodes []*cloistertest.Node
	for _, n := range ns {
		node, err := h.Start(cloistertest.Spec{Name: n, Sentry: ns, Consensus: consensus, Args: args})
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, node)
	}
	return nodes
}

// converged waits until every node is ready with exactly the members want
// and the same ring hash, and returns when that held.
func converged(t *testing.T, nodes []*cloistertest.Node, want []string, timeout time.Duration) time.Time {
	t.Helper()
	var last string
	ok := testenv.Poll(timeout, func() bool {
		ok := true
		var hash uint64
		var views []string
		for i, n := range nodes {
			s, err := n.Status()
			if err != nil {
				ok = false
				views = append(views, n.Name+": "+err.Error())
				continue
			}
			views = append(views, fmt.Sprintf("%s: %s %v", n.Name, s.State, s.Members))
			r := s.Rings["cloister"]
			if !s.Ready() || !reflect.DeepEqual(s.Members, want) || !reflect.DeepEqual(r.Members, want) {
				ok = false
			}
			if i == 0 {
				hash = r.Hash
			} else if r.Hash != hash {
				ok = false
			}
		}
		last = strings.Join(views, "; ")
		return ok
	})
	if !ok {
		t.Fatalf("not converged on %v within %s: %s", want, timeout, last)
	}
	at := time.Now()
	// So that a "now" taken after this is after every event of the
	// convergence.
	for _, n := range nodes {
		if err := n.CaughtUp(10 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	return at
}

// steady checks, until the moment the configuration says a wrong
// decision would have shown, that every node stays ready with exactly
// want, and at that moment suspects nobody. It replaces a fixed "nothing
// happened for X" sleep: the window ends where the configuration implies,
// and the nodes are watched all along it, not once at its end. inGrace:
// a member whose link was lost is listed as suspected during its flap
// grace, as it should be; otherwise nobody may be suspected at any time.
// (The fine-grained timing of these decisions is the driver's tests', on
// a fake clock, see actors/monitor_driver_test.go.)
func steady(t *testing.T, nodes []*cloistertest.Node, want []string, until time.Time, why string, inGrace bool) {
	t.Helper()
	var bad string
	check := func(suspects bool) bool {
		for _, n := range nodes {
			s, err := n.Status()
			if err != nil {
				continue // a slow answer on a loaded machine is no change; the events are checked after
			}
			if !s.Ready() || !reflect.DeepEqual(s.Members, want) || (suspects && len(s.Suspects) != 0) {
				bad = fmt.Sprintf("%s: %s, members %v, suspects %v", n.Name, s.State, s.Members, s.Suspects)
				return false
			}
		}
		return true
	}
	if !testenv.HoldsUntil(until, func() bool { return check(!inGrace) }) || !check(true) {
		t.Fatalf("%s: %s", why, bad)
	}
	for _, n := range nodes {
		if err := n.CaughtUp(10 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
}

func without(ns []string, drop ...string) []string {
	var out []string
	for _, n := range ns {
		keep := true
		for _, d := range drop {
			keep = keep && n != d
		}
		if keep {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// waitSuspected polls /status until n lists who among its suspects.
func waitSuspected(n *cloistertest.Node, who string, timeout time.Duration) (time.Time, error) {
	_, err := n.WaitStatus(timeout, who+" suspected", func(s listener.Snapshot) bool {
		for _, x := range s.Suspects {
			if x == who {
				return true
			}
		}
		return false
	})
	return time.Now(), err
}

// churn counts the ready → rehashing changes a node's listener heard
// after a moment.
func churn(n *cloistertest.Node, after time.Time) int {
	c := 0
	for _, e := range n.Events() {
		if e.Event == "state" && e.From == "ready" && e.To == "rehashing" && !e.Seen.Before(after) {
			c++
		}
	}
	return c
}

// transitionsSince lists "from>to" for the state changes a node's
// listener heard after a moment.
func transitionsSince(n *cloistertest.Node, after time.Time) []string {
	var out []string
	for _, e := range n.Events() {
		if e.Event == "state" && !e.Seen.Before(after) {
			out = append(out, e.From+">"+e.To)
		}
	}
	return out
}

// detection is one heartbeat configuration of the frozen-peer test.
type detection struct {
	heartbeat, suspect, remove time.Duration
}

func (d detection) args() []string {
	return []string{"-heartbeat", d.heartbeat.String(), "-suspect-after", d.suspect.String(), "-remove-after", d.remove.String()}
}

// A frozen member is suspected and removed when the configuration says,
// not merely "within 10 s": never before SuspectAfter / RemoveAfter (less
// the heartbeat: the last answer may be that much older than the freeze),
// removed within RemoveAfter plus a few heartbeats. Run with the defaults
// and with everything about half as long, so that a detector that ignored
// its configuration, or changed a default, fails one of the two.
func TestFrozenPeerIsRemovedAndRejoinsAfterThaw(t *testing.T) {
	for _, d := range []detection{
		{heartbeat: 500 * time.Millisecond, suspect: 3 * time.Second, remove: 5 * time.Second}, // the defaults
		{heartbeat: 250 * time.Millisecond, suspect: 1500 * time.Millisecond, remove: 2500 * time.Millisecond},
	} {
		t.Run(fmt.Sprintf("remove-after=%s", d.remove), func(t *testing.T) { frozenPeer(t, d) })
	}
}

func frozenPeer(t *testing.T, d detection) {
	h := cloistertest.NewT(t)
	ns := localcluster.Names("frozen", 3)
	nodes := startAll(t, h, ns, 2, d.args()...)
	converged(t, nodes, ns, formWait)

	// The bounds the configuration implies. The last answer before the
	// freeze is at most a heartbeat (plus a tick of the 50 ms loop) older
	// than the freeze; after the deadline, the removal waits for the next
	// tick, and a busy machine delays the node a little.
	early := d.heartbeat + 50*time.Millisecond
	late := 4 * d.heartbeat
	victim, survivors := nodes[2], nodes[:2]
	frozenAt := time.Now()
	thaw := freeze(t, victim)
	for _, n := range survivors {
		at, err := waitSuspected(n, victim.Name, d.remove+removeWait)
		if err != nil {
			t.Fatal(err)
		}
		after := at.Sub(frozenAt)
		t.Logf("timing: %s suspected the frozen %s after %s (SuspectAfter %s)", n.Name, victim.Name, after.Round(10*time.Millisecond), d.suspect)
		// polled: the poll comes after the fact, so only the lower bound
		if after < d.suspect-early {
			t.Errorf("%s suspected %s after %s, before SuspectAfter %s", n.Name, victim.Name, after, d.suspect)
		}
	}
	for _, n := range survivors {
		// The listener is told: ready → rehashing without the frozen node.
		e, err := n.WaitFor(d.remove+removeWait, "removal of "+victim.Name, func(e cloistertest.NodeEvent) bool {
			return e.Event == "state" && e.From == "ready" && e.To == "rehashing" &&
				!e.Seen.Before(frozenAt) && reflect.DeepEqual(e.Snapshot.Members, ns[:2])
		})
		if err != nil {
			t.Fatal(err)
		}
		// At: when the node printed the event, on this machine's clock
		after := time.Unix(0, e.At).Sub(frozenAt)
		t.Logf("timing: %s removed the frozen %s after %s (RemoveAfter %s)", n.Name, victim.Name, after.Round(10*time.Millisecond), d.remove)
		if after < d.remove-early {
			t.Errorf("%s removed %s after %s, before RemoveAfter %s", n.Name, victim.Name, after, d.remove)
		}
		if after > d.remove+late {
			t.Errorf("%s removed %s after %s, later than RemoveAfter %s + %s", n.Name, victim.Name, after, d.remove, late)
		}
	}
	converged(t, survivors, ns[:2], removeWait)
	// Frozen past the removal: the survivors have closed their links to
	// it (the removal disconnects), so the thawed node finds both gone.
	for _, n := range survivors {
		if _, err := n.WaitStatus(removeWait, "links to "+victim.Name+" closed", func(s listener.Snapshot) bool {
			return !slices.Contains(s.Connected, victim.Name)
		}); err != nil {
			t.Fatal(err)
		}
	}
	thawAt := time.Now()
	if err := thaw(); err != nil {
		t.Fatal(err)
	}
	at := converged(t, nodes, ns, healWait)
	t.Logf("timing: %s rejoined, all rings identical, %s after the thaw", victim.Name, at.Sub(thawAt).Round(10*time.Millisecond))
	// The thawed node lost both links at once (its peers had closed them)
	// and got them back within its flap grace: its rings never changed,
	// not until its grace would have ended either.
	steady(t, nodes, ns, thawAt.Add(defFlapGrace+4*d.heartbeat), "after the thaw", true)
	if c := churn(victim, thawAt); c != 0 {
		t.Errorf("the thawed node rehashed %d times: %v", c, victim.Transitions())
	}
	for _, n := range survivors {
		// Re-admitting the thawed node is one rehash, and only one.
		if c := churn(n, thawAt); c != 1 {
			t.Errorf("%s rehashed %d times after the thaw, want 1: %v", n.Name, c, n.Transitions())
		}
	}
}

func TestKilledPeerIsRemoved(t *testing.T) {
	h := cloistertest.NewT(t)
	ns := localcluster.Names("killed", 3)
	nodes := startAll(t, h, ns, 2)
	converged(t, nodes, ns, formWait)
	killedAt := time.Now()
	nodes[1].Kill()
	for _, n := range []*cloistertest.Node{nodes[0], nodes[2]} {
		e, err := n.WaitTransition(removeWait, "ready", "rehashing", killedAt)
		if err != nil {
			t.Fatal(err)
		}
		after := time.Unix(0, e.At).Sub(killedAt)
		t.Logf("timing: %s removed the killed node after %s", n.Name, after.Round(10*time.Millisecond))
		// A re-dial proves it gone at once; at the latest, its flap
		// grace ends: never the heartbeat's RemoveAfter.
		if after > defFlapGrace+4*defHeartbeat {
			t.Errorf("%s removed the killed node after %s, past FlapGrace %s + %s", n.Name, after, defFlapGrace, 4*defHeartbeat)
		}
	}
	converged(t, []*cloistertest.Node{nodes[0], nodes[2]}, without(ns, ns[1]), removeWait)
	restartAt := time.Now()
	if err := nodes[1].Restart(); err != nil {
		t.Fatal(err)
	}
	at := converged(t, nodes, ns, formWait)
	t.Logf("timing: restarted node back in every ring %s after its restart", at.Sub(restartAt).Round(10*time.Millisecond))
}

// After a kill, the survivors' lists agree without telling each other:
// each lost its link to the dead process and removed it as gone. So the
// removal sends no heartbeat ping between survivors that agreed before it
// (at N = 25 those were some 550 pings and pongs right after the removal,
// on the CPU of survivors still noticing it). Counted on the survivors'
// debug logs: no more pings after the kill than in as long a window
// before it.
func TestKilledPeerCostsNoPingsBetweenSurvivors(t *testing.T) {
	h := cloistertest.NewT(t)
	ns := localcluster.Names("quietkill", 4)
	var nodes []*cloistertest.Node
	for _, n := range ns {
		node, err := h.Start(cloistertest.Spec{Name: n, Sentry: ns, Consensus: 2, Env: []string{"CLOISTER_DEBUG=true"}})
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, node)
	}
	converged(t, nodes, ns, formWait)
	// The pings that told each change of the assembly are over.
	window := 4 * defHeartbeat
	time.Sleep(window)
	before := time.Now()
	time.Sleep(window)
	killedAt := time.Now()
	nodes[1].Kill()
	survivors := []*cloistertest.Node{nodes[0], nodes[2], nodes[3]}
	for _, n := range survivors {
		if _, err := n.WaitTransition(removeWait, "ready", "rehashing", killedAt); err != nil {
			t.Fatal(err)
		}
	}
	converged(t, survivors, without(ns, ns[1]), removeWait)
	time.Sleep(time.Until(killedAt.Add(window)))
	quiet, after := 0, 0
	for _, n := range survivors {
		q, a := pingsIn(t, n, before, killedAt), pingsIn(t, n, killedAt, killedAt.Add(window))
		t.Logf("%s pinged %d times in %s before the kill, %d times after", n.Name, q, window, a)
		quiet, after = quiet+q, after+a
	}
	if after > quiet {
		t.Errorf("the survivors were pinged %d times in the %s after the kill, %d times in as long before it: the removal was told", after, window, quiet)
	}
}

// pingsIn counts the heartbeat pings node n took from [from, to), read
// from its debug log (CLOISTER_DEBUG: every core event, timestamped).
func pingsIn(t *testing.T, n *cloistertest.Node, from, to time.Time) int {
	t.Helper()
	count := 0
	for _, line := range strings.Split(n.LogTail(), "\n") {
		i := strings.Index(line, " core.PingedBy ")
		if i < 0 {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		at, err := time.ParseInLocation("2006/01/02 15:04:05.000000", f[0]+" "+f[1], time.Local)
		if err != nil {
			t.Fatalf("%s: a log line without its time: %q", n.Name, line)
		}
		if !at.Before(from) && at.Before(to) {
			count++
		}
	}
	return count
}

// A link that resets while both processes live (a NAT or conntrack reset,
// a switch failover) and comes back within the flap grace churns nobody's
// ring: the member stays in while it is re-dialled. (A killed node is
// another matter: a re-dial that proves it gone removes it at once.)
// Repeated flaps are the driver's (actors TestDriverRepeatedFlapsKeepTheRings);
// here one reset on real processes.
func TestLinkFlapDoesNotChurnTheRings(t *testing.T) {
	h := cloistertest.NewT(t)
	ns := localcluster.Names("flap", 3)
	net, err := h.Network(ns...)
	if err != nil {
		t.Fatal(err)
	}
	nodes := startAll(t, h, ns, 2)
	converged(t, nodes, ns, formWait)
	at := time.Now()
	// Both links of node 2 reset, and are refused for 300 ms.
	if err := net.Partition(cloistertest.Reject, ns[:2], ns[2:]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // the fault itself: refused for 300 ms
	net.HealAll()
	converged(t, nodes, ns, formWait)
	// Past the flap grace the reset started, and a few heartbeats.
	steady(t, nodes, ns, at.Add(defFlapGrace+4*defHeartbeat), "after a 300 ms link reset", true)
	for _, n := range nodes {
		if c := churn(n, at); c != 0 {
			t.Errorf("%s rehashed %d times for a 300 ms link reset: %v", n.Name, c, n.Transitions())
		}
	}
}

func TestPartitionEachSideKeepsItsViewAndHeals(t *testing.T) {
	for _, mode := range []cloistertest.CutMode{cloistertest.Drop, cloistertest.Reject} {
		t.Run(mode.String(), func(t *testing.T) {
			h := cloistertest.NewT(t)
			ns := localcluster.Names("part_"+mode.String(), 3)
			net, err := h.Network(ns...)
			if err != nil {
				t.Fatal(err)
			}
			nodes := startAll(t, h, ns, 2)
			converged(t, nodes, ns, formWait)

			// {A, B} | {C} with consensus 2: C is alone, below consensus.
			major, minor := nodes[:2], nodes[2]
			cutAt := time.Now()
			if err := net.Partition(mode, ns[:2], ns[2:]); err != nil {
				t.Fatal(err)
			}
			e, err := minor.WaitTransition(removeWait+5*time.Second, "ready", "rehashing", cutAt)
			if err != nil {
				t.Fatal(err)
			}
			after := time.Unix(0, e.At).Sub(cutAt)
			t.Logf("timing (%s): the minority side went rehashing after %s", mode, after.Round(10*time.Millisecond))
			// What the configuration implies: a dropping cut is noticed
			// only by the heartbeat (RemoveAfter), a rejecting one by the
			// links closing, then the flap grace.
			lo, hi := defRemoveAfter-defHeartbeat-50*time.Millisecond, defRemoveAfter+4*defHeartbeat
			if mode == cloistertest.Reject {
				// the proxy's close is seen at once or by a failed
				// probe (2 heartbeats), then the grace runs
				lo, hi = defFlapGrace-50*time.Millisecond, defFlapGrace+6*defHeartbeat
			}
			if after < lo || after > hi {
				t.Errorf("%s: the minority went rehashing after %s, want %s..%s", mode, after, lo, hi)
			}
			s, err := minor.WaitStatus(removeWait, "alone", func(s listener.Snapshot) bool {
				return reflect.DeepEqual(s.Members, ns[2:]) && s.State == "rehashing"
			})
			if err != nil {
				t.Fatal(err)
			}
			// Below consensus: not ready, yet whois still answers (itself).
			if owner, err := minor.Whois("", "user:42"); err != nil || owner != ns[2] {
				t.Fatalf("minority whois: %q %v (state %s)", owner, err, s.State)
			}
			at := converged(t, major, ns[:2], removeWait+5*time.Second)
			t.Logf("timing (%s): the majority side was ready without C after %s", mode, at.Sub(cutAt).Round(10*time.Millisecond))
			// Each side keeps its own view while the cut lasts: one
			// change each since the cut (the minority alone and below
			// consensus stays rehashing; for how long, whatever the
			// time, see actors TestDriverBelowConsensusStaysRehashing).
			converged(t, major, ns[:2], time.Second)
			if s, _ := minor.Status(); s.State != "rehashing" || !reflect.DeepEqual(s.Members, ns[2:]) {
				t.Fatalf("minority during the cut: %s %v", s.State, s.Members)
			}
			if got := transitionsSince(minor, cutAt); !slices.Equal(got, []string{"ready>rehashing"}) {
				t.Fatalf("minority changed state %v during the cut, want ready>rehashing once", transitionsSince(minor, cutAt))
			}
			for _, n := range major {
				if got := transitionsSince(n, cutAt); !slices.Equal(got, []string{"ready>rehashing", "rehashing>ready"}) {
					t.Fatalf("%s changed state %v during the cut, want one rehash", n.Name, got)
				}
			}

			healAt := time.Now()
			net.HealAll()
			at = converged(t, nodes, ns, healWait)
			t.Logf("timing (%s): healed, all ready with identical rings, %s after the cut ended", mode, at.Sub(healAt).Round(10*time.Millisecond))
		})
	}
}

// A cut shorter than SuspectAfter is invisible: the held traffic flows on
// when it heals and no ring changes anywhere.
func TestShortDropIsInvisible(t *testing.T) {
	h := cloistertest.NewT(t)
	ns := localcluster.Names("blip", 3)
	net, err := h.Network(ns...)
	if err != nil {
		t.Fatal(err)
	}
	nodes := startAll(t, h, ns, 2)
	converged(t, nodes, ns, formWait)
	at := time.Now()
	if err := net.Partition(cloistertest.Drop, ns[:1], ns[1:]); err != nil {
		t.Fatal(err)
	}
	// The fault itself: traffic held for 1.5 s, half of SuspectAfter. No
	// node suspects another during it or until SuspectAfter (and a few
	// heartbeats) after it began, when a detector counting the held
	// heartbeats as lost would have.
	steady(t, nodes, ns, at.Add(1500*time.Millisecond), "during a 1.5 s drop", false)
	net.HealAll()
	steady(t, nodes, ns, at.Add(defSuspect+4*defHeartbeat), "after a 1.5 s drop", false)
	converged(t, nodes, ns, time.Second)
	for _, n := range nodes {
		if c := churn(n, at); c != 0 {
			t.Errorf("%s rehashed %d times for a 1.5 s blip: %v", n.Name, c, n.Transitions())
		}
	}
}

// freeze stops n with SIGSTOP (failing the test if it cannot) and returns
// the call that resumes it; a node still frozen when the test ends is
// resumed then, before the nodes are stopped (cleanups run last first).
func freeze(t *testing.T, n *cloistertest.Node) (thaw func() error) {
	t.Helper()
	if err := n.Freeze(); err != nil {
		t.Fatal(err)
	}
	thawed := false
	t.Cleanup(func() {
		if !thawed {
			_ = n.Thaw()
		}
	})
	return func() error {
		thawed = true
		return n.Thaw()
	}
}
