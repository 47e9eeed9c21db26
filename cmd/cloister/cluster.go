package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cloister-go/cloister/internal/config"
	"github.com/cloister-go/cloister/internal/localcluster"
	"github.com/cloister-go/cloister/internal/nodecmd"
)

// exitInterrupted is the exit code of a command stopped by SIGINT or
// SIGTERM before it finished its job (the shell's 128+SIGINT).
const exitInterrupted = 130

// interrupts returns a context cancelled on the first SIGINT or SIGTERM;
// a second one while stopping exits at once.
func interrupts() (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		select {
		case <-sigs:
		case <-done:
			return
		}
		cancel()
		select {
		case <-sigs:
			fmt.Fprintln(os.Stderr, "cloister: second signal: exiting now")
			os.Exit(exitInterrupted)
		case <-done:
		}
	}()
	return ctx, func() { signal.Stop(sigs); close(done); cancel() }
}

// runInit writes the commented configuration file.
func runInit(args []string) int {
	fs := flag.NewFlagSet("cloister init", flag.ContinueOnError)
	out := fs.String("o", "cloister.yaml", "file to write")
	force := fs.Bool("f", false, "overwrite an existing file")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: cloister init [-o FILE] [-f]\n\nWrites a commented configuration file for `cloister node -config`.")
		fs.PrintDefaults()
	}
	if code, done := nodecmd.ParseFlags(fs, args); done {
		return code
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(os.Stderr, "cloister init: unexpected arguments %q\n", fs.Args())
		return 2
	}
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if *force {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(*out, flags, 0o644)
	if err != nil {
		fmt.Fprintf(os.Stderr, "cloister init: %v (use -f to overwrite)\n", err)
		return 1
	}
	if _, err := f.WriteString(config.Template); err != nil {
		f.Close()
		fmt.Fprintln(os.Stderr, "cloister init:", err)
		return 1
	}
	if err := f.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "cloister init:", err)
		return 1
	}
	fmt.Printf("wrote %s; check it with `cloister node -config %s -check`\n", *out, *out)
	return 0
}

// clusterFlags are the flags of the commands that run a local cluster.
type clusterFlags struct {
	n, consensus, epmdPort *int
	prefix, cookie         *string
	wait                   *time.Duration
}

func addClusterFlags(fs *flag.FlagSet, n, consensus int, prefix string) clusterFlags {
	return clusterFlags{
		n:         fs.Int("n", n, "number of nodes"),
		consensus: fs.Int("consensus", consensus, "members needed for ready (0: n)"),
		prefix:    fs.String("prefix", prefix, "node names are PREFIX_i@127.0.0.1"),
		wait:      fs.Duration("wait", time.Minute, "how long to wait for the cluster to be ready"),
		cookie:    fs.String("cookie", nodecmd.Cookie(), "distribution cookie, from $CLOISTER_COOKIE when set"),
		epmdPort:  fs.Int("epmd-port", nodecmd.EPMDPort(), "EPMD port, from $ERL_EPMD_PORT when set (a running epmd is used, else one is started)"),
	}
}

func (c clusterFlags) check() error {
	if *c.n < 1 {
		return errors.New("-n must be ≥ 1")
	}
	if *c.consensus == 0 {
		*c.consensus = *c.n
	}
	if *c.consensus < 1 || *c.consensus > *c.n {
		return fmt.Errorf("-consensus must be between 1 and -n (%d)", *c.n)
	}
	if *c.epmdPort < 1 || *c.epmdPort > 65535 {
		return fmt.Errorf("-epmd-port %d: want 1-65535", *c.epmdPort)
	}
	return nil
}

// harness starts (or joins) the epmd the nodes will use.
func (c clusterFlags) harness() (*localcluster.Harness, error) {
	bin, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return localcluster.New(bin, localcluster.Options{Cookie: *c.cookie, EPMDPort: uint16(*c.epmdPort)})
}

// localCluster is N `cloister node` processes on 127.0.0.1.
type localCluster struct {
	h     *localcluster.Harness
	nodes []*localcluster.Node
	names []string
}

func startLocal(cf clusterFlags) (*localCluster, error) {
	h, err := cf.harness()
	if err != nil {
		return nil, err
	}
	lc := &localCluster{h: h, names: localcluster.Names(*cf.prefix, *cf.n)}
	for _, name := range lc.names {
		node, err := h.Start(localcluster.Spec{Name: name, Sentry: lc.names, Consensus: *cf.consensus})
		if err != nil {
			h.Close()
			return nil, err
		}
		lc.nodes = append(lc.nodes, node)
	}
	return lc, nil
}

