// Command cluster measures a cloister cluster of real node processes on
// 127.0.0.1 (the `cloister node` binary) side by side with the floor: raw
// Ergo nodes started with the same options that only connect to each other
// (a full mesh, see raw.go). Variants are interleaved round by round, so
// load from other jobs falls on both alike; every figure is printed next
// to its target with ✔ or ✘.
//
//   - assembly: from the moment the last of N processes is started to the
//     moment every node is ready with N members (raw: connected to all);
//   - steady state: CPU and RSS per node over a window with nothing
//     happening, and the membership changes seen in it (target 0);
//   - kill: from kill -9 of one node to the listener call on every survivor
//     (raw: Ergo's link-down event on every survivor);
//   - fan-out: Multicall vs a loop of raw Ergo calls from a plain node.
//
// Usage: go run ./bench/cluster -n 3,10,25,50 -rounds 3 -steady 25=20s,50=60s
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cloister-go/cloister/actors"
	"github.com/cloister-go/cloister/cloistertest"
	"github.com/cloister-go/cloister/internal/clusterstate"
	"github.com/cloister-go/cloister/internal/nodetest"
	"github.com/cloister-go/cloister/internal/wire/ergonode"
	"github.com/ergo-services/ergo/etf"
	"github.com/ergo-services/ergo/gen"
)

// settle is the pause between "all ready" and a steady window.
const settle = 2 * time.Second

type roundResult struct {
	assembly, kill time.Duration
	// asmCPU is the CPU of all nodes from their exec until every node is
	// ready (read just after), per node: what an assembly costs the
	// machine, whatever the load.
	asmCPU time.Duration
	// asmWrites: write syscalls per node over the same span (/proc/PID/io
	// syscw), about the messages and handshakes it sent; load-independent.
	asmWrites int64
	// asmStates: state answers all nodes served until just after every
	// node was ready (each one two lists of the members); -1: unknown.
	asmStates int64
	idle      idle
	mc, raw   time.Duration // fan-out means (cloister rounds with calls)
}

