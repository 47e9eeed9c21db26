package actors

import (
	"fmt"
	"github.com/cloister-go/cloister/internal/errs"
	"sync"

	"github.com/ergo-services/ergo/etf"
)

// goFunc is a function Multiapply can run on a node. args are the Multiapply
// arguments as the node received them (from a remote node they went through
// ETF: Go strings arrive as Go strings, etf.String as []byte, small integers
// as int). A non-nil error is answered as {error, <<"message">>}.
//
// A goFunc runs on its own goroutine, concurrently with other calls; a panic is
// recovered and answered as an error.
type goFunc func(args etf.List) (etf.Term, error)

// funcTable is a node-local, concurrency-safe registry of named functions: Go has
// no MFA, so Multiapply names a function registered here on each node.
type funcTable struct {
	mu sync.RWMutex
	m  map[string]goFunc

	// slots holds one token per function running for a peer (Multiapply
	// through the Node actor, or rpc from a BEAM node): one cap,
	// maxApplyConcurrency, for both ways in.
	slotsOnce sync.Once
	slots     chan struct{}
}

// newFuncTable returns an empty registry.
func newFuncTable() *funcTable {
	return &funcTable{m: make(map[string]goFunc)}
}

// TryGo runs run on a goroutine of its own when fewer than
// maxApplyConcurrency functions of this registry are running for peers,
// and reports whether it did. The Node actor (Multiapply) and the rpc
// service for BEAM callers both go through it, so a node flooded both
// ways still runs at most maxApplyConcurrency functions.
func (f *funcTable) TryGo(run func()) bool {
	f.slotsOnce.Do(func() { f.slots = make(chan struct{}, maxApplyConcurrency) })
	select {
	case f.slots <- struct{}{}:
	default:
		return false
	}
	go func() {
		defer func() { <-f.slots }()
		run()
	}()
	return true
}

// Register adds fn under name. An empty name or a nil fn is an error
// wrapping cloister.ErrInvalidArgument; a taken name one wrapping cloister.ErrFuncRegistered.
func (f *funcTable) Register(name string, fn goFunc) error {
	if name == "" {
		return fmt.Errorf("%w: empty function name", errs.ErrInvalidArgument)
	}
	if fn == nil {
		return fmt.Errorf("%w: nil function for %q", errs.ErrInvalidArgument, name)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.m[name]; ok {
		return fmt.Errorf("%w: %q", errs.ErrFuncRegistered, name)
	}
	f.m[name] = fn
	return nil
}

// Lookup returns the function registered under name.
func (f *funcTable) Lookup(name string) (goFunc, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	fn, ok := f.m[name]
	return fn, ok
}
