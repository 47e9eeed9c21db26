package failures

import (
	"encoding/json"
	"net/http"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/cloister-go/cloister/cloistertest"
	"github.com/cloister-go/cloister/internal/localcluster"
)

// The neighbour watch (core/watch.go) at seven members, the defaults
// (k = 2): each member keeps alive only the two members on each side of
// it in the sorted list, so with seven, node i leaves out i+3 and i+4.

// watchSettle: after the lists agree, the narrow watch starts at the next
// keepalive tick; a few of them.
const watchSettle = 3 * time.Second

// ticks reads the keepalive ticks each of n's links wrote, by peer.
func ticks(t *testing.T, n *cloistertest.Node) map[string]uint64 {
	t.Helper()
	resp, err := http.Get("http://" + n.HTTPAddr() + "/debug/ticks")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]uint64{}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

// ring7 is node i's neighbours (true) and the others (false), of seven.
func ring7(ns []string, i int) (neighbours, others []string) {
	for d := 1; d < len(ns); d++ {
		n := ns[(i+d)%len(ns)]
		if d <= 2 || d >= len(ns)-2 {
			neighbours = append(neighbours, n)
		} else {
			others = append(others, n)
		}
	}
	return neighbours, others
}

func startSeven(t *testing.T, prefix string) ([]string, []*cloistertest.Node) {
	h := cloistertest.NewT(t)
	ns := localcluster.Names(prefix, 7)
	if !slices.IsSorted(ns) {
		t.Fatalf("names %v not sorted: the test's neighbours would be wrong", ns)
	}
	nodes := startAll(t, h, ns, 2)
	converged(t, nodes, ns, formWait)
	time.Sleep(watchSettle)
	return ns, nodes
}

// In a steady cluster of seven, the idle links to the members a node does
// not watch write no keepalive; those to its neighbours do, every
// keepalive period.
func TestNeighbourWatchWritesNoKeepaliveToOthers(t *testing.T) {
	ns, nodes := startSeven(t, "wticks")
	before := make([]map[string]uint64, len(nodes))
	for i, n := range nodes {
		before[i] = ticks(t, n)
	}
	const window = 4 * time.Second
	time.Sleep(window)
	for i, n := range nodes {
		after := ticks(t, n)
		neighbours, others := ring7(ns, i)
		for _, o := range others {
			if d := after[o] - before[i][o]; d != 0 {
				t.Errorf("%s wrote %d keepalives to %s, not a neighbour, in %s", n.Name, d, o, window)
			}
		}
		for _, o := range neighbours {
			// one every SuspectAfter/5 = 600 ms: about 6 in the window
			if d := after[o] - before[i][o]; d < 3 {
				t.Errorf("%s wrote %d keepalives to its neighbour %s in %s", n.Name, d, o, window)
			}
		}
	}
	converged(t, nodes, ns, time.Second)
}

// A member frozen with SIGSTOP is watched only by its four neighbours;
// they tell everyone, and every survivor removes it within the bounds of
// the two-member test (TestFrozenPeerIsRemovedAndRejoinsAfterThaw): never
// before RemoveAfter after the freeze, and within RemoveAfter plus a few
// heartbeats. Nobody else is removed anywhere.
func TestFrozenMemberOfSevenIsRemovedByEverySurvivor(t *testing.T) {
	ns, nodes := startSeven(t, "wfrozen")
	victim := nodes[3]
	survivors := slices.Delete(slices.Clone(nodes), 3, 4)
	want := without(ns, victim.Name)
	early, late := defHeartbeat+50*time.Millisecond, 4*defHeartbeat
	frozenAt := time.Now()
	thaw := freeze(t, victim)
	for _, n := range survivors {
		e, err := n.WaitFor(defRemoveAfter+removeWait, "removal of "+victim.Name, func(e cloistertest.NodeEvent) bool {
			return e.Event == "state" && e.From == "ready" && e.To == "rehashing" &&
				!e.Seen.Before(frozenAt) && reflect.DeepEqual(e.Snapshot.Members, want)
		})
		if err != nil {
			t.Fatal(err)
		}
		after := time.Unix(0, e.At).Sub(frozenAt)
		nb, _ := ring7(ns, slices.Index(ns, n.Name))
		t.Logf("timing: %s (neighbour %v) removed the frozen %s after %s", n.Name, slices.Contains(nb, victim.Name), victim.Name, after.Round(10*time.Millisecond))
		if after < defRemoveAfter-early {
			t.Errorf("%s removed %s after %s, before RemoveAfter %s", n.Name, victim.Name, after, defRemoveAfter)
		}
		if after > defRemoveAfter+late {
			t.Errorf("%s removed %s after %s, later than RemoveAfter %s + %s", n.Name, victim.Name, after, defRemoveAfter, late)
		}
	}
	converged(t, survivors, want, removeWait)
	for _, n := range survivors {
		if c := churn(n, frozenAt); c != 1 {
			t.Errorf("%s rehashed %d times for one frozen member: %v", n.Name, c, transitionsSince(n, frozenAt))
		}
	}
	if err := thaw(); err != nil {
		t.Fatal(err)
	}
	converged(t, nodes, ns, healWait)
}