func main() {
	ns := flag.String("n", "3,5,10", "cluster sizes")
	rounds := flag.Int("rounds", 3, "rounds per size (the median is reported)")
	bigRounds := flag.Int("big-rounds", 1, "rounds for sizes of 50 and more")
	steadyFlag := flag.String("steady", "", "steady windows per size, N=duration,... (e.g. 25=20s,50=60s)")
	calls := flag.Int("calls", 200, "fan-outs per size for the Multicall measurement (0: none)")
	flag.BoolVar(&traceAssembly, "trace", false, "print, per round, when each node was ready and the last node's events (stderr), from the last start, and each survivor's listener call and the survivors' CPU after the kill")
	profile := flag.String("profile", "", "write CPU profiles of one cloister node (assembly, steady) into this directory")
	rawName := flag.String("raw-node", "", "internal: run as a raw Ergo node of the baseline")
	rawPeers := flag.String("raw-peers", "", "internal: the raw node's peers")
	rawCookie := flag.String("raw-cookie", "", "internal: the raw node's cookie")
	rawEPMD := flag.Int("raw-epmd-port", 0, "internal: the raw node's EPMD port")
	startup := flag.Int("startup", 0, "measure instead the CPU of a lone node from exec to ready, this many rounds (see startup.go)")
	startupBins := flag.String("startup-bins", "", "with -startup: node programs to compare, comma-separated (default: the test node built from this tree)")
	flag.Parse()
	if *rawName != "" {
		os.Exit(rawNodeMain(*rawName, *rawPeers, *rawCookie, uint16(*rawEPMD)))
	}
	if *startup > 0 {
		bins := strings.Split(*startupBins, ",")
		if *startupBins == "" {
			b, err := nodetest.Binary()
			if err != nil {
				fatalf(1, "%v", err)
			}
			bins = []string{b}
		}
		if err := runStartup(*startup, bins); err != nil {
			fatalf(1, "startup: %v", err)
		}
		return
	}
	steady := map[int]time.Duration{}
	for _, f := range strings.Split(*steadyFlag, ",") {
		if f == "" {
			continue
		}
		k, v, ok := strings.Cut(f, "=")
		n, err1 := strconv.Atoi(k)
		d, err2 := time.ParseDuration(v)
		if !ok || err1 != nil || err2 != nil {
			fatalf(2, "bad -steady entry %q (want N=duration)", f)
		}
		steady[n] = d
	}
	var sizes []int
	for _, f := range strings.Split(*ns, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 2 {
			fatalf(2, "bad -n entry %q (want a size ≥ 2)", f)
		}
		sizes = append(sizes, n)
	}
	// Build the node program once, before the first round.
	if _, err := nodetest.Binary(); err != nil {
		fatalf(1, "%v", err)
	}
	type sizeResult struct {
		n          int
		clo, raw   []roundResult
		cIdle, rId idle
		mc, rawMC  time.Duration
	}
	var all []sizeResult
	for _, n := range sizes {
		sr := sizeResult{n: n}
		rs := *rounds
		if n >= 50 {
			rs = *bigRounds
		}
		for r := 0; r < rs; r++ {
			var st time.Duration
			c := 0
			if r == 0 {
				st, c = steady[n], *calls
			}
			prof := ""
			if *profile != "" && r == 0 {
				prof = *profile
			}
			h, err := cloistertest.New()
			if err != nil {
				fatalf(1, "%v", err)
			}
			cr, err := cloisterRound(h, n, r, st, c, prof)
			if err != nil {
				h.Close()
				fatalf(1, "cloister N=%d round %d: %v", n, r, err)
			}
			rr, err := rawRound(h.EPMD.Port, h.Cookie, n, r, st)
			h.Close()
			if err != nil {
				fatalf(1, "raw N=%d round %d: %v", n, r, err)
			}
			sr.clo, sr.raw = append(sr.clo, cr), append(sr.raw, rr)
			if st > 0 {
				sr.cIdle, sr.rId = cr.idle, rr.idle
			}
			if c > 0 {
				sr.mc, sr.rawMC = cr.mc, cr.raw
			}
			fmt.Fprintf(os.Stderr, "bench/cluster: N=%d round %d: assembly %s (raw %s), CPU per node %.1f ms (raw %.1f), writes per node %d (raw %d), state answers %d, kill %s (raw %s)\n",
				n, r, cr.assembly.Round(time.Millisecond), rr.assembly.Round(time.Millisecond), msf(cr.asmCPU), msf(rr.asmCPU), cr.asmWrites, rr.asmWrites, cr.asmStates,
				cr.kill.Round(time.Millisecond), rr.kill.Round(time.Millisecond))
		}
		all = append(all, sr)
	}

	fmt.Println("**Assembly**: last of N processes started → every node ready with N members; raw: every node connected to all. Target ≤ 1.5× raw at every N.")
	fmt.Println()
	fmt.Println("| N | rounds | cloister, median [min–max] | raw Ergo full mesh, median [min–max] | ratio of medians | target |")
	fmt.Println("|---|---|---|---|---|---|")
	for _, s := range all {
		c, r := pick(s.clo, func(x roundResult) time.Duration { return x.assembly }), pick(s.raw, func(x roundResult) time.Duration { return x.assembly })
		ratio := float64(med(c)) / float64(med(r))
		fmt.Printf("| %d | %d | %s [%s–%s] | %s [%s–%s] | %.1f× | ≤ 1.5× %s |\n", s.n, len(c), ms(med(c)), ms(lo(c)), ms(hi(c)),
			ms(med(r)), ms(lo(r)), ms(hi(r)), ratio, mark(ratio <= 1.5))
	}
	fmt.Println()
	fmt.Println("**Assembly CPU**: CPU of all threads of every node from its exec until every node is ready (read just after), mean per node; write syscalls per node over the same span.")
	fmt.Println()
	fmt.Println("| N | CPU cloister, median [min–max] | raw, median [min–max] | ratio of medians | writes cloister, median | raw |")
	fmt.Println("|---|---|---|---|---|---|")
	for _, s := range all {
		c, r := pick(s.clo, func(x roundResult) time.Duration { return x.asmCPU }), pick(s.raw, func(x roundResult) time.Duration { return x.asmCPU })
		cw, rw := pick(s.clo, func(x roundResult) time.Duration { return time.Duration(x.asmWrites) }), pick(s.raw, func(x roundResult) time.Duration { return time.Duration(x.asmWrites) })
		fmt.Printf("| %d | %.1f ms [%.1f–%.1f] | %.1f ms [%.1f–%.1f] | %.1f× | %d | %d |\n", s.n, msf(med(c)), msf(lo(c)), msf(hi(c)),
			msf(med(r)), msf(lo(r)), msf(hi(r)), float64(med(c))/float64(max(med(r), 1)), int64(med(cw)), int64(med(rw)))
	}
	fmt.Println()
	fmt.Println("**Steady state** (nothing happening, window after all ready + 2 s): CPU per node (mean, % of one core), RSS per node (median), membership changes on all nodes together (raw: links dropped). Targets: CPU ≤ 2× raw at N = 50, RSS ≤ 1.5× raw, 0 changes.")
	fmt.Println()
	fmt.Println("| N | window | CPU/node cloister | raw | ratio | RSS/node cloister | raw | ratio | changes | raw link drops |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|")
	for _, s := range all {
		if s.cIdle.window == 0 {
			continue
		}
		cr := s.cIdle.cpuPct / max(s.rId.cpuPct, 0.01)
		rr := s.cIdle.rssMiB / s.rId.rssMiB
		cpuTarget := ""
		if s.n >= 50 {
			cpuTarget = " (≤ 2×) " + mark(cr <= 2)
		}
		fmt.Printf("| %d | %s | %.2f %% | %.2f %% | %.1f×%s | %.1f MiB | %.1f MiB | %.2f× %s | %d %s | %d |\n", s.n,
			s.cIdle.window.Round(time.Second), s.cIdle.cpuPct, s.rId.cpuPct, cr, cpuTarget,
			s.cIdle.rssMiB, s.rId.rssMiB, rr, mark(rr <= 1.5), s.cIdle.changes, mark(s.cIdle.changes == 0), s.rId.changes)
	}
	fmt.Println()
	fmt.Println("**Failure notice**: kill -9 of one node → the listener called on every survivor (worst survivor per round); raw: Ergo's link-down event on every survivor. Target ≤ 100 ms at N = 25 and ≤ 2× raw.")
	fmt.Println()
	fmt.Println("| N | cloister, median [max] | raw link-down floor, median [max] | ratio of medians | target |")
	fmt.Println("|---|---|---|---|---|")
	for _, s := range all {
		c, r := pick(s.clo, func(x roundResult) time.Duration { return x.kill }), pick(s.raw, func(x roundResult) time.Duration { return x.kill })
		ratio := float64(med(c)) / float64(max(med(r), time.Millisecond))
		target := fmt.Sprintf("≤ 2× %s", mark(ratio <= 2))
		if s.n == 25 {
			target = fmt.Sprintf("≤ 100 ms %s, ≤ 2× %s", mark(med(c) <= 100*time.Millisecond), mark(ratio <= 2))
		}
		fmt.Printf("| %d | %s [%s] | %s [%s] | %.1f× | %s |\n", s.n, ms(med(c)), ms(hi(c)), ms(med(r)), ms(hi(r)), ratio, target)
	}
	if *calls > 0 {
		fmt.Println()
		fmt.Println("**Fan-out** from a plain Ergo node connected to the N nodes: `Multicall` of `{whois, <<>>, <<\"user:42\">>}` to every Monitor vs a loop of Ergo's `CallWithTimeout` to the same nodes in one process, interleaved (mean per fan-out).")
		fmt.Println()
		fmt.Println("| N | Multicall to N nodes | raw loop of N calls | Multicall / raw |")
		fmt.Println("|---|---|---|---|")
		for _, s := range all {
			if s.mc == 0 {
				continue
			}
			fmt.Printf("| %d | %s | %s | %.2f |\n", s.n, s.mc.Round(time.Microsecond), s.rawMC.Round(time.Microsecond), float64(s.mc)/float64(s.rawMC))
		}
	}
}

