package distfilter

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ergo-services/ergo/etf"
	"github.com/ergo-services/ergo/gen"
	"github.com/ergo-services/ergo/node"

	"github.com/cloister-go/cloister/internal/erltest"
	"github.com/cloister-go/cloister/internal/testenv"
	"github.com/cloister-go/cloister/internal/wire/ergonode"
)

// One Ergo node for the whole test binary (Ergo has races of its own with several nodes in one process), filtered, with
// the test processes below; erl/elixir nodes of each available OTP release
// connect to it.
var (
	env      *erltest.Env
	goNode   node.Node
	goName   string
	theF     *filter
	inbox    = make(chan etf.Term, 1024)
	probeP   gen.Process
	runtimes = map[string]erltest.Runtime{} // "25", "27", "29"
	missing  = map[string]string{}          // release -> why not available
	beamDirs sync.Map                       // runtime root -> compiled testdata dir
)

// rpcFuncs are the Go functions the rpc tests call.
var rpcFuncs = FuncMap{
	"dft_go:add": func(args etf.List) (etf.Term, error) {
		var sum int64
		for _, a := range args {
			switch v := a.(type) {
			case int:
				sum += int64(v)
			case int64:
				sum += v
			default:
				return nil, &Raise{Class: "error", Reason: etf.Atom("badarith")}
			}
		}
		return sum, nil
	},
	"dft_go:fail": func(args etf.List) (etf.Term, error) {
		return nil, fmt.Errorf("it failed")
	},
	"dft_go:throw": func(args etf.List) (etf.Term, error) {
		return nil, &Raise{Class: "throw", Reason: etf.Tuple{etf.Atom("thrown"), args}}
	},
}

// limited is a Limited Funcs whose cap a test can declare reached.
type limited struct {
	FuncMap
	full atomic.Bool
	runs atomic.Int64
}

func (l *limited) TryGo(run func()) bool {
	if l.full.Load() {
		return false
	}
	l.runs.Add(1)
	go run()
	return true
}

var limitedFuncs = &limited{FuncMap: rpcFuncs}

func TestMain(m *testing.M) {
	flag.Parse()
	_ = flag.Set("ergo.warning", "false")
	if os.Getenv(peerEnv) != "" {
		os.Exit(runErgoPeer())
	}
	if fuzzing() {
		os.Exit(m.Run()) // fuzz targets need no epmd, erl or peers
	}
	os.Exit(run(m))
}

// fuzzing reports whether this binary runs a fuzz target (the parent or
// one of its workers), which needs none of the suite's environment.
func fuzzing() bool {
	for _, name := range []string{"test.fuzz", "test.fuzzworker"} {
		if fl := flag.Lookup(name); fl != nil && fl.Value.String() != "" && fl.Value.String() != "false" {
			return true
		}
	}
	return false
}

func run(m *testing.M) int {
	var err error
	env, err = erltest.NewEnv("dfcookie")
	if err != nil {
		fmt.Fprintln(os.Stderr, "distfilter tests: no epmd:", err)
		return 1
	}
	defer env.Close()

	host, err := erltest.Host().Probe()
	if err != nil {
		fmt.Fprintln(os.Stderr, "distfilter tests: no host erl:", err)
		return 1
	}
	runtimes[host.Release] = host
	for _, v := range []string{"27", "29"} {
		r, err := erltest.Chroot(v)
		if err != nil {
			missing[v] = err.Error()
			fmt.Fprintf(os.Stderr, "\n*** distfilter: OTP %s tests will be SKIPPED: %v ***\n\n", v, err)
			continue
		}
		runtimes[v] = r
	}

	eo := ergonode.Options{Cookie: env.Cookie, EPMDPort: env.EPMD.Port, HandshakeTimeout: 5 * time.Second}
	theF = Options{ServeRPC: true, Funcs: limitedFuncs}.apply(&eo)
	goName = fmt.Sprintf("dfgo_%d@127.0.0.1", os.Getpid())
	goNode, err = ergonode.Start(goName, eo)
	if err != nil {
		fmt.Fprintln(os.Stderr, "distfilter tests:", err)
		return 1
	}
	defer goNode.Stop()
	if err := InstallNetKernel(goNode); err != nil {
		fmt.Fprintln(os.Stderr, "distfilter tests:", err)
		return 1
	}
	if os.Getenv("DISTFILTER_NO_GLOBAL") == "" { // set to see the tests fail on Ergo's stub
		if err := InstallGlobal(goNode); err != nil {
			fmt.Fprintln(os.Stderr, "distfilter tests:", err)
			return 1
		}
	}
	big := gen.ProcessOptions{MailboxSize: ergonode.NetworkMailbox}
	if _, err := goNode.Spawn("go_echo", big, &echoServer{}); err != nil {
		fmt.Fprintln(os.Stderr, "distfilter tests:", err)
		return 1
	}
	if _, err := goNode.Spawn("go_inbox", big, &inboxServer{}); err != nil {
		fmt.Fprintln(os.Stderr, "distfilter tests:", err)
		return 1
	}
	if probeP, err = goNode.Spawn("go_probe", big, &probeServer{}); err != nil {
		fmt.Fprintln(os.Stderr, "distfilter tests:", err)
		return 1
	}
	return m.Run()
}

