package actors

import (
	"errors"
	"fmt"
	"github.com/cloister-go/cloister/internal/errs"
	"slices"
	"time"

	"github.com/ergo-services/ergo/etf"
	"github.com/ergo-services/ergo/gen"
	"github.com/ergo-services/ergo/lib"
	"github.com/ergo-services/ergo/node"

	"github.com/cloister-go/cloister/internal/clusterstate"
	"github.com/cloister-go/cloister/internal/wire/ergonode"
)

// Fan-out never dials. A node that is neither this node nor in n.Nodes() is
// answered errs.KindNoConnection at once: an Ergo send to an unconnected node
// makes a synchronous connect attempt in the sender's goroutine, which
// could stall the caller for as long as an EPMD dial to a dead host takes.
// Connecting is the Monitor's job. (A node that drops in the microseconds
// between that check and the send still triggers Ergo's own re-dial, on
// the call's sending goroutine; the caller returns at its deadline
// regardless. Multicast sends on the caller's goroutine.)

// Result is the answer of one node to a fan-out: the node asked (Node),
// its reply (Reply, nil when Err is set) and a *cloister.NodeError or nil
// (Err).
type Result = clusterstate.Result

var errNotConnected = errors.New("not connected (fan-out never dials)")

// nodeMulticall calls the process registered as name on every node in nodes,
// gen_server:call style, and returns one Result per node in the order given,
// duplicates removed. The local node is a valid target. A node fails with
// errs.KindNoConnection when it is not connected (nothing is dialled) or goes
// down during the call, errs.KindNoSuchProcess when nothing is registered as name
// there, errs.KindRemote when the process exits during the call, errs.KindTimeout
// when no reply came within timeout. Timeouts may be sub-second (Ergo's own
// are whole seconds): the calling goroutine keeps the deadline itself, and
// never sends (measured: 200 ms → 200.2–200.6 ms).
//
// Call it from plain Go code, not from the callback of a process it calls
// (that process could not answer until the callback returns). The error is
// non-nil only for bad arguments: a nil node, an empty name, a timeout ≤ 0,
// or a request that is nil or an empty list (an error wrapping
// ergonode.ErrEmptyTerm; such a term sent on its own wedges an Ergo link,
// and arrives as [] remotely but nil locally). An empty
// node list gives an empty result.
//
// A call runs under the calling node's Node actor, with every other call
// in flight (no process per call; see fanout_engine.go); on a node without
// the Node actor, in a short-lived unnamed process of its own. Any number
// of goroutines may call at once.
func nodeMulticall(n node.Node, nodes []string, name string, request etf.Term, timeout time.Duration) ([]Result, error) {
	results, err := multicall("multicall", n, nodes, name, request, timeout)
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

// multicall is Multicall without the observer; op names the operation in
// errors.
func multicall(op string, n node.Node, nodes []string, name string, request etf.Term, timeout time.Duration) ([]Result, error) {
	var e *fanEngine
	if n != nil {
		e = engineOf(n)
	}
	return multicallVia(e, op, n, nodes, name, request, timeout)
}

// multicallVia is multicall through engine e, or through a process of its
// own when e is nil or stopped.
func multicallVia(e *fanEngine, op string, n node.Node, nodes []string, name string, request etf.Term, timeout time.Duration) ([]Result, error) {
	start := time.Now()
	if err := checkArgs(n, name, request); err != nil {
		return nil, fmt.Errorf("cloister: %s: %w", op, err)
	}
	if timeout <= 0 {
		return nil, fmt.Errorf("cloister: %s: %w: timeout must be > 0, got %v", op, errs.ErrInvalidArgument, timeout)
	}
	targets := dedupe(nodes)
	results := make([]Result, len(targets))
	for i, t := range targets {
		results[i].Node = t
	}
	if len(targets) == 0 {
		return results, nil
	}
	c := newFanCall(name, results)
	ask := make([]int, 0, len(targets))
	if self := n.Name(); len(targets) == 1 && targets[0] == self {
		ask = append(ask, 0)
	} else {
		peers := n.Nodes()
		for i, t := range targets {
			if t == self || slices.Contains(peers, t) {
				ask = append(ask, i)
				continue
			}
			c.settle(i, nil, nodeErr(t, errs.KindNoConnection, errNotConnected)) // c is not shared yet
		}
	}
	if len(ask) == 0 {
		return results, nil
	}
	deadline := start.Add(timeout)
	if e != nil && e.call(c, ask, request, deadline) {
		return results, nil
	}
	e, p, err := spawnFanProcess(n, callerMailbox(len(ask)))
	if err != nil {
		return nil, fmt.Errorf("cloister: %s: spawn the fan-out process: %w", op, err)
	}
	defer p.Kill()
	if !e.call(c, ask, request, deadline) {
		c.end(errs.KindRefused, errors.New("the fan-out process stopped")) // c was never shared
	}
	return results, nil
}

// nodeMulticast casts message to the process registered as name on every node
// in nodes (gen_server:abcast style: it arrives in HandleCast), fire and
// forget. Nodes are deduplicated; the local node is a valid target. Nothing
// is dialled: a node that is not connected is skipped.
//
// The error wraps cloister.ErrInvalidArgument or ergonode.ErrEmptyTerm for bad
// arguments (then nothing is sent); otherwise it is nil, or the errors.Join
// of a *cloister.NodeError per node the message could not be handed to Ergo for
// (not connected; no such local process; refused) while it still went to
// all the others. A missing process on a remote node is not noticed. The
// message is handed to Ergo on the calling goroutine, under the Node
// actor's pid: like any Ergo send it waits while the link to a peer has
// 100 messages queued that it cannot write.
func nodeMulticast(n node.Node, nodes []string, name string, message etf.Term) error {
	if err := checkArgs(n, name, message); err != nil {
		return fmt.Errorf("cloister: multicast: %w", err)
	}
	targets := dedupe(nodes)
	if len(targets) == 0 {
		return nil
	}
	self := n.Name()
	peers := n.Nodes()
	var failed []error
	send := make([]string, 0, len(targets))
	for _, t := range targets {
		if t == self || slices.Contains(peers, t) {
			send = append(send, t)
		} else {
			failed = append(failed, nodeErr(t, errs.KindNoConnection, errNotConnected))
		}
	}
	if len(send) == 0 {
		return errors.Join(failed...)
	}
	e := engineOf(n)
	if e == nil {
		// Ergo sends only from a process; this one never receives.
		var p gen.Process
		var err error
		if e, p, err = spawnFanProcess(n, 1); err != nil {
			return fmt.Errorf("cloister: multicast: spawn the sender process: %w", err)
		}
		defer p.Kill()
	}
	failed = append(failed, e.cast(send, name, message)...)
	return errors.Join(failed...)
}

// nodeMultiapply runs the function registered as fn (see RegisterFunc) on every node in
// nodes, through each node's Node actor, and returns one Result per node in
// the order given, duplicates removed. A Result's Reply is the function's
// return value; a node whose function failed, or which has no function of
// that name, has a errs.KindRemote error (a *cloister.RemoteError naming the function).
// Everything else is as for Multicall. args may be nil (no arguments).
//
// A BEAM (Erlang/Elixir) member runs the BEAM function fn = "Module:Function"
// by rpc instead, as the Elixir original's multiapply does: its Reply is
// the function's value, a raised exception a errs.KindRemote *cloister.RemoteError with
// Class, Reason and Stack, a name without a colon errs.KindRefused (nothing is
// sent). See RPC.
func nodeMultiapply(n node.Node, nodes []string, fn string, args etf.List, timeout time.Duration) ([]Result, error) {
	if fn == "" {
		return nil, fmt.Errorf("cloister: multiapply: %w: empty function name", errs.ErrInvalidArgument)
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
			r.Err = nodeErr(r.Node, errs.KindRemote, applyError(fn, t[1]))
		default:
			r.Err = nodeErr(r.Node, errs.KindRemote, errs.Remote(reply, "", nil,
				fmt.Sprintf("function %q: unexpected answer %s", fn, termText(reply))))
		}
	}
	if withBEAM != nil {
		results = withBEAM(results)
	}
	observeFanout(n, "multiapply", results)
	return results, nil
}

