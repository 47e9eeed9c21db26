package actors

import (
	"fmt"

	"github.com/ergo-services/ergo/etf"
	"github.com/ergo-services/ergo/gen"
	"github.com/ergo-services/ergo/node"

	"github.com/cloister-go/cloister/internal/clusterstate"
	"github.com/cloister-go/cloister/internal/wire/ergonode"
)

// NodeName is the registered name of the Node actor: the BEAM atom the
// Elixir library registers Cloister.Node under, so BEAM code can address a
// Go node as it addresses an Elixir one.
const NodeName = "Elixir.Cloister.Node"

// maxApplyConcurrency bounds the functions of one function registry (one
// cluster's) that run at once for peers, Multiapply and BEAM rpc together;
// a request beyond it is answered {error, busy} (Multiapply) or raises
// error:busy (rpc) instead of piling up goroutines on a node flooded by
// its peers.
const maxApplyConcurrency = 1024

// The atoms of the Node actor's protocol.
const (
	atomMultiapply  = etf.Atom("multiapply")
	atomOK          = etf.Atom("ok")
	atomError       = etf.Atom("error")
	atomUndef       = etf.Atom("undef")
	atomBadarg      = etf.Atom("badarg")
	atomBusy        = etf.Atom("busy")
	atomPanic       = etf.Atom("panic")
	atomUnknownCall = etf.Atom("unknown_call")
	atomGenCall     = etf.Atom("$gen_call")
	atomGenCast     = etf.Atom("$gen_cast")
)

// nodeProcessOptions are the options to spawn the Node actor with: peers
// write to it, and Ergo silently drops network messages to a full mailbox.
func nodeProcessOptions() gen.ProcessOptions {
	return gen.ProcessOptions{MailboxSize: ergonode.NetworkMailbox}
}

// nodeServer is the Node actor (the original's Cloister.Node, fan-out part).
type nodeServer struct {
	gen.Server
	fan   *fanEngine // the Multicall and Multicast of this node (fanout_engine.go)
	funcs *funcTable // also caps the functions running at once (TryGo)
	// connected, when set, tells whether this node is connected to a
	// caller's node: an answer to one that is not is dropped, because Ergo
	// would dial it on the sending goroutine (seconds for a frozen peer).
	connected func(node string) bool
}

// newNode returns the Node actor: a gen.Server to register as NodeName
// (spawn it with nodeProcessOptions). It serves Multiapply requests from
// peers — a call {multiapply, Fn, Args} with Fn a binary, atom or charlist
// and Args a list is answered {ok, Result} or {error, Reason}, Reason being
// {undef, Fn} for a function not in funcs, badarg for a malformed request,
// busy beyond maxApplyConcurrency, {panic, <<"...">>} or the function's
// error text as a binary. Functions run on their own goroutines, so a slow
// one delays nobody else. Any other call is answered {error, unknown_call};
// casts and infos of any shape are ignored. Erlang's gen_server:multi_call
// form ({'$gen_call', {Pid, {Ref, Node}}, Req}, which Ergo hands to
// HandleInfo) is answered like a call. A nil funcs means an empty registry.
func newNode(funcs *funcTable) gen.ServerBehavior {
	if funcs == nil {
		funcs = newFuncTable()
	}
	return &nodeServer{funcs: funcs, fan: newFanEngine()}
}

// newClusterNode is newNode for the Manager's tree: answers to callers on
// nodes the cluster's node is not connected to are dropped.
func newClusterNode(c *shared, observe func(op string, results []Result)) gen.ServerBehavior {
	s := newNode(c.Funcs).(*nodeServer)
	s.connected = c.ConnectedTo
	s.fan.observe = observe
	return s
}

// reachable reports whether an answer to a caller on node may be sent.
func (s *nodeServer) reachable(node etf.Atom) bool {
	return s.connected == nil || s.connected(string(node))
}

// ProcessLoop runs gen.Server's loop behind guardedLoop's filter.
func (s *nodeServer) ProcessLoop(ps gen.ProcessState, started chan<- bool) string {
	return guardedLoopWith(&s.Server, ps, started, s.fan.deliver)
}

// Init makes this actor the one that runs Multicall and Multicast for its
// node, when it is registered as NodeName (not another instance a test or
// an application runs under another name).
func (s *nodeServer) Init(p *gen.ServerProcess, args ...etf.Term) error {
	if n, ok := p.Env(node.EnvKeyNode).(node.Node); ok && p.Name() == NodeName {
		if err := s.fan.bind(n, p.Process); err != nil {
			return err
		}
		s.fan.register()
	}
	return nil
}

// Terminate ends the fan-outs in flight.
func (s *nodeServer) Terminate(p *gen.ServerProcess, reason string) {
	s.fan.stop()
}

// guardedLoop runs gen.Server's process loop on a filtered copy of the
// mailbox that drops a bare empty tuple. Ergo's gen.Server loop reads the
// first element of every tuple it receives and panics on {}: one `Pid ! {}`
// from any peer kills any Ergo gen.Server, outside every callback (no
// Terminate). Only the Node actor's own mailbox is filtered; the filtered
// channel has the original's capacity, which also sizes the loop's buffer
// of deferred messages. Exit signals from other processes are dropped too
// (ownExits): a linked peer cannot kill the process.
func guardedLoop(srv *gen.Server, ps gen.ProcessState, started chan<- bool) string {
	return guardedLoopWith(srv, ps, started, nil)
}

// handoffQueue is the length of the filtered mailbox between the forwarder
// and gen.Server's loop.
const handoffQueue = 64

