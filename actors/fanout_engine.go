package actors

import (
	"errors"
	"github.com/cloister-go/cloister/internal/errs"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ergo-services/ergo/etf"
	"github.com/ergo-services/ergo/gen"
	"github.com/ergo-services/ergo/node"
)

// Fan-out inside the Node actor. Every Multicall and Multicast of a node
// runs under its Node actor's pid, any number at once:
//
//   - the calling goroutine registers the call in the actor's table of
//     calls in flight (fanEngine.table): a reply tag per target, and the
//     target's shared monitor (fanWatch), made by the first call in flight
//     to it;
//   - a goroutine of the call's own (drive) sends each '$gen_call' from
//     the actor's pid with its tag, monitors silent targets again
//     (remonitorFirst) and, once the call has ended, drops its entries and
//     the monitors no call waits on any more;
//   - the actor's mailbox loop (guardedLoopWith, ahead of gen.Server)
//     matches every {Ref, Reply} and DOWN against the table and records
//     the outcome in the call; gen.Server never sees these messages;
//   - the calling goroutine keeps the call's deadline (it waits anyway)
//     and never sends, so nothing holds it past that deadline.
//
// So a call costs no process, no hop through the actor's gen.Server loop
// (which runs every callback on a new goroutine) and no timer message;
// the actor's goroutine does one map look-up per reply or DOWN. A node
// without the Node actor (a plain Ergo node) runs the same engine in a
// short-lived process of its own per call (fanProcess).

// refMark is the third word of every reference fan-out makes. Ergo's
// MakeRef leaves that word 0, so the two never collide; MakeRef also
// repeats itself every 2^18 references (it keeps the low 18 bits of its
// counter and drops bits 18–45), which a table of calls in flight under
// load would hit.
const refMark = 0x636c6f69

// refSeq numbers fan-out references, for every node and engine of the
// process: two engines of one node (a per-call process and the Node actor)
// must never monitor with the same reference.
var refSeq atomic.Uint64

// fanRouter is what the engine uses of Ergo's router (node.CoreRouter):
// monitoring with a reference chosen before the monitor exists, so a DOWN
// sent at once (noproc, noconnection) always finds its entry in the table.
// Ergo's process values implement it.
type fanRouter interface {
	RouteSendReg(from etf.Pid, to gen.ProcessID, message etf.Term) error
	RouteMonitorReg(by etf.Pid, process gen.ProcessID, ref etf.Ref) error
	RouteDemonitor(by etf.Pid, ref etf.Ref) error
}

// fanEngine is the fan-out state of one Node actor (or of one per-call
// process). Everything above mu is set before the first call.
type fanEngine struct {
	node  node.Node
	pid   etf.Pid
	from  etf.Term // pid, boxed once for every '$gen_call'
	route fanRouter

	// calls counts the calls from their registration until their release
	// has removed their monitors.
	calls atomic.Int32

	mu      sync.Mutex
	table   map[uint64]fanSlot          // reference key → what it tags or monitors
	watches map[gen.ProcessID]*fanWatch // the shared monitor of each target called
	stopped bool

	// observe is the cluster's Options.ObserveFanout (set before the
	// actor starts, read only afterwards).
	observe func(op string, results []Result)
}

// A target called by several fan-outs at once is monitored once for all
// of them (fanWatch): with many callers, monitor and demonitor messages
// (two of the four a call otherwise costs per target, on both nodes) then
// all but vanish. The monitor is made by the first call in flight to the
// target and removed when the last one ends; its DOWN ends every call
// waiting on that target. (A call that starts while the DOWN of a process
// that has just died is on its way fails with that DOWN even if a new
// process has taken the name since: the window is the DOWN's transit.)

// fanWatch is the shared monitor of one target.
type fanWatch struct {
	to      gen.ProcessID
	key     uint64
	waiters []fanWaiter // calls in flight to the target
}

