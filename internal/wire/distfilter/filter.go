// Package distfilter is "the distribution filter": a layer of our own
// between Ergo v2.2.4 and the socket of every connection to a BEAM node.
// It lets Erlang/OTP 25, 27 and 29 and Elixir nodes talk to cloister's Go
// nodes where stock Ergo would fail:
//
//   - OTP 26+: the handshake announces DFLAG_UNLINK_ID, which OTP 26 made
//     mandatory; UNLINK_ID from the peer becomes Ergo's UNLINK plus the
//     UNLINK_ID_ACK the peer waits for; Ergo's UNLINK becomes UNLINK_ID; and
//     references Ergo would shorten to three words (OTP 26+ gen_server:call
//     replies go to five-word aliases) are restored from a bounded store.
//   - A message whose payload is a top-level [] no longer kills the link:
//     it reaches Go as the empty charlist "" (the same Erlang term).
//   - With Options.ServeRPC, rpc:call/erpc:call and friends from BEAM nodes
//     are answered (gen_server/GenServer call and cast to local processes,
//     erlang:node/0, and Go functions from Options.Funcs) with exactly the
//     terms a BEAM node would return.
//   - gen_server:multi_call from OTP 25 (middleman form) and 26+ (alias
//     form) reaches every Go gen.Server as a plain call, and its reply
//     goes back in the form the caller waits for.
//   - RPC runs a BEAM function on a BEAM peer from Go, as erpc:call does.
//
// InstallNetKernel makes net_adm:ping(GoNode) answer pong; InstallGlobal
// keeps global:sync/trans/set_lock on BEAM nodes from hanging on a Go node.
//
// How: Options.Apply wraps Ergo's handshake and proto (hooks in package
// ergonode). The handshake wrapper edits the flags field of the handshake
// messages (the digest does not cover flags) and learns the peer's flags. A
// peer that sets DFLAG_SEND_SENDER or DFLAG_EXIT_PAYLOAD is a BEAM node
// (Ergo sets neither); to a BEAM node we do not announce the header atom
// cache and fragmentation, so every frame on that link is plain external
// term format the filter can read and rewrite; Ergo's own messages to it
// go out in fragments (so that none passes Ergo's writer limit, see
// package ergonode) that the filter puts back together. Frames of Ergo
// peers are not touched at all; the only visible change on Ergo links is
// that a node we dial does not use the atom cache towards us, nor
// fragmentation unless it runs this filter (our flags are sent before we
// know who answers).
package distfilter

import (
	"context"
	"log"
	"sync"
	"sync/atomic"

	"github.com/ergo-services/ergo/etf"
	"github.com/ergo-services/ergo/lib"
	"github.com/ergo-services/ergo/node"

	"github.com/cloister-go/cloister/internal/wire/ergonode"
)

// Options configure the filter. The zero value filters links to BEAM nodes
// for OTP 26+ support and the empty-list guard, and leaves rpc unanswered
// (OTP then answers {badrpc, notsup} on its own side).
type Options struct {
	// ServeRPC announces DFLAG_SPAWN to BEAM peers and answers their erpc
	// spawn requests (rpc:call, rpc:cast, rpc:multicall, erpc:*). See
	// Funcs for what can be called.
	ServeRPC bool
	// Funcs are the Go functions rpc callers may run, besides the built-in
	// gen_server/'Elixir.GenServer' call and cast and erlang:node/0.
	Funcs Funcs
	// RefStoreSize bounds the store of long references (entries, about
	// 100 bytes each). Zero means DefaultRefStoreSize.
	RefStoreSize int
	// Logf receives the filter's rare notices (a repaired [] message, an
	// unexpected frame). Nil means log.Printf.
	Logf func(format string, args ...interface{})
	// AcceptLink, when set, is asked about every link a peer (BEAM or
	// Ergo) makes to a process of this node; false drops the link, so the
	// exit signal that may follow reaches nobody. Links and exit signals
	// a peer sends in the name of another node's process are always
	// dropped (guard.go).
	AcceptLink func(peer string, to etf.Pid) bool
}

// Apply installs the filter into eo: it sets eo.WrapHandshake and
// eo.WrapProto. Each call makes a new, independent filter; use one per node.
func (o Options) Apply(eo *ergonode.Options) {
	o.apply(eo)
}

func (o Options) apply(eo *ergonode.Options) *filter {
	f := newFilter(o)
	eo.WrapHandshake = func(h node.HandshakeInterface) node.HandshakeInterface {
		return &handshake{inner: h, f: f}
	}
	eo.WrapProto = func(p node.ProtoInterface) node.ProtoInterface {
		return &proto{inner: p, f: f}
	}
	return f
}

// filter is the state shared by one node's handshake and proto wrappers.
type filter struct {
	opts Options
	refs *refStore

	// this node, learnt from Handshake.Init
	mu       sync.Mutex
	name     string
	creation uint32

	once sync.Map // notice -> struct{}: log each kind once
	// stats for tests and docs
	repairedNil atomic.Uint64
	// droppedEmptyTuple counts {} messages dropped.
	droppedEmptyTuple atomic.Uint64
	// droppedImplausible counts frames dropped for claiming more
	// elements than they hold.
	droppedImplausible atomic.Uint64
	unlinkIn           atomic.Uint64
	unlinkOut          atomic.Uint64
	rpcServed          atomic.Uint64
	// rpcOut counts rpc requests sent by RPC.
	rpcOut atomic.Uint64
	// links holds the BEAM links up now: peer node name -> *filterConn.
	links    sync.Map
	filtered sync.Map // peer node name -> struct{}: links filtered so far
	guard    guardStats
}

