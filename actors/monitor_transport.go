package actors

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cloister-go/cloister/internal/clusterstate"
	"github.com/cloister-go/cloister/internal/core"
	"github.com/cloister-go/cloister/internal/wire/ergonode"
	"github.com/ergo-services/ergo/etf"
	"github.com/ergo-services/ergo/gen"
	"github.com/ergo-services/ergo/node"
)

// transport is everything the Monitor's driver asks of the node: the seam
// between the driver and Ergo. The Monitor uses ergoTransport; tests use a
// fake that answers in-process and deterministically.
//
// Nodes, Probe and Disconnect are called on the Monitor's goroutine and
// must not block on the network; Connect is called on a goroutine of the
// driver's and may.
type transport interface {
	// Nodes lists the nodes this node is connected to.
	Nodes() []string
	// Connect dials peer and returns when it is connected, the dial failed,
	// or ctx ends. With checkGone, gone reports that the failure proves the
	// peer's process gone (name unregistered, nothing listening), not a
	// network problem; without, gone is false and finding out costs nothing.
	Connect(ctx context.Context, peer string, checkGone bool) (gone bool, err error)
	// Disconnect drops the connection to peer.
	Disconnect(peer string)
	// Probe asks peer's Monitor for its state, without waiting: the answer
	// comes back to the Monitor as a message (see Monitor.HandleEvent).
	Probe(peer string)
	// Ping sends peer's Monitor the heartbeat {cloister_ping, Hash}, hash
	// being this node's core.MembersHash, or with news (non-nil: the peer
	// takes them) {cloister_ping, Hash, Have, Added, Removed}, without
	// waiting; the answer comes back as a message too.
	Ping(peer string, hash uint64, news *core.ListNews)
	// Leave tells peer's Monitor that this node is leaving; AckLeave tells
	// a leaving peer's Monitor that its leave was heard. Neither waits.
	Leave(peer string)
	AckLeave(peer string)
	// LinkReads fills dst (cleared first) with when each link last read a
	// byte, by peer (none known: dst stays empty). A member heard that way
	// is not pinged.
	LinkReads(dst map[string]time.Time)
	// Keepalive has every link that wrote nothing for idle write a
	// keepalive now, without waiting, so that the peers hear this node on
	// idle links without a ping; only the links to the peers in only when
	// it is not nil (the neighbour watch, core.KeepaliveTo). Called at the
	// keepalive ticks (keepaliveEvery): a Monitor that stops running stops
	// them.
	Keepalive(idle time.Duration, only []string)
	// Suspect tells peer's Monitor that this node suspects node, last
	// heard silent ago (core.SendSuspect), without waiting.
	Suspect(peer, node string, silent time.Duration)
}

// The leave messages, sent only to Go cloister Monitors whose state answer
// says they take them: {leaveTag, Node} and {leaveAckTag, Node}, Node the
// sender's name.
const (
	leaveTag    = etf.Atom("$cloister_leave")
	leaveAckTag = etf.Atom("$cloister_leave_ack")
)

// suspectTag: {suspectTag, Sender, Node, Silent}, Silent the nanoseconds
// since Node was last heard when the notice was sent: a duration, not a
// time, so hosts' clocks need not agree. The receiver counts it back from
// when the notice arrives, which puts the last sign of life a transit time
// later than it was (a removal that late, never early). Sent only to Go cloister Monitors whose state answer
// carries watch (core.SendSuspect).
const suspectTag = etf.Atom("$cloister_suspect")

// dialError is a failed dial with its cause: Error is the full text
// logged, Cause what stays the same from one attempt to the next (no
// addresses, no ports), to tell a change of cause.
type dialError struct {
	err   error
	text  string
	cause string
}

func (e *dialError) Error() string { return e.text }
func (e *dialError) Unwrap() error { return e.err }

// failureCause is err without what changes with every attempt.
func failureCause(err error) string {
	var de *dialError
	if errors.As(err, &de) {
		return de.cause
	}
	return err.Error()
}

// ergoTransport is the transport over an Ergo node, used from the
// Monitor's process.
type ergoTransport struct {
	node    node.Node
	links   *ergonode.Links // nil: a node not started by ergonode (pings only)
	proc    gen.Process
	monitor string        // the Monitor's registered name on peers
	timeout time.Duration // DialTimeout: bounds the diagnosis of a failure too
	self    string
	probes  map[etf.Ref]probe // outstanding probes; the Monitor's goroutine only

	mu       sync.Mutex
	attempts map[string]*attempt // connects in flight, one per peer
}

