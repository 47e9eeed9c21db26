package actors

import (
	"github.com/cloister-go/cloister/internal/clusterstate"
	"github.com/cloister-go/cloister/ring"
	"github.com/ergo-services/ergo/etf"
	"github.com/ergo-services/ergo/gen"
)

// The facade and the application reach a Manager's state, and the facade
// the node-level fan-out, through clusterstate; the types stay ours.
func init() {
	clusterstate.Of = func(m gen.SupervisorBehavior) clusterstate.State {
		if m, ok := m.(*manager); ok {
			return m.cluster
		}
		return nil
	}
	clusterstate.Multicall = nodeMulticall
	clusterstate.Multicast = nodeMulticast
	clusterstate.Multiapply = nodeMultiapply
	clusterstate.RPC = nodeRPC
}

var _ clusterstate.State = (*shared)(nil)

// RingSet is the cluster's rings.
func (c *shared) RingSet() *ring.Set { return c.Rings }

// DefaultRing names the default ring.
func (c *shared) DefaultRing() string { return c.Ring }

// RegisterFunc adds fn to the functions Multiapply and BEAM rpc callers run.
func (c *shared) RegisterFunc(name string, fn func(args etf.List) (etf.Term, error)) error {
	return c.Funcs.Register(name, fn)
}

// LookupFunc returns the function registered under name.
func (c *shared) LookupFunc(name string) (func(args etf.List) (etf.Term, error), bool) {
	return c.Funcs.Lookup(name)
}

// TryGo runs run within the registry's concurrency cap (Funcs.TryGo).
func (c *shared) TryGo(run func()) bool { return c.Funcs.TryGo(run) }
