package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cloister-go/cloister/internal/wire/distfilter"
	"github.com/cloister-go/cloister/internal/wire/ergonode"
	"github.com/ergo-services/ergo/etf"
	"github.com/ergo-services/ergo/gen"
	"github.com/ergo-services/ergo/node"
)

// The baseline: raw Ergo nodes started with the options cloister.StartNode
// uses (the distribution filter included) that only connect to each other.
// Each pair is dialled once, by the node whose name sorts first, so the
// mesh forms without the simultaneous-connect collisions of two nodes
// dialling each other. This is the floor a full mesh of Ergo nodes costs.

// rawEvent is one line a raw node prints.
type rawEvent struct {
	Event string `json:"event"` // "mesh" (connected to every peer) or "down"
	Node  string `json:"node,omitempty"`
	At    int64  `json:"at"`
}

// rawNodeMain runs one raw node until SIGTERM or SIGINT: it dials the
// peers that sort after it until connected, prints "mesh" once connected
// to all of them, and "down" for every link that drops.
func rawNodeMain(name, peerList, cookie string, epmdPort uint16) int {
	var peers []string
	for _, p := range strings.Split(peerList, ",") {
		if p != "" && p != name {
			peers = append(peers, p)
		}
	}
	nopts := ergonode.Options{Cookie: cookie, EPMDPort: epmdPort}
	distfilter.Options{}.Apply(&nopts)
	n, err := ergonode.Start(name, nopts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "raw node:", err)
		return 1
	}
	defer n.Stop()
	var mu sync.Mutex
	enc := json.NewEncoder(os.Stdout)
	print := func(e rawEvent) {
		e.At = time.Now().UnixNano()
		mu.Lock()
		defer mu.Unlock()
		_ = enc.Encode(e)
	}
	w := &rawWatcher{want: len(peers), print: print, up: map[string]bool{}, node: n}
	if _, err := n.Spawn("", gen.ProcessOptions{MailboxSize: 4096}, w); err != nil {
		fmt.Fprintln(os.Stderr, "raw node:", err)
		return 1
	}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		// Dial until every peer we own the link to is connected; then stop.
		for {
			have := map[string]bool{}
			for _, c := range n.Nodes() {
				have[c] = true
			}
			missing := 0
			for _, p := range peers {
				if p > name && !have[p] {
					missing++
					_ = n.Connect(p)
				}
			}
			if missing == 0 {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	<-sigs
	return 0
}

// rawWatcher prints the mesh and link-down events of a raw node.
type rawWatcher struct {
	gen.Server
	node  node.Node
	want  int
	up    map[string]bool
	mesh  bool
	print func(rawEvent)
}

func (w *rawWatcher) Init(p *gen.ServerProcess, args ...etf.Term) error {
	if err := p.MonitorEvent(node.EventNetwork); err != nil {
		return err
	}
	// Links that came up before the subscription (peers dial as soon as
	// the name is registered).
	for _, c := range w.node.Nodes() {
		w.up[c] = true
	}
	w.check()
	return nil
}

func (w *rawWatcher) check() {
	if !w.mesh && len(w.up) >= w.want {
		w.mesh = true
		w.print(rawEvent{Event: "mesh"})
	}
}

func (w *rawWatcher) HandleInfo(p *gen.ServerProcess, m etf.Term) gen.ServerStatus {
	e, ok := m.(node.MessageEventNetwork)
	if !ok {
		return gen.ServerStatusOK
	}
	if !e.Online {
		delete(w.up, e.PeerName)
		w.print(rawEvent{Event: "down", Node: e.PeerName})
		return gen.ServerStatusOK
	}
	w.up[e.PeerName] = true
	w.check()
	return gen.ServerStatusOK
}

// rawProc is a raw node process run by the benchmark.
type rawProc struct {
	name string
	cmd  *exec.Cmd
	mu   sync.Mutex
	evs  []rawEvent
	chg  chan struct{}
	done chan struct{}
}

func startRaw(self, name string, peers []string, cookie string, epmdPort uint16) (*rawProc, error) {
	cmd := exec.Command(self, "-raw-node", name, "-raw-peers", strings.Join(peers, ","),
		"-raw-cookie", cookie, "-raw-epmd-port", strconv.Itoa(int(epmdPort)))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	// Ergo's own warnings (dials to peers not up yet) are the baseline's
	// business; the benchmark reports what the events say.
	cmd.Stderr = nil
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	r := &rawProc{name: name, cmd: cmd, chg: make(chan struct{}), done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var e rawEvent
			if json.Unmarshal(sc.Bytes(), &e) != nil {
				continue
			}
			r.mu.Lock()
			r.evs = append(r.evs, e)
			close(r.chg)
			r.chg = make(chan struct{})
			r.mu.Unlock()
		}
		_ = cmd.Wait()
		close(r.done)
	}()
	return r, nil
}

func (r *rawProc) pid() int { return r.cmd.Process.Pid }

