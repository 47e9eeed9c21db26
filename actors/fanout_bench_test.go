package actors

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ergo-services/ergo/etf"
	"github.com/ergo-services/ergo/gen"

	"github.com/cloister-go/cloister/internal/wire/ergonode"
)

// benchNodes are three remote peers (separate OS processes).
func benchNodes() []string { return []string{peerA.name, peerB.name, peerC.name} }

var benchRequest = etf.Tuple{etf.Atom("echo"), etf.Atom("bench")}

// rawCalls returns a closure, run inside a process through Direct, that
// calls echo on every node in turn with Ergo's CallWithTimeout — the
// baseline — and returns the time the calls alone took.
func rawCalls(nodes []string) func(*gen.ServerProcess) (interface{}, error) {
	return func(sp *gen.ServerProcess) (interface{}, error) {
		start := time.Now()
		for _, nd := range nodes {
			if _, err := sp.CallWithTimeout(gen.ProcessID{Name: echoName, Node: nd}, benchRequest, 5); err != nil {
				return nil, fmt.Errorf("%s: %w", nd, err)
			}
		}
		return time.Since(start), nil
	}
}

// cpuTime is the CPU time (user + system) this process and the three
// bench peers have used so far. The peers' figure comes from
// /proc/PID/stat in clock ticks (10 ms): meaningful over a few thousand
// fan-outs.
func cpuTime(b *testing.B) (self, peers time.Duration) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	for _, p := range []*peer{peerA, peerB, peerC} {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
		if err != nil {
			b.Fatal(err)
		}
		// Fields after the command name (which may hold spaces): state is
		// field 3, utime 14 and stime 15.
		f := bytes.Fields(raw[bytes.LastIndexByte(raw, ')')+1:])
		for _, v := range f[11:13] {
			ticks, err := strconv.ParseInt(string(v), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			peers += time.Duration(ticks) * (time.Second / 100) // USER_HZ
		}
	}
	return self, peers
}

// reportCPU adds the CPU time per op of this process and of the peers since
// (self0, peers0) to b's metrics.
func reportCPU(b *testing.B, self0, peers0 time.Duration) {
	self, peers := cpuTime(b)
	b.ReportMetric(float64((self-self0).Nanoseconds())/float64(b.N), "cpu-ns/op")
	b.ReportMetric(float64((peers-peers0).Nanoseconds())/float64(b.N), "peer-cpu-ns/op")
}

// releasedBench waits until the calls of the Node actor's engine have
// been released (their monitors removed, just after Multicall returns), so
// that work is not charged to the raw loop of the next iteration.
func releasedBench(b *testing.B) {
	e := engineOf(testNode)
	if e == nil {
		b.Fatal("no fan-out engine")
	}
	for deadline := time.Now().Add(5 * time.Second); e.calls.Load() != 0; {
		if time.Now().After(deadline) {
			b.Fatal("a call was not released in 5 s")
		}
		runtime.Gosched()
	}
}

func checkBench(b *testing.B, rs []Result, err error) {
	if err != nil {
		b.Fatal(err)
	}
	for _, r := range rs {
		if r.Err != nil {
			b.Fatal(r.Err)
		}
	}
}

// BenchmarkMulticallVsRawCalls interleaves, in every iteration, one
// Multicall to three peers and a loop of three CallWithTimeout to the same
// peers, and reports both and their ratio. The baseline is timed inside the
// process, so the Direct hop used to run it is not counted against it.
func BenchmarkMulticallVsRawCalls(b *testing.B) {
	multicallVsRaw(b, benchNodes())
}

// BenchmarkMulticallOneVsRawCall is BenchmarkMulticallVsRawCalls with one
// peer: a Multicall to one node against one CallWithTimeout.
func BenchmarkMulticallOneVsRawCall(b *testing.B) {
	b.ReportAllocs()
	multicallVsRaw(b, benchNodes()[:1])
}

