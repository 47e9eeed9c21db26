package ring

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stathat/consistent"
)

// Baselines, measured in the same run as ours:
//   - raw:   consistent.Get on a stathat circle with the same number of points
//     as ours (NumberOfReplicas = replicas on the bare names). Get's cost
//     depends on the point count, not on how points were named; building the
//     labelled circle itself through consistent.Add is quadratic (Add re-sorts
//     the whole circle) and takes tens of seconds at 50 members.
//   - raw20: consistent.Get with stathat's default 20 replicas, fewer points.

var benchSizes = []int{3, 10, 50}

// benchKeys are the lookup keys, cycled through by every benchmark.
var benchKeys = sequentialKeys(4096)

const benchMask = 4095

func rawConsistent(members []string, replicas int) *consistent.Consistent {
	c := consistent.New()
	c.NumberOfReplicas = replicas
	for _, m := range members {
		c.Add(m)
	}
	return c
}

func benchSet(tb testing.TB, e Engine, members []string) *Set {
	s := NewSet()
	if err := s.Define("bench", e); err != nil {
		tb.Fatal(err)
	}
	if _, _, err := s.Update("bench", members); err != nil {
		tb.Fatal(err)
	}
	return s
}

// Sinks keep results alive so that the compiler cannot drop the work.
var (
	sink      atomic.Pointer[string] // lookups, also from parallel goroutines
	sinkBuild Lookup
	sinkDiff  map[string][]string
)

// ownerFuncs returns the lookups compared, by name, for n members and engine e.
func ownerFuncs(tb testing.TB, e *circleEngine, n int) []struct {
	name  string
	owner func(key string) (string, error)
} {
	members := ipMembers(n)
	raw := rawConsistent(members, e.scheme.count*e.scheme.replicas)
	raw20 := rawConsistent(members, 20)
	set := benchSet(tb, e, members)
	snap, _ := set.Get("bench")
	return []struct {
		name  string
		owner func(key string) (string, error)
	}{
		{"raw", raw.Get},
		{"raw20", raw20.Get},
		{"snapshot", snap.Owner},
		{"set", func(k string) (string, error) { return set.Owner("bench", k) }},
	}
}

func runOwner(b *testing.B, owner func(string) (string, error)) {
	b.ReportAllocs()
	var last string
	i := 0
	for b.Loop() {
		last, _ = owner(benchKeys[i&benchMask])
		i++
	}
	sink.Store(&last)
}

func runOwnerParallel(b *testing.B, owner func(string) (string, error)) {
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var last string
		i := 0
		for pb.Next() {
			last, _ = owner(benchKeys[i&benchMask])
			i++
		}
		sink.Store(&last)
	})
}

// BenchmarkOwner: one goroutine. raw/raw20 are the consistent.Get baselines.
func BenchmarkOwner(b *testing.B) {
	for _, n := range benchSizes {
		for _, f := range ownerFuncs(b, defaultEngine, n) {
			b.Run(fmt.Sprintf("N=%d/%s", n, f.name), func(b *testing.B) { runOwner(b, f.owner) })
		}
	}
}

// BenchmarkOwnerParallel: b.RunParallel, GOMAXPROCS goroutines.
func BenchmarkOwnerParallel(b *testing.B) {
	for _, n := range benchSizes {
		for _, f := range ownerFuncs(b, defaultEngine, n) {
			b.Run(fmt.Sprintf("N=%d/%s", n, f.name), func(b *testing.B) { runOwnerParallel(b, f.owner) })
		}
	}
}

// BenchmarkOwnerWhileUpdating: parallel Set.Owner while one goroutine keeps
// replacing the ring (a member leaves and comes back).
func BenchmarkOwnerWhileUpdating(b *testing.B) {
	members := ipMembers(10)
	set := benchSet(b, nil, members)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			ms := members
			if i%2 == 0 {
				ms = members[1:]
			}
			set.Update("bench", ms)
		}
	}()
	runOwnerParallel(b, func(k string) (string, error) { return set.Owner("bench", k) })
	close(stop)
	<-done
}

// BenchmarkBuild: rebuilding a ring on a member change (Engine.Build).
// cold: an engine that has seen none of the members (every point hashed);
// join: the last build's members with one replaced by a newcomer (a leave
// and a join: built from the last circle); same: the same members again
// (another ring of them: the circle is shared).
func BenchmarkBuild(b *testing.B) {
	for _, n := range benchSizes {
		members := ipMembers(n)
		b.Run(fmt.Sprintf("N=%d/cold", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				e := &circleEngine{name: defaultEngine.name, scheme: defaultEngine.scheme}
				sinkBuild = e.Build(members)
			}
		})
		b.Run(fmt.Sprintf("N=%d/join", n), func(b *testing.B) {
			e := &circleEngine{name: defaultEngine.name, scheme: defaultEngine.scheme}
			e.Build(members[1:])
			ms := slices.Clone(members)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				// A new list each time: Build may keep the one it was given.
				ms = slices.Clone(ms)
				ms[0] = fmt.Sprintf("app@1.%d.%d", i>>8&255, i&255) // sorts first, as members[0] did
				sinkBuild = e.Build(ms)
			}
		})
		b.Run(fmt.Sprintf("N=%d/same", n), func(b *testing.B) {
			e := &circleEngine{name: defaultEngine.name, scheme: defaultEngine.scheme}
			e.Build(members)
			b.ReportAllocs()
			for b.Loop() {
				sinkBuild = e.Build(members)
			}
		})
	}
}