// fanWaiter is target i of call c.
type fanWaiter struct {
	c *fanCall
	i int32
}

// fanSlot is what one reference stands for: the reply tag of target i of
// c (mon < 0), c's own monitor number mon of target i, or the shared
// monitor w.
type fanSlot struct {
	c   *fanCall
	w   *fanWatch
	i   int32
	mon int32
}

// fanCall is one Multicall. Its fields after name are guarded by the
// engine's mu until the call is released.
type fanCall struct {
	name    string
	results []Result
	targets []fanTarget // one per result
	pending int
	ended   bool          // no outcome is recorded any more
	done    chan struct{} // closed when ended
	mons    []fanMon      // the call's own monitors (see remonitorFirst)
}

// fanTarget is the state of one target of a call.
type fanTarget struct {
	set bool      // results[i] has its outcome
	tag uint64    // key of the reply tag (0: not asked)
	w   *fanWatch // the shared monitor it waits on
	pos int32     // its index in w.waiters
}

// fanMon is a monitor of the call's own.
type fanMon struct {
	key  uint64
	i    int32 // the target
	down bool  // its DOWN came: Ergo has dropped it already
}

// engines maps a node's name to the fan-out engine of its Node actor.
var engines sync.Map // string → *fanEngine

func newFanEngine() *fanEngine {
	return &fanEngine{table: map[uint64]fanSlot{}, watches: map[gen.ProcessID]*fanWatch{}}
}

// bind makes p the process the engine calls from; p must be one of Ergo's
// processes (the engine needs its router).
func (e *fanEngine) bind(n node.Node, p gen.Process) error {
	if u, ok := p.(interface{ Unwrap() gen.Process }); ok {
		p = u.Unwrap() // a supervised child's (see ownBehavior)
	}
	r, ok := p.(fanRouter)
	if !ok {
		return errors.New("cloister: fan-out: this Ergo process has no router")
	}
	e.node, e.pid, e.from, e.route = n, p.Self(), p.Self(), r
	return nil
}

// register makes the engine the one Multicall on its node uses.
func (e *fanEngine) register() {
	engines.Store(e.node.Name(), e)
}

// stop ends every call in flight (the process is ending) and refuses new
// ones; the node's Multicall then uses a process per call until the next
// Node actor registers. Each call's goroutine still removes its monitors.
func (e *fanEngine) stop() {
	if e.node != nil {
		engines.CompareAndDelete(e.node.Name(), e)
	}
	detail := errors.New("the fan-out process stopped")
	e.mu.Lock()
	defer e.mu.Unlock()
	e.stopped = true
	for _, s := range e.table {
		if s.c != nil {
			s.c.end(errs.KindRefused, detail)
		}
	}
}

// engineOf returns the engine of n's Node actor, or nil.
func engineOf(n node.Node) *fanEngine {
	v, ok := engines.Load(n.Name())
	if !ok {
		return nil
	}
	// By name: the node.Node a caller holds may wrap the one the actor
	// sees in its environment.
	e := v.(*fanEngine)
	if !e.node.IsAlive() {
		return nil // a node of that name that stopped
	}
	return e
}

// ref is the reference of key k.
func (e *fanEngine) ref(k uint64) etf.Ref {
	return etf.Ref{Node: e.pid.Node, Creation: e.pid.Creation,
		ID: [5]uint32{uint32(k & (1<<18 - 1)), uint32(k >> 18), refMark}}
}

// key is the inverse of ref; false for a reference fan-out did not make.
func (e *fanEngine) key(r etf.Ref) (uint64, bool) {
	if r.ID[2] != refMark || r.Node != e.pid.Node {
		return 0, false
	}
	return uint64(r.ID[0]) | uint64(r.ID[1])<<18, true
}

