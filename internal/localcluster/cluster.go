// Package localcluster runs cloister nodes as OS processes on 127.0.0.1
// against one epmd, reads the events they print and asks their HTTP
// endpoints: the engine behind `cloister run`, `cloister test` and
// `cloister demo`, and behind the public test harness (cloistertest).
//
// A node is a program that understands `node -name N -cookie C -epmd-port P
// -http 127.0.0.1:0 -events [-sentry …] [-consensus K] …` (the `cloister`
// command, or a test's own node program), prints its events as JSON lines
// on stdout (Printer) and serves /status and /whois over HTTP. The same
// program answers `epmd -port P` (EPMDMain), the fallback when Erlang's
// epmd is not installed.
package localcluster

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cloister-go/cloister/internal/testenv"
	"github.com/cloister-go/cloister/listener"
)

// Event is one line a node process prints.
type Event struct {
	// Event is "listening", "started", "state", "removed", "leaving",
	// "error" or "stopped".
	Event string `json:"event"`
	// Member and Reason: a "removed" event's member and removal reason.
	Member   string            `json:"member,omitempty"`
	Reason   string            `json:"reason,omitempty"`
	Node     string            `json:"node,omitempty"`
	From     string            `json:"from,omitempty"`
	To       string            `json:"to,omitempty"`
	HTTP     string            `json:"http,omitempty"`
	Error    string            `json:"error,omitempty"`
	Snapshot listener.Snapshot `json:"snapshot,omitempty"`
	// At is when the node printed it (Unix nanoseconds).
	At int64 `json:"at"`
	// Seen is when the harness read it.
	Seen time.Time `json:"-"`
}

// Spec describes one node process.
type Spec struct {
	Name      string
	Sentry    []string
	Service   string
	DNSServer string
	Consensus int
	OTPApp    string
	// StartTimeout fails the node's start when consensus is not reached
	// in time (0: wait forever).
	StartTimeout time.Duration
	// Args are extra flags for the node command.
	Args []string
	Env  []string
}

// DefaultCookie is the cookie of a private cluster when none is given.
const DefaultCookie = "cloister"

// Options say how the nodes of a Harness meet.
type Options struct {
	// Cookie is the distribution cookie of every node (default
	// DefaultCookie).
	Cookie string
	// EPMDPort is the epmd the nodes register with: an epmd already
	// listening there is used, else one is started on it for the
	// harness's life. 0: a private epmd on a free port.
	EPMDPort uint16
}

// Harness owns an epmd and the node processes started through it.
type Harness struct {
	// Bin is the node program.
	Bin string
	// EPMD is the epmd the nodes use; its Stop does nothing when it was
	// already running (not ours to stop).
	EPMD   *testenv.EPMD
	Cookie string
	// Logs receives every line a node writes to stderr (nil: discarded
	// unless CLOISTER_TEST_LOGS=1, then os.Stderr).
	Logs io.Writer
	// ExtraArgs, when set, adds flags to a node's command line at every
	// launch (restarts included).
	ExtraArgs func(name string) []string

	mu    sync.Mutex
	nodes map[string]*Node
}

// New returns an empty harness whose nodes run bin. Its epmd is the
// system's `epmd` when installed, else `bin epmd` (see Options.EPMDPort).
func New(bin string, o Options) (*Harness, error) {
	if o.Cookie == "" {
		o.Cookie = DefaultCookie
	}
	var e *testenv.EPMD
	var err error
	switch {
	case o.EPMDPort == 0:
		if e, err = testenv.StartEPMD(); err != nil {
			e, err = testenv.StartEPMDWith(bin, "epmd")
		}
	case listening(o.EPMDPort):
		e = &testenv.EPMD{Port: o.EPMDPort}
	default:
		if e, err = testenv.StartEPMDOn(o.EPMDPort, ""); err != nil {
			e, err = testenv.StartEPMDOn(o.EPMDPort, bin, "epmd")
		}
	}
	if err != nil {
		return nil, err
	}
	h := &Harness{Bin: bin, EPMD: e, Cookie: o.Cookie, nodes: map[string]*Node{}}
	if os.Getenv("CLOISTER_TEST_LOGS") == "1" {
		h.Logs = os.Stderr
	}
	return h, nil
}

func listening(port uint16) bool {
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))), time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// Names returns n node names prefix_0@127.0.0.1 … prefix_<n-1>@127.0.0.1.
func Names(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s_%d@127.0.0.1", prefix, i)
	}
	return out
}

