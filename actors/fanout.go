package actors

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ergo-services/ergo/etf"
	"github.com/ergo-services/ergo/gen"
	"github.com/ergo-services/ergo/lib"
	"github.com/ergo-services/ergo/node"

	"github.com/cloister-go/cloister/internal/wire/ergonode"
)

// Fan-out never dials. A node that is neither this node nor in n.Nodes() is
// answered KindNoConnection at once: an Ergo send to an unconnected node
// makes a synchronous connect attempt in the sender's goroutine, which
// could stall every caller for as long as an EPMD dial to a dead host
// takes. Connecting is the Monitor's job. (A node that drops in the
// microseconds between that check and the send still triggers Ergo's own
// re-dial; that runs in the Node actor or the fan-out process, never in the
// caller, whose deadline holds regardless — see backstopGrace.)

// Result is the answer of one node to a fan-out.
type Result struct {
	Node  string   // the node asked
	Reply etf.Term // its reply; nil when Err is set
	Err   error    // a *NodeError, or nil
}

// backstopGrace is how long after the deadline the calling goroutine stops
// waiting for the fan-out process on its own. The process enforces the
// deadline itself (SendAfter); the backstop only matters when the process
// is stuck (a re-dial, see above) and keeps Multicall within its bound.
const backstopGrace = 50 * time.Millisecond

var errNotConnected = errors.New("not connected (fan-out never dials)")

// Multicall calls the process registered as name on every node in nodes,
// gen_server:call style, and returns one Result per node in the order given,
// duplicates removed. The local node is a valid target. A node fails with
// KindNoConnection when it is not connected (nothing is dialled) or goes
// down during the call, KindNoSuchProcess when nothing is registered as name
// there, KindRemote when the process exits during the call, KindTimeout
// when no reply came within timeout. Timeouts may be sub-second (Ergo's own
// are whole seconds): the caller process enforces the deadline with
// SendAfter, and the calling goroutine stops waiting backstopGrace (50 ms)
// later should that process be stuck; measured: 200 ms → 201–204 ms.
//
// Call it from plain Go code, not from the callback of a process it calls
// (that process could not answer until the callback returns). The error is
// non-nil only for bad arguments: a nil node, an empty name, a timeout ≤ 0,
// or a request that is nil or an empty list (an error wrapping
// ergonode.ErrEmptyTerm; such a term sent on its own wedges an Ergo link,
// and arrives as [] remotely but nil locally). An empty
// node list gives an empty result.
//
// A call runs inside the calling node's Node actor, with the others in
// flight (no process per call; see fanout_actor.go); on a node without the
// Node actor, or beyond fanActorMax calls at once, in a short-lived unnamed
// process of its own. Any number of goroutines may call at once.
func Multicall(n node.Node, nodes []string, name string, request etf.Term, timeout time.Duration) ([]Result, error) {
	results, err := multicallWith(true, "multicall", n, nodes, name, request, timeout)
	observeFanout(n, "multicall", results)
	return results, err
}

// observeFanout hands results to the ObserveFanout option of the cluster
// that runs on n (none on a node without cloister's Node actor).
func observeFanout(n node.Node, op string, results []Result) {
	if results == nil || n == nil {
		return
	}
	if v, ok := engines.Load(n.Name()); ok {
		if f := v.(*fanEngine).observe; f != nil {
			f(op, results)
		}
	}
}

// multicall is Multicall through a process of its own; op names the
// operation in errors.
func multicall(op string, n node.Node, nodes []string, name string, request etf.Term, timeout time.Duration) ([]Result, error) {
	return multicallWith(false, op, n, nodes, name, request, timeout)
}

