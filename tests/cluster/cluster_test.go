// Package cluster tests cloister as users run it: node processes on
// 127.0.0.1 that form a cluster, block their start on consensus, tell the
// listener, and survive kill -9. This test process starts no Ergo node.
package cluster

import (
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cloister-go/cloister/cloistertest"
	"github.com/cloister-go/cloister/internal/localcluster"
	"github.com/cloister-go/cloister/listener"
)

const wait = 30 * time.Second

func start(t *testing.T, h *cloistertest.Harness, s cloistertest.Spec) *cloistertest.Node {
	t.Helper()
	n, err := h.Start(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestStartBlocksUntilConsensus(t *testing.T) {
	h := cloistertest.NewT(t)
	ns := localcluster.Names("gate", 3)
	a := start(t, h, cloistertest.Spec{Name: ns[0], Sentry: ns, Consensus: 3})
	b := start(t, h, cloistertest.Spec{Name: ns[1], Sentry: ns, Consensus: 3})
	// Both are up and connected to each other, yet neither start returns.
	if _, err := a.WaitStatus(wait, "2 members", func(s listener.Snapshot) bool { return len(s.Members) == 2 }); err != nil {
		t.Fatal(err)
	}
	// How long it stays so is the driver's (actors
	// TestDriverBelowConsensusStaysRehashing); here, once both see 2
	// members, neither start has returned.
	if _, err := b.WaitStatus(wait, "2 members", func(s listener.Snapshot) bool { return len(s.Members) == 2 }); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*cloistertest.Node{a, b} {
		for _, e := range n.Events() {
			if e.Event == "started" || e.Event == "error" {
				t.Fatalf("%s start returned with 2 of 3: %+v", n.Name, e)
			}
		}
		if s, _ := n.Status(); s.State != "rehashing" {
			t.Fatalf("%s state %q, want rehashing", n.Name, s.State)
		}
	}
	c := start(t, h, cloistertest.Spec{Name: ns[2], Sentry: ns, Consensus: 3})
	for _, n := range []*cloistertest.Node{a, b, c} {
		e, err := n.WaitStarted(wait)
		if err != nil {
			t.Fatal(err)
		}
		if e.Event != "started" {
			t.Fatalf("%s: %+v", n.Name, e)
		}
	}
}

func TestStartDeadlineNamesTheMissingNode(t *testing.T) {
	h := cloistertest.NewT(t)
	ns := localcluster.Names("deadline", 2)
	a := start(t, h, cloistertest.Spec{Name: ns[0], Sentry: ns, Consensus: 2, StartTimeout: time.Second})
	e, err := a.WaitStarted(wait)
	if err != nil {
		t.Fatal(err)
	}
	if e.Event != "error" || !strings.Contains(e.Error, ns[1]) || !strings.Contains(e.Error, "consensus 2") {
		t.Fatalf("want an error naming %s, got %+v", ns[1], e)
	}
}

func TestBadConfigIsAClearError(t *testing.T) {
	h := cloistertest.NewT(t)
	a := start(t, h, cloistertest.Spec{Name: "badcfg@127.0.0.1", Args: []string{"-consensus", "0"}})
	e, err := a.WaitStarted(wait)
	if err != nil {
		t.Fatal(err)
	}
	if e.Event != "error" || !strings.Contains(e.Error, "Consensus = 0") {
		t.Fatalf("got %+v", e)
	}
	b := start(t, h, cloistertest.Spec{Name: "badcfg2@127.0.0.1", Sentry: []string{"nohost"}})
	if e, _ := b.WaitStarted(wait); e.Event != "error" || !strings.Contains(e.Error, `Sentry[0] = "nohost"`) {
		t.Fatalf("got %+v", e)
	}
}

func TestListenerSequenceAndKilledNode(t *testing.T) {
	h := cloistertest.NewT(t)
	ns := localcluster.Names("seq", 3)
	var nodes []*cloistertest.Node
	for i, n := range ns {
		// One node has a listener that panics on every change: nothing
		// below may depend on it behaving.
		nodes = append(nodes, start(t, h, cloistertest.Spec{Name: n, Sentry: ns, Consensus: 3, PanicListener: i == 2}))
	}
	for _, n := range nodes {
		if _, err := n.WaitTransition(wait, "rehashing", "ready", time.Time{}); err != nil {
			t.Fatal(err)
		}
		got := n.Transitions()
		want := []string{"down>assembling", "assembling>rehashing", "rehashing>ready"}
		if !reflect.DeepEqual(got[:3], want) {
			t.Fatalf("%s transitions %v", n.Name, got)
		}
	}
	for _, n := range nodes {
		if err := n.CaughtUp(wait); err != nil {
			t.Fatal(err)
		}
	}
	killedAt := time.Now()
	nodes[0].Kill()
	for _, n := range nodes[1:] {
		e, err := n.WaitTransition(wait, "ready", "rehashing", killedAt)
		if err != nil {
			t.Fatal(err)
		}
		if len(e.Snapshot.Members) != 2 {
			t.Fatalf("%s members after kill: %v", n.Name, e.Snapshot.Members)
		}
		t.Logf("%s noticed the kill after %s", n.Name, e.Seen.Sub(killedAt).Round(time.Millisecond))
	}
	restartAt := time.Now()
	if err := nodes[0].Restart(); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if _, err := n.WaitTransition(wait, "rehashing", "ready", restartAt); err != nil {
			t.Fatal(err)
		}
	}
}

func TestFullMeshFromOneSentry(t *testing.T) {
	h := cloistertest.NewT(t)
	ns := localcluster.Names("mesh", 4)
	// Only the first node is anyone's sentry; the others must find each other.
	var nodes []*cloistertest.Node
	for _, n := range ns {
		nodes = append(nodes, start(t, h, cloistertest.Spec{Name: n, Sentry: ns[:1], Consensus: 4}))
	}
	var hash uint64
	for _, n := range nodes {
		s, err := n.WaitStatus(wait, "4 members", func(s listener.Snapshot) bool { return len(s.Members) == 4 && s.Ready() })
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Connected) != 3 {
			t.Fatalf("%s connected to %v", n.Name, s.Connected)
		}
		if hash == 0 {
			hash = s.Rings["cloister"].Hash
		} else if s.Rings["cloister"].Hash != hash {
			t.Fatalf("%s ring differs", n.Name)
		}
	}
}

