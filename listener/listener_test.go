package listener_test

import (
	"fmt"

	"github.com/cloister-go/cloister/listener"
)

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
			fmt.Printf("%s left the rings: %s\n", e.Node, e.Reason)
		}
	}
	observe(listener.Transition{From: listener.StateReady, To: listener.StateRehashing})
	observe(listener.Removed{Node: "b@127.0.0.1", Reason: listener.RemovedGone})
	// Output:
	// ready -> rehashing
	// b@127.0.0.1 left the rings: gone
}
