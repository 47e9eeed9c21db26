// Package erltest runs real Erlang and Elixir nodes for tests: a private
// epmd, nodes started as child processes (from the host's OTP or from a
// Debian chroot holding another OTP release), Erlang test modules compiled
// at test time, and expressions evaluated on a node with their result read
// back as text. Everything it starts is stopped by PID, also when a test
// fails; the nodes die with the test binary (PDEATHSIG).
//
// Results are written by the node with io_lib:format("~tw"), so they are
// exact Erlang terms without pretty-printing: {reply,42,'go@127.0.0.1'},
// strings as lists of integers, binaries as <<...>>.
package erltest

import (
	"bufio"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cloister-go/cloister/internal/testenv"
)

//go:embed erl/erltest_ctl.erl
var ctlSource []byte

// DefaultTimeout bounds Eval, node start and compilation.
const DefaultTimeout = 30 * time.Second

// CacheDir is where tests/otp/chroots.sh puts the OTP chroots by default.
const CacheDir = "/var/cache/cloister-otp"

// ErrNoRuntime is returned when a requested Erlang runtime is not installed.
var ErrNoRuntime = errors.New("erltest: erlang runtime not available")

// Runtime is an Erlang installation: the host's (Root empty) or the one in
// a chroot directory, run as `chroot Root env ... erl ...`.
type Runtime struct {
	// Root is the chroot directory; empty for the host.
	Root string
	// Release is the OTP major release ("25", "27", ...), filled by Probe.
	Release string
}

// Host is the host's Erlang installation.
func Host() Runtime { return Runtime{} }

// Chroot returns the runtime of the chroot built by tests/otp/chroots.sh
// for OTP version (e.g. "27") under $CLOISTER_OTP_CACHE (default CacheDir),
// or ErrNoRuntime when that chroot is missing or incomplete.
func Chroot(version string) (Runtime, error) {
	cache := os.Getenv("CLOISTER_OTP_CACHE")
	if cache == "" {
		cache = CacheDir
	}
	dir := filepath.Join(cache, version)
	if _, err := os.Stat(filepath.Join(dir, ".cloister-ok")); err != nil {
		return Runtime{}, fmt.Errorf("%w: no OTP %s chroot in %s (run tests/otp/chroots.sh as root)", ErrNoRuntime, version, dir)
	}
	if os.Geteuid() != 0 {
		return Runtime{}, fmt.Errorf("%w: OTP %s chroot needs root to enter", ErrNoRuntime, version)
	}
	return Runtime{Root: dir, Release: version}, nil
}

// String names the runtime for test logs: "OTP 27 (/var/cache/...)".
func (r Runtime) String() string {
	where := "host"
	if r.Root != "" {
		where = r.Root
	}
	return fmt.Sprintf("OTP %s (%s)", r.Release, where)
}

// command builds a command that runs bin inside the runtime with env added.
func (r Runtime) command(env []string, bin string, args ...string) *exec.Cmd {
	var cmd *exec.Cmd
	if r.Root == "" {
		cmd = exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), env...)
	} else {
		a := append([]string{r.Root, "env"}, env...)
		a = append(a, bin)
		cmd = exec.Command("chroot", append(a, args...)...)
		// a minimal environment inside: the host's may point at host paths
		cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/root", "LANG=C.UTF-8"}
	}
	// own process group and death with the test binary
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	return cmd
}

// Probe checks that erl runs in the runtime and fills Release.
func (r Runtime) Probe() (Runtime, error) {
	cmd := r.command(nil, "erl", "-noshell", "-eval",
		`io:format("~s", [erlang:system_info(otp_release)]), halt().`)
	out, err := runBounded(cmd, DefaultTimeout)
	if err != nil {
		return r, fmt.Errorf("%w: %s: erl: %v: %s", ErrNoRuntime, r, err, out)
	}
	r.Release = strings.TrimSpace(string(out))
	return r, nil
}

// runBounded runs cmd to completion, killing its process group after d.
func runBounded(cmd *exec.Cmd, d time.Duration) ([]byte, error) {
	var buf strings.Builder
	cmd.Stdout = &buf
	cmd.Stderr = &buf
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return []byte(buf.String()), err
	case <-time.After(d):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		return []byte(buf.String()), fmt.Errorf("timed out after %v", d)
	}
}

