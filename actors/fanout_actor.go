package actors

import (
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ergo-services/ergo/etf"
	"github.com/ergo-services/ergo/gen"
	"github.com/ergo-services/ergo/node"
)

// Fan-out inside the Node actor. Multicall and Multicast hand their request
// to the Node actor of the calling node, which runs any number of them at
// once: it sends every '$gen_call' tagged with the reference of a monitor of
// the target (as Erlang does), matches the {Ref, Reply} answers and the
// DOWNs by that reference, and ends each call at its own deadline. No
// process is spawned per call. A node without the Node actor (a plain Ergo
// node) falls back to a short-lived process per call (fanout.go).

// castWait bounds how long Multicast waits for the Node actor to have
// handed its message to Ergo (it never blocks on the network: nothing is
// sent to an unconnected node).
const castWait = 5 * time.Second

// fanIn is how many requests may wait to enter the Node actor; beyond it a
// caller uses the fallback process instead of waiting.
const fanIn = 1024

// fanEngine is one Node actor's fan-out state. in is read by the actor's
// mailbox filter and written by callers; everything else belongs to the
// actor's goroutine.
type fanEngine struct {
	node node.Node
	in   chan gen.ProcessMailboxMessage
	self etf.Pid

	refs map[etf.Ref]fanTarget // every monitor (the first one is also the reply tag)

	// inflight counts the Multicalls in the actor (callers' side).
	inflight atomic.Int32

	// observe is the cluster's Options.ObserveFanout (set before the
	// actor starts, read only afterwards).
	observe func(op string, results []Result)
}

// fanActorMax is how many Multicalls run in the Node actor at once; the
// next ones run in a process each, as on a node without the actor. One
// actor serializes every message of every call it runs: measured with 32
// callers to 3 peers (bench: BenchmarkFanoutParallel), all of them in the
// actor took 1.3–1.7× the time per fan-out of a process each, while up to
// a few at once cost the same and allocate a third less.
var fanActorMax = int32(2 * runtime.GOMAXPROCS(0))

// enter reserves a place for one more Multicall in the actor.
func (e *fanEngine) enter() bool {
	if e.inflight.Add(1) > fanActorMax {
		e.inflight.Add(-1)
		return false
	}
	return true
}

// fanTarget is target i of call c.
type fanTarget struct {
	c *fanCall
	i int
}

// fanCall is one Multicall in the Node actor.
type fanCall struct {
	st       *callState
	call     []int // indexes of st.results to call
	name     string
	request  etf.Term
	deadline time.Time

	mons   map[int][]etf.Ref // the monitors of each target still waiting
	cancel gen.CancelFunc
	again  gen.CancelFunc
	gap    time.Duration
	redone int
}

// fanCast is one Multicast: the actor sends and reports the errors.
type fanCast struct {
	targets []string
	name    string
	message etf.Term
	errs    chan []error
}

// Messages the actor sends itself for a call.
type (
	fanDeadline  struct{ c *fanCall }
	fanRemonitor struct{ c *fanCall }
)

// engines maps a node's name to the fan-out engine of its Node actor.
var engines sync.Map // string → *fanEngine

func newFanEngine() *fanEngine {
	return &fanEngine{in: make(chan gen.ProcessMailboxMessage, fanIn), refs: map[etf.Ref]fanTarget{}}
}

// register makes the engine the one Multicall on n uses.
func (e *fanEngine) register(n node.Node, self etf.Pid) {
	e.node, e.self = n, self
	engines.Store(n.Name(), e)
}

