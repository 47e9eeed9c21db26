package statem

import (
	"errors"
	"fmt"
	"log"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloister-go/cloister/internal/wire/ergonode"
	"github.com/ergo-services/ergo/etf"
	"github.com/ergo-services/ergo/gen"
)

// StateMachine is embedded by user types instead of gen.Server. It
// implements gen.Server's callbacks and dispatches them to the Behavior
// (the spawned object, found through process.Behavior()).
type StateMachine struct {
	gen.Server
}

// Process is the running machine, passed to every Behavior method. It
// wraps the *gen.ServerProcess, whose State field holds the *Process itself.
type Process struct {
	*gen.ServerProcess

	// Data is free for the Behavior's per-process data (gen.Server users
	// keep it in ServerProcess.State, which this package uses). Touch it only
	// from Behavior methods.
	Data interface{}

	b     Behavior
	table Table
	obs   Observer
	conn  Connectivity // nil: every reply is sent
	logf  func(format string, args ...interface{})

	// Callbacks run one at a time, but mu still guards the fields below:
	// State() may be read from any goroutine, and Terminate can run while a
	// callback blocked in a Call is being released (Ergo's reply wait ends
	// with the process's context, so that callback then resumes).
	mu        sync.Mutex
	state     State
	seq       uint64            // last timer sequence number handed out
	stateTm   *armed            // the state timeout, if armed
	timers    map[string]*armed // named timeouts
	postponed []interface{}

	entered  bool   // the initial Enter has been delivered
	stopping string // stop reason once a Result asked to stop

	stale   atomic.Uint64 // stale timer messages dropped (tests)
	dropped atomic.Uint64 // replies to unconnected nodes dropped
}

// armed is a running timer: seq identifies its message, cancel stops it.
type armed struct {
	seq    uint64
	cancel gen.CancelFunc
}

// Messages the machine sends to itself. They never leave the node, so they
// are plain Go values that need no etf registration.
type (
	timerMsg struct {
		seq   uint64
		state bool // state timeout, else named
		name  string
		msg   interface{}
	}
	initMsg    struct{} // wakes the process to deliver the initial Enter
	stopMsg    struct{} // wakes the process to stop after a Direct asked to
	stateQuery struct{} // Direct request answered with the current state
)

// State returns the current state. It is safe from any goroutine.
func (p *Process) State() State {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state
}

// Reply answers a Call; it is safe from any goroutine, so a call can be
// answered later than the HandleEvent that received it. A nil msg is sent
// as the atom nil. A top-level empty list to another node is refused with
// an error wrapping ergonode.ErrEmptyTerm (Ergo cannot encode it safely).
func (p *Process) Reply(from gen.ServerFrom, msg etf.Term) error {
	if node := string(from.Pid.Node); node != p.NodeName() {
		if msg != nil {
			if err := ergonode.CheckSendable(msg); err != nil {
				return fmt.Errorf("statem: reply to %s: %w", from.Pid, err)
			}
		}
		if p.conn != nil && !p.conn.Connected(node) {
			p.dropped.Add(1)
			return ErrNotConnected
		}
	}
	return p.SendReply(from, msg)
}

// DroppedReplies counts the replies Reply dropped because the caller's node
// was not connected (see Connectivity).
func (p *Process) DroppedReplies() uint64 { return p.dropped.Load() }

// ReplyDirect answers a Direct request; it is safe from any goroutine.
// It fails with lib.ErrReferenceUnknown if the caller gave up waiting.
func (p *Process) ReplyDirect(ref etf.Ref, msg interface{}, err error) error {
	return p.ServerProcess.Reply(ref, msg, err)
}

// StateOf asks a running state machine process for its current state, from
// any goroutine, through process.Direct. The answer is not ordered with
// messages in the machine's mailbox.
func StateOf(proc gen.Process) (State, error) {
	v, err := proc.Direct(stateQuery{})
	if err != nil {
		return "", fmt.Errorf("statem: state of %s: %w", proc.Self(), err)
	}
	s, ok := v.(State)
	if !ok {
		return "", fmt.Errorf("statem: state of %s: %w", proc.Self(), ErrNotStateMachine)
	}
	return s, nil
}

