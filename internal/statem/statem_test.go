package statem_test

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
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

// One Ergo node for the whole test binary (ERGO-NOTES §10).
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

// ---- recorder: what the machine saw, in order ----

type recorder struct {
	mu   sync.Mutex
	recs []string
	logs []string
	proc atomic.Pointer[statem.Process]
}

func (r *recorder) add(s string) {
	r.mu.Lock()
	r.recs = append(r.recs, s)
	r.mu.Unlock()
}

func (r *recorder) records() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.recs...)
}

func (r *recorder) logLines() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.logs...)
}

func (r *recorder) count(want string) int {
	n := 0
	for _, s := range r.records() {
		if s == want {
			n++
		}
	}
	return n
}

// waitCount waits until want has been recorded n times.
func (r *recorder) waitCount(t *testing.T, want string, n int) {
	t.Helper()
	for deadline := time.Now().Add(waitLimit); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		if r.count(want) >= n {
			return
		}
	}
	t.Fatalf("waited %v for %q ×%d; records:\n%s", waitLimit, want, n, strings.Join(r.records(), "\n"))
}

func (r *recorder) waitFor(t *testing.T, want string) { t.Helper(); r.waitCount(t, want, 1) }

// index returns the position of the first record equal to want, or -1.
func (r *recorder) index(want string) int {
	for i, s := range r.records() {
		if s == want {
			return i
		}
	}
	return -1
}

// inOrder fails unless every want is recorded, each after the previous one.
func (r *recorder) inOrder(t *testing.T, wants ...string) {
	t.Helper()
	recs := r.records()
	i := 0
	for _, w := range wants {
		for i < len(recs) && recs[i] != w {
			i++
		}
		if i == len(recs) {
			t.Fatalf("%q not found in order %q; records:\n%s", w, wants, strings.Join(recs, "\n"))
		}
		i++
	}
}

func describe(s statem.State, ev interface{}) string {
	switch ev := ev.(type) {
	case statem.Call:
		return fmt.Sprintf("%s: call %v", s, ev.Msg)
	case statem.Cast:
		return fmt.Sprintf("%s: cast %v", s, ev.Msg)
	case statem.Info:
		return fmt.Sprintf("%s: info %v", s, ev.Msg)
	case statem.Direct:
		return fmt.Sprintf("%s: direct %v", s, ev.Msg)
	case statem.Enter:
		return fmt.Sprintf("%s: enter from %q", s, ev.From)
	case statem.StateTimeout:
		return fmt.Sprintf("%s: state_timeout %v", s, ev.Msg)
	case statem.Timeout:
		return fmt.Sprintf("%s: timeout %s %v", s, ev.Name, ev.Msg)
	}
	return fmt.Sprintf("%s: unexpected %T", s, ev)
}

func transition(from, to statem.State) string { return fmt.Sprintf("transition %q -> %q", from, to) }

// ---- fsm: a test machine whose behaviour is a function ----

type handler func(p *statem.Process, s statem.State, ev interface{}) statem.Result

type fsm struct {
	statem.StateMachine
	table    statem.Table
	initial  statem.State
	initActs []interface{}
	initErr  error
	initSend []etf.Term // sent to self from InitStateMachine
	handle   handler
	rec      *recorder
}

var (
	_ statem.Behavior   = (*fsm)(nil)
	_ statem.Observer   = (*fsm)(nil)
	_ statem.Logger     = (*fsm)(nil)
	_ statem.Terminator = (*fsm)(nil)
)

func newFSM(table statem.Table, initial statem.State, h handler) *fsm {
	return &fsm{table: table, initial: initial, handle: h, rec: &recorder{}}
}

func (m *fsm) Table() statem.Table { return m.table }

func (m *fsm) InitStateMachine(p *statem.Process, args ...etf.Term) (statem.State, []interface{}, error) {
	m.rec.proc.Store(p)
	for _, msg := range m.initSend {
		_ = p.Send(p.Self(), msg)
	}
	return m.initial, m.initActs, m.initErr
}

func (m *fsm) HandleEvent(p *statem.Process, s statem.State, ev interface{}) statem.Result {
	m.rec.add(describe(s, ev))
	if m.handle == nil {
		return statem.Result{}
	}
	return m.handle(p, s, ev)
}

func (m *fsm) Transition(from, to statem.State) { m.rec.add(transition(from, to)) }

func (m *fsm) Logf(format string, args ...interface{}) {
	m.rec.mu.Lock()
	m.rec.logs = append(m.rec.logs, fmt.Sprintf(format, args...))
	m.rec.mu.Unlock()
}

func (m *fsm) TerminateStateMachine(p *statem.Process, s statem.State, reason string) {
	m.rec.add(fmt.Sprintf("terminate %s %s", s, reason))
}

