package listener_test

import (
	"fmt"
	"sync"
	"testing"

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

func TestMultiIsolatesPanics(t *testing.T) {
	r := &recorder{}
	m := listener.Multi{listener.Func(func(listener.State, listener.State, listener.Snapshot) { panic("x") }), r}
	m.OnStateChange("a", "b", listener.Snapshot{})
	if len(r.list()) != 1 {
		t.Fatal("second listener skipped after the first panicked")
	}
}

func ExampleFunc() {
	var l listener.Listener = listener.Func(func(from, to listener.State, s listener.Snapshot) {
		fmt.Printf("%s -> %s with %d members\n", from, to, len(s.Members))
	})
	l.OnStateChange("rehashing", "ready", listener.Snapshot{Members: []string{"a@127.0.0.1", "b@127.0.0.1"}})
	// Output: rehashing -> ready with 2 members
}

// An observer (Options.Observe) switches on the event types it cares
// about; it runs on the Monitor's goroutine, so it only counts or hands
// over.
func ExampleEvent() {
	observe := func(e listener.Event) {
		switch e := e.(type) {
		case listener.Transition:
			fmt.Printf("%s -> %s\n", e.From, e.To)
		case listener.Removed:
			fmt.Printf("%s left the rings: %s (%s)\n", e.Node, e.Reason.Describe(), e.Reason)
		}
	}
	observe(listener.Transition{From: listener.StateReady, To: listener.StateRehashing})
	observe(listener.Removed{Node: "b@127.0.0.1", Reason: listener.RemovedGone})
	// Output:
	// ready -> rehashing
	// b@127.0.0.1 left the rings: gone (its process no longer exists) (gone)
}
