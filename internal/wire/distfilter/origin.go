package distfilter

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/ergo-services/ergo/etf"
)

// rpc out of Go: the filter plays an Erlang caller process. To run
// M:F(Args) on a BEAM peer it sends what erpc:call sends from a BEAM node,
// a SPAWN_REQUEST of erpc:execute_call(Res, M, F, Args) with a monitor,
// from a stand-in pid of this node that is also the spawned process's group
// leader. The peer answers SPAWN_REPLY, and the exit reason of the monitored
// process carries the result: {Res, return, V}, {Res, throw, R}, {Res, exit,
// R}, {Res, error, R, Stack} or {Res, error, {erpc, R}}. Every frame for a
// stand-in pid is taken out of the stream before Ergo sees it; io requests
// from the spawned process (its group leader is ours) are answered so that
// io:format there neither blocks nor fails.

// originSerial marks the stand-in caller pids of rpc out of Go (see
// callerSerial).
const originSerial = 0x7fff_fff2

// Operations the rpc origin reads.
const (
	opLink        = 1
	opExit        = 3
	opExit2       = 8
	opPayloadExt2 = 25
)

// Errors of RPC; match with errors.Is.
var (
	// ErrNoFilter: no filter is installed on the local node.
	ErrNoFilter = errors.New("distfilter: no distribution filter on this node")
	// ErrNotBEAM: the peer is not a BEAM node connected through the filter
	// (an Ergo node, or not connected).
	ErrNotBEAM = errors.New("distfilter: not a connected BEAM node")
	// ErrNoSpawn: the peer does not take spawn requests (OTP before 23).
	ErrNoSpawn = errors.New("distfilter: the peer does not support spawn requests")
	// ErrTimeout: no result within the timeout (the function may still
	// run on the peer).
	ErrTimeout = errors.New("distfilter: rpc timed out")
	// ErrConnectionLost: the link went down before the result came.
	ErrConnectionLost = errors.New("distfilter: connection lost during the rpc")
	// ErrSpawnRefused: the peer refused the spawn request.
	ErrSpawnRefused = errors.New("distfilter: spawn request refused")
)

// Exception is an Erlang exception raised by the function an RPC ran.
type Exception struct {
	// Class is "error", "exit" or "throw".
	Class string
	// Reason is the exception's reason, decoded (Ergo's etf mapping).
	Reason etf.Term
	// Stack is the stack trace of an error (nil for exit and throw).
	Stack etf.Term
	// Message is the text of an Elixir exception (its :message field, or
	// "" when the reason is not an Elixir exception with a text message).
	Message string
}

// Error reads "error: ** (RuntimeError) boom" for an Elixir exception and
// "exit: {noproc, ...}" (class and reason, binaries as text) otherwise.
func (e *Exception) Error() string {
	if e.Message != "" {
		return fmt.Sprintf("%s: ** (%s) %s", e.Class, elixirName(e.Reason), e.Message)
	}
	return e.Class + ": " + TermText(e.Reason)
}

// elixirName is the short name of an Elixir exception struct.
func elixirName(r etf.Term) string {
	m, _ := r.(etf.Map)
	s, _ := m[etf.Atom("__struct__")].(etf.Atom)
	return strings.TrimPrefix(string(s), "Elixir.")
}

// TermText renders a term for an error message: binaries and charlists as
// quoted text when printable, tuples and lists in Erlang's brackets.
func TermText(t etf.Term) string {
	switch v := t.(type) {
	case nil:
		return "[]"
	case []byte:
		if printable(string(v)) {
			return fmt.Sprintf("<<%q>>", v)
		}
		return fmt.Sprint(v)
	case string:
		if printable(v) {
			return fmt.Sprintf("%q", v)
		}
		return fmt.Sprint([]byte(v))
	case etf.Atom:
		return string(v)
	case etf.Tuple:
		parts := make([]string, len(v))
		for i, e := range v {
			parts[i] = TermText(e)
		}
		return "{" + strings.Join(parts, ", ") + "}"
	case etf.List:
		parts := make([]string, len(v))
		for i, e := range v {
			parts[i] = TermText(e)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case etf.Map:
		parts := make([]string, 0, len(v))
		for k, e := range v {
			parts = append(parts, TermText(k)+" => "+TermText(e))
		}
		return "#{" + strings.Join(parts, ", ") + "}"
	}
	return fmt.Sprint(t)
}

func printable(s string) bool {
	for _, r := range s {
		if r == '\uFFFD' || (r < 0x20 && r != '\n' && r != '\t') {
			return false
		}
	}
	return true
}

// registry: the filter of each local node, by node name, so code holding
// only a node name (the actors) reaches its links.
var registry sync.Map // node name -> *filter

// beamLink returns the filtered link to peer from the local node self.
func beamLink(self, peer string) (*filterConn, error) {
	v, ok := registry.Load(self)
	if !ok {
		return nil, ErrNoFilter
	}
	f := v.(*filter)
	c, ok := f.links.Load(peer)
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrNotBEAM, peer)
	}
	return c.(*filterConn), nil
}

