package cluster

import (
	"testing"
	"time"

	"github.com/cloister-go/cloister/cloistertest"
	"github.com/cloister-go/cloister/internal/localcluster"
	"github.com/cloister-go/cloister/internal/nodetest"
)

// settled is longer than the quiet time after which a node returns the
// memory of a membership change (3 s) plus a margin.
const settled = 8 * time.Second

// After its membership settles, a node returns the memory the change left
// freed: one forced collection that hands pages back to the OS, once per
// burst of changes, not again while nothing changes.
func TestNodeReturnsMemoryOnceAfterMembershipSettles(t *testing.T) {
	h := cloistertest.NewT(t)
	ns := localcluster.Names("mem", 4)
	var nodes []*cloistertest.Node
	for _, n := range ns {
		nodes = append(nodes, start(t, h, cloistertest.Spec{Name: n, Sentry: ns, Consensus: 3}))
	}
	for _, n := range nodes {
		if err := n.CaughtUp(wait); err != nil {
			t.Fatal(err)
		}
	}
	n := nodes[1]
	first, err := nodetest.Runtime(n.Node, false)
	if err != nil {
		t.Fatal(err)
	}
	returned := waitForcedGC(t, n, first.ForcedGC+1)
	if returned.Released <= first.Released {
		t.Errorf("heap released to the OS %d bytes after the return, %d before", returned.Released, first.Released)
	}
	t.Logf("after assembly: heap idle %d, released %d; after the return: idle %d, released %d",
		first.HeapIdle, first.Released, returned.HeapIdle, returned.Released)

	// Nothing changes: nothing more is forced.
	time.Sleep(settled)
	quiet, err := nodetest.Runtime(n.Node, false)
	if err != nil {
		t.Fatal(err)
	}
	if quiet.ForcedGC != returned.ForcedGC {
		t.Fatalf("%d forced collections in %s of a quiet cluster", quiet.ForcedGC-returned.ForcedGC, settled)
	}

	// A member killed: the survivors change, are ready again (3 of 3),
	// settle, and return once more.
	killedAt := time.Now()
	nodes[0].Kill()
	if _, err := n.WaitTransition(wait, "rehashing", "ready", killedAt); err != nil {
		t.Fatal(err)
	}
	waitForcedGC(t, n, quiet.ForcedGC+1)
}

// waitForcedGC waits until node n counts at least want forced collections.
func waitForcedGC(t *testing.T, n *cloistertest.Node, want uint32) nodetest.RuntimeStats {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		s, err := nodetest.Runtime(n.Node, false)
		if err != nil {
			t.Fatal(err)
		}
		if s.ForcedGC >= want {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d forced collections after %s, want %d", n.Name, s.ForcedGC, wait, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
