package statem_test

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloister-go/cloister/internal/statem"
	"github.com/cloister-go/cloister/internal/testenv"
	"github.com/cloister-go/cloister/internal/wire/ergonode"
	"github.com/ergo-services/ergo/etf"
	"github.com/ergo-services/ergo/gen"
	"github.com/ergo-services/ergo/lib"
	"github.com/ergo-services/ergo/node"
)

// One Ergo node for the whole test binary (Ergo has races of its own with
// several nodes in one process).
var testNode node.Node

func TestMain(m *testing.M) {
	epmd, err := testenv.StartEPMD()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	n, err := ergonode.Start("statem_test@127.0.0.1", ergonode.Options{EPMDPort: epmd.Port})
	if err != nil {
		epmd.Stop()
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testNode = n
	code := m.Run()
	n.Stop()
	epmd.Stop()
	os.Exit(code)
}

// waitLimit bounds every wait; it is generous on purpose (-race, 2 cores).
const waitLimit = 10 * time.Second

type state string

const (
	closed state = "closed"
	open   state = "open"
)

func allowed(from, to state) bool {
	return (from == closed && to == open) || (from == open && to == closed)
}

// door owns its state, as the Monitor's core does. Calls: "state", "open"
// (closed → open), "close", "lie" (reports a transition it did not make),
// "jump" (reports open → open, not in the table). Direct: "ping", "fail".
type door struct {
	statem.StateMachine[state]
	mu         sync.Mutex
	st         state
	logs       []string
	terminated chan state
	peers      func(string) bool
	proc       chan *statem.Process
}

func newDoor() *door {
	return &door{st: closed, terminated: make(chan state, 1), proc: make(chan *statem.Process, 1)}
}

func (d *door) InitStateMachine(p *statem.Process) error { d.proc <- p; return nil }
func (d *door) State() state                             { d.mu.Lock(); defer d.mu.Unlock(); return d.st }
func (d *door) Allowed(from, to state) bool              { return allowed(from, to) }
func (d *door) Connected(node string) bool               { return d.peers == nil || d.peers(node) }
func (d *door) Logf(format string, args ...interface{}) {
	d.mu.Lock()
	d.logs = append(d.logs, fmt.Sprintf(format, args...))
	d.mu.Unlock()
}
func (d *door) TerminateStateMachine(p *statem.Process, s state, reason string) { d.terminated <- s }

func (d *door) logLines() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.logs...)
}

func (d *door) move(to state) []statem.Transition[state] {
	d.mu.Lock()
	defer d.mu.Unlock()
	from := d.st
	d.st = to
	return []statem.Transition[state]{{From: from, To: to}}
}

func (d *door) HandleEvent(p *statem.Process, ev statem.Event) statem.Result[state] {
	var res statem.Result[state]
	switch ev := ev.(type) {
	case statem.Call:
		reply := func(m etf.Term) []statem.Action { return []statem.Action{statem.Reply{From: ev.From, Msg: m}} }
		switch ev.Msg {
		case "state":
			res.Actions = reply(string(d.State()))
		case "open":
			if d.State() == closed {
				res.Transitions = d.move(open)
			}
			res.Actions = reply("ok")
		case "close":
			if d.State() == open {
				res.Transitions = d.move(closed)
			}
			res.Actions = reply("ok")
		case "lie":
			res.Transitions = []statem.Transition[state]{{From: closed, To: open}}
			res.Actions = reply("ok")
		case "jump":
			res.Transitions = []statem.Transition[state]{{From: open, To: open}}
			res.Actions = reply("ok")
		}
	case statem.Direct:
		switch ev.Msg {
		case "ping":
			res.Actions = []statem.Action{statem.DirectReply{Ref: ev.Ref, Msg: "pong"}}
		case "fail":
			res.Actions = []statem.Action{statem.DirectReply{Ref: ev.Ref, Err: errBoom}}
		}
	}
	return res
}

var errBoom = errors.New("boom")

func spawn(t *testing.T, b gen.ProcessBehavior) gen.Process {
	t.Helper()
	proc, err := testNode.Spawn("", gen.ProcessOptions{}, b)
	if err != nil {
		t.Fatalf("spawn: %v", err)
	}
	t.Cleanup(func() {
		if proc.IsAlive() {
			proc.Kill()
		}
		_ = proc.WaitWithTimeout(waitLimit)
	})
	return proc
}