// Nodes lists the node processes started, in no particular order.
func (h *Harness) Nodes() []*Node {
	h.mu.Lock()
	defer h.mu.Unlock()
	nodes := make([]*Node, 0, len(h.nodes))
	for _, n := range h.nodes {
		nodes = append(nodes, n)
	}
	return nodes
}

// Close kills every node process, then stops the epmd if it started it.
func (h *Harness) Close() {
	h.KillAll()
	h.EPMD.Stop()
}

// KillAll kills every node process (SIGKILL) and waits for them.
func (h *Harness) KillAll() {
	for _, n := range h.Nodes() {
		n.Kill()
	}
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
	n := &Node{h: h, spec: s, Name: s.Name}
	if err := n.launch(); err != nil {
		return nil, err
	}
	h.mu.Lock()
	h.nodes[s.Name] = n
	h.mu.Unlock()
	return n, nil
}

// Node is one node process.
type Node struct {
	Name string
	h    *Harness
	spec Spec

	mu      sync.Mutex
	cmd     *exec.Cmd
	events  []Event
	changed chan struct{}
	http    string
	exited  chan struct{}
	tail    tailBuffer // the end of stderr, over every launch
}

func (s Spec) args(h *Harness) []string {
	a := []string{"node", "-name", s.Name, "-cookie", h.Cookie, "-epmd-port", strconv.Itoa(int(h.EPMD.Port)),
		"-http", "127.0.0.1:0", "-events"}
	if len(s.Sentry) > 0 {
		a = append(a, "-sentry", strings.Join(s.Sentry, ","))
	}
	if s.Service != "" {
		a = append(a, "-service", s.Service)
	}
	if s.DNSServer != "" {
		a = append(a, "-dns-server", s.DNSServer)
	}
	if s.Consensus > 0 {
		a = append(a, "-consensus", strconv.Itoa(s.Consensus))
	}
	if s.OTPApp != "" {
		a = append(a, "-otp-app", s.OTPApp)
	}
	if s.StartTimeout > 0 {
		a = append(a, "-start-timeout", s.StartTimeout.String())
	}
	if h.ExtraArgs != nil {
		a = append(a, h.ExtraArgs(s.Name)...)
	}
	return append(a, s.Args...)
}

func (n *Node) launch() error {
	cmd := exec.Command(n.h.Bin, n.spec.args(n.h)...)
	cmd.Env = append(os.Environ(), n.spec.Env...)
	// Own process group, and killed if the test process dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	// The end of stderr is always kept (LogTail), so a failing test can
	// show what a node said even when logs are not streamed.
	cmd.Stderr = &n.tail
	if n.h.Logs != nil {
		cmd.Stderr = io.MultiWriter(&n.tail, prefixWriter{n.Name, n.h.Logs})
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("localcluster: start %s: %w", n.Name, err)
	}
	n.mu.Lock()
	n.cmd = cmd
	n.events = nil
	n.http = ""
	n.changed = make(chan struct{})
	n.exited = make(chan struct{})
	exited := n.exited
	n.mu.Unlock()
	go n.read(out, cmd, exited)
	return nil
}

func (n *Node) read(r io.Reader, cmd *exec.Cmd, exited chan struct{}) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e Event
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			continue
		}
		e.Seen = time.Now()
		n.mu.Lock()
		if n.cmd != cmd {
			n.mu.Unlock()
			continue
		}
		n.events = append(n.events, e)
		if e.Event == "listening" {
			n.http = e.HTTP
		}
		close(n.changed)
		n.changed = make(chan struct{})
		n.mu.Unlock()
	}
	_ = cmd.Wait()
	close(exited)
	n.mu.Lock()
	if n.cmd == cmd {
		close(n.changed)
		n.changed = make(chan struct{})
	}
	n.mu.Unlock()
}

// Pid is the OS process id of the running node (0 when none).
func (n *Node) Pid() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil || n.cmd.Process == nil {
		return 0
	}
	return n.cmd.Process.Pid
}

func (n *Node) signal(sig syscall.Signal) error {
	pid := n.Pid()
	// Never signal a pid that was reaped: the number may be reused.
	if pid == 0 || !n.Running() {
		return errors.New("localcluster: " + n.Name + " is not running")
	}
	return syscall.Kill(pid, sig)
}

// Kill sends SIGKILL (kill -9) and waits for the process to be gone.
func (n *Node) Kill() {
	n.mu.Lock()
	exited := n.exited
	n.mu.Unlock()
	if n.signal(syscall.SIGKILL) == nil && exited != nil {
		<-exited
	}
}

