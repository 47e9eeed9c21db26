// Package cloistertest runs real cloister clusters for tests: node
// processes on 127.0.0.1 against a private epmd, which a test can kill -9,
// freeze (SIGSTOP), thaw and restart, whose state changes it can wait for,
// and whose connections it can cut (Network). Its nodes can run the
// original suite's Void server (Spec.Void).
//
// Each node is a separate OS process running the test node program
// (cloistertest/internal/testnode: `cloister node` plus test-only flags),
// built once per test binary, or the binary named by the CLOISTER_BIN
// environment variable. A node prints its events as JSON lines on stdout
// and serves /status over HTTP.
package cloistertest

import (
	"sync"
	"testing"
	"time"

	"github.com/cloister-go/cloister/internal/localcluster"
	"github.com/cloister-go/cloister/internal/nodetest"
)

// NodeEvent is one line a node process prints (its Event field says which:
// "listening", "state", "removed", ...). Not a listener.Event: those are the
// Monitor's, inside a node.
type NodeEvent = localcluster.Event

// Spec describes one node process.
type Spec struct {
	Name      string
	Sentry    []string
	Service   string
	DNSServer string
	Consensus int
	OTPApp    string
	// Void adds the original suite's Void server as an additional module,
	// registered as "Void": on a cast or call {ping, From} it sends
	// {pong, Self} to From (and replies ok to a call); on {ping_one, From}
	// it does the same only if this node owns the key {ping_one, From}, so
	// exactly one node of a cluster answers.
	Void bool
	// PanicListener adds a listener that panics on every change (the
	// events are still printed by the other listener).
	PanicListener bool
	StartTimeout  time.Duration
	// Args are extra flags for the node program.
	Args []string
	Env  []string
}

// Harness owns a private epmd and the node processes of one test.
type Harness struct {
	*localcluster.Harness

	mu    sync.Mutex
	nodes map[string]*Node
	// net, when set (Harness.Network), routes the nodes through proxies
	// that a test can cut (faults.go).
	net *Network
}

// Node is one node process.
type Node struct {
	*localcluster.Node
}

// New starts a private epmd and returns an empty harness. The epmd is the
// system's when installed, else the node program's own (cloister's EPMD).
// The cookie is "cloistertest".
func New() (*Harness, error) {
	bin, err := nodetest.Binary()
	if err != nil {
		return nil, err
	}
	lh, err := localcluster.New(bin, localcluster.Options{Cookie: "cloistertest"})
	if err != nil {
		return nil, err
	}
	h := &Harness{Harness: lh, nodes: map[string]*Node{}}
	lh.ExtraArgs = h.routes
	return h, nil
}

// NewT is New for a test: it fails t when the harness cannot start and
// closes the harness when t ends.
func NewT(t testing.TB) *Harness {
	t.Helper()
	h, err := New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// routes are the -route flags of node name when the harness has a Network.
func (h *Harness) routes(name string) []string {
	h.mu.Lock()
	net := h.net
	h.mu.Unlock()
	if net == nil {
		return nil
	}
	return net.routes(name)
}

// Close kills every node process, the network's proxies and the epmd.
func (h *Harness) Close() {
	h.KillAll()
	h.mu.Lock()
	net := h.net
	h.mu.Unlock()
	if net != nil {
		net.Close()
	}
	h.Harness.Close()
}

// Node returns the node process of that name, or nil.
func (h *Harness) Node(name string) *Node {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.nodes[name]
}

// Start launches a node process. It returns at once; use WaitStarted or
// WaitState to wait for the node.
func (h *Harness) Start(s Spec) (*Node, error) {
	ls := localcluster.Spec{Name: s.Name, Sentry: s.Sentry, Service: s.Service, DNSServer: s.DNSServer,
		Consensus: s.Consensus, OTPApp: s.OTPApp, StartTimeout: s.StartTimeout, Env: s.Env}
	if s.Void {
		ls.Args = append(ls.Args, "-void")
	}
	if s.PanicListener {
		ls.Args = append(ls.Args, "-panic-listener")
	}
	ls.Args = append(ls.Args, s.Args...)
	ln, err := h.Harness.Start(ls)
	if err != nil {
		return nil, err
	}
	n := &Node{ln}
	h.mu.Lock()
	h.nodes[s.Name] = n
	h.mu.Unlock()
	return n, nil
}
