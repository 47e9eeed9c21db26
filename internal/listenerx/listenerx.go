// Package listenerx holds what this module's own packages need around
// package listener and users do not: the default logging listener, the
// fan-out to several listeners, the lists of states and removal reasons
// (metrics label values) and the phrases the Monitor logs.
package listenerx

import (
	"log"
	"strings"

	"github.com/cloister-go/cloister/listener"
)

// RecentChanges is how many state changes a published snapshot keeps
// (listener.Snapshot.Transitions).
const RecentChanges = 32

// Logger is the default listener: one log line per change.
type Logger struct {
	// Logf prints; nil means log.Printf.
	Logf func(format string, args ...interface{})
}

// OnStateChange logs the change with the members.
func (l Logger) OnStateChange(from, to listener.State, s listener.Snapshot) {
	logf := l.Logf
	if logf == nil {
		logf = log.Printf
	}
	logf("cloister: %s: %s -> %s, members %d/%d [%s]", s.Node, from, to,
		len(s.Members), s.Consensus, strings.Join(s.Members, ", "))
}

// Multi fans a change out to several listeners, in order.
type Multi []listener.Listener

// OnStateChange calls every listener; a panic in one does not skip the others.
func (m Multi) OnStateChange(from, to listener.State, s listener.Snapshot) {
	for _, l := range m {
		func() {
			defer func() {
				if r := recover(); r != nil {
					log.Printf("cloister: listener %T panicked on %s -> %s: %v", l, from, to, r)
				}
			}()
			l.OnStateChange(from, to, s)
		}()
	}
}

// States returns every state in the order of the state diagram (a new
// slice on each call).
func States() []listener.State {
	return []listener.State{listener.StateDown, listener.StateAssembling, listener.StateRehashing,
		listener.StateReady, listener.StateStopping, listener.StateStopped}
}

// RemovalReasons returns every removal reason (a new slice on each call).
func RemovalReasons() []listener.RemovalReason {
	return []listener.RemovalReason{listener.RemovedSilent, listener.RemovedConnectionLost,
		listener.RemovedGraceExpired, listener.RemovedForeign, listener.RemovedGone, listener.RemovedLeft}
}

// Describe is a removal reason as a phrase for log lines.
func Describe(r listener.RemovalReason) string {
	switch r {
	case listener.RemovedSilent:
		return "silent"
	case listener.RemovedConnectionLost:
		return "connection lost"
	case listener.RemovedGraceExpired:
		return "not back in grace"
	case listener.RemovedForeign:
		return "answers for another application"
	case listener.RemovedGone:
		return "gone (its process no longer exists)"
	case listener.RemovedLeft:
		return "left gracefully"
	}
	return string(r)
}
