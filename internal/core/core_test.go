package core

import (
	"errors"
	"fmt"
	"github.com/cloister-go/cloister/listener"
	"go/ast"
	"go/parser"
	"go/token"
	"math/rand"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"
)

var t0 = time.Unix(1_700_000_000, 0)

func cfg(self string, consensus int, sentries ...string) Config {
	return Config{
		Self: self, OTPApp: "cloister", Consensus: consensus, Sentries: sentries,
		Heartbeat: 500 * time.Millisecond, SuspectAfter: 3 * time.Second, RemoveAfter: 5 * time.Second,
		ProbeTimeout: 2 * time.Second, Reprobe: 2 * time.Second, Reconcile: time.Second,
		BackoffMin: 50 * time.Millisecond, BackoffMax: time.Second,
	}
}

func transitions(fx []Effect) []string {
	var out []string
	for _, f := range fx {
		if t, ok := f.(Transition); ok {
			out = append(out, string(t.From)+">"+string(t.To))
		}
	}
	return out
}

func kinds[T Effect](fx []Effect) []T {
	var out []T
	for _, f := range fx {
		if t, ok := f.(T); ok {
			out = append(out, t)
		}
	}
	return out
}

// run feeds an event and checks that its transitions form a chain of
// declared ones starting at the state before the event.
func run(c *Core, ev Event) []Effect {
	from := c.State()
	fx := c.Step(ev)
	if err := chain(from, fx); err != nil {
		panic(err.Error())
	}
	return fx
}

// chain reports an error unless the transitions in fx start at from, each
// starting where the previous one ended, and each declared.
func chain(from State, fx []Effect) error {
	for _, f := range fx {
		if t, ok := f.(Transition); ok {
			if t.From != from || !Allowed(t.From, t.To) {
				return fmt.Errorf("transition %s>%s from state %s", t.From, t.To, from)
			}
			from = t.To
		}
	}
	return nil
}

func TestStartWithSelfListedReachesReadyAtOnce(t *testing.T) {
	c := New(cfg("a@h", 1, "a@h", "b@h", "c@h"))
	fx := run(c, Start{Now: t0})
	if got := transitions(fx); !reflect.DeepEqual(got, []string{"down>assembling", "assembling>rehashing", "rehashing>ready"}) {
		t.Fatalf("transitions %v", got)
	}
	if d := kinds[Dial](fx); !reflect.DeepEqual(d, []Dial{{"b@h"}, {"c@h"}}) {
		t.Fatalf("dials %v", d)
	}
	if p := kinds[Publish](fx); len(p) != 1 || !reflect.DeepEqual(p[0].Members, []string{"a@h"}) {
		t.Fatalf("publish %v", p)
	}
}

func TestAssemblingWaitsForAReachableSentry(t *testing.T) {
	c := New(cfg("x@h", 1, "a@h", "b@h"))
	fx := run(c, Start{Now: t0})
	if got := transitions(fx); !reflect.DeepEqual(got, []string{"down>assembling"}) {
		t.Fatalf("transitions %v", got)
	}
	fx = run(c, DialDone{Now: t0, Node: "a@h", Err: errors.New("refused")})
	if c.State() != listener.StateAssembling || len(fx) != 0 {
		t.Fatalf("state %s fx %v", c.State(), fx)
	}
	fx = run(c, NodeUp{Now: t0, Node: "b@h"})
	if got := transitions(fx); !reflect.DeepEqual(got, []string{"assembling>rehashing", "rehashing>ready"}) {
		t.Fatalf("transitions %v", got)
	}
	if p := kinds[Probe](fx); !reflect.DeepEqual(p, []Probe{{"b@h"}}) {
		t.Fatalf("probe %v", p)
	}
}

