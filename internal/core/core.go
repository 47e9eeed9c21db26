// Package core holds the cluster Monitor's decisions as a pure state
// machine: (state, event) → (state, effects). It does no I/O and reads no
// clock: the driver (package actors) feeds it events stamped with the time
// and carries out the effects (dial, probe, disconnect, publish the rings,
// notify the listener). Most Monitor behaviour is tested here without a
// network, as etcd's raft is.
package core

import (
	"hash/fnv"
	"maps"
	"slices"
	"sort"
	"time"

	"github.com/cloister-go/cloister/internal/nodename"
	"github.com/cloister-go/cloister/internal/ringx/hook"
	"github.com/cloister-go/cloister/listener"
)

// State is a Monitor state; the type is public (listener.State) so that
// snapshots, listeners and observers name the same values.
type State = listener.State

// table is the transition table, declared once as the original's FSM
// was. Unexported: Allowed is the only way to read it.
var table = map[State][]State{
	listener.StateDown:       {listener.StateAssembling, listener.StateStopping},
	listener.StateAssembling: {listener.StateRehashing, listener.StateStopping},
	listener.StateRehashing:  {listener.StateReady, listener.StateStopping},
	listener.StateReady:      {listener.StateRehashing, listener.StateStopping},
	listener.StateStopping:   {listener.StateStopped},
}

// Allowed reports whether from → to is declared in the transition table.
func Allowed(from, to State) bool {
	return slices.Contains(table[from], to)
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
	// LinkGap is the longest a live member's link goes without a read
	// (its peer writes a keepalive at least this often; zero: unknown). A
	// read at t then counts as a sign of life at t+LinkGap: a peer frozen
	// at F was last read no earlier than F-LinkGap, so a silence counted
	// from there never starts before the freeze (no member is suspected or
	// removed early) and ends at most LinkGap late. It lets the keepalives
	// be paced by SuspectAfter rather than Heartbeat.
	LinkGap time.Duration
	// WatchNeighbours is k of the neighbour watch (see watch.go): in a
	// steady cluster each member keeps alive and judges only the k
	// members on each side of it in the sorted member list. Zero: every
	// member, always.
	WatchNeighbours int
	// ProbeTimeout: a connected non-member that does not answer a probe in
	// this time is probed again later (it may be a cloister still starting).
	ProbeTimeout time.Duration
	// Reprobe is how often a connected non-member is asked again.
	Reprobe time.Duration
	// Reconcile is how often the driver's view of connected nodes is
	// compared with ours (the safety net for a missed node event): at the
	// first tick after it is due (see NextTick).
	Reconcile time.Duration
	// BackoffMin and BackoffMax bound the re-dial interval of a peer.
	BackoffMin, BackoffMax time.Duration
	// FirstDialGrace: a peer never connected whose name sorts before ours
	// is first dialled only after this wait, counted from when it becomes
	// a dial target: it dials us first (see dialDue). Zero: at once.
	FirstDialGrace time.Duration
	// AssemblyBackoffMax caps the re-dial wait towards a peer never
	// connected whose name sorts after ours, until this node is first
	// ready: a peer still starting is reached soon after it registers,
	// not up to BackoffMax later. Zero: no cap.
	AssemblyBackoffMax time.Duration
	// FlapGrace is the flap guard: a member whose connection drops stays in
	// the rings this long while it is re-dialled. Back (reconnected and
	// answering a probe) within it, the rings do not change at all, instead
	// of a removal and a re-admission; not back, it is removed when the
	// grace ends. Zero removes at once. The heartbeat's removal of a silent
	// member never gets a grace: it already waited RemoveAfter.
	FlapGrace time.Duration
	// Roles and Meta are what this node announces about itself (checked
	// by the caller: CheckRole, CheckMetaValue, MaxRoles, MaxMeta). Roles
	// sorted.
	Roles []string
	Meta  map[string]string
	// ListDeltas: this node tells its list's changes in its pings and
	// pongs to members that take them, and takes theirs (see ListNews).
	// Off, it fetches a changed list whole, as a node before deltas did.
	ListDeltas bool
}

// MaxReported bounds how many member names one peer's reply may add to the
// gossip: a peer that lists a million nodes must not make us dial them.
const MaxReported = 1024

// MaxDialing bounds the dials in flight at once; the others wait for a
// later tick.
const MaxDialing = 64

// BackoffJitterMin is the low end of the factor in [BackoffJitterMin, 1)
// that scales every re-dial wait (see backoff): wide enough that two
// nodes re-dialling each other drift apart within a few attempts.
const BackoffJitterMin = 0.75

// The stall guard: a gap between two ticks of at least StallHeartbeats
// heartbeats, and of at least half of SuspectAfter, means this node itself
// did not run (frozen, suspended, starved), not that its peers were silent.
const StallHeartbeats = 2

// Event is an input of the core: one of the event types below.
type Event interface{ isEvent() }