// multicallVsRaw interleaves a Multicall to nodes and a loop of raw calls
// to the same nodes, and reports both and their ratio.
func multicallVsRaw(b *testing.B, nodes []string) {
	p, _ := newInbox(b)
	raw := rawCalls(nodes)
	var rawTotal, mcTotal time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		d, err := p.Direct(raw)
		if err != nil {
			b.Fatal(err)
		}
		rawTotal += d.(time.Duration)

		start := time.Now()
		rs, err := nodeMulticall(testNode, nodes, echoName, benchRequest, 5*time.Second)
		mcTotal += time.Since(start)
		checkBench(b, rs, err)
		releasedBench(b)
	}
	b.ReportMetric(float64(rawTotal.Nanoseconds())/float64(b.N), "raw-ns/op")
	b.ReportMetric(float64(mcTotal.Nanoseconds())/float64(b.N), "multicall-ns/op")
	b.ReportMetric(float64(mcTotal)/float64(rawTotal), "multicall/raw")
}

// fanoutCallers is how many goroutines call at once in
// BenchmarkFanoutParallel (SetParallelism multiplies GOMAXPROCS).
const fanoutCallers = 32

// BenchmarkFanoutParallel is the same, each from fanoutCallers goroutines
// at once (the raw loop from one process per goroutine, as Call blocks its
// process); multicall-process is the same engine in a process per call,
// what a node without the Node actor uses. Each reports the CPU time per
// fan-out of this process and of the peers.
func BenchmarkFanoutParallel(b *testing.B) {
	nodes := benchNodes()
	par := max(1, fanoutCallers/runtime.GOMAXPROCS(0))
	b.Run("multicall", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(par)
		self, peers := cpuTime(b)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				rs, err := nodeMulticall(testNode, nodes, echoName, benchRequest, 5*time.Second)
				checkBench(b, rs, err)
			}
		})
		reportCPU(b, self, peers)
	})
	b.Run("multicall-process", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(par)
		self, peers := cpuTime(b)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				rs, err := multicallVia(nil, "multicall", testNode, nodes, echoName, benchRequest, 5*time.Second)
				checkBench(b, rs, err)
			}
		})
		reportCPU(b, self, peers)
	})
	b.Run("raw", func(b *testing.B) {
		raw := rawCalls(nodes)
		var failed atomic.Value
		b.ReportAllocs()
		b.SetParallelism(par)
		self, peers := cpuTime(b)
		b.RunParallel(func(pb *testing.PB) {
			p, err := testNode.Spawn("", gen.ProcessOptions{}, &inbox{ch: make(chan etf.Term, 1)})
			if err != nil {
				failed.Store(err)
				return
			}
			defer p.Kill()
			for pb.Next() {
				if _, err := p.Direct(raw); err != nil {
					failed.Store(err)
					return
				}
			}
		})
		if err := failed.Load(); err != nil {
			b.Fatal(err)
		}
		reportCPU(b, self, peers)
	})
}

// BenchmarkCallerSpawn is the fixed cost of the per-call process of a node
// without the Node actor: spawn and kill it with a mailbox sized for 3
// targets, and with ergonode.NetworkMailbox (why it does not use that).
func BenchmarkCallerSpawn(b *testing.B) {
	for _, size := range []uint16{callerMailbox(3), ergonode.NetworkMailbox} {
		b.Run(fmt.Sprintf("mailbox-%d", size), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				_, p, err := spawnFanProcess(testNode, size)
				if err != nil {
					b.Fatal(err)
				}
				p.Kill()
			}
		})
	}
}

// BenchmarkMulticallSerial: one caller, Multicall (in the Node actor) and
// the same engine in a process per call, to three peers.
func BenchmarkMulticallSerial(b *testing.B) {
	nodes := benchNodes()
	b.Run("multicall", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			rs, err := nodeMulticall(testNode, nodes, echoName, benchRequest, 5*time.Second)
			checkBench(b, rs, err)
		}
	})
	b.Run("multicall-process", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			rs, err := multicallVia(nil, "multicall", testNode, nodes, echoName, benchRequest, 5*time.Second)
			checkBench(b, rs, err)
		}
	})
}
