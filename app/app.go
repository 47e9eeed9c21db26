package app

import (
	"context"
	"fmt"
	"log"
	"strings"
	"sync"
	"time"

	"github.com/cloister-go/cloister/actors"
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
// cluster is ready (or StartTimeout passed).
type App struct {
	gen.Application
	opts    Options
	cluster *actors.Cluster
	manager *actors.Manager

	mu  sync.Mutex
	err error
}

// New validates opts and returns the application.
func New(opts Options) (*App, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	c, err := actors.NewCluster(opts.OTPApp, opts.rings(), opts.Engine)
	if err != nil {
		return nil, err
	}
	a := &App{opts: opts, cluster: c}
	a.manager = actors.NewManager(c, opts.monitorOptions(), opts.AdditionalModules)
	return a, nil
}

// Cluster is the running cluster's shared view (rings, snapshot).
func (a *App) Cluster() *actors.Cluster { return a.cluster }

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

// Start is the start gate: it blocks until the Monitor is ready, logging
// progress as the original did ("retries: [n], nodes: [...]": info for the
// first 10, a warning every 10th, an error every 100th). With StartTimeout
// it gives up with an error naming the missing nodes; Ergo's Start cannot
// return an error, so it panics with it (Ergo turns that into a failed
// ApplicationStart; Err holds the reason).
func (a *App) Start(process gen.Process, args ...etf.Term) {
	register(a.cluster)
	// net_adm:ping from BEAM nodes answers pong (Ergo's stub says pang),
	// before the gate so BEAM members can ping while we assemble.
	if n, ok := process.Env(node.EnvKeyNode).(node.Node); ok {
		if err := distfilter.InstallNetKernel(n); err != nil {
			a.logf("cloister: net_kernel for ping: %v", err)
		}
		// global:sync/trans/set_lock on BEAM nodes must not hang on us
		if err := distfilter.InstallGlobal(n); err != nil {
			a.logf("cloister: global_name_server for BEAM nodes: %v", err)
		}
	}
	if err := a.gate(); err != nil {
		a.mu.Lock()
		a.err = err
		a.mu.Unlock()
		panic(err)
	}
}

func (a *App) logf(format string, args ...interface{}) {
	if a.opts.Logf != nil {
		a.opts.Logf(format, args...)
		return
	}
	log.Printf(format, args...)
}

func (a *App) gate() error {
	ctx := context.Background()
	if a.opts.StartTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, a.opts.StartTimeout)
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
		case <-tick.C:
			retries++
			line := fmt.Sprintf("cloister: waiting for consensus %d: retries: [%d], nodes: [%s]",
				s.Consensus, retries, strings.Join(s.Members, ", "))
			switch {
			case retries <= 10:
				a.logf("[info] %s", line)
			case retries%100 == 0:
				a.logf("[error] %s", line)
			case retries%10 == 0:
				a.logf("[warning] %s", line)
			}
		case <-ctx.Done():
			return a.timeoutError(s)
		}
	}
}

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
		Members: s.Members, Missing: missing, State: s.State.String()}
}

// AwaitReady blocks until the cluster is ready or ctx ends: the
// non-blocking start for code that embeds the Manager in its own tree.
func (a *App) AwaitReady(ctx context.Context) error { return a.cluster.AwaitReady(ctx) }

var (
	regMu   sync.Mutex
	byNode  = map[string]*actors.Cluster{}
	lastOne *actors.Cluster
)

func register(c *actors.Cluster) {
	regMu.Lock()
	defer regMu.Unlock()
	byNode[c.Self()] = c
	lastOne = c
}

// Default returns the cluster of the application started last in this
// process (one node per process is the rule), or nil.
func Default() *actors.Cluster {
	regMu.Lock()
	defer regMu.Unlock()
	return lastOne
}

// Lookup returns the cluster running on the named node, or nil.
func Lookup(node string) *actors.Cluster {
	regMu.Lock()
	defer regMu.Unlock()
	return byNode[node]
}