// multicallWith is multicall; inActor runs the call in n's Node actor when
// n has one (fanout_actor.go).
func multicallWith(inActor bool, op string, n node.Node, nodes []string, name string, request etf.Term, timeout time.Duration) ([]Result, error) {
	start := time.Now()
	if err := checkArgs(n, name, request); err != nil {
		return nil, fmt.Errorf("cloister: %s: %w", op, err)
	}
	if timeout <= 0 {
		return nil, fmt.Errorf("cloister: %s: %w: timeout must be > 0, got %v", op, ErrInvalidArgument, timeout)
	}
	targets := dedupe(nodes)
	st := newCallState(targets)
	if len(targets) == 0 {
		return st.results, nil
	}

	self := n.Name()
	connected := make(map[string]bool)
	for _, peer := range n.Nodes() {
		connected[peer] = true
	}
	var call []int
	for i, t := range targets {
		if t == self || connected[t] {
			call = append(call, i)
			continue
		}
		st.put(i, nil, nodeErr(t, KindNoConnection, errNotConnected))
	}
	if len(call) == 0 {
		return st.snapshot(), nil
	}

	deadline := start.Add(timeout)
	if e := engineOf(n); inActor && e != nil && e.enter() {
		defer e.inflight.Add(-1)
		if e.submit(&fanCall{st: st, call: call, name: name, request: request, deadline: deadline}) {
			backstop := time.NewTimer(time.Until(deadline) + backstopGrace)
			defer backstop.Stop()
			select {
			case <-st.done:
			case <-backstop.C:
				st.finish(KindTimeout, nil)
			}
			return st.snapshot(), nil
		}
	}
	c := &caller{st: st, call: call, name: name, request: request, deadline: deadline, node: n}
	p, err := n.Spawn("", gen.ProcessOptions{MailboxSize: callerMailbox(len(call))}, c)
	if err != nil {
		return nil, fmt.Errorf("cloister: %s: spawn the caller process: %w", op, err)
	}
	backstop := time.NewTimer(time.Until(deadline) + backstopGrace)
	defer backstop.Stop()
	select {
	case <-st.done:
	case <-backstop.C:
		st.finish(KindTimeout, nil)
		p.Kill()
	}
	return st.snapshot(), nil
}

// Multicast casts message to the process registered as name on every node
// in nodes (gen_server:abcast style: it arrives in HandleCast), fire and
// forget. Nodes are deduplicated; the local node is a valid target. Nothing
// is dialled: a node that is not connected is skipped.
//
// The error wraps ErrInvalidArgument or ergonode.ErrEmptyTerm for bad
// arguments (then nothing is sent); otherwise it is nil, or the errors.Join
// of a *NodeError per node the message could not be handed to Ergo for
// (not connected; no such local process; refused) while it still went to
// all the others. A missing process on a remote node is not noticed.
func Multicast(n node.Node, nodes []string, name string, message etf.Term) error {
	if err := checkArgs(n, name, message); err != nil {
		return fmt.Errorf("cloister: multicast: %w", err)
	}
	targets := dedupe(nodes)
	if len(targets) == 0 {
		return nil
	}
	self := n.Name()
	connected := make(map[string]bool)
	for _, peer := range n.Nodes() {
		connected[peer] = true
	}
	var errs []error
	var send []string
	for _, t := range targets {
		if t == self || connected[t] {
			send = append(send, t)
		} else {
			errs = append(errs, nodeErr(t, KindNoConnection, errNotConnected))
		}
	}
	if e := engineOf(n); len(send) > 0 && e != nil {
		m := &fanCast{targets: send, name: name, message: message, errs: make(chan []error, 1)}
		if e.submit(m) {
			t := time.NewTimer(castWait)
			defer t.Stop()
			select {
			case es := <-m.errs:
				errs = append(errs, es...)
			case <-t.C:
				errs = append(errs, fmt.Errorf("cloister: multicast: the Node actor did not take the message in %s", castWait))
			}
			return errors.Join(errs...)
		}
	}
	if len(send) > 0 {
		// Ergo sends only from a process; this one never receives.
		p, err := n.Spawn("", gen.ProcessOptions{MailboxSize: 1}, &sender{})
		if err != nil {
			return fmt.Errorf("cloister: multicast: spawn the sender process: %w", err)
		}
		cast := etf.Tuple{atomGenCast, message}
		for _, t := range send {
			if err := p.Send(gen.ProcessID{Name: name, Node: t}, cast); err != nil {
				errs = append(errs, sendErr(t, name, err))
			}
		}
		p.Kill()
	}
	return errors.Join(errs...)
}