// Installed reports whether the local node self runs the filter.
func Installed(self string) bool {
	_, ok := registry.Load(self)
	return ok
}

// IsBEAM reports whether peer is a BEAM (Erlang/Elixir) node connected to
// the local node self through the filter right now.
func IsBEAM(self, peer string) bool {
	_, err := beamLink(self, peer)
	return err == nil
}

// RPC runs module:function(args...) on the BEAM node peer, connected to
// the local node self, as erpc:call would from a BEAM node, and returns its
// value. An exception in the function is an *Exception; a timeout
// ErrTimeout (the function may still be running there); a link lost
// meanwhile ErrConnectionLost; a peer that is not a connected BEAM node
// ErrNotBEAM. Output the function writes with io is discarded. args must be
// encodable by Ergo's etf; nil is no arguments.
func RPC(self, peer, module, function string, args etf.List, timeout time.Duration) (etf.Term, error) {
	if module == "" || function == "" {
		return nil, fmt.Errorf("distfilter: rpc: empty module or function name (%q:%q)", module, function)
	}
	if timeout <= 0 {
		return nil, fmt.Errorf("distfilter: rpc: timeout must be > 0, got %v", timeout)
	}
	argList, err := encodeList(args)
	if err != nil {
		return nil, fmt.Errorf("distfilter: rpc %s:%s: encode arguments: %w", module, function, err)
	}
	fc, err := beamLink(self, peer)
	if err != nil {
		return nil, err
	}
	if fc.peer.flags&dflagSpawn == 0 {
		return nil, fmt.Errorf("%w: %s", ErrNoSpawn, peer)
	}
	start := time.Now()
	v, err := fc.origin().call(module, function, argList, timeout)
	var x *Exception
	if errors.As(err, &x) && x.Message == "" && isElixirException(x.Reason) {
		// an exception whose message is computed (KeyError...): ask the
		// node for the text, as Exception.message/1 gives it there
		left := timeout - time.Since(start)
		if left > 2*time.Second {
			left = 2 * time.Second
		}
		if left > 0 {
			if b, err := encodeList(etf.List{x.Reason}); err == nil {
				if m, err := fc.origin().call("Elixir.Exception", "message", b, left); err == nil {
					switch s := m.(type) {
					case []byte:
						x.Message = string(s)
					case string:
						x.Message = s
					}
				}
			}
		}
	}
	return v, err
}

// isElixirException reports whether r is an Elixir exception struct.
func isElixirException(r etf.Term) bool {
	m, ok := r.(etf.Map)
	return ok && m[etf.Atom("__exception__")] == true
}

// encodeList encodes a list of Go values as an Erlang list without going
// through Ergo's encoder for the list itself (it loops forever on an empty
// one): each element is encoded as a 1-tuple and its body kept.
func encodeList(args etf.List) ([]byte, error) {
	elems := make([][]byte, 0, len(args))
	for _, a := range args {
		b, err := encode(etf.Tuple{a})
		if err != nil {
			return nil, err
		}
		elems = append(elems, b[2:]) // SMALL_TUPLE_EXT, 1
	}
	return putList(nil, elems...), nil
}

// rpcOrigin is the rpc-out state of one BEAM link.
type rpcOrigin struct {
	fc     *filterConn
	mu     sync.Mutex
	next   uint32
	calls  map[uint32]*originCall // by stand-in pid id
	closed bool
}

