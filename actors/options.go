// Package actors holds cloister's processes — the Manager (NewManager), the
// Monitor and the Node actor, with their registered names (MonitorName,
// NodeName) that BEAM nodes call — and Options, the one options struct.
// Applications use them through package cloister (StartNode, or New with
// Cluster.ChildSpec), which also runs the fan-out.
package actors

import (
	"errors"
	"fmt"
	"github.com/cloister-go/cloister/internal/errs"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/cloister-go/cloister/internal/clusterstate"
	"github.com/cloister-go/cloister/internal/core"
	"github.com/cloister-go/cloister/internal/discovery"
	"github.com/cloister-go/cloister/internal/logf"
	"github.com/cloister-go/cloister/internal/nodename"
	"github.com/cloister-go/cloister/listener"
	"github.com/cloister-go/cloister/ring"
)

// Options configure cloister: the one set of options, from the facade
// (cloister.Options) down to the Monitor. Start from DefaultOptions(); a
// zero value means the default given with each field. Validate checks
// every field; its error names the field and the value.
//
// The `yaml` tag of a field is its key in the configuration file; the
// command line's flag is the same name with '-' for '_' (otp_app,
// -otp-app). A field tagged "-" is set from code only.
type Options struct {
	// OTPApp is the application the cluster runs for: the default ring's
	// name, and the node-name prefix in service mode. Only nodes running
	// cloister for the same OTPApp are members. Default "cloister".
	OTPApp string `yaml:"otp_app" help:"application the cluster runs for: default ring name, node-name prefix in service mode"`
	// Sentry lists peer nodes ("name@host"; this node may be among them).
	// Nil means this node alone. Mutually exclusive with Service.
	Sentry []string `yaml:"sentry" help:"peer nodes, name@host (this node may be listed); empty: this node alone"`
	// Service is a DNS name whose IPv4 addresses are the peers
	// (OTPApp@<ip>), as with a Docker Compose service or a Kubernetes
	// headless Service. Re-resolved every DiscoveryInterval, forever.
	// Default "" (use Sentry).
	Service string `yaml:"service" help:"DNS name whose IPv4 addresses are the peers (otp_app@<ip>), instead of sentry"`
	// DNSServer, when set ("127.0.0.1:5353"), is asked instead of the
	// system resolver. Default "" (the system resolver).
	DNSServer string `yaml:"dns_server" help:"DNS server host:port for service (empty: the system resolver)"`
	// SRV looks up SRV records for Service (Kubernetes headless services)
	// instead of A records. Default false.
	SRV bool `yaml:"srv" help:"look up SRV records for service instead of A records"`
	// Consensus is the number of members (this node included) needed
	// before the cluster is ready; the start blocks until then. ≥ 1;
	// default 1.
	Consensus int `yaml:"consensus" help:"members (this node included) needed before the cluster is ready"`
	// Listener is told of every state change. Default: one log line per
	// change (state, members) through Logger.
	Listener listener.Listener `yaml:"-"`
	// AdditionalModules are extra children of the Manager, started after
	// the Monitor and the Node actor. Default none. Each child's
	// ProcessInit gets a gen.Process that wraps Ergo's own (the Manager
	// orders its stop of a child before Ergo's cleanup of it; see
	// manager_sup.go): use it through the gen.Process interface, never
	// type-assert it to Ergo's internal process type.
	AdditionalModules []Child `yaml:"-"`
	// Ring names the default ring. Default: OTPApp.
	Ring string `yaml:"ring" help:"default ring name (default: otp_app)"`
	// Groups are extra named rings, built from the same members. Default
	// none.
	Groups []string `yaml:"groups" help:"extra named rings, same members"`
	// Roles are what this node announces it does ("worker", "api"): at
	// most 16, each 1 to 64 letters, digits, '_', '-' or '.'. They travel
	// in the state answer to Go peers (a BEAM caller gets the original's
	// answer; a BEAM member has no roles) and restrict rings (RingRoles).
	// Default none.
	Roles []string `yaml:"roles" help:"roles this node announces (at most 16), e.g. worker"`
	// Meta is small metadata this node announces with its roles, as
	// "key=value" entries: at most 32, keys as roles, values up to 256
	// bytes of printable text. Shown in State, /status and cloister status.
	// Default none.
	Meta []string `yaml:"meta" help:"metadata this node announces, key=value entries (at most 32)"`
	// RingRoles restricts rings to members with a role, as "ring=role"
	// entries (ring being Ring or one of Groups): "jobs=worker" builds ring
	// jobs only from the members announcing role worker, so only workers
	// own its keys while every node, whatever its roles, routes with it. A
	// member's roles arrive with its membership, so the ring is the same
	// on every node. Default none: every ring has every member.
	RingRoles []string `yaml:"ring_roles" help:"restrict a ring to members with a role, ring=role entries, e.g. jobs=worker"`
	// Engine builds the rings. Default ring.Consistent(); in the file and
	// on the command line by name: consistent, libring (owners as Elixir's
	// libring computes them, for mixed clusters), libring-otp26 (the same
	// for Elixir nodes on OTP 26 or later).
	Engine ring.Engine `yaml:"engine" help:"ring engine: consistent, libring (mixed clusters with Elixir), libring-otp26"`
	// ManagerName and MonitorName are the registered names. Defaults are
	// the Elixir library's (Elixir.Cloister.Manager, MonitorName), so BEAM nodes
	// address a Go node as an Elixir one.
	ManagerName string `yaml:"manager_name" help:"registered name of the Manager"`
	MonitorName string `yaml:"monitor_name" help:"registered name of the Monitor (asked for on peers too)"`
	// Loopback names this node OTPApp@127.0.0.1 in service mode. Default
	// false.
	Loopback bool `yaml:"loopback" help:"service mode: name this node otp_app@127.0.0.1"`
	// Magic derives the node name in service mode (OTPApp@<own address in
	// the service's answer>); false keeps the given name. DefaultOptions
	// sets true.
	Magic bool `yaml:"magic" help:"service mode: derive the node name from the service's DNS answer"`
	// StartTimeout bounds the start gate. Default 0: wait forever (the
	// original).
	StartTimeout time.Duration `yaml:"start_timeout" help:"fail the start if consensus is not reached in this time (0: wait forever)"`
	// StartLogEvery is the interval of the "retries: [n]" progress lines
	// while the start gate waits. Default 2s (the original's poll).
	StartLogEvery time.Duration `yaml:"start_log_every" help:"interval of the progress lines while the start waits"`
	// Reconcile is the safety-net period that compares our view with the
	// node's connections. Default 1s.
	Reconcile time.Duration `yaml:"reconcile" help:"period of the safety-net check of the node's connections"`
	// Heartbeat is how often members are probed. Default 500ms; shorter
	// than SuspectAfter. (A connected node that is not a member is asked
	// again every 2 s: the Monitor's fixed timing is in monitor_timing.go.)
	Heartbeat time.Duration `yaml:"heartbeat" help:"member heartbeat period"`
	// SuspectAfter is the silence after which a member is suspected.
	// Default 3s; at most RemoveAfter.
	SuspectAfter time.Duration `yaml:"suspect_after" help:"silence before a member is suspected"`
	// RemoveAfter is the silence after which a member is removed and
	// disconnected. Default 5s.
	RemoveAfter time.Duration `yaml:"remove_after" help:"silence before a member is removed and disconnected"`
	// WatchNeighbours narrows the heartbeat of a steady cluster: each
	// member keeps alive and judges only the WatchNeighbours members on
	// each side of it in the sorted member list, and tells every member
	// when it suspects one; any suspicion, or a change of the member list,
	// has every node watch every member until it is settled (see
	// docs/failures.md). Default 2; negative: every node always watches
	// every member.
	WatchNeighbours int `yaml:"watch_neighbours" help:"members on each side each member watches in a steady cluster (negative: all)"`
	// DialTimeout bounds one connection attempt. Default 5s.
	DialTimeout time.Duration `yaml:"dial_timeout" help:"bound of one connection attempt"`
	// BackoffMin and BackoffMax bound the re-dial wait: failed dials back
	// off from BackoffMin doubling to BackoffMax, forever, each wait scaled
	// by a per-peer factor in [0.75, 1) so two nodes do not re-dial each
	// other in lockstep. Defaults 50ms and 1s.
	BackoffMin time.Duration `yaml:"backoff_min" help:"first re-dial wait (doubling up to backoff_max)"`
	BackoffMax time.Duration `yaml:"backoff_max" help:"longest re-dial wait"`
	// DiscoveryInterval is the DNS re-resolution period in service mode.
	// Default 1s.
	DiscoveryInterval time.Duration `yaml:"discovery_interval" help:"DNS re-resolution period (service mode)"`
	// FlapGrace is the flap guard: a member whose connection drops stays in
	// the rings this long while it is re-dialled, so a peer back within it
	// does not churn the rings twice (out, then in). One not back is
	// removed when it ends. A member removed by the heartbeat (silent
	// RemoveAfter) gets no grace. Default 1s, or RemoveAfter/2 when
	// shorter; must be shorter than RemoveAfter. NoFlapGrace ("off" in the
	// file and on the command line) removes at once.
	FlapGrace time.Duration `yaml:"flap_grace" help:"how long a member whose connection dropped stays in the rings while re-dialled (off: none)"`
	// KeepFreedMemory turns off the memory return: by default, once the
	// cluster's view has been unchanged for 3 s after a burst of
	// membership changes (the assembly, a kill, a healed partition),
	// cloister calls debug.FreeOSMemory once, a forced collection that
	// hands the burst's freed pages back to the OS (skipped when the live
	// heap exceeds 64 MiB). Set it when the program manages its own GC
	// and memory, and no collection should be forced on it. Default false.
	KeepFreedMemory bool `yaml:"keep_freed_memory" help:"never force a collection to return a membership burst's freed memory to the OS"`
	// Debug logs every core event with its effects (verbose). Default
	// false.
	Debug bool `yaml:"debug" help:"log every event of the Monitor's core with its effects (verbose)"`
	// Logger receives cloister's log lines, at slog levels: Info for
	// state changes, progress and recoveries, Warn for a peer that cannot
	// be reached, a suspected or removed member and a start that keeps
	// waiting (every 10th progress line), Error every 100th. Default
	// slog.Default().
	Logger *slog.Logger `yaml:"-"`
	// Observe, when set, sees every decision of the Monitor as a typed
	// event (listener.Transition, RingsRebuilt, DialStarted, Suspected,
	// Disconnected, Removed with its RemovalReason, GraceStarted,
	// Recovered, Stalled), on the Monitor's goroutine: it must not block.
	// metrics.Collector.Instrument sets one (see package metrics). Default nil.
	Observe func(listener.Event) `yaml:"-"`
	// ObserveFanout, when set, is called after every Multicall and
	// Multiapply made on this cluster's node, with the operation
	// ("multicall", "multiapply") and the per-node results, on the
	// caller's goroutine: it must not block or keep the slice.
	// metrics.Collector.Instrument sets one. Default nil.
	ObserveFanout func(op string, results []Result) `yaml:"-"`
}

