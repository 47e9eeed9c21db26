package actors

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/cloister-go/cloister/internal/wire/ergonode"
	"github.com/cloister-go/cloister/listener"
	"github.com/cloister-go/cloister/ring"
	"github.com/ergo-services/ergo/node"
)

// Registered names, the BEAM atoms of the Elixir library, so Erlang and
// Elixir code address a Go node as it addresses an Elixir one.
const (
	managerName    = "Elixir.Cloister.Manager"
	MonitorName    = "Elixir.Cloister.Monitor"
	dynamicSupName = "Elixir.Cloister"
)

// shared is what the Monitor publishes for everyone else to read without
// going through an actor: the rings, the latest snapshot, readiness. One
// shared belongs to one node; the facade reads it through clusterstate.State.
type shared struct {
	// OTPApp is the application, Ring the default ring's name.
	OTPApp, Ring string
	// MonitorName is the Monitor's registered name (set by newMonitor).
	MonitorName string
	// Rings holds every named ring; lookups are lock-free.
	Rings *ring.Set
	// Funcs are the functions Multiapply may run on this node.
	Funcs *funcTable

	node atomic.Value // node.Node
	snap atomic.Pointer[listener.Snapshot]

	mu      sync.Mutex
	changed chan struct{}   // closed and replaced on every published snapshot
	onNode  func(node.Node) // WhenNode's function, until SetNode runs it

	life lifecycle // stopped for good, or running (manager_stopped.go)

	// joined: the peers added with Join, in order, kept here rather than
	// in the Monitor so that a Monitor restarted by its Manager is seeded
	// with them (guarded by mu).
	joined []string

	extras viewExtras // transitions and ring shares in published views (view.go)

	mem memReturner // returns a burst's freed memory once it is over (memreturn.go)
}

// newShared returns an empty shared state with the given rings defined (the
// first is the default ring). It belongs to a node once the Monitor starts.
func newShared(otpApp string, rings []string, engine ring.Engine) (*shared, error) {
	c := &shared{OTPApp: otpApp, Rings: ring.NewSet(), Funcs: newFuncTable(), changed: make(chan struct{})}
	for i, r := range rings {
		if i == 0 {
			c.Ring = r
		}
		if err := c.Rings.Define(r, engine); err != nil {
			return nil, err
		}
	}
	c.snap.Store(&listener.Snapshot{OTPApp: otpApp, State: listener.StateDown})
	return c, nil
}

// Node is the Ergo node the cluster runs on (nil before start).
func (c *shared) Node() node.Node {
	n, _ := c.node.Load().(node.Node)
	return n
}

// SetNode records the node; the Monitor calls it at start. The first time,
// it runs the function WhenNode was given.
func (c *shared) SetNode(n node.Node) {
	if n == nil {
		return
	}
	c.node.Store(n)
	c.mu.Lock()
	f := c.onNode
	c.onNode = nil
	c.mu.Unlock()
	if f != nil {
		f(n)
	}
}

// WhenNode runs f with the cluster's node once it has one: now if it has,
// else in SetNode. Nothing waits meanwhile, so a cluster that never starts
// holds no goroutine for it. Only the last f given before the node is kept.
func (c *shared) WhenNode(f func(node.Node)) {
	c.mu.Lock()
	n := c.Node()
	if n == nil {
		c.onNode = f
	}
	c.mu.Unlock()
	if n != nil {
		f(n)
	}
}

// ConnectedTo reports whether a message to a process on peer can be sent
// without Ergo dialling peer on the sending goroutine: peer is this node or
// a connected one. Before start (no node yet) it reports true.
func (c *shared) ConnectedTo(peer string) bool {
	n := c.Node()
	return n == nil || linked(n, peer)
}

// linked reports whether peer is n itself or connected to it: only then can
// a message to a process there be sent without Ergo dialling peer on the
// sending goroutine, synchronously. A link the node's wire layer serves
// answers without copying Ergo's connection list (node.Nodes copies it on
// every call, and linked runs for every probe, ping and fan-out target);
// otherwise the list decides, as for a node not started by
// ergonode.Start, or a connection registered but not yet served (its
// NodeUp may reach the Monitor first). (Ergo's NetworkStats would look the
// one connection up instead of copying the list, but it reads counters
// that Ergo writes atomically without an atomic read: a data race.)
func linked(n node.Node, peer string) bool {
	return peer == n.Name() || ergonode.LinksOf(n).Served(peer) || slices.Contains(n.Nodes(), peer)
}

// Self is this node's name ("" before start).
func (c *shared) Self() string {
	if n := c.Node(); n != nil {
		return n.Name()
	}
	return ""
}

// Snapshot is the latest published view.
func (c *shared) Snapshot() listener.Snapshot { return *c.snap.Load() }

// publish stores a new view and wakes everyone waiting for a change.
func (c *shared) publish(s listener.Snapshot) {
	if c.Err() != nil {
		s = stoppedView(s) // a Monitor dying after its Manager says no more
	}
	s = c.extras.annotate(s, c.Rings)
	c.snap.Store(&s)
	switch s.State {
	case listener.StateAssembling, listener.StateRehashing, listener.StateReady:
		c.mem.changed(true)
	default:
		c.mem.changed(false)
	}
	c.mu.Lock()
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
}

// Changed returns a channel closed at the next published snapshot.
func (c *shared) Changed() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.changed
}

// AwaitReady returns nil once the Monitor is ready, the cluster's Err once
// it has ended (Stopped), or ctx's error.
func (c *shared) AwaitReady(ctx context.Context) error {
	for {
		ch := c.Changed()
		if c.Snapshot().Ready() {
			return nil
		}
		select {
		case <-ch:
		case <-c.Stopped():
			return c.Err()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// rememberJoin records peer as joined at run time (once).
func (c *shared) rememberJoin(peer string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !slices.Contains(c.joined, peer) {
		c.joined = append(c.joined, peer)
	}
}

// joinedPeers lists the peers added with Join, in the order they were.
func (c *shared) joinedPeers() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.joined)
}
