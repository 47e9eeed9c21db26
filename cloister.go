// Package cloister turns Ergo nodes into a managed cluster: a Go port of
// the Elixir library cloister.
//
// StartNode starts an Ergo node with cloister on it and returns the
// *Cluster once Consensus members are connected (Sentry lists the peers,
// or Service names a DNS service whose addresses are the peers). Then:
//
//	owner, err := c.Whois("", "user:42") // "" is the default ring
//	if c.Mine("user:42") { ... }
//	results, err := c.Multicall(nil, "my_server", req, 500*time.Millisecond)
//
// The package-level functions (Whois, Mine, Multicall, ...) act on the
// default cluster, in the style of http.DefaultClient: the one StartNode
// started (or SetDefault named), until it stops; before and after, they
// answer ErrNotStarted. An Ergo application that runs cloister inside its
// own supervision tree uses New and Cluster.ChildSpec instead of StartNode.
package cloister

import (
	"context"
	"errors"
	"fmt"
	"github.com/cloister-go/cloister/internal/errs"
	"github.com/cloister-go/cloister/internal/logf"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloister-go/cloister/actors"
	"github.com/cloister-go/cloister/app"
	"github.com/cloister-go/cloister/internal/clusterstate"
	"github.com/cloister-go/cloister/internal/discovery"
	"github.com/cloister-go/cloister/internal/ringx"
	"github.com/cloister-go/cloister/internal/wire/distfilter"
	"github.com/cloister-go/cloister/internal/wire/ergonode"
	"github.com/cloister-go/cloister/listener"
	"github.com/cloister-go/cloister/ring"
	"github.com/ergo-services/ergo/etf"
	"github.com/ergo-services/ergo/gen"
	"github.com/ergo-services/ergo/node"
)

// Options configure cloister: every field, with its default, is documented
// on actors.Options, the one options struct (the configuration file's keys
// and the command line's flags are derived from it).
type Options = actors.Options

// NodeOptions configure the Ergo node StartNode starts (cookie, EPMD,
// listen port).
type NodeOptions = ergonode.Options

// Snapshot is the Monitor's view; see listener.Snapshot.
type Snapshot = listener.Snapshot

// Result is one node's answer to a fan-out; Err is a *NodeError or nil.
type Result = actors.Result

// NodeError says why one node of a fan-out has no reply. It matches one
// of ErrTimeout, ErrNoConnection, ErrNoSuchProcess, ErrRemote and
// ErrRefused with errors.Is.
type NodeError = errs.NodeError

// OptionError is Options.Validate's error: the option, its value and what
// is allowed.
type OptionError = errs.OptionError

// NoFlapGrace as Options.FlapGrace removes a member as soon as its
// connection drops.
const NoFlapGrace = actors.NoFlapGrace

// Child is an additional module for the Manager (Options.AdditionalModules).
type Child = actors.Child

// StoppedError is a stopped cluster's Err: why it stopped (its program
// stopped it, its node stopped, its Manager gave up after too many
// restarts).
type StoppedError = errs.StoppedError

// RemoteError is the Err of a NodeError matching ErrRemote: what the
// remote side said (an exit reason, a Multiapply {error, Reason}, a BEAM
// exception).
type RemoteError = errs.RemoteError

// StartError is the start gate's failure: consensus not reached within
// StartTimeout. It names the members and the missing sentries.
type StartError = app.StartError

// Errors to branch on with errors.Is.
var (
	// ErrNotStarted: no cluster runs (never started, stopped, or its start
	// failed).
	ErrNotStarted = errors.New("cloister: not started")
	// ErrAlreadyStarted: StartNode or SetDefault while another cluster of
	// this process runs.
	ErrAlreadyStarted = errors.New("cloister: already started")
	// ErrStopped matches a stopped cluster's Err (a *StoppedError).
	ErrStopped       = errs.ErrStopped
	ErrNoSuchRing    = ring.ErrNoSuchRing
	ErrEmptyRing     = ring.ErrEmptyRing
	ErrTimeout       = errs.ErrTimeout
	ErrNoConnection  = errs.ErrNoConnection
	ErrNoSuchProcess = errs.ErrNoSuchProcess
	ErrRemote        = errs.ErrRemote
	ErrRefused       = errs.ErrRefused
	// ErrInvalidArgument: a fan-out or RegisterFunc argument is wrong
	// (empty name, non-positive timeout, nil function, ...).
	ErrInvalidArgument = errs.ErrInvalidArgument
	// ErrFuncRegistered: RegisterFunc with a name already taken.
	ErrFuncRegistered = errs.ErrFuncRegistered
	// ErrInvalidOption: Options.Validate's errors name the option.
	ErrInvalidOption = errs.ErrInvalidOption
)