// Env is one test environment: a private epmd, a cookie, and the nodes and
// scratch directories started from it. Close releases everything.
type Env struct {
	EPMD   *testenv.EPMD
	Cookie string

	mu    sync.Mutex
	nodes []*Node
	dirs  []string          // host paths to remove on Close
	ctl   map[string]string // runtime root -> dir holding erltest_ctl.beam
}

// NewEnv starts a private epmd. Cookie "" means "erltest".
func NewEnv(cookie string) (*Env, error) {
	if cookie == "" {
		cookie = "erltest"
	}
	e, err := testenv.StartEPMD()
	if err != nil {
		return nil, err
	}
	return &Env{EPMD: e, Cookie: cookie, ctl: map[string]string{}}, nil
}

// Close stops every node started from the environment, then the epmd, and
// removes the scratch directories.
func (e *Env) Close() {
	e.mu.Lock()
	nodes := e.nodes
	dirs := e.dirs
	e.nodes, e.dirs = nil, nil
	e.mu.Unlock()
	for _, n := range nodes {
		n.Stop()
	}
	e.EPMD.Stop()
	for _, d := range dirs {
		_ = os.RemoveAll(d)
	}
}

// Compile compiles the Erlang sources (host paths) with the runtime's erlc,
// and Elixir sources (".ex") with its elixirc, into a fresh directory and returns that directory as the runtime sees it
// (inside the chroot for a chroot runtime), ready for NodeOptions.Paths.
func (e *Env) Compile(r Runtime, sources ...string) (string, error) {
	// the control module rides along the first time: one erlc run less
	e.mu.Lock()
	_, have := e.ctl[r.Root]
	e.mu.Unlock()
	if have {
		return e.compile(r, sources, nil)
	}
	d, err := e.compile(r, sources, map[string][]byte{"erltest_ctl.erl": ctlSource})
	if err != nil {
		return "", err
	}
	e.mu.Lock()
	if _, have := e.ctl[r.Root]; !have {
		e.ctl[r.Root] = d
	}
	e.mu.Unlock()
	return d, nil
}

func (e *Env) compile(r Runtime, sources []string, embedded map[string][]byte) (string, error) {
	base := os.TempDir()
	if r.Root != "" {
		base = filepath.Join(r.Root, "tmp")
	}
	hostDir, err := os.MkdirTemp(base, "erltest-")
	if err != nil {
		return "", err
	}
	e.mu.Lock()
	e.dirs = append(e.dirs, hostDir)
	e.mu.Unlock()
	seen := hostDir
	if r.Root != "" {
		seen = "/tmp/" + filepath.Base(hostDir)
	}
	var names []string
	for _, src := range sources {
		b, err := os.ReadFile(src)
		if err != nil {
			return "", err
		}
		name := filepath.Base(src)
		if err := os.WriteFile(filepath.Join(hostDir, name), b, 0o644); err != nil {
			return "", err
		}
		names = append(names, name)
	}
	for name, b := range embedded {
		if err := os.WriteFile(filepath.Join(hostDir, name), b, 0o644); err != nil {
			return "", err
		}
		names = append(names, name)
	}
	// Erlang sources with erlc, Elixir ones (.ex) with elixirc
	var erls, exs []string
	for _, n := range names {
		if strings.HasSuffix(n, ".ex") {
			exs = append(exs, seen+"/"+n)
		} else {
			erls = append(erls, seen+"/"+n)
		}
	}
	for _, c := range []struct {
		bin   string
		files []string
	}{{"erlc", erls}, {"elixirc", exs}} {
		if len(c.files) == 0 {
			continue
		}
		args := append([]string{"-o", seen}, c.files...)
		out, err := runBounded(r.command(nil, c.bin, args...), 2*DefaultTimeout)
		if err != nil {
			return "", fmt.Errorf("erltest: %s %v in %s: %v: %s", c.bin, c.files, r, err, out)
		}
	}
	return seen, nil
}

