// Package app is cloister as an Ergo application: options (validated once,
// defaults applied), the Manager as the application's child, and the start
// gate — Start returns only when the cluster has reached consensus, so
// every application listed after cloister on the node starts in a formed
// cluster (the original's start phase, SPEC §5).
package app

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cloister-go/cloister/actors"
	"github.com/cloister-go/cloister/internal/discovery"
	"github.com/cloister-go/cloister/internal/wire/ergonode"
	"github.com/cloister-go/cloister/listener"
	"github.com/cloister-go/cloister/ring"
)

// Options configure cloister. Start from DefaultOptions(); a zero duration
// means its default. Every field is checked by Validate, whose error names
// the field and the value.
type Options struct {
	// OTPApp is the application the cluster runs for: the default ring's
	// name, and the node-name prefix in service mode. Default "cloister".
	OTPApp string
	// Sentry lists peer nodes ("name@host"). Nil means this node alone.
	// Mutually exclusive with Service.
	Sentry []string
	// Service is a DNS name whose IPv4 addresses are the peers
	// (OTPApp@<ip>), as with a Docker Compose service or a Kubernetes
	// headless Service. Re-resolved every DiscoveryInterval, forever.
	Service string
	// DNSServer, when set ("127.0.0.1:5353"), is asked instead of the
	// system resolver. SRV looks up SRV records for Service.
	DNSServer string
	SRV       bool
	// Consensus is the number of members (this node included) needed
	// before the cluster is ready. ≥ 1; DefaultOptions sets 1.
	Consensus int
	// Listener is told of every state change. Nil: listener.Logger.
	Listener listener.Listener
	// AdditionalModules are extra children of the Manager, started after
	// the Monitor and the Node actor.
	AdditionalModules []actors.Child
	// Ring renames the default ring (default: OTPApp).
	Ring string
	// Groups are extra named rings, built from the same members.
	Groups []string
	// Engine builds the rings. Nil: ring.Consistent().
	Engine ring.Engine
	// ManagerName and MonitorName are the registered names; defaults are
	// the Elixir library's ('Elixir.Cloister.Manager', ...).
	ManagerName, MonitorName string
	// Loopback names this node OTPApp@127.0.0.1 in service mode; Magic =
	// false never derives the node name (the user's is kept).
	Loopback bool
	Magic    bool
	// StartTimeout bounds the start gate; 0 waits forever (the original).
	StartTimeout time.Duration
	// StartLogEvery is the interval of the "retries: [n]" progress lines
	// while the start gate waits. Default 2 s (the original's poll).
	StartLogEvery time.Duration
	// Reconcile is the safety-net period that compares our view with the
	// node's connections (default 1 s). Heartbeat is how often members are
	// probed (500 ms); a member silent SuspectAfter (3 s) is suspected and
	// silent RemoveAfter (5 s) is removed and disconnected.
	Reconcile, Heartbeat, SuspectAfter, RemoveAfter time.Duration
	// DialTimeout bounds one connection attempt (5 s). Failed dials back
	// off from BackoffMin (50 ms) doubling to BackoffMax (1 s), forever,
	// each wait scaled by a per-peer factor in [0.75, 1) so that two nodes
	// do not re-dial each other in lockstep.
	DialTimeout, BackoffMin, BackoffMax time.Duration
	// DiscoveryInterval is the DNS re-resolution period (1 s).
	DiscoveryInterval time.Duration
	// FlapGrace is the flap guard (1 s, or RemoveAfter/2 when shorter): a
	// member whose connection drops stays in the rings this long while it
	// is re-dialled, so a peer back within it does not churn the rings
	// twice (out, then in). One not back is removed when it ends.
	// NoFlapGrace removes at once. A member removed by the heartbeat
	// (silent RemoveAfter) gets no grace. Must be shorter than RemoveAfter.
	FlapGrace time.Duration
	// Logf logs; nil means log.Printf.
	Logf func(format string, args ...interface{})
	// Observe, when set, sees every decision of the Monitor as a typed
	// event (listener.Transition, RingsRebuilt, DialStarted, Suspected,
	// Disconnected, Removed with its RemovalReason, GraceStarted,
	// Recovered, Stalled), on the Monitor's goroutine: it must not block.
	// metrics.Collector.Observe is one (see package metrics).
	Observe func(listener.Event)
}

