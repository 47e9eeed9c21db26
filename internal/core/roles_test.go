package core

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// reply is a peer's state answer announcing roles.
func reply(n string, roles ...string) ProbeReply {
	return ProbeReply{Now: t0, Node: n, OTPApp: "cloister", Members: []string{n}, HasHash: true, Roles: roles}
}

// lastPublish is the ring a role restricts, from the last Publish of fx.
func lastRing(t *testing.T, fx []Effect, role string) []string {
	t.Helper()
	p := kinds[Publish](fx)
	if len(p) == 0 {
		t.Fatalf("no publish in %v", fx)
	}
	return WithRole(p[len(p)-1].Members, p[len(p)-1].Roles, role)
}

// Every node builds the same worker ring whatever order the members join
// in, with its own roles and a BEAM member (no roles) among them.
func TestRoleRingIsTheSameWhateverTheJoinOrder(t *testing.T) {
	self := map[string][]string{"api": {"api"}, "w1": {"worker"}, "w2": {"gpu", "worker"}}
	peers := map[string]ProbeReply{
		"api":  reply("api", "api"),
		"w1":   reply("w1", "worker"),
		"w2":   reply("w2", "worker", "gpu"),
		"beam": {Now: t0, Node: "beam", OTPApp: "cloister", Members: []string{"beam"}}, // an Elixir node: no roles
	}
	orders := [][]string{{"api", "w1", "w2", "beam"}, {"beam", "w2", "w1", "api"}, {"w2", "beam", "api", "w1"}}
	for name, roles := range self {
		for _, order := range orders {
			c := New(Config{Self: name, OTPApp: "cloister", Consensus: 1, Sentries: []string{name},
				Heartbeat: 500 * time.Millisecond, SuspectAfter: 3 * time.Second, RemoveAfter: 5 * time.Second,
				ProbeTimeout: 2 * time.Second, Reprobe: 2 * time.Second, Reconcile: time.Second,
				BackoffMin: 50 * time.Millisecond, BackoffMax: time.Second, Roles: roles})
			run(c, Start{Now: t0})
			var fx []Effect
			for _, n := range order {
				if n == name {
					continue
				}
				run(c, NodeUp{Now: t0, Node: n})
				fx = append(fx, run(c, peers[n])...)
			}
			if got := lastRing(t, fx, "worker"); !reflect.DeepEqual(got, []string{"w1", "w2"}) {
				t.Fatalf("node %s, order %v: worker ring %v, want [w1 w2]", name, order, got)
			}
			if got := lastRing(t, fx, ""); len(got) != 4 {
				t.Fatalf("node %s: unrestricted ring %v", name, got)
			}
			if _, ok := c.Roles()["beam"]; ok {
				t.Fatalf("a BEAM member has roles: %v", c.Roles())
			}
			// A worker killed: its keys go to the other worker only.
			fx = run(c, NodeDown{Now: t0, Node: "w1"})
			if name == "w1" {
				continue
			}
			if got := lastRing(t, fx, "worker"); !reflect.DeepEqual(got, []string{"w2"}) {
				t.Fatalf("node %s: worker ring after w1 left %v", name, got)
			}
		}
	}
}

// A member that comes back announcing other roles (restarted with a new
// configuration) moves rings even though the member list is unchanged.
func TestRoleChangeRepublishes(t *testing.T) {
	c := New(cfg("a", 1, "a", "b"))
	run(c, Start{Now: t0})
	run(c, NodeUp{Now: t0, Node: "b"})
	if got := lastRing(t, run(c, reply("b", "api")), "worker"); len(got) != 0 {
		t.Fatalf("worker ring %v", got)
	}
	if fx := run(c, reply("b", "api")); len(kinds[Publish](fx)) != 0 {
		t.Fatalf("same answer republished: %v", fx)
	}
	if got := lastRing(t, run(c, reply("b", "worker")), "worker"); !reflect.DeepEqual(got, []string{"b"}) {
		t.Fatalf("worker ring %v, want [b]", got)
	}
}

// What a peer announces is bounded and checked, whatever it sends.
func TestPeerRolesAndMetaAreBounded(t *testing.T) {
	c := New(cfg("a", 1, "a", "b"))
	run(c, Start{Now: t0})
	run(c, NodeUp{Now: t0, Node: "b"})
	var roles []string
	for i := range 100 {
		roles = append(roles, fmt.Sprintf("r%03d", i))
	}
	roles = append([]string{"bad role", "", strings.Repeat("x", 65), "r000"}, roles...)
	meta := map[string]string{"bad key": "v", "k": strings.Repeat("v", 300), "ok": "fine", "nl": "a\nb"}
	for i := range 50 {
		meta[fmt.Sprintf("m%02d", i)] = "v"
	}
	e := reply("b", roles...)
	e.Meta = meta
	run(c, e)
	got := c.Roles()["b"]
	if len(got) != MaxRoles || got[0] != "r000" || !slices.IsSorted(got) {
		t.Fatalf("roles %v", got)
	}
	m := c.Meta()["b"]
	if len(m) != MaxMeta || m["bad key"] != "" || m["k"] != "" || m["nl"] != "" {
		t.Fatalf("meta %v", m)
	}
}

// The first Publish (assembling → rehashing) carries this node's own
// roles: a lone worker owns its role ring from the start.
func TestFirstPublishCarriesOwnRoles(t *testing.T) {
	cf := cfg("a", 1, "a")
	cf.Roles = []string{"worker"}
	c := New(cf)
	if got := lastRing(t, run(c, Start{Now: t0}), "worker"); !reflect.DeepEqual(got, []string{"a"}) {
		t.Fatalf("worker ring %v, want [a]", got)
	}
}