// ctlDir compiles the control module once per runtime.
func (e *Env) ctlDir(r Runtime) (string, error) {
	e.mu.Lock()
	d, ok := e.ctl[r.Root]
	e.mu.Unlock()
	if ok {
		return d, nil
	}
	d, err := e.compile(r, nil, map[string][]byte{"erltest_ctl.erl": ctlSource})
	if err != nil {
		return "", err
	}
	e.mu.Lock()
	e.ctl[r.Root] = d
	e.mu.Unlock()
	return d, nil
}

// NodeOptions choose how a node is started.
type NodeOptions struct {
	// Runtime is the Erlang installation; zero value: the host's.
	Runtime Runtime
	// Elixir starts `elixir --name` instead of `erl -name`.
	Elixir bool
	// Paths are code paths as the runtime sees them (from Compile).
	Paths []string
	// Args are extra erl arguments (e.g. "-kernel", "net_ticktime", "20").
	Args []string
}

// Node is a running erl or elixir node driven through its stdio.
type Node struct {
	// Name is the full node name, e.g. "a1b2_x@127.0.0.1".
	Name string
	// Release is the node's OTP release as it reported it.
	Release string

	cmd   *exec.Cmd
	stdin io.WriteCloser

	mu      sync.Mutex
	next    int
	waiting map[string]chan string
	output  strings.Builder
	exited  chan struct{}
	stopped bool
}

// StartNode starts a long-named node name@127.0.0.1 (name gets a random
// prefix so concurrent test runs never collide) and waits until its control
// process is up.
func (e *Env) StartNode(name string, o NodeOptions) (*Node, error) {
	ctl, err := e.ctlDir(o.Runtime)
	if err != nil {
		return nil, err
	}
	full := fmt.Sprintf("%s_%04x@127.0.0.1", name, rand.Intn(1<<16))
	env := []string{"ERL_EPMD_PORT=" + strconv.Itoa(int(e.EPMD.Port))}
	paths := append([]string{ctl}, o.Paths...)
	var cmd *exec.Cmd
	if o.Elixir {
		erlArgs := append([]string{"-start_epmd false -noshell"}, o.Args...)
		args := []string{"--name", full, "--cookie", e.Cookie, "--erl", strings.Join(erlArgs, " ")}
		for _, p := range paths {
			args = append(args, "-pa", p)
		}
		args = append(args, "--no-halt", "-e", ":erltest_ctl.start()")
		cmd = o.Runtime.command(env, "elixir", args...)
	} else {
		args := []string{"-noshell", "-start_epmd", "false", "-name", full, "-setcookie", e.Cookie}
		for _, p := range paths {
			args = append(args, "-pa", p)
		}
		args = append(args, o.Args...)
		args = append(args, "-s", "erltest_ctl", "start")
		cmd = o.Runtime.command(env, "erl", args...)
	}
	n := &Node{Name: full, cmd: cmd, waiting: map[string]chan string{}, exited: make(chan struct{})}
	n.stdin, err = cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = cmd.Stdout // same pipe: everything is read by one reader
	ready := make(chan string, 1)
	n.waiting["READY"] = ready
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("erltest: start %s in %s: %w", full, o.Runtime, err)
	}
	e.mu.Lock()
	e.nodes = append(e.nodes, n)
	e.mu.Unlock()
	go n.read(stdout)
	go func() { _ = cmd.Wait(); close(n.exited) }()
	select {
	case line := <-ready:
		f := strings.Fields(line)
		if len(f) >= 2 {
			n.Release = f[1]
		}
		return n, nil
	case <-n.exited:
		return nil, fmt.Errorf("erltest: node %s exited during start: %s", full, n.Output())
	case <-time.After(DefaultTimeout):
		n.Stop()
		return nil, fmt.Errorf("erltest: node %s did not start within %v: %s", full, DefaultTimeout, n.Output())
	}
}

