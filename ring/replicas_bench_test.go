package ring

import (
	"fmt"
	"testing"
)

// BenchmarkWhoisN compares one owner (Set.Owner, what Whois calls) with
// replica sets of n = 1, 2, 3 into a caller's buffer (Set.AppendOwners,
// what AppendWhoisN calls) and into a new slice (Snapshot.OwnersN, what
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
