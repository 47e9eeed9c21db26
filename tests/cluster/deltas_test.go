package cluster

import (
	"testing"

	"github.com/cloister-go/cloister/cloistertest"
	"github.com/cloister-go/cloister/internal/localcluster"
	"github.com/cloister-go/cloister/internal/nodetest"
	"github.com/cloister-go/cloister/listener"
)

// Members tell each other their lists' changes in pings and pongs (list
// deltas) instead of fetching each changed list whole. Six nodes that only
// know the first one find each other through those lists; one of them is
// a node of an older version (-full-lists: it sends no deltas and fetches
// every changed list), which the others fetch whole too. All assemble
// with the same list and ring, and the others used deltas.
func TestListDeltasAssembleWithAnOlderNode(t *testing.T) {
	h := cloistertest.NewT(t)
	ns := localcluster.Names("delta", 6)
	const older = 2
	var nodes []*cloistertest.Node
	for i, n := range ns {
		spec := cloistertest.Spec{Name: n, Sentry: ns[:1], Consensus: len(ns)}
		if i == older {
			spec.Args = []string{"-full-lists"}
		}
		nodes = append(nodes, start(t, h, spec))
	}
	var first listener.Snapshot
	for i, n := range nodes {
		s, err := n.WaitStatus(wait, "all members", func(s listener.Snapshot) bool { return len(s.Members) == len(ns) && s.Ready() })
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = s
		} else if s.Rings["cloister"].Hash != first.Rings["cloister"].Hash {
			t.Fatalf("%s: ring %v, %s: %v", n.Name, s.Rings["cloister"].Members, nodes[0].Name, first.Rings["cloister"].Members)
		}
	}
	var applied int64
	for i, n := range nodes {
		rs, err := nodetest.Runtime(n.Node, false)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %d state answers served, %d deltas applied, %d missed", n.Name, rs.StateAnswers, rs.ListDeltas, rs.DeltaMisses)
		if i == older && rs.ListDeltas+rs.DeltaMisses != 0 {
			t.Fatalf("the older node took %d deltas", rs.ListDeltas+rs.DeltaMisses)
		}
		if i != older {
			applied += rs.ListDeltas
		}
	}
	if applied == 0 {
		t.Fatal("no list delta applied")
	}
}