// originCall is one rpc out of Go waiting for its result.
type originCall struct {
	pid, reqID, res []byte
	spawned         []byte // the peer's process, once SPAWN_REPLY came
	done            chan originResult
}

type originResult struct {
	reason []byte // the monitored process's exit reason
	err    error
}

// origin returns the link's rpc-out state, made on first use.
func (fc *filterConn) origin() *rpcOrigin {
	fc.originOnce.Do(func() {
		o := &rpcOrigin{fc: fc, calls: map[uint32]*originCall{}}
		fc.orig.Store(o)
	})
	return fc.orig.Load()
}

func (o *rpcOrigin) call(module, function string, argList []byte, timeout time.Duration) (etf.Term, error) {
	name, creation := o.fc.f.self()
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return nil, ErrConnectionLost
	}
	o.next++
	id := o.next
	c := &originCall{
		pid:   putPid(nil, name, id, originSerial, creation),
		reqID: putRef(nil, name, creation, 0x3ffff&id, 0xffff_fff2, id),
		res:   putRef(nil, name, creation, 0x3ffff&(id+1), 0xffff_fff3, id),
		done:  make(chan originResult, 1),
	}
	o.calls[id] = c
	o.mu.Unlock()
	defer func() {
		o.mu.Lock()
		delete(o.calls, id)
		o.mu.Unlock()
	}()

	mfa := tuple(atom("erpc"), atom("execute_call"), integer(4))
	ctrl := tuple(integer(opSpawnRequest), c.reqID, c.pid, c.pid, mfa, putList(nil, atom("monitor")))
	payload := putList(nil, c.res, atom(module), atom(function), argList)
	if err := o.fc.toPeer(ctrl, payload); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConnectionLost, err)
	}
	o.fc.f.rpcOut.Add(1)
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case r := <-c.done:
		if r.err != nil {
			return nil, r.err
		}
		return decodeResult(c.res, r.reason)
	case <-timer.C:
		o.mu.Lock()
		spawned := c.spawned
		o.mu.Unlock()
		if spawned != nil { // as erpc does: the result is no longer wanted
			_ = o.fc.toPeer(tuple(integer(opDemonitor), c.pid, spawned, c.reqID), nil)
		}
		return nil, fmt.Errorf("%w after %v", ErrTimeout, timeout)
	}
}

// finish completes the call of stand-in id, once.
func (o *rpcOrigin) finish(id uint32, r originResult) {
	o.mu.Lock()
	c := o.calls[id]
	delete(o.calls, id)
	o.mu.Unlock()
	if c != nil {
		c.done <- r
	}
}

// close fails every waiting call: the link is gone.
func (o *rpcOrigin) close() {
	o.mu.Lock()
	o.closed = true
	calls := o.calls
	o.calls = map[uint32]*originCall{}
	o.mu.Unlock()
	for _, c := range calls {
		c.done <- originResult{err: ErrConnectionLost}
	}
}

// incoming takes every frame addressed to a stand-in pid of this link's
// rpc out of the stream; it reports whether it took the frame. Called on
// the read goroutine.
func (o *rpcOrigin) incoming(op int, ctrl, payload []byte) bool {
	e, err := elements(ctrl)
	if err != nil || len(e) < 3 {
		return false
	}
	node, id, serial, _, ok := pidParts(e[2])
	if !ok || serial != originSerial {
		return false
	}
	if name, _ := o.fc.f.self(); node != name {
		return false
	}
	switch op {
	case opSpawnReply: // {31, ReqId, To, Flags, Result}
		if len(e) == 5 {
			if _, _, _, _, isPid := pidParts(e[4]); isPid {
				o.mu.Lock()
				if c := o.calls[id]; c != nil {
					c.spawned = append([]byte(nil), e[4]...)
				}
				o.mu.Unlock()
			} else {
				reason, _ := atomText(e[4])
				o.finish(id, originResult{err: fmt.Errorf("%w: %s", ErrSpawnRefused, reason)})
			}
		}
	case opMonitorPExit: // {21, Proc, To, Ref, Reason}
		if len(e) == 5 {
			o.finish(id, originResult{reason: append([]byte(nil), e[4]...)})
		}
	case opPayloadMonExit: // {28, Proc, To, Ref} with the reason as payload
		o.finish(id, originResult{reason: append([]byte(nil), payload...)})
	case opSend, opSendTT, opSendSender, opSendSenderTT:
		o.ioRequest(payload)
	}
	// MONITOR/DEMONITOR of the group leader, links, exits: nothing to do;
	// the stand-in never goes down while the link is up
	return true
}