// NoFlapGrace as Options.FlapGrace removes a member as soon as its
// connection drops.
const NoFlapGrace time.Duration = -1

// DefaultOptions returns options with every default filled in, except the
// ones derived from other options: Ring (from OTPApp) and FlapGrace (from
// RemoveAfter) stay zero, so setting OTPApp or RemoveAfter later carries
// them along; Validate fills them in.
func DefaultOptions() Options {
	o := Options{OTPApp: "cloister", Consensus: 1, Magic: true}
	o.applyDefaults()
	o.Ring, o.FlapGrace = "", 0
	return o
}

func (o *Options) applyDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if o.OTPApp == "" {
		o.OTPApp = "cloister"
	}
	if o.Ring == "" {
		o.Ring = o.OTPApp
	}
	if o.ManagerName == "" {
		o.ManagerName = managerName
	}
	if o.MonitorName == "" {
		o.MonitorName = MonitorName
	}
	if o.Engine == nil {
		o.Engine = ring.Consistent()
	}
	def(&o.StartLogEvery, 2*time.Second)
	def(&o.Reconcile, time.Second)
	def(&o.Heartbeat, 500*time.Millisecond)
	def(&o.SuspectAfter, 3*time.Second)
	def(&o.RemoveAfter, 5*time.Second)
	if o.WatchNeighbours == 0 {
		o.WatchNeighbours = defaultWatchNeighbours
	}
	def(&o.DialTimeout, 5*time.Second)
	def(&o.BackoffMin, 50*time.Millisecond)
	def(&o.BackoffMax, time.Second)
	def(&o.DiscoveryInterval, time.Second)
	def(&o.FlapGrace, min(time.Second, o.RemoveAfter/2))
}

