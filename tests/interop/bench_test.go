package interop

import (
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ergo-services/ergo/etf"

	"github.com/cloister-go/cloister"
	"github.com/cloister-go/cloister/internal/erltest"
	"github.com/cloister-go/cloister/ring"
	"github.com/cloister-go/cloister/ring/libring"
)

// Benchmarks for bench/interop.md, on the host's OTP. Run:
//
//	go test -run '^$' -bench . -benchtime 2000x ./tests/interop/
//
// The BEAM side of each pair runs its loop inside erl (one Eval per
// b.N calls); its own per-call time is reported as erl-ns/op, which
// leaves out the harness's stdio round trip that ns/op includes.

// benchNodes are erl targets with a Void server (4 at first, more when a
// benchmark asks: benchTargetsN) and 1 erl caller, all connected to this
// binary's node and to each other; not cluster members.
var (
	benchOnce    sync.Once
	benchErr     error
	benchMu      sync.Mutex // guards benchTargets after benchOnce
	benchTargets []*erltest.Node
	benchCaller  *erltest.Node
)

func benchSetup(b *testing.B) {
	b.Helper()
	benchOnce.Do(func() {
		for i := 0; i < 4 && benchErr == nil; i++ {
			benchErr = addBenchTarget(b)
		}
		if benchErr != nil {
			return
		}
		if benchCaller, benchErr = startBenchNode(b, "caller"); benchErr != nil {
			return
		}
		for _, n := range append(targetNames(), goIn) {
			if benchErr = connectCaller(n); benchErr != nil {
				return
			}
		}
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
}

// benchTargetsN returns the names of the first n bench targets, starting
// the ones missing (connected to this binary's node and to the caller).
func benchTargetsN(b *testing.B, n int) []string {
	b.Helper()
	benchSetup(b)
	benchMu.Lock()
	defer benchMu.Unlock()
	for len(benchTargets) < n {
		if err := addBenchTarget(b); err != nil {
			b.Fatal(err)
		}
		if err := connectCaller(benchTargets[len(benchTargets)-1].Name); err != nil {
			b.Fatal(err)
		}
	}
	return targetNames()[:n]
}

func startBenchNode(b *testing.B, name string) (*erltest.Node, error) {
	r := runtimes[firstRelease()]
	return env.StartNode(name, erltest.NodeOptions{Runtime: r, Paths: []string{beamDir(b, r)}})
}

// addBenchTarget starts the next target, bench<i>, with the Void server,
// connected to this binary's node.
func addBenchTarget(b *testing.B) error {
	n, err := startBenchNode(b, "bench"+strconv.Itoa(len(benchTargets)))
	if err != nil {
		return err
	}
	benchTargets = append(benchTargets, n)
	if _, err := n.Eval("interop_bench:start_void()"); err != nil {
		return err
	}
	if v, err := n.Eval("net_kernel:connect_node(" + q(goIn) + ")"); err != nil || v != "true" {
		return fmt.Errorf("connect %s to %s: %v %v", n.Name, goIn, v, err)
	}
	return nil
}

func connectCaller(name string) error {
	if v, err := benchCaller.Eval("net_kernel:connect_node(" + q(name) + ")"); err != nil || v != "true" {
		return fmt.Errorf("connect caller to %s: %v %v", name, v, err)
	}
	return nil
}

func firstRelease() string {
	for _, c := range columns {
		if _, ok := runtimes[c]; ok {
			return c
		}
	}
	return ""
}

func targetNames() []string {
	var out []string
	for _, n := range benchTargets {
		out = append(out, n.Name)
	}
	return out
}

// erlLoop evaluates a loop of b.N iterations on the caller and reports
// (and returns) the per-call time measured inside erl.
func erlLoop(b *testing.B, expr string) float64 {
	b.Helper()
	cpu0 := cpuTime(b)
	b.ResetTimer()
	ns := erlEval(b, fmt.Sprintf(expr, b.N))
	b.StopTimer()
	// This process's CPU time per call: the Go node's share (and the
	// harness's, for one Eval).
	b.ReportMetric(float64((cpuTime(b)-cpu0).Nanoseconds())/float64(b.N), "go-cpu-ns/op")
	b.ReportMetric(ns, "erl-ns/op")
	return ns
}

// erlEval evaluates a timed loop on the caller and returns the per-call
// time it measured inside erl ({ok, Nanos, ...}).
func erlEval(b *testing.B, expr string) float64 {
	b.Helper()
	v, err := benchCaller.EvalTimeout(expr, 10*time.Minute)
	if err != nil {
		b.Fatal(err)
	}
	t, ok := mustParse(b, v).(Tuple)
	if !ok || t[0] != Atom("ok") {
		b.Fatalf("erl loop: %s", v)
	}
	return float64(t[1].(int64))
}

// cpuTime is the CPU time (user + system) this process has used so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkMulticall4 compares Go's Multicall to 4 Erlang nodes with
// Erlang's own gen_server:multi_call to the same 4 nodes, same request,
// same servers, in one run.
func BenchmarkMulticall4(b *testing.B) {
	multicallVsMultiCall(b, benchTargetsN(b, 4))
}

// BenchmarkMulticall10 is BenchmarkMulticall4 with 10 Erlang nodes (6 more
// erl nodes, started on first use; bench/run runs it in full mode only).
func BenchmarkMulticall10(b *testing.B) {
	multicallVsMultiCall(b, benchTargetsN(b, 10))
}

// multicallVsMultiCall runs Go's Multicall to targets, then the erl
// caller's gen_server:multi_call loop to the same targets, which also
// reports go/erl: the Go fan-out's time over erl's, back to back.
func multicallVsMultiCall(b *testing.B, targets []string) {
	c := cloister.Default()
	var goNs float64 // per fan-out, of go-Multicall's last run
	b.Run("go-Multicall", func(b *testing.B) {
		start := time.Now()
		defer func() { goNs = float64(time.Since(start).Nanoseconds()) / float64(b.N) }()
		for b.Loop() {
			if err := checkMulticall(c, targets); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("erl-gen_server:multi_call", func(b *testing.B) {
		erlNs := erlLoop(b, "interop_bench:multi_call_loop("+erlList(targets)+", 'Void', hello, %d)")
		if goNs > 0 && erlNs > 0 {
			b.ReportMetric(goNs/erlNs, "go/erl")
		}
	})
}

// parallelCallers is the number of concurrent callers, Go goroutines and
// erl processes alike, of BenchmarkMulticallParallel32.
const parallelCallers = 32

// BenchmarkMulticallParallel32 is BenchmarkMulticall4's pair under load,
// to 3 erl targets: parallelCallers goroutines on this binary's node each
// looping Multicall, and as many processes on the erl caller each looping
// gen_server:multi_call (timed inside erl), b.N fan-outs on each side,
// handed out by a shared counter. The two sides alternate in rounds of
// b.N/rounds fan-outs, so load from other jobs falls on both alike.
//
// ns/op, B/op and allocs/op are the Go side's (wall time over b.N: the
// timer is stopped while erl runs); erl-ns/op is erl's wall time per
// fan-out; go/erl is the Go side's total time over erl's, that is erl's
// throughput over Go's: ≤ 1.0 when Go serves at least erl's rate.
// go-cpu-ns/op is this process's CPU time per Go fan-out.
func BenchmarkMulticallParallel32(b *testing.B) {
	targets := benchTargetsN(b, 3)
	c := cloister.Default()
	erlExpr := "interop_bench:multi_call_par(" + erlList(targets) + ", 'Void', hello, " +
		strconv.Itoa(parallelCallers) + ", %d)"
	// Enough fan-outs per round that every caller makes several.
	rounds := min(8, max(1, b.N/(16*parallelCallers)))
	var goWall, goCPU, erlWall time.Duration
	b.ResetTimer()
	for r := range rounds {
		n := b.N / rounds
		if r < b.N%rounds {
			n++
		}
		b.StartTimer()
		cpu0, start := cpuTime(b), time.Now()
		err := parallelMulticalls(c, targets, n)
		goWall += time.Since(start)
		goCPU += cpuTime(b) - cpu0
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		erlWall += time.Duration(erlEval(b, fmt.Sprintf(erlExpr, n)) * float64(n))
	}
	b.ReportMetric(float64(goCPU.Nanoseconds())/float64(b.N), "go-cpu-ns/op")
	b.ReportMetric(float64(erlWall.Nanoseconds())/float64(b.N), "erl-ns/op")
	if erlWall > 0 {
		b.ReportMetric(float64(goWall)/float64(erlWall), "go/erl")
	}
}

// parallelMulticalls makes n Multicalls to targets from parallelCallers
// goroutines at once; the first error stops them all.
func parallelMulticalls(c *cloister.Cluster, targets []string, n int) error {
	var left atomic.Int64
	left.Store(int64(n))
	var failed atomic.Value
	var wg sync.WaitGroup
	for range parallelCallers {
		wg.Go(func() {
			for left.Add(-1) >= 0 {
				if err := checkMulticall(c, targets); err != nil {
					failed.CompareAndSwap(nil, err)
					left.Store(-parallelCallers) // the others stop too
					return
				}
			}
		})
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		return err
	}
	return nil
}

// checkMulticall is one Multicall of the benchmarks' request to targets,
// every reply checked.
func checkMulticall(c *cloister.Cluster, targets []string) error {
	res, err := c.Multicall(targets, "Void", etf.Atom("hello"), 5*time.Second)
	if err != nil {
		return err
	}
	for _, r := range res {
		if r.Err != nil || r.Reply != etf.Atom("ok") {
			return fmt.Errorf("%+v", r)
		}
	}
	return nil
}

// BenchmarkRPCCall compares rpc:call from an erl node into this binary's
// Go node with the same rpc:call into a BEAM node: erlang:node/0 (answered
// by the distribution filter) and a function (a Go function registered for
// Multiapply vs erlang:'+'/2).
func BenchmarkRPCCall(b *testing.B) {
	beam := benchTargetsN(b, 1)[0]
	b.Run("node/go", func(b *testing.B) {
		erlLoop(b, "interop_bench:rpc_loop("+q(goIn)+", erlang, node, [], %d)")
	})
	b.Run("node/beam", func(b *testing.B) {
		erlLoop(b, "interop_bench:rpc_loop("+q(beam)+", erlang, node, [], %d)")
	})
	b.Run("add/go", func(b *testing.B) {
		erlLoop(b, "interop_bench:rpc_loop("+q(goIn)+", interop, add, [20, 22], %d)")
	})
	b.Run("add/beam", func(b *testing.B) {
		erlLoop(b, "interop_bench:rpc_loop("+q(beam)+", erlang, '+', [20, 22], %d)")
	})
}

// BenchmarkWhois is the lookup behind cloister.Whois (ring.Set.Owner) on
// 5 members, libring engine vs the default one; the engines alone are
// compared in ring/libring's BenchmarkOwner.
func BenchmarkWhois(b *testing.B) {
	members := []string{"erla@127.0.0.1", "erlb@127.0.0.1", "go1@127.0.0.1", "go2@127.0.0.1", "goin@127.0.0.1"}
	keys := make([]string, 4096)
	for i := range keys {
		keys[i] = key(i)
	}
	for _, e := range []struct {
		name string
		eng  ring.Engine
	}{{"libring", libring.Engine()}, {"default", ring.Consistent()}} {
		s := ring.NewSet()
		if err := s.Define("r", e.eng); err != nil {
			b.Fatal(err)
		}
		if _, _, err := s.Update("r", members); err != nil {
			b.Fatal(err)
		}
		b.Run(e.name, func(b *testing.B) {
			i := 0
			for b.Loop() {
				if _, err := s.Owner("r", keys[i&4095]); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}