// spawn starts b on the test node and kills it when the test ends.
func spawn(t *testing.T, b gen.ProcessBehavior, args ...etf.Term) gen.Process {
	t.Helper()
	proc, err := testNode.Spawn("", gen.ProcessOptions{}, b, args...)
	if err != nil {
		t.Fatalf("spawn: %v", err)
	}
	t.Cleanup(func() { kill(proc) })
	return proc
}

// kill stops proc if it still runs. Ergo's Kill reads the process's
// behavior without its lock, racing with the cleanup of a process that
// already exited; IsAlive takes the lock, so ask it first.
func kill(proc gen.Process) {
	if proc.IsAlive() {
		proc.Kill()
	}
	_ = proc.WaitWithTimeout(waitLimit)
}

func stateOf(t *testing.T, proc gen.Process) statem.State {
	t.Helper()
	s, err := statem.StateOf(proc)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// ---- caller: a helper process to call the machine from test code ----

// callerFn runs inside the caller's HandleDirect (the Direct-closure idiom).
type callerFn func(sp *gen.ServerProcess) (interface{}, error)

type caller struct {
	gen.Server
	inbox chan etf.Term
}

func (c *caller) HandleDirect(sp *gen.ServerProcess, ref etf.Ref, m interface{}) (interface{}, gen.DirectStatus) {
	f, ok := m.(callerFn)
	if !ok {
		return nil, lib.ErrUnsupportedRequest
	}
	v, err := f(sp)
	return v, err
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

func run(t *testing.T, c gen.Process, f callerFn) (interface{}, error) {
	t.Helper()
	return c.DirectWithTimeout(f, int(waitLimit/time.Second)+5)
}

// call makes a gen_server-style call from c to the machine and returns the reply.
func call(t *testing.T, c gen.Process, to gen.Process, msg etf.Term) etf.Term {
	t.Helper()
	v, err := run(t, c, func(sp *gen.ServerProcess) (interface{}, error) {
		return sp.CallWithTimeout(to.Self(), msg, int(waitLimit/time.Second))
	})
	if err != nil {
		t.Fatalf("call %v: %v", msg, err)
	}
	return v
}

func cast(t *testing.T, c gen.Process, to gen.Process, msg etf.Term) {
	t.Helper()
	if _, err := run(t, c, func(sp *gen.ServerProcess) (interface{}, error) {
		return nil, sp.Cast(to.Self(), msg)
	}); err != nil {
		t.Fatalf("cast %v: %v", msg, err)
	}
}

type callResult struct {
	v   etf.Term
	err error
}

// goCall calls from a fresh caller process in the background.
func goCall(t *testing.T, to gen.Process, msg etf.Term) <-chan callResult {
	t.Helper()
	c, _ := newCaller(t)
	out := make(chan callResult, 1)
	go func() {
		v, err := c.DirectWithTimeout(callerFn(func(sp *gen.ServerProcess) (interface{}, error) {
			return sp.CallWithTimeout(to.Self(), msg, int(waitLimit/time.Second))
		}), int(waitLimit/time.Second)+5)
		out <- callResult{v, err}
	}()
	return out
}

func await(t *testing.T, ch <-chan callResult) callResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(waitLimit + 10*time.Second):
		t.Fatal("no result")
	}
	return callResult{}
}

func replyTo(c statem.Call, msg etf.Term) []interface{} {
	return []interface{}{statem.Reply{From: c.From, Msg: msg}}
}

// ---- the code lock ----

const (
	locked statem.State = "locked"
	open   statem.State = "open"
)

func lockTable() statem.Table { return statem.Table{locked: {open}, open: {locked}} }

var errBoom = errors.New("boom")

