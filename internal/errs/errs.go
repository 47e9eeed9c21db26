// Package errs defines cloister's error types and sentinels once, for the
// packages that return them (actors, app, metrics) and for the root package,
// which re-exports them as the public ones (cloister.ErrTimeout,
// cloister.NodeError, ...). They live here, not in actors, so that the public
// API names each of them once.
package errs

import (
	"errors"
	"fmt"
	"time"

	"github.com/ergo-services/ergo/etf"
)

// ErrorKind classifies why one node of a fan-out gave no reply.
type ErrorKind int

// The kinds of per-node fan-out failure. The zero value is not a kind.
const (
	// KindTimeout: no reply before the deadline.
	KindTimeout ErrorKind = iota + 1
	// KindNoConnection: the node is not connected (fan-out never dials), or
	// its connection dropped during the call.
	KindNoConnection
	// KindNoSuchProcess: no process is registered under the name there.
	KindNoSuchProcess
	// KindRemote: the remote process exited during the call, or answered
	// with an error (Multiapply's {error, Reason}).
	KindRemote
	// KindRefused: the local node did not send the request to that node
	// (for example the local target's mailbox was full).
	KindRefused
)

// String returns the kind in lower-case words, e.g. "no such process".
func (k ErrorKind) String() string {
	switch k {
	case KindTimeout:
		return "timeout"
	case KindNoConnection:
		return "no connection"
	case KindNoSuchProcess:
		return "no such process"
	case KindRemote:
		return "remote error"
	case KindRefused:
		return "refused"
	}
	return fmt.Sprintf("unknown error kind %d", int(k))
}

// Sentinels for errors.Is on a *NodeError: each matches every NodeError of
// its kind.
var (
	ErrTimeout       = errors.New("cloister: timeout")
	ErrNoConnection  = errors.New("cloister: no connection")
	ErrNoSuchProcess = errors.New("cloister: no such process")
	ErrRemote        = errors.New("cloister: remote error")
	ErrRefused       = errors.New("cloister: refused")
)

// ErrInvalidArgument is wrapped by the errors fan-out functions return for a
// bad argument (empty name, non-positive timeout, nil node, ...).
var ErrInvalidArgument = errors.New("cloister: invalid argument")

// SentinelOf maps a kind to its sentinel (nil for no kind).
func SentinelOf(k ErrorKind) error {
	switch k {
	case KindTimeout:
		return ErrTimeout
	case KindNoConnection:
		return ErrNoConnection
	case KindNoSuchProcess:
		return ErrNoSuchProcess
	case KindRemote:
		return ErrRemote
	case KindRefused:
		return ErrRefused
	}
	return nil
}

// NodeError is the failure of one node in a fan-out. Match the kind with
// errors.Is(err, ErrTimeout) (etc.), or get the facts with errors.As.
type NodeError struct {
	Node string    // the node that failed
	Kind ErrorKind // why
	Err  error     // details; may be nil
}

// Error reads "cloister: node N: <kind>[: <details>]".
func (e *NodeError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("cloister: node %s: %s", e.Node, e.Kind)
	}
	return fmt.Sprintf("cloister: node %s: %s: %v", e.Node, e.Kind, e.Err)
}

// Unwrap returns the details.
func (e *NodeError) Unwrap() error { return e.Err }

// Is reports whether target is the sentinel of e's kind.
func (e *NodeError) Is(target error) bool {
	s := SentinelOf(e.Kind)
	return s != nil && target == s
}

// RemoteError carries what the remote side said: the exit reason of the
// called process, or the Reason of a Multiapply {error, Reason} answer.
// It is the Err of a KindRemote NodeError.
type RemoteError struct {
	// Reason is the raw term (a Go string for an exit reason: Ergo flattens
	// remote exit reasons to strings).
	Reason etf.Term
	// Class is the Erlang exception class ("error", "exit" or "throw") when
	// a BEAM function raised (Multiapply to a BEAM node, RPC); "" otherwise.
	Class string
	// Stack is the stack trace of a BEAM error (nil otherwise).
	Stack etf.Term
	msg   string
}

// Remote returns a RemoteError with the message msg.
func Remote(reason etf.Term, class string, stack etf.Term, msg string) *RemoteError {
	return &RemoteError{Reason: reason, Class: class, Stack: stack, msg: msg}
}

// Error describes the remote failure.
func (e *RemoteError) Error() string { return e.msg }

// ErrStopped matches (errors.Is) the error of a cluster whose Manager has
// stopped: cloister no longer runs on this node, and its rings are empty.
var ErrStopped = errors.New("cloister: stopped")

// StoppedError says why cloister stopped on a node: the Manager gave up
// after too many restarts of its children, or was shut down.
type StoppedError struct {
	// Reason is the Manager's exit reason ("shutdown" after too many
	// restarts, "kill" when the node stopped, ...).
	Reason string
	// Detail is what led to it, for people (may be empty).
	Detail string
	At     time.Time
}

func (e *StoppedError) Error() string {
	if e.Detail == "" {
		return fmt.Sprintf("cloister: stopped (%s)", e.Reason)
	}
	return fmt.Sprintf("cloister: stopped (%s): %s", e.Reason, e.Detail)
}

// Is makes errors.Is(err, ErrStopped) hold.
func (e *StoppedError) Is(target error) bool { return target == ErrStopped }

// ErrInvalidOption is wrapped by every validation error.
var ErrInvalidOption = errors.New("cloister: invalid option")

// OptionError is Validate's error: which option (the field, with an index
// for a list entry: "Sentry[1]"), its value and what is allowed.
type OptionError struct {
	Field string
	Index int // the list entry, or -1
	Value interface{}
	Why   string
}

// Error reads "cloister: invalid option Sentry[1] = \"x\": why".
func (e *OptionError) Error() string {
	f := e.Field
	if e.Index >= 0 {
		f = fmt.Sprintf("%s[%d]", f, e.Index)
	}
	return fmt.Sprintf("%s %s = %#v: %s", ErrInvalidOption, f, e.Value, e.Why)
}

// Unwrap returns ErrInvalidOption.
func (e *OptionError) Unwrap() error { return ErrInvalidOption }

// ErrFuncRegistered is wrapped by Register for a name already taken.
var ErrFuncRegistered = errors.New("cloister: function already registered")
