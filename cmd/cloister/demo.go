package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/cloister-go/cloister/internal/localcluster"
	"github.com/cloister-go/cloister/internal/nodecmd"
)

// errInterrupted ends the demo when SIGINT or SIGTERM arrives.
var errInterrupted = errors.New("interrupted")

// runDemo is the main job of the README: a local cluster of N node
// processes forms, answers whois identically everywhere, survives one node
// killed with SIGKILL, takes it back, and stops in order. Every step is
// checked; the exit code says whether all held. SIGINT or SIGTERM at any
// step stops the nodes in order.
func runDemo(args []string) int {
	fs := flag.NewFlagSet("cloister demo", flag.ContinueOnError)
	cf := addClusterFlags(fs, 3, 2, "demo")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), `usage: cloister demo [flags]

Runs a local cluster that forms, answers whois the same on every node,
survives a node killed with SIGKILL, takes it back and stops in order;
each step is checked. Ctrl-C stops the nodes in order.`)
		fs.PrintDefaults()
	}
	if code, done := nodecmd.ParseFlags(fs, args); done {
		return code
	}
	if *cf.n < 2 || *cf.consensus < 1 || *cf.consensus > *cf.n-1 {
		fmt.Fprintln(os.Stderr, "cloister demo: need -n ≥ 2 and 1 ≤ -consensus ≤ n-1 (so the cluster survives a kill)")
		return 2
	}
	if err := cf.check(); err != nil {
		fmt.Fprintln(os.Stderr, "cloister demo:", err)
		return 2
	}
	ctx, stop := interrupts()
	defer stop()
	h, err := cf.harness()
	if err != nil {
		fmt.Fprintln(os.Stderr, "cloister demo:", err)
		return 1
	}
	defer h.Close()
	d := &demo{ctx: ctx, h: h, events: newEventStream(h), wait: *cf.wait}
	err = d.run(*cf.n, *cf.consensus, *cf.prefix)
	switch {
	case err == nil:
		fmt.Println("== demo passed")
		return 0
	case ctx.Err() != nil:
		fmt.Println("== interrupted: stopping the nodes in order (SIGTERM)")
		stopAll(h)
		d.events.flush()
		return exitInterrupted
	default:
		d.events.flush()
		fmt.Fprintln(os.Stderr, "== demo FAILED:", err)
		return 1
	}
}

type demo struct {
	ctx    context.Context
	h      *localcluster.Harness
	nodes  []*localcluster.Node
	events *eventStream
	wait   time.Duration
}

// say prints a step's line after every state change that led to it: the
// nodes' events catch up with their /status first.
func (d *demo) say(format string, args ...interface{}) {
	for _, n := range d.nodes {
		if n.Running() {
			_ = n.CaughtUp(2 * time.Second)
		}
	}
	d.events.flush()
	fmt.Printf("== "+format+"\n", args...)
}

func (d *demo) run(n, consensus int, prefix string) error {
	fmt.Printf("== starting %d nodes (consensus %d, epmd port %d, cookie %s)\n", n, consensus, d.h.EPMD.Port, d.h.Cookie)
	names := localcluster.Names(prefix, n)
	for _, name := range names {
		node, err := d.h.Start(localcluster.Spec{Name: name, Sentry: names, Consensus: consensus})
		if err != nil {
			return err
		}
		d.nodes = append(d.nodes, node)
	}
	t0 := time.Now()
	if err := d.waitMembers(d.nodes, n); err != nil {
		return err
	}
	d.say("formed: %d members ready on every node in %s", n, time.Since(t0).Round(time.Millisecond))

	keys := []string{"user:1", "user:2", "user:3", "user:4", "order:17", "order:42", "cart:7", "cart:9"}
	before, err := d.whois(d.nodes, keys)
	if err != nil {
		return err
	}

	victim := d.nodes[1]
	d.say("kill -9 %s", victim.Name)
	killed := time.Now()
	victim.Kill()
	survivors := append([]*localcluster.Node{d.nodes[0]}, d.nodes[2:]...)
	if err := d.waitMembers(survivors, n-1); err != nil {
		return err
	}
	d.say("survivors rehashed to %d members and are ready %s after the kill", n-1, time.Since(killed).Round(time.Millisecond))
	after, err := d.whois(survivors, keys)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if before[k] != victim.Name && after[k] != before[k] {
			return fmt.Errorf("key %s moved from %s to %s although its owner survived", k, before[k], after[k])
		}
		if after[k] == victim.Name {
			return fmt.Errorf("key %s still owned by the dead node", k)
		}
	}
	d.say("only the dead node's keys moved")

	d.say("restart %s", victim.Name)
	restarted := time.Now()
	if err := victim.Restart(); err != nil {
		return err
	}
	if err := d.waitMembers(d.nodes, n); err != nil {
		return err
	}
	d.say("%d members ready again %s after the restart", n, time.Since(restarted).Round(time.Millisecond))
	again, err := d.whois(d.nodes, keys)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if again[k] != before[k] {
			return fmt.Errorf("key %s: owner %s after rejoin, %s before", k, again[k], before[k])
		}
	}
	d.say("every key has its original owner back (owners depend only on the member set)")

	d.say("stopping in order (SIGTERM)")
	for _, node := range d.nodes {
		if err := d.interrupted(); err != nil {
			return err
		}
		if err := node.Stop(); err != nil {
			return err
		}
	}
	d.events.flush()
	return nil
}

func (d *demo) interrupted() error {
	if d.ctx.Err() != nil {
		return errInterrupted
	}
	return nil
}

// waitMembers waits until every node is ready with want members; every
// change on the way is printed as it happens.
func (d *demo) waitMembers(nodes []*localcluster.Node, want int) error {
	deadline := time.Now().Add(d.wait)
	for _, n := range nodes {
		for {
			if err := d.interrupted(); err != nil {
				return err
			}
			s, err := n.Status()
			if err == nil && s.Ready() && len(s.Members) == want {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s: not ready with %d members within %s (last: %s %v, err %v)", n.Name, want, d.wait, s.State, s.Members, err)
			}
			d.events.flush()
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

// whois asks every node for every key, prints the owners, and checks that
// all nodes agree.
func (d *demo) whois(nodes []*localcluster.Node, keys []string) (map[string]string, error) {
	owners := map[string]string{}
	for _, k := range keys {
		if err := d.interrupted(); err != nil {
			return nil, err
		}
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