func TestConsensusGatesReady(t *testing.T) {
	c := New(cfg("a@h", 3, "a@h", "b@h", "c@h"))
	run(c, Start{Now: t0})
	run(c, NodeUp{Now: t0, Node: "b@h"})
	fx := run(c, ProbeReply{Now: t0, Node: "b@h", OTPApp: "cloister", Members: []string{"a@h", "b@h"}})
	if c.State() != listener.StateRehashing {
		t.Fatalf("state %s with 2 of 3", c.State())
	}
	if p := kinds[Publish](fx); len(p) != 1 || !reflect.DeepEqual(p[0].Members, []string{"a@h", "b@h"}) {
		t.Fatalf("publish %v", p)
	}
	run(c, NodeUp{Now: t0, Node: "c@h"})
	fx = run(c, ProbeReply{Now: t0, Node: "c@h", OTPApp: "cloister", Members: []string{"a@h", "c@h"}})
	if got := transitions(fx); !reflect.DeepEqual(got, []string{"rehashing>ready"}) {
		t.Fatalf("transitions %v", got)
	}
	// Losing one below consensus: ready → rehashing, and stays there.
	fx = run(c, NodeDown{Now: t0, Node: "c@h"})
	if got := transitions(fx); !reflect.DeepEqual(got, []string{"ready>rehashing"}) {
		t.Fatalf("transitions %v", got)
	}
	if !reflect.DeepEqual(c.Members(), []string{"a@h", "b@h"}) {
		t.Fatalf("members %v", c.Members())
	}
	if d := kinds[Dial](run(c, Tick{Now: t0.Add(100 * time.Millisecond)})); !reflect.DeepEqual(d, []Dial{{"c@h"}}) {
		t.Fatalf("lost sentry must be re-dialled: %v", d)
	}
}

func TestMembershipChangeInReadyRehashesAndReturns(t *testing.T) {
	c := New(cfg("a@h", 1, "a@h", "b@h"))
	run(c, Start{Now: t0})
	run(c, NodeUp{Now: t0, Node: "b@h"})
	fx := run(c, ProbeReply{Now: t0, Node: "b@h", OTPApp: "cloister"})
	if got := transitions(fx); !reflect.DeepEqual(got, []string{"ready>rehashing", "rehashing>ready"}) {
		t.Fatalf("transitions %v", got)
	}
}

func TestForeignNodesNeverJoin(t *testing.T) {
	c := New(cfg("a@h", 1, "a@h"))
	run(c, Start{Now: t0})
	run(c, NodeUp{Now: t0, Node: "observer"})
	fx := run(c, ProbeReply{Now: t0, Node: "other_app", OTPApp: "billing"})
	if len(kinds[Publish](fx)) != 0 || !reflect.DeepEqual(c.Members(), []string{"a@h"}) {
		t.Fatalf("foreign node joined: %v", c.Members())
	}
	// A plain node that never answers is re-probed, never added.
	fx = run(c, Tick{Now: t0.Add(3 * time.Second)})
	if p := kinds[Probe](fx); len(p) == 0 {
		t.Fatal("silent non-member not re-probed")
	}
	if !reflect.DeepEqual(c.Members(), []string{"a@h"}) {
		t.Fatalf("members %v", c.Members())
	}
}

func TestGossipBuildsFullMesh(t *testing.T) {
	c := New(cfg("a@h", 1, "a@h", "b@h"))
	run(c, Start{Now: t0})
	run(c, NodeUp{Now: t0, Node: "b@h"})
	fx := run(c, ProbeReply{Now: t0, Node: "b@h", OTPApp: "cloister", Members: []string{"a@h", "b@h", "c@h", "d@h"}})
	if d := kinds[Dial](fx); !reflect.DeepEqual(d, []Dial{{"c@h"}, {"d@h"}}) {
		t.Fatalf("dials %v", d)
	}
	// Once c is gone from every member's report, we stop dialling it.
	run(c, DialDone{Now: t0, Node: "c@h", Err: errors.New("down")})
	run(c, DialDone{Now: t0, Node: "d@h", Err: errors.New("down")})
	run(c, ProbeReply{Now: t0, Node: "b@h", OTPApp: "cloister", Members: []string{"a@h", "b@h"}})
	fx = run(c, Tick{Now: t0.Add(10 * time.Second)})
	if d := kinds[Dial](fx); len(d) != 0 {
		t.Fatalf("still dialling forgotten gossip: %v", d)
	}
}

func TestProbedByTriggersProbeBack(t *testing.T) {
	c := New(cfg("a@h", 1, "a@h"))
	run(c, Start{Now: t0})
	fx := run(c, ProbedBy{Now: t0, Node: "b@h"})
	if p := kinds[Probe](fx); !reflect.DeepEqual(p, []Probe{{"b@h"}}) {
		t.Fatalf("probe %v", p)
	}
}

