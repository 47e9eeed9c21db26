// Package statem is a gen_statem-style behaviour on top of Ergo's gen.Server.
//
// Ergo v2.2.4 has no state machine behaviour (ERGO-NOTES §12). A user type
// embeds StateMachine instead of gen.Server and implements Behavior: a
// declared transition Table, InitStateMachine and one HandleEvent function
// that receives every event (calls, casts, infos, Direct requests from Go
// code, state enter, timeouts) and returns a Result: the next state and a
// list of actions (replies, postpone, timeouts) as plain data.
//
// # Semantics
//
//   - Transitions are checked against Table. A Result.Next that the table
//     does not allow is refused: it is logged with from and to, the state
//     stays, and the other actions of that Result still run (a Reply still
//     goes out). Next == "" or Next == the current state is not a change:
//     no Enter, timeouts keep running, the table is not consulted.
//   - Enter{From} is delivered right after every real change, before
//     anything else, and once for the initial state with From == "" (before
//     the first other event). An Enter handler cannot change state or
//     postpone (both are logged and ignored); it may reply, arm timeouts and
//     stop.
//   - Calls are answered only by Reply actions or, later and from any
//     goroutine, by Process.Reply. A call may be answered in any state. A call
//     that is neither answered nor postponed leaves the caller waiting until
//     its own timeout. Direct requests are answered by DirectReply actions or
//     Process.ReplyDirect, the same way.
//   - Postpone keeps the event and re-delivers it after the next state
//     change, postponed events in arrival order, before any message still in
//     the mailbox. If a replayed event changes state again, the events not
//     yet replayed are kept in order and replayed after that change (they
//     may be postponed again).
//   - SetStateTimeout arms the one state timeout (re-arming replaces it); it
//     is cancelled by any state change. SetTimeout arms a named timeout that
//     survives state changes; re-arming a name replaces it, CancelTimeout
//     removes it. A timer that fired before being replaced or cancelled is
//     recognised as stale and dropped, never delivered. In a Result that
//     changes state, timeouts are armed after the change, for the new state.
//   - Result.Stop stops the process with that reason ("normal" is a normal
//     exit). Reply and DirectReply actions of that Result are sent first;
//     Next and other actions are ignored; pending postponed Direct requests
//     are answered with ErrStopped. Stopping from a Direct event takes
//     effect on the next mailbox turn; events arriving in between are not
//     delivered. A Go caller whose Direct request stopped the machine may
//     get lib.ErrProcessTerminated instead of its reply: Ergo's Direct wait
//     picks at random when the reply and the process's end are both ready.
//     Stop through a Call (whose reply is a message and always arrives
//     first) when the answer matters.
//
// # Where callbacks run
//
// InitStateMachine runs inside gen.Server's Init, in the goroutine that
// called Spawn. It must not Call another process: that hangs Spawn forever
// (ERGO-NOTES §4.6). Do fallible or blocking work in the Enter for the
// initial state, which runs as the process's first event. Returning an error
// fails Spawn; under a supervisor that hangs the supervisor's own Spawn
// (ERGO-NOTES §5.2), so keep InitStateMachine infallible there.
//
// HandleEvent, Observer, Logger and Terminator methods run on the process,
// one at a time (Ergo runs each gen.Server callback in a fresh goroutine but
// waits for it). HandleEvent may Call other processes; while it waits, Ergo
// defers new messages. A panic in HandleEvent is not recovered here: Ergo
// recovers it (unless -ergo.norecover) and the process exits with reason
// "panic"; Terminator still runs.
//
// A user type must not define Init, HandleCall, HandleCast, HandleInfo,
// HandleDirect or Terminate itself: those belong to StateMachine. Assert the
// interface at compile time with `var _ statem.Behavior = (*MyType)(nil)`.
// One value of the user type may be spawned many times only if it keeps no
// per-process data in its fields; use Process.Data for that.
package statem

import (
	"errors"
	"fmt"
	"time"

	"github.com/ergo-services/ergo/etf"
	"github.com/ergo-services/ergo/gen"
)

// State names a state of the machine. The empty State means "no state" /
// "keep the current state" and is never a state itself.
type State string

// Table declares the allowed transitions: from-state → allowed to-states.
// A transition not in the table is refused (see the package doc).
type Table map[State][]State

// Allows reports whether the table lists to among the targets of from.
func (t Table) Allows(from, to State) bool {
	for _, s := range t[from] {
		if s == to {
			return true
		}
	}
	return false
}

// Validate reports an error wrapping ErrInvalidTable if the table names the
// empty state as a source or a target.
func (t Table) Validate() error {
	for from, tos := range t {
		if from == "" {
			return fmt.Errorf("%w: the empty state is a source", ErrInvalidTable)
		}
		for i, to := range tos {
			if to == "" {
				return fmt.Errorf("%w: state %q target #%d is the empty state", ErrInvalidTable, from, i)
			}
		}
	}
	return nil
}