// Init implements gen.ServerBehavior: it builds the Process and runs
// InitStateMachine. The initial Enter is delivered as the first event, not
// here, so that it may Call other processes.
func (sm *StateMachine) Init(sp *gen.ServerProcess, args ...etf.Term) (err error) {
	defer func() {
		if err != nil {
			// Ergo does not clean up after an Init error (only after a
			// panic): the process would stay in the node's table with its
			// name taken, so a retried Spawn under that name would fail
			// with "resource is taken". Free the name and cancel the context.
			if name := sp.Name(); name != "" {
				_ = sp.UnregisterName(name)
			}
			sp.Kill()
		}
	}()
	b, ok := sp.Behavior().(Behavior)
	if !ok {
		return fmt.Errorf("%w: %T", ErrNotStateMachine, sp.Behavior())
	}
	table := b.Table()
	if err := table.Validate(); err != nil {
		return err
	}
	p := &Process{ServerProcess: sp, b: b, table: table, timers: map[string]*armed{}}
	p.obs, _ = b.(Observer)
	p.conn, _ = b.(Connectivity)
	if l, ok := b.(Logger); ok {
		p.logf = l.Logf
	} else {
		p.logf = log.Printf
	}
	sp.State = p

	initial, actions, err := b.InitStateMachine(p, args...)
	if err != nil {
		return err
	}
	if initial == "" {
		return ErrNoInitialState
	}
	p.state = initial
	for _, a := range actions {
		p.act(nil, a, "InitStateMachine")
	}
	// The mailbox exists already; if this send failed, the first message of
	// any kind delivers the initial Enter all the same.
	_ = sp.Send(sp.Self(), initMsg{})
	return nil
}

// HandleCall implements gen.ServerBehavior. It always returns
// ServerStatusIgnore (or a stop status): replies go out only through Reply
// actions, and ServerStatusOK would make gen.Server send an extra 'nil'.
func (sm *StateMachine) HandleCall(sp *gen.ServerProcess, from gen.ServerFrom, msg etf.Term) (etf.Term, gen.ServerStatus) {
	p := sp.State.(*Process)
	if reason := p.deliver(Call{From: from, Msg: msg}); reason != "" {
		return nil, stopStatus(reason)
	}
	return nil, gen.ServerStatusIgnore
}

// HandleCast implements gen.ServerBehavior.
func (sm *StateMachine) HandleCast(sp *gen.ServerProcess, msg etf.Term) gen.ServerStatus {
	p := sp.State.(*Process)
	if reason := p.deliver(Cast{Msg: msg}); reason != "" {
		return stopStatus(reason)
	}
	return gen.ServerStatusOK
}

// HandleInfo implements gen.ServerBehavior; it also receives the machine's
// own timer and wake-up messages.
func (sm *StateMachine) HandleInfo(sp *gen.ServerProcess, msg etf.Term) gen.ServerStatus {
	p := sp.State.(*Process)
	var ev interface{}
	switch m := msg.(type) {
	case initMsg, stopMsg:
		// nothing to deliver: deliver(nil) runs the initial Enter if due
		// and reports a pending stop
	case timerMsg:
		ev = p.fired(m)
	default:
		ev = Info{Msg: msg}
	}
	if reason := p.deliver(ev); reason != "" {
		return stopStatus(reason)
	}
	return gen.ServerStatusOK
}

// HandleDirect implements gen.ServerBehavior. Replies go out through
// DirectReply actions, so it returns DirectStatusIgnore.
func (sm *StateMachine) HandleDirect(sp *gen.ServerProcess, ref etf.Ref, msg interface{}) (interface{}, gen.DirectStatus) {
	p := sp.State.(*Process)
	if _, ok := msg.(stateQuery); ok {
		return p.State(), gen.DirectStatusOK
	}
	if p.stopping != "" {
		return nil, ErrStopped
	}
	if reason := p.deliver(Direct{Ref: ref, Msg: msg}); reason != "" {
		// gen.Server cannot stop from HandleDirect: wake the loop so the
		// next mailbox callback returns the stop status. If the mailbox is
		// full, a message already in it does the same.
		_ = sp.Send(sp.Self(), stopMsg{})
	}
	return nil, gen.DirectStatusIgnore
}

