package distfilter

import (
	"fmt"
	"sync"
	"time"

	"github.com/ergo-services/ergo/etf"
	"github.com/ergo-services/ergo/lib"
)

// Serving erpc. From OTP 23 every rpc:call/cast/multicall
// and erpc:* is a distributed spawn request of erpc:execute_call(Ref, M, F,
// A) (or execute_cast(M, F, A)) with a monitor; the caller reads the result
// from the exit reason of the "process": {Ref, return, Value}, {Ref, throw,
// R}, {Ref, exit, R} or {Ref, error, R, Stack}. The filter plays that
// process: it answers SPAWN_REPLY at once with a pid of its own, runs the
// function, and sends the result as PAYLOAD_MONITOR_P_EXIT. Ergo never sees
// the request.
//
// gen_server:call and 'Elixir.GenServer':call to this node are forwarded to
// the Go process inside the stream, the way a BEAM caller process would do
// it: the filter injects MONITOR and the '$gen_call' message into Ergo's
// input from a pid that Ergo takes for one on the peer node, and picks
// Ergo's reply (or the monitor's exit) out of Ergo's output. So noproc,
// timeouts and the server's exit reasons come out as gen_server's own.

// Pid serial numbers that mark the filter's stand-in pids; Ergo's pids have
// serial 0 until 2^32 processes, BEAM's stay far below.
const (
	callerSerial  = 0x7fff_fff0 // "caller" pids on the peer node
	spawnedSerial = 0x7fff_fff1 // "spawned process" pids on this node
)

// Operations the rpc server sends.
const (
	opRegSend      = 6
	opMonitor      = 19
	opDemonitor    = 20
	opPayloadExit  = 24
	defaultTimeout = 5000 // gen_server:call/2 and GenServer.call/2
)

// rpcServer answers erpc spawn requests on one BEAM link.
type rpcServer struct {
	fc *filterConn

	mu     sync.Mutex
	next   uint32
	calls  map[string]*fwdCall // by refKey of the monitor reference
	closed bool
}

// fwdCall is a gen_server call forwarded to a Go process.
type fwdCall struct {
	caller, target, monRef []byte
	timer                  *time.Timer
	// done gets the reply ("return", Value) or the exit reason ("exit", R)
	done func(kind string, value []byte)
}

func newRPCServer(fc *filterConn) *rpcServer {
	return &rpcServer{fc: fc, calls: map[string]*fwdCall{}}
}

func (s *rpcServer) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for k, c := range s.calls {
		if c.timer != nil {
			c.timer.Stop()
		}
		delete(s.calls, k)
	}
}

func (s *rpcServer) id() uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.next++
	return s.next
}

// spawnReq is one spawn request being answered.
type spawnReq struct {
	s                     *rpcServer
	reqID, from, spawned  []byte
	monitor, link         bool
	module, function      string
	mAtom, fAtom, argList []byte

	// held are frames for the peer not written yet: while the request is
	// served on the read goroutine, the spawn reply and an immediate
	// result go out in one write instead of one each.
	held []byte
}

// send writes the frame of ctrl and payload to the peer, or adds it to
// held while there is something held.
func (r *spawnReq) send(ctrl, payload []byte) error {
	if r.held != nil {
		r.held = append(r.held, r.s.fc.outFrame(ctrl, payload)...)
		return nil
	}
	return r.s.fc.toPeer(ctrl, payload)
}

// flush writes what is held; from here on frames go out one by one (the
// request is served on another goroutine).
func (r *spawnReq) flush() error {
	held := r.held
	r.held = nil
	if len(held) == 0 {
		return nil
	}
	fc := r.s.fc
	fc.wmu.Lock()
	defer fc.wmu.Unlock()
	return writeAll(fc.NetReadWriter, held)
}