// guardedLoopWith is guardedLoop whose forwarder first offers every message
// to take (nil: none), and passes on only what it did not take: how the
// Node actor matches fan-out replies and DOWNs without a hop through
// gen.Server's loop (which runs each callback on a goroutine of its own).
func guardedLoopWith(srv *gen.Server, ps gen.ProcessState, started chan<- bool, take func(etf.Term) bool) string {
	orig := ps.ProcessChannels()
	// Ergo's own mailbox (orig) absorbs bursts and is what Ergo drops
	// from when full; the forwarder drains it into this short hand-off
	// queue. gen.Server also sizes its deferred queue (only used while a
	// handler waits in a Call, which these actors never do) from it: a
	// full-size copy cost two more 384 KB buffers per actor at 8192 slots,
	// and a channel's ring buffer is touched end to end over time.
	mailbox := make(chan gen.ProcessMailboxMessage, handoffQueue)
	ctx := ps.Context()
	go func() {
		for {
			select {
			case m := <-orig.Mailbox:
				if t, ok := m.Message.(etf.Tuple); ok && len(t) == 0 {
					continue
				}
				if take != nil && take(m.Message) {
					continue
				}
				select {
				case mailbox <- m:
				case <-ctx.Done():
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	ps.Process = guardedProcess{Process: ps.Process, channels: gen.ProcessChannels{
		Mailbox:      mailbox,
		Direct:       orig.Direct,
		GracefulExit: ownExits(ps, orig.GracefulExit),
	}}
	return srv.ProcessLoop(ps, started)
}

// guardedProcess is the process as gen.Server's loop sees it: the same, but
// reading the filtered mailbox.
type guardedProcess struct {
	gen.Process
	channels gen.ProcessChannels
}

func (g guardedProcess) ProcessChannels() gen.ProcessChannels { return g.channels }

// HandleCall serves {multiapply, Fn, Args}; the answer is sent
// asynchronously, so the return is always Ignore.
func (s *nodeServer) HandleCall(p *gen.ServerProcess, from gen.ServerFrom, message etf.Term) (etf.Term, gen.ServerStatus) {
	s.serve(message, func(reply etf.Term) {
		if s.reachable(from.Pid.Node) {
			_ = p.SendReply(from, reply)
		}
	})
	return nil, gen.ServerStatusIgnore
}

// HandleCast ignores every cast: the Node actor takes no casts, and a peer's
// garbage must not stop it.
func (s *nodeServer) HandleCast(p *gen.ServerProcess, message etf.Term) gen.ServerStatus {
	return gen.ServerStatusOK
}

// HandleInfo answers the gen_server:multi_call form of a call and ignores
// everything else.
func (s *nodeServer) HandleInfo(p *gen.ServerProcess, message etf.Term) gen.ServerStatus {
	m, ok := message.(etf.Tuple)
	if !ok || len(m) != 3 || m[0] != atomGenCall {
		return gen.ServerStatusOK
	}
	to, tag, caller, ok := multiCallFrom(m[1]) // OTP 25 and OTP 27+ forms
	if !ok {
		return gen.ServerStatusOK
	}
	s.serve(m[2], func(reply etf.Term) {
		if s.reachable(caller.Node) {
			_ = p.Send(to, etf.Tuple{tag, reply})
		}
	})
	return gen.ServerStatusOK
}

// serve answers one request through reply, which may be called from another
// goroutine (SendReply and Send are safe there).
func (s *nodeServer) serve(request etf.Term, reply func(etf.Term)) {
	t, ok := request.(etf.Tuple)
	if !ok || len(t) == 0 || t[0] != atomMultiapply {
		reply(etf.Tuple{atomError, atomUnknownCall})
		return
	}
	if len(t) != 3 {
		reply(etf.Tuple{atomError, atomBadarg})
		return
	}
	name, okName := funcName(t[1])
	args, okArgs := argList(t[2])
	if !okName || !okArgs {
		reply(etf.Tuple{atomError, atomBadarg})
		return
	}
	fn, found := s.funcs.Lookup(name)
	if !found {
		reply(etf.Tuple{atomError, etf.Tuple{atomUndef, t[1]}})
		return
	}
	if !s.funcs.TryGo(func() { reply(runFunc(fn, args)) }) {
		reply(etf.Tuple{atomError, atomBusy})
	}
}

// runFunc calls fn and turns its outcome, panic included, into the answer.
func runFunc(fn goFunc, args etf.List) (answer etf.Term) {
	defer func() {
		if r := recover(); r != nil {
			answer = etf.Tuple{atomError, etf.Tuple{atomPanic, etf.String(fmt.Sprint(r))}}
		}
	}()
	v, err := fn(args)
	if err != nil {
		return etf.Tuple{atomError, etf.String(err.Error())}
	}
	return etf.Tuple{atomOK, v}
}

// funcName accepts the forms a function name takes on the wire: an Elixir
// string (binary), an atom, an Erlang charlist (a Go string after ETF), or
// etf.String when the request came from this node unencoded.
func funcName(t etf.Term) (string, bool) {
	s, ok := clusterstate.TermText(t)
	if v, isString := t.(etf.String); isString {
		s, ok = string(v), true
	}
	return s, ok && s != ""
}

// argList accepts a list; a latin-1 integer list such as [1,2,3] arrives as
// a Go string after ETF and is turned back into integers.
func argList(t etf.Term) (etf.List, bool) {
	switch v := t.(type) {
	case etf.List:
		return v, true
	case string:
		l := make(etf.List, 0, len(v))
		for i := 0; i < len(v); i++ {
			l = append(l, int(v[i]))
		}
		return l, true
	}
	return nil, false
}
