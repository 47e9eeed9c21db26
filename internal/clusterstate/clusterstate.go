// Package clusterstate is how the facade (package cloister) and the Ergo application (package app)
// read and end the state a cluster's Manager publishes: its node, rings, snapshot and lifecycle.
// Package actors owns that state and keeps its type unexported, so users meet it only through the
// facade; it hands it out here, to the module's own packages, with the node-level fan-out the
// facade's Cluster methods run (Multicall, Multicast, Multiapply, RPC) and the reader of a
// Monitor's state answer.
package clusterstate

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/cloister-go/cloister/listener"
	"github.com/cloister-go/cloister/ring"
	"github.com/ergo-services/ergo/etf"
	"github.com/ergo-services/ergo/gen"
	"github.com/ergo-services/ergo/node"
)

// State is one cluster's published state. Every method is safe for concurrent use; the lookups
// (RingSet, DefaultRing, Self, Halted) take no lock.
type State interface {
	// Node is the Ergo node the cluster runs on (nil before its Monitor started).
	Node() node.Node
	// WhenNode runs f with the node once there is one: now, or when the Monitor starts.
	WhenNode(f func(node.Node))
	// Self is this node's name ("" before start).
	Self() string
	// Snapshot is the latest published view; Changed is closed at the next one.
	Snapshot() listener.Snapshot
	Changed() <-chan struct{}
	// AwaitReady returns nil once ready, Err once the cluster ended, or ctx's error.
	AwaitReady(ctx context.Context) error
	// Stopped is closed when the cluster ends for good; Err then says why.
	Stopped() <-chan struct{}
	Err() error
	// Halted is Err() != nil in one atomic load.
	Halted() bool
	// MarkStopped ends the cluster with err (nil: stopped by its program); the first end wins.
	MarkStopped(err error)
	// AcceptLink reports whether a process of node peer may link to process to of this node.
	AcceptLink(peer string, to etf.Pid) bool
	// RingSet holds the cluster's rings; DefaultRing names the default one.
	RingSet() *ring.Set
	DefaultRing() string
	// RegisterFunc, LookupFunc and TryGo are the registry of functions Multiapply and BEAM rpc
	// callers run, and its concurrency cap.
	RegisterFunc(name string, fn func(args etf.List) (etf.Term, error)) error
	LookupFunc(name string) (func(args etf.List) (etf.Term, error), bool)
	TryGo(run func()) bool
}

// StopRequest asks the Monitor (through process Direct) to run the orderly
// shutdown, stopping → stopped, and answers once the listener has been told.
// The node can then be stopped without losing those notifications.
type StopRequest struct{}

// LeaveRequest asks the Monitor (through process Direct) to start this
// node's graceful leave. The reply is a <-chan struct{} closed when every
// member told has acknowledged (its listener heard the change) or went
// away; the caller then stops the node.
type LeaveRequest struct{}

// JoinRequest asks the Monitor (through process Direct) to add Node as a
// peer, dialled and kept like a listed sentry for the life of the cluster
// (a restarted Monitor is given it again). Node must be a valid name
// (internal/core.ValidName) other than this node's.
type JoinRequest struct{ Node string }

// AppParts returns the Manager and the start gate of an application app.New built (nil, nil for
// any other): the facade runs the one in a user's tree and waits on the other. Package app sets it
// when it is initialised, as package actors sets Of.
var AppParts func(a gen.ApplicationBehavior) (manager gen.SupervisorBehavior, gate func(context.Context) error)

// Of returns the state of the cluster whose Manager m is (as actors.NewManager built it), or nil
// for any other supervisor. Package actors sets it when it is initialised: this package cannot
// import actors, which imports it.
var Of func(m gen.SupervisorBehavior) State

// Result is the answer of one node to a fan-out (cloister.Result).
type Result struct {
	Node  string   // the node asked
	Reply etf.Term // its reply; nil when Err is set
	Err   error    // a *cloister.NodeError, or nil
}

// The fan-out and BEAM rpc of node n, a node with cloister's Node actor or
// any other Ergo node; documented in package actors (multicall, multicast,
// multiapply, rpcCall), which sets them when it is initialised, as it sets
// Of: they reach its fan-out engine, and users reach them only through the
// facade's Cluster methods.
var (
	Multicall  func(n node.Node, nodes []string, name string, request etf.Term, timeout time.Duration) ([]Result, error)
	Multicast  func(n node.Node, nodes []string, name string, message etf.Term) error
	Multiapply func(n node.Node, nodes []string, fn string, args etf.List, timeout time.Duration) ([]Result, error)
	RPC        func(n node.Node, peer, module, function string, args etf.List, timeout time.Duration) (etf.Term, error)
)

// NoListDeltas makes the Monitors of this process fetch a member's changed list whole, and tell
// their own changes to nobody, as nodes before list deltas did (core.Config.ListDeltas): the test
// node's -full-lists, which makes a cluster of mixed versions. Set before any node starts.
var NoListDeltas bool

// Lists counts how this process's Monitors learnt their members' lists: state answers served
// (each one two lists of the members), changes of a member's list taken from its ping or pong
// (Deltas), and those that did not apply and fell back to asking for the state (DeltaMisses).
// Read by the test node's /debug/runtime and the benchmarks; a process normally runs one node.
var Lists struct{ StateAnswers, Deltas, DeltaMisses atomic.Int64 }
