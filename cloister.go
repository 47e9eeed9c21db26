// Package cloister turns Ergo nodes into a managed cluster: a Go port of
// the Elixir library cloister.
//
// Add the application to a node with StartNode (or app.New and your own
// node), list the peers (Sentry) or a DNS service name (Service), and the
// node's start returns once Consensus members are connected. Then:
//
//	owner, err := cloister.Whois("", "user:42") // the default ring
//	if cloister.Mine("user:42") { ... }
//	results, err := cloister.Multicall(nil, "my_server", req, 500*time.Millisecond)
//
// The package-level functions act on the cluster started last in this
// process (one Ergo node per process is the rule); Of(nodeName) reaches a
// given one.
package cloister

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cloister-go/cloister/actors"
	"github.com/cloister-go/cloister/app"
	"github.com/cloister-go/cloister/internal/discovery"
	"github.com/cloister-go/cloister/internal/wire/distfilter"
	"github.com/cloister-go/cloister/internal/wire/ergonode"
	"github.com/cloister-go/cloister/listener"
	"github.com/cloister-go/cloister/ring"
	"github.com/ergo-services/ergo/etf"
	"github.com/ergo-services/ergo/node"
)

// Options configure cloister; see app.Options for every field.
type Options = app.Options

// NodeOptions configure the Ergo node StartNode starts; see ergonode.Options.
type NodeOptions = ergonode.Options

// Snapshot is the Monitor's view; see listener.Snapshot.
type Snapshot = listener.Snapshot

// Result is one node's answer to a fan-out; Err is a *NodeError or nil.
type Result = actors.Result

// NodeError says why one node of a fan-out has no reply.
type NodeError = actors.NodeError

// Child is an additional module for the Manager.
type Child = actors.Child

// Errors to branch on with errors.Is.
var (
	ErrNoSuchRing    = ring.ErrNoSuchRing
	ErrEmptyRing     = ring.ErrEmptyRing
	ErrNotStarted    = errors.New("cloister: not started on this node")
	ErrTimeout       = actors.ErrTimeout
	ErrNoConnection  = actors.ErrNoConnection
	ErrNoSuchProcess = actors.ErrNoSuchProcess
	ErrRemote        = actors.ErrRemote
	ErrInvalidOption = app.ErrInvalidOption
)

// DefaultOptions returns options with every default filled in.
func DefaultOptions() Options { return app.DefaultOptions() }

// StartNode starts an Ergo node with the safe options and cloister on it,
// and returns once the cluster is ready (or fails with the reason). In
// service mode with Magic set, name may be empty: the node is named
// OTPApp@<own address in the service's DNS answer> (or @127.0.0.1 with
// Loopback).
func StartNode(name string, opts Options, nopts NodeOptions) (node.Node, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if opts.Service != "" && opts.Magic {
		ctx := context.Background()
		if opts.StartTimeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, opts.StartTimeout)
			defer cancel()
		}
		n, err := discovery.NodeName(ctx, discovery.NameOptions{
			OTPApp: opts.OTPApp, Service: opts.Service, Loopback: opts.Loopback, Magic: true,
			Given: name, Resolver: &discovery.Resolver{Server: opts.DNSServer, SRV: opts.SRV}, Logf: opts.Logf,
		})
		if err != nil {
			return nil, err
		}
		name = n
	}
	a, err := app.New(opts)
	if err != nil {
		return nil, err
	}
	if !nopts.PlainDistribution && nopts.WrapHandshake == nil && nopts.WrapProto == nil {
		// BEAM interop: OTP 26+ links, the top-level [] guard, and rpc
		// from Erlang/Elixir answered (Multiapply functions included).
		distfilter.Options{ServeRPC: true, Funcs: rpcFuncs{a.Cluster().Funcs}, Logf: opts.Logf,
			AcceptLink: a.Cluster().AcceptLink}.Apply(&nopts)
	}
	nopts.Applications = append(nopts.Applications, a)
	n, err := ergonode.Start(name, nopts)
	if err != nil {
		if aerr := a.Err(); aerr != nil {
			return nil, aerr
		}
		return nil, err
	}
	return n, nil
}

