package interop

import (
	"fmt"
	"strconv"
	"sync"
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

// benchNodes are 4 erl targets with a Void server and 1 erl caller, all
// connected to this binary's node and to each other; not cluster members.
var (
	benchOnce    sync.Once
	benchErr     error
	benchTargets []*erltest.Node
	benchCaller  *erltest.Node
)

func benchSetup(b *testing.B) {
	b.Helper()
	benchOnce.Do(func() {
		r := runtimes[firstRelease()]
		dir := beamDir(b, r)
		start := func(name string) *erltest.Node {
			n, err := env.StartNode(name, erltest.NodeOptions{Runtime: r, Paths: []string{dir}})
			if err != nil {
				benchErr = err
				return nil
			}
			return n
		}
		for i := 0; i < 4 && benchErr == nil; i++ {
			n := start("bench" + strconv.Itoa(i))
			if n == nil {
				return
			}
			benchTargets = append(benchTargets, n)
			if _, benchErr = n.Eval("interop_bench:start_void()"); benchErr != nil {
				return
			}
			if v, err := n.Eval("net_kernel:connect_node(" + q(goIn) + ")"); err != nil || v != "true" {
				benchErr = fmt.Errorf("connect %s to %s: %v %v", n.Name, goIn, v, err)
				return
			}
		}
		if benchCaller = start("caller"); benchCaller == nil {
			return
		}
		for _, n := range append(targetNames(), goIn) {
			if v, err := benchCaller.Eval("net_kernel:connect_node(" + q(n) + ")"); err != nil || v != "true" {
				benchErr = fmt.Errorf("connect caller to %s: %v %v", n, v, err)
				return
			}
		}
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
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
// the per-call time measured inside erl.
func erlLoop(b *testing.B, expr string) {
	b.Helper()
	cpu0 := cpuTime(b)
	b.ResetTimer()
	v, err := benchCaller.EvalTimeout(fmt.Sprintf(expr, b.N), 10*time.Minute)
	b.StopTimer()
	// This process's CPU time per call: the Go node's share (and the
	// harness's, for one Eval).
	b.ReportMetric(float64((cpuTime(b)-cpu0).Nanoseconds())/float64(b.N), "go-cpu-ns/op")
	if err != nil {
		b.Fatal(err)
	}
	t, ok := mustParse(b, v).(Tuple)
	if !ok || t[0] != Atom("ok") {
		b.Fatalf("erl loop: %s", v)
	}
	b.ReportMetric(float64(t[1].(int64)), "erl-ns/op")
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
	benchSetup(b)
	targets := targetNames()
	c := cloister.Default()
	b.Run("go-Multicall", func(b *testing.B) {
		for b.Loop() {
			res, err := c.Multicall(targets, "Void", etf.Atom("hello"), 5*time.Second)
			if err != nil {
				b.Fatal(err)
			}
			for _, r := range res {
				if r.Err != nil || r.Reply != etf.Atom("ok") {
					b.Fatalf("%+v", r)
				}
			}
		}
	})
	b.Run("erl-gen_server:multi_call", func(b *testing.B) {
		erlLoop(b, "interop_bench:multi_call_loop("+erlList(targets)+", 'Void', hello, %d)")
	})
}

// BenchmarkRPCCall compares rpc:call from an erl node into this binary's
// Go node with the same rpc:call into a BEAM node: erlang:node/0 (answered
// by the distribution filter) and a function (a Go function registered for
// Multiapply vs erlang:'+'/2).
func BenchmarkRPCCall(b *testing.B) {
	benchSetup(b)
	beam := benchTargets[0].Name
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