// deliver takes a message of the engine's mailbox that belongs to fan-out
// (a reply or a DOWN carrying one of its references, late ones included)
// and reports whether it did.
func (e *fanEngine) deliver(msg etf.Term) bool {
	switch m := msg.(type) {
	case etf.Tuple:
		if len(m) != 2 {
			return false
		}
		r, ok := m[0].(etf.Ref)
		if !ok {
			return false
		}
		k, ok := e.key(r)
		if !ok {
			return false
		}
		e.mu.Lock()
		if s, ok := e.table[k]; ok && s.c != nil && s.mon < 0 {
			s.c.settle(int(s.i), m[1], nil)
		}
		e.mu.Unlock()
		return true
	case gen.MessageDown:
		k, ok := e.key(m.Ref)
		if !ok {
			return false
		}
		e.mu.Lock()
		if s, ok := e.table[k]; ok {
			switch {
			case s.w != nil:
				e.watchDown(s.w, m.Reason)
			case s.mon >= 0:
				s.c.mons[s.mon].down = true
				s.c.down(int(s.i), m.Reason)
			}
		}
		e.mu.Unlock()
		return true
	}
	return false
}

// watchDown ends the wait of every call on w's target (mu held); w is gone.
func (e *fanEngine) watchDown(w *fanWatch, reason string) {
	delete(e.table, w.key)
	delete(e.watches, w.to)
	for _, x := range w.waiters {
		x.c.targets[x.i].w = nil
		x.c.down(int(x.i), reason)
	}
	w.waiters = nil
}

// newFanCall is a call of name on targets (each a Result with its Node).
func newFanCall(name string, results []Result) *fanCall {
	c := &fanCall{name: name, results: results, targets: make([]fanTarget, len(results)),
		pending: len(results), done: make(chan struct{})}
	if c.pending == 0 {
		c.ended = true
		close(c.done)
	}
	return c
}

// settle records target i's outcome (engine's mu held, or c not shared).
func (c *fanCall) settle(i int, reply etf.Term, err *errs.NodeError) {
	if c.ended || c.targets[i].set {
		return
	}
	c.targets[i].set = true
	if err != nil {
		c.results[i].Err = err
	} else {
		c.results[i].Reply = reply
	}
	c.pending--
	if c.pending == 0 {
		c.ended = true
		close(c.done)
	}
}

// down records a DOWN of target i (engine's mu held).
func (c *fanCall) down(i int, reason string) {
	if !c.ended && !c.targets[i].set {
		c.settle(i, nil, downErr(c.results[i].Node, c.name, reason))
	}
}

// end gives every target without an outcome an error of kind k (engine's
// mu held).
func (c *fanCall) end(k errs.ErrorKind, detail error) {
	if c.ended {
		return
	}
	for i := range c.results {
		if !c.targets[i].set {
			c.targets[i].set = true
			c.results[i].Err = nodeErr(c.results[i].Node, k, detail)
		}
	}
	c.pending = 0
	c.ended = true
	close(c.done)
}

// call runs c, asking the targets at the indexes in ask, until every one
// has an outcome or deadline; false (nothing sent) if the engine has
// stopped. The calling goroutine only registers the call and waits: a
// goroutine of the call's own (drive) sends, monitors and cleans up, so a
// send that blocks (Ergo's queue to a peer whose link no longer drains
// holds 100 messages, then blocks the sender) cannot hold the caller past
// its deadline.
func (e *fanEngine) call(c *fanCall, ask []int, request etf.Term, deadline time.Time) bool {
	var fresh []*fanWatch // shared monitors this call makes
	e.mu.Lock()
	if e.stopped {
		e.mu.Unlock()
		return false
	}
	for _, i := range ask {
		t := &c.targets[i]
		t.tag = refSeq.Add(1)
		e.table[t.tag] = fanSlot{c: c, i: int32(i), mon: -1}
		to := gen.ProcessID{Name: c.name, Node: c.results[i].Node}
		w := e.watches[to]
		if w == nil {
			w = &fanWatch{to: to, key: refSeq.Add(1)}
			e.watches[to] = w
			e.table[w.key] = fanSlot{w: w}
			fresh = append(fresh, w)
		}
		t.w, t.pos = w, int32(len(w.waiters))
		w.waiters = append(w.waiters, fanWaiter{c, int32(i)})
	}
	e.calls.Add(1)
	e.mu.Unlock()
	go e.drive(c, ask, fresh, request, deadline)
	e.wait(c, deadline)
	return true
}