// StopNode shuts a node down in order: the Monitor runs stopping →
// stopped and the listener hears both, then the node stops (Ergo's Stop
// alone does not wait for processes to finish, so the listener would miss
// them). Ergo's ApplicationStop is not used: it races with the
// application's own goroutine inside Ergo v2.2.4.
func StopNode(n node.Node) error {
	var err error
	if c := Of(n.Name()); c != nil {
		if p := n.ProcessByName(c.monitorName()); p != nil {
			if _, e := p.DirectWithTimeout(actors.StopRequest{}, 5); e != nil {
				err = fmt.Errorf("cloister: stop monitor: %w", e)
			}
		}
	}
	n.Stop()
	return err
}

// rpcFuncs lets BEAM callers rpc the functions registered for Multiapply:
// rpc:call(GoNode, M, F, Args) runs the function registered as "M:F", or
// else the one registered as "F".
type rpcFuncs struct{ f *actors.Funcs }

func (r rpcFuncs) Lookup(name string) (func(args etf.List) (etf.Term, error), bool) {
	if fn, ok := r.f.Lookup(name); ok {
		return fn, true
	}
	if i := strings.LastIndexByte(name, ':'); i >= 0 {
		if fn, ok := r.f.Lookup(name[i+1:]); ok {
			return fn, true
		}
	}
	return nil, false
}

// Cluster is the API on one node's cluster.
type Cluster struct{ c *actors.Cluster }

func (c *Cluster) monitorName() string {
	if c.c.MonitorName != "" {
		return c.c.MonitorName
	}
	return actors.MonitorName
}

// Local returns the cluster started last in this process, or nil.
func Local() *Cluster {
	if c := app.Default(); c != nil {
		return &Cluster{c}
	}
	return nil
}

// Of returns the cluster running on the named node, or nil.
func Of(node string) *Cluster {
	if c := app.Lookup(node); c != nil {
		return &Cluster{c}
	}
	return nil
}

// Wrap gives the API of a cluster the caller holds (app.App.Cluster()).
func Wrap(c *actors.Cluster) *Cluster { return &Cluster{c} }

// Whois returns the node that owns key in ring group ("" = the default
// ring). It never blocks: an unknown group or an empty ring is an error at
// once (the original slept and retried forever).
func (c *Cluster) Whois(group, key string) (string, error) {
	if group == "" {
		group = c.c.Ring
	}
	return c.c.Rings.Owner(group, key)
}

// WhoisTerm is Whois for any term. The default engine looks up Key(term);
// the libring engine hashes the term with erlang:phash2, so the owner is
// the one Elixir's libring picks for the same term.
func (c *Cluster) WhoisTerm(group string, key etf.Term) (string, error) {
	if group == "" {
		group = c.c.Ring
	}
	s, err := c.c.Rings.Get(group)
	if err != nil {
		return "", err
	}
	return s.OwnerTerm(key, Key)
}

// Mine reports whether this node owns key in the default ring.
func (c *Cluster) Mine(key string) bool {
	o, err := c.c.Rings.Owner(c.c.Ring, key)
	return err == nil && o == c.c.Self()
}

// MineTerm is Mine for any term, hashed as WhoisTerm does.
func (c *Cluster) MineTerm(key etf.Term) bool {
	o, err := c.WhoisTerm("", key)
	return err == nil && o == c.c.Self()
}

// Siblings lists the members of the default ring, sorted.
func (c *Cluster) Siblings() []string {
	s, err := c.c.Rings.Get(c.c.Ring)
	if err != nil {
		return nil
	}
	return s.Members()
}

// State is the Monitor's latest snapshot.
func (c *Cluster) State() Snapshot { return c.c.Snapshot() }

// AwaitReady blocks until the Monitor is ready or ctx ends.
func (c *Cluster) AwaitReady(ctx context.Context) error { return c.c.AwaitReady(ctx) }

func (c *Cluster) targets(nodes []string) []string {
	if nodes == nil {
		return c.Siblings()
	}
	return nodes
}

