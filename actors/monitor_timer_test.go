package actors

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/ergo-services/ergo/etf"
	"github.com/ergo-services/ergo/lib"
)

// blockingSender records when a send starts and holds it until released,
// as a send in flight inside Ergo.
type blockingSender struct {
	started chan struct{}
	release chan struct{}
}

func (b *blockingSender) Send(interface{}, etf.Term) error {
	b.started <- struct{}{}
	<-b.release
	return nil
}

// A tick timer that fires as the Monitor ends must not be sending once
// the process is marked ended: Ergo tears the process down right after,
// and a send still in flight then reads the fields its cleanup writes.
// end waits for a send under way; a timer that fires later sends nothing.
func TestTimerSendFinishesBeforeTheMonitorEnds(t *testing.T) {
	m := &monitor{}
	s := &blockingSender{started: make(chan struct{}, 1), release: make(chan struct{})}
	m.scheduleTick(s, etf.Pid{}, time.Millisecond)
	select {
	case <-s.started:
	case <-time.After(30 * time.Second):
		t.Fatal("the tick was never sent")
	}
	ended := make(chan struct{})
	go func() { m.end(); close(ended) }()
	select {
	case <-ended:
		t.Fatal("end returned while the tick's send was still in flight")
	case <-time.After(100 * time.Millisecond):
	}
	close(s.release)
	select {
	case <-ended:
	case <-time.After(30 * time.Second):
		t.Fatal("end never returned after the send finished")
	}

	// After the end, a timer that fires sends nothing.
	late := &blockingSender{started: make(chan struct{}, 1), release: make(chan struct{})}
	close(late.release)
	stop := m.after(late, etf.Pid{}, tickMsg{}, 0)
	defer stop()
	m.sendLater(late, etf.Pid{}, tickMsg{}, 0)
	select {
	case <-late.started:
		t.Fatal("a timer sent to the Monitor after it ended")
	case <-time.After(100 * time.Millisecond):
	}
}

// recSender hands every message sent to the test, which may drop it as
// a full mailbox would.
type recSender struct{ sent chan etf.Term }

func (r *recSender) Send(_ interface{}, msg etf.Term) error {
	r.sent <- msg
	return nil
}

func sentTick(t *testing.T, r *recSender) tickMsg {
	t.Helper()
	select {
	case msg := <-r.sent:
		tm, ok := msg.(tickMsg)
		if !ok {
			t.Fatalf("sent %T, want a tick", msg)
		}
		return tm
	case <-time.After(30 * time.Second):
		t.Fatal("no tick was sent")
	}
	return tickMsg{}
}

// Only a tick arms the next one, so a tick message that never arrives (a
// full mailbox drops it, a timer does not fire) must not stop the
// Monitor's ticks for good: the next event more than tickLost after the
// tick's time arms it again, and that message counts as the tick. Within
// tickLost the tick may only be late and is left pending.
func TestLostTickIsArmedAgain(t *testing.T) {
	m := &monitor{}
	dropped := &recSender{sent: make(chan etf.Term, 1)}
	m.scheduleTick(dropped, etf.Pid{}, time.Millisecond)
	sentTick(t, dropped) // fired, and lost
	m.tickMu.Lock()
	at := m.tickAt
	m.tickMu.Unlock()

	again := &recSender{sent: make(chan etf.Term, 1)}
	m.rearmIn(again, etf.Pid{}, at.Add(tickLost/2), time.Millisecond)
	m.tickMu.Lock()
	kept := m.tickAt.Equal(at)
	m.tickMu.Unlock()
	if !kept {
		t.Fatal("a tick late by less than tickLost was armed again")
	}

	m.rearmIn(again, etf.Pid{}, at.Add(tickLost+time.Millisecond), time.Millisecond)
	if tm := sentTick(t, again); !m.ticked(tm) {
		t.Fatalf("the tick armed again (seq %d) was not taken as the tick (seq %d)", tm.seq, m.tickSeq)
	}
	// A first message that was only late, arriving now, is not a second tick.
	if m.ticked(tickMsg{seq: m.tickSeq}) {
		t.Fatal("the late first message was taken as a second tick")
	}
}

// fullOnce is a mailbox that is full for the first send only.
type fullOnce struct {
	sends atomic.Int32
	taken chan etf.Term
}

func (f *fullOnce) Send(_ interface{}, msg etf.Term) error {
	if f.sends.Add(1) == 1 {
		return lib.ErrProcessMailboxFull // Ergo drops it
	}
	f.taken <- msg
	return nil
}

// A tick dropped by a full mailbox is sent again: only a tick arms the
// next one, so a dropped tick would stop the Monitor's heartbeats for good
// in a cluster where nothing else wakes it.
func TestTickDroppedByAFullMailboxIsSentAgain(t *testing.T) {
	m := &monitor{}
	f := &fullOnce{taken: make(chan etf.Term, 1)}
	m.scheduleTick(f, etf.Pid{}, time.Millisecond)
	select {
	case msg := <-f.taken:
		if tm, ok := msg.(tickMsg); !ok || !m.ticked(tm) {
			t.Fatalf("sent %#v, not the pending tick", msg)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("the tick was dropped once and never sent again (%d sends)", f.sends.Load())
	}
	m.end()
}