type probe struct {
	node string
	at   time.Time
	ping bool // a Ping (answered {cloister_pong, Hash}), not a state probe
}

// attempt is one Ergo connect (and, when it fails, the diagnosis of the
// failure). Ergo's connect cannot be cancelled: it runs on a goroutine of
// its own that ends with Ergo's own deadlines (3 s for the TCP dial, 5 s
// for the handshake; the EPMD lookup of an unreachable host only with the
// kernel's TCP timeout). There is at most one per peer, and at most
// core.MaxDialing in all: a dial that finds one in flight waits for it
// instead of starting another, so a peer that hangs costs one goroutine
// however often it is re-dialled, and a dial cancelled by the Monitor's
// stop leaves only that one behind.
type attempt struct {
	done chan struct{}
	gone bool
	err  error
}

func newErgoTransport(n node.Node, proc gen.Process, monitor string, timeout time.Duration) *ergoTransport {
	return &ergoTransport{node: n, links: ergonode.LinksOf(n), proc: proc, monitor: monitor, timeout: timeout, self: n.Name(),
		probes: map[etf.Ref]probe{}, attempts: map[string]*attempt{}}
}

// LinkReads implements transport.
func (t *ergoTransport) LinkReads(dst map[string]time.Time) {
	if t.links == nil {
		clear(dst)
		return
	}
	t.links.ReadTimes(dst)
}

// Keepalive implements transport.
func (t *ergoTransport) Keepalive(idle time.Duration, only []string) {
	if t.links != nil {
		t.links.Keepalive(idle, only)
	}
}

// Suspect implements transport.
func (t *ergoTransport) Suspect(peer, node string, silent time.Duration) {
	if !linked(t.node, peer) {
		return // sending would dial on this goroutine
	}
	_ = t.proc.Send(gen.ProcessID{Name: t.monitor, Node: peer},
		etf.Tuple{suspectTag, etf.Atom(t.node.Name()), etf.Atom(node), int64(silent)})
}

func (t *ergoTransport) Nodes() []string { return t.node.Nodes() }

func (t *ergoTransport) Connect(ctx context.Context, peer string, checkGone bool) (bool, error) {
	t.mu.Lock()
	a := t.attempts[peer]
	if a == nil && len(t.attempts) >= core.MaxDialing {
		// Attempts outlive the dials that started them (up to Ergo's
		// deadlines): their number is capped as the core caps its dials.
		t.mu.Unlock()
		return false, fmt.Errorf("cloister: dial %s: %d connects already in flight", peer, core.MaxDialing)
	}
	if a == nil {
		a = &attempt{done: make(chan struct{})}
		t.attempts[peer] = a
		go func() {
			// Only a lost member's re-dial asks whether the process is gone
			// (checkGone); a first contact just dials. A dial that joins this
			// attempt later wanting gone gets false: its flap grace then runs
			// to the end instead of ending early.
			var addr string
			refused := false
			if checkGone {
				addr, refused = refusedAtLastAddress(t.node, peer, t.timeout)
			}
			if refused {
				a.err, a.gone = fmt.Errorf("cloister: dial %s: nothing listens at %s, where it did: the process is gone", peer, addr), true
			} else {
				a.err = ergonode.Connect(t.node, peer)
				if a.err != nil && checkGone {
					a.gone = processGone(t.node, peer, t.timeout)
				}
			}
			t.mu.Lock()
			delete(t.attempts, peer)
			t.mu.Unlock()
			close(a.done)
		}()
	}
	t.mu.Unlock()
	var err error
	gone := false
	select {
	case <-a.done:
		err, gone = a.err, a.gone
	case <-ctx.Done():
		err = fmt.Errorf("cloister: dial %s: no answer in %s", peer, t.timeout)
	}
	if err == nil {
		return false, nil
	}
	// Ergo reports every failed connect as "no route to node"; a failed
	// handshake's real cause (cookie, TLS, timeout) comes with the dial.
	var ce *ergonode.ConnectError
	if errors.As(err, &ce) {
		return gone, &dialError{err: err, text: err.Error(),
			// Not the handshake's text as the cause: its address (a new
			// port each time) changes with every attempt, its cause not.
			cause: ce.Err.Error() + ": " + ce.Handshake.Cause.Error()}
	}
	return gone, err
}

func (t *ergoTransport) Disconnect(peer string) { _ = t.node.Disconnect(peer) }