// spawnRequest handles {29, ReqId, From, GroupLeader, {M, F, Arity},
// OptList} (or 30 with a trace token) with payload ArgList. Called on Ergo's
// read goroutine.
func (s *rpcServer) spawnRequest(ctrl, payload []byte) {
	// the frame lives in the read buffer; the request outlives it
	ctrl = append([]byte(nil), ctrl...)
	payload = append([]byte(nil), payload...)
	e, err := elements(ctrl)
	if err != nil || len(e) < 6 {
		s.fc.f.logOnce("spawn-bad", "malformed spawn request from %s dropped", s.fc.peer.name)
		return
	}
	r := &spawnReq{s: s, reqID: e[1], from: e[2]}
	opts, err := listElements(e[5])
	if err != nil {
		opts = nil
	}
	for _, o := range opts {
		if a, ok := atomText(o); ok {
			r.monitor = r.monitor || a == "monitor"
			r.link = r.link || a == "link"
		} else if t, err := elements(o); err == nil && len(t) == 2 {
			if a, _ := atomText(t[0]); a == "monitor" {
				r.monitor = true
			}
		}
	}
	mfa, err := elements(e[4])
	var em, ef string
	if err == nil && len(mfa) == 3 {
		em, _ = atomText(mfa[0])
		ef, _ = atomText(mfa[1])
	}
	args, err := listElements(payload)
	if err != nil {
		args = nil
	}
	var cast bool
	switch {
	case em == "erpc" && ef == "execute_call" && len(args) == 4:
		// [Ref, M, F, A]: the exit reason carries the result
	case em == "erpc" && ef == "execute_cast" && len(args) == 3:
		cast = true
		args = append([][]byte{nil}, args...)
	default:
		// a plain spawn(GoNode, M, F, A): no process to run it in
		s.fc.f.logOnce("spawn-other", "spawn of %s:%s from %s refused (notsup): only erpc is served", em, ef, s.fc.peer.name)
		_ = s.fc.toPeer(tuple(integer(opSpawnReply), r.reqID, r.from, integer(0), atom("notsup")), nil)
		return
	}
	r.mAtom, r.fAtom, r.argList = args[1], args[2], args[3]
	r.module, _ = atomText(r.mAtom)
	r.function, _ = atomText(r.fAtom)
	name, creation := s.fc.f.self()
	r.spawned = putPid(nil, name, s.id(), spawnedSerial, creation)
	flags := 0
	if r.link {
		flags |= 1
	}
	if r.monitor {
		flags |= 2
	}
	r.held = s.fc.outFrame(tuple(integer(opSpawnReply), r.reqID, r.from, integer(int64(flags)), r.spawned), nil)
	s.fc.f.rpcServed.Add(1)
	resRef := args[0]
	finish := func(reason []byte) { r.exit(reason) }
	if cast {
		finish = func([]byte) { r.exit(atom("normal")) }
	}
	if !r.run(resRef, finish) {
		_ = r.flush()
	}
}

// exit ends the stand-in process with reason: the monitor's DOWN and the
// link's EXIT, as requested.
func (r *spawnReq) exit(reason []byte) {
	if r.monitor {
		_ = r.send(tuple(integer(opPayloadMonExit), r.spawned, r.from, r.reqID), reason)
	}
	if r.link {
		_ = r.send(tuple(integer(opPayloadExit), r.spawned, r.from), reason)
	}
}

// run computes M:F(A) and calls finish with execute_call's exit reason.
// Called on the read goroutine; anything slow goes to another goroutine.
func (r *spawnReq) run(resRef []byte, finish func([]byte)) (async bool) {
	ret := func(v []byte) { finish(tuple(resRef, atom("return"), v)) }
	raise := func(class string, reason, stack []byte) {
		if class == "error" {
			finish(tuple(resRef, atom("error"), reason, stack))
			return
		}
		finish(tuple(resRef, atom(class), reason))
	}
	undefStack := putList(nil, tuple(r.mAtom, r.fAtom, r.argList, putList(nil)))
	args, err := listElements(r.argList)
	if err != nil {
		raise("error", atom("undef"), undefStack) // improper: BEAM fails too
		return false
	}
	switch mf := r.module + ":" + r.function; {
	case mf == "erlang:node" && len(args) == 0:
		name, _ := r.s.fc.f.self()
		ret(atom(name))
		return false
	case (mf == "gen_server:call" || mf == "Elixir.GenServer:call") && (len(args) == 2 || len(args) == 3):
		if r.flush() != nil {
			return true
		}
		r.forwardCall(args, ret, func(reason []byte) { raise("exit", reason, nil) })
		return true
	case (mf == "gen_server:cast" || mf == "Elixir.GenServer:cast") && len(args) == 2:
		r.forwardCast(args[0], args[1])
		ret(atom("ok"))
		return false
	}
	fn, ok := (func(etf.List) (etf.Term, error))(nil), false
	if funcs := r.s.fc.f.opts.Funcs; funcs != nil {
		fn, ok = funcs.Lookup(r.module + ":" + r.function)
	}
	if !ok {
		raise("error", atom("undef"), undefStack)
		return false
	}
	// From here the goroutine owns r, what is held included: it writes
	// the spawn reply and the result together.
	if l, ok := r.s.fc.f.opts.Funcs.(Limited); ok {
		if l.TryGo(func() { r.runGo(fn, ret, raise, undefStack) }) {
			return true
		}
		raise("error", atom("busy"), undefStack)
		return false
	}
	go r.runGo(fn, ret, raise, undefStack)
	return true
}

