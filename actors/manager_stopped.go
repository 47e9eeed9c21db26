package actors

import (
	"github.com/cloister-go/cloister/internal/errs"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ergo-services/ergo/etf"

	"github.com/cloister-go/cloister/listener"
)

// lifecycle records whether the Manager of a cluster runs. The zero value
// is "never started"; the channel is made on first use.
type lifecycle struct {
	mu   sync.Mutex
	done chan struct{} // closed when the Manager stops
	err  error
	// own holds the pids of the Manager and its running children.
	own atomic.Pointer[[]etf.Pid]
	// halted mirrors err != nil for readers that take no lock (Halted).
	halted atomic.Bool
}

func (l *lifecycle) channel() chan struct{} {
	if l.done == nil {
		l.done = make(chan struct{})
	}
	return l.done
}

// Stopped returns a channel that is closed when cloister stops on this
// node for good: its Manager gave up after more restarts than its
// intensity allows, or was shut down (the node or the application
// stopped). An embedding program that cannot work without the cluster
// selects on it and exits, as a permanent OTP application would stop the
// node. A Manager started again on the same state gives a new channel.
func (c *shared) Stopped() <-chan struct{} {
	c.life.mu.Lock()
	defer c.life.mu.Unlock()
	return c.life.channel()
}

// Err is nil while cloister runs (or before it starts) and a
// *cloister.StoppedError, matching cloister.ErrStopped, once it has stopped.
func (c *shared) Err() error {
	c.life.mu.Lock()
	defer c.life.mu.Unlock()
	return c.life.err
}

// running marks the cluster's Manager as started.
func (c *shared) running() {
	c.life.mu.Lock()
	defer c.life.mu.Unlock()
	if c.life.err != nil {
		c.life.err = nil
		c.life.done = nil // a new channel for the new run
		c.life.halted.Store(false)
	}
}

// stopped marks cloister stopped on this node: every ring is emptied (so
// Whois fails and Mine is false instead of answering from a view nobody
// maintains any more), the snapshot says "stopped", and Stopped() closes.
func (c *shared) stopped(reason, detail string) {
	c.stopWith(&errs.StoppedError{Reason: reason, Detail: detail, At: time.Now()})
}

// stopWith is stopped with the error Err reports; the first call wins.
func (c *shared) stopWith(err error) {
	c.life.mu.Lock()
	if c.life.err != nil {
		c.life.mu.Unlock()
		return
	}
	c.life.err = err
	c.life.halted.Store(true)
	done := c.life.channel()
	c.life.mu.Unlock()
	for _, name := range c.Rings.Names() {
		_, _, _ = c.Rings.Update(name, nil)
	}
	s := c.Snapshot()
	s.At = time.Now()
	c.publish(s)
	close(done)
}

// stoppedView is what a stopped cluster shows: state stopped, no members,
// no rings.
func stoppedView(s listener.Snapshot) listener.Snapshot {
	s.State = "stopped"
	s.Flags.Alive = false
	s.Flags.Clustered = false
	s.Members, s.Suspects, s.Rings = nil, nil, nil
	return s
}

// setOwn records the pids of cloister's processes on this node.
func (c *shared) setOwn(pids []etf.Pid) { c.life.own.Store(&pids) }

// AcceptLink reports whether a process on node peer may link to process to
// of this node: not to one of cloister's own (the Manager and its
// children, additional modules included) unless peer is a member. In Ergo
// a linked peer's exit kills the process; cloister's own processes ignore
// exit signals, but the additional modules are the application's, and a
// peer killing one again and again would exhaust the Manager's restart
// intensity. The distribution filter asks this for every incoming link
// (distfilter.Options.AcceptLink).
func (c *shared) AcceptLink(peer string, to etf.Pid) bool {
	own := c.life.own.Load()
	if own == nil || !slices.Contains(*own, to) {
		return true
	}
	return slices.Contains(c.Snapshot().Members, peer)
}
