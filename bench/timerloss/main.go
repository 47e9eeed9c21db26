// Command timerloss reproduces, in plain Go, the stall behind the rare
// spurious 5 s call timeouts between Ergo nodes: a time.AfterFunc timer
// that is waiting (armed far ahead) and is Reset to fire at once may not
// fire until some other timer of the same P's heap makes the runtime scan
// that heap again, seconds later.
//
// Ergo v2.2.4's link writer (proto/dist/flusher.go) works this way: every
// link keeps an AfterFunc timer armed 15 s ahead for its keepalive, and
// the first write after a flush Resets it to 200 ns to flush the buffered
// bytes. When several links are written at once (a fan-out), two such
// Resets can race with the runtime's adjustment of the timer heap they
// share; the losing link keeps its bytes in its buffer until the stale
// 15 s deadline or the next scan of that heap. Calls over that link then
// time out although both nodes are healthy.
//
// Each of -links workers here does what a link writer does: mark data
// pending and Reset its timer to 200 ns, then wait for the timer function
// to flush; a wait longer than -stall counts as a stall. The waiters'
// deadline timers (-stall, reused from a pool) are what eventually
// trigger the rescan, so a stall lasts about -stall. Run it for a minute or two:
//
//	go run ./bench/timerloss -links 8 -rounds 300000
//
// Go 1.26.8 on 2 vCPUs: 0–4 stalls per 300000 rounds of 8 links; none
// with the runtime's timer.modify changed to publish timerModified in
// t.astate before it reads minWhenModified.
package main

import (
	"flag"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// timers are the waiters' deadline timers, reused as Ergo's calls and
// cloister's fan-out reuse theirs (a fresh timer per wait leaves a stopped
// one in the heap, whose removal also rescans it and hides the stall).
var timers sync.Pool

func getTimer(d time.Duration) *time.Timer {
	if t, _ := timers.Get().(*time.Timer); t != nil {
		t.Reset(d)
		return t
	}
	return time.NewTimer(d)
}

func putTimer(t *time.Timer) {
	t.Stop()
	timers.Put(t)
}

// link is the part of a link writer that matters: a pending flag and an
// AfterFunc timer, armed keepalive ahead when idle.
type link struct {
	mu      sync.Mutex
	t       *time.Timer
	pending bool
	flushed chan struct{}
}

func main() {
	links := flag.Int("links", 8, "links written at once per round")
	rounds := flag.Int("rounds", 300000, "rounds")
	stall := flag.Duration("stall", time.Second, "a flush later than this is a stall")
	flag.Parse()
	const keepalive = 15 * time.Second

	var stalls atomic.Int64
	var worst atomic.Int64
	ls := make([]*link, *links)
	for i := range ls {
		l := &link{flushed: make(chan struct{}, 1)}
		l.t = time.AfterFunc(keepalive, func() {
			l.mu.Lock()
			if l.pending {
				l.pending = false
				select {
				case l.flushed <- struct{}{}:
				default:
				}
			}
			l.t.Reset(keepalive)
			l.mu.Unlock()
		})
		ls[i] = l
	}
	start := time.Now()
	for r := 0; r < *rounds; r++ {
		var wg sync.WaitGroup
		for _, l := range ls {
			wg.Add(1)
			go func(l *link) {
				defer wg.Done()
				t0 := time.Now()
				l.mu.Lock()
				if !l.pending {
					l.pending = true
					l.t.Reset(200 * time.Nanosecond)
				}
				l.mu.Unlock()
				deadline := getTimer(*stall)
				defer putTimer(deadline)
				select {
				case <-l.flushed:
				case <-deadline.C:
					stalls.Add(1)
					<-l.flushed
				}
				if d := int64(time.Since(t0)); d > worst.Load() {
					worst.Store(d)
				}
			}(l)
		}
		wg.Wait()
	}
	fmt.Printf("links=%d rounds=%d stalls(>%v)=%d worst=%v elapsed=%v\n",
		*links, *rounds, *stall, stalls.Load(), time.Duration(worst.Load()), time.Since(start).Round(time.Millisecond))
	if stalls.Load() > 0 {
		os.Exit(1)
	}
}