// Probe asks a peer's Monitor for its state with a plain $gen_call that
// Ergo, Erlang and Elixir servers all answer, without blocking: the reply
// arrives as an info message {Ref, State}.
func (t *ergoTransport) Probe(peer string) { t.call(peer, etf.Atom("state"), false) }

// Ping sends the heartbeat as a $gen_call too: the answer arrives as an
// info message {Ref, {cloister_pong, Hash}}.
func (t *ergoTransport) Ping(peer string, hash uint64, news *core.ListNews) {
	t.call(peer, heartbeat(atomPing, hash, news), true)
}

func (t *ergoTransport) call(peer string, req etf.Term, ping bool) {
	// Sending to a node that is not connected would make Ergo dial
	// synchronously on this goroutine: never do that.
	if !linked(t.node, peer) {
		return
	}
	ref := t.proc.MakeRef()
	t.probes[ref] = probe{node: peer, at: time.Now(), ping: ping}
	msg := etf.Tuple{etf.Atom("$gen_call"), etf.Tuple{t.proc.Self(), ref}, req}
	if err := t.proc.Send(gen.ProcessID{Name: t.monitor, Node: peer}, msg); err != nil {
		delete(t.probes, ref)
	}
}

// Leave sends {leaveTag, Self} to peer's Monitor (only when connected).
func (t *ergoTransport) Leave(peer string) { t.notify(peer, leaveTag) }

// AckLeave sends {leaveAckTag, Self} to peer's Monitor.
func (t *ergoTransport) AckLeave(peer string) { t.notify(peer, leaveAckTag) }

func (t *ergoTransport) notify(peer string, tag etf.Atom) {
	if !linked(t.node, peer) {
		return // sending would dial on this goroutine
	}
	_ = t.proc.Send(gen.ProcessID{Name: t.monitor, Node: peer}, etf.Tuple{tag, etf.Atom(t.node.Name())})
}

// answered returns the peer a probe or ping reply with this ref comes
// from, and whether it was a ping, and forgets it.
func (t *ergoTransport) answered(ref etf.Ref) (string, bool, bool) {
	pr, ok := t.probes[ref]
	if ok {
		delete(t.probes, ref)
	}
	return pr.node, pr.ping, ok
}

// The heartbeat between cloister Monitors that agree on the member list:
// {cloister_ping, Hash} answered {cloister_pong, Hash}, Hash being the
// 8-byte big-endian core.MembersHash of the sender's members. Only a peer
// whose state answer carried members_hash is pinged; any other (an Elixir
// Monitor) is asked for its state as before.
const (
	atomPing = etf.Atom("cloister_ping")
	atomPong = etf.Atom("cloister_pong")
)

// heartbeat is a ping or pong (tag) carrying hash, and news when not nil:
// {Tag, Hash} or {Tag, Hash, Have, Added, Removed}, Have an 8-byte hash
// or <<>> (none), Added and Removed lists of atoms (see core.ListNews).
// The long form goes only to a Go cloister whose state answer says it
// takes it (list_deltas), or answers a ping of that form: an older one
// answers any other ping with an error, and an Elixir one is never pinged.
func heartbeat(tag etf.Atom, hash uint64, news *core.ListNews) etf.Tuple {
	if news == nil {
		return etf.Tuple{tag, hashBytes(hash)}
	}
	have := []byte{}
	if news.HasHave {
		have = hashBytes(news.Have)
	}
	return etf.Tuple{tag, hashBytes(hash), have, atoms(news.Added), atoms(news.Removed)}
}

// parseHeartbeat reads a ping or pong of tag (either form of heartbeat);
// news is nil for the short form.
func parseHeartbeat(t etf.Term, tag etf.Atom) (hash uint64, news *core.ListNews, ok bool) {
	tup, isTuple := t.(etf.Tuple)
	if !isTuple || (len(tup) != 2 && len(tup) != 5) || tup[0] != tag {
		return 0, nil, false
	}
	if hash, ok = clusterstate.HashOf(tup[1]); !ok || len(tup) == 2 {
		return hash, nil, ok
	}
	news = &core.ListNews{}
	news.Have, news.HasHave = clusterstate.HashOf(tup[2])
	if news.Added, ok = atomList(tup[3]); !ok {
		return 0, nil, false
	}
	if news.Removed, ok = atomList(tup[4]); !ok {
		return 0, nil, false
	}
	return hash, news, true
}

