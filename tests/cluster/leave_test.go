package cluster

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloister-go/cloister/actors"
	"github.com/cloister-go/cloister/cloistertest"
	"github.com/cloister-go/cloister/internal/localcluster"
	"github.com/cloister-go/cloister/internal/ringx"
	"github.com/cloister-go/cloister/listener"
	"github.com/cloister-go/cloister/ring"
)

// leaveGrace is a flap grace far longer than a leave may take: a leave
// that waited for it (or for the heartbeat) would show.
const leaveGrace = 10 * time.Second

// gainedAfter merges the ranges n's listener was told it gained in ring
// after since, up to the first snapshot without member gone.
func gainedAfter(n *cloistertest.Node, since time.Time, gone string) []ring.HashRange {
	var all []ring.HashRange
	for _, e := range n.Events() {
		if e.Event != "state" || time.Unix(0, e.At).Before(since) {
			continue
		}
		for _, c := range e.Snapshot.RingChanges {
			all = append(all, c.Gained...)
		}
		if !slices.Contains(e.Snapshot.Members, gone) && len(e.Snapshot.Members) > 0 {
			break
		}
	}
	return ringx.MergeRanges(all)
}

func hashes(rs []ring.HashRange) uint64 {
	var n uint64
	for _, r := range rs {
		n += r.Size()
	}
	return n
}

// Leave on one of three node processes: each survivor removes it with
// reason left, its listener hears the change before the leaver stops, and
// long before the flap grace; the ranges the survivors gain are the ones
// they gain when the same node is killed instead.
func TestLeaveTellsEverySurvivorBeforeItStops(t *testing.T) {
	h := cloistertest.NewT(t)
	ns := localcluster.Names("leave", 3)
	args := []string{"-flap-grace", leaveGrace.String(), "-suspect-after", "15s", "-remove-after", "20s"}
	var nodes []*cloistertest.Node
	for _, name := range ns {
		nodes = append(nodes, start(t, h, cloistertest.Spec{Name: name, Sentry: ns, Consensus: 1, Args: args}))
	}
	all3 := func() {
		t.Helper()
		for _, n := range nodes {
			if _, err := n.WaitStatus(wait, "3 members", func(s listener.Snapshot) bool { return len(s.Members) == 3 && s.Ready() }); err != nil {
				t.Fatal(err)
			}
			if err := n.CaughtUp(wait); err != nil {
				t.Fatal(err)
			}
		}
	}
	all3()
	leaver, survivors := nodes[2], nodes[:2]

	asked := time.Now()
	if err := leaver.Leave(); err != nil {
		t.Fatal(err)
	}
	stopped, err := leaver.WaitFor(wait, "stopped", func(e cloistertest.NodeEvent) bool { return e.Event == "stopped" })
	if err != nil {
		t.Fatal(err)
	}
	stoppedAt := time.Unix(0, stopped.At)
	leaveGained := map[string][]ring.HashRange{}
	for _, s := range survivors {
		rm, err := s.WaitFor(wait, "removed "+leaver.Name, func(e cloistertest.NodeEvent) bool {
			return e.Event == "removed" && e.Member == leaver.Name
		})
		if err != nil {
			t.Fatal(err)
		}
		if rm.Reason != string(listener.RemovedLeft) {
			t.Fatalf("%s removed %s with reason %q, want left", s.Name, leaver.Name, rm.Reason)
		}
		heard, err := s.WaitFor(wait, "listener without the leaver", func(e cloistertest.NodeEvent) bool {
			return e.Event == "state" && time.Unix(0, e.At).After(asked) && !slices.Contains(e.Snapshot.Members, leaver.Name)
		})
		if err != nil {
			t.Fatal(err)
		}
		heardAt := time.Unix(0, heard.At)
		if !heardAt.Before(stoppedAt) {
			t.Fatalf("%s's listener heard the leave at %s, after the leaver stopped at %s", s.Name, heardAt.Format(time.StampMicro), stoppedAt.Format(time.StampMicro))
		}
		if took := heardAt.Sub(asked); took >= leaveGrace/2 {
			t.Fatalf("%s's listener heard the leave %s after it was asked: not well before the flap grace (%s)", s.Name, took, leaveGrace)
		}
		t.Logf("%s: listener heard the leave %s after it was asked, %s before the leaver stopped",
			s.Name, heardAt.Sub(asked).Round(time.Microsecond), stoppedAt.Sub(heardAt).Round(time.Microsecond))
		leaveGained[s.Name] = gainedAfter(s, asked, leaver.Name)
		if len(leaveGained[s.Name]) == 0 {
			t.Fatalf("%s was told no ranges gained", s.Name)
		}
	}
	// The leaver's own listener was told everything it handed over.
	var lost int
	for _, e := range leaver.Events() {
		if e.Event == "state" && time.Unix(0, e.At).After(asked) {
			for _, c := range e.Snapshot.RingChanges {
				lost += len(c.Lost)
			}
		}
	}
	if lost == 0 {
		t.Fatal("the leaver's listener was not told the ranges it hands over")
	}

	// The same node back, then killed: the same ranges move.
	if err := leaver.Restart(); err != nil {
		t.Fatal(err)
	}
	all3()
	killed := time.Now()
	leaver.Kill()
	for _, s := range survivors {
		if _, err := s.WaitFor(wait, "listener without the killed node", func(e cloistertest.NodeEvent) bool {
			return e.Event == "state" && time.Unix(0, e.At).After(killed) && !slices.Contains(e.Snapshot.Members, leaver.Name)
		}); err != nil {
			t.Fatal(err)
		}
		killGained := gainedAfter(s, killed, leaver.Name)
		if fmt.Sprint(killGained) != fmt.Sprint(leaveGained[s.Name]) {
			t.Fatalf("%s gained %d ranges (%d hashes) on the leave, %d (%d hashes) on the kill", s.Name,
				len(leaveGained[s.Name]), hashes(leaveGained[s.Name]), len(killGained), hashes(killGained))
		}
		t.Logf("%s: gained the same %d ranges (%.2f%% of the hash space) on leave and kill", s.Name,
			len(killGained), 100*float64(hashes(killGained))/(1<<32))
	}
}

