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

// diff reports which of keys change owner from old to new (two snapshots of
// the same ring, typically consecutive epochs): gained[m] lists the keys m
// owns in new but not in old, lost[m] the keys m owned in old but not in new,
// each in the order of keys. Keys that keep their owner appear in neither.
// A nil or empty snapshot owns nothing: keys coming from it appear only in
// gained, keys going to it only in lost. Both maps are non-nil.
func diff(old, new *View, keys []string) (gained, lost map[string][]string) {
	gained, lost = make(map[string][]string), make(map[string][]string)
	for _, k := range keys {
		from, to := old.ownerOrNone(k), new.ownerOrNone(k)
		if from == to {
			continue
		}
		if from != "" {
			lost[from] = append(lost[from], k)
		}
		if to != "" {
			gained[to] = append(gained[to], k)
		}
	}
	return gained, lost
}

// ownerOrNone returns the owner of key, or "" for a nil or empty snapshot.
func (s *View) ownerOrNone(key string) string {
	if s == nil || s.lookup == nil {
		return ""
	}
	return s.lookup.Owner(key)
}
