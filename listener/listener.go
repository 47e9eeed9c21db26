// Package listener defines how user code hears about cluster state changes.
//
// The original Cloister.Listener ran inside the state machine, so a slow or
// panicking listener froze the cluster, and it was told only the state being
// left. Here a Listener gets the old state, the new state and a snapshot, on
// a goroutine of its own, in order; a panic is recovered and logged.
//
// The package also names what an observer sees: the Monitor's State values
// and its decisions as typed Events (Transition, RingsRebuilt, Removed with
// its RemovalReason, ...), delivered to Options.Observe.
package listener

import (
	"fmt"
	"log"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/cloister-go/cloister/ring"
)

// Flags describe this node at the moment of a snapshot.
type Flags struct {
	// Alive: the Monitor is running (false only in stopping/stopped).
	Alive bool `json:"alive"`
	// Clustered: at least one other member is connected.
	Clustered bool `json:"clustered"`
	// Sentry: this node is one of its own sentries.
	Sentry bool `json:"sentry"`
}

// Ring is one named ring in a snapshot.
type Ring struct {
	Members []string `json:"members"`
	// Epoch counts this node's rebuilds of the ring; it differs between nodes.
	Epoch uint64 `json:"epoch"`
	// Hash identifies the member set; equal on every node with equal members.
	Hash uint64 `json:"hash"`
	// Shares is each member's fraction (0..1) of the key-hash space.
	Shares map[string]float64 `json:"shares,omitempty"`
}

// Snapshot is the Monitor's view at one moment. It is a value: listeners may
// keep it.
type Snapshot struct {
	Node      string          `json:"node"`
	OTPApp    string          `json:"otp_app"`
	State     State           `json:"state"`
	Consensus int             `json:"consensus"`
	Members   []string        `json:"members"`
	Rings     map[string]Ring `json:"rings"`
	Connected []string        `json:"connected"`
	Suspects  []string        `json:"suspects,omitempty"`
	Flags     Flags           `json:"flags"`
	At        time.Time       `json:"at"`
	// Transitions are this node's latest state changes, oldest first, at
	// most RecentChanges of them.
	Transitions []Change `json:"transitions,omitempty"`
	// RingChanges, in a snapshot handed to a Listener, lists for each ring
	// whose members changed since the previous snapshot handed to it the
	// key-hash ranges this node gained and lost: the state to fetch and to
	// hand over, without looking at every key. Published snapshots
	// (Cluster.Snapshot, /status) leave it empty.
	RingChanges []RingChange `json:"ring_changes,omitempty"`
	// Leaving: this node is leaving the cluster (Leave).
	Leaving bool `json:"leaving,omitempty"`
}

// RingChange is what this node gained and lost in one ring: the key-hash
// ranges (see ring.Snapshot.KeyHash) it owns now and did not own before,
// and those it owned and no longer does. Epoch is the ring's epoch now.
type RingChange struct {
	Ring   string           `json:"ring"`
	Epoch  uint64           `json:"epoch"`
	Gained []ring.HashRange `json:"gained,omitempty"`
	Lost   []ring.HashRange `json:"lost,omitempty"`
}

// Ready reports whether the snapshot's state is StateReady.
func (s Snapshot) Ready() bool { return s.State == StateReady }

// Listener is told of every state change of the Monitor.
//
// OnStateChange runs on a goroutine owned by the Dispatcher, never on the
// Monitor's: calls arrive one at a time, in the order the changes happened.
// It may block (later changes queue up, the Monitor goes on); a panic is
// recovered and logged and the next change is delivered as usual.
type Listener interface {
	OnStateChange(from, to State, snap Snapshot)
}

// Func adapts a function to a Listener.
type Func func(from, to State, snap Snapshot)

// OnStateChange calls f.
func (f Func) OnStateChange(from, to State, snap Snapshot) { f(from, to, snap) }

// Logger is the default listener: one log line per change.
type Logger struct {
	// Logf prints; nil means log.Printf.
	Logf func(format string, args ...interface{})
}

// OnStateChange logs the change with the members.
func (l Logger) OnStateChange(from, to State, s Snapshot) {
	logf := l.Logf
	if logf == nil {
		logf = log.Printf
	}
	logf("cloister: %s: %s -> %s, members %d/%d [%s]", s.Node, from, to,
		len(s.Members), s.Consensus, strings.Join(s.Members, ", "))
}

// Multi fans a change out to several listeners, in order.
type Multi []Listener

// OnStateChange calls every listener; a panic in one does not skip the others.
func (m Multi) OnStateChange(from, to State, s Snapshot) {
	for _, l := range m {
		func() {
			defer func() {
				if r := recover(); r != nil {
					log.Printf("cloister: listener %T panicked on %s -> %s: %v", l, from, to, r)
				}
			}()
			l.OnStateChange(from, to, s)
		}()
	}
}

type change struct {
	from, to State
	snap     Snapshot
	// then, when set, is no change but a call to make once every change
	// queued before it has been delivered (After).
	then func()
}

// DefaultQueue bounds the changes a stuck listener may have pending.
const DefaultQueue = 4096

// Dispatcher delivers changes to a Listener on its own goroutine. Notify
// never blocks: the Monitor hands a change over and goes on.
type Dispatcher struct {
	l    Listener
	logf func(string, ...interface{})
	slow time.Duration

	mu      sync.Mutex
	queue   []change
	max     int
	dropped int
	wake    chan struct{}
	closed  bool
	done    chan struct{}
	busy    bool
	// idle is closed (and cleared) when the queue is next empty with no
	// delivery running, or at Close; Flush waits on it.
	idle chan struct{}
}