// Multiapply runs the function registered as fn (see RegisterFunc) on every node in
// nodes, through each node's Node actor, and returns one Result per node in
// the order given, duplicates removed. A Result's Reply is the function's
// return value; a node whose function failed, or which has no function of
// that name, has a KindRemote error (a *RemoteError naming the function).
// Everything else is as for Multicall. args may be nil (no arguments).
//
// A BEAM (Erlang/Elixir) member runs the BEAM function fn = "Module:Function"
// by rpc instead, as the Elixir original's multiapply does: its Reply is
// the function's value, a raised exception a KindRemote *RemoteError with
// Class, Reason and Stack, a name without a colon KindRefused (nothing is
// sent). See RPC.
func Multiapply(n node.Node, nodes []string, fn string, args etf.List, timeout time.Duration) ([]Result, error) {
	if fn == "" {
		return nil, fmt.Errorf("cloister: multiapply: %w: empty function name", ErrInvalidArgument)
	}
	if args == nil {
		args = etf.List{}
	}
	// BEAM members run fn as a BEAM function by rpc (beamapply.go); only Go
	// members get the Node actor's request.
	targets := dedupe(nodes)
	beam := beamTargets(n, targets)
	goTargets := targets
	var withBEAM func([]Result) []Result
	if len(beam) > 0 && timeout > 0 {
		goTargets = make([]string, 0, len(targets)-len(beam))
		for i, t := range targets {
			if !beam[i] {
				goTargets = append(goTargets, t)
			}
		}
		withBEAM = applyBEAM(n, targets, beam, fn, args, timeout)
	}
	// A binary, not an atom: BEAM peers then need no atom for every name.
	request := etf.Tuple{atomMultiapply, etf.String(fn), args}
	results, err := multicall(fmt.Sprintf("multiapply %q", fn), n, goTargets, NodeName, request, timeout)
	if err != nil {
		return nil, err
	}
	for i := range results {
		r := &results[i]
		if r.Err != nil {
			continue
		}
		reply := r.Reply
		r.Reply = nil
		t, ok := reply.(etf.Tuple)
		switch {
		case ok && len(t) == 2 && t[0] == atomOK:
			r.Reply = t[1]
		case ok && len(t) == 2 && t[0] == atomError:
			r.Err = nodeErr(r.Node, KindRemote, applyError(fn, t[1]))
		default:
			r.Err = nodeErr(r.Node, KindRemote, &RemoteError{Reason: reply,
				msg: fmt.Sprintf("function %q: unexpected answer %s", fn, termText(reply))})
		}
	}
	if withBEAM != nil {
		results = withBEAM(results)
	}
	observeFanout(n, "multiapply", results)
	return results, nil
}

// applyError describes a Multiapply {error, Reason}.
func applyError(fn string, reason etf.Term) *RemoteError {
	e := &RemoteError{Reason: reason}
	if t, ok := reason.(etf.Tuple); ok && len(t) == 2 && t[0] == atomUndef {
		e.msg = fmt.Sprintf("function %q is not registered there (undef)", fn)
		return e
	}
	e.msg = fmt.Sprintf("function %q failed: %s", fn, termText(reason))
	return e
}

// termText renders a reason for an error message: binaries as text.
func termText(t etf.Term) string {
	switch v := t.(type) {
	case []byte:
		return string(v)
	case etf.String:
		return string(v)
	case etf.Tuple:
		s := "{"
		for i, e := range v {
			if i > 0 {
				s += ", "
			}
			s += termText(e)
		}
		return s + "}"
	}
	return fmt.Sprint(t)
}

func checkArgs(n node.Node, name string, msg etf.Term) error {
	if n == nil {
		return fmt.Errorf("%w: nil node", ErrInvalidArgument)
	}
	if name == "" {
		return fmt.Errorf("%w: empty process name", ErrInvalidArgument)
	}
	return ergonode.CheckSendable(msg)
}

// dedupe keeps the first occurrence of every node, in order.
func dedupe(nodes []string) []string {
	seen := make(map[string]bool, len(nodes))
	out := make([]string, 0, len(nodes))
	for _, nd := range nodes {
		if !seen[nd] {
			seen[nd] = true
			out = append(out, nd)
		}
	}
	return out
}

// callerMailbox sizes a caller process's mailbox to what it can ever
// receive — one reply and one DOWN per monitor of each target, its start,
// deadline and re-monitor messages — so nothing a peer sends it is dropped,
// without allocating ergonode.NetworkMailbox (three buffers of 8192 entries,
// ~1 MB) per call.
func callerMailbox(targets int) uint16 {
	n := (2+remonitorMax)*targets + remonitorMax + 4
	if n > 65535 {
		return 65535
	}
	return uint16(n)
}

