package cloistertest_test

import (
	"strings"
	"testing"
	"time"

	"github.com/cloister-go/cloister/cloistertest"
)

// A node's stderr is kept even when logs are not streamed, and a stuck
// node can be made to print its goroutines.
func TestLogTailAndDumpStacks(t *testing.T) {
	h := cloistertest.NewT(t)
	h.Logs = nil
	n, err := h.Start(cloistertest.Spec{Name: "tail_0@127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.WaitStarted(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := n.WaitFor(10*time.Second, "ready", func(e cloistertest.NodeEvent) bool { return e.Event == "state" && e.To == "ready" }); err != nil {
		t.Fatal(err)
	}
	if err := n.CaughtUp(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if tr := n.Transitions(); tr[len(tr)-1] != "rehashing>ready" {
		t.Fatalf("caught up, yet the last transition is %v", tr)
	}
	// stdout (the event) and stderr (the log line) are separate pipes read
	// by separate goroutines: the line may land a moment after the event.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(n.LogTail(), "rehashing -> ready") {
		if time.Now().After(deadline) {
			t.Fatalf("log tail lacks the state change after 10 s:\n%s", n.LogTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
	out := n.DumpStacks(10 * time.Second)
	if !strings.Contains(out, "goroutine ") || !strings.Contains(out, "SIGQUIT") {
		t.Fatalf("no goroutine dump:\n%s", out)
	}
	if n.Running() {
		t.Fatal("the node still runs after its stack dump")
	}
}
