// Command roles shows rings restricted by role: two worker nodes own the
// keys of a ring named jobs, and an api node, a member of the cluster like
// them, routes each job to the worker that owns it without owning any.
//
//	go run ./examples/roles
//
// The program starts its own local cluster: it re-executes itself as
// three node processes on 127.0.0.1 (`roles node ...`), worker_0 and
// worker_1 with role worker and api_0 with role api, every one with
//
//	opts.Roles = []string{role}
//	opts.Groups = []string{"jobs"}
//	opts.RingRoles = []string{"jobs=worker"} // ring jobs: only workers
//
// (the YAML keys roles, groups and ring_roles, or the flags -roles,
// -groups and -ring-roles of `cloister node`, do the same). Each worker
// runs a job server; the api node, once the jobs ring holds both workers,
// routes jobs with Whois("jobs", key) and Multicall to the owner, and each
// worker checks that it owns the job it gets. Then worker_1 is killed
// (SIGKILL): the jobs ring shrinks to worker_0 on every node, the api
// node routes every job there, and it never owns one. The program exits 0
// when both rounds held, 1 otherwise; Ctrl-C stops the nodes.
//
// The nodes find each other through an EPMD on a free port: the first node
// serves it in its process, as a cloister node does when none runs.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cloister-go/cloister"
	"github.com/ergo-services/ergo/etf"
	"github.com/ergo-services/ergo/gen"
)

// The cluster: two workers and an api node.
var (
	workers = []string{"worker_0@127.0.0.1", "worker_1@127.0.0.1"}
	api     = "api_0@127.0.0.1"
)

