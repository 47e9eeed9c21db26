// Package interop tests cloister clusters that mix Go and BEAM nodes
// (Go and BEAM members in one ring): 3 Go nodes (this test binary's in-process node and
// two `cloister node` processes, all on the libring engine) and 2 Erlang
// nodes running testdata/cloister_member.erl, which answers like an Elixir
// cloister 0.16 Monitor and computes owners the libring way. One row per
// OTP release: the host's (25, required) and the chroots of
// tests/otp/chroots.sh (27, 29), skipped loudly when missing; Elixir where
// installed.
//
// One Ergo node per test binary (Ergo has races of its own with several): the in-process node
// lives for the whole run; every other node is a child process, stopped by
// PID when its row ends, also on failure.
package interop

import (
	"bytes"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ergo-services/ergo/etf"
	"github.com/ergo-services/ergo/gen"
	"github.com/ergo-services/ergo/node"

	"github.com/cloister-go/cloister"
	"github.com/cloister-go/cloister/cloistertest"
	"github.com/cloister-go/cloister/internal/erltest"
	"github.com/cloister-go/cloister/internal/nodetest"
	"github.com/cloister-go/cloister/listener"
	"github.com/cloister-go/cloister/ring/libring"
)

// otpApp is the application every node of the mixed cluster runs for.
const otpApp = "interop"

var (
	h   *cloistertest.Harness
	env *erltest.Env

	// runtimes by release ("25", "27", "29"); missing says why one is not.
	runtimes = map[string]erltest.Runtime{}
	missing  = map[string]string{}
	elixirOK = map[string]bool{}

	beamMu   sync.Mutex
	beamDirs = map[string]string{} // runtime root -> compiled testdata

	libringConfig string // `cloister node -config` file selecting the libring engine
	// libring26Config selects the libring engine for OTP 26+ (atom keys).
	libring26Config string

	// goIn is this binary's own cloister node (the third Go node).
	goIn      = "goin@127.0.0.1"
	goNode    node.Node             // set before TestMain runs the tests
	goStarted = make(chan struct{}) // closed when StartNode returned
	goErr     error                 // its error, once goStarted is closed
	inbox     *collector
	inboxP    gen.Process
	logs      = &tailBuffer{max: 400}
	transMu   sync.Mutex
	goInTrans []transition
)

type transition struct {
	from, to string
	at       time.Time
	members  []string
}

func TestMain(m *testing.M) {
	flag.Parse()
	_ = flag.Set("ergo.warning", "false")
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "interop setup:", err)
		fmt.Fprintln(os.Stderr, logs.String())
		code = 1
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	var err error
	if h, err = cloistertest.New(); err != nil {
		return 1, err
	}
	defer h.Close()
	if os.Getenv("CLOISTER_TEST_LOGS") != "1" {
		h.Logs = logs
	}
	if env, err = erltest.NewEnv(h.Cookie); err != nil {
		return 1, err
	}
	defer env.Close()
	// One epmd for Go and BEAM nodes alike: the harness's node processes
	// register with the erltest one (both Close calls stop it; the second
	// is a no-op).
	h.EPMD.Stop()
	h.EPMD = env.EPMD

	host, err := erltest.Host().Probe()
	if err != nil {
		return 1, fmt.Errorf("no host erl (OTP 25 rows are required): %w", err)
	}
	runtimes[host.Release] = host
	if _, err := exec.LookPath("elixir"); err == nil {
		elixirOK[host.Release] = true
	}
	for _, v := range []string{"27", "29"} {
		r, err := erltest.Chroot(v)
		if err != nil {
			missing[v] = err.Error()
			fmt.Fprintf(os.Stderr, "\n*** interop: OTP %s rows will be SKIPPED: %v ***\n\n", v, err)
			continue
		}
		runtimes[v] = r
		if _, err := os.Stat(filepath.Join(r.Root, "usr/bin/elixir")); err == nil {
			elixirOK[v] = true
		}
	}

	dir, err := os.MkdirTemp("", "interop-")
	if err != nil {
		return 1, err
	}
	defer os.RemoveAll(dir)
	libringConfig = filepath.Join(dir, "libring.yaml")
	if err := os.WriteFile(libringConfig, []byte("engine: libring\n"), 0o644); err != nil {
		return 1, err
	}
	// OTP 26+ rows: libring hashes atom keys as their UTF-8 encoding there.
	libring26Config = filepath.Join(dir, "libring26.yaml")
	if err := os.WriteFile(libring26Config, []byte("engine: libring-otp26\n"), 0o644); err != nil {
		return 1, err
	}

	startGoNode()
	defer func() {
		if c := cloister.Default(); c != nil {
			_ = c.Stop()
		} else if goNode != nil {
			goNode.Stop()
		}
	}()
	code := m.Run()
	writeReport()
	return code, nil
}