// Stop asks for an orderly shutdown (SIGTERM) and waits up to 10 s.
func (n *Node) Stop() error {
	n.mu.Lock()
	exited := n.exited
	n.mu.Unlock()
	if err := n.signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-exited:
		return nil
	case <-time.After(10 * time.Second):
		n.Kill()
		return errors.New("localcluster: " + n.Name + " did not stop on SIGTERM in 10s")
	}
}

// Leave sends SIGUSR1, on which the node leaves the cluster gracefully
// (cloister's Leave) and stops, and waits for the process to exit.
func (n *Node) Leave() error {
	n.mu.Lock()
	exited := n.exited
	n.mu.Unlock()
	if err := n.signal(syscall.SIGUSR1); err != nil {
		return err
	}
	select {
	case <-exited:
		return nil
	case <-time.After(30 * time.Second):
		n.Kill()
		return errors.New("localcluster: " + n.Name + " did not leave and stop in 30s")
	}
}

// Freeze stops the process (SIGSTOP); Thaw resumes it (SIGCONT).
func (n *Node) Freeze() error { return n.signal(syscall.SIGSTOP) }

// Thaw resumes a frozen process.
func (n *Node) Thaw() error { return n.signal(syscall.SIGCONT) }

// Restart starts the node again with the same spec (after Kill or Stop).
func (n *Node) Restart() error {
	if n.Pid() != 0 && n.Running() {
		n.Kill()
	}
	return n.launch()
}

// Running reports whether the process has not exited.
func (n *Node) Running() bool {
	n.mu.Lock()
	ex := n.exited
	n.mu.Unlock()
	if ex == nil {
		return false
	}
	select {
	case <-ex:
		return false
	default:
		return true
	}
}

// Events returns the events printed by the current process so far.
func (n *Node) Events() []Event {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]Event(nil), n.events...)
}

// Transitions lists "from>to" for every state event so far.
func (n *Node) Transitions() []string {
	var out []string
	for _, e := range n.Events() {
		if e.Event == "state" {
			out = append(out, e.From+">"+e.To)
		}
	}
	return out
}

// WaitFor waits until an event of the current process (one already seen
// included) satisfies ok, and returns it.
func (n *Node) WaitFor(timeout time.Duration, what string, ok func(Event) bool) (Event, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	seen := 0
	for {
		n.mu.Lock()
		evs := n.events
		ch := n.changed
		ex := n.exited
		n.mu.Unlock()
		for ; seen < len(evs); seen++ {
			if ok(evs[seen]) {
				return evs[seen], nil
			}
		}
		select {
		case <-ch:
		case <-ex:
			n.mu.Lock()
			more := len(n.events) > seen
			n.mu.Unlock()
			if !more {
				return Event{}, fmt.Errorf("localcluster: %s exited while waiting for %s", n.Name, what)
			}
		case <-deadline.C:
			return Event{}, fmt.Errorf("localcluster: %s: no %s within %s (transitions %v)", n.Name, what, timeout, n.Transitions())
		}
	}
}

// WaitStarted waits until the node's start returned (the gate opened).
func (n *Node) WaitStarted(timeout time.Duration) (Event, error) {
	return n.WaitFor(timeout, "start", func(e Event) bool { return e.Event == "started" || e.Event == "error" })
}

// WaitTransition waits for a state change into to (from "" = any), counting
// only events after the first skip state events.
func (n *Node) WaitTransition(timeout time.Duration, from, to string, after time.Time) (Event, error) {
	return n.WaitFor(timeout, from+">"+to, func(e Event) bool {
		return e.Event == "state" && e.To == to && (from == "" || e.From == from) && !e.Seen.Before(after)
	})
}