// NoFlapGrace as Options.FlapGrace removes a member as soon as its
// connection drops.
const NoFlapGrace time.Duration = -1

// DefaultOptions returns options with every default filled in, except
// the ones derived from other options: Ring (OTPApp) and FlapGrace
// (from RemoveAfter) stay zero, so setting OTPApp or RemoveAfter later
// carries them along; Validate fills them in.
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
		o.ManagerName = actors.ManagerName
	}
	if o.MonitorName == "" {
		o.MonitorName = actors.MonitorName
	}
	if o.Engine == nil {
		o.Engine = ring.Consistent()
	}
	def(&o.StartLogEvery, 2*time.Second)
	def(&o.Reconcile, time.Second)
	def(&o.Heartbeat, 500*time.Millisecond)
	def(&o.SuspectAfter, 3*time.Second)
	def(&o.RemoveAfter, 5*time.Second)
	def(&o.DialTimeout, 5*time.Second)
	def(&o.BackoffMin, 50*time.Millisecond)
	def(&o.BackoffMax, time.Second)
	def(&o.DiscoveryInterval, time.Second)
	def(&o.FlapGrace, min(time.Second, o.RemoveAfter/2))
}

// ErrInvalidOption is wrapped by every validation error.
var ErrInvalidOption = errors.New("cloister: invalid option")

func invalid(field string, value interface{}, why string) error {
	return fmt.Errorf("%w %s = %#v: %s", ErrInvalidOption, field, value, why)
}

// Validate applies the defaults and checks every option; the error names
// the first bad option and its value.
func (o *Options) Validate() error {
	o.applyDefaults()
	if !validAtom(o.OTPApp) {
		return invalid("OTPApp", o.OTPApp, "want a non-empty name of letters, digits, '_' or '.'")
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
		if err := ergonode.ValidateName(s); err != nil {
			return invalid(fmt.Sprintf("Sentry[%d]", i), s, "malformed node name, want name@host")
		}
	}
	if o.Service != "" && (strings.ContainsAny(o.Service, " @/:") || strings.HasPrefix(o.Service, ".")) {
		return invalid("Service", o.Service, "want a DNS name such as cloister_test.local")
	}
	if o.DNSServer != "" && !strings.Contains(o.DNSServer, ":") {
		return invalid("DNSServer", o.DNSServer, "want host:port")
	}
	if !validAtom(o.Ring) {
		return invalid("Ring", o.Ring, "want a non-empty name")
	}
	seen := map[string]bool{o.Ring: true}
	for i, g := range o.Groups {
		if !validAtom(g) {
			return invalid(fmt.Sprintf("Groups[%d]", i), g, "want a non-empty name")
		}
		if seen[g] {
			return invalid(fmt.Sprintf("Groups[%d]", i), g, "duplicate ring name")
		}
		seen[g] = true
	}
	for i, c := range o.AdditionalModules {
		if c.Child == nil {
			return invalid(fmt.Sprintf("AdditionalModules[%d]", i), c.Name, "Child is nil")
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

// rings lists the ring names, the default first.
func (o *Options) rings() []string { return append([]string{o.Ring}, o.Groups...) }

func (o *Options) monitorOptions() actors.MonitorOptions {
	var res *discovery.Resolver
	if o.Service != "" {
		res = &discovery.Resolver{Server: o.DNSServer, SRV: o.SRV}
	}
	return actors.MonitorOptions{
		Name: o.MonitorName, OTPApp: o.OTPApp, Consensus: o.Consensus,
		Sentries: o.Sentry, Service: o.Service, Resolver: res, DiscoveryInterval: o.DiscoveryInterval,
		Listener: o.Listener, Heartbeat: o.Heartbeat, SuspectAfter: o.SuspectAfter, RemoveAfter: o.RemoveAfter,
		Reconcile: o.Reconcile, DialTimeout: o.DialTimeout, BackoffMin: o.BackoffMin, BackoffMax: o.BackoffMax,
		FlapGrace: max(o.FlapGrace, 0), Logf: o.Logf, Observe: o.Observe,
	}
}
