// Package listener defines how user code hears about cluster state changes.
//
// The original Cloister.Listener ran inside the state machine, so a slow or
// panicking listener froze the cluster, and it was told only the state being
// left. Here a Listener gets the old state, the new state and a snapshot, on
// a goroutine of its own, in order; a panic is recovered and logged.
//
// The package also names what an observer sees: the Monitor's State values
// and its decisions as typed Events (Transition, RingsRebuilt, Removed with
// its RemovalReason, ...), delivered to Options.Observe.
package listener

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/cloister-go/cloister/ring"
)

// Flags describe this node at the moment of a snapshot.
type Flags struct {
	// Alive: the Monitor is running (false only in stopping/stopped).
	Alive bool `json:"alive"`
	// Clustered: at least one other member is connected.
	Clustered bool `json:"clustered"`
	// Sentry: this node is one of its own sentries.
	Sentry bool `json:"sentry"`
}

// Ring is one named ring in a snapshot.
type Ring struct {
	Members []string `json:"members"`
	// Epoch counts this node's rebuilds of the ring; it differs between nodes.
	Epoch uint64 `json:"epoch"`
	// Hash identifies the member set; equal on every node with equal members.
	Hash uint64 `json:"hash"`
	// Shares is each member's fraction (0..1) of the key-hash space.
	Shares map[string]float64 `json:"shares,omitempty"`
}

// Snapshot is the Monitor's view at one moment. It is a value: listeners may
// keep it.
type Snapshot struct {
	Node      string          `json:"node"`
	OTPApp    string          `json:"otp_app"`
	State     State           `json:"state"`
	Consensus int             `json:"consensus"`
	Members   []string        `json:"members"`
	Rings     map[string]Ring `json:"rings"`
	Connected []string        `json:"connected"`
	Suspects  []string        `json:"suspects,omitempty"`
	// Roles maps each member that announced roles to them (sorted); a
	// member absent has none (a BEAM node, or a node without roles).
	Roles map[string][]string `json:"roles,omitempty"`
	// Meta maps each member that announced metadata to it.
	Meta  map[string]map[string]string `json:"meta,omitempty"`
	Flags Flags                        `json:"flags"`
	At    time.Time                    `json:"at"`
	// Transitions are this node's latest state changes, oldest first, at
	// most 32 of them.
	Transitions []Change `json:"transitions,omitempty"`
	// RingChanges, in a snapshot handed to a Listener, lists for each ring
	// whose members changed since the previous snapshot handed to it the
	// key-hash ranges this node gained and lost: the state to fetch and to
	// hand over, without looking at every key. Published snapshots
	// (Cluster.Snapshot, /status) leave it empty.
	RingChanges []RingChange `json:"ring_changes,omitempty"`
	// Leaving: this node is leaving the cluster (Leave).
	Leaving bool `json:"leaving,omitempty"`
}

// RingChange is what this node gained and lost in one ring: the key-hash
// ranges (see ring.View.KeyHash) it owns now and did not own before,
// and those it owned and no longer does. Epoch is the ring's epoch now.
type RingChange struct {
	Ring   string           `json:"ring"`
	Epoch  uint64           `json:"epoch"`
	Gained []ring.HashRange `json:"gained,omitempty"`
	Lost   []ring.HashRange `json:"lost,omitempty"`
}

// Ready reports whether the snapshot's state is StateReady.
func (s Snapshot) Ready() bool { return s.State == StateReady }

// Listener is told of every state change of the Monitor.
//
// OnStateChange runs on a goroutine of cloister's dispatcher, never on the
// Monitor's: calls arrive one at a time, in the order the changes happened.
// It may block (later changes queue up, the Monitor goes on); a panic is
// recovered and logged and the next change is delivered as usual.
type Listener interface {
	OnStateChange(from, to State, snap Snapshot)
}

// Func adapts a function to a Listener.
type Func func(from, to State, snap Snapshot)

// OnStateChange calls f.
func (f Func) OnStateChange(from, to State, snap Snapshot) { f(from, to, snap) }

// String renders a snapshot in one line, for logs.
func (s Snapshot) String() string {
	names := make([]string, 0, len(s.Rings))
	for n := range s.Rings {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s members=%d/%d", s.Node, s.State, len(s.Members), s.Consensus)
	for _, n := range names {
		r := s.Rings[n]
		fmt.Fprintf(&b, " ring[%s]=%d@%d", n, len(r.Members), r.Epoch)
	}
	return b.String()
}
