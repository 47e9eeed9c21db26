package actors

import (
	"errors"
	"fmt"

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

// sentinelOf maps a kind to its sentinel.
func sentinelOf(k ErrorKind) error {
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
	s := sentinelOf(e.Kind)
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

// Error describes the remote failure.
func (e *RemoteError) Error() string { return e.msg }

func nodeErr(node string, k ErrorKind, err error) *NodeError {
	return &NodeError{Node: node, Kind: k, Err: err}
}