func fatalf(code int, format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "bench/cluster: "+format+"\n", args...)
	os.Exit(code)
}

func mark(ok bool) string {
	if ok {
		return "✔"
	}
	return "✘"
}

func pick(rs []roundResult, f func(roundResult) time.Duration) []time.Duration {
	out := make([]time.Duration, len(rs))
	for i, r := range rs {
		out[i] = f(r)
	}
	return out
}

func ms(d time.Duration) string {
	if d >= 10*time.Second {
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Millisecond).String()
}

// cloisterRound starts n cloister nodes and measures assembly, an optional
// steady window, a Multicall fan-out (calls > 0) and a kill -9.
// traceAssembly is -trace: where an assembly's time went.
var traceAssembly bool

// runTag sets this process's node names apart from those of another
// bench/cluster running at the same time (an interleaved A/B run starts
// two): each run has its own EPMD, but every node listens on the one
// 127.0.0.1, and the lowest free port goes to whichever node starts next.
// A node that re-dials a peer killed a moment ago can reach, at the port
// the peer had, a node of the other run; under the same name (same size,
// same round, same index) the handshake succeeds and that node then holds
// a link under our peer's name, closing the real peer's handshakes while
// it lasts (Ergo keeps the first link to a name, docs/design.md §6 item 4).
var runTag = os.Getpid()