// drive sends c's requests, monitors silent targets again (see
// remonitorFirst) and, once c has ended, releases it.
func (e *fanEngine) drive(c *fanCall, ask []int, fresh []*fanWatch, request etf.Term, deadline time.Time) {
	// A monitor that cannot be made comes back as a DOWN.
	for _, w := range fresh {
		_ = e.route.RouteMonitorReg(e.pid, w.to, e.ref(w.key))
	}
	// The messages of all targets in one allocation.
	terms := make([]etf.Term, 5*len(ask))
	for m, i := range ask {
		to := gen.ProcessID{Name: c.name, Node: c.results[i].Node}
		t := terms[5*m : 5*m+5 : 5*m+5]
		t[0], t[1] = e.from, e.ref(c.targets[i].tag)
		t[2], t[3], t[4] = atomGenCall, etf.Tuple(t[0:2:2]), request
		if err := e.route.RouteSendReg(e.pid, to, etf.Tuple(t[2:5:5])); err != nil {
			ne := sendErr(to.Node, c.name, err)
			e.mu.Lock()
			c.settle(i, nil, ne)
			e.mu.Unlock()
		}
	}
	gap := remonitorFirst
	for redone := 0; redone < remonitorMax; redone++ {
		wait := time.Until(deadline)
		if gap >= wait {
			break
		}
		if !sleepUnless(c.done, gap) {
			break
		}
		e.remonitor(c)
		gap *= 2
	}
	<-c.done
	e.release(c)
}

// Ergo registers a monitor by name only after it has sent the request to
// the peer (node/monitor.go, RouteMonitorReg): a peer's immediate noproc can
// arrive first and is then dropped, and the call would wait for its
// deadline (seen under CPU load: a 5 s Multicall to a missing name timed
// out). So a target that has neither answered nor gone down is monitored
// again, by a monitor of the call's own, after remonitorFirst, then twice
// that, … at most remonitorMax times before the deadline; the first answer
// or DOWN of any of its monitors wins.
const (
	remonitorFirst = 200 * time.Millisecond
	remonitorMax   = 4
)

// timers are the deadline timers of calling goroutines and of drive,
// reused: nearly every call ends before its timer fires.
var timers sync.Pool

func getTimer(d time.Duration) *time.Timer {
	if t, _ := timers.Get().(*time.Timer); t != nil {
		t.Reset(d)
		return t
	}
	return time.NewTimer(d)
}

func putTimer(t *time.Timer) {
	t.Stop()
	timers.Put(t)
}

// sleepUnless waits d; false if done closed first.
func sleepUnless(done <-chan struct{}, d time.Duration) bool {
	t := getTimer(d)
	defer putTimer(t)
	select {
	case <-done:
		return false
	case <-t.C:
		return true
	}
}

// wait blocks until c ends, ending it at deadline.
func (e *fanEngine) wait(c *fanCall, deadline time.Time) {
	if !sleepUnless(c.done, time.Until(deadline)) {
		return
	}
	e.mu.Lock()
	c.end(errs.KindTimeout, nil)
	e.mu.Unlock()
}

