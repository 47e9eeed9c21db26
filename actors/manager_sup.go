package actors

import (
	"errors"
	"fmt"
	"log"
	"sync"
	"time"

	"github.com/ergo-services/ergo/etf"
	"github.com/ergo-services/ergo/gen"
	"github.com/ergo-services/ergo/lib"
)

// The Manager runs its own supervisor loop instead of Ergo's, which
// believes every exit signal it gets: a forged EXIT naming a live child as
// the dead process made Ergo's supervisor restart that child while it
// still held its registered name, and the supervisor panicked; and a
// supervisor that gave up left the node up with cloister silently gone.
// This one:
//
//   - learns that a child ended from the child's own context, which only
//     its end cancels (no message, so nothing to forge or to lose in a
//     full mailbox); exit signals from anyone but itself are ignored;
//   - restarts rest_for_one within the spec's intensity (at most
//     Intensity restarts in Period seconds, the initial start not
//     counted, as in OTP); beyond it, stops every child, marks the
//     cluster stopped (Cluster.Stopped and Cluster.Err in the facade, empty rings) and
//     exits with reason shutdown;
//   - answers OTP supervisor calls (which_children, count_children,
//     get_childspec; changes are refused) from BEAM and Go callers.

// childStopTimeout is how long a child may take to stop before it is
// killed (OTP's default shutdown for a worker is 5 s).
const childStopTimeout = 5 * time.Second

type supChild struct {
	spec gen.SupervisorChildSpec
	proc gen.Process // nil while not running
	gate *gated      // proc's behaviour, as spawned
	sup  bool        // the child is a supervisor (for OTP callers)
}

// gated is a child's behaviour whose end waits for an Exit or Kill of it
// by its supervisor to return. Ergo's Exit of a process that does not trap
// exits queues the request and then reads the process's kill function to
// cancel it; in between, the process can take the request, end, and have
// that function cleared by Ergo's cleanup (a data race inside Ergo, and a
// nil dereference that killed the supervisor). The cleanup runs after the
// process loop returns, so holding that return orders the two.
type gated struct {
	gen.ProcessBehavior
	mu    sync.Mutex
	ended bool // the loop returned: Ergo may be clearing the process
}

// ProcessInit lets the child's own ProcessInit see its own behaviour:
// Ergo's gen.Server and gen.Supervisor find their callbacks through
// Behavior().
func (g *gated) ProcessInit(p gen.Process, args ...etf.Term) (gen.ProcessState, error) {
	return g.ProcessBehavior.ProcessInit(ownBehavior{Process: p, b: g.ProcessBehavior}, args...)
}

// ProcessLoop runs the child's loop; the deferred mark also runs when the
// loop panics (Ergo recovers and cleans up after it).
func (g *gated) ProcessLoop(ps gen.ProcessState, started chan<- bool) string {
	defer func() {
		g.mu.Lock()
		g.ended = true
		g.mu.Unlock()
	}()
	return g.ProcessBehavior.ProcessLoop(ps, started)
}

// signal runs f, an Exit or a Kill of the child, unless the child's loop
// has returned already (Ergo's fields for it are being cleared).
func (g *gated) signal(f func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.ended {
		f()
	}
}

// ownBehavior is a process whose Behavior is the wrapped one. Code that
// needs Ergo's process itself (the fan-out engine needs its router) takes
// it from Unwrap.
type ownBehavior struct {
	gen.Process
	b gen.ProcessBehavior
}

func (o ownBehavior) Behavior() gen.ProcessBehavior { return o.b }

// Unwrap returns Ergo's process.
func (o ownBehavior) Unwrap() gen.Process { return o.Process }

type childDown struct {
	i   int
	pid etf.Pid
}

type supervisor struct {
	p        gen.Process
	strategy gen.SupervisorStrategy
	children []*supChild
	restarts []time.Time
	downs    chan childDown
	logf     func(string, ...interface{})
	// onStop runs when the loop ends, with the reason and what led to it.
	onStop func(reason, detail string)
	// connected reports whether an answer to a caller on node can be sent
	// without Ergo dialling it (nil: always).
	connected func(node string) bool
	// own, when set, is told the pids of the supervisor and its running
	// children after every change.
	own func([]etf.Pid)
}

func newSupervisor(p gen.Process, spec *gen.SupervisorSpec, logf func(string, ...interface{})) *supervisor {
	if logf == nil {
		logf = log.Printf
	}
	s := &supervisor{p: p, strategy: spec.Strategy, logf: logf}
	for _, c := range spec.Children {
		_, isSup := c.Child.(gen.SupervisorBehavior)
		s.children = append(s.children, &supChild{spec: c, sup: isSup})
	}
	s.downs = make(chan childDown, len(s.children)+1)
	return s
}

// loop is the process loop. It returns the supervisor's exit reason.
func (s *supervisor) loop(ps gen.ProcessState, started chan<- bool) (reason string) {
	detail := ""
	defer func() {
		s.stopFrom(0, reason)
		if s.onStop != nil {
			s.onStop(reason, detail)
		}
	}()
	if err := s.startFrom(0); err != nil {
		// as OTP: a child that cannot start fails the supervisor's start
		started <- true
		detail = err.Error()
		s.logf("cloister: %s: %v; stopping", s.label(), err)
		return "shutdown"
	}
	started <- true
	chs := ps.ProcessChannels()
	ctx := ps.Context()
	for {
		select {
		case <-ctx.Done():
			return "kill"
		case ex := <-chs.GracefulExit:
			if ex.From == s.p.Self() {
				return ex.Reason // stopped by its application (or Exit)
			}
			// Children are watched through their contexts; a signal
			// from anyone else (a peer that linked, or a forged EXIT
			// naming a child that is alive) changes nothing.
			exitsIgnored.note(s.p.Name(), ex)
		case d := <-s.downs:
			if err := s.childDown(d); err != nil {
				detail = err.Error()
				s.logf("cloister: %s: %v; giving up: cloister is stopped on this node", s.label(), err)
				return "shutdown"
			}
		case m := <-chs.Mailbox:
			s.handleCall(m.Message)
		case d := <-chs.Direct:
			if _, ok := d.Message.(gen.MessageDirectChildren); ok {
				s.p.PutSyncReply(d.Ref, s.pids(), nil)
			} else {
				s.p.PutSyncReply(d.Ref, nil, lib.ErrUnsupportedRequest)
			}
		}
	}
}