func cloisterRound(h *cloistertest.Harness, n, r int, steady time.Duration, calls int, profDir string) (res roundResult, err error) {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("bench%d_%d_%d_%d@127.0.0.1", n, runTag, r, i)
	}
	var env []string
	if profDir != "" {
		env = []string{"CLOISTER_PPROF=1"}
	}
	var nodes []*cloistertest.Node
	var lastStart time.Time
	profDone := make(chan struct{})
	close(profDone)
	for i, name := range names {
		node, err := h.Start(cloistertest.Spec{Name: name, Sentry: names, Consensus: n, Env: env})
		if err != nil {
			return res, err
		}
		lastStart = time.Now()
		nodes = append(nodes, node)
		if i == 0 && profDir != "" {
			// Profile the first node through the whole assembly.
			secs := 5 + n/5
			if _, err := node.WaitFor(30*time.Second, "listening", func(e cloistertest.NodeEvent) bool { return e.Event == "listening" }); err != nil {
				return res, err
			}
			profDone = make(chan struct{})
			go func() {
				defer close(profDone)
				fetchProfile(node, secs, filepath.Join(profDir, fmt.Sprintf("assembly-N%d.pprof", n)))
			}()
		}
	}
	var readyAt time.Time
	for _, node := range nodes {
		e, err := node.WaitFor(180*time.Second, "ready with all", func(e cloistertest.NodeEvent) bool {
			return e.Event == "state" && e.To == "ready" && len(e.Snapshot.Members) == n
		})
		if err != nil {
			dumpStuck(nodes, n, r)
			return res, err
		}
		if at := time.Unix(0, e.At); at.After(readyAt) {
			readyAt = at
		}
	}
	res.assembly = readyAt.Sub(lastStart)
	pids := make([]int, len(nodes))
	for i, nd := range nodes {
		pids[i] = nd.Pid()
	}
	if res.asmCPU, res.asmWrites, err = meanCPU(pids); err != nil {
		return res, err
	}
	res.asmStates = stateAnswers(nodes)
	if profDir != "" {
		// Allocations since the exec of the first node: its start and the
		// joins of the n-1 others.
		fetch(nodes[0], "/debug/pprof/allocs", 30, filepath.Join(profDir, fmt.Sprintf("allocs-N%d.pprof", n)))
	}
	if traceAssembly {
		for i, nd := range nodes[:len(nodes)-1] {
			for _, e := range nd.Events() {
				if e.Event == "state" && e.To == "ready" && len(e.Snapshot.Members) == n {
					fmt.Fprintf(os.Stderr, "TRACE node %d ready %6.1fms\n", i, float64(time.Unix(0, e.At).Sub(lastStart).Microseconds())/1000)
				}
			}
		}
		for _, e := range nodes[len(nodes)-1].Events() {
			fmt.Fprintf(os.Stderr, "TRACE %6.1fms %s %s->%s %d\n", float64(time.Unix(0, e.At).Sub(lastStart).Microseconds())/1000, e.Event, e.From, e.To, len(e.Snapshot.Members))
		}
	}
	<-profDone
	if steady > 0 {
		time.Sleep(settle)
		changes := func() int {
			c := 0
			for _, nd := range nodes {
				for _, e := range nd.Events() {
					if e.Event == "state" && e.To == "rehashing" {
						c++
					}
				}
			}
			return c
		}
		before := changes()
		if profDir != "" {
			secs := int(min(steady, 20*time.Second) / time.Second)
			go fetchProfile(nodes[0], secs, filepath.Join(profDir, fmt.Sprintf("steady-N%d.pprof", n)))
		}
		if res.idle, err = measureIdle(pids, steady); err != nil {
			return res, err
		}
		res.idle.changes = changes() - before
	}
	if calls > 0 {
		if res.mc, res.raw, err = fanout(h, names, calls); err != nil {
			return res, err
		}
	}

	time.Sleep(300 * time.Millisecond) // let heartbeats settle
	victim := nodes[n/2]
	var survivors []int
	for i, nd := range nodes {
		if nd != victim {
			survivors = append(survivors, pids[i])
		}
	}
	var cpu0 time.Duration
	if traceAssembly {
		cpu0, _, _ = meanCPU(survivors)
	}
	killed := time.Now()
	victim.Kill()
	if traceAssembly {
		fmt.Fprintf(os.Stderr, "TRACE kill %s at %d\n", victim.Name, killed.UnixNano())
	}
	var worst time.Duration
	for _, node := range nodes {
		if node == victim {
			continue
		}
		e, err := node.WaitFor(30*time.Second, "rehash after kill", func(e cloistertest.NodeEvent) bool {
			return e.Event == "state" && e.From == "ready" && e.To == "rehashing" && time.Unix(0, e.At).After(killed)
		})
		if err != nil {
			dumpStuck(nodes, n, r)
			return res, err
		}
		if d := time.Unix(0, e.At).Sub(killed); d > worst {
			worst = d
		}
		if traceAssembly {
			fmt.Fprintf(os.Stderr, "TRACE listener %s %6.1fms after the kill\n", node.Name, float64(time.Unix(0, e.At).Sub(killed).Microseconds())/1000)
		}
	}
	res.kill = worst
	if traceAssembly {
		traceKillCPU("cloister", n, survivors, cpu0)
	}
	return res, nil
}