// atomList reads a list of atoms of at most a list's bound (see
// clusterstate.ParsePeerState).
func atomList(t etf.Term) ([]string, bool) {
	l, ok := t.(etf.List)
	if !ok || len(l) > 4*core.MaxReported {
		return nil, false
	}
	var out []string
	for _, e := range l {
		a, ok := e.(etf.Atom)
		if !ok {
			return nil, false
		}
		out = append(out, string(a))
	}
	return out, true
}

func hashBytes(h uint64) []byte { return binary.BigEndian.AppendUint64(make([]byte, 0, 8), h) }

// expire forgets probes unanswered for probeForget.
func (t *ergoTransport) expire(now time.Time) {
	for ref, pr := range t.probes {
		if now.Sub(pr.at) > probeForget {
			delete(t.probes, ref)
		}
	}
}

// listensOn notes that peer said it listens on port (0: it did not say):
// the port it registered, so at the host its name gives, where a lookup
// at its EPMD leads too. A peer reached by a static route is reached
// where the route says instead, and is not noted.
func (t *ergoTransport) listensOn(peer string, port uint16) {
	_, host, ok := strings.Cut(peer, "@")
	if port == 0 || !ok || host == "" {
		return
	}
	if _, static := t.node.StaticRoute(peer); static {
		return
	}
	ergonode.RememberAddress(t.node, peer, net.JoinHostPort(host, strconv.Itoa(int(port))))
}

// lastAddressWait bounds the dial to a peer's last address, and
// resetWait the wait for the reset of a dial accepted there: a refusal
// comes back within a round trip, and anything slower is left to the dial
// through the EPMD.
const (
	lastAddressWait = 250 * time.Millisecond
	resetWait       = 50 * time.Millisecond
)

// refusedAtLastAddress dials the address peer last resolved to (see
// ergonode.LastAddress) and reports whether nothing listens there any
// more: the dial is refused or reset, or accepted and then reset (the
// kernel answered it for a listening socket that a dying process then closed;
// a killed process's links can drop before its listener closes). The
// peer's process is then gone. This is processGone's second test without
// its EPMD lookup, which on a loaded host is the slow part of telling a
// killed member from a flap: the refusal comes from the kernel, the EPMD's
// answer from another process. Anything else (no address known, a
// listener that keeps the dial open, a timeout) proves nothing, and the
// caller dials as usual. A refused address is forgotten, so the next dial
// asks the EPMD: a peer started again may listen elsewhere.
func refusedAtLastAddress(n node.Node, peer string, timeout time.Duration) (string, bool) {
	if _, static := n.StaticRoute(peer); static {
		return "", false // Ergo dials where the route says, maybe a proxy
	}
	addr, ok := ergonode.LastAddress(n, peer)
	if !ok {
		return "", false
	}
	if !nothingListens(addr, min(timeout, lastAddressWait)) {
		return addr, false
	}
	ergonode.ForgetAddress(n, peer)
	return addr, true
}

// nothingListens dials addr: true when the dial is refused or reset, or
// accepted and reset within resetWait (see refusedAtLastAddress).
func nothingListens(addr string, timeout time.Duration) bool {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return dialRefused(err)
	}
	// A live peer waits for our handshake and, when we close without a
	// byte, takes it for a port probe (logs nothing).
	_ = c.SetReadDeadline(time.Now().Add(resetWait))
	_, err = c.Read(make([]byte, 1))
	c.Close()
	return errors.Is(err, syscall.ECONNRESET)
}

// dialRefused: a failed dial that proves nothing listens. A reset during
// the connect is the same dying listener as a reset after the accept (see
// nothingListens), caught a moment earlier: the kernel completed the
// handshake for the listening socket, which then closed before the dial
// returned.
func dialRefused(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET)
}

// processGone tells a dead node from an unreachable one after a failed
// dial (Ergo reports both as "no route"): its EPMD answers that the name is
// not registered, or nothing listens on the port it registered. Anything
// else — EPMD or host unreachable, a timeout, a static route — is not proof.
func processGone(n node.Node, peer string, timeout time.Duration) bool {
	r, err := n.Resolve(peer)
	if err != nil {
		return strings.Contains(err.Error(), "desired node not found")
	}
	host := r.Host
	if i := strings.IndexByte(peer, '@'); host == "" && i >= 0 {
		host = peer[i+1:]
	}
	c, err := net.DialTimeout("tcp", net.JoinHostPort(host, strconv.Itoa(int(r.Port))), timeout)
	if err == nil {
		c.Close()
		return false
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}

// waitGroup waits up to d for wg; it reports whether wg finished. The
// waiting goroutine ends with wg, which is bounded by its owner.
func waitGroup(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}
