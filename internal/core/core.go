// Package core holds the cluster Monitor's decisions as a pure state
// machine: (state, event) → (state, effects). It does no I/O and reads no
// clock: the driver (package actors) feeds it events stamped with the time
// and carries out the effects (dial, probe, disconnect, publish the rings,
// notify the listener). Most Monitor behaviour is tested here without a
// network, as etcd's raft is.
package core

import (
	"sort"
	"time"
)

// State is a Monitor state, named as the original's.
type State string

// The Monitor states (SPEC §4).
const (
	Down       State = "down"
	Assembling State = "assembling"
	Rehashing  State = "rehashing"
	Ready      State = "ready"
	Stopping   State = "stopping"
	Stopped    State = "stopped"
)

// Table is the transition table, declared once as the original's FSM was.
var Table = map[State][]State{
	Down:       {Assembling, Stopping},
	Assembling: {Rehashing, Stopping},
	Rehashing:  {Ready, Stopping},
	Ready:      {Rehashing, Stopping},
	Stopping:   {Stopped},
}

// Allowed reports whether from → to is declared.
func Allowed(from, to State) bool {
	for _, s := range Table[from] {
		if s == to {
			return true
		}
	}
	return false
}

// Config is what the core needs to decide; durations are already defaulted.
type Config struct {
	Self      string
	OTPApp    string
	Consensus int
	// Sentries are the statically listed peers (may include Self). With
	// service discovery they arrive later as Discovered events.
	Sentries []string
	// Service is true when sentries come from DNS: assembling then waits for
	// the first answer instead of the static list.
	Service bool
	// Heartbeat is how often members are probed; SuspectAfter and
	// RemoveAfter are the silences after which a member is suspected and
	// then removed (and disconnected).
	Heartbeat    time.Duration
	SuspectAfter time.Duration
	RemoveAfter  time.Duration
	// ProbeTimeout: a connected non-member that does not answer a probe in
	// this time is probed again later (it may be a cloister still starting).
	ProbeTimeout time.Duration
	// Reprobe is how often a connected non-member is asked again.
	Reprobe time.Duration
	// Reconcile is how often the driver's view of connected nodes is
	// compared with ours (the safety net for a missed node event).
	Reconcile time.Duration
	// BackoffMin and BackoffMax bound the re-dial interval of a peer.
	BackoffMin, BackoffMax time.Duration
}

// Events.
type (
	// Start is the first event.
	Start struct{ Now time.Time }
	// Tick drives heartbeats, re-dials and reconciliation. Connected is the
	// node's current connection list when Reconcile is due (nil otherwise).
	Tick struct {
		Now       time.Time
		Connected []string
	}
	// NodeUp and NodeDown come from the node's network events.
	NodeUp struct {
		Now  time.Time
		Node string
	}
	NodeDown struct {
		Now  time.Time
		Node string
	}
	// DialDone is the outcome of a Dial effect.
	DialDone struct {
		Now  time.Time
		Node string
		Err  error
	}
	// ProbeReply is a peer Monitor's answer to a probe. Members are the
	// peer's ring members (gossip: we dial the ones we lack).
	ProbeReply struct {
		Now     time.Time
		Node    string
		OTPApp  string
		Members []string
	}
	// ProbedBy: a peer's Monitor asked us; it is a cloister, so probe it
	// back (it may have asked before its own Monitor was registered).
	ProbedBy struct {
		Now  time.Time
		Node string
	}
	// Discovered replaces the DNS-derived sentry list.
	Discovered struct {
		Now   time.Time
		Peers []string
	}
	// Continue is the internal follow-up of a rehash (see the Continue effect).
	Continue struct{ Now time.Time }
	// Stop begins an orderly shutdown.
	Stop struct{ Now time.Time }
)

