package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/cloister-go/cloister/internal/localcluster"
	"github.com/cloister-go/cloister/listener"
)

// runDemo is the main job of the README: a local cluster of N node
// processes forms, answers whois identically everywhere, survives one node
// killed with SIGKILL, takes it back, and stops in order. Every step is
// checked; the exit code says whether all held.
func runDemo(args []string) int {
	fs := flag.NewFlagSet("cloister demo", flag.ContinueOnError)
	n := fs.Int("n", 3, "number of nodes")
	consensus := fs.Int("consensus", 2, "consensus (members needed for ready)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *n < 2 || *consensus < 1 || *consensus > *n-1 {
		fmt.Fprintln(os.Stderr, "cloister demo: need -n ≥ 2 and 1 ≤ -consensus ≤ n-1 (so the cluster survives a kill)")
		return 2
	}
	bin, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "cloister demo:", err)
		return 1
	}
	h, err := localcluster.New(bin, localcluster.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "cloister demo:", err)
		return 1
	}
	defer h.Close()
	d := &demo{h: h, stop: make(chan struct{})}
	fmt.Printf("== starting %d nodes (consensus %d, epmd on 127.0.0.1:%d)\n", *n, *consensus, h.EPMD.Port)
	names := localcluster.Names("demo", *n)
	for _, name := range names {
		node, err := h.Start(localcluster.Spec{Name: name, Sentry: names, Consensus: *consensus})
		if err != nil {
			return d.fail(err)
		}
		d.nodes = append(d.nodes, node)
	}
	go d.printEvents()
	defer close(d.stop)

	t0 := time.Now()
	if err := d.waitMembers(d.nodes, *n); err != nil {
		return d.fail(err)
	}
	fmt.Printf("== formed: %d members ready on every node in %s\n", *n, time.Since(t0).Round(time.Millisecond))

	keys := []string{"user:1", "user:2", "user:3", "user:4", "order:17", "order:42", "cart:7", "cart:9"}
	before, err := d.whois(d.nodes, keys)
	if err != nil {
		return d.fail(err)
	}

	victim := d.nodes[1]
	fmt.Printf("== kill -9 %s\n", victim.Name)
	killed := time.Now()
	victim.Kill()
	survivors := append([]*localcluster.Node{d.nodes[0]}, d.nodes[2:]...)
	if err := d.waitMembers(survivors, *n-1); err != nil {
		return d.fail(err)
	}
	fmt.Printf("== survivors rehashed to %d members and are ready %s after the kill\n", *n-1, time.Since(killed).Round(time.Millisecond))
	after, err := d.whois(survivors, keys)
	if err != nil {
		return d.fail(err)
	}
	for _, k := range keys {
		if before[k] != victim.Name && after[k] != before[k] {
			return d.fail(fmt.Errorf("key %s moved from %s to %s although its owner survived", k, before[k], after[k]))
		}
		if after[k] == victim.Name {
			return d.fail(fmt.Errorf("key %s still owned by the dead node", k))
		}
	}
	fmt.Println("== only the dead node's keys moved")

	fmt.Printf("== restart %s\n", victim.Name)
	restarted := time.Now()
	if err := victim.Restart(); err != nil {
		return d.fail(err)
	}
	if err := d.waitMembers(d.nodes, *n); err != nil {
		return d.fail(err)
	}
	fmt.Printf("== %d members ready again %s after the restart\n", *n, time.Since(restarted).Round(time.Millisecond))
	again, err := d.whois(d.nodes, keys)
	if err != nil {
		return d.fail(err)
	}
	for _, k := range keys {
		if again[k] != before[k] {
			return d.fail(fmt.Errorf("key %s: owner %s after rejoin, %s before", k, again[k], before[k]))
		}
	}
	fmt.Println("== every key has its original owner back (owners depend only on the member set)")

	fmt.Println("== stopping in order (SIGTERM)")
	for _, node := range d.nodes {
		if err := node.Stop(); err != nil {
			return d.fail(err)
		}
	}
	time.Sleep(100 * time.Millisecond)
	fmt.Println("== demo passed")
	return 0
}

type demo struct {
	h     *localcluster.Harness
	nodes []*localcluster.Node
	stop  chan struct{}
	mu    sync.Mutex
}

func (d *demo) fail(err error) int {
	fmt.Fprintln(os.Stderr, "== demo FAILED:", err)
	return 1
}

// printEvents prints every state change of every node as it happens.
func (d *demo) printEvents() {
	seen := map[*localcluster.Node]int{}
	pids := map[*localcluster.Node]int{}
	for {
		select {
		case <-d.stop:
			return
		case <-time.After(20 * time.Millisecond):
		}
		for _, n := range d.nodes {
			if pid := n.Pid(); pid != pids[n] {
				pids[n], seen[n] = pid, 0 // a restarted process starts a new event list
			}
			evs := n.Events()
			for _, e := range evs[min(seen[n], len(evs)):] {
				if e.Event == "state" {
					fmt.Printf("   %-20s %-10s -> %-10s members %d: [%s]\n", n.Name, e.From, e.To,
						len(e.Snapshot.Members), strings.Join(e.Snapshot.Members, " "))
				}
			}
			seen[n] = len(evs)
		}
	}
}

func (d *demo) waitMembers(nodes []*localcluster.Node, want int) error {
	for _, n := range nodes {
		if _, err := n.WaitStatus(30*time.Second, fmt.Sprintf("ready with %d members", want), func(s listener.Snapshot) bool {
			return s.Ready() && len(s.Members) == want
		}); err != nil {
			return err
		}
	}
	return nil
}

// whois asks every node for every key, prints the owners, and checks that
// all nodes agree.
func (d *demo) whois(nodes []*localcluster.Node, keys []string) (map[string]string, error) {
	owners := map[string]string{}
	for _, k := range keys {
		for _, n := range nodes {
			o, err := n.Whois("", k)
			if err != nil {
				return nil, fmt.Errorf("whois %s on %s: %w", k, n.Name, err)
			}
			if prev, ok := owners[k]; ok && prev != o {
				return nil, fmt.Errorf("nodes disagree on %s: %s vs %s", k, prev, o)
			}
			owners[k] = o
		}
		fmt.Printf("   whois(%q) = %s   (same on all %d nodes)\n", k, owners[k], len(nodes))
	}
	return owners, nil
}
