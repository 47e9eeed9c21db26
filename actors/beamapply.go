package actors

import (
	"errors"
	"fmt"
	"github.com/cloister-go/cloister/internal/errs"
	"strings"
	"sync"
	"time"

	"github.com/ergo-services/ergo/etf"
	"github.com/ergo-services/ergo/node"

	"github.com/cloister-go/cloister/internal/wire/distfilter"
)

// Multiapply to BEAM members. The Elixir original's multiapply(M, F, A) is
// an rpc of M:F(A) on every node, and its Cloister.Node takes no calls: a
// {multiapply, ...} call would crash it (and, through its rest_for_one
// supervisor, everything started after it). So a BEAM member — a node the
// distribution filter links as an Erlang/Elixir node — is never sent the
// Node actor's request: it runs the BEAM function "Module:Function" by rpc
// (distfilter.RPC), with the same deadline. Go members keep running the
// Go function registered under the same name.

// beamTargets returns the indexes of targets that are BEAM nodes linked
// through the filter right now.
func beamTargets(n node.Node, targets []string) map[int]bool {
	if n == nil || !distfilter.Installed(n.Name()) {
		return nil
	}
	var beam map[int]bool
	for i, t := range targets {
		if t != n.Name() && distfilter.IsBEAM(n.Name(), t) {
			if beam == nil {
				beam = map[int]bool{}
			}
			beam[i] = true
		}
	}
	return beam
}

// applyBEAM starts the rpc of fn on every BEAM target and returns a wait
// function that puts their results into the Go members' results (which
// lack the BEAM targets) in the order of targets.
func applyBEAM(n node.Node, targets []string, beam map[int]bool, fn string, args etf.List, timeout time.Duration) func(goResults []Result) []Result {
	out := make([]Result, len(targets))
	var wg sync.WaitGroup
	for i := range beam {
		out[i].Node = targets[i]
		wg.Add(1)
		go func(r *Result) {
			defer wg.Done()
			v, err := rpcResult(n, r.Node, fn, args, timeout)
			if err != nil {
				r.Err = err // never a typed nil in the interface
				return
			}
			r.Reply = v
		}(&out[i])
	}
	return func(goResults []Result) []Result {
		wg.Wait()
		j := 0
		for i := range out {
			if !beam[i] && j < len(goResults) {
				out[i] = goResults[j]
				j++
			}
		}
		return out
	}
}

// splitMFA reads "Module:Function" (the last colon splits).
func splitMFA(fn string) (module, function string, ok bool) {
	i := strings.LastIndexByte(fn, ':')
	if i <= 0 || i == len(fn)-1 {
		return "", "", false
	}
	return fn[:i], fn[i+1:], true
}

// rpcResult runs fn on the BEAM node peer and classifies the outcome.
func rpcResult(n node.Node, peer, fn string, args etf.List, timeout time.Duration) (etf.Term, *errs.NodeError) {
	m, f, ok := splitMFA(fn)
	if !ok {
		return nil, nodeErr(peer, errs.KindRefused, fmt.Errorf(
			"function %q: a BEAM node runs Module:Function (e.g. \"Elixir.MyApp:hello\" or \"erlang:node\"), not a Go function name", fn))
	}
	v, err := distfilter.RPC(n.Name(), peer, m, f, args, timeout)
	if err != nil {
		return nil, rpcErr(peer, fn, err)
	}
	return v, nil
}

// rpcErr classifies an error of distfilter.RPC.
func rpcErr(peer, fn string, err error) *errs.NodeError {
	var x *distfilter.Exception
	switch {
	case errors.As(err, &x):
		return nodeErr(peer, errs.KindRemote, errs.Remote(x.Reason, x.Class, x.Stack,
			fmt.Sprintf("function %s raised %s", fn, x.Error())))
	case errors.Is(err, distfilter.ErrTimeout):
		return nodeErr(peer, errs.KindTimeout, nil)
	case errors.Is(err, distfilter.ErrConnectionLost), errors.Is(err, distfilter.ErrNotBEAM):
		return nodeErr(peer, errs.KindNoConnection, err)
	case errors.Is(err, distfilter.ErrSpawnRefused), errors.Is(err, distfilter.ErrNoSpawn), errors.Is(err, distfilter.ErrNoFilter):
		return nodeErr(peer, errs.KindRefused, err)
	}
	return nodeErr(peer, errs.KindRemote, errs.Remote(nil, "", nil, fmt.Sprintf("function %s: %v", fn, err)))
}

// nodeRPC runs module:function(args...) on the BEAM (Erlang or Elixir) node
// peer, connected to n, as rpc:call would from a BEAM node, and returns its
// value. The error is a *cloister.NodeError of the fan-out kinds: errs.KindRemote with a
// *cloister.RemoteError (Class, Reason, Stack; an Elixir exception's message as
// text) when the function raised, errs.KindTimeout (it may still run there),
// errs.KindNoConnection when peer is not connected or the link dropped. A peer
// that is this node or a Go node, a nil node, empty names or a timeout ≤ 0
// give an error wrapping cloister.ErrInvalidArgument. Nothing is dialled; output the
// function writes with io is discarded. It needs the distribution filter
// (cloister.StartNode installs it).
func nodeRPC(n node.Node, peer, module, function string, args etf.List, timeout time.Duration) (etf.Term, error) {
	switch {
	case n == nil:
		return nil, fmt.Errorf("cloister: rpc: %w: nil node", errs.ErrInvalidArgument)
	case module == "" || function == "":
		return nil, fmt.Errorf("cloister: rpc: %w: empty module or function name", errs.ErrInvalidArgument)
	case timeout <= 0:
		return nil, fmt.Errorf("cloister: rpc: %w: timeout must be > 0, got %v", errs.ErrInvalidArgument, timeout)
	case peer == n.Name():
		return nil, fmt.Errorf("cloister: rpc: %w: %s is this node; rpc runs BEAM functions on BEAM nodes", errs.ErrInvalidArgument, peer)
	case !distfilter.Installed(n.Name()):
		return nil, fmt.Errorf("cloister: rpc: %w: %s runs without the distribution filter", errs.ErrInvalidArgument, n.Name())
	case !linked(n, peer):
		return nil, nodeErr(peer, errs.KindNoConnection, errNotConnected)
	case !distfilter.IsBEAM(n.Name(), peer):
		return nil, fmt.Errorf("cloister: rpc: %w: %s is not a BEAM node (use Multicall or Multiapply for Go nodes)", errs.ErrInvalidArgument, peer)
	}
	v, err := distfilter.RPC(n.Name(), peer, module, function, args, timeout)
	if err != nil {
		return nil, rpcErr(peer, module+":"+function, err)
	}
	return v, nil
}