// Terminate implements gen.ServerBehavior: it stops the timers, answers
// postponed Direct requests with ErrStopped and calls the Terminator.
func (sm *StateMachine) Terminate(sp *gen.ServerProcess, reason string) {
	p, ok := sp.State.(*Process)
	if !ok {
		return
	}
	p.mu.Lock()
	if p.stateTm != nil {
		p.stateTm.cancel()
		p.stateTm = nil
	}
	for name, t := range p.timers {
		t.cancel()
		delete(p.timers, name)
	}
	pending := p.postponed
	p.postponed = nil
	state := p.state
	p.mu.Unlock()
	p.failDirects(pending)
	if t, ok := p.b.(Terminator); ok {
		t.TerminateStateMachine(p, state, reason)
	}
}

// stopStatus turns a stop reason into the gen.Server status. The reason is
// wrapped verbatim (ServerStatusStopWithReason would format it with
// fmt.Errorf and mangle '%').
func stopStatus(reason string) gen.ServerStatus {
	if reason == "normal" {
		return gen.ServerStatusStop
	}
	return gen.ServerStatus(errors.New(reason))
}

// deliver hands ev (nil: none) to the machine together with everything it
// releases: the initial Enter first if not yet delivered, then ev, then
// postponed events after each state change. It returns the stop reason, or
// "" to keep running.
func (p *Process) deliver(ev interface{}) string {
	var work []interface{}
	if ev != nil {
		work = append(work, ev)
	}
	if p.stopping == "" && !p.entered {
		p.entered = true
		initial := p.State()
		if p.obs != nil {
			p.obs.Transition("", initial)
		}
		p.step(Enter{From: ""}, true)
	}
	for len(work) > 0 && p.stopping == "" {
		ev := work[0]
		work = work[1:]
		if p.step(ev, false) {
			// Postponed events go first, in arrival order, then whatever
			// was still waiting to be replayed.
			p.mu.Lock()
			work = append(p.postponed, work...)
			p.postponed = nil
			p.mu.Unlock()
		}
	}
	if p.stopping == "" {
		return ""
	}
	p.mu.Lock()
	pending := p.postponed
	p.postponed = nil
	p.mu.Unlock()
	p.failDirects(work)
	p.failDirects(pending)
	return p.stopping
}

// step runs HandleEvent for one event and applies its Result. It reports
// whether the state changed.
func (p *Process) step(ev interface{}, enter bool) bool {
	from := p.State()
	res := p.b.HandleEvent(p, from, ev)

	if res.Stop != "" {
		p.stopping = res.Stop
		answered := false
		for _, a := range res.Actions {
			switch a := a.(type) {
			case Reply:
				p.reply(a)
			case DirectReply:
				p.directReply(a)
				if d, ok := ev.(Direct); ok && d.Ref == a.Ref {
					answered = true
				}
			}
		}
		if d, ok := ev.(Direct); ok && !answered {
			_ = p.ReplyDirect(d.Ref, nil, ErrStopped)
		}
		return false
	}

	changed := false
	if res.Next != "" && res.Next != from {
		switch {
		case enter:
			p.logf("statem: %s: refused transition %q -> %q: a state enter handler cannot change state", p.id(), from, res.Next)
		case !p.table.Allows(from, res.Next):
			p.logf("statem: %s: refused transition %q -> %q: not in the transition table", p.id(), from, res.Next)
		default:
			changed = true
			p.mu.Lock()
			p.state = res.Next
			if p.stateTm != nil {
				p.stateTm.cancel()
				p.stateTm = nil
			}
			p.mu.Unlock()
			if p.obs != nil {
				p.obs.Transition(from, res.Next)
			}
		}
	}

	where := ""
	if enter {
		where = "a state enter handler"
	}
	postponed := false
	for _, a := range res.Actions {
		if _, ok := a.(Postpone); ok && where == "" {
			if postponed {
				continue // once is enough
			}
			postponed = true
		}
		p.act(ev, a, where)
	}

	if changed {
		p.step(Enter{From: from}, true)
	}
	return changed
}

