package distfilter

import (
	"sync"
	"sync/atomic"
)

// gen_server:multi_call for every Go gen.Server. Erlang's multi_call sends
// a '$gen_call' whose From Ergo's gen.Server does not take for a call (it
// lands in HandleInfo and nobody answers; the node is a bad node after the
// full timeout, or forever with infinity):
//
//   - OTP 25 and older: {Pid, {Tag, Node}} from a middleman process, which
//     waits for {{Tag, Node}, Reply};
//   - OTP 26+: {Pid, [[alias | Alias] | Mon]} from the caller itself, which
//     waits for {[[alias | Alias] | Mon], Reply} sent to the alias.
//
// The filter rewrites such a From, on its way in, into the plain {Pid, Ref}
// of a gen_server:call (Ref a reference of the filter's, made on the peer
// node as a caller would), and the reply Ergo sends for it, {Ref, Reply} to
// Pid, on its way out into the reply multi_call waits for. Nothing for the
// server to write; calls of every other form pass untouched.

// maxMultiCalls bounds the multi_call requests waiting for their reply on
// one link (a server that never answers would otherwise leak entries); the
// oldest is forgotten first, and its late reply then goes out as Ergo wrote
// it, which the caller ignores.
const maxMultiCalls = 65536

// multiCalls is one link's multi_call requests waiting for Ergo's reply.
type multiCalls struct {
	mu      sync.Mutex
	next    uint32
	pending map[string]*multiCall // by refKey of the filter's reference
	order   []string              // insertion order, for the bound
	n       atomic.Int32          // len(pending), read without the lock
}

// multiCall is what the reply must become.
type multiCall struct {
	// to is where it goes (the middleman pid, or the alias); alias tells
	// which
	to    []byte
	alias bool
	tag   []byte // the tag the caller waits for
}

// rewriteMultiCall returns the payload to hand Ergo instead of a REG_SEND
// payload that is a multi_call '$gen_call' (a plain call), and false for
// anything else.
func (fc *filterConn) rewriteMultiCall(payload []byte) ([]byte, bool) {
	if len(payload) < 12 || payload[0] != tagSmallTuple || payload[1] != 3 {
		return nil, false
	}
	if a, ok := atomText(payload[2:]); !ok || a != "$gen_call" {
		return nil, false
	}
	e, err := elements(payload)
	if err != nil || len(e) != 3 {
		return nil, false
	}
	from, err := elements(e[1])
	if err != nil || len(from) != 2 {
		return nil, false
	}
	if _, _, _, _, isPid := pidParts(from[0]); !isPid {
		return nil, false
	}
	mc := &multiCall{tag: append([]byte(nil), from[1]...)}
	switch {
	case from[1][0] == tagSmallTuple: // {Tag, Node}: OTP 25
		t, err := elements(from[1])
		if err != nil || len(t) != 2 || t[0][0] != tagNewerRef {
			return nil, false
		}
		if _, ok := atomText(t[1]); !ok {
			return nil, false
		}
		mc.to = append([]byte(nil), from[0]...)
	case from[1][0] == tagList: // [[alias | Alias] | Mon]: OTP 26+
		alias, ok := multiCallAlias(from[1])
		if !ok {
			return nil, false // [alias | Ref]: a plain call, Ergo takes it
		}
		mc.to, mc.alias = append([]byte(nil), alias...), true
	default:
		return nil, false
	}
	ref := fc.multi.add(fc.peer, mc)
	return tuple(e[0], tuple(from[0], ref), e[2]), true
}

// multiCallAlias reads [[alias | Alias] | Mon] (LIST_EXT of one element,
// itself a LIST_EXT [alias | Alias], with a reference tail) and returns
// Alias.
func multiCallAlias(t []byte) ([]byte, bool) {
	if len(t) < 5 || t[0] != tagList || t[1]|t[2]|t[3] != 0 || t[4] != 1 {
		return nil, false
	}
	inner := t[5:]
	n, err := skipTerm(inner, nil)
	if err != nil || n >= len(inner) || inner[n] != tagNewerRef { // the tail: Mon
		return nil, false
	}
	inner = inner[:n]
	if len(inner) < 5 || inner[0] != tagList || inner[1]|inner[2]|inner[3] != 0 || inner[4] != 1 {
		return nil, false
	}
	body := inner[5:]
	m, err := skipTerm(body, nil)
	if err != nil {
		return nil, false
	}
	if a, ok := atomText(body[:m]); !ok || a != "alias" {
		return nil, false
	}
	alias := body[m:]
	if len(alias) == 0 || alias[0] != tagNewerRef {
		return nil, false
	}
	return alias, true
}

// add records mc and returns the reference to give Ergo: three words, the
// first within 18 bits, so Ergo writes it back byte for byte.
func (m *multiCalls) add(peer *peerInfo, mc *multiCall) []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.pending == nil {
		m.pending = map[string]*multiCall{}
	}
	m.next++
	ref := putRef(nil, peer.name, peer.creation, m.next&refMask, 0xffff_fff4, m.next)
	key, _, _ := refKey(ref)
	m.pending[key] = mc
	m.order = append(m.order, key)
	for len(m.pending) > maxMultiCalls {
		delete(m.pending, m.order[0])
		m.order = m.order[1:]
	}
	if len(m.order) > 2*maxMultiCalls { // answered ones linger in order
		live := m.order[:0]
		for _, k := range m.order {
			if _, ok := m.pending[k]; ok {
				live = append(live, k)
			}
		}
		m.order = live
	}
	m.n.Store(int32(len(m.pending)))
	return ref
}

// take removes and returns the multi_call of reference key.
func (m *multiCalls) take(key string) *multiCall {
	m.mu.Lock()
	defer m.mu.Unlock()
	mc := m.pending[key]
	if mc != nil {
		delete(m.pending, key)
		m.n.Store(int32(len(m.pending)))
	}
	return mc
}

// multiCallReply turns Ergo's reply to a rewritten multi_call (a SEND of
// {Ref, Reply}) into the frame the caller waits for; nil if the frame is
// not one.
func (fc *filterConn) multiCallReply(payload []byte) []byte {
	if fc.multi.n.Load() == 0 || len(payload) < 3 || payload[0] != tagSmallTuple || payload[1] != 2 || payload[2] != tagNewerRef {
		return nil
	}
	e, err := elements(payload)
	if err != nil || len(e) != 2 {
		return nil
	}
	key, _, ok := refKey(e[0])
	if !ok {
		return nil
	}
	mc := fc.multi.take(key)
	if mc == nil {
		return nil
	}
	reply := tuple(mc.tag, fc.f.refs.restore(e[1]))
	if mc.alias {
		name, creation := fc.f.self()
		from := putPid(nil, name, 0, originSerial, creation)
		return passThroughFrame(tuple(integer(opAliasSend), from, mc.to), reply)
	}
	return passThroughFrame(tuple(integer(opSend), atom(""), mc.to), reply)
}