// codeLock: {button, Code} opens with the right code, a state timeout
// relocks; "state" answers in every state; "wait_open" is postponed while
// locked; {goto, S} asks for any transition; "stop" replies and stops.
// Direct requests mirror the calls.
func codeLock(code string, openFor time.Duration) handler {
	return func(p *statem.Process, s statem.State, ev interface{}) statem.Result {
		switch ev := ev.(type) {
		case statem.Enter:
			if s == open {
				return statem.Result{Actions: []interface{}{statem.SetStateTimeout{After: openFor, Msg: "relock"}}}
			}
		case statem.StateTimeout:
			return statem.Result{Next: locked}
		case statem.Call:
			switch msg := ev.Msg.(type) {
			case etf.Tuple:
				if len(msg) == 2 && msg[0] == etf.Atom("button") {
					switch {
					case s == open:
						return statem.Result{Actions: replyTo(ev, "already_open")}
					case msg[1] == code:
						return statem.Result{Next: open, Actions: replyTo(ev, "open")}
					}
					return statem.Result{Actions: replyTo(ev, "wrong")}
				}
				if len(msg) == 2 && msg[0] == etf.Atom("goto") {
					acts := append(replyTo(ev, "ok"), statem.SetTimeout{Name: "after_goto", After: time.Millisecond, Msg: string(s)})
					return statem.Result{Next: statem.State(msg[1].(string)), Actions: acts}
				}
				if len(msg) == 2 && msg[0] == etf.Atom("stop") {
					return statem.Result{Stop: msg[1].(string), Actions: replyTo(ev, "bye")}
				}
			case string:
				switch msg {
				case "state":
					return statem.Result{Actions: replyTo(ev, string(s))}
				case "wait_open":
					if s == locked {
						return statem.Result{Actions: []interface{}{statem.Postpone{}}}
					}
					return statem.Result{Actions: replyTo(ev, "opened")}
				case "later":
					from := ev.From
					go func() { // answered from another goroutine
						time.Sleep(5 * time.Millisecond)
						_ = p.Reply(from, "late "+string(s))
					}()
					return statem.Result{}
				}
			}
		case statem.Direct:
			switch ev.Msg {
			case "ping":
				return statem.Result{Actions: []interface{}{statem.DirectReply{Ref: ev.Ref, Msg: "pong"}}}
			case "fail":
				return statem.Result{Actions: []interface{}{statem.DirectReply{Ref: ev.Ref, Err: errBoom}}}
			case "wait_open":
				if s == locked {
					return statem.Result{Actions: []interface{}{statem.Postpone{}}}
				}
				return statem.Result{Actions: []interface{}{statem.DirectReply{Ref: ev.Ref, Msg: "opened"}}}
			case "stop":
				return statem.Result{Stop: "direct_stop", Actions: []interface{}{statem.DirectReply{Ref: ev.Ref, Msg: "bye"}}}
			}
		}
		return statem.Result{}
	}
}

func button(code string) etf.Tuple { return etf.Tuple{etf.Atom("button"), code} }

// ---- tests ----

func TestTableAllows(t *testing.T) {
	tb := statem.Table{"a": {"b", "c"}, "b": {"a"}}
	cases := []struct {
		from, to statem.State
		want     bool
	}{
		{"a", "b", true}, {"a", "c", true}, {"b", "a", true},
		{"b", "c", false}, {"c", "a", false}, {"a", "a", false}, {"a", "", false}, {"", "a", false},
	}
	for _, c := range cases {
		if got := tb.Allows(c.from, c.to); got != c.want {
			t.Errorf("Allows(%q, %q) = %v, want %v", c.from, c.to, got, c.want)
		}
	}
}

func TestTableValidate(t *testing.T) {
	if err := lockTable().Validate(); err != nil {
		t.Fatalf("valid table: %v", err)
	}
	if err := (statem.Table{}).Validate(); err != nil {
		t.Fatalf("empty table: %v", err)
	}
	for _, bad := range []statem.Table{{"": {"a"}}, {"a": {"b", ""}}} {
		if err := bad.Validate(); !errors.Is(err, statem.ErrInvalidTable) {
			t.Errorf("%v: want ErrInvalidTable, got %v", bad, err)
		}
	}
}

func TestCodeLock(t *testing.T) {
	m := newFSM(lockTable(), locked, codeLock("1234", 50*time.Millisecond))
	lock := spawn(t, m)
	c, _ := newCaller(t)

	if got := call(t, c, lock, button("0000")); got != "wrong" {
		t.Fatalf("wrong code: reply %v", got)
	}
	if s := stateOf(t, lock); s != locked {
		t.Fatalf("wrong code: state %q, want locked", s)
	}
	if got := call(t, c, lock, button("1234")); got != "open" {
		t.Fatalf("right code: reply %v", got)
	}
	// The state timeout armed on entering open relocks.
	m.rec.waitFor(t, `locked: enter from "open"`)
	m.rec.inOrder(t,
		transition("", locked), `locked: enter from ""`,
		"locked: call [button 0000]",
		"locked: call [button 1234]", transition(locked, open), `open: enter from "locked"`,
		"open: state_timeout relock", transition(open, locked), `locked: enter from "open"`)
	if s := stateOf(t, lock); s != locked {
		t.Fatalf("after relock: state %q", s)
	}
	if n := m.rec.count(`open: enter from "locked"`); n != 1 {
		t.Fatalf("entered open %d times, want 1", n)
	}
}

func TestInitialEnterComesFirstWithEmptyFrom(t *testing.T) {
	m := newFSM(lockTable(), locked, codeLock("1234", time.Hour))
	// A message InitStateMachine sends to itself is queued before the
	// package's own wake-up message; the Enter must still come first.
	m.initSend = []etf.Term{"early"}
	lock := spawn(t, m)
	// A Direct request may also overtake the wake-up message.
	if v, err := lock.Direct("ping"); err != nil || v != "pong" {
		t.Fatalf("direct ping: %v %v", v, err)
	}
	c, _ := newCaller(t)
	call(t, c, lock, "state") // the wake-up message has surely been handled now
	recs := m.rec.records()
	want := []string{transition("", locked), `locked: enter from ""`}
	if len(recs) < 2 || !reflect.DeepEqual(recs[:2], want) {
		t.Fatalf("records %q, want prefix %q", recs, want)
	}
	m.rec.inOrder(t, `locked: enter from ""`, "locked: info early", "locked: call state")
	if n := m.rec.count(`locked: enter from ""`); n != 1 {
		t.Fatalf("initial enter delivered %d times", n)
	}
}

