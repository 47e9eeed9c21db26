// Package statem runs a gen_statem-style process on Ergo's gen.Server,
// whose state and transition table belong to the behaviour (in cloister,
// the Monitor's pure core): the machine keeps no copy of either.
//
// A behaviour embeds StateMachine instead of gen.Server and implements
// Behavior. Every mailbox message and Direct request is one Event (Call,
// Info, Direct) handed to HandleEvent, which returns a Result: the
// transitions the event caused, in order, and actions as data (Reply,
// DirectReply). The machine checks each reported transition against the
// behaviour's table and its current state, and logs any inconsistency
// through the behaviour's logger: a bug, never a user error.
//
// # Where callbacks run
//
// InitStateMachine runs inside gen.Server's Init, on the goroutine that
// called Spawn: it must not Call another process (that hangs Spawn), and
// should not fail under a supervisor (a failing child Init hangs Ergo's
// supervisor). Do fallible work in messages sent to self.
//
// HandleEvent, TerminateStateMachine, Connected and Logf run on the
// process, one at a time. A panic in HandleEvent is not recovered here:
// Ergo recovers it and the process exits with reason "panic".
//
// Casts are ignored (the Monitor's protocol has none).
package statem

import (
	"errors"
	"fmt"

	"github.com/cloister-go/cloister/internal/wire/ergonode"
	"github.com/ergo-services/ergo/etf"
	"github.com/ergo-services/ergo/gen"
)

// Event is what HandleEvent receives: Call, Info or Direct.
type Event interface{ isEvent() }

// Call is a gen_server:call (or a ServerProcess.Call from Go). Answer it
// with a Reply action.
type Call struct {
	From gen.ServerFrom
	Msg  etf.Term
}

// Info is any other mailbox message (plain sends, node events, ...).
type Info struct{ Msg etf.Term }

// Direct is a process.Direct request from Go code. Answer it with a
// DirectReply action.
type Direct struct {
	Ref etf.Ref
	Msg interface{}
}

func (Call) isEvent()   {}
func (Info) isEvent()   {}
func (Direct) isEvent() {}

// Action is what a Result asks the machine to do: Reply or DirectReply.
type Action interface{ isAction() }

// Reply answers a Call.
type Reply struct {
	From gen.ServerFrom
	Msg  etf.Term
}

// DirectReply answers a Direct request; Err, if set, is what Direct
// returns.
type DirectReply struct {
	Ref etf.Ref
	Msg interface{}
	Err error
}

func (Reply) isAction()       {}
func (DirectReply) isAction() {}

// Transition is one change of state reported in a Result.
type Transition[S comparable] struct{ From, To S }

// Result is what HandleEvent returns.
type Result[S comparable] struct {
	// Transitions the event caused, in order. The first starts at the
	// state before the event and the last ends at the behaviour's State
	// after it; none when the state did not change.
	Transitions []Transition[S]
	// Actions run in order, after the event was handled.
	Actions []Action
}

// Behavior is what a state machine implements. Embed StateMachine to get
// gen.ServerBehavior.
type Behavior[S comparable] interface {
	gen.ServerBehavior
	// InitStateMachine sets the machine up (see the package doc).
	InitStateMachine(p *Process) error
	// State is the current state, read from the behaviour's own record.
	State() S
	// Allowed reports whether the transition table declares from → to.
	Allowed(from, to S) bool
	// HandleEvent handles one event.
	HandleEvent(p *Process, ev Event) Result[S]
	// TerminateStateMachine runs when the process ends, with the state at
	// that time and Ergo's exit reason.
	TerminateStateMachine(p *Process, state S, reason string)
	// Connected reports whether this node has a connection to node. Ergo
	// sends to a process on a node it is not connected to by dialling it
	// first, on the sending goroutine: a reply to a caller whose node went
	// away would block the machine for a whole connect and handshake
	// (seconds for a frozen peer). Such a reply is dropped instead.
	Connected(node string) bool
	// Logf logs this package's lines (inconsistent transitions, failed
	// replies) through the behaviour's logger. It must not block.
	Logf(format string, args ...interface{})
}

// ErrNotConnected is returned by Process.Reply for a caller on a node this
// node is not connected to (see Behavior.Connected).
var ErrNotConnected = errors.New("statem: reply dropped: the caller's node is not connected")

// ErrNotStateMachine: the spawned object embeds StateMachine but does not
// implement Behavior.
var ErrNotStateMachine = errors.New("statem: process behavior does not implement statem.Behavior")

// StateMachine is embedded by behaviours instead of gen.Server. It
// implements gen.Server's callbacks and hands them to the Behavior.
type StateMachine[S comparable] struct {
	gen.Server
}

// Process is the running machine, passed to every Behavior method.
type Process struct {
	*gen.ServerProcess
	conn func(node string) bool
}