// waitReady waits until every node has reported ready, or ctx ends.
func (lc *localCluster) waitReady(ctx context.Context, timeout time.Duration) error {
	done := make(chan error, 1)
	go func() {
		for _, n := range lc.nodes {
			e, err := n.WaitStarted(timeout)
			if err != nil {
				done <- fmt.Errorf("%w\n%s", err, indent(localcluster.LastLines(n.LogTail(), 5)))
				return
			}
			if e.Event == "error" {
				done <- fmt.Errorf("%s: %s", n.Name, e.Error)
				return
			}
			// The listener reports states off the Monitor's goroutine, so
			// "started" can be read before the change to ready that caused it.
			if _, err := n.WaitFor(timeout, "its listener told of ready", func(e localcluster.Event) bool {
				return e.Event == "state" && e.To == "ready"
			}); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// stop stops every node at once, each in order (SIGTERM: stopping →
// stopped), then the epmd if the cluster started it.
func (lc *localCluster) stop() {
	stopAll(lc.h)
	lc.h.Close()
}

// stopAll sends SIGTERM to every running node and waits for them.
func stopAll(h *localcluster.Harness) {
	var wg sync.WaitGroup
	for _, n := range h.Nodes() {
		if n.Running() {
			wg.Add(1)
			go func() { defer wg.Done(); _ = n.Stop() }()
		}
	}
	wg.Wait()
}

func (lc *localCluster) env() []string {
	var https []string
	for _, n := range lc.nodes {
		https = append(https, n.HTTPAddr())
	}
	return []string{
		"CLOISTER_CLUSTER_NODES=" + strings.Join(lc.names, ","),
		"CLOISTER_CLUSTER_HTTP=" + strings.Join(https, ","),
		"CLOISTER_COOKIE=" + lc.h.Cookie,
		"ERL_EPMD_PORT=" + strconv.Itoa(int(lc.h.EPMD.Port)),
	}
}

// banner says where the cluster is and how to reach it.
func banner(w io.Writer, prog string, h *localcluster.Harness, names []string, consensus int) {
	fmt.Fprintf(w, "%s: %d nodes, consensus %d, epmd port %d, cookie %s\n", prog, len(names), consensus, h.EPMD.Port, h.Cookie)
	fmt.Fprintf(w, "  nodes: %s\n", strings.Join(names, " "))
	status := "cloister status " + names[0]
	if h.EPMD.Port != nodecmd.DefaultEPMDPort || os.Getenv("ERL_EPMD_PORT") != "" {
		status = fmt.Sprintf("ERL_EPMD_PORT=%d %s", h.EPMD.Port, status)
	}
	if h.Cookie != nodecmd.DefaultCookie || os.Getenv("CLOISTER_COOKIE") != "" {
		status = "CLOISTER_COOKIE=" + h.Cookie + " " + status
	}
	fmt.Fprintf(w, "  ask one: %s\n", status)
}

// runRun is `cloister run -n N [-- program args...]`: a local cluster of
// the built-in node (state changes streamed), or N copies of the user's
// program told their node name, peers and epmd through the environment;
// Ctrl-C stops them all.
func runRun(args []string) int {
	fs := flag.NewFlagSet("cloister run", flag.ContinueOnError)
	cf := addClusterFlags(fs, 3, 0, "cloister")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), `usage: cloister run [flags] [-- program args...]

Without a program, runs N built-in nodes and prints their state changes.
With a program, runs it N times with CLOISTER_NODE, CLOISTER_SENTRY,
CLOISTER_CONSENSUS, CLOISTER_COOKIE and ERL_EPMD_PORT set, each output line
prefixed with its node name. The nodes use the same cookie and epmd port as
'cloister status' and 'cloister whois' by default. Ctrl-C stops everything.`)
		fs.PrintDefaults()
	}
	if code, done := nodecmd.ParseFlags(fs, args); done {
		return code
	}
	if err := cf.check(); err != nil {
		fmt.Fprintln(os.Stderr, "cloister run:", err)
		return 2
	}
	ctx, stop := interrupts()
	defer stop()
	if fs.NArg() > 0 {
		return runProgram(ctx, fs.Args(), cf)
	}
	lc, err := startLocal(cf)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cloister run:", err)
		return 1
	}
	defer lc.stop()
	banner(os.Stdout, "cloister run", lc.h, lc.names, *cf.consensus)
	events := newEventStream(lc.h)
	streaming := make(chan struct{})
	go events.run(streaming)
	err = lc.waitReady(ctx, *cf.wait)
	// The changes that led here are printed before the verdict, not after.
	lc.catchUp()
	close(streaming)
	events.flush()
	if ctx.Err() != nil {
		fmt.Println("cloister run: interrupted: stopping the nodes")
		return exitInterrupted
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "cloister run:", err)
		return 1
	}
	fmt.Printf("cloister run: %d nodes ready; Ctrl-C stops them\n", *cf.n)
	for _, kv := range lc.env() {
		fmt.Println("  " + kv)
	}
	streaming = make(chan struct{})
	go events.run(streaming)
	<-ctx.Done()
	close(streaming)
	fmt.Println("cloister run: stopping")
	return 0
}