// traceKillCPU prints (-trace) the CPU per survivor from just before a
// kill until every survivor noticed it, and over the next half second.
func traceKillCPU(kind string, n int, survivors []int, before time.Duration) {
	notice, _, _ := meanCPU(survivors)
	time.Sleep(500 * time.Millisecond)
	after, _, _ := meanCPU(survivors)
	fmt.Fprintf(os.Stderr, "TRACE N=%d %s kill CPU per survivor: %.2f ms until noticed, %.2f ms over the next 500 ms\n",
		n, kind, float64(notice-before)/1e6, float64(after-notice)/1e6)
}

// dumpStuck saves, when a round's wait failed (an assembly or a kill that
// was not noticed), every node's /status and (with CLOISTER_PPROF=1) its
// goroutines into $CLOISTER_STUCK_DIR: the state while it is stuck.
func dumpStuck(nodes []*cloistertest.Node, n, r int) {
	dir := os.Getenv("CLOISTER_STUCK_DIR")
	if dir == "" {
		return
	}
	for i, nd := range nodes {
		fetch(nd, "/status", 10, filepath.Join(dir, fmt.Sprintf("N%d-r%d-node%d-status.json", n, r, i)))
		fetch(nd, "/debug/pprof/goroutine?debug=2", 10, filepath.Join(dir, fmt.Sprintf("N%d-r%d-node%d-goroutines.txt", n, r, i)))
	}
	fmt.Fprintf(os.Stderr, "bench/cluster: N=%d round %d stuck: state of every node in %s\n", n, r, dir)
}

// fetchProfile saves a CPU profile of secs seconds from a node started
// with CLOISTER_PPROF=1.
func fetchProfile(n *cloistertest.Node, secs int, path string) {
	fetch(n, fmt.Sprintf("/debug/pprof/profile?seconds=%d", secs), secs+30, path)
}