// remonitor monitors every target of c still waiting once more.
func (e *fanEngine) remonitor(c *fanCall) {
	first := len(c.mons)
	e.mu.Lock()
	for i := range c.results {
		// Never a node no longer linked: Ergo would dial it here. (A
		// link lost after the first monitor was registered has already
		// sent its DOWN.)
		if c.ended || c.targets[i].set || c.targets[i].tag == 0 || !linked(e.node, c.results[i].Node) {
			continue
		}
		k := refSeq.Add(1)
		c.mons = append(c.mons, fanMon{key: k, i: int32(i)})
		e.table[k] = fanSlot{c: c, i: int32(i), mon: int32(len(c.mons) - 1)}
	}
	add := c.mons[first:len(c.mons):len(c.mons)]
	e.mu.Unlock()
	for _, m := range add {
		_ = e.route.RouteMonitorReg(e.pid, gen.ProcessID{Name: c.name, Node: c.results[m.i].Node}, e.ref(m.key))
	}
}

// release ends c and removes its references and the monitors nobody
// waits on any more: Ergo keeps a monitor until the monitored process goes
// down, on both nodes, so each call would leak one per target otherwise.
func (e *fanEngine) release(c *fanCall) {
	var drop []uint64
	e.mu.Lock()
	if !c.ended { // not reached: wait returns once c has ended
		c.end(errs.KindRefused, errors.New("the call was released unfinished"))
	}
	for i := range c.targets {
		t := &c.targets[i]
		if t.tag == 0 {
			continue
		}
		delete(e.table, t.tag)
		if w := t.w; w != nil {
			last := len(w.waiters) - 1
			if moved := w.waiters[last]; int(t.pos) != last {
				w.waiters[t.pos] = moved
				moved.c.targets[moved.i].pos = t.pos
			}
			w.waiters[last] = fanWaiter{}
			w.waiters = w.waiters[:last]
			t.w = nil
			if last == 0 {
				delete(e.table, w.key)
				delete(e.watches, w.to)
				drop = append(drop, w.key)
			}
		}
	}
	for _, m := range c.mons {
		delete(e.table, m.key)
		if !m.down {
			drop = append(drop, m.key)
		}
	}
	e.mu.Unlock()
	for _, k := range drop {
		_ = e.route.RouteDemonitor(e.pid, e.ref(k))
	}
	e.calls.Add(-1)
}

// cast sends a Multicast's message from the engine's process; the errors
// are per target, nil when all were handed to Ergo.
func (e *fanEngine) cast(targets []string, name string, message etf.Term) []error {
	var failed []error
	msg := etf.Tuple{atomGenCast, message}
	for _, t := range targets {
		if err := e.route.RouteSendReg(e.pid, gen.ProcessID{Name: name, Node: t}, msg); err != nil {
			failed = append(failed, sendErr(t, name, err))
		}
	}
	return failed
}

// fanProcess runs a fan-out engine of its own for one call on a node
// without the Node actor: its loop does nothing but deliver.
type fanProcess struct {
	e *fanEngine
	n node.Node
}

// spawnFanProcess starts an engine in a short-lived process on n with a
// mailbox for mailbox messages; kill it after the call.
func spawnFanProcess(n node.Node, mailbox uint16) (*fanEngine, gen.Process, error) {
	e := newFanEngine()
	p, err := n.Spawn("", gen.ProcessOptions{MailboxSize: mailbox}, &fanProcess{e: e, n: n})
	if err != nil {
		return nil, nil, err
	}
	return e, p, nil
}

// ProcessInit implements gen.ProcessBehavior.
func (f *fanProcess) ProcessInit(p gen.Process, args ...etf.Term) (gen.ProcessState, error) {
	if err := f.e.bind(f.n, p); err != nil {
		return gen.ProcessState{}, err
	}
	return gen.ProcessState{Process: p}, nil
}

// ProcessLoop implements gen.ProcessBehavior.
func (f *fanProcess) ProcessLoop(ps gen.ProcessState, started chan<- bool) string {
	ch := ps.ProcessChannels()
	ctx := ps.Context()
	started <- true
	for {
		select {
		case m := <-ch.Mailbox:
			f.e.deliver(m.Message)
		case ex := <-ch.GracefulExit:
			f.e.stop()
			return ex.Reason
		case <-ctx.Done():
			f.e.stop()
			return "kill"
		}
	}
}