// DefaultOptions returns options with every default filled in.
func DefaultOptions() Options { return actors.DefaultOptions() }

// StartNode is New and Cluster.Start in one: it starts an Ergo node named
// name with cloister on it and returns once the cluster is ready, or fails
// with the reason (see Cluster.Start).
func StartNode(name string, opts Options, nopts NodeOptions) (*Cluster, error) {
	c, err := New(opts)
	if err != nil {
		return nil, err
	}
	if err := c.Start(context.Background(), name, nopts); err != nil {
		return nil, err
	}
	return c, nil
}

// Start starts an Ergo node with the safe options and the cluster on it
// (registered with the EPMD on nopts.EPMDPort, else $ERL_EPMD_PORT, else
// 4369; see NodeOptions), and returns once the cluster is ready, or fails with the reason (a
// *StartError after StartTimeout, ctx's error when ctx ends first). The
// cluster becomes the default of the package-level functions from the
// moment Start begins (so AwaitReady in another goroutine waits for it)
// until it stops or its start fails; a start while another cluster of this
// process runs fails with ErrAlreadyStarted, and a cluster starts once. In
// service mode with Magic set, name may be empty: the node is named
// OTPApp@<own address in the service's DNS answer> (or @127.0.0.1 with
// Loopback).
func (c *Cluster) Start(ctx context.Context, name string, nopts NodeOptions) error {
	if !c.started.CompareAndSwap(false, true) {
		return fmt.Errorf("%w: this cluster was started before (New makes another)", ErrAlreadyStarted)
	}
	if err := SetDefault(c); err != nil {
		return err
	}
	n, err := c.start(ctx, name, c.a.Options(), nopts)
	if err != nil {
		c.c.MarkStopped(err)
		clearDefault(c)
		return err
	}
	c.watch(n)
	return nil
}

func (c *Cluster) start(ctx context.Context, name string, opts Options, nopts NodeOptions) (node.Node, error) {
	if opts.Service != "" && opts.Magic {
		nctx := ctx
		if opts.StartTimeout > 0 {
			var cancel context.CancelFunc
			nctx, cancel = context.WithTimeout(ctx, opts.StartTimeout)
			defer cancel()
		}
		n, err := discovery.NodeName(nctx, discovery.NameOptions{
			OTPApp: opts.OTPApp, Service: opts.Service, Loopback: opts.Loopback, Magic: true,
			Given: name, Resolver: &discovery.Resolver{Server: opts.DNSServer, SRV: opts.SRV}, Logf: logf.To(opts.Logger, slog.LevelInfo),
		})
		if err != nil {
			return nil, err
		}
		name = n
	}
	if nopts.Logf == nil {
		// The node's diagnostics (why a handshake failed) are warnings.
		nopts.Logf = logf.To(opts.Logger, slog.LevelWarn)
	}
	if !nopts.PlainDistribution && nopts.WrapHandshake == nil && nopts.WrapProto == nil {
		// BEAM interop: OTP 26+ links, the top-level [] guard, rpc from
		// Erlang/Elixir answered (Multiapply functions included), and
		// net_adm:ping answered pong.
		distfilter.Options{ServeRPC: true, Funcs: rpcFuncs{c.c}, Logf: logf.To(opts.Logger, slog.LevelWarn),
			AcceptLink: c.c.AcceptLink}.Apply(&nopts)
		c.a.NetKernel = true
	}
	c.a.Context = ctx
	nopts.Applications = append(nopts.Applications, c.a)
	n, err := ergonode.Start(name, nopts)
	if err != nil {
		if aerr := c.a.Err(); aerr != nil {
			return nil, aerr
		}
		return nil, err
	}
	return n, nil
}

// StartErgoNode starts an Ergo node with the settings cloister needs (one
// handler per link, so messages keep their order; remote spawn off; no
// call-home) and the BEAM interop filter, running nopts.Applications but
// not cloister: for an Ergo application that runs cloister in its own tree
// (New, Cluster.ApplicationChildSpec). BEAM nodes' rpc into the Go
// functions of RegisterFunc and the pong to net_adm:ping are StartNode's
// only.
func StartErgoNode(name string, nopts NodeOptions) (node.Node, error) {
	if !nopts.PlainDistribution && nopts.WrapHandshake == nil && nopts.WrapProto == nil {
		distfilter.Options{Logf: nopts.Logf}.Apply(&nopts)
	}
	return ergonode.Start(name, nopts)
}

// StopNode is c.Stop(); a nil c is ErrNotStarted.
func StopNode(c *Cluster) error { return c.Stop() }