// runGo runs a Go function of Options.Funcs on its own goroutine.
func (r *spawnReq) runGo(fn func(etf.List) (etf.Term, error), ret func([]byte), raise func(string, []byte, []byte), stack []byte) {
	defer func() { _ = r.flush() }()
	goErr := func(msg string) {
		raise("error", tuple(atom("go_error"), putBinary(nil, []byte(msg))), stack)
	}
	var args etf.List
	if len(r.argList) > 1 || r.argList[0] != tagNil { // Ergo cannot decode a bare []
		t, _, err := etf.Decode(r.argList, nil, etf.DecodeOptions{FlagBigPidRef: true})
		if err != nil {
			goErr("decode arguments: " + err.Error())
			return
		}
		switch l := t.(type) {
		case etf.List:
			args = l
		case string: // a list of bytes arrives as a Go string
			for _, c := range []byte(l) {
				args = append(args, int(c))
			}
		}
	}
	v, err := func() (v etf.Term, err error) {
		defer func() {
			if p := recover(); p != nil {
				err = &goPanic{p}
			}
		}()
		return fn(args)
	}()
	if err != nil {
		if rz, ok := err.(*Raise); ok {
			reason, e := encode(rz.Reason)
			if e != nil {
				goErr("encode reason: " + e.Error())
				return
			}
			switch rz.Class {
			case "throw", "exit":
				raise(rz.Class, reason, nil)
			default:
				raise("error", reason, stack)
			}
			return
		}
		goErr(err.Error())
		return
	}
	b, err := encode(v)
	if err != nil {
		goErr("encode result: " + err.Error())
		return
	}
	ret(b)
}

// goPanic is a panic in a Go function, reported to the caller as an error.
type goPanic struct{ v interface{} }

func (p *goPanic) Error() string { return fmt.Sprintf("panic: %v", p.v) }

// encode is Ergo's encoding of a Go value for a BEAM peer.
func encode(v etf.Term) ([]byte, error) {
	b := lib.TakeBuffer()
	defer lib.ReleaseBuffer(b)
	if err := etf.Encode(v, b, etf.EncodeOptions{FlagBigCreation: true, FlagBigPidRef: true}); err != nil {
		return nil, err
	}
	return append([]byte(nil), b.B...), nil
}

// target resolves a gen_server ServerRef to what Ergo can address: a name
// atom or a local pid; ok false when it is nothing on this node.
func (r *spawnReq) target(server []byte) (dest []byte, byName, ok bool) {
	name, _ := r.s.fc.f.self()
	if _, isAtom := atomText(server); isAtom {
		return server, true, true
	}
	if node, _, _, _, isPid := pidParts(server); isPid {
		return server, false, node == name
	}
	if t, err := elements(server); err == nil && len(t) == 2 {
		if n, isAtom := atomText(t[1]); isAtom && n == name {
			if _, isAtom := atomText(t[0]); isAtom {
				return t[0], true, true
			}
		}
	}
	return nil, false, false // {global, _}, {via, _, _}, other nodes
}

// caller makes a stand-in pid on the peer node and a reference of its.
func (r *spawnReq) caller() (pid, ref []byte) {
	id := r.s.id()
	p := r.s.fc.peer
	return putPid(nil, p.name, id, callerSerial, p.creation),
		putRef(nil, p.name, p.creation, refMask, 0xffff_fff0, id)
}

// sendTo is the frame that delivers msg from caller to dest.
func sendTo(caller, dest []byte, byName bool, msg []byte) []byte {
	if byName {
		return distFrame(tuple(integer(opRegSend), caller, atom(""), dest), msg)
	}
	return distFrame(tuple(integer(opSend), atom(""), dest), msg)
}