// echoServer is the Go twin of testdata/dft_srv.erl.
type echoServer struct{ gen.Server }

func (s *echoServer) HandleCall(p *gen.ServerProcess, from gen.ServerFrom, m etf.Term) (etf.Term, gen.ServerStatus) {
	t, _ := m.(etf.Tuple)
	switch {
	case len(t) == 2 && t[0] == etf.Atom("echo"):
		return etf.Tuple{etf.Atom("reply"), t[1], etf.Atom(goName)}, gen.ServerStatusOK
	case len(t) == 2 && t[0] == etf.Atom("sleep"):
		ms, _ := t[1].(int64)
		if i, ok := t[1].(int); ok {
			ms = int64(i)
		}
		time.Sleep(time.Duration(ms) * time.Millisecond)
		return etf.Atom("slept"), gen.ServerStatusOK
	case len(t) == 2 && t[0] == etf.Atom("stop"):
		reason, _ := t[1].(etf.Atom)
		return nil, gen.ServerStatusStopWithReason(string(reason))
	case m == etf.Atom("new_linkee"):
		c, err := p.Spawn("", gen.ProcessOptions{}, &linkee{})
		if err != nil {
			return etf.Atom("error"), gen.ServerStatusOK
		}
		return c.Self(), gen.ServerStatusOK
	}
	return etf.Atom("ok"), gen.ServerStatusOK
}

func (s *echoServer) HandleInfo(p *gen.ServerProcess, m etf.Term) gen.ServerStatus {
	return gen.ServerStatusOK
}

// linkee exits with the reason it is sent as {exit, Reason}.
type linkee struct{ gen.Server }

func (s *linkee) HandleInfo(p *gen.ServerProcess, m etf.Term) gen.ServerStatus {
	if t, ok := m.(etf.Tuple); ok && len(t) == 2 && t[0] == etf.Atom("exit") {
		r, _ := t[1].(etf.Atom)
		return gen.ServerStatusStopWithReason(string(r))
	}
	return gen.ServerStatusOK
}

// inboxServer hands every message it gets to the test.
type inboxServer struct{ gen.Server }

func (s *inboxServer) HandleInfo(p *gen.ServerProcess, m etf.Term) gen.ServerStatus {
	inbox <- m
	return gen.ServerStatusOK
}

func (s *inboxServer) HandleCast(p *gen.ServerProcess, m etf.Term) gen.ServerStatus {
	inbox <- etf.Tuple{etf.Atom("cast"), m}
	return gen.ServerStatusOK
}

// probeServer runs test closures inside a process (Call, Link, ...).
type probeServer struct{ gen.Server }

type probeFunc func(p *gen.ServerProcess) (interface{}, error)

func (s *probeServer) HandleDirect(p *gen.ServerProcess, ref etf.Ref, m interface{}) (interface{}, gen.DirectStatus) {
	if fn, ok := m.(probeFunc); ok {
		return fn(p)
	}
	return nil, fmt.Errorf("not a probeFunc")
}

func (s *probeServer) HandleInfo(p *gen.ServerProcess, m etf.Term) gen.ServerStatus {
	return gen.ServerStatusOK
}

