package libring

import (
	"fmt"
	"strconv"
	"testing"

	"github.com/cloister-go/cloister/ring"
	"github.com/stathat/consistent"
)

// BenchmarkOwner compares a libring lookup with stathat/consistent's Get (its
// defaults: 20 replicas, a read lock and a CRC-32 per call) and with the ring
// package's default engine, on the same members and keys. Results:
// bench/libring.md.
func BenchmarkOwner(b *testing.B) {
	keys := make([]string, 4096)
	for i := range keys {
		keys[i] = "user:" + strconv.Itoa(i*7919)
	}
	for _, n := range []int{3, 10, 50} {
		members := make([]string, n)
		for i := range members {
			members[i] = fmt.Sprintf("app@10.0.0.%d", i+1)
		}
		lr := build(members, false)
		c := consistent.New()
		for _, m := range members {
			c.Add(m)
		}
		def := ring.Consistent().Build(members)
		var sink string
		b.Run(fmt.Sprintf("N=%d/libring", n), func(b *testing.B) {
			i := 0
			for b.Loop() {
				sink = lr.Owner(keys[i&4095])
				i++
			}
		})
		b.Run(fmt.Sprintf("N=%d/consistent.Get", n), func(b *testing.B) {
			i := 0
			for b.Loop() {
				sink, _ = c.Get(keys[i&4095])
				i++
			}
		})
		b.Run(fmt.Sprintf("N=%d/ring.Consistent", n), func(b *testing.B) {
			i := 0
			for b.Loop() {
				sink = def.Owner(keys[i&4095])
				i++
			}
		})
		_ = sink
	}
}

// BenchmarkBuild measures building a libring ring (done on every membership
// change).
func BenchmarkBuild(b *testing.B) {
	for _, n := range []int{3, 10, 50} {
		members := make([]string, n)
		for i := range members {
			members[i] = fmt.Sprintf("app@10.0.0.%d", i+1)
		}
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			for b.Loop() {
				_ = build(members, false)
			}
		})
	}
}
