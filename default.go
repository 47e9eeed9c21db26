package cloister

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ergo-services/ergo/etf"
)

// The default cluster of the package-level functions. Reads are one atomic
// load (Whois and Mine take no lock and allocate nothing); changes are
// serialised by defaultMu, which also wakes AwaitReady callers waiting for
// a cluster to appear.
var (
	defaultCluster atomic.Pointer[Cluster]
	defaultMu      sync.Mutex
	defaultChanged = make(chan struct{})
)

// Default is the cluster the package-level functions act on: the one
// StartNode started or SetDefault named, until it stops; nil otherwise.
func Default() *Cluster {
	if c := defaultCluster.Load(); c != nil && !c.c.Halted() {
		return c
	}
	return nil
}

// SetDefault makes c the default cluster (StartNode does it for the
// cluster it starts; call it for a cluster you run under your own
// supervisor with ChildSpec). It fails with ErrAlreadyStarted while
// another cluster is the default and runs, and with ErrNotStarted for a
// nil or stopped c. The default is cleared when it stops.
func SetDefault(c *Cluster) error {
	if c == nil || c.c.Halted() {
		return ErrNotStarted
	}
	defaultMu.Lock()
	defer defaultMu.Unlock()
	if old := defaultCluster.Load(); old != nil && old != c && !old.c.Halted() {
		name := old.Name()
		if name == "" {
			name = "starting"
		}
		return fmt.Errorf("%w: a cluster (%s) runs in this process; stop it first", ErrAlreadyStarted, name)
	}
	defaultCluster.Store(c)
	close(defaultChanged)
	defaultChanged = make(chan struct{})
	return nil
}

// clearDefault forgets c if it is the default.
func clearDefault(c *Cluster) {
	defaultMu.Lock()
	defer defaultMu.Unlock()
	if defaultCluster.CompareAndSwap(c, nil) {
		close(defaultChanged)
		defaultChanged = make(chan struct{})
	}
}

func defaultOrErr() (*Cluster, error) {
	c := defaultCluster.Load()
	if c == nil || c.c.Halted() {
		return nil, ErrNotStarted
	}
	return c, nil
}

// Whois is Cluster.Whois on the default cluster.
func Whois(group, key string) (string, error) {
	c, err := defaultOrErr()
	if err != nil {
		return "", err
	}
	return c.Whois(group, key)
}

// Mine is Cluster.Mine on the default cluster (false without one).
func Mine(key string) bool {
	c, err := defaultOrErr()
	return err == nil && c.Mine(key)
}

// Siblings is Cluster.Siblings on the default cluster (nil without one).
func Siblings() []string {
	if c, err := defaultOrErr(); err == nil {
		return c.Siblings()
	}
	return nil
}

// State is the default cluster's latest snapshot (State "down" without
// one).
func State() Snapshot {
	if c, err := defaultOrErr(); err == nil {
		return c.State()
	}
	return Snapshot{State: "down"}
}

// AwaitReady blocks until the default cluster is ready. Called before any
// start, it waits for one (StartNode in another goroutine); it fails with
// the start's error when that start fails, and with ctx's error when ctx
// ends first.
func AwaitReady(ctx context.Context) error {
	for {
		defaultMu.Lock()
		ch := defaultChanged
		c := defaultCluster.Load()
		defaultMu.Unlock()
		if c != nil {
			// The start runs the gate (progress lines, StartTimeout); this
			// only waits for its outcome.
			return c.c.AwaitReady(ctx)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("cloister: waiting for a start: %w", ctx.Err())
		}
	}
}

// Multicall is Cluster.Multicall on the default cluster.
func Multicall(nodes []string, name string, request etf.Term, timeout time.Duration) ([]Result, error) {
	c, err := defaultOrErr()
	if err != nil {
		return nil, err
	}
	return c.Multicall(nodes, name, request, timeout)
}

// Multicast is Cluster.Multicast on the default cluster.
func Multicast(nodes []string, name string, message etf.Term) error {
	c, err := defaultOrErr()
	if err != nil {
		return err
	}
	return c.Multicast(nodes, name, message)
}

// Multiapply is Cluster.Multiapply on the default cluster.
func Multiapply(nodes []string, fn string, args etf.List, timeout time.Duration) ([]Result, error) {
	c, err := defaultOrErr()
	if err != nil {
		return nil, err
	}
	return c.Multiapply(nodes, fn, args, timeout)
}