// caller makes calls from a process of its own.
type caller struct {
	gen.Server
	inbox chan etf.Term
}

type callerFn func(sp *gen.ServerProcess) (interface{}, error)

func (c *caller) HandleDirect(sp *gen.ServerProcess, ref etf.Ref, m interface{}) (interface{}, gen.DirectStatus) {
	f, ok := m.(callerFn)
	if !ok {
		return nil, lib.ErrUnsupportedRequest
	}
	return f(sp)
}

func (c *caller) HandleInfo(sp *gen.ServerProcess, m etf.Term) gen.ServerStatus {
	select {
	case c.inbox <- m:
	default:
	}
	return gen.ServerStatusOK
}

func newCaller(t *testing.T) (gen.Process, *caller) {
	c := &caller{inbox: make(chan etf.Term, 64)}
	return spawn(t, c), c
}

func call(t *testing.T, c, to gen.Process, msg etf.Term) etf.Term {
	t.Helper()
	v, err := c.DirectWithTimeout(callerFn(func(sp *gen.ServerProcess) (interface{}, error) {
		return sp.CallWithTimeout(to.Self(), msg, int(waitLimit/time.Second))
	}), int(waitLimit/time.Second)+5)
	if err != nil {
		t.Fatalf("call %v: %v", msg, err)
	}
	return v
}

func TestCheck(t *testing.T) {
	tr := func(from, to state) statem.Transition[state] { return statem.Transition[state]{From: from, To: to} }
	cases := []struct {
		before, after state
		ts            []statem.Transition[state]
		ok            bool
	}{
		{closed, closed, nil, true},
		{closed, open, []statem.Transition[state]{tr(closed, open)}, true},
		{closed, closed, []statem.Transition[state]{tr(closed, open), tr(open, closed)}, true},
		{closed, open, nil, false},                                        // a change nobody reported
		{open, open, []statem.Transition[state]{tr(closed, open)}, false}, // does not start at before
		{open, open, []statem.Transition[state]{tr(open, open)}, false},   // not declared
		{closed, closed, []statem.Transition[state]{tr(closed, open)}, false},
	}
	for i, c := range cases {
		err := statem.Check(allowed, c.before, c.ts, c.after)
		if (err == nil) != c.ok {
			t.Errorf("case %d: %v, want ok=%v", i, err, c.ok)
		}
	}
}

// The state is the behaviour's: a call sees every change at once, and the
// machine only checks what the behaviour reports.
func TestStateComesFromTheBehaviour(t *testing.T) {
	d := newDoor()
	proc := spawn(t, d)
	c, _ := newCaller(t)
	for _, step := range []struct{ msg, want string }{
		{"state", "closed"}, {"open", "ok"}, {"state", "open"}, {"close", "ok"}, {"state", "closed"},
	} {
		if got := call(t, c, proc, step.msg); got != step.want {
			t.Fatalf("%s: %v, want %s", step.msg, got, step.want)
		}
	}
	if logs := d.logLines(); len(logs) != 0 {
		t.Fatalf("consistent transitions logged: %q", logs)
	}
}

// An inconsistent report is a bug: it is logged through the behaviour's
// logger (never the standard logger), and the caller still gets its reply.
func TestInconsistentTransitionsAreLoggedThroughTheBehaviour(t *testing.T) {
	d := newDoor()
	proc := spawn(t, d)
	c, _ := newCaller(t)
	if got := call(t, c, proc, "lie"); got != "ok" {
		t.Fatalf("lie: %v", got)
	}
	call(t, c, proc, "open")
	if got := call(t, c, proc, "jump"); got != "ok" {
		t.Fatalf("jump: %v", got)
	}
	logs := strings.Join(d.logLines(), "\n")
	if !strings.Contains(logs, "the reported transitions end in open") || !strings.Contains(logs, "not in the transition table") {
		t.Fatalf("logged: %q", logs)
	}
}

