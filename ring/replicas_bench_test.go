package ring

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
)

// BenchmarkWhoisN compares one owner (Set.Owner, what Whois calls) with
// replica sets of n = 1, 2, 3 into a caller's buffer (Set.AppendOwners,
// what AppendWhoisN calls) and into a new slice (View.OwnersN, what
// WhoisN calls), on the default engine.
func BenchmarkWhoisN(b *testing.B) {
	for _, size := range []int{3, 10, 50} {
		set := benchSet(b, Consistent(), ipMembers(size))
		snap, _ := set.Get("bench")
		b.Run(fmt.Sprintf("members=%d/whois", size), func(b *testing.B) {
			b.ReportAllocs()
			var o string
			for i := 0; i < b.N; i++ {
				o, _ = set.Owner("bench", benchKeys[i&benchMask])
			}
			sink.Store(&o)
		})
		for n := 1; n <= 3; n++ {
			b.Run(fmt.Sprintf("members=%d/n=%d/buffer", size, n), func(b *testing.B) {
				b.ReportAllocs()
				buf := make([]string, 0, n)
				for i := 0; i < b.N; i++ {
					buf, _ = set.AppendOwners(buf[:0], "bench", benchKeys[i&benchMask], n)
				}
				sink.Store(&buf[0])
			})
			b.Run(fmt.Sprintf("members=%d/n=%d/new", size, n), func(b *testing.B) {
				b.ReportAllocs()
				var out []string
				for i := 0; i < b.N; i++ {
					out, _ = snap.OwnersN(benchKeys[i&benchMask], n)
				}
				sink.Store(&out[0])
			})
		}
	}
}

// TestWhoisNReport prints the cost of replica sets of n = 1, 2, 3 (into a
// caller's buffer) beside Whois, measured in interleaved chunks in one
// process so that the machine's load falls on every variant alike
// (BENCHMARKS.md). Runs only with CLOISTER_BENCH_REPORT=1.
func TestWhoisNReport(t *testing.T) {
	if os.Getenv("CLOISTER_BENCH_REPORT") != "1" {
		t.Skip("set CLOISTER_BENCH_REPORT=1 to print the WhoisN table")
	}
	const trials, chunk = 101, 20_000
	var out strings.Builder
	fmt.Fprintf(&out, "\nengine %s, %s, %d trials of %d lookups, interleaved; ns/op and ratio to whois: medians over trials\n", Consistent().Name(), runtime.Version(), trials, chunk)
	fmt.Fprintf(&out, "%4s %-8s %8s %7s %9s\n", "N", "lookup", "ns/op", "allocs", "vs whois")
	for _, size := range benchSizes {
		set := benchSet(t, Consistent(), ipMembers(size))
		names := []string{"whois", "n=1", "n=2", "n=3"}
		fs := []func(string) (string, error){func(k string) (string, error) { return set.Owner("bench", k) }}
		for n := 1; n <= 3; n++ {
			buf := make([]string, 0, n)
			fs = append(fs, func(k string) (string, error) {
				var err error
				buf, err = set.AppendOwners(buf[:0], "bench", k, n)
				return buf[0], err
			})
		}
		ns := pairedTiming(fs, false, trials, chunk)
		for i, f := range fs {
			var ratio []float64
			for k := range ns[i] {
				ratio = append(ratio, ns[i][k]/ns[0][k])
			}
			allocs := testing.AllocsPerRun(1000, func() { _, _ = f(benchKeys[7]) })
			fmt.Fprintf(&out, "%4d %-8s %8.1f %7.0f %9.2f\n", size, names[i], median(ns[i]), allocs, median(ratio))
		}
	}
	t.Log(out.String())
}