// ioRequest answers {io_request, From, ReplyAs, Request} sent to a stand-in
// group leader: output is accepted and dropped, input is refused.
func (o *rpcOrigin) ioRequest(msg []byte) {
	e, err := elements(msg)
	if err != nil || len(e) != 4 {
		return
	}
	if a, _ := atomText(e[0]); a != "io_request" {
		return
	}
	if _, _, _, _, isPid := pidParts(e[1]); !isPid {
		return
	}
	reply := atom("ok")
	if !isOutput(e[3]) {
		reply = tuple(atom("error"), atom("enotsup"))
	}
	o.fc.f.logOnce("io", "output of a function run by rpc on %s is discarded", o.fc.peer.name)
	// copies: the frame lives in the read buffer
	ctrl := tuple(integer(opSend), atom(""), e[1])
	answer := tuple(atom("io_reply"), e[2], reply)
	go func() { _ = o.fc.toPeer(ctrl, answer) }()
}

// isOutput reports whether an io request only writes ({put_chars, ...} or
// {requests, [...]} of those), which a sink may accept.
func isOutput(req []byte) bool {
	e, err := elements(req)
	if err != nil || len(e) == 0 {
		return false
	}
	switch a, _ := atomText(e[0]); a {
	case "put_chars":
		return true
	case "requests":
		if len(e) != 2 {
			return false
		}
		l, err := listElements(e[1])
		if err != nil {
			return false
		}
		for _, r := range l {
			if !isOutput(r) {
				return false
			}
		}
		return true
	}
	return false
}

// decodeResult reads erpc:execute_call's exit reason for result ref res.
func decodeResult(res, reason []byte) (etf.Term, error) {
	e, err := elements(reason)
	if err != nil || len(e) < 3 || string(e[0]) != string(res) {
		// not execute_call's: the process was killed, or the link failed
		r, derr := decodeTerm(reason)
		if derr != nil {
			return nil, derr
		}
		if r == etf.Atom("noconnection") {
			return nil, ErrConnectionLost
		}
		return nil, &Exception{Class: "exit", Reason: r}
	}
	class, _ := atomText(e[1])
	v, err := decodeTerm(e[2])
	if err != nil {
		return nil, err
	}
	switch {
	case class == "return" && len(e) == 3:
		return v, nil
	case (class == "throw" || class == "exit") && len(e) == 3:
		return nil, &Exception{Class: class, Reason: v}
	case class == "error" && len(e) == 3: // {Res, error, {erpc, R}}
		return nil, &Exception{Class: "error", Reason: v}
	case class == "error" && len(e) == 4:
		stack, _ := decodeTerm(e[3])
		x := &Exception{Class: "error", Reason: v, Stack: stack}
		x.Message = elixirMessage(v)
		return nil, x
	}
	return nil, fmt.Errorf("distfilter: unexpected rpc result %s", TermText(v))
}

// elixirMessage is the message text of an Elixir exception struct.
func elixirMessage(r etf.Term) string {
	if !isElixirException(r) {
		return ""
	}
	switch s := r.(etf.Map)[etf.Atom("message")].(type) {
	case []byte:
		return string(s)
	case string:
		return s
	}
	return ""
}

// decodeTerm decodes one term with Ergo's decoder, which panics on some
// terms (a map with binary keys): that becomes an error.
func decodeTerm(b []byte) (t etf.Term, err error) {
	defer func() {
		if p := recover(); p != nil {
			t, err = nil, fmt.Errorf("distfilter: the result cannot be decoded by Ergo (%v); a map with binary keys, for example, cannot", p)
		}
	}()
	if len(b) == 1 && b[0] == tagNil { // Ergo's decoder fails on a bare []
		return etf.List{}, nil
	}
	t, _, err = etf.Decode(b, nil, etf.DecodeOptions{FlagBigPidRef: true})
	if err != nil {
		return nil, fmt.Errorf("distfilter: decode the rpc result: %w", err)
	}
	return t, nil
}