// Events.
type (
	// Start is the first event. Events before it only record connections:
	// no peer becomes a member until the Monitor has started.
	Start struct{ Now time.Time }
	// Tick drives heartbeats, re-dials and reconciliation. Connected is the
	// node's current connection list when Reconcile is due (nil otherwise).
	// LinkRead is, per peer, when its link last read a byte (nil or absent:
	// unknown): a member whose link carries traffic is alive and is not
	// pinged (see Core.tick).
	Tick struct {
		Now       time.Time
		Connected []string
		LinkRead  map[string]time.Time
	}
	// NodeUp comes from the node's network events.
	NodeUp struct {
		Now  time.Time
		Node string
	}
	// NodeDown comes from the node's network events.
	NodeDown struct {
		Now  time.Time
		Node string
	}
	// DialDone is the outcome of a Dial effect.
	DialDone struct {
		Now  time.Time
		Node string
		Err  error
		// Gone: the failure proves the node process is gone (its name is
		// no longer registered, or nothing listens on its port), not a
		// network problem. It ends a flap grace at once.
		Gone bool
	}
	// ProbeReply is a peer Monitor's answer to a probe. Members are the
	// peer's ring members (gossip: we dial the ones we lack). HasHash: the
	// answer carried Hash, the MembersHash of the peer's members, so the
	// peer is a cloister of ours that answers Ping.
	ProbeReply struct {
		Now     time.Time
		Node    string
		OTPApp  string
		Members []string
		Hash    uint64
		HasHash bool
		// Leaves: the peer takes leave notices (a Go cloister that says so
		// in its answer). Only such peers are sent one: an Elixir cloister
		// would not know the message.
		Leaves bool
		// Leaving: the peer is leaving gracefully (Leave). It is dropped
		// from the rings at once, with reason left, and not admitted again
		// until it answers without the mark (a new run of it).
		Leaving bool
		// Roles and Meta: what the peer announces about itself (none from
		// a BEAM node); bounded here whatever it sent.
		Roles []string
		Meta  map[string]string
		// Deltas: the peer takes ListNews in pings and pongs (a Go
		// cloister that says so in its answer).
		Deltas bool
		// Watch: the peer's WatchNeighbours (0: it watches every member,
		// or does not say). The neighbour watch needs every member to
		// use the same k.
		Watch int
	}
	// Pong is a peer's answer to a Ping: it is alive, and Hash is the
	// MembersHash of its members. News: what it told besides (nil from a
	// peer that takes no deltas).
	Pong struct {
		Now  time.Time
		Node string
		Hash uint64
		News *ListNews
	}
	// PingedBy: a peer's Monitor pinged us, carrying the MembersHash of its
	// members. A member's ping is a heartbeat of its own: it proves the
	// member alive, so this node need not ping it in the same interval.
	// News: as in Pong.
	PingedBy struct {
		Now  time.Time
		Node string
		Hash uint64
		News *ListNews
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
	// Stop runs the orderly shutdown: stopping, then stopped.
	Stop struct{ Now time.Time }
	// Leave starts this node's graceful leave: every member that takes
	// leave notices is sent one (SendLeave) and awaited; this node drops
	// itself from its own rings. LeaveDone follows once every one of them
	// acknowledged, or went away.
	Leave struct{ Now time.Time }
	// LeaveNotice: Node says it is leaving. The notice is only a hint,
	// since anyone connected could send one: the core probes Node, and its
	// own answer (ProbeReply.Leaving) decides; then the leave is
	// acknowledged (AckLeave).
	LeaveNotice struct {
		Now  time.Time
		Node string
	}
	// LeaveAck: Node acknowledged this node's leave (its listener heard
	// the change).
	LeaveAck struct {
		Now  time.Time
		Node string
	}
	// Join adds Node as a peer at run time: dialled, re-dialled and kept
	// like a listed sentry.
	Join struct {
		Now  time.Time
		Node string
	}
	// SuspectNotice: member From suspects Node, which it last heard at
	// LastSeen (see SendSuspect). This node watches every member for a
	// while, and judges Node from LastSeen.
	SuspectNotice struct {
		Now      time.Time
		From     string
		Node     string
		LastSeen time.Time
	}
)

// ListNews is what a ping or pong between two nodes that take list deltas
// (Config.ListDeltas, ProbeReply.Deltas) carries besides the sender's
// MembersHash, so that a changed list is not fetched whole (a state call
// and an answer of N names, from every member, at every change while a
// cluster forms):
//
//   - Have is the MembersHash of the receiver's list as the sender holds
//     it (HasHave false: it holds none), so that the receiver's next delta
//     starts from there;
//   - Added and Removed are the names the sender's list gained and lost
//     since the list of it the receiver was last known to hold (see
//     Core.News). Both empty: nothing to tell, or a list the sender no
//     longer remembers.
//
// The receiver applies them to the list of the sender it holds and keeps
// the result only if its MembersHash is the sender's: a delta from a base
// other than the one it holds (crossed messages, a lost one) or a hash
// collision in the set operations cannot go unnoticed. Otherwise it
// fetches the list whole, as without deltas.
type ListNews struct {
	Have           uint64
	HasHave        bool
	Added, Removed []string
}

func (Start) isEvent()         {}
func (Tick) isEvent()          {}
func (NodeUp) isEvent()        {}
func (NodeDown) isEvent()      {}
func (DialDone) isEvent()      {}
func (ProbeReply) isEvent()    {}
func (ProbedBy) isEvent()      {}
func (Pong) isEvent()          {}
func (PingedBy) isEvent()      {}
func (Discovered) isEvent()    {}
func (Stop) isEvent()          {}
func (Leave) isEvent()         {}
func (LeaveNotice) isEvent()   {}
func (LeaveAck) isEvent()      {}
func (Join) isEvent()          {}
func (SuspectNotice) isEvent() {}

// Effect is an output of the core: one of the effect types below, carried
// out by the driver in order. Effects lists one value of every type, so a
// test can prove a driver handles them all.
type Effect interface{ isEffect() }

// Effects.
type (
	// Transition moves the machine; the listener is told. One step may
	// make several (down → assembling → rehashing → ready), in order.
	Transition struct{ From, To State }
	// Dial connects to a node (off the Monitor's goroutine, with a deadline);
	// the result comes back as DialDone.
	Dial struct{ Node string }
	// Probe asks the node's Monitor for its state; the answer comes back as
	// ProbeReply (no answer: nothing comes back).
	Probe struct{ Node string }
	// Ping is the heartbeat of a member that answers pings (a cloister of
	// ours whose state answer carried a members hash): a small request
	// carrying MembersHash, answered with the peer's; the answer comes back
	// as Pong. A different hash is followed by a Probe for the peer's list.
	Ping struct{ Node string }
	// Disconnect drops the link to a member the heartbeat found silent for
	// RemoveAfter, so that a thawed peer rejoins through the normal path.
	Disconnect struct{ Node string }
	// Publish rebuilds the rings from the sorted member list. Roles maps
	// each member with roles to its roles, for the role-restricted rings
	// (see WithRole); a member absent from it has none.
	Publish struct {
		Members []string
		Roles   map[string][]string
	}
	// Suspect reports a member silent for SuspectAfter (logged, counted).
	Suspect struct {
		Node    string
		Silence time.Duration
	}
	// Grace reports a member whose connection dropped: it stays in the
	// rings for For (the flap guard) while it is re-dialled.
	Grace struct {
		Node string
		For  time.Duration
	}
	// Recovered reports a member back within its grace, After the drop: the
	// rings did not change.
	Recovered struct {
		Node  string
		After time.Duration
	}
	// Removed reports a member leaving the rings, and why.
	Removed struct {
		Node   string
		Reason listener.RemovalReason
	}
	// Stalled reports that this node's own ticks stopped for For (the
	// process was frozen, suspended or starved): the peers' silence in that
	// time says nothing about them, so every member gets a fresh heartbeat
	// window instead of being removed at once.
	Stalled struct{ For time.Duration }
	// SendLeave tells member Node that this node is leaving; its
	// acknowledgement comes back as LeaveAck.
	SendLeave struct{ Node string }
	// AckLeave acknowledges Node's leave, once this node's listener has
	// heard the change (the driver waits for that).
	AckLeave struct{ Node string }
	// LeaveDone: this node's leave is over: every member sent a notice
	// acknowledged it or went away (Missing lists the latter).
	LeaveDone struct{ Missing []string }
	// SendSuspect tells each member of To that this node suspects Node,
	// last heard at LastSeen (a neighbour's suspicion, see watch.go). It
	// travels as Silent, how long before the notice that was, so the
	// receivers' clocks need not agree with ours.
	SendSuspect struct {
		Node     string
		LastSeen time.Time
		Silent   time.Duration
		To       []string
	}
)

func (Transition) isEffect()  {}
func (Dial) isEffect()        {}
func (Probe) isEffect()       {}
func (Ping) isEffect()        {}
func (Disconnect) isEffect()  {}
func (Publish) isEffect()     {}
func (Suspect) isEffect()     {}
func (Grace) isEffect()       {}
func (Recovered) isEffect()   {}
func (Removed) isEffect()     {}
func (Stalled) isEffect()     {}
func (SendLeave) isEffect()   {}
func (AckLeave) isEffect()    {}
func (LeaveDone) isEffect()   {}
func (SendSuspect) isEffect() {}

// Effects returns a zero value of every effect type (for tests that prove
// a driver or observer handles each one).
func Effects() []Effect {
	return []Effect{Transition{}, Dial{}, Probe{}, Ping{}, Disconnect{}, Publish{}, Suspect{}, Grace{}, Recovered{}, Removed{}, Stalled{}, SendLeave{}, AckLeave{}, LeaveDone{}, SendSuspect{}}
}

type peer struct {
	connected bool
	member    bool
	sentry    bool // listed or discovered
	// gossip: reported as a member by some member
	gossip bool

	dialing  bool
	failures int
	nextDial time.Time
	// met: it was connected once and the link dropped (see down); a peer
	// not met yet is a first contact (see dialDue, redial).
	met      bool
	lastSeen time.Time // last sign of life: an answer, a ping, a read on its link
	// heard is lastSeen without the fresh windows the neighbour watch
	// gives (see watch.go): what was really heard, here or reported.
	heard     time.Time
	probeSent time.Time // outstanding probe (zero: none)
	// probeBack: the peer asked us while our probe was outstanding; it is
	// probed again then unless our probe's answer came first (see
	// probedBy). Zero: none due.
	probeBack time.Time
	suspect   bool
	reported  []string
	// pings: the peer answers Ping (its state answer carried a hash);
	// hash is the last MembersHash it sent.
	pings bool
	hash  uint64
	// listHash is the MembersHash of the state answer that brought
	// reported (hasList: one did). A ping or pong with that hash tells
	// nothing new about the peer's list, so it is not fetched again.
	listHash uint64
	hasList  bool
	// list is the peer's whole list of hash listHash, sorted, its own
	// name included (reported is it sanitized): the base its deltas
	// apply to.
	list []string
	// deltas: it takes ListNews (its state answer said so). has is the
	// MembersHash of our list it holds (hasHas: known), from its own
	// news, or what our last delta or state answer gave it.
	deltas bool
	has    uint64
	hasHas bool
	// told is the MembersHash this node last sent the peer (in a ping or
	// a pong), at toldAt: a member that agreed with us is pinged once
	// when our hash changes, even if its link carries traffic.
	told   uint64
	toldAt time.Time
	// roles and meta: what the peer announced in its last state answer.
	roles []string
	meta  map[string]string
	// awaySince: a member whose connection dropped, kept in the rings
	// under the flap guard since then (zero: not away).
	awaySince time.Time

	// leaves: its answers say it takes leave notices.
	leaves bool
	// left: it left gracefully; not admitted again, and not dialled unless
	// listed, until it answers without the leaving mark.
	left bool
	// ackLeave: it sent a leave notice; acknowledge once its answer
	// confirms it.
	ackLeave bool
	// joined: added at run time (Join); stays a sentry whatever DNS says.
	joined bool
	// watch: the peer's WatchNeighbours (ProbeReply.Watch); neighbour:
	// it is one of this node's k neighbours in the member list.
	watch     int
	neighbour bool
	// watched: judged at the last update of the watch (updateWatch).
	watched bool
}

// inRing: a member that is connected, or away within its flap grace.
func (p *peer) inRing() bool { return p.member && (p.connected || !p.awaySince.IsZero()) }

// Core is the Monitor's data. Use New; feed Step.
type Core struct {
	cfg           Config
	state         State
	peers         map[string]*peer
	members       []string            // sorted, includes self
	hash          uint64              // MembersHash of members
	roles         map[string][]string // rolesOf(members)
	lastHeartbeat time.Time
	// batch: remove leaves setting the members to its caller (several
	// removals in one change)
	batch         bool
	lastReconcile time.Time
	lastTick      time.Time
	discovered    bool
	// wasReady: this node has been ready once (assembly is over; see
	// AssemblyBackoffMax).
	wasReady bool

	// leaving: Leave was asked; awaiting lists the members whose
	// acknowledgement is still due, missing those that went away first.
	leaving   bool
	leaveDone bool
	awaiting  map[string]bool
	missing   []string

	// history: our last lists, newest last, to build deltas from (see
	// News); at most listHistory.
	history []listVersion
	// deltasApplied and deltaMisses count the members' deltas that gave
	// their list and those that did not (see ListStats).
	deltasApplied, deltaMisses int
	// The neighbour watch (watch.go). narrow: only the neighbours are
	// kept alive and judged; fullUntil: every member is, until then.
	narrow    bool
	fullUntil time.Time
}

// listVersion is one of our past lists and its MembersHash.
type listVersion struct {
	hash    uint64
	members []string
}

// listHistory bounds the past lists a node remembers: a member whose
// list of ours is older is sent no delta and fetches ours whole. While a
// cluster forms a node's list changes about once per member joining, and
// members are told every change within a heartbeat.
const listHistory = 32

// New returns a core in state Down.
func New(cfg Config) *Core {
	c := &Core{cfg: cfg, state: listener.StateDown, peers: map[string]*peer{}}
	for _, s := range cfg.Sentries {
		if s != cfg.Self {
			c.peer(s).sentry = true
		}
	}
	c.members = []string{cfg.Self}
	c.hash = MembersHash(c.members)
	c.roles = c.rolesOf(c.members)
	c.remember()
	return c
}

// MembersHash is the 64-bit FNV-1a hash of a sorted member list, each name
// length-prefixed (the hash a ring snapshot of these members reports).
// Peers compare it to tell, from one number, whether their lists agree.
func MembersHash(members []string) uint64 { return hook.MembersHash(members) }

// MembersHash is the hash of Members (see the function MembersHash).
func (c *Core) MembersHash() uint64 { return c.hash }

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

// SelfIsSentry reports whether this node is listed among its sentries.
func (c *Core) SelfIsSentry() bool {
	for _, s := range c.cfg.Sentries {
		if s == c.cfg.Self {
			return true
		}
	}
	return false
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
// A step may make several transitions (down → assembling → rehashing →
// ready); each is a Transition effect, in order, and each is allowed by the
// table, so a driver sees every state entered and left without feeding
// anything back.
func (c *Core) Step(ev Event) []Effect {
	var fx []Effect
	switch e := ev.(type) {
	case Start:
		if c.state != listener.StateDown {
			return nil
		}
		// The stall guard's clock starts now, not at the first tick: a
		// node frozen before that tick must still notice it was frozen.
		c.lastTick = e.Now
		fx = c.to(fx, listener.StateAssembling)
		// Peers that connected (or answered) before the start are asked
		// again: only now may they become members.
		for _, n := range sortedKeys(c.peers) {
			if p := c.peers[n]; p.connected {
				fx = append(fx, Probe{n})
				p.probeSent = e.Now
			}
		}
		fx = c.dialDue(fx, e.Now)
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
	case NodeDown:
		fx = c.down(fx, e.Node, e.Now, true)
	case DialDone:
		p := c.peer(e.Node)
		p.dialing = false
		if e.Err != nil {
			p.failures++
			p.nextDial = e.Now.Add(c.redial(e.Node, p))
			if e.Gone && !p.awaySince.IsZero() && !p.connected {
				// A killed node is not a flap: leave the rings now.
				old := c.hash
				fx = c.remove(fx, e.Node, listener.RemovedGone)
				c.agreeAfterGone(old)
				// Its process is dead: a new one dials its sentries and
				// members when it starts. Re-dialled at the longest
				// backoff from now on, not from the shortest: each
				// survivor's re-dials (an EPMD lookup each) would come
				// 50-400 ms after the removal, on the survivors still
				// noticing it.
				p.failures = max(p.failures, goneFailures)
				p.nextDial = e.Now.Add(c.redial(e.Node, p))
			}
		} else if !p.connected {
			// NodeUp normally arrives as well; treat success as up either way.
			p.connected, p.failures = true, 0
			fx = append(fx, Probe{e.Node})
			p.probeSent = e.Now
		}
	case ProbeReply:
		fx = c.reply(fx, e)
	case ProbedBy:
		if e.Node == c.cfg.Self {
			return nil
		}
		fx = c.probedBy(fx, e.Node, e.Now)
	case Pong:
		fx = c.pong(fx, e)
	case PingedBy:
		fx = c.pinged(fx, e)
	case Discovered:
		fx = c.discover(fx, e)
	case Stop:
		if c.state == listener.StateStopping || c.state == listener.StateStopped {
			return nil
		}
		fx = c.to(fx, listener.StateStopping)
	case Leave:
		fx = c.leave(fx)
	case LeaveNotice:
		fx = c.leaveNotice(fx, e)
	case LeaveAck:
		if c.awaiting[e.Node] {
			delete(c.awaiting, e.Node)
		}
	case Join:
		fx = c.join(fx, e)
	case SuspectNotice:
		fx = c.suspectNotice(fx, e)
	}
	fx = c.leaveProgress(fx)
	return c.settle(fx)
}

// settle follows the transitions that need no event of their own:
// assembling → rehashing once a sentry is reachable, rehashing → ready
// with consensus, stopping → stopped.
func (c *Core) settle(fx []Effect) []Effect {
	for {
		switch {
		case c.state == listener.StateAssembling && c.assembled():
			fx = c.to(fx, listener.StateRehashing)
			fx = append(fx, Publish{Members: c.members, Roles: c.roles})
		case c.state == listener.StateRehashing && len(c.members) >= c.cfg.Consensus:
			fx = c.to(fx, listener.StateReady)
		case c.state == listener.StateStopping:
			fx = c.to(fx, listener.StateStopped)
		default:
			return fx
		}
	}
}

func (c *Core) to(fx []Effect, s State) []Effect {
	if s == c.state || !Allowed(c.state, s) {
		// Unreachable by construction; the fuzz target checks it.
		panic("core: undeclared transition " + string(c.state) + " -> " + string(s))
	}
	fx = append(fx, Transition{From: c.state, To: s})
	c.state = s
	if s == listener.StateReady {
		c.wasReady = true
	}
	return fx
}

// active reports whether the Monitor runs (started and not stopping):
// only then do peers become members and do silences count.
func (c *Core) active() bool {
	switch c.state {
	case listener.StateAssembling, listener.StateRehashing, listener.StateReady:
		return true
	}
	return false
}

// assembled reports whether assembling may end: a sentry is reachable
// (this node when listed, a connected sentry, or in service mode a DNS
// answer).
func (c *Core) assembled() bool {
	if c.SelfIsSentry() || (c.cfg.Service && c.discovered) {
		return true
	}
	for _, p := range c.peers {
		if p.sentry && p.connected {
			return true
		}
	}
	return false
}

// setMembers recomputes the member list; on a change it publishes and, from
// ready, re-enters rehashing.
func (c *Core) setMembers(fx []Effect) []Effect {
	ms := []string{c.cfg.Self}
	if c.leaving {
		ms = ms[:0] // a leaving node hands all its keys over
	}
	for n, p := range c.peers {
		if p.inRing() {
			ms = append(ms, n)
		}
	}
	sort.Strings(ms)
	roles := c.rolesOf(ms)
	if slices.Equal(ms, c.members) && maps.EqualFunc(roles, c.roles, slices.Equal) {
		return fx
	}
	if !slices.Equal(ms, c.members) {
		c.members = ms
		c.hash = MembersHash(ms)
		c.remember()
	}
	c.roles = roles
	c.neighbours()
	switch c.state {
	case listener.StateReady:
		fx = c.to(fx, listener.StateRehashing)
		fx = append(fx, Publish{Members: ms, Roles: roles})
	default:
		fx = append(fx, Publish{Members: ms, Roles: roles})
	}
	return fx
}

// down handles a lost connection. A member gets the flap grace when grace
// is allowed and FlapGrace is set: it stays in the rings while it is
// re-dialled. Otherwise, or when already away, it leaves the rings now
// (an away member keeps its first deadline).
func (c *Core) down(fx []Effect, n string, now time.Time, grace bool) []Effect {
	p := c.peers[n]
	if p == nil || n == c.cfg.Self {
		return fx
	}
	wasMember := p.inRing()
	p.connected = false
	p.met = true
	p.probeSent, p.probeBack = time.Time{}, time.Time{}
	p.hasHas = false // a new run of it holds no list of ours
	p.dialing = false
	// Re-dial a lost sentry, gossiped or away member promptly, then back off
	// (jittered: both ends of a dropped link re-dial, see backoff).
	p.failures = 0
	p.nextDial = now.Add(c.backoff(n, 1))
	if !p.awaySince.IsZero() {
		return fx // still within its grace; tick ends it
	}
	if wasMember && grace && c.cfg.FlapGrace > 0 && c.active() {
		p.awaySince = now
		p.suspect = true
		fx = append(fx, Grace{Node: n, For: c.cfg.FlapGrace})
		// Re-dial at once: a flapping link comes back, a killed node's
		// dial fails as Gone and ends the grace (see DialDone).
		p.dialing = true
		return append(fx, Dial{n})
	}
	reason := listener.RemovedConnectionLost
	if !grace {
		reason = listener.RemovedSilent
	}
	return c.remove(fx, n, reason)
}

// remove takes a peer out of the rings (it stays known, to be re-dialled
// when it is a sentry or gossiped).
func (c *Core) remove(fx []Effect, n string, reason listener.RemovalReason) []Effect {
	p := c.peers[n]
	wasMember := p.member
	p.member, p.suspect = false, false
	p.awaySince = time.Time{}
	p.reported = nil
	if wasMember {
		fx = append(fx, Removed{Node: n, Reason: reason})
	}
	if c.batch {
		return fx // the caller sets the members once for the batch
	}
	fx = c.setMembers(fx)
	c.refreshGossip()
	return fx
}

// goneFailures is the failure count a member proven gone is re-dialled
// with: enough doublings of BackoffMin to reach BackoffMax by default.
const goneFailures = 6

// agreeAfterGone: this node's list changed from hash old by the removal
// of a member whose process is gone. Every member linked to it lost that
// link too and removes it as well, so a member that agreed with us, and
// knew it, is taken to agree still and is not told: otherwise every
// survivor of a kill pings every other one, N² pings and pongs on the
// heels of the removal that compete for the CPU with the survivors still
// noticing it. A member whose list turns out otherwise has a hash we did
// not tell it, and its own heartbeat pings us (see tick).
func (c *Core) agreeAfterGone(old uint64) {
	if c.hash == old {
		return
	}
	for _, p := range c.peers {
		if p.steady() && p.hash == old && p.told == old {
			// As if its pong of our new hash had come: its list is ours,
			// and it holds ours (the dead member no longer gossiped).
			p.hash, p.told = c.hash, c.hash
			p.list, p.listHash, p.hasList = c.members, c.hash, true
			p.reported = sanitize(nil, c.members, c.cfg.Self)
			if p.hasHas && p.has == old {
				p.has = c.hash
			}
		}
	}
	c.refreshGossip()
}

func (c *Core) reply(fx []Effect, e ProbeReply) []Effect {
	if e.Node == c.cfg.Self {
		return fx
	}
	p := c.peer(e.Node)
	p.probeSent, p.probeBack = time.Time{}, time.Time{}
	p.seen(e.Now)
	p.suspect = false
	p.leaves = e.Leaves
	if e.Leaving {
		return c.peerLeaving(fx, e.Node, p)
	}
	p.left = false
	if !c.active() || (c.leaving && !p.member) {
		// Before the start or while stopping nobody joins: Start probes
		// again whoever is connected.
		p.connected = true
		return fx
	}
	if e.OTPApp != c.cfg.OTPApp {
		// A cloister for another application: connected, never a member.
		p.connected = true
		if p.member {
			fx = c.remove(fx, e.Node, listener.RemovedForeign)
		}
		return fx
	}
	p.pings, p.hash = e.HasHash, e.Hash
	p.listHash, p.hasList = e.Hash, e.HasHash
	p.deltas = e.Deltas && c.cfg.ListDeltas
	p.list = nil
	if e.HasHash {
		p.list = e.Members
		if !slices.IsSorted(p.list) {
			p.list = slices.Sorted(slices.Values(p.list))
		}
	}
	p.watch = e.Watch
	reported := sanitize(nil, e.Members, c.cfg.Self)
	roles, meta := sanitizeRoles(e.Roles), sanitizeMeta(e.Meta)
	if p.member && p.connected && p.awaySince.IsZero() && slices.Equal(reported, p.reported) &&
		slices.Equal(roles, p.roles) && maps.Equal(meta, p.meta) {
		return fx // nothing new: the tick's dialDue covers backoffs that ran out
	}
	// Roles travel with membership: they are known before the member
	// joins any ring, so every node builds its role rings alike.
	p.roles, p.meta = roles, meta
	p.connected = true
	if !p.awaySince.IsZero() {
		fx = append(fx, Recovered{Node: e.Node, After: e.Now.Sub(p.awaySince)})
		p.awaySince = time.Time{}
	}
	p.member = true
	p.reported = reported
	fx = c.setMembers(fx)
	c.refreshGossip()
	// Full mesh: dial every member the peer knows and we lack.
	return c.dialDue(fx, e.Now)
}

// probedBy: a peer's Monitor asked us for our state. Unless it is a member
// in good standing, it is a cloister to probe back (it may have asked
// before its own Monitor was registered).
func (c *Core) probedBy(fx []Effect, n string, now time.Time) []Effect {
	p := c.peer(n)
	if p.member && p.awaySince.IsZero() {
		return fx
	}
	p.connected = true
	if p.probeSent.IsZero() {
		fx = append(fx, Probe{n})
		p.probeSent = now
		return fx
	}
	// Ours is outstanding. It may have reached the peer before its
	// Monitor was registered, and is then lost (waiting for ProbeTimeout
	// or Reprobe held up every assembly that raced so): probed again
	// probeBackEvery from now. Usually it was not lost: the peer asked us
	// on its own NodeUp, then answers ours on the same link, and the
	// answer cancels the second probe (two state answers per pair that
	// meet, not three or four). A peer calling in a loop does not move
	// the deadline.
	if p.probeBack.IsZero() {
		p.probeBack = now.Add(c.probeBackEvery())
	}
	return fx
}

// probeBackEvery bounds how often a peer that asks us is probed back.
func (c *Core) probeBackEvery() time.Duration { return c.cfg.Heartbeat / 5 }

// seen records a sign of life at t. lastSeen never moves back: a link
// read counts LinkGap ahead (see Config.LinkGap), so an answer may come
// before it.
func (p *peer) seen(t time.Time) {
	if t.After(p.lastSeen) {
		p.lastSeen = t
	}
	if t.After(p.heard) {
		p.heard = t
	}
}

// steady reports whether p is a member in good standing that answers
// pings: its liveness is all a ping or pong can tell about it.
func (p *peer) steady() bool {
	return p.member && p.connected && p.awaySince.IsZero() && p.pings
}

// probeFor asks a peer whose hash differs from ours for its list, one
// probe at a time.
func (c *Core) probeFor(fx []Effect, n string, p *peer, now time.Time) []Effect {
	if p.probeSent.IsZero() || now.Sub(p.probeSent) >= c.cfg.ProbeTimeout {
		fx = append(fx, Probe{n})
		p.probeSent = now
	}
	return fx
}

// pong: a member answered a ping. Alive; a different list is fetched.
func (c *Core) pong(fx []Effect, e Pong) []Effect {
	p := c.peers[e.Node]
	if p == nil || e.Node == c.cfg.Self {
		return fx
	}
	p.probeSent = time.Time{}
	if !p.steady() {
		// Away, removed or foreign since the ping: the full answer decides.
		return c.probeFor(fx, e.Node, p, e.Now)
	}
	p.seen(e.Now)
	p.suspect, p.hash = false, e.Hash
	return c.learnList(fx, e.Node, p, e.Hash, e.News, e.Now)
}

// knownList reports whether the peer's list with MembersHash h is the one
// its last state answer brought. While an assembly changes every list,
// each ping round that follows a change of ours would otherwise fetch
// again, from every member whose list still differs from ours, the list
// we already have: a state call and an answer of N names per member.
// Members it names that we lack are dialled from that answer (dialDue
// keeps them due), and it learns ours from our own ping.
func (p *peer) knownList(h uint64) bool { return p.hasList && p.listHash == h }

// pinged: a peer's heartbeat. From a member in good standing it counts as
// an answer (alive); from anyone else it is a cloister asking, as ProbedBy.
func (c *Core) pinged(fx []Effect, e PingedBy) []Effect {
	if e.Node == c.cfg.Self {
		return fx
	}
	p := c.peer(e.Node)
	// Our pong carries our hash.
	p.told, p.toldAt = c.hash, e.Now
	if !p.steady() {
		return c.probedBy(fx, e.Node, e.Now)
	}
	p.seen(e.Now)
	p.suspect, p.hash = false, e.Hash
	return c.learnList(fx, e.Node, p, e.Hash, e.News, e.Now)
}

// learnList takes what a member's ping or pong told of its list, of
// MembersHash h: nothing to do when we hold that list or it is ours, the
// list its delta yields when that one has hash h, else a fetch of the
// whole list (see ListNews).
func (c *Core) learnList(fx []Effect, n string, p *peer, h uint64, news *ListNews, now time.Time) []Effect {
	told := news != nil && p.deltas // news from a member that takes deltas
	if told {
		p.has, p.hasHas = news.Have, news.HasHave
	}
	switch {
	case p.knownList(h):
		return fx
	case h == c.hash:
		// Its list is ours: held now without a fetch, as the base of its
		// next delta.
		return c.setList(fx, n, p, c.members, h, now)
	case told && p.hasList && len(news.Added)+len(news.Removed) > 0:
		if list, ok := applyDelta(p.list, news.Added, news.Removed); ok && MembersHash(list) == h {
			c.deltasApplied++
			return c.setList(fx, n, p, list, h, now)
		}
		c.deltaMisses++
	case told:
		c.deltaMisses++
	}
	return c.probeFor(fx, n, p, now)
}

// setList makes list (sorted, of hash h) member n's list, as a state
// answer carrying it would (see reply): its names are dial targets.
func (c *Core) setList(fx []Effect, n string, p *peer, list []string, h uint64, now time.Time) []Effect {
	old := p.reported
	p.list, p.listHash, p.hasList = list, h, true
	p.reported = sanitize(nil, list, c.cfg.Self)
	if !p.inRing() {
		return fx
	}
	if subset(old, p.reported) {
		// A list that only grew (the usual change while a cluster
		// forms): its new names become targets, none stops being one.
		for _, r := range p.reported {
			c.peer(r).gossip = true
		}
	} else {
		c.refreshGossip()
	}
	return c.dialDue(fx, now)
}

// subset reports whether every name of a (sorted) is in b (sorted).
func subset(a, b []string) bool {
	for _, x := range a {
		i, ok := slices.BinarySearch(b, x)
		if !ok {
			return false
		}
		b = b[i+1:]
	}
	return true
}

// applyDelta returns (base \ removed) ∪ added, sorted, base being sorted;
// false when that is more names than any list is taken with.
func applyDelta(base, added, removed []string) ([]string, bool) {
	if len(base)+len(added) > 4*MaxReported || len(removed) > 4*MaxReported {
		return nil, false
	}
	out := make([]string, 0, len(base)+len(added))
	for _, n := range base {
		if !slices.Contains(removed, n) {
			out = append(out, n)
		}
	}
	for _, n := range added {
		if _, found := slices.BinarySearch(out, n); !found {
			out = slices.Insert(out, sort.SearchStrings(out, n), n)
		}
	}
	return out, true
}

// remember appends our list to the history (see News).
func (c *Core) remember() {
	if len(c.history) == listHistory {
		c.history = slices.Delete(c.history, 0, 1)
	}
	c.history = append(c.history, listVersion{c.hash, c.members})
}

// News returns what our next ping or pong to n carries besides our hash
// (see ListNews), or nil when n takes no deltas. The delta runs from the
// list of ours that n was last known to hold, and n is assumed to apply
// it: the next one runs from our current list, unless n's own news says
// otherwise. A list no longer in the history gets no delta: n fetches
// ours whole, as it does when the delta does not give it.
func (c *Core) News(n string) *ListNews {
	p := c.peers[n]
	if p == nil || !p.deltas {
		return nil
	}
	news := &ListNews{Have: p.listHash, HasHave: p.hasList}
	if !p.hasHas || p.has == c.hash {
		return news
	}
	for i := len(c.history) - 1; i >= 0; i-- {
		if v := c.history[i]; v.hash == p.has {
			news.Added, news.Removed = diff(c.members, v.members), diff(v.members, c.members)
			p.has = c.hash
			break
		}
	}
	return news
}

// Answered notes that node n was sent our state answer (our whole list):
// it holds our current list, the base of the delta it is sent next.
func (c *Core) Answered(n string) {
	if p := c.peers[n]; p != nil {
		p.has, p.hasHas = c.hash, true
	}
}

// diff returns the names of a (sorted) not in b (sorted).
func diff(a, b []string) []string {
	var out []string
	for _, x := range a {
		if _, ok := slices.BinarySearch(b, x); !ok {
			out = append(out, x)
		}
	}
	return out
}

// ListStats counts the members' deltas that gave their list and those
// that did not (the list was fetched whole instead), since New.
func (c *Core) ListStats() (applied, missed int) { return c.deltasApplied, c.deltaMisses }

// sanitize appends to dst the well-formed, distinct names of src (self
// excluded), at most MaxReported of them.
func sanitize(dst, src []string, self string) []string {
	seen := make(map[string]bool, min(len(src), MaxReported))
	for _, n := range src {
		if len(dst) >= MaxReported {
			break
		}
		if n == self || seen[n] || !ValidName(n) {
			continue
		}
		seen[n] = true
		dst = append(dst, n)
	}
	return dst
}

// ValidName reports whether n may be a node name under the one rule
// every part of cloister uses (nodename.Check): a peer that reports a
// malformed name has it dropped here rather than failing a dial later.
func ValidName(n string) bool { return nodename.Check(n) == nil }

// refreshGossip marks as dial targets the nodes our members report.
func (c *Core) refreshGossip() {
	want := map[string]bool{}
	for _, p := range c.peers {
		if p.inRing() {
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

func (c *Core) discover(fx []Effect, e Discovered) []Effect {
	c.discovered = true
	in := map[string]bool{}
	for _, n := range e.Peers {
		in[n] = true
	}
	for n, p := range c.peers {
		p.sentry = (in[n] && n != c.cfg.Self) || p.joined
	}
	for n := range in {
		if n != c.cfg.Self {
			c.peer(n).sentry = true
		}
	}
	// A member in its flap grace whose address has left the service's
	// answer is gone (a killed container or pod), not flapping.
	for _, n := range sortedKeys(c.peers) {
		if p := c.peers[n]; !in[n] && !p.awaySince.IsZero() && !p.connected {
			fx = c.remove(fx, n, listener.RemovedGone)
		}
	}
	return c.dialDue(fx, e.Now)
}

// dialWanted: a peer to dial once its backoff runs out (a lost sentry,
// gossiped or away member; not one that left, unless listed).
func (p *peer) dialWanted() bool {
	return !p.connected && !p.dialing && (p.sentry || p.gossip || !p.awaySince.IsZero()) && !(p.left && !p.sentry)
}

// dialDue emits Dial for every wanted, unconnected peer whose backoff ran out.
func (c *Core) dialDue(fx []Effect, now time.Time) []Effect {
	if !c.active() || c.leaving {
		return fx
	}
	dialing := 0
	for _, p := range c.peers {
		if p.dialing {
			dialing++
		}
	}
	// Sorted: a deterministic effect order.
	for _, n := range c.due(func(p *peer) bool { return p.dialWanted() && !now.Before(p.nextDial) }) {
		p := c.peers[n]
		if c.letDialFirst(n, p) {
			// Scheduled for the end of the grace (NextTick wakes us).
			p.nextDial = now.Add(c.cfg.FirstDialGrace)
			continue
		}
		if dialing >= MaxDialing {
			break
		}
		p.dialing = true
		dialing++
		fx = append(fx, Dial{n})
	}
	return fx
}

// AwaitsGone reports whether a failed dial of n should tell whether n's
// process is gone (DialDone.Gone): only for a member in its flap grace,
// whose grace a gone process ends. Finding out costs the driver a second
// EPMD lookup per failed dial, which every other dial is spared.
func (c *Core) AwaitsGone(n string) bool {
	p := c.peers[n]
	return p != nil && !p.awaySince.IsZero()
}

// letDialFirst: n is a first contact, never scheduled, whose name sorts
// before ours, so it is left the first dial for FirstDialGrace. Each pair
// of nodes that know each other is then dialled once, by the lower name,
// as a raw Ergo full mesh does: half the dials and EPMD lookups of both
// ends dialling, and no two dials crossing (Ergo's handshake has no
// simultaneous-connect rule, see backoff). After the grace we dial anyway:
// a BEAM node, or one that does not list us, never dials us. A peer added
// by Join is dialled at once (an operator asked for it).
func (c *Core) letDialFirst(n string, p *peer) bool {
	return c.cfg.FirstDialGrace > 0 && !p.met && !p.joined && p.failures == 0 &&
		p.nextDial.IsZero() && n < c.cfg.Self
}

// redial is the wait before the next dial of peer after a failed one: the
// backoff, capped at AssemblyBackoffMax while this node assembles for a
// first contact whose name sorts after ours (we owe it the first dial,
// see letDialFirst). Peers start together: one that is not registered
// yet is then re-dialled soon after it is, instead of up to BackoffMax
// later. A peer met before, and every peer once this node was ready, gets
// the full backoff: a name that is really gone costs little.
func (c *Core) redial(peer string, p *peer) time.Duration {
	limit := c.cfg.BackoffMax
	if c.cfg.AssemblyBackoffMax > 0 && !c.wasReady && !p.met && peer > c.cfg.Self {
		limit = min(limit, c.cfg.AssemblyBackoffMax)
	}
	return c.backoffUpTo(peer, p.failures, limit)
}

func (c *Core) tick(fx []Effect, e Tick) []Effect {
	if !c.active() {
		return fx
	}
	now := e.Now
	if !c.lastTick.IsZero() {
		if gap := now.Sub(c.lastTick); gap >= c.stallAfter() {
			fx = c.stalled(fx, now, gap)
		}
	}
	c.lastTick = now
	if e.Connected != nil {
		c.lastReconcile = now
		fx = c.reconcile(fx, e)
	}
	c.linkReads(now, e.LinkRead)
	for _, n := range c.due(func(p *peer) bool { return !p.probeBack.IsZero() && !now.Before(p.probeBack) }) {
		p := c.peers[n]
		p.probeBack = time.Time{}
		if p.connected && !p.probeSent.IsZero() {
			fx = append(fx, Probe{n})
			p.probeSent = now
		}
	}
	c.updateWatch(now)
	if now.Sub(c.lastHeartbeat) >= c.cfg.Heartbeat {
		c.lastHeartbeat = now
		for _, n := range sortedKeys(c.peers) {
			p := c.peers[n]
			if !p.connected {
				continue
			}
			switch {
			case p.steady() && p.hash == c.hash:
				// Lists agree: a small ping, and none at all to a member
				// heard from within the interval (its link read something,
				// it pinged us, or it answered our last ping), unless it
				// has not been told our hash since it changed. A pair
				// whose links carry traffic (the keepalive of an idle
				// one) exchanges no message at all.
				// Nor to a member outside the neighbour watch.
				if (now.Sub(p.lastSeen) < c.cfg.Heartbeat || !c.judged(p)) && p.told == c.hash {
					continue
				}
				fx = c.ping(fx, n, p, now)
			case p.steady() && (p.told != c.hash || now.Sub(p.toldAt) >= c.cfg.SuspectAfter):
				// Lists differ and the member may not know ours: a ping
				// carries our hash both ways (the pong fetches its list
				// when they still differ). Asked again now and then, so
				// that a lost ping cannot leave it believing we agree.
				fx = c.ping(fx, n, p, now)
			case p.steady():
				// Lists differ and the member knows ours. Its list came
				// with its ping, pong or delta; fetched whole only when it
				// did not (at most one per ProbeTimeout). A state call
				// every heartbeat to each such member, while a cluster
				// forms, was the largest share of its state answers.
				// Not heard within the interval: a ping.
				switch {
				case !p.knownList(p.hash):
					fx = c.probeFor(fx, n, p, now)
				case now.Sub(p.lastSeen) >= c.cfg.Heartbeat:
					fx = c.ping(fx, n, p, now)
				}
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
	// Silence of members: suspect, then remove and disconnect. Removals
	// wait for members about to fall silent too (see holdRemovals).
	hold := c.holdRemovals(now)
	var gone []string
	for _, n := range c.due(func(p *peer) bool {
		return p.member && p.connected && c.judged(p) && (now.Sub(p.lastSeen) >= c.cfg.RemoveAfter ||
			now.Sub(p.lastSeen) >= c.cfg.SuspectAfter && !p.suspect)
	}) {
		p := c.peers[n]
		silent := now.Sub(p.lastSeen)
		if silent >= c.cfg.RemoveAfter {
			if !hold {
				gone = append(gone, n)
			}
			continue
		}
		if silent >= c.cfg.SuspectAfter && !p.suspect {
			p.suspect = true
			fx = append(fx, Suspect{Node: n, Silence: silent})
			fx = c.suspected(fx, n, p, now)
		}
	}
	// A suspicion ends the narrow watch at once (see suspected).
	c.updateWatch(now)
	if len(gone) > 0 {
		// one change of the member list for all of them
		c.batch = true
		for _, n := range gone {
			fx = append(fx, Disconnect{n})
			fx = c.down(fx, n, now, false)
		}
		c.batch = false
		fx = c.setMembers(fx)
		c.refreshGossip()
	}
	// Flap grace over: a member not reconnected leaves the rings (with the
	// others whose graces end with it, see holdRemovals); one reconnected
	// but not yet answering is the heartbeat's to judge.
	holdGrace := c.holdGraces(now)
	gone = gone[:0]
	for _, n := range c.due(func(p *peer) bool {
		return !p.awaySince.IsZero() && now.Sub(p.awaySince) >= c.cfg.FlapGrace
	}) {
		p := c.peers[n]
		if p.connected {
			p.awaySince = time.Time{}
			p.suspect = false
			continue
		}
		if !holdGrace {
			gone = append(gone, n)
		}
	}
	if len(gone) > 0 {
		c.batch = true
		for _, n := range gone {
			fx = c.remove(fx, n, listener.RemovedGraceExpired)
		}
		c.batch = false
		fx = c.setMembers(fx)
		c.refreshGossip()
	}
	c.collect()
	return c.dialDue(fx, now)
}

// ping sends member n a Ping, which carries our hash.
func (c *Core) ping(fx []Effect, n string, p *peer, now time.Time) []Effect {
	p.told, p.toldAt = c.hash, now
	if p.probeSent.IsZero() {
		p.probeSent = now
	}
	return append(fx, Ping{n})
}

// linkReads takes a read on a member's link as a sign of life: the peer's
// process ran then (a frozen one writes nothing), and counts it LinkGap
// later (see Config.LinkGap). A suspicion ends as with an answer.
func (c *Core) linkReads(now time.Time, reads map[string]time.Time) {
	for n, at := range reads {
		if at.After(now) {
			at = now // another clock's idea of now: no later than ours
		}
		at = at.Add(c.cfg.LinkGap)
		p := c.peers[n]
		if p == nil || !p.member || !p.connected {
			continue
		}
		if at.After(p.heard) {
			p.heard = at
		}
		if !at.After(p.lastSeen) {
			continue
		}
		p.lastSeen, p.suspect = at, false
	}
}

// NextTick is when a Tick next has work to do: the next heartbeat a peer
// needs (see heartbeatDue), a member's suspicion or removal (as far as the
// last sign of life known tells), the end of a flap grace, a re-dial. The
// driver ticks then, and also on a slower clock of its own (the stall
// guard and the keepalives); in a steady cluster whose members are heard
// on their links, only on that clock. Reconciliation, a safety net, is not
// a deadline: it rides the first tick after it is due (ReconcileDue), so
// it wakes nobody up. Zero when not running.
func (c *Core) NextTick() time.Time {
	if !c.active() {
		return time.Time{}
	}
	next := c.heartbeatDue()
	earlier := func(t time.Time) {
		if t.Before(next) {
			next = t
		}
	}
	for _, p := range c.peers {
		if p.member && p.connected && c.judged(p) {
			if !p.suspect {
				earlier(p.lastSeen.Add(c.cfg.SuspectAfter))
			}
			earlier(p.lastSeen.Add(c.cfg.RemoveAfter))
		}
		if !p.awaySince.IsZero() {
			earlier(p.awaySince.Add(c.cfg.FlapGrace))
		}
		if !p.probeBack.IsZero() {
			earlier(p.probeBack)
		}
		if !c.leaving && p.dialWanted() {
			earlier(p.nextDial)
		}
	}
	return next
}

// heartbeatDue is when the heartbeat of Core.tick next has something to
// send: a heartbeat after the last one at the soonest, and no sooner than
// a peer needs a ping or a probe (by the rules of Core.tick). Members heard
// on their links need none, so a steady cluster's ticks are not driven by
// the heartbeat at all.
func (c *Core) heartbeatDue() time.Time {
	first := c.lastHeartbeat.Add(c.cfg.Heartbeat)
	due := time.Time{}
	for _, p := range c.peers {
		if !p.connected {
			continue
		}
		var at time.Time
		switch {
		case p.steady() && p.hash == c.hash:
			if p.told != c.hash {
				return first
			}
			if !c.judged(p) {
				continue // outside the neighbour watch: never pinged
			}
			at = p.lastSeen.Add(c.cfg.Heartbeat)
		case p.steady():
			if p.told != c.hash || !p.knownList(p.hash) {
				return first
			}
			at = p.toldAt.Add(c.cfg.SuspectAfter)
			if heard := p.lastSeen.Add(c.cfg.Heartbeat); heard.Before(at) {
				at = heard
			}
		case p.member || p.probeSent.IsZero():
			return first
		default:
			at = p.probeSent.Add(c.cfg.Reprobe)
		}
		if due.IsZero() || at.Before(due) {
			due = at
		}
	}
	if due.IsZero() || due.Before(first) {
		return first
	}
	return due
}

// StallAfter is the gap between two ticks that the stall guard takes for
// this node having been stalled (see stallAfter).
func (c *Core) StallAfter() time.Duration { return c.stallAfter() }

// removeBatch bounds how long a removal for silence waits for other
// members whose silence is about to reach RemoveAfter as well.
func (c *Core) removeBatch() time.Duration { return c.cfg.Heartbeat / 2 }

// holdRemovals tells whether this tick's removals for silence should wait.
// Members cut off at the same moment (a partition, a switch) were last
// heard at slightly different times (each link's last keepalive or answer),
// so their deadlines are up to half a heartbeat apart; removed one per tick,
// they would cost the rings one change each, and a node left with exactly
// Consensus members for a moment would go ready and back. So the removals
// wait, at most removeBatch past the first deadline, for every member whose
// own deadline falls within that window: all go in one change. No member is
// ever removed before RemoveAfter of silence.
func (c *Core) holdRemovals(now time.Time) bool {
	return c.hold(now, func(p *peer) (time.Time, bool) {
		return p.lastSeen.Add(c.cfg.RemoveAfter), p.member && p.connected && c.judged(p)
	})
}

// holdGraces is holdRemovals for flap graces that end (links that closed
// together, at a partition that rejects, ended their graces together).
func (c *Core) holdGraces(now time.Time) bool {
	return c.hold(now, func(p *peer) (time.Time, bool) {
		return p.awaySince.Add(c.cfg.FlapGrace), !p.awaySince.IsZero() && !p.connected
	})
}

// hold: some deadline has passed, less than removeBatch ago, and another
// one comes before the first plus removeBatch.
func (c *Core) hold(now time.Time, deadline func(*peer) (time.Time, bool)) bool {
	var first time.Time
	for _, p := range c.peers {
		if d, ok := deadline(p); ok && !d.After(now) && (first.IsZero() || d.Before(first)) {
			first = d
		}
	}
	if first.IsZero() {
		return false
	}
	for _, p := range c.peers {
		if d, ok := deadline(p); ok && d.After(now) && d.Before(first.Add(c.removeBatch())) {
			return true
		}
	}
	return false
}

// stallAfter is the gap between two ticks (the driver ticks every few tens
// of milliseconds) that means this node itself was stalled: the larger of
// SuspectAfter/2 and StallHeartbeats heartbeats.
func (c *Core) stallAfter() time.Duration {
	return max(c.cfg.SuspectAfter/2, StallHeartbeats*c.cfg.Heartbeat)
}

// stalled restarts the clocks that ran while this node could not answer
// or hear: members get a fresh heartbeat window, away members a fresh
// grace. A peer that really left is noticed by its connection closing, or
// by the heartbeat RemoveAfter later.
func (c *Core) stalled(fx []Effect, now time.Time, gap time.Duration) []Effect {
	for _, n := range sortedKeys(c.peers) {
		p := c.peers[n]
		if p.member && p.connected {
			p.seen(now)
			p.probeSent = time.Time{}
			p.suspect = false
		}
		if !p.awaySince.IsZero() {
			p.awaySince = now
		}
	}
	return append(fx, Stalled{For: gap})
}

// collect forgets peers nobody wants any more (not connected, not a member,
// not listed, not gossiped, no dial or probe outstanding), so the table
// does not grow with every name ever seen.
func (c *Core) collect() {
	for n, p := range c.peers {
		if !p.connected && !p.member && !p.sentry && !p.gossip && !p.dialing &&
			p.awaySince.IsZero() && p.probeSent.IsZero() {
			delete(c.peers, n)
		}
	}
}

// due returns, sorted, the peers for which f holds: the tick runs every
// few tens of milliseconds and usually finds none, so it neither sorts nor
// allocates then.
func (c *Core) due(f func(*peer) bool) []string {
	var out []string
	for n, p := range c.peers {
		if f(p) {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// reconcile corrects our view with the node's real connection list.
func (c *Core) reconcile(fx []Effect, e Tick) []Effect {
	real := map[string]bool{}
	for _, n := range e.Connected {
		real[n] = true
	}
	for _, n := range sortedKeys(c.peers) {
		p := c.peers[n]
		if p.connected && !real[n] {
			fx = c.down(fx, n, e.Now, true)
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

// backoff is the wait before re-dialling peer after failures failed dials:
// BackoffMin doubling up to BackoffMax, scaled by a factor in [0.75, 1)
// drawn from (this node, peer, failures). Ergo's handshake has no
// simultaneous-connect rule (it always answers "ok"): two nodes dialling
// each other at once each keep their own outgoing link and close the
// other's, and both links die. Without the jitter two nodes that lost each
// other at the same moment (a thaw, a healed cut) would re-dial in
// lockstep; the factor is a hash, not a random draw, so the core stays a
// pure function and tests are exact.
func (c *Core) backoff(peer string, failures int) time.Duration {
	return c.backoffUpTo(peer, failures, c.cfg.BackoffMax)
}

// backoffUpTo is backoff with limit in place of BackoffMax.
func (c *Core) backoffUpTo(peer string, failures int, limit time.Duration) time.Duration {
	d := c.cfg.BackoffMin
	for i := 1; i < failures && d < limit; i++ {
		d *= 2
	}
	if d > limit {
		d = limit
	}
	h := fnv.New64a()
	h.Write([]byte(c.cfg.Self))
	h.Write([]byte{0})
	h.Write([]byte(peer))
	h.Write([]byte{byte(failures), byte(failures >> 8)})
	frac := float64(h.Sum64()>>11) / (1 << 53) // [0, 1)
	return time.Duration(float64(d) * (BackoffJitterMin + (1-BackoffJitterMin)*frac))
}

func sortedKeys(m map[string]*peer) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Leaving reports whether this node is leaving (Leave was stepped).
func (c *Core) Leaving() bool { return c.leaving }

// leave starts this node's graceful leave (see Leave).
func (c *Core) leave(fx []Effect) []Effect {
	if c.leaving || !c.active() {
		return fx
	}
	c.leaving = true
	c.awaiting = map[string]bool{}
	for _, n := range sortedKeys(c.peers) {
		p := c.peers[n]
		if p.member && p.connected && p.leaves {
			c.awaiting[n] = true
			fx = append(fx, SendLeave{Node: n})
		}
	}
	return c.setMembers(fx)
}

// leaveProgress ends the leave once no acknowledgement is due: members
// that went away (link down, removed) are not waited for.
func (c *Core) leaveProgress(fx []Effect) []Effect {
	if !c.leaving || c.leaveDone {
		return fx
	}
	for _, n := range sortedKeys(c.peers) {
		if p := c.peers[n]; c.awaiting[n] && !(p.connected && p.member) {
			delete(c.awaiting, n)
			c.missing = append(c.missing, n)
		}
	}
	for n := range c.awaiting {
		if c.peers[n] == nil {
			delete(c.awaiting, n)
			c.missing = append(c.missing, n)
		}
	}
	if len(c.awaiting) > 0 {
		return fx
	}
	c.leaveDone = true
	sort.Strings(c.missing)
	return append(fx, LeaveDone{Missing: c.missing})
}

// leaveNotice probes the node that says it leaves: its own answer decides.
func (c *Core) leaveNotice(fx []Effect, e LeaveNotice) []Effect {
	p := c.peers[e.Node]
	if p == nil || e.Node == c.cfg.Self || !p.connected {
		return fx
	}
	p.ackLeave = true
	p.probeSent = e.Now
	return append(fx, Probe{e.Node})
}

// peerLeaving handles an answer carrying the leaving mark: out of the
// rings at once (no grace, no suspicion), not admitted again, and the
// leave acknowledged if the peer asked.
func (c *Core) peerLeaving(fx []Effect, n string, p *peer) []Effect {
	p.connected = true
	p.left = true
	p.awaySince = time.Time{}
	if p.member {
		fx = c.remove(fx, n, listener.RemovedLeft)
	}
	if p.ackLeave {
		p.ackLeave = false
		fx = append(fx, AckLeave{Node: n})
	}
	return fx
}

// join adds a peer at run time, kept like a listed sentry.
func (c *Core) join(fx []Effect, e Join) []Effect {
	if e.Node == c.cfg.Self || !ValidName(e.Node) {
		return fx
	}
	p := c.peer(e.Node)
	p.sentry, p.joined, p.left = true, true, false
	p.nextDial = time.Time{}
	return c.dialDue(fx, e.Now)
}