// Join at run time: two single-node clusters become one when the first is
// told to join the second; the joined peer is kept like a listed sentry,
// so after a kill -9 and a restart it is dialled again by the node that
// joined it (the restarted node lists only itself).
func TestJoinAddsAPeerAndKeepsIt(t *testing.T) {
	h := cloistertest.NewT(t)
	ns := localcluster.Names("join", 2)
	// No flap grace: a lost member is not re-dialled as one, so only the
	// joined peer's standing as a sentry brings it back.
	a := start(t, h, cloistertest.Spec{Name: ns[0], Sentry: ns[:1], Consensus: 1, Args: []string{"-flap-grace", "off"}})
	b := start(t, h, cloistertest.Spec{Name: ns[1], Sentry: ns[1:], Consensus: 1})
	for _, n := range []*cloistertest.Node{a, b} {
		if _, err := n.WaitStatus(wait, "ready alone", func(s listener.Snapshot) bool { return s.Ready() && len(s.Members) == 1 }); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Join("bad name"); err == nil {
		t.Fatal("join of a malformed name accepted")
	}
	if err := a.Join(b.Name); err != nil {
		t.Fatal(err)
	}
	both := func(what string) {
		t.Helper()
		for _, n := range []*cloistertest.Node{a, b} {
			if _, err := n.WaitStatus(wait, what, func(s listener.Snapshot) bool { return s.Ready() && len(s.Members) == 2 }); err != nil {
				t.Fatal(err)
			}
		}
	}
	both("2 members after the join")
	b.Kill()
	if _, err := a.WaitStatus(wait, "alone after the kill", func(s listener.Snapshot) bool { return len(s.Members) == 1 }); err != nil {
		t.Fatal(err)
	}
	if err := b.Restart(); err != nil {
		t.Fatal(err)
	}
	both("2 members after the joined peer came back")
}

// killMonitor kills n's Monitor process from inside its node (testnode's
// /debug/kill): the Manager restarts it (rest_for_one).
func killMonitor(t *testing.T, n *cloistertest.Node) {
	t.Helper()
	r, err := http.Post("http://"+n.HTTPAddr()+"/debug/kill?process="+url.QueryEscape(actors.MonitorName), "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	if r.StatusCode != http.StatusOK {
		t.Fatalf("kill the Monitor of %s: %d %s", n.Name, r.StatusCode, b)
	}
	t.Logf("%s: %s", n.Name, strings.TrimSpace(string(b)))
}

// A peer added with Join outlives a restart of the Monitor that took it
// (its Manager restarts it, rest_for_one): the new Monitor is seeded with
// it, so after a kill -9 and a restart of the peer (which lists only
// itself) it is dialled and a member again, with no second Join. Before,
// the joined peer lived only in the Monitor that died: the new one kept
// the peer while its link lasted, and never dialled it again. Then the
// peer leaves gracefully: removed as left, and admitted again when it
// comes back.
func TestJoinedPeerSurvivesAMonitorRestart(t *testing.T) {
	h := cloistertest.NewT(t)
	ns := localcluster.Names("rejoin", 2)
	a := start(t, h, cloistertest.Spec{Name: ns[0], Sentry: ns[:1], Consensus: 1, Args: []string{"-flap-grace", "off"}})
	b := start(t, h, cloistertest.Spec{Name: ns[1], Sentry: ns[1:], Consensus: 1})
	if _, err := a.WaitStatus(wait, "ready alone", func(s listener.Snapshot) bool { return s.Ready() }); err != nil {
		t.Fatal(err)
	}
	if err := a.Join(b.Name); err != nil {
		t.Fatal(err)
	}
	both := func(what string) {
		t.Helper()
		for _, n := range []*cloistertest.Node{a, b} {
			if _, err := n.WaitStatus(wait, what, func(s listener.Snapshot) bool { return s.Ready() && len(s.Members) == 2 }); err != nil {
				t.Fatal(err)
			}
		}
	}
	both("2 members after the join")

	killed := time.Now()
	killMonitor(t, a)
	// The new Monitor starts from down, and is a member of b's ring again.
	if _, err := a.WaitFor(wait, "the restarted Monitor", func(e cloistertest.NodeEvent) bool {
		return e.Event == "state" && e.From == "down" && e.To == "assembling" && time.Unix(0, e.At).After(killed)
	}); err != nil {
		t.Fatal(err)
	}
	both("2 members after the Monitor restart")

	b.Kill()
	if _, err := a.WaitStatus(wait, "alone after the kill", func(s listener.Snapshot) bool { return len(s.Members) == 1 }); err != nil {
		t.Fatal(err)
	}
	if err := b.Restart(); err != nil {
		t.Fatal(err)
	}
	both("2 members after the joined peer came back, with no second Join")

	// A joined peer that leaves gracefully is dropped at once (reason
	// left) and stays a peer: its next run is admitted, again with no Join.
	left := time.Now()
	if err := b.Leave(); err != nil {
		t.Fatal(err)
	}
	rm, err := a.WaitFor(wait, "the joined peer removed", func(e cloistertest.NodeEvent) bool {
		return e.Event == "removed" && e.Member == b.Name && time.Unix(0, e.At).After(left)
	})
	if err != nil {
		t.Fatal(err)
	}
	if rm.Reason != string(listener.RemovedLeft) {
		t.Fatalf("%s removed %s with reason %q, want left", a.Name, b.Name, rm.Reason)
	}
	if err := b.Restart(); err != nil {
		t.Fatal(err)
	}
	both("2 members after the joined peer left and came back")
}
