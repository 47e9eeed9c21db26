package libring

import (
	"fmt"
	"strconv"
	"testing"

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