// wait returns the first event satisfying ok.
func (r *rawProc) wait(timeout time.Duration, what string, ok func(rawEvent) bool) (rawEvent, error) {
	deadline := time.After(timeout)
	seen := 0
	for {
		r.mu.Lock()
		evs, ch := r.evs, r.chg
		r.mu.Unlock()
		for ; seen < len(evs); seen++ {
			if ok(evs[seen]) {
				return evs[seen], nil
			}
		}
		select {
		case <-ch:
		case <-r.done:
			return rawEvent{}, fmt.Errorf("raw node %s exited while waiting for %s", r.name, what)
		case <-deadline:
			return rawEvent{}, fmt.Errorf("raw node %s: no %s within %s", r.name, what, timeout)
		}
	}
}

// kill sends SIGKILL and waits until the process is reaped.
func (r *rawProc) kill() {
	_ = r.cmd.Process.Kill()
	<-r.done
}

// rawRound starts n raw nodes and measures the mesh's assembly, its idle
// cost over steady, and the link-down floor of a kill -9.
func rawRound(epmdPort uint16, cookie string, n, r int, steady time.Duration) (res roundResult, err error) {
	self, err := os.Executable()
	if err != nil {
		return res, err
	}
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("raw%d_%d_%d_%d@127.0.0.1", n, runTag, r, i)
	}
	var procs []*rawProc
	defer func() {
		for _, p := range procs {
			p.kill()
		}
	}()
	var lastStart time.Time
	for _, nm := range names {
		p, err := startRaw(self, nm, names, cookie, epmdPort)
		if err != nil {
			return res, err
		}
		lastStart = time.Now()
		procs = append(procs, p)
	}
	var meshAt time.Time
	for _, p := range procs {
		e, err := p.wait(120*time.Second, "mesh", func(e rawEvent) bool { return e.Event == "mesh" })
		if err != nil {
			return res, err
		}
		if at := time.Unix(0, e.At); at.After(meshAt) {
			meshAt = at
		}
	}
	res.assembly = meshAt.Sub(lastStart)
	pids := make([]int, len(procs))
	for i, p := range procs {
		pids[i] = p.pid()
	}
	if res.asmCPU, res.asmWrites, err = meanCPU(pids); err != nil {
		return res, err
	}
	if steady > 0 {
		time.Sleep(settle)
		downs := func() int {
			c := 0
			for _, p := range procs {
				p.mu.Lock()
				for _, e := range p.evs {
					if e.Event == "down" {
						c++
					}
				}
				p.mu.Unlock()
			}
			return c
		}
		before := downs()
		if res.idle, err = measureIdle(pids, steady); err != nil {
			return res, err
		}
		res.idle.changes = downs() - before
	}
	victim := procs[n/2]
	var survivors []int
	for _, p := range procs {
		if p != victim {
			survivors = append(survivors, p.pid())
		}
	}
	var cpu0 time.Duration
	if traceAssembly {
		cpu0, _, _ = meanCPU(survivors)
	}
	killed := time.Now()
	victim.kill()
	var worst time.Duration
	for _, p := range procs {
		if p == victim {
			continue
		}
		e, err := p.wait(30*time.Second, "down of "+victim.name, func(e rawEvent) bool {
			return e.Event == "down" && e.Node == victim.name
		})
		if err != nil {
			return res, err
		}
		if d := time.Unix(0, e.At).Sub(killed); d > worst {
			worst = d
		}
	}
	res.kill = worst
	if traceAssembly {
		traceKillCPU("raw", n, survivors, cpu0)
	}
	return res, nil
}

// idle is what a steady window costs the nodes.
type idle struct {
	window  time.Duration
	cpuPct  float64 // mean CPU per node, percent of one core
	rssMiB  float64 // median RSS per node at the end
	changes int     // membership changes (cloister) or link drops (raw) seen in the window, all nodes
}

// measureIdle reads the processes' CPU time (utime+stime) before and after
// window, and their RSS at the end.
func measureIdle(pids []int, window time.Duration) (idle, error) {
	t0, err := cpuTicks(pids)
	if err != nil {
		return idle{}, err
	}
	start := time.Now()
	time.Sleep(window)
	t1, err := cpuTicks(pids)
	if err != nil {
		return idle{}, err
	}
	el := time.Since(start)
	var rss []float64
	for _, pid := range pids {
		kb, err := rssKiB(pid)
		if err != nil {
			return idle{}, err
		}
		rss = append(rss, float64(kb)/1024)
	}
	sort.Float64s(rss)
	const hz = 100 // USER_HZ on Linux
	secs := float64(t1-t0) / hz
	return idle{window: el, cpuPct: 100 * secs / el.Seconds() / float64(len(pids)), rssMiB: rss[len(rss)/2]}, nil
}

func cpuTicks(pids []int) (int64, error) {
	var sum int64
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return 0, err
		}
		s := string(b)
		// Fields after the command name (which may hold spaces) in parens.
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		sum += ut + st
	}
	return sum, nil
}

func rssKiB(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			return strconv.ParseInt(f[1], 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}