func TestUndeclaredTransitionRefused(t *testing.T) {
	m := newFSM(lockTable(), locked, codeLock("1234", time.Hour))
	lock := spawn(t, m)
	c, _ := newCaller(t)

	// Not in the table: refused and logged, but the reply and the other
	// action of that Result still run.
	if got := call(t, c, lock, etf.Tuple{etf.Atom("goto"), "broken"}); got != "ok" {
		t.Fatalf("goto broken: reply %v", got)
	}
	m.rec.waitFor(t, "locked: timeout after_goto locked")
	if s := stateOf(t, lock); s != locked {
		t.Fatalf("state %q after refused transition", s)
	}
	logs := m.rec.logLines()
	if len(logs) != 1 || !strings.Contains(logs[0], `"locked" -> "broken"`) {
		t.Fatalf("want one log line naming from and to, got %q", logs)
	}
	if m.rec.index(transition(locked, "broken")) >= 0 || m.rec.index(`broken: enter from "locked"`) >= 0 {
		t.Fatalf("refused transition was observed: %q", m.rec.records())
	}

	// A declared one goes through.
	if got := call(t, c, lock, etf.Tuple{etf.Atom("goto"), "open"}); got != "ok" {
		t.Fatalf("goto open: reply %v", got)
	}
	if s := stateOf(t, lock); s != open {
		t.Fatalf("state %q after allowed transition", s)
	}
	m.rec.waitFor(t, `open: enter from "locked"`)
	// The timer armed with the change runs in the new state. (Waiting for
	// it also keeps the test from killing the machine with a timer message
	// in flight, which trips a data race inside Ergo.)
	m.rec.waitFor(t, "open: timeout after_goto locked")
}

func TestSameStateIsNotAChange(t *testing.T) {
	const a statem.State = "a"
	m := newFSM(statem.Table{a: {"b"}}, a, func(p *statem.Process, s statem.State, ev interface{}) statem.Result {
		switch ev := ev.(type) {
		case statem.Cast:
			switch ev.Msg {
			case "arm":
				return statem.Result{Actions: []interface{}{statem.SetStateTimeout{After: 50 * time.Millisecond, Msg: "kept"}}}
			case "same":
				return statem.Result{Next: a}
			}
		}
		return statem.Result{}
	})
	proc := spawn(t, m)
	c, _ := newCaller(t)
	cast(t, c, proc, "arm")
	cast(t, c, proc, "same")
	// Had "same" counted as a change, the state timeout would be cancelled.
	m.rec.waitFor(t, "a: state_timeout kept")
	m.rec.inOrder(t, "a: cast arm", "a: cast same", "a: state_timeout kept")
	if n := m.rec.count(`a: enter from "a"`); n != 0 {
		t.Fatalf("same-state Next delivered Enter %d times", n)
	}
	if logs := m.rec.logLines(); len(logs) != 0 {
		t.Fatalf("same-state Next was logged: %q", logs)
	}
}

func TestPostponedCallAnsweredAfterStateChange(t *testing.T) {
	m := newFSM(lockTable(), locked, codeLock("1234", time.Hour))
	lock := spawn(t, m)
	c, _ := newCaller(t)

	waiting := goCall(t, lock, "wait_open")
	m.rec.waitFor(t, "locked: call wait_open")
	select {
	case r := <-waiting:
		t.Fatalf("postponed call answered while locked: %v", r)
	default:
	}
	if got := call(t, c, lock, button("1234")); got != "open" {
		t.Fatalf("right code: reply %v", got)
	}
	r := await(t, waiting)
	if r.err != nil || r.v != "opened" {
		t.Fatalf("postponed call: %v %v", r.v, r.err)
	}
	m.rec.inOrder(t, "locked: call wait_open", "locked: call [button 1234]",
		transition(locked, open), `open: enter from "locked"`, "open: call wait_open")
}

