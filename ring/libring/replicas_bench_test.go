package libring

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cloister-go/cloister/ring"
)

// BenchmarkWhoisN compares one owner (Set.Owner, what Whois calls) with
// replica sets of n = 1, 2, 3 into a caller's buffer (Set.AppendOwners,
// what AppendWhoisN calls) on the libring engine.
func BenchmarkWhoisN(b *testing.B) {
	keys := make([]string, 4096)
	for i := range keys {
		keys[i] = "user:" + strconv.Itoa(i*7919)
	}
	for _, size := range []int{3, 10, 50} {
		members := make([]string, size)
		for i := range members {
			members[i] = fmt.Sprintf("app@10.0.0.%d", i+1)
		}
		set := ring.NewSet()
		if err := set.Define("bench", Engine()); err != nil {
			b.Fatal(err)
		}
		if _, _, err := set.Update("bench", members); err != nil {
			b.Fatal(err)
		}
		var sink string
		b.Run(fmt.Sprintf("members=%d/whois", size), func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				sink, _ = set.Owner("bench", keys[i&4095])
				i++
			}
		})
		for n := 1; n <= 3; n++ {
			b.Run(fmt.Sprintf("members=%d/n=%d/buffer", size, n), func(b *testing.B) {
				b.ReportAllocs()
				buf := make([]string, 0, n)
				i := 0
				for b.Loop() {
					buf, _ = set.AppendOwners(buf[:0], "bench", keys[i&4095], n)
					i++
				}
				sink = buf[0]
			})
		}
		_ = sink
	}
}

// TestWhoisNReport prints the cost of replica sets of n = 1, 2, 3 (into a
// caller's buffer) beside Whois on the libring engine, measured in
// interleaved chunks in one process (BENCHMARKS.md). Runs only with
// CLOISTER_BENCH_REPORT=1.
func TestWhoisNReport(t *testing.T) {
	if os.Getenv("CLOISTER_BENCH_REPORT") != "1" {
		t.Skip("set CLOISTER_BENCH_REPORT=1 to print the WhoisN table")
	}
	const trials, chunk = 101, 20_000
	keys := make([]string, 4096)
	for i := range keys {
		keys[i] = "user:" + strconv.Itoa(i*7919)
	}
	var out strings.Builder
	fmt.Fprintf(&out, "\nengine %s, %s, %d trials of %d lookups, interleaved; ns/op and ratio to whois: medians over trials\n", Engine().Name(), runtime.Version(), trials, chunk)
	fmt.Fprintf(&out, "%4s %-8s %8s %7s %9s\n", "N", "lookup", "ns/op", "allocs", "vs whois")
	for _, size := range []int{3, 10, 50} {
		members := make([]string, size)
		for i := range members {
			members[i] = fmt.Sprintf("app@10.0.0.%d", i+1)
		}
		set := ring.NewSet()
		if err := set.Define("bench", Engine()); err != nil {
			t.Fatal(err)
		}
		if _, _, err := set.Update("bench", members); err != nil {
			t.Fatal(err)
		}
		names := []string{"whois", "n=1", "n=2", "n=3"}
		fs := []func(string) string{func(k string) string { o, _ := set.Owner("bench", k); return o }}
		for n := 1; n <= 3; n++ {
			buf := make([]string, 0, n)
			fs = append(fs, func(k string) string {
				buf, _ = set.AppendOwners(buf[:0], "bench", k, n)
				return buf[0]
			})
		}
		ns := make([][]float64, len(fs))
		var last string
		for trial := range trials {
			for j := range fs {
				i := (j + trial) % len(fs) // rotate the order: no variant always runs first
				start := time.Now()
				for k := range chunk {
					last = fs[i](keys[k&4095])
				}
				ns[i] = append(ns[i], float64(time.Since(start).Nanoseconds())/chunk)
			}
		}
		_ = last
		for i, f := range fs {
			var ratio []float64
			for k := range ns[i] {
				ratio = append(ratio, ns[i][k]/ns[0][k])
			}
			allocs := testing.AllocsPerRun(1000, func() { _ = f(keys[7]) })
			fmt.Fprintf(&out, "%4d %-8s %8.1f %7.0f %9.2f\n", size, names[i], median(ns[i]), allocs, median(ratio))
		}
	}
	t.Log(out.String())
}

func median(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	return s[len(s)/2]
}