// catchUp waits (briefly) until every node's events show what its /status
// shows, so a verdict is printed after the changes that led to it.
func (lc *localCluster) catchUp() {
	for _, n := range lc.nodes {
		if n.Running() {
			_ = n.CaughtUp(2 * time.Second)
		}
	}
}

// eventStream prints the nodes' state changes, each once, in the order
// they happened (by the nodes' own timestamps).
type eventStream struct {
	mu   sync.Mutex
	h    *localcluster.Harness
	seen map[*localcluster.Node]int
	pids map[*localcluster.Node]int
}

func newEventStream(h *localcluster.Harness) *eventStream {
	return &eventStream{h: h, seen: map[*localcluster.Node]int{}, pids: map[*localcluster.Node]int{}}
}

// flush prints what arrived since the last flush.
func (s *eventStream) flush() {
	s.mu.Lock()
	defer s.mu.Unlock()
	type change struct {
		node string
		e    localcluster.Event
	}
	var out []change
	for _, n := range s.h.Nodes() {
		if pid := n.Pid(); pid != s.pids[n] {
			s.pids[n], s.seen[n] = pid, 0 // a restarted process starts a new event list
		}
		evs := n.Events()
		for _, e := range evs[min(s.seen[n], len(evs)):] {
			if e.Event == "state" {
				out = append(out, change{n.Name, e})
			}
		}
		s.seen[n] = len(evs)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].e.At < out[j].e.At })
	for _, c := range out {
		printChange(c.node, c.e)
	}
}

// run flushes every 20 ms until stop is closed.
func (s *eventStream) run(stop chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case <-time.After(20 * time.Millisecond):
		}
		s.flush()
	}
}

// printChange prints one state change with the time the node saw it.
func printChange(node string, e localcluster.Event) {
	at := e.Seen
	if e.At != 0 {
		at = time.Unix(0, e.At)
	}
	fmt.Printf("%s %-22s %-10s -> %-10s members %d/%d [%s]\n", at.Format("15:04:05.000"), node, e.From, e.To,
		len(e.Snapshot.Members), e.Snapshot.Consensus, strings.Join(e.Snapshot.Members, " "))
}

func indent(s string) string {
	if s == "" {
		return "  (no output)"
	}
	return "  " + strings.ReplaceAll(s, "\n", "\n  ")
}

// progNode is one copy of the user's program under `cloister run --`.
type progNode struct {
	name    string
	cmd     *exec.Cmd
	tail    *lineTail
	readers sync.WaitGroup
}

// lineTail keeps the last lines a program wrote.
type lineTail struct {
	mu    sync.Mutex
	lines []string
}

func (t *lineTail) add(l string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lines = append(t.lines, l)
	if len(t.lines) > 10 {
		t.lines = t.lines[len(t.lines)-10:]
	}
}

func (t *lineTail) last() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.lines...)
}