// rpcFuncs lets BEAM callers rpc the functions registered for Multiapply:
// rpc:call(GoNode, M, F, Args) runs the function registered as "M:F", or
// else the one registered as "F".
type rpcFuncs struct{ f clusterstate.State }

func (r rpcFuncs) Lookup(name string) (func(args etf.List) (etf.Term, error), bool) {
	if fn, ok := r.f.LookupFunc(name); ok {
		return fn, true
	}
	if i := strings.LastIndexByte(name, ':'); i >= 0 {
		if fn, ok := r.f.LookupFunc(name[i+1:]); ok {
			return fn, true
		}
	}
	return nil, false
}

// TryGo shares the registry's concurrency cap with the Node actor's Multiapply.
func (r rpcFuncs) TryGo(run func()) bool { return r.f.TryGo(run) }

// Cluster is one node's cluster: its rings, its Monitor's view and its
// fan-out. StartNode returns one; New builds one for your own supervision
// tree.
type Cluster struct {
	a *app.App
	c clusterstate.State
	// manager and gate are a's Manager and start gate.
	manager gen.SupervisorBehavior
	gate    func(context.Context) error
	// rings and ring (the default ring's name) are c's, kept here so a
	// lookup makes no interface call to reach them.
	rings *ring.Set
	ring  string

	started   atomic.Bool // Start or ChildSpec: a cluster runs once
	watchOnce sync.Once
}

// New validates opts and returns a cluster that is not started: run
// ChildSpec (or ApplicationChildSpec) in your own supervisor or Ergo
// application, and block your application's Start on AwaitReady.
func New(opts Options) (*Cluster, error) {
	a, err := app.New(opts)
	if err != nil {
		return nil, err
	}
	m, gate := clusterstate.AppParts(a)
	s := clusterstate.Of(m)
	return &Cluster{a: a, c: s, manager: m, gate: gate, rings: s.RingSet(), ring: s.DefaultRing()}, nil
}

// Node is the Ergo node the cluster runs on (nil before its Monitor
// started).
func (c *Cluster) Node() node.Node { return c.c.Node() }

// Name is this node's name ("" before its Monitor started).
func (c *Cluster) Name() string { return c.c.Self() }

// Options are the cluster's validated options, defaults filled in.
func (c *Cluster) Options() Options { return c.a.Options() }

// Err is why the cluster ended: nil while it runs, the start's error after
// a failed start, a *StoppedError (matching ErrStopped) after Stop, once
// its node stopped or when its Manager gave up.
func (c *Cluster) Err() error { return c.c.Err() }

// Stopped is closed when the cluster ends for good (see Err). A program
// that cannot work without it selects on it and exits.
func (c *Cluster) Stopped() <-chan struct{} { return c.c.Stopped() }

// Stop shuts the node down in order: the Monitor runs stopping → stopped
// and the listener hears both, then the node stops (Ergo's Stop alone does
// not wait for processes to finish, so the listener would miss them), and
// the cluster stops being the default. Ergo's ApplicationStop is not used:
// it races with the application's own goroutine inside Ergo v2.2.4. A nil
// or stopped cluster is ErrNotStarted.
func (c *Cluster) Stop() error {
	if c == nil || c.c.Halted() {
		return ErrNotStarted
	}
	var err error
	n := c.c.Node()
	if n != nil {
		if p := n.ProcessByName(c.a.Options().MonitorName); p != nil {
			if _, e := p.DirectWithTimeout(clusterstate.StopRequest{}, 5); e != nil {
				err = fmt.Errorf("cloister: stop monitor: %w", e)
			}
		}
	}
	c.c.MarkStopped(nil)
	clearDefault(c)
	if n != nil {
		n.Stop()
	}
	return err
}

// watch marks the cluster stopped when its node stops, however it stops.
// Its goroutine starts with the node (n, or the one the Monitor gets when
// n is nil: a child spec never started holds none) and ends with it.
func (c *Cluster) watch(n node.Node) {
	c.watchOnce.Do(func() {
		wait := func(n node.Node) {
			go func() {
				n.Wait()
				c.c.MarkStopped(nil)
				clearDefault(c)
			}()
		}
		if n != nil {
			wait(n)
			return
		}
		c.c.WhenNode(wait)
	})
}

// Ring is the current snapshot of ring group ("" = the default ring): its
// members, hash and owners, consistent with each other.
func (c *Cluster) Ring(group string) (*ring.View, error) {
	if group == "" {
		group = c.ring
	}
	return c.rings.Get(group)
}