// Errors returned by this package; test with errors.Is.
var (
	// ErrInvalidTable: Behavior.Table returned a table naming the empty state.
	ErrInvalidTable = errors.New("statem: invalid transition table")
	// ErrNoInitialState: InitStateMachine returned the empty state.
	ErrNoInitialState = errors.New("statem: InitStateMachine returned the empty state")
	// ErrNotStateMachine: the spawned object embeds StateMachine but does not
	// implement Behavior.
	ErrNotStateMachine = errors.New("statem: process behavior does not implement statem.Behavior")
	// ErrStopped answers Direct requests that reach, or were postponed in, a
	// machine that is stopping.
	ErrStopped = errors.New("statem: state machine is stopping")
)

// Events delivered to Behavior.HandleEvent.

// Call is a gen_server:call / gen_statem:call (same wire format), or a
// ServerProcess.Call from Go. Answer it with a Reply action or Process.Reply.
type Call struct {
	From gen.ServerFrom
	Msg  etf.Term
}

// Cast is a gen_server:cast.
type Cast struct {
	Msg etf.Term
}

// Info is any other mailbox message (plain sends, gen.MessageDown,
// gen.MessageExit, node events, ...).
type Info struct {
	Msg etf.Term
}

// Direct is a process.Direct request from Go code. Answer it with a
// DirectReply action or Process.ReplyDirect.
type Direct struct {
	Ref etf.Ref
	Msg interface{}
}

// Enter is delivered right after a state change, in the new state; From is
// the state left, "" for the initial state.
type Enter struct {
	From State
}

// StateTimeout is the state timeout armed by SetStateTimeout firing.
type StateTimeout struct {
	Msg interface{}
}

// Timeout is the named timeout armed by SetTimeout firing.
type Timeout struct {
	Name string
	Msg  interface{}
}

// Actions returned in Result.Actions. They are plain values (not pointers)
// and run in order.

// Reply answers a Call.
type Reply struct {
	From gen.ServerFrom
	Msg  etf.Term
}

// DirectReply answers a Direct request; Err, if set, is what Direct returns.
type DirectReply struct {
	Ref etf.Ref
	Msg interface{}
	Err error
}

// Postpone re-delivers the current event after the next state change.
type Postpone struct{}

// SetStateTimeout arms the state timeout: StateTimeout{Msg} is delivered
// After from now unless the state changes first. It replaces a previous one.
type SetStateTimeout struct {
	After time.Duration
	Msg   interface{}
}

// CancelStateTimeout disarms the state timeout without a state change.
type CancelStateTimeout struct{}

// SetTimeout arms the named timeout Name: Timeout{Name, Msg} is delivered
// After from now. It survives state changes; re-arming Name replaces it.
type SetTimeout struct {
	Name  string
	After time.Duration
	Msg   interface{}
}

// CancelTimeout disarms the named timeout Name, if armed.
type CancelTimeout struct {
	Name string
}

// Result is what HandleEvent returns.
type Result struct {
	// Next is the state to go to; "" keeps the current state.
	Next State
	// Actions run in order, after the state change if there is one.
	Actions []interface{}
	// Stop, when non-empty, stops the process with this reason ("normal"
	// for a normal exit) after sending the Reply/DirectReply actions.
	Stop string
}

// Behavior is what a state machine implements. Embed StateMachine to get
// gen.ServerBehavior.
type Behavior interface {
	gen.ServerBehavior
	// Table returns the transition table. It is read once, at start.
	Table() Table
	// InitStateMachine returns the initial state and actions to run (timeouts;
	// Postpone is not allowed). It must not Call another process: see the
	// package doc.
	InitStateMachine(p *Process, args ...etf.Term) (State, []interface{}, error)
	// HandleEvent handles one event in state and says what happens next.
	HandleEvent(p *Process, state State, ev interface{}) Result
}

// Terminator is implemented by a Behavior that wants to know when the
// process ends. It runs on the process with the state at that time and
// Ergo's exit reason ("normal", the Stop reason, "kill", "panic", ...).
type Terminator interface {
	TerminateStateMachine(p *Process, state State, reason string)
}

// Observer is implemented by a Behavior that wants every state change, for
// tests and metrics. Transition runs on the process right after the state
// changed (from is "" for the initial state), before the Enter event. It
// must not block. Refused transitions are not reported here; see Logger.
type Observer interface {
	Transition(from, to State)
}

// Connectivity is implemented by a Behavior that can tell whether this node
// has a connection to another. Ergo sends to a process on a node it is not
// connected to by dialling it first, on the sending goroutine: a reply to a
// caller whose node went away would block the machine for a whole connect
// and handshake (seconds for a frozen peer). With Connectivity, Reply drops
// such an answer instead and returns ErrNotConnected; the caller, whose
// link is gone, could not have received it anyway.
type Connectivity interface {
	Connected(node string) bool
}

// ErrNotConnected is returned by Reply for a caller on a node this node is
// not connected to (see Connectivity).
var ErrNotConnected = errors.New("statem: reply dropped: the caller's node is not connected")

// Logger is implemented by a Behavior that wants this package's log lines
// (refused transitions, misused actions, failed replies). Without it they go
// to log.Printf. It runs on the process and must not block.
type Logger interface {
	Logf(format string, args ...interface{})
}
