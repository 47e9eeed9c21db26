package dispatcher_test

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloister-go/cloister/internal/dispatcher"
	"github.com/cloister-go/cloister/listener"
)

type recorder struct {
	mu  sync.Mutex
	got []string
}

func (r *recorder) OnStateChange(from, to listener.State, s listener.Snapshot) {
	r.mu.Lock()
	r.got = append(r.got, string(from)+">"+string(to))
	r.mu.Unlock()
}

func (r *recorder) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got...)
}

func TestDispatcherDeliversInOrder(t *testing.T) {
	r := &recorder{}
	d := dispatcher.New(r, t.Logf, 0)
	defer d.Close(time.Second)
	var want []string
	for i := 0; i < 1000; i++ {
		from, to := listener.State(fmt.Sprint(i)), listener.State(fmt.Sprint(i+1))
		want = append(want, string(from)+">"+string(to))
		d.Notify(from, to, listener.Snapshot{})
	}
	if !d.Flush(10 * time.Second) {
		t.Fatal("flush timed out")
	}
	got := r.list()
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("order broken: got %d changes, first %v", len(got), got[:3])
	}
}

func TestPanickingListenerDoesNotStopDelivery(t *testing.T) {
	r := &recorder{}
	var logged []string
	var mu sync.Mutex
	logf := func(f string, a ...interface{}) {
		mu.Lock()
		logged = append(logged, fmt.Sprintf(f, a...))
		mu.Unlock()
	}
	l := listener.Func(func(from, to listener.State, s listener.Snapshot) {
		if to == "boom" {
			panic("listener bug")
		}
		r.OnStateChange(from, to, s)
	})
	d := dispatcher.New(l, logf, 0)
	defer d.Close(time.Second)
	d.Notify("down", "assembling", listener.Snapshot{})
	d.Notify("assembling", "boom", listener.Snapshot{})
	d.Notify("rehashing", "ready", listener.Snapshot{})
	d.Flush(5 * time.Second)
	if got := strings.Join(r.list(), ","); got != "down>assembling,rehashing>ready" {
		t.Fatalf("got %q", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(logged) == 0 || !strings.Contains(logged[0], "panicked") || !strings.Contains(logged[0], "listener bug") {
		t.Fatalf("panic not logged: %q", logged)
	}
}

func TestSlowListenerNeverBlocksNotify(t *testing.T) {
	release := make(chan struct{})
	r := &recorder{}
	l := listener.Func(func(from, to listener.State, s listener.Snapshot) {
		<-release
		r.OnStateChange(from, to, s)
	})
	d := dispatcher.New(l, t.Logf, time.Hour)
	done := make(chan struct{})
	go func() {
		for i := 0; i < 100; i++ {
			d.Notify("a", "b", listener.Snapshot{})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Notify blocked behind a stuck listener")
	}
	close(release)
	d.Flush(10 * time.Second)
	if n := len(r.list()); n != 100 {
		t.Fatalf("delivered %d of 100", n)
	}
	d.Close(time.Second)
}

func TestQueueIsBounded(t *testing.T) {
	release := make(chan struct{})
	r := &recorder{}
	var dropLog []string
	var mu sync.Mutex
	d := dispatcher.New(listener.Func(func(from, to listener.State, s listener.Snapshot) {
		<-release
		r.OnStateChange(from, to, s)
	}), func(f string, a ...interface{}) {
		mu.Lock()
		dropLog = append(dropLog, fmt.Sprintf(f, a...))
		mu.Unlock()
	}, time.Hour)
	total := dispatcher.DefaultQueue + 500
	for i := 0; i < total; i++ {
		d.Notify("x", listener.State(fmt.Sprint(i)), listener.Snapshot{})
	}
	close(release)
	d.Flush(10 * time.Second)
	got := r.list()
	if len(got) > dispatcher.DefaultQueue+1 || len(got) < dispatcher.DefaultQueue {
		t.Fatalf("delivered %d, want about %d", len(got), dispatcher.DefaultQueue)
	}
	if last := got[len(got)-1]; last != fmt.Sprintf("x>%d", total-1) {
		t.Fatalf("newest change lost: last %q", last)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(dropLog) == 0 || !strings.Contains(strings.Join(dropLog, "\n"), "dropped") {
		t.Fatalf("drops not logged: %q", dropLog)
	}
	d.Close(time.Second)
}

func TestNotifyAfterCloseIsIgnored(t *testing.T) {
	d := dispatcher.New(&recorder{}, t.Logf, 0)
	d.Close(time.Second)
	d.Notify("a", "b", listener.Snapshot{}) // must not panic
}

// A listener that never returns cannot hold Close (the Monitor's stop, so
// StopNode) for ever: Close returns at its timeout, and the Dispatcher's
// goroutine ends once the listener's call returns. Before, Close waited
// for the goroutine without bound.
func TestCloseIsBoundedByAStuckListener(t *testing.T) {
	release := make(chan struct{})
	d := dispatcher.New(listener.Func(func(from, to listener.State, s listener.Snapshot) {
		<-release
	}), t.Logf, time.Hour)
	d.Notify("a", "b", listener.Snapshot{})
	d.Notify("b", "c", listener.Snapshot{})
	start := time.Now()
	closed := make(chan struct{})
	go func() { d.Close(300 * time.Millisecond); close(closed) }()
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal("Close blocked behind a stuck listener")
	}
	if el := time.Since(start); el < 300*time.Millisecond {
		t.Fatalf("Close returned after %s, before its timeout", el)
	}
	select {
	case <-d.Done():
		t.Fatal("the goroutine ended while the listener was still in its call")
	default:
	}
	close(release)
	select {
	case <-d.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the Dispatcher's goroutine did not end after the listener returned")
	}
}

// A Flush that times out behind a stuck listener leaves nothing running.
func TestFlushTimeoutLeavesNoGoroutine(t *testing.T) {
	release := make(chan struct{})
	d := dispatcher.New(listener.Func(func(from, to listener.State, s listener.Snapshot) { <-release }), t.Logf, time.Hour)
	d.Notify("a", "b", listener.Snapshot{})
	base := runtime.NumGoroutine()
	for i := 0; i < 20; i++ {
		if d.Flush(time.Millisecond) {
			t.Fatal("flush returned true behind a stuck listener")
		}
	}
	if n := runtime.NumGoroutine(); n > base {
		t.Fatalf("%d goroutines after 20 timed-out flushes, %d before", n, base)
	}
	close(release)
	if !d.Flush(10 * time.Second) {
		t.Fatal("flush timed out after the listener was released")
	}
	d.Close(time.Second)
}