// Multicall calls the process registered as name on each node (nil: the
// default ring's members) and returns one Result per node, in order: the
// reply, or a *NodeError (timeout, no connection, no such process, remote
// error). timeout may be sub-second. Fan-out never dials: an unconnected
// node is a no-connection result.
func (c *Cluster) Multicall(nodes []string, name string, request etf.Term, timeout time.Duration) ([]Result, error) {
	n := c.c.Node()
	if n == nil {
		return nil, ErrNotStarted
	}
	return actors.Multicall(n, c.targets(nodes), name, request, timeout)
}

// Multicast sends message to the process registered as name on each node
// (nil: the ring members), fire and forget.
func (c *Cluster) Multicast(nodes []string, name string, message etf.Term) error {
	n := c.c.Node()
	if n == nil {
		return ErrNotStarted
	}
	return actors.Multicast(n, c.targets(nodes), name, message)
}

// Multiapply runs the function registered as fn (RegisterFunc) on each
// node (nil: the ring members) with args; one Result per node.
func (c *Cluster) Multiapply(nodes []string, fn string, args etf.List, timeout time.Duration) ([]Result, error) {
	n := c.c.Node()
	if n == nil {
		return nil, ErrNotStarted
	}
	return actors.Multiapply(n, c.targets(nodes), fn, args, timeout)
}

// RegisterFunc makes fn callable by Multiapply on this node.
func (c *Cluster) RegisterFunc(name string, fn func(args etf.List) (etf.Term, error)) error {
	return c.c.Funcs.Register(name, fn)
}

func local() (*Cluster, error) {
	c := Local()
	if c == nil {
		return nil, ErrNotStarted
	}
	return c, nil
}

// Whois returns the owner of key in ring group ("" = the default ring) on
// the local cluster.
func Whois(group, key string) (string, error) {
	c, err := local()
	if err != nil {
		return "", err
	}
	return c.Whois(group, key)
}

// WhoisTerm is Whois for any term (see Cluster.WhoisTerm).
func WhoisTerm(group string, key etf.Term) (string, error) {
	c, err := local()
	if err != nil {
		return "", err
	}
	return c.WhoisTerm(group, key)
}

// Mine reports whether this node owns key in the default ring.
func Mine(key string) bool {
	c := Local()
	return c != nil && c.Mine(key)
}

// MineTerm is Mine for any term (see Cluster.MineTerm).
func MineTerm(key etf.Term) bool {
	c := Local()
	return c != nil && c.MineTerm(key)
}

// Siblings lists the members of the default ring.
func Siblings() []string {
	if c := Local(); c != nil {
		return c.Siblings()
	}
	return nil
}

// State is the local Monitor's latest snapshot (State "down" before start).
func State() Snapshot {
	if c := Local(); c != nil {
		return c.State()
	}
	return Snapshot{State: "down"}
}

// AwaitReady blocks until the local cluster is ready or ctx ends.
func AwaitReady(ctx context.Context) error {
	c, err := local()
	if err != nil {
		return err
	}
	return c.AwaitReady(ctx)
}

// Multicall is Cluster.Multicall on the local cluster.
func Multicall(nodes []string, name string, request etf.Term, timeout time.Duration) ([]Result, error) {
	c, err := local()
	if err != nil {
		return nil, err
	}
	return c.Multicall(nodes, name, request, timeout)
}

// Multicast is Cluster.Multicast on the local cluster.
func Multicast(nodes []string, name string, message etf.Term) error {
	c, err := local()
	if err != nil {
		return err
	}
	return c.Multicast(nodes, name, message)
}

// Multiapply is Cluster.Multiapply on the local cluster.
func Multiapply(nodes []string, fn string, args etf.List, timeout time.Duration) ([]Result, error) {
	c, err := local()
	if err != nil {
		return nil, err
	}
	return c.Multiapply(nodes, fn, args, timeout)
}

// RegisterFunc registers fn for Multiapply on the local cluster.
func RegisterFunc(name string, fn func(args etf.List) (etf.Term, error)) error {
	c, err := local()
	if err != nil {
		return err
	}
	return c.RegisterFunc(name, fn)
}
