package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/cloister-go/cloister/actors"
	"github.com/cloister-go/cloister/internal/clusterstate"
	"github.com/cloister-go/cloister/internal/logf"
	"github.com/cloister-go/cloister/internal/wire/distfilter"
	"github.com/cloister-go/cloister/listener"
	"github.com/ergo-services/ergo/etf"
	"github.com/ergo-services/ergo/gen"
	"github.com/ergo-services/ergo/node"
)

// Name is the Ergo application name.
const Name = "cloister"

// App is cloister as an Ergo application. Add it to a node's
// Applications (after validating with New) or start it with
// node.ApplicationLoad/ApplicationStart; its Start returns only once the
// cluster is ready (or StartTimeout passed). To put cloister inside your
// own supervision tree instead, use cloister.New, Cluster.ChildSpec (or
// ApplicationChildSpec) and Cluster.AwaitReady in your application's
// Start.
type App struct {
	gen.Application
	// NetKernel, when set, makes Start replace two processes of the node
	// for BEAM peers: net_kernel, with one that answers net_adm:ping with
	// pong (Ergo's own answers pang), and global_name_server, with one
	// that keeps global:sync, trans and set_lock on BEAM nodes from
	// hanging on this node. It replaces processes the node already runs,
	// so it is off unless asked for; cloister.StartNode sets it for the
	// nodes it starts (unless NodeOptions.PlainDistribution).
	NetKernel bool
	// Context, when set, bounds the start gate besides StartTimeout: its
	// end fails the start with its error.
	Context context.Context

	opts    Options
	cluster clusterstate.State
	manager gen.SupervisorBehavior

	mu  sync.Mutex
	err error
}

// New validates opts and returns the application.
func New(opts Options) (*App, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	m, err := actors.NewManager(opts)
	if err != nil {
		return nil, err
	}
	return &App{opts: opts, cluster: clusterstate.Of(m), manager: m}, nil
}

// The facade runs the Manager in a user's own tree (Cluster.ChildSpec) and
// waits on the gate (Cluster.AwaitReady): it reaches both through
// clusterstate, so the application's own API stays what Ergo calls.
func init() {
	clusterstate.AppParts = func(b gen.ApplicationBehavior) (gen.SupervisorBehavior, func(context.Context) error) {
		if a, ok := b.(*App); ok {
			return a.manager, a.gate
		}
		return nil, nil
	}
}

// Options returns the validated options.
func (a *App) Options() Options { return a.opts }

// Err is why the start gate failed (nil when it did not). Ergo reports a
// failed application start only as "panic"; this carries the reason.
func (a *App) Err() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.err
}

// Load gives Ergo the application spec: one child, the Manager.
func (a *App) Load(args ...etf.Term) (gen.ApplicationSpec, error) {
	return gen.ApplicationSpec{
		Name:        Name,
		Description: "cloister: a managed cluster of Ergo nodes",
		Version:     "v0.1.0",
		Children: []gen.ApplicationChildSpec{
			{Name: a.opts.ManagerName, Child: a.manager},
		},
	}, nil
}

// Start is the start gate (see gate). Ergo's Start cannot return an error,
// so a failed gate panics with it (Ergo turns that into a failed
// ApplicationStart; Err holds the reason) and marks the cluster stopped.
func (a *App) Start(process gen.Process, args ...etf.Term) {
	if a.NetKernel {
		// Before the gate, so BEAM members can ping while we assemble.
		if n, ok := process.Env(node.EnvKeyNode).(node.Node); ok {
			if err := distfilter.InstallNetKernel(n); err != nil {
				a.logf("cloister: net_kernel for ping: %v", err)
			}
			// global:sync/trans/set_lock on BEAM nodes must not hang on us
			if err := distfilter.InstallGlobal(n); err != nil {
				a.logf("cloister: global_name_server for BEAM nodes: %v", err)
			}
		}
	}
	ctx := a.Context
	if ctx == nil {
		ctx = context.Background()
	}
	if err := a.gate(ctx); err != nil {
		a.mu.Lock()
		a.err = err
		a.mu.Unlock()
		a.cluster.MarkStopped(err)
		// Ergo prints the panic value with %#v: a string reads as our
		// message, not as a struct dump.
		panic(err.Error())
	}
}

func (a *App) logf(format string, args ...interface{}) {
	logf.To(a.opts.Logger, slog.LevelWarn)(format, args...)
}

// gate blocks until the cluster is ready: the start gate, for App.Start
// and (as Cluster.AwaitReady) for your own application's Start when the
// Manager runs in your tree.
// It logs progress as the original did ("retries: [n], nodes: [...]": Info
// for the first 10, Warn every 10th, Error every 100th, into
// Options.Logger). After
// StartTimeout it fails with a *StartError naming the missing nodes; when
// ctx ends, with ctx's error; when the cluster ends (its node stopped),
// with the cluster's Err.
func (a *App) gate(ctx context.Context) error {
	if a.opts.StartTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, a.opts.StartTimeout, errStartTimeout)
		defer cancel()
	}
	tick := time.NewTicker(a.opts.StartLogEvery)
	defer tick.Stop()
	retries := 0
	for {
		ch := a.cluster.Changed()
		s := a.cluster.Snapshot()
		if s.Ready() {
			return nil
		}
		select {
		case <-ch:
		case <-a.cluster.Stopped():
			return a.cluster.Err()
		case <-tick.C:
			retries++
			level := slog.LevelInfo
			switch {
			case retries <= 10:
			case retries%100 == 0:
				level = slog.LevelError
			case retries%10 == 0:
				level = slog.LevelWarn
			default:
				continue
			}
			logf.To(a.opts.Logger, level)("cloister: waiting for consensus %d: retries: [%d], nodes: [%s]",
				s.Consensus, retries, strings.Join(s.Members, ", "))
		case <-ctx.Done():
			if errors.Is(context.Cause(ctx), errStartTimeout) {
				return a.timeoutError(s)
			}
			return fmt.Errorf("cloister: start gate: %w", ctx.Err())
		}
	}
}

// errStartTimeout is the cause of the gate's own deadline, told apart from
// the caller's.
var errStartTimeout = errors.New("start timeout")

// StartError is the start gate's failure: consensus not reached in time.
type StartError struct {
	Timeout   time.Duration
	Consensus int
	Members   []string
	Missing   []string
	State     string
}

func (e *StartError) Error() string {
	missing := "none of the listed sentries is missing; more members must join"
	if len(e.Missing) > 0 {
		missing = "missing: " + strings.Join(e.Missing, ", ")
	}
	return fmt.Sprintf("cloister: consensus %d not reached within %s (state %s, members %d: [%s]; %s)",
		e.Consensus, e.Timeout, e.State, len(e.Members), strings.Join(e.Members, ", "), missing)
}

func (a *App) timeoutError(s listener.Snapshot) error {
	members := map[string]bool{}
	for _, m := range s.Members {
		members[m] = true
	}
	var missing []string
	for _, n := range a.opts.Sentry {
		if !members[n] {
			missing = append(missing, n)
		}
	}
	return &StartError{Timeout: a.opts.StartTimeout, Consensus: a.opts.Consensus,
		Members: s.Members, Missing: missing, State: string(s.State)}
}
