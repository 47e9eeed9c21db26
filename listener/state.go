package listener

import "time"

// State is a state of the cluster Monitor, named as the original's states.
// Its string form is what /status, logs and BEAM peers see.
type State string

// The Monitor's states. A node starts Down, assembles its first members,
// rebuilds its rings in Rehashing and serves in Ready; every change of
// members passes through Rehashing again. An orderly stop goes through
// Stopping to Stopped.
const (
	StateDown       State = "down"
	StateAssembling State = "assembling"
	StateRehashing  State = "rehashing"
	StateReady      State = "ready"
	StateStopping   State = "stopping"
	StateStopped    State = "stopped"
)

// Event is something the Monitor decided or did, for observers (metrics,
// tests, audit logs): set Options.Observe to receive them. The set of
// events is closed: it is one of the types of this file, switch on them
// by type. An observer runs on the Monitor's goroutine: it must not block
// (count, copy, hand over).
type Event interface{ isEvent() }

// Transition is a change of the Monitor's state.
type Transition struct{ From, To State }

// RingsRebuilt: the member list changed and every ring was rebuilt for
// Members (sorted, this node included).
type RingsRebuilt struct{ Members []string }

// DialStarted: the Monitor started connecting to Node.
type DialStarted struct{ Node string }

// Suspected: member Node has not answered a heartbeat for Silence.
type Suspected struct {
	Node    string
	Silence time.Duration
}

// Disconnected: member Node stayed silent for RemoveAfter; it is removed
// and its connection dropped, so that it rejoins the normal way if it
// comes back.
type Disconnected struct{ Node string }

// Removed: member Node left the rings, for Reason.
type Removed struct {
	Node   string
	Reason RemovalReason
}

// GraceStarted: the connection to member Node dropped; it stays in the
// rings For the flap grace while it is re-dialled.
type GraceStarted struct {
	Node string
	For  time.Duration
}

// Recovered: member Node came back within its flap grace, After the drop;
// the rings did not change.
type Recovered struct {
	Node  string
	After time.Duration
}

// Stalled: this node's own Monitor did not run For (the process was
// frozen, suspended or starved); every member got a fresh heartbeat window.
type Stalled struct{ For time.Duration }

// LeaveSent: this node, leaving, told member Node so and awaits its
// acknowledgement.
type LeaveSent struct{ Node string }

// LeaveAcked: member Node left gracefully; this node's listener heard the
// change and Node was told.
type LeaveAcked struct{ Node string }

// LeaveDone: this node's leave is over; every member told acknowledged it
// except Missing, which went away first.
type LeaveDone struct{ Missing []string }

func (LeaveSent) isEvent()    {}
func (LeaveAcked) isEvent()   {}
func (LeaveDone) isEvent()    {}
func (Transition) isEvent()   {}
func (RingsRebuilt) isEvent() {}
func (DialStarted) isEvent()  {}
func (Suspected) isEvent()    {}
func (Disconnected) isEvent() {}
func (Removed) isEvent()      {}
func (GraceStarted) isEvent() {}
func (Recovered) isEvent()    {}
func (Stalled) isEvent()      {}

// RemovalReason says why a member left the rings. Its value is a short
// label: metrics use it as is.
type RemovalReason string

// Why a member left the rings.
const (
	// RemovedSilent: no heartbeat answer for RemoveAfter.
	RemovedSilent RemovalReason = "silent"
	// RemovedConnectionLost: its connection dropped and no flap grace
	// applies.
	RemovedConnectionLost RemovalReason = "connection_lost"
	// RemovedGraceExpired: its connection dropped and it was not back
	// within the flap grace.
	RemovedGraceExpired RemovalReason = "grace_expired"
	// RemovedForeign: it now answers as a cloister of another OTP
	// application.
	RemovedForeign RemovalReason = "foreign"
	// RemovedGone: in its flap grace, a re-dial or the service's DNS answer
	// proved its process gone (a killed node), so it did not wait.
	RemovedGone RemovalReason = "gone"
	// RemovedLeft: it left gracefully (Leave): dropped at once, with no
	// flap grace and no suspicion.
	RemovedLeft RemovalReason = "left"
)