func (r *spawnReq) forwardCast(server, msg []byte) {
	dest, byName, ok := r.target(server)
	if !ok {
		return // gen_server:cast ignores a missing server
	}
	caller, _ := r.caller()
	r.s.fc.toErgo(sendTo(caller, dest, byName, tuple(atom("$gen_cast"), msg)))
}

// forwardCall does what gen_server:call(Server, Request[, Timeout]) does in
// a BEAM process: monitor, send '$gen_call', wait for reply, DOWN or
// timeout; failures exit with {Reason, {Module, call, Args}}.
func (r *spawnReq) forwardCall(args [][]byte, ret func([]byte), exit func([]byte)) {
	timeout := int64(defaultTimeout)
	if len(args) == 3 {
		if a, ok := atomText(args[2]); ok && a == "infinity" {
			timeout = -1
		} else if v, ok := smallInt(args[2]); ok && v >= 0 {
			timeout = int64(v)
		} else {
			// gen:call fails on a bad timeout inside the caller
			exit(tuple(tuple(atom("badarg"), putList(nil)), tuple(r.mAtom, r.fAtom, r.argList)))
			return
		}
	}
	argsForReason := r.argList
	if r.module == "Elixir.GenServer" && len(args) == 2 {
		// GenServer.call/2 is call/3 with the default timeout
		argsForReason = putList(nil, args[0], args[1], integer(defaultTimeout))
	}
	fail := func(reason []byte) {
		exit(tuple(reason, tuple(r.mAtom, r.fAtom, argsForReason)))
	}
	dest, byName, ok := r.target(args[0])
	if !ok {
		fail(atom("noproc"))
		return
	}
	caller, monRef := r.caller()
	key, _, _ := refKey(monRef)
	c := &fwdCall{caller: caller, target: dest, monRef: monRef}
	c.done = func(kind string, v []byte) {
		if kind == "return" {
			ret(v)
			return
		}
		fail(v)
	}
	s := r.s
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.calls[key] = c
	if timeout >= 0 {
		c.timer = time.AfterFunc(time.Duration(timeout)*time.Millisecond, func() {
			if s.take(key) != nil {
				s.demonitor(c)
				c.done("exit", atom("timeout"))
			}
		})
	}
	s.mu.Unlock()
	s.fc.toErgo(distFrame(tuple(integer(opMonitor), caller, dest, monRef), nil))
	s.fc.toErgo(sendTo(caller, dest, byName, tuple(atom("$gen_call"), tuple(caller, monRef), args[1])))
}

// take removes and returns the call waiting on key.
func (s *rpcServer) take(key string) *fwdCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.calls[key]
	if c == nil {
		return nil
	}
	delete(s.calls, key)
	if c.timer != nil {
		c.timer.Stop()
	}
	return c
}

// demonitor tells Ergo to drop the call's monitor. It reaches Ergo with the
// next read from the peer; a DOWN meanwhile is swallowed by intercept.
func (s *rpcServer) demonitor(c *fwdCall) {
	s.fc.toErgo(distFrame(tuple(integer(opDemonitor), c.caller, c.target, c.monRef), nil))
}

// intercept reports whether one of Ergo's outgoing frames is for a
// stand-in caller; if so it completes the call it answers. Called inside
// Write: replies to the peer go out on another goroutine.
func (s *rpcServer) intercept(ctrl, payload []byte) bool {
	e, err := elements(ctrl)
	if err != nil || len(e) < 3 {
		return false
	}
	node, _, serial, _, ok := pidParts(e[2])
	if !ok || serial != callerSerial || node != s.fc.peer.name {
		return false
	}
	switch ctrlOp(ctrl) {
	case opSend: // {2, '', Caller} with {MonRef, Reply}
		if r, err := elements(payload); err == nil && len(r) == 2 {
			if key, _, ok := refKey(r[0]); ok {
				if c := s.take(key); c != nil {
					s.demonitor(c)
					reply := append([]byte(nil), r[1]...)
					go c.done("return", reply)
				}
			}
		}
	case opMonitorPExit: // {21, Proc, Caller, MonRef, Reason}
		if len(e) == 5 {
			if key, _, ok := refKey(e[3]); ok {
				if c := s.take(key); c != nil {
					reason := append([]byte(nil), e[4]...)
					go c.done("exit", reason)
				}
			}
		}
	}
	return true
}