// sendErr classifies an error of Ergo's Send.
func sendErr(node, name string, err error) *NodeError {
	switch {
	case errors.Is(err, lib.ErrProcessUnknown):
		return nodeErr(node, KindNoSuchProcess, fmt.Errorf("no process registered as %q", name))
	case errors.Is(err, lib.ErrNoRoute):
		return nodeErr(node, KindNoConnection, err)
	}
	return nodeErr(node, KindRefused, err)
}

// downErr classifies the reason of a monitor DOWN for the called process.
func downErr(node, name, reason string) *NodeError {
	switch reason {
	case "noproc":
		return nodeErr(node, KindNoSuchProcess, fmt.Errorf("no process registered as %q", name))
	case "noconnection", "noproxy":
		return nodeErr(node, KindNoConnection, errors.New("connection lost during the call"))
	}
	return nodeErr(node, KindRemote, &RemoteError{Reason: reason,
		msg: fmt.Sprintf("process %q exited: %s", name, reason)})
}

// callState is one Multicall's results, shared by the calling goroutine and
// the caller process; the first to finish it wins, later writes are ignored.
type callState struct {
	mu      sync.Mutex
	results []Result
	set     []bool
	pending int
	closed  bool
	done    chan struct{}
}

func newCallState(targets []string) *callState {
	st := &callState{
		results: make([]Result, len(targets)),
		set:     make([]bool, len(targets)),
		pending: len(targets),
		done:    make(chan struct{}),
	}
	for i, t := range targets {
		st.results[i].Node = t
	}
	if st.pending == 0 {
		st.closed = true
		close(st.done)
	}
	return st
}

// put records the outcome of target i.
func (st *callState) put(i int, reply etf.Term, err *NodeError) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed || st.set[i] {
		return
	}
	st.set[i] = true
	if err != nil {
		st.results[i].Err = err
	} else {
		st.results[i].Reply = reply
	}
	st.pending--
	if st.pending == 0 {
		st.closed = true
		close(st.done)
	}
}

// finish gives every target without an outcome an error of kind k.
func (st *callState) finish(k ErrorKind, detail error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed {
		return
	}
	for i := range st.results {
		if !st.set[i] {
			st.set[i] = true
			st.results[i].Err = nodeErr(st.results[i].Node, k, detail)
		}
	}
	st.pending = 0
	st.closed = true
	close(st.done)
}

func (st *callState) snapshot() []Result {
	st.mu.Lock()
	defer st.mu.Unlock()
	out := make([]Result, len(st.results))
	copy(out, st.results)
	return out
}

// Ergo registers a monitor by name only after it has sent the request to
// the peer (node/monitor.go, RouteMonitorReg): a peer's immediate noproc can
// arrive first and is then dropped, and the call would wait for its
// deadline (seen under CPU load: a 5 s Multicall to a missing name timed
// out). So a target that has neither answered nor gone down is monitored
// again after remonitorFirst, then twice that, … at most remonitorMax times
// before the deadline; the first answer or DOWN of any of its monitors wins.
const (
	remonitorFirst = 200 * time.Millisecond
	remonitorMax   = 4
)

// caller is the short-lived process of one Multicall. It monitors each
// target by name (DOWN gives noproc, noconnection or the exit reason at
// once, where a plain Ergo Call would wait for its timeout), sends a
// '$gen_call' tagged with the monitor's reference as Erlang does, collects
// the {Ref, Reply} answers (Ergo hands them to HandleInfo: no sync request
// is registered for the ref) and stops at the deadline or when all answered.
type caller struct {
	gen.Server
	st       *callState
	call     []int // indexes of st.results to call
	name     string
	request  etf.Term
	deadline time.Time
	node     node.Node

	refs    map[etf.Ref]int   // every monitor (the first is also the reply tag) → target
	mons    map[int][]etf.Ref // the monitors of each target still waiting
	started bool
	cancel  gen.CancelFunc
	again   gen.CancelFunc // the next re-monitor
	gap     time.Duration  // until the next re-monitor
	redone  int            // re-monitors so far
}

type callerStart struct{}
type callerDeadline struct{}
type callerRemonitor struct{}

