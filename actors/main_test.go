package actors

// The test binary runs one Ergo node per OS process (-race flags
// Ergo's package globals when one process starts several nodes; see
// docs/design.md). TestMain
// starts the shared local node, testNode, and peer nodes as child processes:
// the test binary itself, re-executed with ACTORS_TEST_PEER set, runs
// runPeer instead of the tests. Peers exit when their stdin closes (the
// test process ended) and are killed by PID at the end.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ergo-services/ergo/etf"
	"github.com/ergo-services/ergo/gen"
	"github.com/ergo-services/ergo/node"

	"github.com/cloister-go/cloister/internal/testenv"
	"github.com/cloister-go/cloister/internal/wire/ergonode"
)

const (
	envPeer     = "ACTORS_TEST_PEER"      // node name: run as a peer
	envPeerEPMD = "ACTORS_TEST_EPMD"      // the EPMD port to register with
	envPeerMode = "ACTORS_TEST_PEER_MODE" // "full" or "bare"
	peerReady   = "ACTORS-TEST-PEER-READY"

	// modeFull peers run the Node actor with testFuncs and the echo server;
	// modeBare peers run a Node actor with no functions and no echo.
	modeFull = "full"
	modeBare = "bare"

	echoName = "echo"
)

var (
	testNode node.Node // the local node, shared by every test
	testEPMD *testenv.EPMD

	// Peers started by TestMain: A, B and C run everything, Bare has no
	// echo server and no functions.
	peerA, peerB, peerC, peerBare *peer

	peersMu  sync.Mutex
	allPeers []*peer
)

func TestMain(m *testing.M) {
	if name := os.Getenv(envPeer); name != "" {
		os.Exit(runPeer(name))
	}
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	var err error
	testEPMD, err = testenv.StartEPMD()
	if err != nil {
		fmt.Fprintln(os.Stderr, "actors tests:", err)
		return 1
	}
	defer testEPMD.Stop()
	defer killAllPeers()

	name := fmt.Sprintf("actors_test_%d@127.0.0.1", os.Getpid())
	testNode, err = ergonode.Start(name, ergonode.Options{EPMDPort: testEPMD.Port})
	if err != nil {
		fmt.Fprintln(os.Stderr, "actors tests:", err)
		return 1
	}
	defer testNode.Stop()
	if err := startServices(testNode, modeFull); err != nil {
		fmt.Fprintln(os.Stderr, "actors tests:", err)
		return 1
	}
	for _, p := range []struct {
		dst  **peer
		name string
		mode string
	}{{&peerA, "a", modeFull}, {&peerB, "b", modeFull}, {&peerC, "c", modeFull}, {&peerBare, "bare", modeBare}} {
		if *p.dst, err = startPeer(p.name, p.mode, true); err != nil {
			fmt.Fprintln(os.Stderr, "actors tests:", err)
			return 1
		}
	}
	return m.Run()
}

// peer is a node running in a child process.
type peer struct {
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	once  sync.Once
}

