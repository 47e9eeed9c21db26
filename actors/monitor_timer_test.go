package actors

import (
	"testing"
	"time"

	"github.com/ergo-services/ergo/etf"
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
	m.tickMu.Lock() // the zero-delay timer's callback has the lock next or has run
	m.tickMu.Unlock()
	select {
	case <-late.started:
		t.Fatal("a timer sent to the Monitor after it ended")
	case <-time.After(100 * time.Millisecond):
	}
}