func TestSilentMemberIsSuspectedThenRemoved(t *testing.T) {
	c := New(cfg("a@h", 1, "a@h", "b@h"))
	run(c, Start{Now: t0})
	run(c, NodeUp{Now: t0, Node: "b@h"})
	run(c, ProbeReply{Now: t0, Node: "b@h", OTPApp: "cloister"})
	var suspected, removed time.Duration
	for ms := 100; ms <= 8000; ms += 100 {
		now := t0.Add(time.Duration(ms) * time.Millisecond)
		fx := run(c, Tick{Now: now})
		if len(kinds[Suspect](fx)) > 0 && suspected == 0 {
			suspected = now.Sub(t0)
		}
		if d := kinds[Disconnect](fx); len(d) > 0 && removed == 0 {
			removed = now.Sub(t0)
			if d[0].Node != "b@h" {
				t.Fatalf("disconnected %v", d)
			}
			if got := transitions(fx); !reflect.DeepEqual(got, []string{"ready>rehashing", "rehashing>ready"}) {
				t.Fatalf("transitions %v", got)
			}
		}
	}
	if suspected != 3*time.Second || removed != 5*time.Second {
		t.Fatalf("suspected at %v, removed at %v", suspected, removed)
	}
	if !reflect.DeepEqual(c.Members(), []string{"a@h"}) {
		t.Fatalf("members %v", c.Members())
	}
}

func TestAnsweringMemberIsNeverSuspected(t *testing.T) {
	c := New(cfg("a@h", 1, "a@h", "b@h"))
	run(c, Start{Now: t0})
	run(c, NodeUp{Now: t0, Node: "b@h"})
	run(c, ProbeReply{Now: t0, Node: "b@h", OTPApp: "cloister"})
	for ms := 100; ms <= 20000; ms += 100 {
		now := t0.Add(time.Duration(ms) * time.Millisecond)
		fx := run(c, Tick{Now: now})
		for range kinds[Probe](fx) {
			run(c, ProbeReply{Now: now, Node: "b@h", OTPApp: "cloister"})
		}
		if len(kinds[Suspect](fx)) > 0 || len(kinds[Disconnect](fx)) > 0 {
			t.Fatalf("answering member suspected at %dms", ms)
		}
	}
}

func TestDialBackoffGrowsAndCaps(t *testing.T) {
	c := New(cfg("a@h", 1, "a@h", "b@h"))
	run(c, Start{Now: t0})
	now := t0
	var gaps []time.Duration
	last := now
	for i := 0; i < 12; i++ {
		run(c, DialDone{Now: now, Node: "b@h", Err: errors.New("refused")})
		for {
			now = now.Add(10 * time.Millisecond)
			if d := kinds[Dial](run(c, Tick{Now: now})); len(d) > 0 {
				break
			}
		}
		gaps = append(gaps, now.Sub(last))
		last = now
	}
	// BackoffMin 50 ms doubling to BackoffMax 1 s, each scaled by [0.75, 1)
	// (ticks every 10 ms round up).
	if gaps[0] < 30*time.Millisecond || gaps[0] > 60*time.Millisecond {
		t.Fatalf("first gap %v, gaps %v", gaps[0], gaps)
	}
	for _, g := range gaps[len(gaps)-4:] {
		if g < 750*time.Millisecond || g > 1010*time.Millisecond {
			t.Fatalf("capped gap %v, gaps %v", g, gaps)
		}
	}
}

// Two nodes that lost each other at the same moment must not re-dial in
// lockstep: Ergo has no simultaneous-connect rule, so dials that cross
// kill both links.
func TestDialBackoffDiffersBetweenPeers(t *testing.T) {
	c := New(cfg("a@h", 1, "a@h", "b@h"))
	d := New(cfg("b@h", 1, "a@h", "b@h"))
	same := 0
	for f := 1; f <= 20; f++ {
		if c.backoff("b@h", f) == d.backoff("a@h", f) {
			same++
		}
		for _, x := range []time.Duration{c.backoff("b@h", f), d.backoff("a@h", f)} {
			if x <= 0 || x > time.Second {
				t.Fatalf("backoff %v out of range", x)
			}
		}
	}
	if same > 2 {
		t.Fatalf("%d of 20 backoffs equal between a→b and b→a", same)
	}
	// A pure function of (self, peer, failures): a second core with the
	// same configuration, whatever it went through, waits the same.
	c2 := New(cfg("a@h", 1, "a@h", "b@h"))
	run(c2, Start{Now: t0})
	run(c2, DialDone{Now: t0, Node: "b@h", Err: errors.New("refused")})
	for f := 1; f <= 20; f++ {
		if c.backoff("b@h", f) != c2.backoff("b@h", f) {
			t.Fatalf("failure %d: backoff %v and %v for the same (self, peer, failures)", f, c.backoff("b@h", f), c2.backoff("b@h", f))
		}
	}
}