// NewDispatcher starts delivering to l. logf reports panics, slow calls and
// drops (nil: log.Printf). A call slower than slow is logged (0: 1 s).
func NewDispatcher(l Listener, logf func(string, ...interface{}), slow time.Duration) *Dispatcher {
	if logf == nil {
		logf = log.Printf
	}
	if slow <= 0 {
		slow = time.Second
	}
	d := &Dispatcher{l: l, logf: logf, slow: slow, max: DefaultQueue,
		wake: make(chan struct{}, 1), done: make(chan struct{})}
	go d.loop()
	return d
}

// Notify queues a change. When DefaultQueue changes are already pending, the
// oldest is dropped and the drop logged: a listener stuck for that long must
// not grow memory without bound.
func (d *Dispatcher) Notify(from, to State, snap Snapshot) {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	var run []func()
	if len(d.queue) >= d.max {
		if f := d.queue[0].then; f != nil {
			run = append(run, f) // its changes were delivered or dropped
		} else {
			d.dropped++
		}
		d.queue = d.queue[1:]
	}
	d.queue = append(d.queue, change{from: from, to: to, snap: snap})
	defer func() {
		for _, f := range run {
			f()
		}
	}()
	// Under the lock, so Close cannot close wake between the check and the send.
	select {
	case d.wake <- struct{}{}:
	default:
	}
	d.mu.Unlock()
}

// After arranges for f to be called, on the Dispatcher's goroutine, once
// every change queued so far has been delivered (the listener returned).
// f must not block. After a Close, f is called at once.
func (d *Dispatcher) After(f func()) {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		f()
		return
	}
	d.queue = append(d.queue, change{then: f})
	select {
	case d.wake <- struct{}{}:
	default:
	}
	d.mu.Unlock()
}

// Flush waits until every queued change has been delivered, or timeout.
// It starts no goroutine: nothing of it outlives the timeout.
func (d *Dispatcher) Flush(timeout time.Duration) bool {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		d.mu.Lock()
		if (len(d.queue) == 0 && !d.busy) || d.closed {
			d.mu.Unlock()
			return true
		}
		if d.idle == nil {
			d.idle = make(chan struct{})
		}
		idle := d.idle
		d.mu.Unlock()
		select {
		case <-idle:
		case <-t.C:
			return false
		}
	}
}

// wakeFlushers releases the Flush calls waiting; called with mu held.
func (d *Dispatcher) wakeFlushers() {
	if d.idle != nil {
		close(d.idle)
		d.idle = nil
	}
}

// Close delivers what is queued (up to timeout) and stops the goroutine.
// It returns within timeout even when the listener never returns: the
// Monitor calls it while stopping, and a stuck listener must not keep the
// Monitor (and so StopNode's caller) for ever. What is left is only the
// Dispatcher's own goroutine, inside the listener's call; it ends, and
// delivers nothing more, as soon as that call returns.
func (d *Dispatcher) Close(timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	d.Flush(timeout)
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	d.closed = true
	d.wakeFlushers()
	var run []func()
	for _, c := range d.queue {
		if c.then != nil {
			run = append(run, c.then)
		}
	}
	d.mu.Unlock()
	for _, f := range run {
		f() // what is left will not be delivered: do not keep f waiting
	}
	close(d.wake)
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-d.done:
	case <-t.C:
		d.logf("cloister: listener still running %s after close began; its call is left to finish on its own", timeout)
	}
}

// Done is closed when the Dispatcher's goroutine has ended (after Close,
// once the listener's last call has returned).
func (d *Dispatcher) Done() <-chan struct{} { return d.done }

func (d *Dispatcher) loop() {
	defer close(d.done)
	for range d.wake {
		for {
			d.mu.Lock()
			if len(d.queue) == 0 || d.closed {
				d.busy = false
				d.wakeFlushers()
				d.mu.Unlock()
				break
			}
			c := d.queue[0]
			d.queue = d.queue[1:]
			dropped := d.dropped
			d.dropped = 0
			d.busy = true
			d.mu.Unlock()
			if dropped > 0 {
				d.logf("cloister: listener too slow: %d state changes dropped", dropped)
			}
			if c.then != nil {
				c.then()
				continue
			}
			d.deliver(c)
		}
	}
}

func (d *Dispatcher) deliver(c change) {
	start := time.Now()
	defer func() {
		if r := recover(); r != nil {
			d.logf("cloister: listener panicked on %s -> %s: %v\n%s", c.from, c.to, r, debug.Stack())
		}
		if el := time.Since(start); el > d.slow {
			d.logf("cloister: listener took %s on %s -> %s", el.Round(time.Millisecond), c.from, c.to)
		}
	}()
	d.l.OnStateChange(c.from, c.to, c.snap)
}

// String renders a snapshot in one line, for logs.
func (s Snapshot) String() string {
	names := make([]string, 0, len(s.Rings))
	for n := range s.Rings {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s members=%d/%d", s.Node, s.State, len(s.Members), s.Consensus)
	for _, n := range names {
		r := s.Rings[n]
		fmt.Fprintf(&b, " ring[%s]=%d@%d", n, len(r.Members), r.Epoch)
	}
	return b.String()
}