func TestPlainAndForeignNodesNeverJoin(t *testing.T) {
	h := cloistertest.NewT(t)
	ns := localcluster.Names("member", 2)
	a := start(t, h, cloistertest.Spec{Name: ns[0], Sentry: ns, Consensus: 2})
	start(t, h, cloistertest.Spec{Name: ns[1], Sentry: ns, Consensus: 2})
	// A plain Ergo node (no cloister) and a cloister of another OTPApp,
	// both connected to the members.
	start(t, h, cloistertest.Spec{Name: "plain@127.0.0.1", Sentry: ns, Args: []string{"-plain"}})
	start(t, h, cloistertest.Spec{Name: "billing_0@127.0.0.1", Sentry: append([]string{"billing_0@127.0.0.1"}, ns...), OTPApp: "billing"})
	if _, err := a.WaitStatus(wait, "4 connected", func(s listener.Snapshot) bool { return len(s.Connected) == 3 }); err != nil {
		t.Fatal(err)
	}
	// That they stay out through heartbeats and re-probes is the driver's
	// (actors TestDriverPlainAndForeignNodesNeverJoin); here, connected to
	// both, they are not members.
	for _, n := range []*cloistertest.Node{a, h.Node(ns[1])} {
		s, err := n.Status()
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(s.Members, ns) || !reflect.DeepEqual(s.Rings["cloister"].Members, ns) {
			t.Fatalf("%s members %v ring %v", n.Name, s.Members, s.Rings["cloister"].Members)
		}
	}
}

func TestMain(m *testing.M) {
	os.Exit(m.Run())
}

func TestOrderlyStopRunsStoppingThenStopped(t *testing.T) {
	h := cloistertest.NewT(t)
	ns := localcluster.Names("stop", 2)
	a := start(t, h, cloistertest.Spec{Name: ns[0], Sentry: ns, Consensus: 1})
	b := start(t, h, cloistertest.Spec{Name: ns[1], Sentry: ns, Consensus: 1})
	if _, err := a.WaitStatus(wait, "ready with 2 members", func(s listener.Snapshot) bool { return s.Ready() && len(s.Members) == 2 }); err != nil {
		t.Fatal(err)
	}
	// Its join transitions may still be on their way (under load they
	// were once read after stopAt and taken for the stop's).
	if err := a.CaughtUp(wait); err != nil {
		t.Fatal(err)
	}
	stopAt := time.Now()
	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
	got := b.Transitions()
	if n := len(got); n < 2 || got[n-2] != "ready>stopping" || got[n-1] != "stopping>stopped" {
		t.Fatalf("transitions of the stopped node: %v", got)
	}
	e, err := a.WaitTransition(wait, "ready", "rehashing", stopAt)
	if err != nil {
		t.Fatal(err)
	}
	if len(e.Snapshot.Members) != 1 {
		t.Fatalf("survivor members %v", e.Snapshot.Members)
	}
}