func runProgram(ctx context.Context, argv []string, cf clusterFlags) int {
	h, err := cf.harness()
	if err != nil {
		fmt.Fprintln(os.Stderr, "cloister run:", err)
		return 1
	}
	defer h.Close()
	names := localcluster.Names(*cf.prefix, *cf.n)
	banner(os.Stdout, "cloister run", h, names, *cf.consensus)
	fmt.Printf("  program: %s\n", strings.Join(argv, " "))
	var nodes []*progNode
	var out sync.Mutex // one line at a time on stdout
	type exit struct {
		p   *progNode
		err error
	}
	exits := make(chan exit, len(names))
	for _, name := range names {
		p := &progNode{name: name, tail: &lineTail{}}
		p.cmd = exec.Command(argv[0], argv[1:]...)
		p.cmd.Env = append(os.Environ(),
			"CLOISTER_NODE="+name, "CLOISTER_SENTRY="+strings.Join(names, ","),
			"CLOISTER_CONSENSUS="+strconv.Itoa(*cf.consensus), "CLOISTER_COOKIE="+h.Cookie,
			"ERL_EPMD_PORT="+strconv.Itoa(int(h.EPMD.Port)))
		p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		stdout, _ := p.cmd.StdoutPipe()
		stderr, _ := p.cmd.StderrPipe()
		if err := p.cmd.Start(); err != nil {
			fmt.Fprintf(os.Stderr, "cloister run: start %s: %v\n", argv[0], err)
			for _, q := range nodes {
				_ = q.cmd.Process.Kill()
			}
			return 1
		}
		nodes = append(nodes, p)
		for _, r := range []io.Reader{stdout, stderr} {
			p.readers.Add(1)
			go func(r io.Reader) {
				defer p.readers.Done()
				sc := bufio.NewScanner(r)
				sc.Buffer(make([]byte, 64<<10), 1<<20)
				for sc.Scan() {
					p.tail.add(sc.Text())
					out.Lock()
					fmt.Printf("[%s] %s\n", p.name, sc.Text())
					out.Unlock()
				}
			}(r)
		}
		go func() {
			// Every line read before Wait, which closes the pipes.
			p.readers.Wait()
			exits <- exit{p, p.cmd.Wait()}
		}()
	}
	code := 0
	running := len(nodes)
	select {
	case <-ctx.Done():
		fmt.Println("cloister run: stopping the nodes (SIGTERM)")
	case e := <-exits:
		running--
		out.Lock()
		fmt.Fprintf(os.Stderr, "cloister run: node %s exited (%s); stopping the others\n", e.p.name, exitStatus(e.err))
		if last := e.p.tail.last(); len(last) > 0 {
			fmt.Fprintf(os.Stderr, "cloister run: last lines of %s:\n", e.p.name)
			for _, l := range last {
				fmt.Fprintf(os.Stderr, "  %s\n", l)
			}
		}
		out.Unlock()
		code = 1
	}
	for _, p := range nodes {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	deadline := time.After(10 * time.Second)
	for ; running > 0; running-- {
		select {
		case <-exits:
		case <-deadline:
			fmt.Fprintln(os.Stderr, "cloister run: nodes still running 10s after SIGTERM: killing them")
			for _, p := range nodes {
				_ = p.cmd.Process.Kill()
			}
			return 1
		}
	}
	return code
}

// exitStatus describes how a program ended.
func exitStatus(err error) string {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return "exit status 0"
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return "killed by " + ws.Signal().String()
		}
		return fmt.Sprintf("exit status %d", ee.ExitCode())
	default:
		return err.Error()
	}
}

// runTest is `cloister test -n N -- command...`: the command (say, go test
// ./...) runs with a local cluster up; CLOISTER_CLUSTER_NODES,
// CLOISTER_CLUSTER_HTTP (their /status endpoints), CLOISTER_COOKIE and
// ERL_EPMD_PORT tell it how to reach the cluster. Its exit code is ours.
func runTest(args []string) int {
	fs := flag.NewFlagSet("cloister test", flag.ContinueOnError)
	cf := addClusterFlags(fs, 3, 0, "cloister")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), `usage: cloister test [flags] -- command args...

Runs the command with a local N-node cluster up, telling it the cluster
through CLOISTER_CLUSTER_NODES, CLOISTER_CLUSTER_HTTP, CLOISTER_COOKIE and
ERL_EPMD_PORT; its exit code is cloister test's.`)
		fs.PrintDefaults()
	}
	if code, done := nodecmd.ParseFlags(fs, args); done {
		return code
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "cloister test: no command (cloister test [flags] -- command args...)")
		return 2
	}
	if err := cf.check(); err != nil {
		fmt.Fprintln(os.Stderr, "cloister test:", err)
		return 2
	}
	ctx, stop := interrupts()
	defer stop()
	lc, err := startLocal(cf)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cloister test:", err)
		return 1
	}
	defer lc.stop()
	if err := lc.waitReady(ctx, *cf.wait); err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(os.Stderr, "cloister test: interrupted: stopping the nodes")
			return exitInterrupted
		}
		fmt.Fprintln(os.Stderr, "cloister test:", err)
		return 1
	}
	cmd := exec.Command(fs.Arg(0), fs.Args()[1:]...)
	cmd.Env = append(os.Environ(), lc.env()...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "cloister test:", err)
		return 1
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err = <-waited:
	case <-ctx.Done():
		// Passed on (a terminal's Ctrl-C reaches it too); it has 5 s.
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err = <-waited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			err = <-waited
		}
	}
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			if ee.ExitCode() < 0 {
				return exitInterrupted
			}
			return ee.ExitCode()
		}
		fmt.Fprintln(os.Stderr, "cloister test:", err)
		return 1
	}
	return 0
}