func invalid(field string, value interface{}, why string) error {
	return &errs.OptionError{Field: field, Index: -1, Value: value, Why: why}
}

func invalidAt(field string, i int, value interface{}, why string) error {
	return &errs.OptionError{Field: field, Index: i, Value: value, Why: why}
}

// Validate applies the defaults and checks every option; the error (an
// *cloister.OptionError) names the first bad option and its value.
func (o *Options) Validate() error {
	o.applyDefaults()
	if !validAtom(o.OTPApp) {
		return invalid("OTPApp", o.OTPApp, "want a non-empty name of letters, digits, '_', '-' or '.'")
	}
	if o.Consensus < 1 {
		return invalid("Consensus", o.Consensus, "must be ≥ 1")
	}
	if o.Sentry != nil && o.Service != "" {
		return invalid("Sentry", o.Sentry, "set either Sentry (a node list) or Service (a DNS name), not both")
	}
	if o.Sentry != nil && len(o.Sentry) == 0 {
		return invalid("Sentry", o.Sentry, "empty list (leave it nil for this node alone)")
	}
	for i, s := range o.Sentry {
		var ne *nodename.Error
		if errors.As(nodename.Check(s), &ne) {
			return invalidAt("Sentry", i, s, ne.Why)
		}
		if j := slices.Index(o.Sentry[:i], s); j >= 0 {
			return invalidAt("Sentry", i, s, fmt.Sprintf("listed twice (also Sentry[%d])", j))
		}
	}
	if o.Service != "" && (strings.ContainsAny(o.Service, " @/:") || strings.HasPrefix(o.Service, ".")) {
		return invalid("Service", o.Service, "want a DNS name such as cloister_test.local")
	}
	if o.DNSServer != "" && !strings.Contains(o.DNSServer, ":") {
		return invalid("DNSServer", o.DNSServer, "want host:port")
	}
	if !validAtom(o.Ring) {
		return invalid("Ring", o.Ring, "want a non-empty name of letters, digits, '_', '-' or '.'")
	}
	seen := map[string]bool{o.Ring: true}
	for i, g := range o.Groups {
		if !validAtom(g) {
			return invalidAt("Groups", i, g, "want a non-empty name of letters, digits, '_', '-' or '.'")
		}
		if seen[g] {
			return invalidAt("Groups", i, g, "duplicate ring name")
		}
		seen[g] = true
	}
	if err := o.validateRoles(seen); err != nil {
		return err
	}
	for _, n := range []struct{ field, v string }{{"ManagerName", o.ManagerName}, {"MonitorName", o.MonitorName}} {
		if !validAtom(n.v) {
			return invalid(n.field, n.v, "want a non-empty name of letters, digits, '_', '-' or '.'")
		}
	}
	for i, c := range o.AdditionalModules {
		if c.Child == nil {
			return invalidAt("AdditionalModules", i, c.Name, "Child is nil")
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"StartTimeout", o.StartTimeout}, {"StartLogEvery", o.StartLogEvery}, {"Reconcile", o.Reconcile},
		{"Heartbeat", o.Heartbeat}, {"SuspectAfter", o.SuspectAfter}, {"RemoveAfter", o.RemoveAfter},
		{"DialTimeout", o.DialTimeout}, {"BackoffMin", o.BackoffMin}, {"BackoffMax", o.BackoffMax},
		{"DiscoveryInterval", o.DiscoveryInterval},
	} {
		if d.v < 0 {
			return invalid(d.name, d.v.String(), "must not be negative")
		}
	}
	if o.FlapGrace < 0 && o.FlapGrace != NoFlapGrace {
		return invalid("FlapGrace", o.FlapGrace.String(), "must not be negative (NoFlapGrace turns the grace off)")
	}
	if o.FlapGrace >= o.RemoveAfter {
		return invalid("FlapGrace", o.FlapGrace.String(), "must be shorter than RemoveAfter ("+o.RemoveAfter.String()+")")
	}
	if o.SuspectAfter > o.RemoveAfter {
		return invalid("SuspectAfter", o.SuspectAfter.String(), "must not exceed RemoveAfter ("+o.RemoveAfter.String()+")")
	}
	if o.BackoffMin > o.BackoffMax {
		return invalid("BackoffMin", o.BackoffMin.String(), "must not exceed BackoffMax ("+o.BackoffMax.String()+")")
	}
	if o.Heartbeat >= o.SuspectAfter {
		return invalid("Heartbeat", o.Heartbeat.String(), "must be shorter than SuspectAfter ("+o.SuspectAfter.String()+")")
	}
	return nil
}