func TestServiceModeAssemblesOnFirstAnswer(t *testing.T) {
	cf := cfg("app@10.0.0.1", 2)
	cf.Service = true
	c := New(cf)
	fx := run(c, Start{Now: t0})
	if c.State() != listener.StateAssembling || len(kinds[Dial](fx)) != 0 {
		t.Fatalf("state %s fx %v", c.State(), fx)
	}
	fx = run(c, Discovered{Now: t0, Peers: []string{"app@10.0.0.1", "app@10.0.0.2"}})
	if d := kinds[Dial](fx); !reflect.DeepEqual(d, []Dial{{"app@10.0.0.2"}}) {
		t.Fatalf("dials %v", d)
	}
	if c.State() != listener.StateRehashing {
		t.Fatalf("state %s", c.State())
	}
}

func TestStopRunsStoppingThenStopped(t *testing.T) {
	c := New(cfg("a@h", 1, "a@h"))
	run(c, Start{Now: t0})
	fx := run(c, Stop{Now: t0})
	if got := transitions(fx); !reflect.DeepEqual(got, []string{"ready>stopping", "stopping>stopped"}) {
		t.Fatalf("transitions %v", got)
	}
	if fx := run(c, NodeUp{Now: t0, Node: "b@h"}); len(transitions(fx)) != 0 {
		t.Fatalf("stopped machine moved: %v", fx)
	}
}

func TestReconcileRepairsMissedEvents(t *testing.T) {
	c := New(cfg("a@h", 1, "a@h", "b@h"))
	run(c, Start{Now: t0})
	run(c, NodeUp{Now: t0, Node: "b@h"})
	run(c, ProbeReply{Now: t0, Node: "b@h", OTPApp: "cloister"})
	// b vanished without a NodeDown; c appeared without a NodeUp.
	fx := run(c, Tick{Now: t0.Add(time.Second), Connected: []string{"c@h"}})
	if !reflect.DeepEqual(c.Members(), []string{"a@h"}) {
		t.Fatalf("members %v", c.Members())
	}
	if p := kinds[Probe](fx); !reflect.DeepEqual(p, []Probe{{"c@h"}}) {
		t.Fatalf("probe %v", p)
	}
}

// Property: whatever the events, every emitted transition is declared, the
// member list is sorted, unique and contains self, and the state only
// reaches ready with consensus.
func TestRandomEventsKeepInvariants(t *testing.T) {
	nodes := []string{"a@h", "b@h", "c@h", "d@h", "e@h"}
	for seed := int64(1); seed <= 200; seed++ {
		r := rand.New(rand.NewSource(seed))
		c := New(cfg("a@h", 1+r.Intn(4), "a@h", "b@h", "c@h"))
		now := t0
		state := c.State()
		for i := 0; i < 300; i++ {
			now = now.Add(time.Duration(r.Intn(400)) * time.Millisecond)
			n := nodes[r.Intn(len(nodes))]
			var ev Event
			switch r.Intn(9) {
			case 0:
				ev = Start{Now: now}
			case 1:
				ev = NodeUp{Now: now, Node: n}
			case 2:
				ev = NodeDown{Now: now, Node: n}
			case 3:
				ev = DialDone{Now: now, Node: n, Err: []error{nil, errors.New("x")}[r.Intn(2)]}
			case 4:
				ms := []string{nodes[r.Intn(5)], nodes[r.Intn(5)]}
				ev = ProbeReply{Now: now, Node: n, OTPApp: []string{"cloister", "other"}[r.Intn(2)], Members: ms}
			case 5:
				var conn []string
				if r.Intn(2) == 0 {
					conn = []string{nodes[r.Intn(5)]}
				}
				ev = Tick{Now: now, Connected: conn}
			case 6:
				ev = ProbedBy{Now: now, Node: n}
			case 7:
				ev = Discovered{Now: now, Peers: []string{nodes[r.Intn(5)]}}
			case 8:
				if r.Intn(20) == 0 {
					ev = Stop{Now: now}
				} else {
					ev = Tick{Now: now}
				}
			}
			fx := c.Step(ev)
			if err := chain(state, fx); err != nil {
				t.Fatalf("seed %d: %v", seed, err)
			}
			state = c.State()
			ms := c.Members()
			if !sort.StringsAreSorted(ms) || !contains(ms, "a@h") || hasDup(ms) {
				t.Fatalf("seed %d: members %v", seed, ms)
			}
			if c.State() == listener.StateReady && len(ms) < c.cfg.Consensus {
				t.Fatalf("seed %d: ready with %d < %d", seed, len(ms), c.cfg.Consensus)
			}
		}
	}
}