// applyError describes a Multiapply {error, Reason}.
func applyError(fn string, reason etf.Term) *errs.RemoteError {
	if t, ok := reason.(etf.Tuple); ok && len(t) == 2 && t[0] == atomUndef {
		return errs.Remote(reason, "", nil, fmt.Sprintf("function %q is not registered there (undef)", fn))
	}
	return errs.Remote(reason, "", nil, fmt.Sprintf("function %q failed: %s", fn, termText(reason)))
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
		return fmt.Errorf("%w: nil node", errs.ErrInvalidArgument)
	}
	if name == "" {
		return fmt.Errorf("%w: empty process name", errs.ErrInvalidArgument)
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

// callerMailbox sizes a per-call fan-out process's mailbox to what it can
// ever receive — one reply and one DOWN per monitor of each target — so
// nothing a peer sends it is dropped, without allocating
// ergonode.NetworkMailbox (three buffers of 8192 entries, ~1 MB) per call.
func callerMailbox(targets int) uint16 {
	n := (2+remonitorMax)*targets + 4
	if n > 65535 {
		return 65535
	}
	return uint16(n)
}

// sendErr classifies an error of Ergo's Send.
func sendErr(node, name string, err error) *errs.NodeError {
	switch {
	case errors.Is(err, lib.ErrProcessUnknown):
		return nodeErr(node, errs.KindNoSuchProcess, fmt.Errorf("no process registered as %q", name))
	case errors.Is(err, lib.ErrNoRoute):
		return nodeErr(node, errs.KindNoConnection, err)
	}
	return nodeErr(node, errs.KindRefused, err)
}

// downErr classifies the reason of a monitor DOWN for the called process.
func downErr(node, name, reason string) *errs.NodeError {
	switch reason {
	case "noproc":
		return nodeErr(node, errs.KindNoSuchProcess, fmt.Errorf("no process registered as %q", name))
	case "noconnection", "noproxy":
		return nodeErr(node, errs.KindNoConnection, errors.New("connection lost during the call"))
	}
	return nodeErr(node, errs.KindRemote, errs.Remote(reason, "", nil,
		fmt.Sprintf("process %q exited: %s", name, reason)))
}