// Init only queues the start: sending happens in the process's own
// goroutine, so a stuck send can never hold up Spawn, i.e. the caller.
func (c *caller) Init(p *gen.ServerProcess, args ...etf.Term) error {
	c.refs = make(map[etf.Ref]int, len(c.call))
	c.mons = make(map[int][]etf.Ref, len(c.call))
	return p.Send(p.Self(), callerStart{})
}

// HandleInfo drives the call.
func (c *caller) HandleInfo(p *gen.ServerProcess, message etf.Term) gen.ServerStatus {
	switch m := message.(type) {
	case callerStart:
		c.start(p)
	case callerDeadline:
		c.st.finish(KindTimeout, nil)
		c.drop(p)
	case callerRemonitor:
		c.remonitor(p)
	case gen.MessageDown:
		if i, ok := c.refs[m.Ref]; ok {
			delete(c.refs, m.Ref)
			if c.done(p, i) {
				c.st.put(i, nil, downErr(c.st.results[i].Node, c.name, m.Reason))
			}
		}
	case etf.Tuple:
		if len(m) != 2 {
			break
		}
		ref, ok := m[0].(etf.Ref)
		if !ok {
			break
		}
		if i, ok := c.refs[ref]; ok && c.done(p, i) {
			c.st.put(i, m[1], nil)
		}
	}
	if c.started && len(c.mons) == 0 {
		return gen.ServerStatusStop
	}
	return gen.ServerStatusOK
}

func (c *caller) start(p *gen.ServerProcess) {
	c.started = true
	self := p.Self()
	for _, i := range c.call {
		node := c.st.results[i].Node
		to := gen.ProcessID{Name: c.name, Node: node}
		ref := p.MonitorProcess(to)
		c.refs[ref] = i
		c.mons[i] = []etf.Ref{ref}
		msg := etf.Tuple{atomGenCall, etf.Tuple{self, ref}, c.request}
		if err := p.Send(to, msg); err != nil {
			c.done(p, i)
			c.st.put(i, nil, sendErr(node, c.name, err))
		}
	}
	if len(c.mons) > 0 {
		c.cancel = p.SendAfter(self, callerDeadline{}, time.Until(c.deadline))
		c.gap = remonitorFirst
		c.schedule(p)
	}
}

// schedule queues the next re-monitor if it falls before the deadline.
func (c *caller) schedule(p *gen.ServerProcess) {
	if c.redone < remonitorMax && time.Now().Add(c.gap).Before(c.deadline) {
		c.again = p.SendAfter(p.Self(), callerRemonitor{}, c.gap)
		c.gap *= 2
	}
}

// remonitor monitors every waiting target once more (see remonitorFirst).
func (c *caller) remonitor(p *gen.ServerProcess) {
	c.redone++
	for _, i := range c.call {
		target := c.st.results[i].Node
		// Never a node no longer linked: Ergo would dial it here. (A
		// link lost after the first monitor was registered has already
		// sent its DOWN.)
		if _, waiting := c.mons[i]; !waiting || !linked(c.node, target) {
			continue
		}
		ref := p.MonitorProcess(gen.ProcessID{Name: c.name, Node: target})
		c.refs[ref] = i
		c.mons[i] = append(c.mons[i], ref)
	}
	c.schedule(p)
}

// done ends the wait for target i, removing its monitors; false if it had
// already ended (a second DOWN or a late reply).
func (c *caller) done(p *gen.ServerProcess, i int) bool {
	refs, waiting := c.mons[i]
	if !waiting {
		return false
	}
	for _, ref := range refs {
		if _, live := c.refs[ref]; live {
			p.DemonitorProcess(ref)
			delete(c.refs, ref)
		}
	}
	delete(c.mons, i)
	return true
}

// drop removes the monitors still held: Ergo keeps a monitor entry of a dead
// process until the monitored one goes down, so each call would leak one.
func (c *caller) drop(p *gen.ServerProcess) {
	for i := range c.mons {
		c.done(p, i)
	}
}

// Terminate cleans up; if the process ends early (killed by the backstop,
// or a panic) the calling goroutine is released with what is known.
func (c *caller) Terminate(p *gen.ServerProcess, reason string) {
	if c.cancel != nil {
		c.cancel()
	}
	if c.again != nil {
		c.again()
	}
	c.drop(p)
	c.st.finish(KindRefused, fmt.Errorf("fan-out process ended: %s", reason))
}

// sender is the process Multicast sends from.
type sender struct{ gen.Server }
