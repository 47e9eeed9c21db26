// Package cloistertest runs real cloister clusters for tests: node
// processes on 127.0.0.1 against a private epmd, which a test can kill -9,
// freeze (SIGSTOP), thaw and restart, whose state changes it can wait for,
// and whose connections it can cut (Network). It also has the original
// suite's Void server.
//
// Each node is a separate OS process running the test node program
// (cloistertest/internal/testnode: `cloister node` plus test-only flags),
// built once per test binary, or the binary named by the CLOISTER_BIN
// environment variable. A node prints its events as JSON lines on stdout
// and serves /status over HTTP.
package cloistertest

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cloister-go/cloister/internal/localcluster"
)

// NodeEvent is one line a node process prints (its Event field says which:
// "listening", "state", "removed", ...). Not a listener.Event: those are the
// Monitor's, inside a node.
type NodeEvent = localcluster.Event

// Printer writes the events a node program prints, one JSON line each.
type Printer = localcluster.Printer

// NewPrinter prints to w when on.
func NewPrinter(w io.Writer, on bool) *Printer { return localcluster.NewPrinter(w, on) }

// EPMDMain is the `epmd -port P` subcommand of a node program: it serves
// EPMD on 127.0.0.1:P until SIGTERM or SIGINT. prog names the program in
// messages; the result is the exit code.
func EPMDMain(prog string, args []string) int { return localcluster.EPMDMain(prog, args) }

// Names returns n node names prefix_0@127.0.0.1 … prefix_<n-1>@127.0.0.1.
func Names(prefix string, n int) []string { return localcluster.Names(prefix, n) }

// Spec describes one node process.
type Spec struct {
	Name      string
	Sentry    []string
	Service   string
	DNSServer string
	Consensus int
	OTPApp    string
	// Void adds the Void server as an additional module.
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

var (
	buildOnce sync.Once
	buildBin  string
	buildErr  error
)

// Binary returns the node program: $CLOISTER_BIN, or the test node built
// once per process from
// github.com/cloister-go/cloister/cloistertest/internal/testnode.
func Binary() (string, error) {
	if b := os.Getenv("CLOISTER_BIN"); b != "" {
		return b, nil
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "cloistertest-bin-")
		if err != nil {
			buildErr = err
			return
		}
		buildBin = filepath.Join(dir, "testnode")
		cmd := exec.Command("go", "build", "-o", buildBin, "github.com/cloister-go/cloister/cloistertest/internal/testnode")
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("cloistertest: build the test node: %v\n%s", err, out)
		}
	})
	return buildBin, buildErr
}

var (
	cliOnce sync.Once
	cliBin  string
	cliErr  error
)

// CLI returns the `cloister` command (cmd/cloister), built once per
// process, for tests of what a user runs (status, whois, run); node
// processes run the test node (Binary).
func CLI() (string, error) {
	cliOnce.Do(func() {
		dir, err := os.MkdirTemp("", "cloistertest-cli-")
		if err != nil {
			cliErr = err
			return
		}
		cliBin = filepath.Join(dir, "cloister")
		out, err := exec.Command("go", "build", "-o", cliBin, "github.com/cloister-go/cloister/cmd/cloister").CombinedOutput()
		if err != nil {
			cliErr = fmt.Errorf("cloistertest: build cloister: %v\n%s", err, out)
		}
	})
	return cliBin, cliErr
}

// New starts a private epmd and returns an empty harness.
func New() (*Harness, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	return NewWithBinary(bin)
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

// NewWithBinary is New with a given node program (one that answers `node`
// and `epmd` as the test node does). The epmd is the system's when
// installed, else `bin epmd` (cloister's own EPMD). The cookie is "cloistertest".
func NewWithBinary(bin string) (*Harness, error) {
	lh, err := localcluster.New(bin, localcluster.Options{Cookie: "cloistertest"})
	if err != nil {
		return nil, err
	}
	h := &Harness{Harness: lh, nodes: map[string]*Node{}}
	lh.ExtraArgs = h.routes
	return h, nil
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

// LastLines returns the last n lines of s (a LogTail or DumpStacks
// output), for a failing test to print a bounded amount.
func LastLines(s string, n int) string { return localcluster.LastLines(s, n) }