func newFilter(o Options) *filter {
	return &filter{opts: o, refs: newRefStore(o.RefStoreSize)}
}

func (f *filter) self() (string, uint32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.name, f.creation
}

// logOnce logs a notice the first time its kind occurs.
func (f *filter) logOnce(kind, format string, args ...interface{}) {
	if _, seen := f.once.LoadOrStore(kind, struct{}{}); seen {
		return
	}
	if f.opts.Logf != nil {
		f.opts.Logf("distfilter: "+format, args...)
		return
	}
	log.Printf("distfilter: "+format, args...)
}

// proto wraps Ergo's proto: connections to BEAM peers get a filtering
// socket; all others are Ergo's own, untouched.
type proto struct {
	inner node.ProtoInterface
	f     *filter
	conns sync.Map // node.ConnectionInterface -> *filterConn
	peers sync.Map // node.ConnectionInterface -> peer node name (every peer)
}

// Init implements node.ProtoInterface.
func (p *proto) Init(ctx context.Context, conn lib.NetReadWriter, nodename string, d node.HandshakeDetails) (node.ConnectionInterface, error) {
	ci, err := p.init(ctx, conn, nodename, d)
	if err == nil {
		p.peers.Store(ci, d.Name)
	}
	return ci, err
}

func (p *proto) init(ctx context.Context, conn lib.NetReadWriter, nodename string, d node.HandshakeDetails) (node.ConnectionInterface, error) {
	peer, _ := d.Custom.(*peerInfo)
	if peer == nil || !peer.beam {
		return p.inner.Init(ctx, conn, nodename, d)
	}
	p.f.filtered.Store(peer.name, struct{}{})
	fc := newFilterConn(conn, peer, p.f)
	p.f.links.Store(peer.name, fc)
	if d.Buffer != nil {
		// frames that arrived with the end of the handshake: filter them too
		fc.in = append(fc.in, d.Buffer.B...)
		lib.ReleaseBuffer(d.Buffer)
		d.Buffer = nil
	}
	ci, err := p.inner.Init(ctx, fc, nodename, d)
	if err != nil {
		p.f.links.CompareAndDelete(peer.name, fc)
		fc.close()
		return nil, err
	}
	p.conns.Store(ci, fc)
	return ci, nil
}

// Serve implements node.ProtoInterface (Ergo's own, on Ergo's connection),
// with the link guard in front of Ergo's router.
func (p *proto) Serve(ci node.ConnectionInterface, router node.CoreRouter) {
	if v, ok := p.conns.Load(ci); ok {
		// The served link is the peer's, whatever a connection that lost
		// a simultaneous-connect race stored in Init (it is terminated).
		fc := v.(*filterConn)
		fc.served.Store(true)
		p.f.links.Store(fc.peer.name, fc)
	}
	p.inner.Serve(ci, p.guarded(ci, router))
}

// Terminate implements node.ProtoInterface.
func (p *proto) Terminate(ci node.ConnectionInterface) {
	p.inner.Terminate(ci)
	p.peers.Delete(ci)
	if v, ok := p.conns.LoadAndDelete(ci); ok {
		fc := v.(*filterConn)
		if p.f.links.CompareAndDelete(fc.peer.name, fc) {
			p.restoreServed(fc.peer.name)
		}
		fc.close()
	}
}

// restoreServed makes peer's served link its link again after a
// connection that lost a simultaneous-connect race, set up after the
// winner and so stored over it in Init, ends.
func (p *proto) restoreServed(peer string) {
	p.conns.Range(func(_, v any) bool {
		fc := v.(*filterConn)
		if fc.peer.name == peer && fc.served.Load() {
			p.f.links.LoadOrStore(peer, fc)
			return false
		}
		return true
	})
}

// Funcs is a table of Go functions that rpc callers on BEAM nodes may run
// (with Options.ServeRPC). Lookup is called with "Module:Function" exactly
// as the caller wrote the atoms, e.g. "Elixir.Cloister.Test:echo" for
// rpc:call(Go, 'Elixir.Cloister.Test', echo, [X]); a name it does not know
// makes the caller see undef, as from a BEAM node lacking the function.
//
// The function runs on its own goroutine with the decoded arguments (Ergo's
// etf mapping). Its result is encoded with Ergo's encoder.
// An error becomes an Erlang exception: a *Raise as given, any other error
// as error:{go_error, <<Message>>} with stack [{M, F, Args, []}].
type Funcs interface {
	Lookup(name string) (func(args etf.List) (etf.Term, error), bool)
}

// Limited is a Funcs that also caps how many of its functions run at once:
// TryGo runs run on a goroutine of its own and reports true, or reports
// false when the cap is reached, and the rpc caller gets error:busy.
// A Funcs without it runs each call on a fresh goroutine.
type Limited interface {
	Funcs
	TryGo(run func()) bool
}

// FuncMap is a ready Funcs: a map from "Module:Function".
type FuncMap map[string]func(args etf.List) (etf.Term, error)

// Lookup implements Funcs.
func (m FuncMap) Lookup(name string) (func(args etf.List) (etf.Term, error), bool) {
	fn, ok := m[name]
	return fn, ok
}

// Raise is an error a Go function returns to raise a specific Erlang
// exception in the rpc caller: Class is "error", "exit" or "throw".
type Raise struct {
	Class  string
	Reason etf.Term
}

func (r *Raise) Error() string { return "distfilter: raise " + r.Class }