// stateAnswers sums the state answers the nodes served (their
// /debug/runtime), -1 when a node does not tell.
func stateAnswers(nodes []*cloistertest.Node) int64 {
	var sum, deltas, misses int64
	c := http.Client{Timeout: 10 * time.Second}
	for _, n := range nodes {
		resp, err := c.Get("http://" + n.HTTPAddr() + "/debug/runtime")
		if err != nil {
			return -1
		}
		var st struct {
			StateAnswers *int64 `json:"state_answers"`
			Deltas       int64  `json:"list_deltas"`
			Misses       int64  `json:"delta_misses"`
		}
		err = json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if err != nil || st.StateAnswers == nil {
			return -1
		}
		sum += *st.StateAnswers

		deltas, misses = deltas+st.Deltas, misses+st.Misses
	}
	if traceAssembly {
		fmt.Fprintf(os.Stderr, "TRACE state answers %d, list deltas applied %d, missed %d\n", sum, deltas, misses)
	}
	return sum
}

// fetch saves what the node serves at url (a path) into path.
func fetch(n *cloistertest.Node, url string, timeoutSecs int, path string) {
	c := http.Client{Timeout: time.Duration(timeoutSecs) * time.Second}
	resp, err := c.Get("http://" + n.HTTPAddr() + url)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/cluster: profile:", err)
		return
	}
	defer resp.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/cluster: profile:", err)
		return
	}
	defer f.Close()
	_, _ = io.Copy(f, resp.Body)
}

// fanout times, from a plain Ergo node connected to the cluster (it runs no
// cloister), Multicall of a small request to every node's Monitor against
// the baseline: a loop of Ergo's own CallWithTimeout to the same nodes, run
// inside a process and timed there. Interleaved; means per fan-out.
func fanout(h *cloistertest.Harness, names []string, calls int) (time.Duration, time.Duration, error) {
	n, err := ergonode.Start(fmt.Sprintf("benchcaller_%d_%d@127.0.0.1", len(names), os.Getpid()),
		ergonode.Options{EPMDPort: h.EPMD.Port, Cookie: h.Cookie})
	if err != nil {
		return 0, 0, err
	}
	defer n.Stop()
	for _, nm := range names {
		if err := n.Connect(nm); err != nil {
			return 0, 0, err
		}
	}
	p, err := n.Spawn("", gen.ProcessOptions{}, &rawCaller{})
	if err != nil {
		return 0, 0, err
	}
	req := etf.Tuple{etf.Atom("whois"), []byte(""), []byte("user:42")}
	var mcTotal, rawTotal time.Duration
	for i := 0; i < calls; i++ {
		start := time.Now()
		rs, err := clusterstate.Multicall(n, names, actors.MonitorName, req, 5*time.Second)
		mcTotal += time.Since(start)
		if err != nil {
			return 0, 0, err
		}
		for _, r := range rs {
			if r.Err != nil {
				return 0, 0, r.Err
			}
		}
		d, err := p.Direct(rawLoop{names: names, req: req})
		if err != nil {
			return 0, 0, err
		}
		rawTotal += d.(time.Duration)
	}
	return mcTotal / time.Duration(calls), rawTotal / time.Duration(calls), nil
}

type rawLoop struct {
	names []string
	req   etf.Term
}

// rawCaller runs the baseline: N sequential gen_server calls.
type rawCaller struct{ gen.Server }

func (c *rawCaller) HandleDirect(p *gen.ServerProcess, ref etf.Ref, m interface{}) (interface{}, gen.DirectStatus) {
	l := m.(rawLoop)
	start := time.Now()
	for _, nm := range l.names {
		if _, err := p.CallWithTimeout(gen.ProcessID{Name: actors.MonitorName, Node: nm}, l.req, 5); err != nil {
			return nil, err
		}
	}
	return time.Since(start), gen.DirectStatusOK
}

func sorted(ds []time.Duration) []time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s
}

func med(ds []time.Duration) time.Duration { return sorted(ds)[len(ds)/2] }
func lo(ds []time.Duration) time.Duration  { return sorted(ds)[0] }
func hi(ds []time.Duration) time.Duration  { return sorted(ds)[len(ds)-1] }