// act runs one action for event ev. where names a context in which Postpone
// is not allowed ("" when it is).
func (p *Process) act(ev interface{}, a interface{}, where string) {
	switch a := a.(type) {
	case Reply:
		p.reply(a)
	case DirectReply:
		p.directReply(a)
	case Postpone:
		if where != "" {
			p.logf("statem: %s: Postpone ignored: not allowed in %s", p.id(), where)
			return
		}
		p.mu.Lock()
		p.postponed = append(p.postponed, ev)
		p.mu.Unlock()
	case SetStateTimeout:
		p.mu.Lock()
		if p.stateTm != nil {
			p.stateTm.cancel()
		}
		p.stateTm = p.arm(timerMsg{state: true, msg: a.Msg}, a.After)
		p.mu.Unlock()
	case CancelStateTimeout:
		p.mu.Lock()
		if p.stateTm != nil {
			p.stateTm.cancel()
			p.stateTm = nil
		}
		p.mu.Unlock()
	case SetTimeout:
		p.mu.Lock()
		if t := p.timers[a.Name]; t != nil {
			t.cancel()
		}
		p.timers[a.Name] = p.arm(timerMsg{name: a.Name, msg: a.Msg}, a.After)
		p.mu.Unlock()
	case CancelTimeout:
		p.mu.Lock()
		if t := p.timers[a.Name]; t != nil {
			t.cancel()
			delete(p.timers, a.Name)
		}
		p.mu.Unlock()
	default:
		p.logf("statem: %s: unknown action %T ignored (actions are values, not pointers)", p.id(), a)
	}
}

// arm starts a timer sending m to self after d. Called with mu held.
func (p *Process) arm(m timerMsg, d time.Duration) *armed {
	p.seq++
	m.seq = p.seq
	return &armed{seq: m.seq, cancel: p.SendAfter(p.Self(), m, d)}
}

// fired turns a timer message into its event, or nil if the timer was
// replaced, cancelled or (state timeout) outlived its state meanwhile.
func (p *Process) fired(m timerMsg) interface{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if m.state {
		if p.stateTm == nil || p.stateTm.seq != m.seq {
			p.stale.Add(1)
			return nil
		}
		p.stateTm = nil
		return StateTimeout{Msg: m.msg}
	}
	if t := p.timers[m.name]; t == nil || t.seq != m.seq {
		p.stale.Add(1)
		return nil
	}
	delete(p.timers, m.name)
	return Timeout{Name: m.name, Msg: m.msg}
}

func (p *Process) reply(a Reply) {
	if err := p.Reply(a.From, a.Msg); err != nil && !errors.Is(err, ErrNotConnected) {
		p.logf("statem: %s: reply to %s failed: %v", p.id(), a.From.Pid, err)
	}
}

func (p *Process) directReply(a DirectReply) {
	if err := p.ReplyDirect(a.Ref, a.Msg, a.Err); err != nil {
		p.logf("statem: %s: direct reply failed: %v", p.id(), err)
	}
}

// failDirects answers the Direct requests among evs with ErrStopped; their
// Go callers would otherwise wait for their whole timeout.
func (p *Process) failDirects(evs []interface{}) {
	for _, ev := range evs {
		if d, ok := ev.(Direct); ok {
			_ = p.ReplyDirect(d.Ref, nil, ErrStopped)
		}
	}
}

// id names the process in log lines.
func (p *Process) id() string {
	if name := p.Name(); name != "" {
		return fmt.Sprintf("%s[%s]", p.Self(), name)
	}
	return p.Self().String()
}