// CaughtUp waits until the node's last state event read so far shows the
// state and members its /status shows now. /status changes with the
// Monitor, events come later (the listener runs apart from it, and the
// harness reads them from a pipe), so a test that takes "now" right after a
// WaitStatus may still receive an older transition after it; waiting here
// first makes WaitTransition(…, after) see only newer ones.
func (n *Node) CaughtUp(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		s, err := n.Status()
		if err == nil {
			evs := n.Events()
			i := len(evs) - 1
			for i >= 0 && evs[i].Event != "state" {
				i--
			}
			if i >= 0 && evs[i].To == string(s.State) && slices.Equal(evs[i].Snapshot.Members, s.Members) {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("localcluster: %s: events did not catch up with /status in %s (err %v)", n.Name, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// HTTPAddr is the node's health/status endpoint address ("" until known).
func (n *Node) HTTPAddr() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.http
}

// Status asks the node's /status endpoint.
func (n *Node) Status() (listener.Snapshot, error) {
	n.mu.Lock()
	addr := n.http
	n.mu.Unlock()
	if addr == "" {
		return listener.Snapshot{}, errors.New("localcluster: " + n.Name + " has no status endpoint yet")
	}
	c := http.Client{Timeout: 2 * time.Second}
	r, err := c.Get("http://" + addr + "/status")
	if err != nil {
		return listener.Snapshot{}, err
	}
	defer r.Body.Close()
	var s listener.Snapshot
	return s, json.NewDecoder(r.Body).Decode(&s)
}

// Join asks the node to add peer at run time (POST /join).
func (n *Node) Join(peer string) error {
	addr := n.HTTPAddr()
	if addr == "" {
		return errors.New("localcluster: " + n.Name + " has no http endpoint yet")
	}
	c := http.Client{Timeout: 5 * time.Second}
	r, err := c.Post("http://"+addr+"/join?node="+url.QueryEscape(peer), "text/plain", nil)
	if err != nil {
		return err
	}
	defer r.Body.Close()
	if r.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(r.Body)
		return fmt.Errorf("localcluster: join %s on %s: %s: %s", peer, n.Name, r.Status, strings.TrimSpace(string(b)))
	}
	return nil
}

// WaitStatus polls /status until ok holds.
func (n *Node) WaitStatus(timeout time.Duration, what string, ok func(listener.Snapshot) bool) (listener.Snapshot, error) {
	deadline := time.Now().Add(timeout)
	var last listener.Snapshot
	var lastErr error
	for time.Now().Before(deadline) {
		s, err := n.Status()
		if err == nil && ok(s) {
			return s, nil
		}
		last, lastErr = s, err
		time.Sleep(20 * time.Millisecond)
	}
	return last, fmt.Errorf("localcluster: %s: %s not reached in %s (last: %v, err %v)", n.Name, what, timeout, last, lastErr)
}

// tailKeep is how much of a node's stderr LogTail keeps.
const tailKeep = 256 << 10

// tailBuffer keeps the last tailKeep bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tailBuffer) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, b...)
	if over := len(t.buf) - tailKeep; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(b), nil
}

// LogTail returns the last lines the node's processes wrote to stderr (up
// to 256 KiB, across restarts), for a failing test to print.
func (n *Node) LogTail() string {
	n.tail.mu.Lock()
	defer n.tail.mu.Unlock()
	s := string(n.tail.buf)
	if i := strings.IndexByte(s, '\n'); i >= 0 && len(n.tail.buf) == tailKeep {
		s = s[i+1:] // drop the partial first line
	}
	return s
}

// LastLines returns the last n lines of s (a LogTail or DumpStacks
// output), for a failing test to print a bounded amount.
func LastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// DumpStacks makes a running node print every goroutine's stack to stderr
// (SIGQUIT: the Go runtime dumps them and the process exits), waits for it
// to exit, and returns LogTail. For diagnosing a stuck node in a failing
// test; the node is gone afterwards.
func (n *Node) DumpStacks(timeout time.Duration) string {
	n.mu.Lock()
	ex := n.exited
	n.mu.Unlock()
	if n.signal(syscall.SIGQUIT) == nil && ex != nil {
		select {
		case <-ex:
		case <-time.After(timeout):
		}
	}
	return n.LogTail()
}

type prefixWriter struct {
	name string
	w    io.Writer
}

func (p prefixWriter) Write(b []byte) (int, error) {
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if line != "" {
			fmt.Fprintf(p.w, "[%s] %s", p.name, line)
		}
	}
	return len(b), nil
}

// Whois asks the node's /whois endpoint for the owner of key in group
// ("" = the default ring).
func (n *Node) Whois(group, key string) (string, error) {
	n.mu.Lock()
	addr := n.http
	n.mu.Unlock()
	if addr == "" {
		return "", errors.New("localcluster: " + n.Name + " has no HTTP endpoint yet")
	}
	c := http.Client{Timeout: 2 * time.Second}
	r, err := c.Get("http://" + addr + "/whois?" + url.Values{"key": {key}, "group": {group}}.Encode())
	if err != nil {
		return "", err
	}
	defer r.Body.Close()
	var res struct{ Owner, Error string }
	if err := json.NewDecoder(r.Body).Decode(&res); err != nil {
		return "", err
	}
	if res.Error != "" {
		return "", errors.New(res.Error)
	}
	return res.Owner, nil
}