// unregister ends that, ending every call in flight.
func (e *fanEngine) unregister(p *gen.ServerProcess) {
	if e.node != nil {
		engines.CompareAndDelete(e.node.Name(), e)
	}
	for _, t := range e.refs {
		t.c.end(p, e, KindRefused, errors.New("the Node actor stopped"))
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

// submit hands a request to the actor; false when its queue is full.
func (e *fanEngine) submit(msg interface{}) bool {
	select {
	case e.in <- gen.ProcessMailboxMessage{From: e.self, Message: msg}:
		return true
	default:
		return false
	}
}

// handle runs one message of the actor's mailbox that belongs to fan-out;
// it reports whether it did.
func (e *fanEngine) handle(p *gen.ServerProcess, message etf.Term) bool {
	switch m := message.(type) {
	case *fanCall:
		m.start(p, e)
	case *fanCast:
		m.errs <- e.cast(p, m)
	case fanDeadline:
		m.c.end(p, e, KindTimeout, nil)
	case fanRemonitor:
		m.c.remonitor(p, e)
	case gen.MessageDown:
		t, ok := e.refs[m.Ref]
		if !ok {
			return false
		}
		delete(e.refs, m.Ref)
		if t.c.done(p, e, t.i) {
			t.c.st.put(t.i, nil, downErr(t.c.st.results[t.i].Node, t.c.name, m.Reason))
			t.c.finished(p)
		}
	case etf.Tuple:
		if len(m) != 2 {
			return false
		}
		ref, ok := m[0].(etf.Ref)
		if !ok {
			return false
		}
		t, ok := e.refs[ref]
		if !ok {
			return false
		}
		if t.c.done(p, e, t.i) {
			t.c.st.put(t.i, m[1], nil)
			t.c.finished(p)
		}
	default:
		return false
	}
	return true
}

func (c *fanCall) start(p *gen.ServerProcess, e *fanEngine) {
	c.mons = make(map[int][]etf.Ref, len(c.call))
	self := p.Self()
	for _, i := range c.call {
		target := c.st.results[i].Node
		to := gen.ProcessID{Name: c.name, Node: target}
		ref := p.MonitorProcess(to)
		e.refs[ref] = fanTarget{c, i}
		c.mons[i] = []etf.Ref{ref}
		if err := p.Send(to, etf.Tuple{atomGenCall, etf.Tuple{self, ref}, c.request}); err != nil {
			c.done(p, e, i)
			c.st.put(i, nil, sendErr(target, c.name, err))
		}
	}
	if len(c.mons) == 0 {
		return
	}
	c.cancel = p.SendAfter(self, fanDeadline{c}, time.Until(c.deadline))
	c.gap = remonitorFirst
	c.schedule(p)
}

// schedule queues the next re-monitor if it falls before the deadline
// (see remonitorFirst).
func (c *fanCall) schedule(p *gen.ServerProcess) {
	if c.redone < remonitorMax && time.Now().Add(c.gap).Before(c.deadline) {
		c.again = p.SendAfter(p.Self(), fanRemonitor{c}, c.gap)
		c.gap *= 2
	}
}

func (c *fanCall) remonitor(p *gen.ServerProcess, e *fanEngine) {
	if len(c.mons) == 0 {
		return
	}
	c.redone++
	for _, i := range c.call {
		target := c.st.results[i].Node
		// Never a node no longer linked: Ergo would dial it here.
		if _, waiting := c.mons[i]; !waiting || !linked(e.node, target) {
			continue
		}
		ref := p.MonitorProcess(gen.ProcessID{Name: c.name, Node: target})
		e.refs[ref] = fanTarget{c, i}
		c.mons[i] = append(c.mons[i], ref)
	}
	c.schedule(p)
}

// done ends the wait for target i, removing its monitors; false if it had
// already ended (a second DOWN or a late reply).
func (c *fanCall) done(p *gen.ServerProcess, e *fanEngine, i int) bool {
	refs, waiting := c.mons[i]
	if !waiting {
		return false
	}
	for _, ref := range refs {
		if _, live := e.refs[ref]; live {
			p.DemonitorProcess(ref)
			delete(e.refs, ref)
		}
	}
	delete(c.mons, i)
	return true
}

// finished stops the call's timers once every target has an outcome.
func (c *fanCall) finished(p *gen.ServerProcess) {
	if len(c.mons) > 0 {
		return
	}
	if c.cancel != nil {
		c.cancel()
	}
	if c.again != nil {
		c.again()
	}
}

// end gives every target still waiting an error of kind k.
func (c *fanCall) end(p *gen.ServerProcess, e *fanEngine, k ErrorKind, detail error) {
	for i := range c.mons {
		c.done(p, e, i)
	}
	c.finished(p)
	c.st.finish(k, detail)
}

// cast sends a Multicast's message from the actor.
func (e *fanEngine) cast(p *gen.ServerProcess, m *fanCast) []error {
	var errs []error
	msg := etf.Tuple{atomGenCast, m.message}
	for _, t := range m.targets {
		if err := p.Send(gen.ProcessID{Name: m.name, Node: t}, msg); err != nil {
			errs = append(errs, sendErr(t, m.name, err))
		}
	}
	return errs
}
