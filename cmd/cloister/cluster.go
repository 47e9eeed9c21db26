package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cloister-go/cloister/internal/config"
	"github.com/cloister-go/cloister/internal/localcluster"
	"github.com/cloister-go/cloister/listener"
)

// runInit writes the commented configuration file.
func runInit(args []string) int {
	fs := flag.NewFlagSet("cloister init", flag.ContinueOnError)
	out := fs.String("o", "cloister.yaml", "file to write")
	force := fs.Bool("f", false, "overwrite an existing file")
	if err := fs.Parse(args); err != nil {
		return 2
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

// localCluster is N node processes on 127.0.0.1 with a private epmd.
type localCluster struct {
	h     *localcluster.Harness
	nodes []*localcluster.Node
	names []string
}

func startLocal(n, consensus int, prefix string, extra []string) (*localCluster, error) {
	bin, err := os.Executable()
	if err != nil {
		return nil, err
	}
	h, err := localcluster.New(bin, localcluster.Options{})
	if err != nil {
		return nil, err
	}
	lc := &localCluster{h: h, names: localcluster.Names(prefix, n)}
	for _, name := range lc.names {
		node, err := h.Start(localcluster.Spec{Name: name, Sentry: lc.names, Consensus: consensus, Args: extra})
		if err != nil {
			h.Close()
			return nil, err
		}
		lc.nodes = append(lc.nodes, node)
	}
	return lc, nil
}

func (lc *localCluster) waitReady(timeout time.Duration) error {
	for _, n := range lc.nodes {
		e, err := n.WaitStarted(timeout)
		if err != nil {
			return err
		}
		if e.Event == "error" {
			return fmt.Errorf("%s: %s", n.Name, e.Error)
		}
		// The listener reports states off the Monitor's goroutine, so
		// "started" can be read before the change to ready that caused it.
		if _, err := n.WaitFor(timeout, "its listener told of ready", func(e localcluster.Event) bool {
			return e.Event == "state" && e.To == "ready"
		}); err != nil {
			return err
		}
	}
	return nil
}

// stop stops every node in order (SIGTERM), then the epmd.
func (lc *localCluster) stop() {
	for _, n := range lc.nodes {
		if n.Running() {
			_ = n.Stop()
		}
	}
	lc.h.Close()
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

type clusterFlags struct {
	n, consensus *int
	prefix       *string
	wait         *time.Duration
}

func addClusterFlags(fs *flag.FlagSet) clusterFlags {
	return clusterFlags{
		n:         fs.Int("n", 3, "number of nodes"),
		consensus: fs.Int("consensus", 0, "consensus (default: n)"),
		prefix:    fs.String("prefix", "cloister", "node names are PREFIX_i@127.0.0.1"),
		wait:      fs.Duration("wait", time.Minute, "how long to wait for the cluster to be ready"),
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
	return nil
}

// runRun is `cloister run -n N [-- program args...]`: a local cluster of
// the built-in node (state changes streamed), or N copies of the user's
// program told their node name, peers and epmd through the environment;
// Ctrl-C stops them all.
func runRun(args []string) int {
	fs := flag.NewFlagSet("cloister run", flag.ContinueOnError)
	cf := addClusterFlags(fs)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), `usage: cloister run [flags] [-- program args...]

Without a program, runs N built-in nodes and prints their state changes.
With a program, runs it N times with CLOISTER_NODE, CLOISTER_SENTRY,
CLOISTER_CONSENSUS, CLOISTER_COOKIE and ERL_EPMD_PORT set, each output line
prefixed with its node name. Ctrl-C stops everything.`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := cf.check(); err != nil {
		fmt.Fprintln(os.Stderr, "cloister run:", err)
		return 2
	}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	if fs.NArg() > 0 {
		return runProgram(fs.Args(), cf, sigs)
	}
	lc, err := startLocal(*cf.n, *cf.consensus, *cf.prefix, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cloister run:", err)
		return 1
	}
	defer lc.stop()
	stop := make(chan struct{})
	events := newEventStream(lc.nodes)
	go events.run(stop)
	defer close(stop)
	err = lc.waitReady(*cf.wait)
	// The changes that led here are printed before the verdict, not after.
	events.flush()
	if err != nil {
		fmt.Fprintln(os.Stderr, "cloister run:", err)
		return 1
	}
	fmt.Printf("cloister run: %d nodes ready (epmd port %d, cookie %s); Ctrl-C stops them\n", *cf.n, lc.h.EPMD.Port, lc.h.Cookie)
	for _, kv := range lc.env() {
		fmt.Println("  " + kv)
	}
	<-sigs
	fmt.Println("cloister run: stopping")
	return 0
}

// eventStream prints the nodes' state changes, each once, in the order
// each node reported them.
type eventStream struct {
	mu    sync.Mutex
	nodes []*localcluster.Node
	seen  map[*localcluster.Node]int
}

func newEventStream(nodes []*localcluster.Node) *eventStream {
	return &eventStream{nodes: nodes, seen: map[*localcluster.Node]int{}}
}

// flush prints what arrived since the last flush.
func (s *eventStream) flush() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.nodes {
		evs := n.Events()
		for _, e := range evs[min(s.seen[n], len(evs)):] {
			if e.Event == "state" {
				printChange(n.Name, e.From, e.To, e.Snapshot)
			}
		}
		s.seen[n] = len(evs)
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

func printChange(node, from, to string, s listener.Snapshot) {
	fmt.Printf("%s %-22s %-10s -> %-10s members %d/%d [%s]\n", time.Now().Format("15:04:05.000"), node, from, to,
		len(s.Members), s.Consensus, strings.Join(s.Members, " "))
}

func runProgram(argv []string, cf clusterFlags, sigs chan os.Signal) int {
	bin, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "cloister run:", err)
		return 1
	}
	h, err := localcluster.New(bin, localcluster.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "cloister run:", err)
		return 1
	}
	defer h.Close()
	names := localcluster.Names(*cf.prefix, *cf.n)
	var cmds []*exec.Cmd
	var wg sync.WaitGroup
	exits := make(chan struct{}, len(names))
	for _, name := range names {
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Env = append(os.Environ(),
			"CLOISTER_NODE="+name, "CLOISTER_SENTRY="+strings.Join(names, ","),
			"CLOISTER_CONSENSUS="+strconv.Itoa(*cf.consensus), "CLOISTER_COOKIE="+h.Cookie,
			"ERL_EPMD_PORT="+strconv.Itoa(int(h.EPMD.Port)))
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		stdout, _ := cmd.StdoutPipe()
		stderr, _ := cmd.StderrPipe()
		if err := cmd.Start(); err != nil {
			fmt.Fprintf(os.Stderr, "cloister run: start %s: %v\n", argv[0], err)
			for _, c := range cmds {
				_ = c.Process.Kill()
			}
			return 1
		}
		cmds = append(cmds, cmd)
		for _, r := range []io.Reader{stdout, stderr} {
			wg.Add(1)
			go func(r io.Reader, name string) {
				defer wg.Done()
				sc := bufio.NewScanner(r)
				for sc.Scan() {
					fmt.Printf("[%s] %s\n", name, sc.Text())
				}
			}(r, name)
		}
		go func(c *exec.Cmd) {
			_ = c.Wait()
			exits <- struct{}{}
		}(cmd)
	}
	code := 0
	select {
	case <-sigs:
	case <-exits:
		fmt.Fprintln(os.Stderr, "cloister run: a node exited; stopping the others")
		code = 1
	}
	for _, c := range cmds {
		_ = c.Process.Signal(syscall.SIGTERM)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		for _, c := range cmds {
			_ = c.Process.Kill()
		}
	}
	return code
}

// runTest is `cloister test -n N -- command...`: the command (say, go test
// ./...) runs with a local cluster up; CLOISTER_CLUSTER_NODES,
// CLOISTER_CLUSTER_HTTP (their /status endpoints), CLOISTER_COOKIE and
// ERL_EPMD_PORT tell it how to reach the cluster. Its exit code is ours.
func runTest(args []string) int {
	fs := flag.NewFlagSet("cloister test", flag.ContinueOnError)
	cf := addClusterFlags(fs)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: cloister test [flags] -- command args...")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	if err := cf.check(); err != nil {
		fmt.Fprintln(os.Stderr, "cloister test:", err)
		return 2
	}
	lc, err := startLocal(*cf.n, *cf.consensus, *cf.prefix, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cloister test:", err)
		return 1
	}
	defer lc.stop()
	if err := lc.waitReady(*cf.wait); err != nil {
		fmt.Fprintln(os.Stderr, "cloister test:", err)
		return 1
	}
	cmd := exec.Command(fs.Arg(0), fs.Args()[1:]...)
	cmd.Env = append(os.Environ(), lc.env()...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		fmt.Fprintln(os.Stderr, "cloister test:", err)
		return 1
	}
	return 0
}