const (
	otpApp  = "roles"
	jobRing = "jobs"
	// jobServer is the name the workers' job server is registered under.
	jobServer = "job_server"
	cookie    = "roles"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "node" {
		os.Exit(runNode(os.Args[2:], os.Stdout, os.Stderr))
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run starts the three node processes, kills worker_1 once the api node
// has routed its first round, and waits for the second.
func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("roles", flag.ContinueOnError)
	fs.SetOutput(stderr)
	jobs := fs.Int("jobs", 200, "jobs the api node routes in each round")
	timeout := fs.Duration("timeout", 2*time.Minute, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	bin, err := os.Executable()
	if err != nil {
		fmt.Fprintln(stderr, "roles:", err)
		return 1
	}
	port, err := freePort()
	if err != nil {
		fmt.Fprintln(stderr, "roles:", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	ctx, stopSignals := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stopSignals()

	all := append(slices.Clone(workers), api)
	fmt.Fprintf(stdout, "roles: %s and %s (role worker) own ring %s; %s (role api) routes to them; epmd port %d\n",
		workers[0], workers[1], jobRing, api, port)
	out := &output{w: stdout, seen: make(chan string, 64)}
	var nodes []*node
	defer func() {
		for _, n := range nodes {
			_ = n.cmd.Process.Signal(syscall.SIGTERM)
		}
		for _, n := range nodes {
			n.waitOrKill(15 * time.Second)
		}
	}()
	for _, name := range all {
		role := "worker"
		if name == api {
			role = "api"
		}
		n, err := out.start(name, bin, "node", "-name", name, "-role", role, "-sentry", strings.Join(all, ","),
			"-epmd-port", strconv.Itoa(port), "-jobs", strconv.Itoa(*jobs))
		if err != nil {
			fmt.Fprintln(stderr, "roles:", err)
			return 1
		}
		nodes = append(nodes, n)
	}
	if err := out.await(ctx, "round 1 ok"); err != nil {
		fmt.Fprintln(stderr, "roles:", err)
		return 1
	}
	fmt.Fprintf(stdout, "roles: killing %s (SIGKILL)\n", workers[1])
	_ = nodes[1].cmd.Process.Kill()
	if err := out.await(ctx, "round 2 ok"); err != nil {
		fmt.Fprintln(stderr, "roles:", err)
		return 1
	}
	fmt.Fprintln(stdout, "roles: both rounds held; stopping the nodes")
	return 0
}

// runNode is one node of the example: a worker serving jobs, or the api
// node routing them.
func runNode(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("roles node", flag.ContinueOnError)
	fs.SetOutput(stderr)
	name := fs.String("name", "", "node name")
	role := fs.String("role", "worker", "worker or api")
	sentry := fs.String("sentry", "", "comma-separated nodes of the cluster")
	epmdPort := fs.Int("epmd-port", 4369, "EPMD port")
	jobs := fs.Int("jobs", 200, "jobs to route in each round (api)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	opts := cloister.DefaultOptions()
	opts.OTPApp = otpApp
	opts.Sentry = strings.Split(*sentry, ",")
	opts.Consensus = 2 // the api node and a worker: the cluster outlives a worker
	opts.Roles = []string{*role}
	opts.Meta = []string{"pid=" + strconv.Itoa(os.Getpid())}
	opts.Groups = []string{jobRing}
	opts.RingRoles = []string{jobRing + "=worker"} // only workers own jobs
	opts.StartTimeout = time.Minute
	opts.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if *role == "worker" {
		opts.AdditionalModules = []cloister.Child{{Name: jobServer, Child: &jobHandler{}}}
	}
	c, err := cloister.StartNode(*name, opts, cloister.NodeOptions{Cookie: cookie, EPMDPort: uint16(*epmdPort)})
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Fprintf(stdout, "ready as %s\n", *role)
	code := 0
	if *role == "api" {
		code = routeRounds(ctx, c, *jobs, stdout)
	}
	<-ctx.Done()
	if err := c.Stop(); err != nil {
		fmt.Fprintln(stderr, err)
	}
	return code
}

// jobHandler is the workers' job server: {job, Key} is answered with {done,
// ThisNode, Owned}, Owned telling whether this worker's own jobs ring
// names it the owner of Key (every node computes the same ring).
type jobHandler struct{ gen.Server }

// HandleCall answers a job.
func (s *jobHandler) HandleCall(p *gen.ServerProcess, from gen.ServerFrom, req etf.Term) (etf.Term, gen.ServerStatus) {
	t, ok := req.(etf.Tuple)
	if !ok || len(t) != 2 || t[0] != etf.Atom("job") {
		return etf.Atom("badarg"), gen.ServerStatusOK
	}
	key, _ := t[1].(string)
	owner, err := cloister.Whois(jobRing, key)
	return etf.Tuple{etf.Atom("done"), etf.Atom(p.NodeName()), err == nil && owner == p.NodeName()}, gen.ServerStatusOK
}

// routeRounds is the api node: round 1 once the jobs ring holds both
// workers, round 2 once it holds one (after the kill). It returns 1 if a
// round failed.
func routeRounds(ctx context.Context, c *cloister.Cluster, n int, stdout io.Writer) int {
	for round, want := range [][]string{workers, workers[:1]} {
		if !awaitRing(ctx, c, want) {
			return 0 // stopped before the round
		}
		printMembers(c, stdout)
		counts, err := route(c, n, round+1)
		if err != nil {
			fmt.Fprintf(stdout, "round %d FAILED: %v\n", round+1, err)
			return 1
		}
		fmt.Fprintf(stdout, "round %d ok: %d jobs routed by %s, each to the worker owning it: %s\n", round+1, n, c.Name(), counts)
	}
	return 0
}

// awaitRing waits until the jobs ring's members are want (false: ctx
// ended first).
func awaitRing(ctx context.Context, c *cloister.Cluster, want []string) bool {
	for !slices.Equal(c.State().Rings[jobRing].Members, want) {
		select {
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// printMembers prints every member with its roles and metadata, as
// State() has them.
func printMembers(c *cloister.Cluster, stdout io.Writer) {
	s := c.State()
	fmt.Fprintf(stdout, "members of ring %s: %v; of ring %s: %v\n", s.OTPApp, s.Rings[otpApp].Members, jobRing, s.Rings[jobRing].Members)
	for _, m := range s.Members {
		var meta []string
		for k, v := range s.Meta[m] {
			meta = append(meta, k+"="+v)
		}
		sort.Strings(meta)
		fmt.Fprintf(stdout, "  %s roles %v meta %v\n", m, s.Roles[m], meta)
	}
}

// route sends n jobs, each to the owner Whois names in the jobs ring,
// checks that the owner answered and agrees it owns the job, and returns
// the jobs per worker. Right after a change a worker may not yet have the
// api node's ring (a member's removal reaches every node within moments,
// not at once): a job it does not own yet is asked again, for up to 10 s.
func route(c *cloister.Cluster, n, round int) (string, error) {
	per := map[string]int{}
	again := 0
	for i := range n {
		key := fmt.Sprintf("job-%d-%d", round, i)
		for deadline := time.Now().Add(10 * time.Second); ; again++ {
			owner, owned, err := send(c, key)
			if err != nil {
				return "", err
			}
			if owned {
				per[owner]++
				break
			}
			if time.Now().After(deadline) {
				return "", fmt.Errorf("job %s: %s does not own it by its own ring", key, owner)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	var parts []string
	for _, w := range workers {
		if per[w] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", w, per[w]))
		}
	}
	counts := strings.Join(parts, ", ")
	if again > 0 {
		counts += fmt.Sprintf(" (%d sent again while the rings converged)", again)
	}
	return counts, nil
}

// send routes one job to its owner and returns the owner and whether it
// owns the job by its own ring.
func send(c *cloister.Cluster, key string) (owner string, owned bool, err error) {
	owner, err = c.Whois(jobRing, key)
	if err != nil {
		return "", false, err
	}
	if owner == c.Name() || !slices.Contains(workers, owner) {
		return "", false, fmt.Errorf("job %s owned by %s, not a worker", key, owner)
	}
	rs, err := c.Multicall([]string{owner}, jobServer, etf.Tuple{etf.Atom("job"), key}, 5*time.Second)
	if err != nil {
		return "", false, err
	}
	if rs[0].Err != nil {
		return "", false, fmt.Errorf("job %s on %s: %w", key, owner, rs[0].Err)
	}
	reply, _ := rs[0].Reply.(etf.Tuple)
	if len(reply) != 3 || reply[0] != etf.Atom("done") || reply[1] != etf.Atom(owner) {
		return "", false, fmt.Errorf("job %s: %s answered %v, want {done, %s, Owned}", key, owner, rs[0].Reply, owner)
	}
	return owner, reply[2] == true, nil
}

// output prefixes each line of the nodes' output with the node's name and
// hands their stdout lines to await.
type output struct {
	mu   sync.Mutex
	w    io.Writer
	seen chan string
}

// node is one node process.
type node struct {
	cmd  *exec.Cmd
	read sync.WaitGroup // its output, read to the end before Wait
}

// start runs a node process with its output copied, prefixed.
func (o *output) start(name, bin string, args ...string) (*node, error) {
	n := &node{cmd: exec.Command(bin, args...)}
	stdout, err := n.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := n.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := n.cmd.Start(); err != nil {
		return nil, err
	}
	short, _, _ := strings.Cut(name, "@")
	n.read.Add(2)
	go o.copy(&n.read, short, stdout, true)
	go o.copy(&n.read, short, stderr, false)
	return n, nil
}

func (o *output) copy(wg *sync.WaitGroup, short string, r io.Reader, watch bool) {
	defer wg.Done()
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		o.mu.Lock()
		fmt.Fprintf(o.w, "[%s] %s\n", short, sc.Text())
		o.mu.Unlock()
		if watch {
			select {
			case o.seen <- sc.Text():
			default: // nobody waits for this one
			}
		}
	}
}

// await waits for a stdout line starting with prefix (a FAILED round ends
// the wait at once).
func (o *output) await(ctx context.Context, prefix string) error {
	for {
		select {
		case s := <-o.seen:
			if strings.HasPrefix(s, prefix) {
				return nil
			}
			if strings.Contains(s, "FAILED") {
				return errors.New(s)
			}
		case <-ctx.Done():
			return fmt.Errorf("no %q: %w", prefix, ctx.Err())
		}
	}
}

// waitOrKill waits for the process to exit, and kills it after d.
func (n *node) waitOrKill(d time.Duration) {
	done := make(chan struct{})
	go func() { n.read.Wait(); _ = n.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		_ = n.cmd.Process.Kill()
		<-done
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
