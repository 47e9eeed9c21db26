// Package security tests what a hostile or misconfigured peer can do to a
// cluster: lying peer Monitors, random terms, floods of casts, a wrong
// cookie, TLS on one side only. The victims are `cloister node` processes;
// this test process runs one Ergo node of its own, the attacker (one node
// per test binary, so -race holds). ergonode starts nodes without Ergo's
// system application, whose minute statistics job races under -race
// (docs/design.md), so the suite may run past a minute. That Ergo's
// anonymous metrics stay off is checked at run time by the chaos soak.
package security

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cloister-go/cloister/cloistertest"
	"github.com/cloister-go/cloister/internal/localcluster"
	"github.com/cloister-go/cloister/internal/wire/ergonode"
	"github.com/ergo-services/ergo/etf"
	"github.com/ergo-services/ergo/gen"
	"github.com/ergo-services/ergo/node"
)

const attackerName = "attacker@127.0.0.1"

var (
	h        *cloistertest.Harness
	attacker node.Node
	me       gen.Process
	inbox    *collector
	victims  []*cloistertest.Node
	vnames   []string
	fake     *fakeMonitor
	watch    *watcher
)

// watcher monitors the victims' Monitor and Node actor by registered
// name, as a BEAM peer would: a DOWN for any reason but noconnection (the
// victims dropping their link to the attacker, which some subtests cause
// on purpose) means one of them crashed and was restarted, which no
// hostile input may cause.
type watcher struct {
	gen.Server
	mu      sync.Mutex
	proc    gen.Process
	watched map[gen.ProcessID]bool
	crashes []string
}

func (w *watcher) HandleInfo(p *gen.ServerProcess, m etf.Term) gen.ServerStatus {
	if ch, ok := m.(chan struct{}); ok {
		close(ch) // sync: every DOWN queued before it is handled
		return gen.ServerStatusOK
	}
	d, ok := m.(gen.MessageDown)
	if !ok {
		return gen.ServerStatusOK
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.watched, d.ProcessID)
	if d.Reason != "noconnection" {
		w.crashes = append(w.crashes, fmt.Sprintf("%s on %s: %s", d.ProcessID.Name, d.ProcessID.Node, d.Reason))
	}
	return gen.ServerStatusOK
}

// arm monitors every target not monitored yet (after a noconnection DOWN
// the link is back once a call has been answered).
func (w *watcher) arm(targets []gen.ProcessID) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, to := range targets {
		if !w.watched[to] {
			w.proc.MonitorProcess(to)
			w.watched[to] = true
		}
	}
}

// exits returns the crashes seen since the last call. A DOWN that reached the
// attacker node before the last answer from a victim is counted: the sync
// message queues behind it in the watcher's mailbox.
func (w *watcher) exits() []string {
	ch := make(chan struct{})
	if err := me.Send(w.proc.Self(), ch); err == nil {
		select {
		case <-ch:
		case <-time.After(10 * time.Second):
			return []string{"the watcher did not answer in 10 s"}
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	c := w.crashes
	w.crashes = nil // each is reported by the subtest that caused it
	return c
}

// collector receives the answers to the calls we make by hand, and drops
// everything else.
type collector struct {
	gen.Server
	mu      sync.Mutex
	waiting map[etf.Ref]chan etf.Term
}

func (c *collector) HandleInfo(p *gen.ServerProcess, m etf.Term) gen.ServerStatus {
	t, ok := m.(etf.Tuple)
	if !ok || len(t) != 2 {
		return gen.ServerStatusOK
	}
	ref, ok := t[0].(etf.Ref)
	if !ok {
		return gen.ServerStatusOK
	}
	c.mu.Lock()
	ch := c.waiting[ref]
	delete(c.waiting, ref)
	c.mu.Unlock()
	if ch != nil {
		ch <- t[1]
	}
	return gen.ServerStatusOK
}

// call makes a gen_server call by hand (a $gen_call and a wait for {Ref,
// Reply}), as a BEAM node or a peer Monitor would.
func call(to gen.ProcessID, req etf.Term, timeout time.Duration) (etf.Term, error) {
	ref := me.MakeRef()
	ch := make(chan etf.Term, 1)
	inbox.mu.Lock()
	inbox.waiting[ref] = ch
	inbox.mu.Unlock()
	defer func() {
		inbox.mu.Lock()
		delete(inbox.waiting, ref)
		inbox.mu.Unlock()
	}()
	if err := me.Send(to, etf.Tuple{etf.Atom("$gen_call"), etf.Tuple{me.Self(), ref}, req}); err != nil {
		return nil, err
	}
	select {
	case r := <-ch:
		return r, nil
	case <-time.After(timeout):
		return nil, fmt.Errorf("no answer from %v in %s", to, timeout)
	}
}

// setUp starts the victims and the attacker for TestHostilePeer. The
// attacker node lives only as long as that test.
func setUp(t *testing.T) {
	var err error
	h = cloistertest.NewT(t)
	vnames = localcluster.Names("victim", 2)
	victims = nil
	for _, n := range vnames {
		v, err := h.Start(cloistertest.Spec{Name: n, Sentry: vnames, Consensus: 2, Void: true})
		if err != nil {
			t.Fatal(err)
		}
		victims = append(victims, v)
	}
	for _, v := range victims {
		if e, err := v.WaitStarted(30 * time.Second); err != nil || e.Event != "started" {
			t.Fatalf("%s: %v %+v", v.Name, err, e)
		}
	}
	attacker, err = ergonode.Start(attackerName, ergonode.Options{Cookie: h.Cookie, EPMDPort: h.EPMD.Port, Logf: func(string, ...interface{}) {}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(attacker.Stop)
	inbox = &collector{waiting: map[etf.Ref]chan etf.Term{}}
	if me, err = attacker.Spawn("", gen.ProcessOptions{MailboxSize: 4096}, inbox); err != nil {
		t.Fatal(err)
	}
	watch = &watcher{watched: map[gen.ProcessID]bool{}}
	if watch.proc, err = attacker.Spawn("", gen.ProcessOptions{MailboxSize: 64}, watch); err != nil {
		t.Fatal(err)
	}
	fake = &fakeMonitor{}
	if _, err = attacker.Spawn("Elixir.Cloister.Monitor", gen.ProcessOptions{MailboxSize: 4096}, fake); err != nil {
		t.Fatal(err)
	}
}
