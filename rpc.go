package cloister

import (
	"time"

	"github.com/ergo-services/ergo/etf"

	"github.com/cloister-go/cloister/internal/clusterstate"
)

// RPC runs module:function(args...) on the Erlang or Elixir node named node
// (connected to this one), as rpc:call does between BEAM nodes, and
// returns its value. When the function raises, the error is a *NodeError
// matching ErrRemote whose *RemoteError holds the exception's Class ("error", "exit", "throw"), Reason and Stack, and
// an Elixir exception's message as text. A timeout is ErrTimeout (the
// function may still be running there), a node not connected
// ErrNoConnection; a Go node or this node is an invalid argument (use
// Multicall or Multiapply). Nothing is dialled.
//
//	v, err := c.RPC("app@10.0.0.5", "Elixir.MyApp.Stats", "count", etf.List{[]byte("users")}, time.Second)
func (c *Cluster) RPC(node, module, function string, args etf.List, timeout time.Duration) (etf.Term, error) {
	n, err := c.running()
	if err != nil {
		return nil, err
	}
	return clusterstate.RPC(n, node, module, function, args, timeout)
}
