// Package dispatcher delivers the Monitor's state changes to the user's
// listener on a goroutine of its own, in order, with panics recovered and
// logged, a bounded queue, and a Close that a stuck listener cannot hold
// up: the Monitor hands a change over and goes on.
package dispatcher

import (
	"log"
	"runtime/debug"
	"sync"
	"time"

	"github.com/cloister-go/cloister/listener"
)

type change struct {
	from, to listener.State
	snap     listener.Snapshot
	// then, when set, is no change but a call to make once every change
	// queued before it has been delivered (After).
	then func()
}

// DefaultQueue bounds the changes a stuck listener may have pending.
const DefaultQueue = 4096

// Dispatcher delivers changes to a listener.Listener on its own goroutine. Notify
// never blocks: the Monitor hands a change over and goes on.
type Dispatcher struct {
	l    listener.Listener
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

// New starts delivering to l. logf reports panics, slow calls and
// drops (nil: log.Printf). A call slower than slow is logged (0: 1 s).
func New(l listener.Listener, logf func(string, ...interface{}), slow time.Duration) *Dispatcher {
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
func (d *Dispatcher) Notify(from, to listener.State, snap listener.Snapshot) {
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