func (s *supervisor) label() string {
	if n := s.p.Name(); n != "" {
		return n
	}
	return "supervisor"
}

// start spawns child i under this supervisor: its context is the
// supervisor's (it dies with it), and a watcher reports its end.
func (s *supervisor) start(i int) error {
	c := s.children[i]
	opts := c.spec.Options
	opts.Context = s.p.Context()
	opts.GroupLeader = s.p
	if gl := s.p.GroupLeader(); gl != nil {
		opts.GroupLeader = gl
	}
	gate := &gated{ProcessBehavior: c.spec.Child}
	proc, err := s.p.Spawn(c.spec.Name, opts, gate, c.spec.Args...)
	// A killed process's context ends at once, but it keeps its name
	// until its Terminate has run: wait for the name a little.
	for wait, deadline := time.Millisecond, time.Now().Add(childStopTimeout); errors.Is(err, lib.ErrTaken) && time.Now().Before(deadline); wait = min(2*wait, 50*time.Millisecond) {
		time.Sleep(wait)
		gate = &gated{ProcessBehavior: c.spec.Child}
		proc, err = s.p.Spawn(c.spec.Name, opts, gate, c.spec.Args...)
	}
	if err != nil {
		return fmt.Errorf("cannot start child %s: %w", s.childID(i), err)
	}
	c.proc, c.gate = proc, gate
	pid, done, sctx := proc.Self(), proc.Context().Done(), s.p.Context().Done()
	go func() {
		select {
		case <-done:
		case <-sctx:
			return
		}
		select {
		case s.downs <- childDown{i: i, pid: pid}:
		case <-sctx:
		}
	}()
	return nil
}

// startFrom starts children i.. in order.
func (s *supervisor) startFrom(i int) error {
	defer s.tellOwn()
	for ; i < len(s.children); i++ {
		if s.children[i].proc != nil {
			continue
		}
		if err := s.start(i); err != nil {
			return err
		}
	}
	return nil
}

func (s *supervisor) tellOwn() {
	if s.own != nil {
		s.own(append([]etf.Pid{s.p.Self()}, s.pids()...))
	}
}

// stopFrom stops children i.. in reverse order, each given
// childStopTimeout before it is killed.
func (s *supervisor) stopFrom(i int, reason string) {
	for j := len(s.children) - 1; j >= i; j-- {
		c := s.children[j]
		if c.proc == nil {
			continue
		}
		p, gate := c.proc, c.gate
		c.proc, c.gate = nil, nil
		if !p.IsAlive() || s.p.Context().Err() != nil {
			// Gone, or this supervisor was killed: each child's context is
			// ours (see start), so it is ending already.
			continue
		}
		gate.signal(func() { _ = p.Exit(reason) })
		select {
		case <-p.Context().Done():
		case <-time.After(childStopTimeout):
			s.logf("cloister: %s: child %s did not stop within %s; killed", s.label(), s.childID(j), childStopTimeout)
			gate.signal(p.Kill)
		}
	}
}

// allow records a restart and reports whether it is within the intensity.
func (s *supervisor) allow(now time.Time) bool {
	period := time.Duration(s.strategy.Period) * time.Second
	kept := s.restarts[:0]
	for _, t := range s.restarts {
		if now.Sub(t) < period {
			kept = append(kept, t)
		}
	}
	s.restarts = append(kept, now)
	return len(s.restarts) <= int(s.strategy.Intensity)
}

// childDown restarts the child that ended and, rest_for_one, every child
// after it. It returns an error when the intensity is exceeded.
func (s *supervisor) childDown(d childDown) error {
	c := s.children[d.i]
	if c.proc == nil || c.proc.Self() != d.pid {
		return nil // a child this supervisor stopped itself
	}
	c.proc, c.gate = nil, nil
	for {
		if !s.allow(time.Now()) {
			return fmt.Errorf("%d restarts within %ds (the last: child %s ended)",
				len(s.restarts), s.strategy.Period, s.childID(d.i))
		}
		s.logf("cloister: %s: child %s ended; restarting it and the children after it (restart %d of at most %d in %ds)",
			s.label(), s.childID(d.i), len(s.restarts), s.strategy.Intensity, s.strategy.Period)
		s.stopFrom(d.i+1, "shutdown")
		err := s.startFrom(d.i)
		if err == nil {
			return nil
		}
		s.logf("cloister: %s: %v", s.label(), err)
	}
}

// pids lists the running children's pids, in start order.
func (s *supervisor) pids() []etf.Pid {
	var out []etf.Pid
	for _, c := range s.children {
		if c.proc != nil {
			out = append(out, c.proc.Self())
		}
	}
	return out
}

// childID is the child's id for people and OTP callers: its registered
// name, or child_N for an unnamed one.
func (s *supervisor) childID(i int) string {
	if n := s.children[i].spec.Name; n != "" {
		return n
	}
	return fmt.Sprintf("child_%d", i+1)
}