// Reply answers a Call. A caller on an unconnected node is not answered
// (ErrNotConnected); a top-level empty list to another node is refused
// with an error wrapping ergonode.ErrEmptyTerm (Ergo cannot encode it).
func (p *Process) Reply(from gen.ServerFrom, msg etf.Term) error {
	if node := string(from.Pid.Node); node != p.NodeName() {
		if msg != nil {
			if err := ergonode.CheckSendable(msg); err != nil {
				return fmt.Errorf("statem: reply to %s: %w", from.Pid, err)
			}
		}
		if p.conn != nil && !p.conn(node) {
			return ErrNotConnected
		}
	}
	return p.SendReply(from, msg)
}

func (sm *StateMachine[S]) behavior(sp *gen.ServerProcess) Behavior[S] {
	b, _ := sp.Behavior().(Behavior[S])
	return b
}

// Init implements gen.ServerBehavior.
func (sm *StateMachine[S]) Init(sp *gen.ServerProcess, args ...etf.Term) (err error) {
	defer func() {
		if err != nil {
			// Ergo does not clean up after an Init error (only after a
			// panic): the name would stay taken and a retried Spawn fail.
			if name := sp.Name(); name != "" {
				_ = sp.UnregisterName(name)
			}
			sp.Kill()
		}
	}()
	b := sm.behavior(sp)
	if b == nil {
		return fmt.Errorf("%w: %T", ErrNotStateMachine, sp.Behavior())
	}
	p := &Process{ServerProcess: sp, conn: b.Connected}
	sp.State = p
	return b.InitStateMachine(p)
}

// HandleCall implements gen.ServerBehavior. Replies go out only through
// Reply actions: it returns ServerStatusIgnore, as ServerStatusOK would
// make gen.Server send an extra 'nil'.
func (sm *StateMachine[S]) HandleCall(sp *gen.ServerProcess, from gen.ServerFrom, msg etf.Term) (etf.Term, gen.ServerStatus) {
	sm.deliver(sp, Call{From: from, Msg: msg})
	return nil, gen.ServerStatusIgnore
}

// HandleCast implements gen.ServerBehavior: casts are ignored.
func (sm *StateMachine[S]) HandleCast(sp *gen.ServerProcess, msg etf.Term) gen.ServerStatus {
	return gen.ServerStatusOK
}

// HandleInfo implements gen.ServerBehavior.
func (sm *StateMachine[S]) HandleInfo(sp *gen.ServerProcess, msg etf.Term) gen.ServerStatus {
	sm.deliver(sp, Info{Msg: msg})
	return gen.ServerStatusOK
}

// HandleDirect implements gen.ServerBehavior. Replies go out through
// DirectReply actions.
func (sm *StateMachine[S]) HandleDirect(sp *gen.ServerProcess, ref etf.Ref, msg interface{}) (interface{}, gen.DirectStatus) {
	sm.deliver(sp, Direct{Ref: ref, Msg: msg})
	return nil, gen.DirectStatusIgnore
}

// Terminate implements gen.ServerBehavior.
func (sm *StateMachine[S]) Terminate(sp *gen.ServerProcess, reason string) {
	p, ok := sp.State.(*Process)
	if !ok {
		return
	}
	b := sm.behavior(sp)
	b.TerminateStateMachine(p, b.State(), reason)
}

func (sm *StateMachine[S]) deliver(sp *gen.ServerProcess, ev Event) {
	p := sp.State.(*Process)
	b := sm.behavior(sp)
	before := b.State()
	res := b.HandleEvent(p, ev)
	if err := Check(b.Allowed, before, res.Transitions, b.State()); err != nil {
		b.Logf("statem: %s: %v (event %T)", id(p), err, ev)
	}
	for _, a := range res.Actions {
		switch a := a.(type) {
		case Reply:
			if err := p.Reply(a.From, a.Msg); err != nil && !errors.Is(err, ErrNotConnected) {
				b.Logf("statem: %s: reply to %s failed: %v", id(p), a.From.Pid, err)
			}
		case DirectReply:
			if err := p.ServerProcess.Reply(a.Ref, a.Msg, a.Err); err != nil {
				b.Logf("statem: %s: direct reply failed: %v", id(p), err)
			}
		}
	}
}

// Check reports an error unless ts is a chain of declared transitions from
// before to after (no transition: before == after).
func Check[S comparable](allowed func(from, to S) bool, before S, ts []Transition[S], after S) error {
	at := before
	for _, t := range ts {
		if t.From != at {
			return fmt.Errorf("transition %v -> %v reported in state %v", t.From, t.To, at)
		}
		if !allowed(t.From, t.To) {
			return fmt.Errorf("transition %v -> %v is not in the transition table", t.From, t.To)
		}
		at = t.To
	}
	if at != after {
		return fmt.Errorf("state is %v, but the reported transitions end in %v", after, at)
	}
	return nil
}

// id names the process in log lines.
func id(p *Process) string {
	if name := p.Name(); name != "" {
		return fmt.Sprintf("%s[%s]", p.Self(), name)
	}
	return p.Self().String()
}