// Postponed events replay in arrival order, before messages already in the
// mailbox. When a replayed event changes state again, the events postponed
// since the last change come first, then the ones not yet replayed, and
// they may be postponed again in the new state.
func TestPostponedEventsReplayInOrderAndRequeue(t *testing.T) {
	const a, b, c statem.State = "a", "b", "c"
	m := newFSM(statem.Table{a: {b, c}, b: {a}}, a, func(p *statem.Process, s statem.State, ev interface{}) statem.Result {
		switch ev := ev.(type) {
		case statem.Call:
			msg := ev.Msg.(string)
			switch {
			case s == a, s == b && msg == "x1":
				return statem.Result{Actions: []interface{}{statem.Postpone{}}}
			case s == b && msg == "x2":
				return statem.Result{Next: a, Actions: replyTo(ev, msg+"@b")}
			}
			return statem.Result{Actions: replyTo(ev, msg+"@"+string(s))}
		case statem.Cast:
			// The marker is already in the mailbox when the replay starts.
			_ = p.Send(p.Self(), "marker")
			return statem.Result{Next: statem.State(ev.Msg.(string))}
		}
		return statem.Result{}
	})
	proc := spawn(t, m)
	cl, _ := newCaller(t)

	results := map[string]<-chan callResult{}
	for _, x := range []string{"x1", "x2", "x3"} {
		results[x] = goCall(t, proc, x)
		m.rec.waitFor(t, "a: call "+x) // fixes the arrival order
	}
	cast(t, cl, proc, "b")
	if r := await(t, results["x2"]); r.err != nil || r.v != "x2@b" {
		t.Fatalf("x2: %v %v", r.v, r.err)
	}
	m.rec.waitFor(t, "a: info marker")
	for _, x := range []string{"x1", "x3"} {
		select {
		case r := <-results[x]:
			t.Fatalf("%s answered before the next state change: %v", x, r)
		default:
		}
	}
	cast(t, cl, proc, "c")
	for _, x := range []string{"x1", "x3"} {
		if r := await(t, results[x]); r.err != nil || r.v != x+"@c" {
			t.Fatalf("%s: %v %v", x, r.v, r.err)
		}
	}
	m.rec.waitFor(t, "c: info marker")

	want := []string{
		transition("", a), `a: enter from ""`,
		"a: call x1", "a: call x2", "a: call x3",
		"a: cast b", transition(a, b), `b: enter from "a"`,
		"b: call x1", // postponed again
		"b: call x2", transition(b, a), `a: enter from "b"`,
		"a: call x1", "a: call x3", // postponed x1 first, then the rest
		"a: info marker",
		"a: cast c", transition(a, c), `c: enter from "a"`,
		"c: call x1", "c: call x3",
		"c: info marker",
	}
	if got := m.rec.records(); !reflect.DeepEqual(got, want) {
		t.Fatalf("records:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestCallAnsweredFromEveryState(t *testing.T) {
	states := []statem.State{"s1", "s2", "s3"}
	next := map[statem.State]statem.State{"s1": "s2", "s2": "s3", "s3": "s1"}
	table := statem.Table{}
	for from, to := range next {
		table[from] = []statem.State{to}
	}
	m := newFSM(table, "s1", func(p *statem.Process, s statem.State, ev interface{}) statem.Result {
		switch ev := ev.(type) {
		case statem.Call:
			return statem.Result{Actions: replyTo(ev, "in "+string(s))}
		case statem.Cast:
			return statem.Result{Next: next[s]}
		}
		return statem.Result{}
	})
	proc := spawn(t, m)
	c, _ := newCaller(t)
	for round := 0; round < 2; round++ {
		for _, s := range states {
			if got := call(t, c, proc, "where"); got != "in "+string(s) {
				t.Fatalf("round %d: in %s got %v", round, s, got)
			}
			cast(t, c, proc, "next")
		}
	}
}

func TestReplyFromAnotherGoroutine(t *testing.T) {
	m := newFSM(lockTable(), locked, codeLock("1234", time.Hour))
	lock := spawn(t, m)
	c, _ := newCaller(t)
	if got := call(t, c, lock, "later"); got != "late locked" {
		t.Fatalf("async reply: %v", got)
	}
}

// A Call must get exactly one reply: gen.Server would add a 'nil' one if
// HandleCall returned ServerStatusOK.
func TestCallGetsExactlyOneReply(t *testing.T) {
	m := newFSM(lockTable(), locked, codeLock("1234", time.Hour))
	lock := spawn(t, m)
	c, cb := newCaller(t)
	v, err := run(t, c, func(sp *gen.ServerProcess) (interface{}, error) {
		var refs []etf.Ref
		for i := 0; i < 2; i++ {
			ref := sp.MakeRef()
			refs = append(refs, ref)
			req := etf.Tuple{etf.Atom("$gen_call"), etf.Tuple{sp.Self(), ref}, "state"}
			if err := sp.Send(lock.Self(), req); err != nil {
				return nil, err
			}
		}
		return refs, nil
	})
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
				// Replies go out in order: any extra reply to the first
				// call would be here by now.
				if len(first) != 1 || first[0] != "locked" {
					t.Fatalf("first call got replies %#v, want exactly [locked]", first)
				}
				if tp[1] != "locked" {
					t.Fatalf("second call got %#v", tp[1])
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

func TestStaleTimeoutsIgnored(t *testing.T) {
	const a, b statem.State = "a", "b"
	m := newFSM(statem.Table{a: {b}}, a, func(p *statem.Process, s statem.State, ev interface{}) statem.Result {
		if ev, ok := ev.(statem.Cast); ok {
			switch ev.Msg {
			case "arm":
				// Queued before the timers are even armed.
				_ = p.Cast(p.Self(), "slow")
				return statem.Result{Actions: []interface{}{
					statem.SetStateTimeout{After: 10 * time.Millisecond, Msg: "stale"},
					statem.SetTimeout{Name: "n", After: 10 * time.Millisecond, Msg: "old"},
				}}
			case "slow":
				// Hold the process until both timers have fired and
				// queued their messages; then change state and re-arm "n".
				mailbox := p.ProcessChannels().Mailbox
				for deadline := time.Now().Add(waitLimit); len(mailbox) < 2 && time.Now().Before(deadline); {
					time.Sleep(time.Millisecond)
				}
				_ = p.Send(p.Self(), "marker") // queued behind the timer messages
				return statem.Result{Next: b, Actions: []interface{}{
					statem.SetTimeout{Name: "n", After: time.Hour, Msg: "new"},
				}}
			}
		}
		return statem.Result{}
	})
	proc := spawn(t, m)
	c, _ := newCaller(t)
	cast(t, c, proc, "arm")
	m.rec.waitFor(t, "b: info marker")
	for _, r := range m.rec.records() {
		if strings.Contains(r, "timeout") {
			t.Fatalf("stale timer delivered: %q", r)
		}
	}
	if n := statem.StaleTimeouts(m.rec.proc.Load()); n != 2 {
		t.Fatalf("dropped %d stale timer messages, want 2", n)
	}
}

func TestNamedTimeoutsReplaceAndCancel(t *testing.T) {
	const a, b statem.State = "a", "b"
	m := newFSM(statem.Table{a: {b}}, a, func(p *statem.Process, s statem.State, ev interface{}) statem.Result {
		if ev, ok := ev.(statem.Cast); ok && ev.Msg == "arm" {
			return statem.Result{Next: b, Actions: []interface{}{ // named timeouts survive the change
				statem.SetTimeout{Name: "t", After: 20 * time.Millisecond, Msg: "first"},
				statem.SetTimeout{Name: "t", After: 60 * time.Millisecond, Msg: "second"},
				statem.SetTimeout{Name: "c", After: 20 * time.Millisecond, Msg: "cancelled"},
				statem.CancelTimeout{Name: "c"},
				statem.SetTimeout{Name: "keep", After: 40 * time.Millisecond, Msg: "kept"},
				statem.SetTimeout{Name: "end", After: 300 * time.Millisecond, Msg: "sentinel"},
			}}
		}
		return statem.Result{}
	})
	proc := spawn(t, m)
	c, _ := newCaller(t)
	cast(t, c, proc, "arm")
	m.rec.waitFor(t, "b: timeout end sentinel")
	var got []string
	for _, r := range m.rec.records() {
		if strings.Contains(r, "timeout") {
			got = append(got, r)
		}
	}
	want := map[string]bool{"b: timeout t second": true, "b: timeout keep kept": true, "b: timeout end sentinel": true}
	if len(got) != len(want) {
		t.Fatalf("timeouts %q, want each of %v once", got, want)
	}
	for _, g := range got {
		if !want[g] {
			t.Fatalf("unexpected timeout %q (all: %q)", g, got)
		}
	}
}

func TestStopWithReply(t *testing.T) {
	for _, reason := range []string{"normal", "done", "100% done"} {
		t.Run(reason, func(t *testing.T) {
			m := newFSM(lockTable(), locked, codeLock("1234", time.Hour))
			lock := spawn(t, m)
			c, cb := newCaller(t)
			if _, err := run(t, c, func(sp *gen.ServerProcess) (interface{}, error) {
				return sp.MonitorProcess(lock.Self()), nil
			}); err != nil {
				t.Fatal(err)
			}
			if got := call(t, c, lock, etf.Tuple{etf.Atom("stop"), reason}); got != "bye" {
				t.Fatalf("stop: reply %v", got)
			}
			if err := lock.WaitWithTimeout(waitLimit); err != nil {
				t.Fatalf("machine did not stop: %v", err)
			}
			select {
			case msg := <-cb.inbox:
				down, ok := msg.(gen.MessageDown)
				if !ok || down.Reason != reason {
					t.Fatalf("monitor got %#v, want reason %q", msg, reason)
				}
			case <-time.After(waitLimit):
				t.Fatal("no DOWN message")
			}
			m.rec.waitFor(t, "terminate locked "+reason)
		})
	}
}

func TestDirectFromGoCode(t *testing.T) {
	m := newFSM(lockTable(), locked, codeLock("1234", time.Hour))
	lock := spawn(t, m)
	c, _ := newCaller(t)

	if v, err := lock.Direct("ping"); err != nil || v != "pong" {
		t.Fatalf("ping: %v %v", v, err)
	}
	if _, err := lock.Direct("fail"); !errors.Is(err, errBoom) {
		t.Fatalf("fail: want errBoom, got %v", err)
	}
	// A postponed Direct is answered after the state change.
	done := make(chan callResult, 1)
	go func() {
		v, err := lock.DirectWithTimeout("wait_open", int(waitLimit/time.Second))
		done <- callResult{v, err}
	}()
	m.rec.waitFor(t, "locked: direct wait_open")
	call(t, c, lock, button("1234"))
	if r := await(t, done); r.err != nil || r.v != "opened" {
		t.Fatalf("postponed direct: %v %v", r.v, r.err)
	}
	// Stop from a Direct: the reply is handed over, then the process stops.
	// Ergo's Direct wait may still prefer the process's end to the reply
	// (see the package doc), so the caller sees one or the other.
	v, err := lock.Direct("stop")
	if !(err == nil && v == "bye") && !errors.Is(err, lib.ErrProcessTerminated) {
		t.Fatalf("stop: %v %v", v, err)
	}
	if err := lock.WaitWithTimeout(waitLimit); err != nil {
		t.Fatalf("machine did not stop: %v", err)
	}
	m.rec.waitFor(t, "terminate open direct_stop")
	if logs := m.rec.logLines(); len(logs) != 0 {
		t.Fatalf("a reply failed: %q", logs)
	}
}

func TestPostponedDirectFailsOnStop(t *testing.T) {
	m := newFSM(lockTable(), locked, codeLock("1234", time.Hour))
	lock := spawn(t, m)
	c, _ := newCaller(t)
	done := make(chan callResult, 1)
	go func() {
		v, err := lock.DirectWithTimeout("wait_open", int(waitLimit/time.Second))
		done <- callResult{v, err}
	}()
	m.rec.waitFor(t, "locked: direct wait_open")
	call(t, c, lock, etf.Tuple{etf.Atom("stop"), "normal"})
	if r := await(t, done); !errors.Is(r.err, statem.ErrStopped) {
		t.Fatalf("postponed direct on stop: %v %v, want ErrStopped", r.v, r.err)
	}
}

func TestEnterCannotChangeStateOrPostpone(t *testing.T) {
	const a, b statem.State = "a", "b"
	m := newFSM(statem.Table{a: {b}, b: {a}}, a, func(p *statem.Process, s statem.State, ev interface{}) statem.Result {
		if _, ok := ev.(statem.Enter); ok {
			return statem.Result{Next: b, Actions: []interface{}{statem.Postpone{}}}
		}
		return statem.Result{}
	})
	proc := spawn(t, m)
	if s := stateOf(t, proc); s != a {
		t.Fatalf("state %q", s)
	}
	c, _ := newCaller(t)
	cast(t, c, proc, "sync")
	m.rec.waitFor(t, "a: cast sync")
	logs := m.rec.logLines()
	if len(logs) != 2 || !strings.Contains(logs[0], `"a" -> "b"`) || !strings.Contains(logs[1], "Postpone") {
		t.Fatalf("log lines %q", logs)
	}
	if s := stateOf(t, proc); s != a {
		t.Fatalf("state %q after enter asked to change", s)
	}
}

// A panic in HandleEvent is Ergo's to recover: the process exits with
// reason "panic" and the Terminator still runs.
func TestPanicStopsWithReasonPanic(t *testing.T) {
	const a statem.State = "a"
	m := newFSM(statem.Table{}, a, func(p *statem.Process, s statem.State, ev interface{}) statem.Result {
		if c, ok := ev.(statem.Cast); ok && c.Msg == "panic" {
			panic("deliberate")
		}
		return statem.Result{}
	})
	proc := spawn(t, m)
	c, _ := newCaller(t)
	cast(t, c, proc, "panic")
	if err := proc.WaitWithTimeout(waitLimit); err != nil {
		t.Fatalf("machine did not exit: %v", err)
	}
	m.rec.waitFor(t, "terminate a panic")
}

// The initial Enter runs as the first event, not inside Init, so it may
// Call other processes without hanging Spawn.
func TestInitialEnterMayCall(t *testing.T) {
	echo, _ := newEcho(t)
	m := newFSM(lockTable(), locked, func(p *statem.Process, s statem.State, ev interface{}) statem.Result {
		if e, ok := ev.(statem.Enter); ok && e.From == "" {
			v, err := p.Call(echo.Self(), "hello")
			p.Data = fmt.Sprintf("%v %v", v, err)
		}
		if c, ok := ev.(statem.Call); ok {
			return statem.Result{Actions: replyTo(c, p.Data)}
		}
		return statem.Result{}
	})
	spawned := make(chan gen.Process, 1)
	go func() {
		proc, err := testNode.Spawn("", gen.ProcessOptions{}, m)
		if err != nil {
			t.Error(err)
		}
		spawned <- proc
	}()
	var proc gen.Process
	select {
	case proc = <-spawned:
	case <-time.After(waitLimit):
		t.Fatal("Spawn hung")
	}
	if proc == nil {
		return
	}
	defer kill(proc)
	c, _ := newCaller(t)
	if got := call(t, c, proc, "data"); got != "hello <nil>" {
		t.Fatalf("enter's call result %v", got)
	}
}

type echo struct{ gen.Server }

func (e *echo) HandleCall(sp *gen.ServerProcess, from gen.ServerFrom, m etf.Term) (etf.Term, gen.ServerStatus) {
	return m, gen.ServerStatusOK
}

func newEcho(t *testing.T) (gen.Process, *echo) {
	e := &echo{}
	return spawn(t, e), e
}

type notAMachine struct{ statem.StateMachine }

func TestSpawnFailures(t *testing.T) {
	cases := []struct {
		name string
		b    gen.ProcessBehavior
		want error
	}{
		{"init error", &fsm{table: lockTable(), initial: locked, initErr: errBoom, rec: &recorder{}}, errBoom},
		{"empty initial state", &fsm{table: lockTable(), rec: &recorder{}}, statem.ErrNoInitialState},
		{"bad table", &fsm{table: statem.Table{"a": {""}}, initial: "a", rec: &recorder{}}, statem.ErrInvalidTable},
		{"not a Behavior", &notAMachine{}, statem.ErrNotStateMachine},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// Twice under one name: the failed first Spawn must not keep it.
			for i := 0; i < 2; i++ {
				_, err := testNode.Spawn("statem_fail", gen.ProcessOptions{}, c.b)
				if !errors.Is(err, c.want) {
					t.Fatalf("spawn #%d: want %v, got %v", i+1, c.want, err)
				}
			}
		})
	}
}

func TestStateOfNonMachine(t *testing.T) {
	e, _ := newEcho(t)
	if _, err := statem.StateOf(e); err == nil {
		t.Fatal("StateOf a plain gen.Server: want error")
	}
}

func TestExampleDoor(t *testing.T) {
	door := spawn(t, &Door{})
	c, _ := newCaller(t)
	if got := call(t, c, door, "state"); got != "closed" {
		t.Fatalf("initial: %v", got)
	}
	if v, err := door.Direct("open"); err != nil || v != "open" {
		t.Fatalf("open: %v %v", v, err)
	}
	if got := call(t, c, door, "state"); got != "open" {
		t.Fatalf("after open: %v", got)
	}
	if _, err := door.Direct("kick"); err == nil {
		t.Fatal("kick: want error")
	}
	if v, err := door.Direct("close"); err != nil || v != "closed" {
		t.Fatalf("close: %v %v", v, err)
	}
	if s := stateOf(t, door); s != "closed" {
		t.Fatalf("state %q", s)
	}
}

// ---- Connectivity: no reply dials from the machine's goroutine ----

type island struct {
	statem.StateMachine
	proc atomic.Pointer[statem.Process]
}

func (i *island) Table() statem.Table { return statem.Table{"on": nil} }

func (i *island) InitStateMachine(p *statem.Process, args ...etf.Term) (statem.State, []interface{}, error) {
	i.proc.Store(p)
	return "on", nil, nil
}

func (i *island) HandleEvent(p *statem.Process, state statem.State, ev interface{}) statem.Result {
	return statem.Result{}
}

// Connected knows only this node's own peers: none.
func (i *island) Connected(node string) bool { return false }

func TestReplyToUnconnectedNodeIsDropped(t *testing.T) {
	b := &island{}
	spawn(t, b)
	var p *statem.Process
	for deadline := time.Now().Add(waitLimit); p == nil && time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		p = b.proc.Load()
	}
	if p == nil {
		t.Fatal("machine did not start")
	}
	ghost := gen.ServerFrom{Pid: etf.Pid{Node: "ghost@127.0.0.1", ID: 1000}, Ref: etf.Ref{Node: "ghost@127.0.0.1", ID: [5]uint32{1, 2, 3}}}
	if err := p.Reply(ghost, etf.Atom("late")); !errors.Is(err, statem.ErrNotConnected) {
		t.Fatalf("reply to an unconnected node: %v, want ErrNotConnected", err)
	}
	if n := p.DroppedReplies(); n != 1 {
		t.Fatalf("dropped %d replies, want 1", n)
	}
	// A local caller is always answered.
	local := gen.ServerFrom{Pid: p.Self(), Ref: p.MakeRef()}
	if err := p.Reply(local, etf.Atom("here")); err != nil {
		t.Fatalf("reply to a local caller: %v", err)
	}
	if n := p.DroppedReplies(); n != 1 {
		t.Fatalf("dropped %d replies after a local one, want 1", n)
	}
}
