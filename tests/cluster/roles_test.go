package cluster

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/cloister-go/cloister/cloistertest"
	"github.com/cloister-go/cloister/internal/localcluster"
	"github.com/cloister-go/cloister/listener"
)

// Three node processes, two workers and one api node, with ring jobs
// restricted to workers: every node's jobs ring holds the two workers, the
// api node routes to them, and a killed worker's keys go to the other
// worker, never to the api node.
func TestRoleRingOverTwoWorkersOfThree(t *testing.T) {
	h := cloistertest.NewT(t)
	ns := localcluster.Names("role", 3)
	roles := []string{"worker", "worker", "api"}
	var nodes []*cloistertest.Node
	for i, n := range ns {
		nodes = append(nodes, start(t, h, cloistertest.Spec{Name: n, Sentry: ns, Consensus: 3,
			Args: []string{"-groups", "jobs", "-ring-roles", "jobs=worker", "-roles", roles[i], "-meta", "index=" + fmt.Sprint(i)}}))
	}
	workers := ns[:2]
	for _, n := range nodes {
		s, err := n.WaitStatus(wait, "jobs ring of the two workers", func(s listener.Snapshot) bool {
			return s.Ready() && reflect.DeepEqual(s.Rings["jobs"].Members, workers) && len(s.Rings["cloister"].Members) == 3
		})
		if err != nil {
			t.Fatal(err)
		}
		want := map[string][]string{ns[0]: {"worker"}, ns[1]: {"worker"}, ns[2]: {"api"}}
		if !reflect.DeepEqual(s.Roles, want) {
			t.Fatalf("%s roles %v, want %v", n.Name, s.Roles, want)
		}
		if s.Meta[ns[2]]["index"] != "2" {
			t.Fatalf("%s meta %v", n.Name, s.Meta)
		}
	}
	// Ring hashes agree on every node.
	h0, _ := nodes[0].Status()
	for _, n := range nodes[1:] {
		s, _ := n.Status()
		if s.Rings["jobs"].Hash != h0.Rings["jobs"].Hash {
			t.Fatalf("jobs ring hash %x on %s, %x on %s", s.Rings["jobs"].Hash, n.Name, h0.Rings["jobs"].Hash, nodes[0].Name)
		}
	}
	api := nodes[2]
	owners := map[string]string{}
	count := map[string]int{}
	for i := range 64 {
		k := fmt.Sprintf("job-%d", i)
		o, err := api.Whois("jobs", k)
		if err != nil {
			t.Fatal(err)
		}
		if o != ns[0] && o != ns[1] {
			t.Fatalf("jobs key %s owned by %s, not a worker", k, o)
		}
		owners[k] = o
		count[o]++
	}
	if count[ns[0]] == 0 || count[ns[1]] == 0 {
		t.Fatalf("64 keys all on one worker: %v", count)
	}
	nodes[0].Kill()
	for _, n := range nodes[1:] {
		if _, err := n.WaitStatus(wait, "jobs ring of the surviving worker", func(s listener.Snapshot) bool {
			return reflect.DeepEqual(s.Rings["jobs"].Members, ns[1:2]) && len(s.Rings["cloister"].Members) == 2
		}); err != nil {
			t.Fatal(err)
		}
	}
	for k, was := range owners {
		o, err := api.Whois("jobs", k)
		if err != nil {
			t.Fatal(err)
		}
		if o != ns[1] {
			t.Fatalf("jobs key %s (was on %s) now on %s, want the surviving worker %s", k, was, o, ns[1])
		}
	}
}