// startPeer starts a peer node and, if connect, connects testNode to it.
func startPeer(suffix, mode string, connect bool) (*peer, error) {
	name := fmt.Sprintf("actors_peer_%d_%s@127.0.0.1", os.Getpid(), suffix)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(),
		envPeer+"="+name,
		envPeerEPMD+"="+strconv.Itoa(int(testEPMD.Port)),
		envPeerMode+"="+mode)
	cmd.Stderr = os.Stderr
	// The kernel kills the peer if this process dies without cleaning up.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start peer %s: %w", name, err)
	}
	p := &peer{name: name, cmd: cmd, stdin: stdin}
	peersMu.Lock()
	allPeers = append(allPeers, p)
	peersMu.Unlock()

	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		found := false
		for sc.Scan() {
			if !found && sc.Text() == peerReady {
				found = true
				ready <- true
			}
		}
		if !found {
			ready <- false
		}
	}()
	select {
	case ok := <-ready:
		if !ok {
			p.kill()
			return nil, fmt.Errorf("peer %s exited before it was ready", name)
		}
	case <-time.After(60 * time.Second):
		p.kill()
		return nil, fmt.Errorf("peer %s not ready after 60 s", name)
	}
	if !connect {
		return p, nil
	}
	for attempt := 0; ; attempt++ {
		err := testNode.Connect(name)
		if err == nil {
			return p, nil
		}
		if attempt == 50 {
			p.kill()
			return nil, fmt.Errorf("connect to peer %s: %w", name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// kill sends SIGKILL to the peer (by PID) and reaps it.
func (p *peer) kill() {
	p.once.Do(func() {
		_ = p.cmd.Process.Kill()
		_ = p.stdin.Close()
		_ = p.cmd.Wait()
	})
}

func killAllPeers() {
	peersMu.Lock()
	defer peersMu.Unlock()
	for _, p := range allPeers {
		p.kill()
	}
}

// runPeer is the body of a peer process.
func runPeer(name string) int {
	port, err := strconv.Atoi(os.Getenv(envPeerEPMD))
	if err != nil {
		fmt.Fprintln(os.Stderr, "peer: bad", envPeerEPMD, err)
		return 2
	}
	n, err := ergonode.Start(name, ergonode.Options{EPMDPort: uint16(port)})
	if err != nil {
		fmt.Fprintln(os.Stderr, "peer:", err)
		return 2
	}
	if err := startServices(n, os.Getenv(envPeerMode)); err != nil {
		fmt.Fprintln(os.Stderr, "peer:", err)
		return 2
	}
	fmt.Println(peerReady)
	// Block until the test process closes our stdin (or we are killed).
	_, _ = io.Copy(io.Discard, os.Stdin)
	n.Stop()
	return 0
}

// startServices spawns the Node actor (and, in full mode, the echo server
// under a supervisor that restarts it after {exit, Reason}).
func startServices(n node.Node, mode string) error {
	funcs := newFuncTable()
	if mode != modeBare {
		if err := registerTestFuncs(n, funcs); err != nil {
			return err
		}
	}
	if _, err := n.Spawn(NodeName, nodeProcessOptions(), newNode(funcs)); err != nil {
		return fmt.Errorf("spawn the Node actor: %w", err)
	}
	if mode == modeBare {
		return nil
	}
	if _, err := n.Spawn("echo_sup", gen.ProcessOptions{}, &echoSup{}); err != nil {
		return fmt.Errorf("spawn echo_sup: %w", err)
	}
	return nil
}

// sleeps counts the calls of the "sleep" test function begun in this
// process, so a test knows when its slow call is running.
var sleeps atomic.Int64

// registerTestFuncs registers the functions the Multiapply tests run.
func registerTestFuncs(n node.Node, f *funcTable) error {
	fns := map[string]goFunc{
		"sleeps": func(etf.List) (etf.Term, error) { return sleeps.Load(), nil },
		"double": func(args etf.List) (etf.Term, error) {
			if len(args) != 1 {
				return nil, fmt.Errorf("double: want 1 argument, got %d", len(args))
			}
			v, ok := asInt(args[0])
			if !ok {
				return nil, fmt.Errorf("double: not an integer: %#v", args[0])
			}
			return 2 * v, nil
		},
		"whoami": func(etf.List) (etf.Term, error) { return etf.Atom(n.Name()), nil },
		"fail": func(etf.List) (etf.Term, error) {
			return nil, errors.New("deliberate failure")
		},
		"panic": func(etf.List) (etf.Term, error) { panic("deliberate panic") },
		"nodepid": func(etf.List) (etf.Term, error) {
			p := n.ProcessByName(NodeName)
			if p == nil {
				return nil, errors.New("no Node actor")
			}
			return p.Self(), nil
		},
		"monitorsbyname": func(etf.List) (etf.Term, error) {
			return int64(n.Stats().MonitorsByName), nil
		},
		"sleep": func(args etf.List) (etf.Term, error) {
			sleeps.Add(1)
			ms, _ := asInt(args[0])
			time.Sleep(time.Duration(ms) * time.Millisecond)
			return etf.Atom("slept"), nil
		},
	}
	for name, fn := range fns {
		if err := f.Register(name, fn); err != nil {
			return err
		}
	}
	return nil
}

// asInt reads an integer the way ETF may deliver it.
func asInt(t etf.Term) (int64, bool) {
	switch v := t.(type) {
	case int:
		return int64(v), true
	case int64:
		return v, true
	case int32:
		return int64(v), true
	case uint8:
		return int64(v), true
	}
	return 0, false
}

type echoSup struct{ gen.Supervisor }

// Init supervises the echo server; a high intensity, as tests make it exit.
func (s *echoSup) Init(args ...etf.Term) (gen.SupervisorSpec, error) {
	return gen.SupervisorSpec{
		Children: []gen.SupervisorChildSpec{{
			Name:    echoName,
			Child:   &testEcho{},
			Options: gen.ProcessOptions{MailboxSize: ergonode.NetworkMailbox},
		}},
		Strategy: gen.SupervisorStrategy{
			Type:      gen.SupervisorStrategyOneForOne,
			Intensity: 1000,
			Period:    1,
			Restart:   gen.SupervisorStrategyRestartPermanent,
		},
	}, nil
}

// testEcho is the test server. Calls: {echo, X} -> {Node, X};
// {sleep, Ms, X} -> {Node, X} after Ms (the server stays responsive);
// {exit, Reason} -> exits with Reason, no reply. Cast {ping, Pid, Tag}
// sends {pong, Node, Tag} to Pid.
type testEcho struct{ gen.Server }

func (e *testEcho) HandleCall(p *gen.ServerProcess, from gen.ServerFrom, message etf.Term) (etf.Term, gen.ServerStatus) {
	me := etf.Atom(p.NodeName())
	t, ok := message.(etf.Tuple)
	if !ok || len(t) == 0 {
		return etf.Atom("unknown"), gen.ServerStatusOK
	}
	switch {
	case t[0] == etf.Atom("echo") && len(t) == 2:
		return etf.Tuple{me, t[1]}, gen.ServerStatusOK
	case t[0] == etf.Atom("sleep") && len(t) == 3:
		ms, _ := asInt(t[1])
		x := t[2]
		go func() {
			time.Sleep(time.Duration(ms) * time.Millisecond)
			_ = p.SendReply(from, etf.Tuple{me, x})
		}()
		return nil, gen.ServerStatusIgnore
	case t[0] == etf.Atom("exit") && len(t) == 2:
		reason := fmt.Sprint(t[1])
		if s, ok := t[1].(string); ok {
			reason = s
		}
		return nil, gen.ServerStatusStopWithReason(reason)
	}
	return etf.Atom("unknown"), gen.ServerStatusOK
}

func (e *testEcho) HandleCast(p *gen.ServerProcess, message etf.Term) gen.ServerStatus {
	if t, ok := message.(etf.Tuple); ok && len(t) == 3 && t[0] == etf.Atom("ping") {
		if pid, ok := t[1].(etf.Pid); ok {
			_ = p.Send(pid, etf.Tuple{etf.Atom("pong"), etf.Atom(p.NodeName()), t[2]})
		}
	}
	return gen.ServerStatusOK
}

func (e *testEcho) HandleInfo(p *gen.ServerProcess, message etf.Term) gen.ServerStatus {
	return gen.ServerStatusOK
}

// inbox is a test process that forwards every info message to a channel,
// and runs closures sent through Direct inside itself.
type inbox struct {
	gen.Server
	ch chan etf.Term
}

func (b *inbox) HandleInfo(p *gen.ServerProcess, message etf.Term) gen.ServerStatus {
	select {
	case b.ch <- message:
	default: // a test that stopped reading does not block the process
	}
	return gen.ServerStatusOK
}

func (b *inbox) HandleDirect(p *gen.ServerProcess, ref etf.Ref, message interface{}) (interface{}, gen.DirectStatus) {
	if f, ok := message.(func(*gen.ServerProcess) (interface{}, error)); ok {
		return f(p)
	}
	return nil, gen.DirectStatusOK
}

// newInbox spawns an inbox on testNode, killed when the test ends.
func newInbox(tb testing.TB) (gen.Process, chan etf.Term) {
	tb.Helper()
	b := &inbox{ch: make(chan etf.Term, 1024)}
	p, err := testNode.Spawn("", gen.ProcessOptions{MailboxSize: ergonode.NetworkMailbox}, b)
	if err != nil {
		tb.Fatalf("spawn inbox: %v", err)
	}
	tb.Cleanup(func() { killIfAlive(p) })
	return p, b.ch
}

// killIfAlive kills p unless it already ended: Ergo's Kill reads the
// process's behaviour without the lock its exit writes it under (a data
// race under -race when a test's supervisor has given up by itself);
// IsAlive takes that lock, and a process that is ending reads as dead.
func killIfAlive(p gen.Process) {
	if p.IsAlive() {
		p.Kill()
	}
}