func validAtom(s string) bool {
	if s == "" || len(s) > 255 {
		return false
	}
	for _, r := range s {
		if !(r == '_' || r == '.' || r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return true
}

// logf is Printf-style logging into Logger at level (slog.Default() while
// Logger is nil), for code that takes a Logf function.
func (o *Options) logf(level slog.Level) func(format string, args ...interface{}) {
	return logf.To(o.Logger, level)
}

// rings lists the ring names, the default first.
func (o *Options) rings() []string { return append([]string{o.Ring}, o.Groups...) }

// coreConfig is the one conversion of the options into the pure core's
// configuration; self is this node's name, sentries the static peers
// (this node alone when neither Sentry nor Service is set).
func (o *Options) coreConfig(self string) core.Config {
	sentries := o.Sentry
	if o.Service == "" && len(sentries) == 0 {
		sentries = []string{self}
	}
	return core.Config{
		Self: self, OTPApp: o.OTPApp, Consensus: o.Consensus,
		Sentries: sentries, Service: o.Service != "",
		Heartbeat: o.Heartbeat, SuspectAfter: o.SuspectAfter, RemoveAfter: o.RemoveAfter,
		// Peers write a keepalive at least every linkGap (they share our
		// SuspectAfter; one that writes less often is pinged as before).
		LinkGap:         linkGap(o.SuspectAfter),
		WatchNeighbours: max(o.WatchNeighbours, 0),
		ProbeTimeout:    probeTimeoutHeartbeats * o.Heartbeat, Reprobe: reprobeEvery, Reconcile: o.Reconcile,
		BackoffMin: o.BackoffMin, BackoffMax: o.BackoffMax, FlapGrace: max(o.FlapGrace, 0),
		FirstDialGrace:     firstDialGraceBackoffs * o.BackoffMin,
		AssemblyBackoffMax: assemblyBackoffs * o.BackoffMin,
		Roles:              o.roles(), Meta: o.meta(),
		ListDeltas: !clusterstate.NoListDeltas,
	}
}

// resolver is the DNS resolver of service mode.
func (o *Options) resolver() *discovery.Resolver {
	return &discovery.Resolver{Server: o.DNSServer, SRV: o.SRV}
}