// ChildSpec is the Manager (Cloister.Manager, with the Monitor, the Node
// actor and the additional modules under it) as a child of your own
// supervisor. Block your application's Start on AwaitReady to start your
// workers in a formed cluster. Call it once per cluster.
func (c *Cluster) ChildSpec() gen.SupervisorChildSpec {
	c.watch(nil)
	return gen.SupervisorChildSpec{Name: c.a.Options().ManagerName, Child: c.manager}
}

// ApplicationChildSpec is ChildSpec for the Children of your own Ergo
// application's spec.
func (c *Cluster) ApplicationChildSpec() gen.ApplicationChildSpec {
	c.started.Store(true)
	c.watch(nil)
	return gen.ApplicationChildSpec{Name: c.a.Options().ManagerName, Child: c.manager}
}

// AwaitReady is the start gate: it blocks until the cluster is ready,
// logging progress while it waits. It fails with a *StartError after
// StartTimeout, with ctx's error when ctx ends, and with the cluster's Err
// when the cluster ends first.
func (c *Cluster) AwaitReady(ctx context.Context) error { return c.gate(ctx) }

// Whois returns the node that owns key in ring group ("" = the default
// ring). It never blocks: an unknown group or an empty ring is an error at
// once (the original slept and retried forever).
func (c *Cluster) Whois(group, key string) (string, error) {
	if group == "" {
		group = c.ring
	}
	return c.rings.Owner(group, key)
}

// WhoisTerm is Whois for any term. The default engine looks up Key(term);
// the libring engine hashes the term with erlang:phash2, so the owner is
// the one Elixir's libring picks for the same term.
func (c *Cluster) WhoisTerm(group string, key etf.Term) (string, error) {
	if group == "" {
		group = c.ring
	}
	s, err := c.rings.Get(group)
	if err != nil {
		return "", err
	}
	return ringx.OwnerTerm(s, key, Key)
}

// Mine reports whether this node owns key in the default ring.
func (c *Cluster) Mine(key string) bool {
	o, err := c.rings.Owner(c.ring, key)
	return err == nil && o == c.c.Self()
}

// MineTerm is Mine for any term, hashed as WhoisTerm does.
func (c *Cluster) MineTerm(key etf.Term) bool {
	o, err := c.WhoisTerm("", key)
	return err == nil && o == c.c.Self()
}

// Siblings lists the members of the default ring, sorted.
func (c *Cluster) Siblings() []string {
	s, err := c.rings.Get(c.ring)
	if err != nil {
		return nil
	}
	return s.Members()
}

// State is the Monitor's latest snapshot.
func (c *Cluster) State() Snapshot { return c.c.Snapshot() }

func (c *Cluster) targets(nodes []string) []string {
	if nodes == nil {
		return c.Siblings()
	}
	return nodes
}

func (c *Cluster) running() (node.Node, error) {
	if c.c.Halted() {
		return nil, ErrNotStarted
	}
	if n := c.c.Node(); n != nil {
		return n, nil
	}
	return nil, ErrNotStarted
}

// Multicall calls the process registered as name on each node (nil: the
// default ring's members) and returns one Result per node, in order: the
// reply, or a *NodeError (timeout, no connection, no such process, remote
// error, refused). timeout may be sub-second. Fan-out never dials: an
// unconnected node is a no-connection result.
func (c *Cluster) Multicall(nodes []string, name string, request etf.Term, timeout time.Duration) ([]Result, error) {
	n, err := c.running()
	if err != nil {
		return nil, err
	}
	return clusterstate.Multicall(n, c.targets(nodes), name, request, timeout)
}

// Multicast sends message to the process registered as name on each node
// (nil: the ring members), fire and forget.
func (c *Cluster) Multicast(nodes []string, name string, message etf.Term) error {
	n, err := c.running()
	if err != nil {
		return err
	}
	return clusterstate.Multicast(n, c.targets(nodes), name, message)
}

// Multiapply runs the function registered as fn (RegisterFunc) on each
// node (nil: the ring members) with args; one Result per node.
func (c *Cluster) Multiapply(nodes []string, fn string, args etf.List, timeout time.Duration) ([]Result, error) {
	n, err := c.running()
	if err != nil {
		return nil, err
	}
	return clusterstate.Multiapply(n, c.targets(nodes), fn, args, timeout)
}

// RegisterFunc makes fn callable by Multiapply on this node (and by
// rpc:call from BEAM nodes). An empty name or nil fn wraps
// ErrInvalidArgument, a taken name ErrFuncRegistered.
func (c *Cluster) RegisterFunc(name string, fn func(args etf.List) (etf.Term, error)) error {
	return c.c.RegisterFunc(name, fn)
}
