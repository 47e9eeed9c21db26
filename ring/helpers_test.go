package ring

import (
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"slices"
)

// Deterministic keys and member names shared by tests and benchmarks.

func sequentialKeys(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("key-%d", i)
	}
	return out
}

func randomKeys(n int, seed uint64) []string {
	r := rand.New(rand.NewPCG(seed, 1))
	out := make([]string, n)
	var b [12]byte
	for i := range out {
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		out[i] = hex.EncodeToString(b[:])
	}
	return out
}

// ipMembers are Erlang node names as in a container network.
func ipMembers(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("app@10.0.%d.%d", (i+2)/250, (i+2)%250)
	}
	slices.Sort(out)
	return out
}

// hostMembers are node names with random container host names.
func hostMembers(n int, seed uint64) []string {
	r := rand.New(rand.NewPCG(seed, 2))
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("app@%012x", r.Uint64()>>16)
	}
	slices.Sort(out)
	return out
}