// Effects.
type (
	// Transition moves the machine; Notify goes with it to the listener.
	Transition struct{ From, To State }
	// Dial connects to a node (off the Monitor's goroutine, with a deadline);
	// the result comes back as DialDone.
	Dial struct{ Node string }
	// Probe asks the node's Monitor for its state; the answer comes back as
	// ProbeReply (no answer: nothing comes back).
	Probe struct{ Node string }
	// Disconnect drops the link to a node removed by the heartbeat, so that
	// a thawed peer rejoins through the normal path.
	Disconnect struct{ Node string }
	// Publish rebuilds the rings from the sorted member list.
	Publish struct{ Members []string }
	// Suspect reports a member silent for SuspectAfter (logged, counted).
	Suspect struct {
		Node    string
		Silence time.Duration
	}
	// Continue asks the driver to feed a Continue event next: a rehash is a
	// state of its own, entered and then left (ready → rehashing → ready).
	ContinueEffect struct{}
)

type peer struct {
	connected bool
	member    bool
	sentry    bool // listed or discovered
	// gossip: reported as a member by some member
	gossip bool

	dialing   bool
	failures  int
	nextDial  time.Time
	lastSeen  time.Time // last probe reply
	probeSent time.Time // outstanding probe (zero: none)
	suspect   bool
	reported  []string
}

// Core is the Monitor's data. Use New; feed Step.
type Core struct {
	cfg           Config
	state         State
	peers         map[string]*peer
	members       []string // sorted, includes self
	lastHeartbeat time.Time
	lastReconcile time.Time
	discovered    bool
}

// New returns a core in state Down.
func New(cfg Config) *Core {
	c := &Core{cfg: cfg, state: Down, peers: map[string]*peer{}}
	for _, s := range cfg.Sentries {
		if s != cfg.Self {
			c.peer(s).sentry = true
		}
	}
	c.members = []string{cfg.Self}
	return c
}

// State is the current state.
func (c *Core) State() State { return c.state }

// Members is the sorted member list (self included). Do not modify it.
func (c *Core) Members() []string { return c.members }