// startGoNode starts this binary's cloister node in the background: its
// start blocks until 5 members are ready, which only the first row brings.
// An application listed before cloister hands the node over and spawns the
// inbox at once.
func startGoNode() {
	opts := cloister.DefaultOptions()
	opts.OTPApp = otpApp
	opts.Ring = "" // the default ring is named after OTPApp
	opts.Consensus = 5
	opts.Engine = libring.Engine()
	opts.AdditionalModules = []cloister.Child{nodetest.VoidChild()} // Void, as on the node processes
	opts.Logger = slog.New(slog.NewTextHandler(logs, nil))
	opts.Listener = listener.Func(func(from, to listener.State, s listener.Snapshot) {
		transMu.Lock()
		goInTrans = append(goInTrans, transition{string(from), string(to), time.Now(), s.Members})
		transMu.Unlock()
	})
	capApp := &captureApp{ready: make(chan struct{})}
	nopts := cloister.NodeOptions{Cookie: h.Cookie, EPMDPort: env.EPMD.Port,
		Applications: []gen.ApplicationBehavior{capApp}, Logf: logs.Logf}
	go func() {
		_, goErr = cloister.StartNode(goIn, opts, nopts)
		close(goStarted)
	}()
	select {
	case <-capApp.ready:
	case <-time.After(30 * time.Second):
		fmt.Fprintln(os.Stderr, "interop: the in-process node did not start")
	}
	// Go functions BEAM callers reach by rpc:call(goin, interop, add, [A, B]).
	for i := 0; i < 100 && cloister.Default() == nil; i++ {
		time.Sleep(20 * time.Millisecond)
	}
	if c := cloister.Default(); c != nil {
		_ = c.RegisterFunc("interop:add", func(args etf.List) (etf.Term, error) {
			var sum int64
			for _, a := range args {
				switch v := a.(type) {
				case int:
					sum += int64(v)
				case int64:
					sum += v
				default:
					return nil, fmt.Errorf("interop:add: %v is not an integer", a)
				}
			}
			return sum, nil
		})
	}
}

// awaitGoNode waits for the in-process node's first start (the first row
// brings its consensus).
func awaitGoNode(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case <-goStarted:
		if goErr != nil {
			t.Fatalf("in-process node: %v", goErr)
		}
	case <-time.After(d):
		t.Fatalf("in-process node not ready within %s: %+v", d, cloister.State())
	}
}

// captureApp runs before cloister on the in-process node: it spawns the
// inbox process the BEAM nodes' pongs go to.
type captureApp struct {
	gen.Application
	ready chan struct{}
}

func (a *captureApp) Load(args ...etf.Term) (gen.ApplicationSpec, error) {
	return gen.ApplicationSpec{Name: "interop_capture", Description: "test inbox", Version: "v1"}, nil
}

func (a *captureApp) Start(p gen.Process, args ...etf.Term) {
	n := p.Env(node.EnvKeyNode).(node.Node)
	goNode = n
	inbox = &collector{got: make(chan etf.Term, 1000)}
	var err error
	if inboxP, err = n.Spawn("interop_inbox", gen.ProcessOptions{MailboxSize: 10000}, inbox); err != nil {
		panic(err)
	}
	close(a.ready)
}

// collector hands every message it receives to the test.
type collector struct {
	gen.Server
	got chan etf.Term
}

func (c *collector) HandleInfo(p *gen.ServerProcess, m etf.Term) gen.ServerStatus {
	select {
	case c.got <- m:
	default:
	}
	return gen.ServerStatusOK
}

func (c *collector) HandleCast(p *gen.ServerProcess, m etf.Term) gen.ServerStatus {
	return c.HandleInfo(p, m)
}

func drainInbox() {
	for {
		select {
		case <-inbox.got:
		default:
			return
		}
	}
}

// pongs collects n {pong, Pid} messages and returns the nodes they came
// from, sorted; then checks nothing more arrives for a moment.
func pongs(t *testing.T, n int) []string {
	t.Helper()
	var from []string
	for len(from) < n {
		select {
		case m := <-inbox.got:
			tup, ok := m.(etf.Tuple)
			if !ok || len(tup) != 2 || tup[0] != etf.Atom("pong") {
				t.Fatalf("unexpected message %#v", m)
			}
			pid, _ := tup[1].(etf.Pid)
			from = append(from, string(pid.Node))
		case <-time.After(5 * time.Second):
			t.Fatalf("got %d pongs %v, want %d", len(from), from, n)
		}
	}
	select {
	case m := <-inbox.got:
		t.Fatalf("more than %d messages: %#v", n, m)
	case <-time.After(200 * time.Millisecond):
	}
	sort.Strings(from)
	return from
}

// beamDir compiles the testdata modules for a runtime, once.
func beamDir(t testing.TB, r erltest.Runtime) string {
	t.Helper()
	beamMu.Lock()
	defer beamMu.Unlock()
	if d, ok := beamDirs[r.Root]; ok {
		return d
	}
	d, err := env.Compile(r, "testdata/cloister_member.erl", "testdata/interop_bench.erl")
	if err != nil {
		t.Fatal(err)
	}
	beamDirs[r.Root] = d
	return d
}

// exDir compiles the Elixir model (testdata/cloister_model.ex) for a
// runtime, once.
func exDir(t testing.TB, r erltest.Runtime) string {
	t.Helper()
	beamMu.Lock()
	defer beamMu.Unlock()
	if d, ok := exDirs[r.Root]; ok {
		return d
	}
	d, err := env.Compile(r, "testdata/cloister_model.ex")
	if err != nil {
		t.Fatal(err)
	}
	exDirs[r.Root] = d
	return d
}

var exDirs = map[string]string{}

// tailBuffer keeps the last lines written to it (node logs), printed when
// something fails.
type tailBuffer struct {
	mu    sync.Mutex
	max   int
	lines []string
	part  bytes.Buffer
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.part.Write(p)
	for {
		line, err := b.part.ReadString('\n')
		if err != nil {
			b.part.Reset()
			b.part.WriteString(line)
			break
		}
		b.lines = append(b.lines, strings.TrimRight(line, "\n"))
		if len(b.lines) > b.max {
			b.lines = b.lines[len(b.lines)-b.max:]
		}
	}
	return len(p), nil
}

func (b *tailBuffer) Logf(format string, args ...interface{}) {
	fmt.Fprintf(b, "[goin] "+time.Now().Format("15:04:05.000 ")+format+"\n", args...)
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(b.lines, "\n")
}

// dumpLogsOnFailure prints the recent node logs when t failed.
func dumpLogsOnFailure(t *testing.T) {
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("recent Go node logs:\n%s", logs.String())
		}
	})
}
