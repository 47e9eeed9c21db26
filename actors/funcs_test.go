package actors

import (
	"runtime"
	"sync"
	"testing"
	"time"
)

// TryGo runs at most maxApplyConcurrency functions at once: the one cap the
// Node actor and BEAM rpc share.
func TestTryGoCaps(t *testing.T) {
	f := newFuncTable()
	release := make(chan struct{})
	var started sync.WaitGroup
	started.Add(maxApplyConcurrency)
	for i := 0; i < maxApplyConcurrency; i++ {
		if !f.TryGo(func() { started.Done(); <-release }) {
			t.Fatalf("call %d refused below the cap", i)
		}
	}
	started.Wait()
	if f.TryGo(func() { t.Error("ran beyond the cap") }) {
		t.Fatal("a call beyond the cap was accepted")
	}
	close(release)
	ran := make(chan struct{})
	deadline := time.Now().Add(10 * time.Second)
	for !f.TryGo(func() { close(ran) }) {
		if time.Now().After(deadline) {
			t.Fatal("no slot came back after the functions returned")
		}
		runtime.Gosched()
	}
	<-ran
}