// Suspects lists members currently suspected, sorted.
func (c *Core) Suspects() []string {
	var out []string
	for n, p := range c.peers {
		if p.suspect && p.member {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// Connected lists peers we believe connected, sorted.
func (c *Core) Connected() []string {
	var out []string
	for n, p := range c.peers {
		if p.connected {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// SelfIsSentry reports whether this node is listed among its sentries.
func (c *Core) SelfIsSentry() bool {
	for _, s := range c.cfg.Sentries {
		if s == c.cfg.Self {
			return true
		}
	}
	return false
}

// Missing lists the sentries not yet members, for "what was missing" errors.
func (c *Core) Missing() []string {
	var out []string
	for n, p := range c.peers {
		if p.sentry && !p.member {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

func (c *Core) peer(n string) *peer {
	p := c.peers[n]
	if p == nil {
		p = &peer{}
		c.peers[n] = p
	}
	return p
}

// Step applies one event and returns the effects to carry out, in order.
// One step makes at most one transition: a chain (down → assembling →
// rehashing → ready) goes through ContinueEffect, so a driver built on a
// gen_statem-style behaviour sees each state entered and left.
func (c *Core) Step(ev interface{}) []interface{} {
	var fx []interface{}
	switch e := ev.(type) {
	case Start:
		if c.state != Down {
			return nil
		}
		fx = c.to(fx, Assembling)
		fx = c.dialDue(fx, e.Now)
		fx = append(fx, ContinueEffect{})
	case Tick:
		fx = c.tick(fx, e)
	case NodeUp:
		if e.Node == c.cfg.Self {
			return nil
		}
		p := c.peer(e.Node)
		p.connected, p.dialing, p.failures = true, false, 0
		fx = append(fx, Probe{e.Node})
		p.probeSent = e.Now
		fx = c.maybeAssembled(fx)
	case NodeDown:
		fx = c.down(fx, e.Node, e.Now)
	case DialDone:
		p := c.peer(e.Node)
		p.dialing = false
		if e.Err != nil {
			p.failures++
			p.nextDial = e.Now.Add(c.backoff(p.failures))
		} else {
			// NodeUp normally arrives as well; treat success as up either way.
			if !p.connected {
				p.connected, p.failures = true, 0
				fx = append(fx, Probe{e.Node})
				p.probeSent = e.Now
			}
			fx = c.maybeAssembled(fx)
		}
	case ProbeReply:
		fx = c.reply(fx, e)
	case ProbedBy:
		if e.Node == c.cfg.Self {
			return nil
		}
		p := c.peer(e.Node)
		if !p.member {
			p.connected = true
			fx = append(fx, Probe{e.Node})
			p.probeSent = e.Now
		}
	case Discovered:
		fx = c.discover(fx, e)
	case Continue:
		switch {
		case c.state == Assembling:
			fx = c.maybeAssembled(fx)
		case c.state == Rehashing && len(c.members) >= c.cfg.Consensus:
			fx = c.to(fx, Ready)
		case c.state == Stopping:
			fx = c.to(fx, Stopped)
		}
	case Stop:
		if c.state == Stopping || c.state == Stopped {
			return nil
		}
		fx = c.to(fx, Stopping)
		fx = append(fx, ContinueEffect{})
	}
	return fx
}

func (c *Core) to(fx []interface{}, s State) []interface{} {
	if s == c.state || !Allowed(c.state, s) {
		return fx
	}
	fx = append(fx, Transition{From: c.state, To: s})
	c.state = s
	return fx
}

// maybeAssembled leaves assembling once a sentry is reachable: this node
// when listed, a connected sentry, or (service mode) a DNS answer.
func (c *Core) maybeAssembled(fx []interface{}) []interface{} {
	if c.state != Assembling {
		return fx
	}
	ok := c.SelfIsSentry() || (c.cfg.Service && c.discovered)
	for _, p := range c.peers {
		if p.sentry && p.connected {
			ok = true
		}
	}
	if !ok {
		return fx
	}
	fx = c.to(fx, Rehashing)
	fx = append(fx, Publish{Members: c.members})
	return append(fx, ContinueEffect{})
}

// setMembers recomputes the member list; on a change it publishes and, from
// ready, re-enters rehashing.
func (c *Core) setMembers(fx []interface{}) []interface{} {
	ms := []string{c.cfg.Self}
	for n, p := range c.peers {
		if p.member && p.connected {
			ms = append(ms, n)
		}
	}
	sort.Strings(ms)
	if equal(ms, c.members) {
		return fx
	}
	c.members = ms
	switch c.state {
	case Ready:
		fx = c.to(fx, Rehashing)
		fx = append(fx, Publish{Members: ms}, ContinueEffect{})
	case Rehashing:
		fx = append(fx, Publish{Members: ms}, ContinueEffect{})
	default:
		fx = append(fx, Publish{Members: ms})
	}
	return fx
}

func (c *Core) down(fx []interface{}, n string, now time.Time) []interface{} {
	p := c.peers[n]
	if p == nil || n == c.cfg.Self {
		return fx
	}
	p.connected, p.member, p.suspect = false, false, false
	p.probeSent = time.Time{}
	p.reported = nil
	p.dialing = false
	// Re-dial a lost sentry or gossiped member promptly, then back off.
	p.failures = 0
	p.nextDial = now.Add(c.cfg.BackoffMin)
	fx = c.setMembers(fx)
	c.refreshGossip()
	return fx
}

func (c *Core) reply(fx []interface{}, e ProbeReply) []interface{} {
	if e.Node == c.cfg.Self {
		return fx
	}
	p := c.peer(e.Node)
	p.probeSent = time.Time{}
	p.lastSeen = e.Now
	if p.suspect {
		p.suspect = false
	}
	if e.OTPApp != c.cfg.OTPApp {
		// A cloister for another application: connected, never a member.
		p.connected = true
		if p.member {
			p.member = false
			fx = c.setMembers(fx)
		}
		return fx
	}
	p.connected = true
	p.member = true
	p.reported = append(p.reported[:0], e.Members...)
	fx = c.setMembers(fx)
	c.refreshGossip()
	// Full mesh: dial every member the peer knows and we lack.
	return c.dialDue(fx, e.Now)
}

// refreshGossip marks as dial targets the nodes our members report.
func (c *Core) refreshGossip() {
	want := map[string]bool{}
	for _, p := range c.peers {
		if p.member && p.connected {
			for _, r := range p.reported {
				want[r] = true
			}
		}
	}
	for n, p := range c.peers {
		p.gossip = want[n]
		delete(want, n)
	}
	for n := range want {
		if n != c.cfg.Self {
			c.peer(n).gossip = true
		}
	}
}

func (c *Core) discover(fx []interface{}, e Discovered) []interface{} {
	c.discovered = true
	in := map[string]bool{}
	for _, n := range e.Peers {
		in[n] = true
	}
	for n, p := range c.peers {
		p.sentry = in[n] && n != c.cfg.Self
	}
	for n := range in {
		if n != c.cfg.Self {
			c.peer(n).sentry = true
		}
	}
	fx = c.dialDue(fx, e.Now)
	return c.maybeAssembled(fx)
}

// dialDue emits Dial for every wanted, unconnected peer whose backoff ran out.
func (c *Core) dialDue(fx []interface{}, now time.Time) []interface{} {
	if c.state == Stopping || c.state == Stopped || c.state == Down {
		return fx
	}
	names := make([]string, 0, len(c.peers))
	for n := range c.peers {
		names = append(names, n)
	}
	sort.Strings(names) // deterministic effect order
	for _, n := range names {
		p := c.peers[n]
		if p.connected || p.dialing || !(p.sentry || p.gossip) {
			continue
		}
		if now.Before(p.nextDial) {
			continue
		}
		p.dialing = true
		fx = append(fx, Dial{n})
	}
	return fx
}

func (c *Core) tick(fx []interface{}, e Tick) []interface{} {
	if c.state == Down || c.state == Stopping || c.state == Stopped {
		return fx
	}
	now := e.Now
	if e.Connected != nil {
		c.lastReconcile = now
		fx = c.reconcile(fx, e)
	}
	if now.Sub(c.lastHeartbeat) >= c.cfg.Heartbeat {
		c.lastHeartbeat = now
		names := make([]string, 0, len(c.peers))
		for n := range c.peers {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			p := c.peers[n]
			if !p.connected {
				continue
			}
			switch {
			case p.member:
				fx = append(fx, Probe{n})
				if p.probeSent.IsZero() {
					p.probeSent = now
				}
			case p.probeSent.IsZero() || now.Sub(p.probeSent) >= c.cfg.Reprobe:
				fx = append(fx, Probe{n})
				p.probeSent = now
			}
		}
	}
	// Silence of members: suspect, then remove and disconnect.
	for _, n := range c.sortedMembers() {
		p := c.peers[n]
		silent := now.Sub(p.lastSeen)
		if silent >= c.cfg.RemoveAfter {
			fx = append(fx, Disconnect{n})
			fx = c.down(fx, n, now)
			continue
		}
		if silent >= c.cfg.SuspectAfter && !p.suspect {
			p.suspect = true
			fx = append(fx, Suspect{Node: n, Silence: silent})
		}
	}
	return c.dialDue(fx, now)
}

func (c *Core) sortedMembers() []string {
	var out []string
	for n, p := range c.peers {
		if p.member && p.connected {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// reconcile corrects our view with the node's real connection list.
func (c *Core) reconcile(fx []interface{}, e Tick) []interface{} {
	real := map[string]bool{}
	for _, n := range e.Connected {
		real[n] = true
	}
	for _, n := range sortedKeys(c.peers) {
		p := c.peers[n]
		if p.connected && !real[n] {
			fx = c.down(fx, n, e.Now)
		}
	}
	for _, n := range e.Connected {
		if n == c.cfg.Self {
			continue
		}
		if p := c.peer(n); !p.connected {
			p.connected, p.dialing = true, false
			fx = append(fx, Probe{n})
			p.probeSent = e.Now
		}
	}
	return fx
}

// ReconcileDue tells the driver whether the next Tick should carry the
// connection list.
func (c *Core) ReconcileDue(now time.Time) bool {
	return now.Sub(c.lastReconcile) >= c.cfg.Reconcile
}

func (c *Core) backoff(failures int) time.Duration {
	d := c.cfg.BackoffMin
	for i := 1; i < failures && d < c.cfg.BackoffMax; i++ {
		d *= 2
	}
	if d > c.cfg.BackoffMax {
		d = c.cfg.BackoffMax
	}
	return d
}

func sortedKeys(m map[string]*peer) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
