package actors

import (
	"slices"
	"testing"

	"github.com/cloister-go/cloister/internal/wire/ergonode"
)

// linked answers for a served link without copying Ergo's connection list
// (it ran on every probe and send, and its copies were a large part of a
// node's assembly garbage), and says false once a killed peer's link is
// gone.
func TestLinkedCopiesNothingAndFollowsAKill(t *testing.T) {
	p, err := startPeer("linked", modeBare, true)
	if err != nil {
		t.Fatal(err)
	}
	defer p.kill()
	// Ergo serves a connection just after it registers it.
	until(t, "served", func() bool { return ergonode.LinksOf(testNode).Served(p.name) })
	if !linked(testNode, p.name) {
		t.Fatalf("not linked to %s", p.name)
	}
	if !raceEnabled { // the race detector's instrumentation allocates
		if n := testing.AllocsPerRun(100, func() { linked(testNode, p.name) }); n != 0 {
			t.Errorf("linked to a connected peer allocates %v times a call, want 0", n)
		}
	}
	p.kill() // SIGKILL
	until(t, "the link dropped", func() bool { return !slices.Contains(testNode.Nodes(), p.name) })
	if linked(testNode, p.name) {
		t.Errorf("linked to %s after Ergo dropped its connection", p.name)
	}
	if !linked(testNode, testNode.Name()) {
		t.Error("not linked to itself")
	}
}