// inProbe runs fn inside the probe process.
func inProbe(t *testing.T, fn probeFunc) interface{} {
	t.Helper()
	v, err := probeP.DirectWithTimeout(fn, 20)
	if err != nil {
		t.Fatalf("probe: %v", err)
	}
	return v
}

// forEachOTP runs f as a subtest per OTP release (25 from the host, 27 and
// 29 from chroots), skipping loudly those not installed.
func forEachOTP(t *testing.T, f func(t *testing.T, r erltest.Runtime)) {
	for _, v := range []string{"25", "27", "29"} {
		t.Run("OTP"+v, func(t *testing.T) {
			r, ok := runtimes[v]
			if !ok {
				why := missing[v]
				if why == "" {
					why = "host OTP is " + strings.Join(keys(runtimes), ",")
				}
				t.Skipf("SKIPPED: OTP %s not available: %s", v, why)
			}
			f(t, r)
		})
	}
}

func keys(m map[string]erltest.Runtime) []string {
	var k []string
	for v := range m {
		k = append(k, v)
	}
	return k
}

// startErl starts an erl (or elixir) node of runtime r with the test
// modules loaded and dft_srv registered as go_echo; stopped at test end.
func startErl(t *testing.T, r erltest.Runtime, name string, elixir bool) *erltest.Node {
	t.Helper()
	n, err := startNode(r, name, elixir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		n.Stop()
		if t.Failed() {
			t.Logf("output of %s:\n%s", n.Name, n.Output())
		}
	})
	return n
}

func startNode(r erltest.Runtime, name string, elixir bool) (*erltest.Node, error) {
	dir, ok := beamDirs.Load(r.Root)
	if !ok {
		srcs, _ := filepath.Glob("testdata/*.erl")
		d, err := env.Compile(r, srcs...)
		if err != nil {
			return nil, err
		}
		beamDirs.Store(r.Root, d)
		dir = d
	}
	n, err := env.StartNode(name, erltest.NodeOptions{Runtime: r, Elixir: elixir, Paths: []string{dir.(string)}})
	if err != nil {
		return nil, err
	}
	if _, err := n.Eval("dft_srv:start()"); err != nil {
		n.Stop()
		return nil, err
	}
	return n, nil
}

// sharedErl is one erl (or elixir) node per runtime shared by the tests
// that leave it as they found it (node starts dominate the suite's time);
// env.Close stops them.
func sharedErl(t *testing.T, r erltest.Runtime, elixir bool) *erltest.Node {
	t.Helper()
	key := r.Release + map[bool]string{false: "erl", true: "ex"}[elixir]
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if n, ok := shared[key]; ok {
		select {
		case <-n.Exited():
		default:
			return n
		}
	}
	n, err := startNode(r, "sh"+key, elixir)
	if err != nil {
		t.Fatal(err)
	}
	shared[key] = n
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("output of %s so far:\n%s", n.Name, n.Output())
		}
	})
	return n
}

var (
	sharedMu sync.Mutex
	shared   = map[string]*erltest.Node{}
)

// mustEval evaluates expr on n and fails the test on an exception.
func mustEval(t *testing.T, n *erltest.Node, expr string) string {
	t.Helper()
	v, err := n.Eval(expr)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return v
}

// expectEval evaluates expr on n and compares the result with want.
func expectEval(t *testing.T, n *erltest.Node, expr, want string) {
	t.Helper()
	if got := mustEval(t, n, expr); got != want {
		t.Fatalf("%s on %s:\n got  %s\n want %s", expr, n.Name, got, want)
	}
}

// drainInbox empties the inbox channel before a test uses it.
func drainInbox() {
	for {
		select {
		case <-inbox:
		default:
			return
		}
	}
}

// nextInbox is the next message to go_inbox, or fails after 10 s.
func nextInbox(t *testing.T) etf.Term {
	t.Helper()
	select {
	case m := <-inbox:
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("go_inbox got nothing within 10 s")
		return nil
	}
}

// q quotes a node name as an Erlang atom.
func q(name string) string { return "'" + name + "'" }

// waitGone waits until goNode no longer lists node as connected.
func waitGone(t *testing.T, node string) {
	t.Helper()
	testenv.WaitFor(t, 5*time.Second, node+" gone from the connected nodes after the disconnect", func() bool {
		return !slices.Contains(goNode.Nodes(), node)
	})
}