// BenchmarkDiff: 10k keys, one member joins a ring of 10.
func BenchmarkDiff(b *testing.B) {
	set := benchSet(b, nil, ipMembers(10))
	old, _ := set.Get("bench")
	next, _, _ := set.Update("bench", ipMembers(11))
	keys := sequentialKeys(10_000)
	b.ReportAllocs()
	for b.Loop() {
		g, _ := diff(old, next, keys)
		sinkDiff = g
	}
}

// pairedTiming times each lookup in fs over the same chunk of keys, one after
// the other, trials times (rotating which goes first), so that every trial
// compares them under the same machine load. It returns ns/op per trial. In
// parallel mode GOMAXPROCS goroutines each do a chunk and ns/op is wall time
// over all their operations, as with b.RunParallel.
func pairedTiming(fs []func(string) (string, error), parallel bool, trials, chunk int) [][]float64 {
	procs := 1
	if parallel {
		procs = runtime.GOMAXPROCS(0)
	}
	out := make([][]float64, len(fs))
	for trial := range trials {
		for j := range fs {
			i := (j + trial) % len(fs)
			f := fs[i]
			var wg sync.WaitGroup
			start := time.Now()
			for p := range procs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					var last string
					for k := range chunk {
						last, _ = f(benchKeys[(k+p*977)&benchMask])
					}
					sink.Store(&last)
				}()
			}
			wg.Wait()
			out[i] = append(out[i], float64(time.Since(start).Nanoseconds())/float64(procs*chunk))
		}
	}
	return out
}

func median(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	return s[len(s)/2]
}

// TestBenchReport prints Owner timings and their ratios to consistent.Get,
// measured in the same process in interleaved chunks, and Build times
// (bench/ring.md). Runs only with CLOISTER_BENCH_REPORT=1;
// CLOISTER_BENCH_REPLICAS=320,512 compares label counts instead of the default.
func TestBenchReport(t *testing.T) {
	if os.Getenv("CLOISTER_BENCH_REPORT") != "1" {
		t.Skip("set CLOISTER_BENCH_REPORT=1 to print the benchmark table")
	}
	const trials, chunk = 201, 20_000
	engines := []*circleEngine{defaultEngine}
	if sel := os.Getenv("CLOISTER_BENCH_REPLICAS"); sel != "" {
		engines = nil
		for _, r := range strings.Split(sel, ",") {
			n, err := strconv.Atoi(r)
			if err != nil {
				t.Fatalf("CLOISTER_BENCH_REPLICAS: %v", err)
			}
			engines = append(engines, &circleEngine{name: "sha256-labels/" + r, scheme: labelScheme(n)})
		}
	}
	var out strings.Builder
	fmt.Fprintf(&out, "\n%s, GOMAXPROCS=%d, %d trials of %d lookups per goroutine, interleaved\n", runtime.Version(), runtime.GOMAXPROCS(0), trials, chunk)
	fmt.Fprintf(&out, "ns/op: median over trials; ratios: median over trials of the per-trial ratio\n")
	for _, e := range engines {
		fmt.Fprintf(&out, "\nengine %s\n%-8s %4s %-9s %9s %7s %8s %8s\n", e.name, "mode", "N", "lookup", "ns/op", "allocs", "vs raw", "vs raw20")
		for _, parallel := range []bool{false, true} {
			mode := map[bool]string{false: "serial", true: "parallel"}[parallel]
			for _, n := range benchSizes {
				fs := ownerFuncs(t, e, n)
				owners := make([]func(string) (string, error), len(fs))
				for i, f := range fs {
					owners[i] = f.owner
				}
				ns := pairedTiming(owners, parallel, trials, chunk)
				for i, f := range fs {
					var vsRaw, vsRaw20 []float64
					for k := range ns[i] {
						vsRaw = append(vsRaw, ns[i][k]/ns[0][k])
						vsRaw20 = append(vsRaw20, ns[i][k]/ns[1][k])
					}
					allocs := testing.AllocsPerRun(1000, func() { f.owner(benchKeys[7]) })
					fmt.Fprintf(&out, "%-8s %4d %-9s %9.1f %7.0f %8.2f %8.2f\n", mode, n, f.name, median(ns[i]), allocs, median(vsRaw), median(vsRaw20))
				}
			}
		}
		for _, n := range benchSizes {
			members := ipMembers(n)
			r := testing.Benchmark(func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					sinkBuild = e.Build(members)
				}
			})
			fmt.Fprintf(&out, "build    %4d %-9s %9.0f %7d  (%d points, %d KiB)\n", n, "", float64(r.T.Nanoseconds())/float64(r.N), r.AllocsPerOp(),
				n*e.scheme.count, r.AllocedBytesPerOp()/1024)
		}
	}
	t.Log(out.String())
}
