package interop

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cloister-go/cloister"
	"github.com/cloister-go/cloister/cloistertest"
	"github.com/cloister-go/cloister/internal/erltest"
	"github.com/cloister-go/cloister/internal/testenv"
	"github.com/cloister-go/cloister/ring/libring"
)

// Owner agreement in a mixed cluster, over time: a sampler reads every
// member's ring (Go /status, the BEAM model's members) every few tens of
// milliseconds, and for each sample counts the keys (agreeKeys of the test
// keys) whose owner differs between any two members. A window is a run of
// samples with a disagreement. docs/interop.md records the numbers and the
// membership rule they led to.

const agreeKeys = 1000

type ringSample struct {
	at    time.Time
	views map[string][]string // node -> its ring members, sorted
}

// sampler polls a row's views until stopped.
type sampler struct {
	w       *row
	every   time.Duration
	mu      sync.Mutex
	samples []ringSample
	stop    chan struct{}
	done    chan struct{}
}

func (w *row) startSampler(every time.Duration) *sampler {
	s := &sampler{w: w, every: every, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for n := 0; n < 100000; n++ { // bounded: ~1.5 h at 50 ms
			v := w.viewsQuiet()
			s.mu.Lock()
			s.samples = append(s.samples, ringSample{at: time.Now(), views: v})
			s.mu.Unlock()
			select {
			case <-s.stop:
				return
			case <-time.After(every):
			}
		}
	}()
	return s
}

// complete counts the samples so far that hold the views of n members.
func (s *sampler) complete(n int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := 0
	for _, x := range s.samples {
		if len(x.views) == n {
			c++
		}
	}
	return c
}

func (s *sampler) finish() []ringSample {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.samples
}

// viewsQuiet is views without failing the test: nodes not started or not
// answering are left out.
func (w *row) viewsQuiet() map[string][]string {
	w.viewMu.Lock()
	gos := []*cloistertest.Node{w.go1, w.go2}
	beam := slices.Clone(w.beam)
	w.viewMu.Unlock()
	v := map[string][]string{}
	if c := cloister.Default(); c != nil {
		v[goIn] = goRing(c.State())
	}
	for _, g := range gos {
		if g == nil {
			continue
		}
		if s, err := g.Status(); err == nil && len(goRing(s)) > 0 {
			v[g.Name] = goRing(s)
		}
	}
	for _, e := range beam {
		if out, err := e.EvalTimeout("cloister_member:members()", 2*time.Second); err == nil {
			if p, err := parseTerm(out); err == nil {
				v[e.Name] = atomsOf(p)
			}
		}
	}
	return v
}

// window is a run of samples in which some key had two owners.
type window struct {
	from, to time.Duration // since the reference time
	maxKeys  int
}

// disagreement scores samples: the windows (relative to ref) and, per
// sample, the keys whose owner differs between any two members.
//
// ready > 0 keeps only the views of members that hold at least that many
// nodes (the consensus: the members that report ready and act on owners).
func disagreement(samples []ringSample, otp int, ref time.Time, ready int) []window {
	type ownersOf = []string
	cache := map[string]ownersOf{}
	owners := func(members []string) ownersOf {
		k := strings.Join(members, ",")
		if o, ok := cache[k]; ok {
			return o
		}
		o := make(ownersOf, agreeKeys)
		if len(members) > 0 {
			r := libring.EngineFor(otp).Build(members)
			for i := range o {
				o[i] = r.Owner(key(i))
			}
		}
		cache[k] = o
		return o
	}
	var out []window
	var cur *window
	for _, s := range samples {
		var sets []ownersOf
		for _, m := range s.views {
			if len(m) >= ready {
				sets = append(sets, owners(m))
			}
		}
		bad := 0
		for i := 0; i < agreeKeys && len(sets) > 1; i++ {
			for _, o := range sets[1:] {
				if o[i] != sets[0][i] {
					bad++
					break
				}
			}
		}
		at := s.at.Sub(ref)
		switch {
		case bad > 0 && cur == nil:
			out = append(out, window{from: at, to: at, maxKeys: bad})
			cur = &out[len(out)-1]
		case bad > 0:
			cur.to = at
			cur.maxKeys = max(cur.maxKeys, bad)
		default:
			if cur != nil {
				cur.to = at // agreement again at this sample
			}
			cur = nil
		}
	}
	return out
}

// describe renders windows for the report: "n windows, total T, longest
// L, ≤ K keys of 1000".
func describe(ws []window) string {
	if len(ws) == 0 {
		return "none"
	}
	var total, longest time.Duration
	keys := 0
	for _, w := range ws {
		d := w.to - w.from
		total += d
		longest = max(longest, d)
		keys = max(keys, w.maxKeys)
	}
	return fmt.Sprintf("%d window(s), %s in all, longest %s, up to %d of %d keys", len(ws), ms(total), ms(longest), keys, agreeKeys)
}

// freezeErl: SIGSTOP an Erlang member for 8 s, then SIGCONT; the owner
// disagreement over the freeze and the recovery, under both rules.
func (w *row) freezeErl(t *testing.T, all []string) {
	check(t, w.rel, "owner disagreement: an Erlang member frozen 8 s (SIGSTOP), then resumed", func(t *testing.T) string {
		for _, g := range []*cloistertest.Node{w.go1, w.go2} {
			if err := g.CaughtUp(10 * time.Second); err != nil {
				t.Fatal(err)
			}
		}
		s := w.startSampler(50 * time.Millisecond)
		// Samples of the whole cluster before the freeze: the baseline the
		// windows after it are read against.
		whole := 3 + len(w.beam)
		testenv.WaitFor(t, 30*time.Second, "two samples with every member's ring before the freeze", func() bool {
			return s.complete(whole) >= 2
		})
		frozen := w.erlB
		t0 := time.Now()
		if err := syscall.Kill(frozen.Pid(), syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		w.viewMu.Lock()
		w.beam = []*erltest.Node{w.erlA} // a frozen node answers no Eval
		w.viewMu.Unlock()
		time.Sleep(8 * time.Second)
		if err := syscall.Kill(frozen.Pid(), syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		resumed := time.Since(t0)
		w.viewMu.Lock()
		w.beam = []*erltest.Node{w.erlA, frozen}
		w.viewMu.Unlock()
		took := w.converge(t, all, 30*time.Second)
		samples := s.finish()
		windows := describe(disagreement(samples, w.otp(), t0, 0))
		t.Logf("freeze: %d samples; %s", len(samples), windows)
		return fmt.Sprintf("resumed at %s, one ring again %s later; owners differ: %s", ms(resumed), ms(took), windows)
	})
}

// readyGap is how long, over the samples, some Go node held a ready ring
// (≥ consensus members) while some BEAM member did not: the time a Go node
// acts on owners the BEAM side has not assembled yet.
func readyGap(samples []ringSample, goNames []string, consensus int) time.Duration {
	isGo := map[string]bool{}
	for _, g := range goNames {
		isGo[g] = true
	}
	var gap time.Duration
	for i, s := range samples {
		goReady, beamNot := false, false
		for n, m := range s.views {
			if isGo[n] && len(m) >= consensus {
				goReady = true
			}
			if !isGo[n] && len(m) < consensus {
				beamNot = true
			}
		}
		if goReady && beamNot && i+1 < len(samples) {
			gap += samples[i+1].at.Sub(s.at)
		}
	}
	return gap
}
