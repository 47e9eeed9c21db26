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
)

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
	vnames = cloistertest.Names("victim", 2)
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
	fake = &fakeMonitor{}
	if _, err = attacker.Spawn("Elixir.Cloister.Monitor", gen.ProcessOptions{MailboxSize: 4096}, fake); err != nil {
		t.Fatal(err)
	}
}