func contains(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

func hasDup(s []string) bool {
	seen := map[string]bool{}
	for _, v := range s {
		if seen[v] {
			return true
		}
		seen[v] = true
	}
	return false
}

func ExampleCore_Step() {
	c := New(cfg("a@127.0.0.1", 1, "a@127.0.0.1", "b@127.0.0.1"))
	for _, f := range c.Step(Start{Now: t0}) {
		fmt.Printf("%T %v\n", f, f)
	}
	// Output:
	// core.Transition {down assembling}
	// core.Dial {b@127.0.0.1}
	// core.Transition {assembling rehashing}
	// core.Publish {[a@127.0.0.1] map[]}
	// core.Transition {rehashing ready}
}

// In service mode a member in its flap grace whose address leaves the DNS
// answer is removed at once; one still in the answer keeps its grace.
func TestGraceEndsWhenAddressLeavesDNS(t *testing.T) {
	cf := cfg("app@10.0.0.1", 1)
	cf.Service = true
	cf.FlapGrace = time.Second
	c := New(cf)
	run(c, Start{Now: t0})
	all := []string{"app@10.0.0.1", "app@10.0.0.2", "app@10.0.0.3"}
	run(c, Discovered{Now: t0, Peers: all})
	for _, n := range all[1:] {
		run(c, NodeUp{Now: t0, Node: n})
		run(c, ProbeReply{Now: t0, Node: n, OTPApp: "cloister"})
	}
	if len(c.Members()) != 3 {
		t.Fatalf("members %v", c.Members())
	}
	now := t0.Add(100 * time.Millisecond)
	run(c, NodeDown{Now: now, Node: all[1]})
	run(c, NodeDown{Now: now, Node: all[2]})
	if len(c.Members()) != 3 {
		t.Fatalf("flap grace did not hold: %v", c.Members())
	}
	// .2 left DNS (killed), .3 is still there (a blip).
	fx := run(c, Discovered{Now: now, Peers: []string{all[0], all[2]}})
	if !reflect.DeepEqual(c.Members(), []string{all[0], all[2]}) {
		t.Fatalf("members %v (effects %v)", c.Members(), fx)
	}
}

// Effects lists every effect type: a driver test feeds each one to the
// driver, so a new effect left out of the list would escape it.
func TestEffectsListsEveryEffectType(t *testing.T) {
	declared := methodReceivers(t, "core.go", "isEffect")
	var listed []string
	for _, f := range Effects() {
		listed = append(listed, strings.TrimPrefix(fmt.Sprintf("%T", f), "core."))
	}
	sort.Strings(listed)
	if !reflect.DeepEqual(declared, listed) {
		t.Fatalf("effect types declared %v, listed by Effects %v", declared, listed)
	}
}

// methodReceivers parses file and returns, sorted, the receiver types of
// the methods named method.
func methodReceivers(t *testing.T, file, method string) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, d := range f.Decls {
		fd, ok := d.(*ast.FuncDecl)
		if !ok || fd.Recv == nil || fd.Name.Name != method {
			continue
		}
		if id, ok := fd.Recv.List[0].Type.(*ast.Ident); ok {
			out = append(out, id.Name)
		}
	}
	sort.Strings(out)
	return out
}