// read demultiplexes the node's output: protocol lines (prefixed \x01) go
// to the waiting Eval, everything else into Output.
func (n *Node) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 64*1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "\x01") {
			n.mu.Lock()
			if n.output.Len() < 1<<20 {
				n.output.WriteString(line)
				n.output.WriteByte('\n')
			}
			n.mu.Unlock()
			continue
		}
		line = line[1:]
		var key, rest string
		switch {
		case strings.HasPrefix(line, "READY "):
			key, rest = "READY", strings.TrimPrefix(line, "READY ")
		case strings.HasPrefix(line, "R "):
			f := strings.SplitN(strings.TrimPrefix(line, "R "), " ", 2)
			key = f[0]
			if len(f) == 2 {
				rest = f[1]
			}
		}
		n.mu.Lock()
		ch := n.waiting[key]
		delete(n.waiting, key)
		n.mu.Unlock()
		if ch != nil {
			ch <- rest
		}
	}
}

// Output is what the node printed besides protocol lines (logs, reports).
func (n *Node) Output() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.output.String()
}

// EvalError is an Erlang exception raised by an evaluated expression.
type EvalError struct {
	Node, Expr string
	// Exception is "Class:Reason" as written by ~tw.
	Exception string
}

func (e *EvalError) Error() string {
	return fmt.Sprintf("erltest: %s raised %s evaluating %s", e.Node, e.Exception, e.Expr)
}

// Eval evaluates Erlang expressions (e.g. "X = 1, X + 1") on the node and
// returns the value written with ~tw. An exception comes back as
// *EvalError. Bounded by DefaultTimeout.
func (n *Node) Eval(expr string) (string, error) {
	return n.EvalTimeout(expr, DefaultTimeout)
}

// EvalTimeout is Eval with a caller-chosen bound.
func (n *Node) EvalTimeout(expr string, d time.Duration) (string, error) {
	expr = strings.TrimSpace(strings.ReplaceAll(strings.ReplaceAll(expr, "\r", " "), "\n", " "))
	if !strings.HasSuffix(expr, ".") {
		expr += "."
	}
	n.mu.Lock()
	if n.stopped {
		n.mu.Unlock()
		return "", fmt.Errorf("erltest: node %s is stopped", n.Name)
	}
	n.next++
	id := strconv.Itoa(n.next)
	ch := make(chan string, 1)
	n.waiting[id] = ch
	n.mu.Unlock()
	if _, err := io.WriteString(n.stdin, id+" "+expr+"\n"); err != nil {
		return "", fmt.Errorf("erltest: write to %s: %w", n.Name, err)
	}
	select {
	case res := <-ch:
		if v, ok := strings.CutPrefix(res, "ok "); ok {
			return v, nil
		}
		return "", &EvalError{Node: n.Name, Expr: expr, Exception: strings.TrimPrefix(res, "error ")}
	case <-n.exited:
		return "", fmt.Errorf("erltest: node %s exited evaluating %s: %s", n.Name, expr, n.Output())
	case <-time.After(d):
		n.mu.Lock()
		delete(n.waiting, id)
		n.mu.Unlock()
		return "", fmt.Errorf("erltest: %s: no answer within %v to %s", n.Name, d, expr)
	}
}

// MustEval is Eval for expressions that must succeed; it panics otherwise
// (use from TestMain-style setup; tests should check Eval's error).
func (n *Node) MustEval(expr string) string {
	v, err := n.Eval(expr)
	if err != nil {
		panic(err)
	}
	return v
}

// Pid is the OS process id of the node (the chroot/env/erl chain execs into
// one process, so it is beam's).
func (n *Node) Pid() int { return n.cmd.Process.Pid }

// Kill sends SIGKILL to the node's process group: an abrupt node death.
func (n *Node) Kill() {
	_ = syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
	<-n.exited
}

// Stop ends the node: end of input first (the control module halts), then
// SIGKILL to its process group after 5 s. Safe to call twice.
func (n *Node) Stop() {
	n.mu.Lock()
	if n.stopped {
		n.mu.Unlock()
		<-n.exited
		return
	}
	n.stopped = true
	n.mu.Unlock()
	_ = n.stdin.Close()
	select {
	case <-n.exited:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
		<-n.exited
	}
	// erl_child_setup and friends share the group; make sure none is left
	_ = syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
}

// Exited is closed when the node's OS process has exited.
func (n *Node) Exited() <-chan struct{} { return n.exited }