// A node cut off from everyone (all six others frozen) hears none of its
// neighbours: it watches every member from then on and removes all six,
// the ones it did not watch as well, within RemoveAfter plus a few
// heartbeats of the cut, never before RemoveAfter.
func TestNodeCutOffFromSevenRemovesEveryone(t *testing.T) {
	ns, nodes := startSeven(t, "wcut")
	alone, others := nodes[0], nodes[1:]
	cutAt := time.Now()
	for _, n := range others {
		if err := n.Freeze(); err != nil {
			t.Fatal(err)
		}
	}
	defer func() {
		for _, n := range others {
			_ = n.Thaw()
		}
	}()
	e, err := alone.WaitFor(defRemoveAfter+removeWait, "alone", func(e cloistertest.NodeEvent) bool {
		return e.Event == "state" && e.To == "rehashing" && !e.Seen.Before(cutAt) &&
			reflect.DeepEqual(e.Snapshot.Members, ns[:1])
	})
	if err != nil {
		t.Fatal(err)
	}
	after := time.Unix(0, e.At).Sub(cutAt)
	t.Logf("timing: %s alone after %s", alone.Name, after.Round(10*time.Millisecond))
	// The six freezes are sent within milliseconds of cutAt.
	early, late := defHeartbeat+50*time.Millisecond, 4*defHeartbeat
	if after < defRemoveAfter-early {
		t.Errorf("removed everyone after %s, before RemoveAfter %s", after, defRemoveAfter)
	}
	if after > defRemoveAfter+late {
		t.Errorf("removed everyone after %s, later than RemoveAfter %s + %s", after, defRemoveAfter, late)
	}
	for _, n := range others {
		_ = n.Thaw()
	}
	converged(t, nodes, ns, healWait+formWait)
}

// A partition of seven into three and four, dropping: each side ends with
// its own members, no later than SuspectAfter + RemoveAfter plus a few
// heartbeats (members of the far side nobody on this side watched are
// judged from this side's first suspicion, docs/failures.md), and the
// sides merge when the cut heals.
func TestPartitionOfSevenHeals(t *testing.T) {
	h := cloistertest.NewT(t)
	ns := localcluster.Names("wpart", 7)
	net, err := h.Network(ns...)
	if err != nil {
		t.Fatal(err)
	}
	nodes := startAll(t, h, ns, 2)
	converged(t, nodes, ns, formWait)
	time.Sleep(watchSettle)
	// not a contiguous run of the sorted list: some far-side members are
	// nobody's neighbour on this side
	a, b := []string{ns[0], ns[2], ns[4]}, []string{ns[1], ns[3], ns[5], ns[6]}
	var na, nb []*cloistertest.Node
	for _, n := range nodes {
		if slices.Contains(a, n.Name) {
			na = append(na, n)
		} else {
			nb = append(nb, n)
		}
	}
	cutAt := time.Now()
	if err := net.Partition(cloistertest.Drop, a, b); err != nil {
		t.Fatal(err)
	}
	bound := defSuspect + defRemoveAfter + 4*defHeartbeat
	atA := converged(t, na, a, bound+removeWait)
	atB := converged(t, nb, b, bound+removeWait)
	t.Logf("timing: sides alone after %s and %s", atA.Sub(cutAt).Round(10*time.Millisecond), atB.Sub(cutAt).Round(10*time.Millisecond))
	for _, at := range []time.Time{atA, atB} {
		if d := at.Sub(cutAt); d < defRemoveAfter-defHeartbeat {
			t.Errorf("a side was alone after %s, before RemoveAfter", d)
		}
	}
	healAt := time.Now()
	net.HealAll()
	at := converged(t, nodes, ns, healWait+formWait)
	t.Logf("timing: healed, all ready with identical rings, %s after the cut ended", at.Sub(healAt).Round(10*time.Millisecond))
}
