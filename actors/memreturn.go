package actors

import (
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"
)

// Returning the memory of a membership change to the OS.
//
// Assembling a cluster, and every burst of membership changes after it,
// allocates work that grows with N² (each node decodes every peer's state
// answers, sets up N − 1 connections, rebuilds its rings), about 13 MB at
// N = 25 for a live heap of 6 MB. The GC collects it, but the runtime keeps
// the freed pages as long as the heap stays below its goal (twice the live
// heap), and a steady cluster allocates a few KB a second: no collection
// runs for many minutes, and the node's RSS stays at what the burst left,
// 1.8–2.4× a raw Ergo node's at N = 10–50. So once the node's published
// view (members, state, connections) has been unchanged for memSettle
// while its Monitor runs (ready, or rehashing below consensus, which can
// last), cloister calls debug.FreeOSMemory once: a forced collection, then the freed pages go
// back to the OS. The cost is one collection of a heap of a few MB, about
// 10 ms of CPU (bench/scale.md has the numbers), once per burst, never on a
// timer: a steady cluster pays nothing. What it saves lasts until the heap
// grows back to its goal, which at a steady cluster's rate takes many
// minutes; the next burst returns it again.
//
// It is skipped when the live heap exceeds memReturnMaxHeap: the heap is
// then mostly the application's, a forced collection of it is work the
// application did not ask for, and the pages cloister's burst freed are a
// small share of the process's memory.
const (
	memSettle        = 3 * time.Second
	memReturnMaxHeap = 64 << 20
)

// memReturned counts the returns done in this process (for tests); memLast
// is when the last one ran, so several nodes in one process return at most
// once per memSettle between them.
var (
	memReturned atomic.Int64
	memLast     atomic.Int64 // unix nanoseconds
)

// memReturner arms a return after each published change, and disarms it on
// the next one: only a quiet memSettle after the last change of a burst
// returns memory.
type memReturner struct {
	off bool // Options.KeepFreedMemory: never arms
	mu  sync.Mutex
	t   *time.Timer
	gen uint64
}

// changed is called on every published snapshot; running is whether the
// Monitor runs in it (assembling, rehashing or ready). Otherwise it only
// disarms.
func (r *memReturner) changed(running bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gen++
	if r.t != nil {
		r.t.Stop()
		r.t = nil
	}
	if !running || r.off {
		return
	}
	g := r.gen
	r.t = time.AfterFunc(memSettle, func() { r.fire(g) })
}

func (r *memReturner) fire(g uint64) {
	r.mu.Lock()
	current := g == r.gen
	if current {
		r.t = nil
	}
	r.mu.Unlock()
	if !current {
		return
	}
	now := time.Now().UnixNano()
	last := memLast.Load()
	if now-last < int64(memSettle) || !memLast.CompareAndSwap(last, now) {
		return // another node of this process returned just now
	}
	if liveHeap() > memReturnMaxHeap {
		return
	}
	debug.FreeOSMemory()
	memReturned.Add(1)
}

// liveHeap is the heap marked live by the last collection, read without
// stopping the world (runtime.ReadMemStats would).
func liveHeap() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}
