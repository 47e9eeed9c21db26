package distfilter

import (
	"fmt"

	"github.com/ergo-services/ergo/etf"
	"github.com/ergo-services/ergo/gen"
	"github.com/ergo-services/ergo/node"
)

// Erlang's global on a BEAM node connected to a Go node. On every nodeup,
// global_name_server casts {init_connect, {Vsn, Tag}, Node, ...} to the new
// node's global_name_server and waits for that node to sync: until then
// global:sync() does not return, and its locker keeps the session open.
// Ergo's own global_name_server ignores the cast, so sync hung forever, and
// global:trans/2 and global:set_lock/1 (whose default nodes are
// [node() | nodes()]) hung in a multi_call to the Go node.
//
// Ours answers as a node that is already in sync with the sender and
// knows no other node: a cast {in_sync, GoNode, true}. The BEAM node then
// counts the Go node as synced (sync returns), ends the session it
// started, and never adds the Go node to the nodes global replicates names
// to or locks for register_name: those stay among BEAM nodes, exactly as in
// an all-BEAM cluster. Since the Go node is never one of its known nodes,
// global's prevent-overlapping-partitions logic never disconnects the Go
// node, nor any BEAM node because of it: a lost connection to a Go node is
// announced, and ignored by every receiver. Locks that BEAM callers set on
// the Go node (set_lock/del_lock, by global:trans and set_lock over nodes
// including it) are kept in a lock table with global's semantics: one
// requester id per resource, any number of holder processes, released
// when the holder process exits.

// globalServer stands in for global_name_server.
type globalServer struct {
	gen.Server
	node  node.Node
	self  string
	locks map[string]*globalLock   // by resource id
	held  map[etf.Ref]globalHolder // monitor -> what it holds
}

type globalLock struct {
	requester string // the requester id, as a key
	holders   map[etf.Pid]etf.Ref
}

type globalHolder struct {
	resource string
	pid      etf.Pid
}

// termKey is a map key for a term (resource and requester ids are any
// terms, often tuples of pids; fmt prints map keys sorted).
func termKey(t etf.Term) string { return fmt.Sprintf("%#v", t) }

// Init announces this node as in sync to the BEAM nodes already connected
// (their init_connect may have reached Ergo's stub before we were up).
func (g *globalServer) Init(p *gen.ServerProcess, args ...etf.Term) error {
	g.locks = map[string]*globalLock{}
	g.held = map[etf.Ref]globalHolder{}
	for _, peer := range g.node.Nodes() {
		if IsBEAM(g.self, peer) {
			g.inSync(p, peer)
		}
	}
	return nil
}

// inSync tells peer's global that this node is in sync with it.
func (g *globalServer) inSync(p *gen.ServerProcess, peer string) {
	_ = p.Cast(gen.ProcessID{Name: "global_name_server", Node: peer},
		etf.Tuple{etf.Atom("in_sync"), etf.Atom(g.self), true})
}

// HandleCast answers init_connect; global's other casts (lock_set,
// exchange, resolved, new_nodes, in_sync) belong to a session this node
// never opens, and are ignored.
func (g *globalServer) HandleCast(p *gen.ServerProcess, m etf.Term) gen.ServerStatus {
	t, ok := m.(etf.Tuple)
	if !ok || len(t) != 4 || t[0] != etf.Atom("init_connect") {
		return gen.ServerStatusOK
	}
	if peer, ok := t[2].(etf.Atom); ok && IsBEAM(g.self, string(peer)) {
		g.inSync(p, string(peer))
	}
	return gen.ServerStatusOK
}

// HandleCall keeps the lock table: {set_lock, {ResourceId, RequesterId}}
// answers true when the resource is free or held under the same requester
// id (the caller becomes a holder), false otherwise; {del_lock, Id} removes
// the caller and answers true. get_known and get_synced answer [] (this
// node takes no part in name replication); anything else is answered
// {error, unknown_call}.
func (g *globalServer) HandleCall(p *gen.ServerProcess, from gen.ServerFrom, m etf.Term) (etf.Term, gen.ServerStatus) {
	switch t := m.(type) {
	case etf.Atom:
		if t == "get_known" || t == "get_synced" {
			return etf.List{}, gen.ServerStatusOK
		}
	case etf.Tuple:
		if len(t) == 2 {
			id, ok := t[1].(etf.Tuple)
			if !ok || len(id) != 2 {
				break
			}
			switch t[0] {
			case etf.Atom("set_lock"):
				return g.setLock(p, termKey(id[0]), termKey(id[1]), from.Pid), gen.ServerStatusOK
			case etf.Atom("del_lock"):
				g.delLock(p, termKey(id[0]), termKey(id[1]), from.Pid)
				return true, gen.ServerStatusOK
			}
		}
	}
	return etf.Tuple{etf.Atom("error"), etf.Atom("unknown_call")}, gen.ServerStatusOK
}

func (g *globalServer) setLock(p *gen.ServerProcess, res, req string, pid etf.Pid) bool {
	l := g.locks[res]
	if l == nil {
		l = &globalLock{requester: req, holders: map[etf.Pid]etf.Ref{}}
		g.locks[res] = l
	} else if l.requester != req {
		return false
	}
	if _, holds := l.holders[pid]; !holds {
		ref := p.MonitorProcess(pid)
		l.holders[pid] = ref
		g.held[ref] = globalHolder{resource: res, pid: pid}
	}
	return true
}

func (g *globalServer) delLock(p *gen.ServerProcess, res, req string, pid etf.Pid) {
	l := g.locks[res]
	if l == nil || l.requester != req {
		return
	}
	if ref, holds := l.holders[pid]; holds {
		p.DemonitorProcess(ref)
		g.release(ref)
	}
}

// release drops the holder of monitor ref, and the lock with its last one.
func (g *globalServer) release(ref etf.Ref) {
	h, ok := g.held[ref]
	if !ok {
		return
	}
	delete(g.held, ref)
	if l := g.locks[h.resource]; l != nil {
		delete(l.holders, h.pid)
		if len(l.holders) == 0 {
			delete(g.locks, h.resource)
		}
	}
}

// HandleInfo releases the locks of a holder that exited (or whose node
// went down); global's plain messages (init_connect_ack, cancel_connect,
// lost_connection, remove_connection) are ignored: this node never joins
// a session or a partition.
func (g *globalServer) HandleInfo(p *gen.ServerProcess, m etf.Term) gen.ServerStatus {
	if d, ok := m.(gen.MessageDown); ok {
		g.release(d.Ref)
	}
	return gen.ServerStatusOK
}

// InstallGlobal replaces Ergo's global_name_server (which ignores
// everything) with one that keeps global:sync(), global:trans/2 and
// global:set_lock/1 on BEAM nodes from hanging on this node, without
// joining global's name replication (see the comment above globalServer).
// Call it once, right after the node started; the node must run the
// filter (rpc from BEAM nodes is not needed).
func InstallGlobal(n node.Node) error {
	if p := n.ProcessByName("global_name_server"); p != nil {
		if err := n.UnregisterName("global_name_server"); err != nil {
			return fmt.Errorf("distfilter: unregister Ergo's global_name_server: %w", err)
		}
	}
	opts := gen.ProcessOptions{MailboxSize: serviceMailbox}
	if _, err := n.Spawn("global_name_server", opts, &globalServer{node: n, self: n.Name()}); err != nil {
		return fmt.Errorf("distfilter: spawn global_name_server: %w", err)
	}
	return nil
}