// A Call gets exactly one reply: gen.Server would add a 'nil' one if
// HandleCall returned ServerStatusOK.
func TestCallGetsExactlyOneReply(t *testing.T) {
	proc := spawn(t, newDoor())
	c, cb := newCaller(t)
	v, err := c.DirectWithTimeout(callerFn(func(sp *gen.ServerProcess) (interface{}, error) {
		var refs []etf.Ref
		for i := 0; i < 2; i++ {
			ref := sp.MakeRef()
			refs = append(refs, ref)
			if err := sp.Send(proc.Self(), etf.Tuple{etf.Atom("$gen_call"), etf.Tuple{sp.Self(), ref}, "state"}); err != nil {
				return nil, err
			}
		}
		return refs, nil
	}), int(waitLimit/time.Second))
	if err != nil {
		t.Fatal(err)
	}
	refs := v.([]etf.Ref)
	var first []etf.Term
	timeout := time.After(waitLimit)
	for {
		select {
		case m := <-cb.inbox:
			tp, ok := m.(etf.Tuple)
			if !ok || len(tp) != 2 {
				t.Fatalf("unexpected message %#v", m)
			}
			switch tp[0] {
			case refs[0]:
				first = append(first, tp[1])
			case refs[1]:
				// Replies go out in order: an extra reply to the first call
				// would be here by now.
				if len(first) != 1 || first[0] != "closed" {
					t.Fatalf("first call got %#v, want exactly [closed]", first)
				}
				return
			default:
				t.Fatalf("reply with unknown tag %#v", m)
			}
		case <-timeout:
			t.Fatal("no reply to the second call")
		}
	}
}

func TestDirectRepliesAndErrors(t *testing.T) {
	proc := spawn(t, newDoor())
	if v, err := proc.Direct("ping"); err != nil || v != "pong" {
		t.Fatalf("ping: %v %v", v, err)
	}
	if _, err := proc.Direct("fail"); !errors.Is(err, errBoom) {
		t.Fatalf("fail: %v, want errBoom", err)
	}
}

func TestTerminateGetsTheBehavioursState(t *testing.T) {
	d := newDoor()
	proc := spawn(t, d)
	c, _ := newCaller(t)
	call(t, c, proc, "open")
	proc.Kill()
	select {
	case s := <-d.terminated:
		if s != open {
			t.Fatalf("terminated in %s, want open", s)
		}
	case <-time.After(waitLimit):
		t.Fatal("TerminateStateMachine not called")
	}
}

func TestReplyToUnconnectedNodeIsDropped(t *testing.T) {
	d := newDoor()
	d.peers = func(string) bool { return false }
	spawn(t, d)
	var p *statem.Process
	select {
	case p = <-d.proc:
	case <-time.After(waitLimit):
		t.Fatal("machine did not start")
	}
	ghost := gen.ServerFrom{Pid: etf.Pid{Node: "ghost@127.0.0.1", ID: 1000}, Ref: etf.Ref{Node: "ghost@127.0.0.1", ID: [5]uint32{1, 2, 3}}}
	start := time.Now()
	if err := p.Reply(ghost, etf.Atom("late")); !errors.Is(err, statem.ErrNotConnected) {
		t.Fatalf("reply to an unconnected node: %v, want ErrNotConnected", err)
	}
	if el := time.Since(start); el > time.Second {
		t.Fatalf("dropping a reply took %s (a dial?)", el)
	}
	if err := p.Reply(gen.ServerFrom{Pid: etf.Pid{Node: "ghost@127.0.0.1", ID: 1000}}, etf.List{}); !errors.Is(err, ergonode.ErrEmptyTerm) {
		t.Fatalf("empty list to a remote node: %v, want ErrEmptyTerm", err)
	}
	// A local caller is always answered.
	if err := p.Reply(gen.ServerFrom{Pid: p.Self(), Ref: p.MakeRef()}, etf.Atom("here")); err != nil {
		t.Fatalf("reply to a local caller: %v", err)
	}
}

type notAMachine struct{ statem.StateMachine[state] }

func TestSpawnOfANonBehaviourFails(t *testing.T) {
	if _, err := testNode.Spawn("", gen.ProcessOptions{}, &notAMachine{}); err == nil || !strings.Contains(err.Error(), "does not implement") {
		t.Fatalf("spawn: %v", err)
	}
}
