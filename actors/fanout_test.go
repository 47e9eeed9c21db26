package actors

import (
	"bytes"
	"fmt"
	"github.com/cloister-go/cloister/internal/errs"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ergo-services/ergo/etf"
	"github.com/ergo-services/ergo/gen"
)

// until polls cond every 10 ms for up to 10 s (a loaded machine).
func until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for attempt := 0; !cond(); attempt++ {
		if attempt == 1000 {
			t.Fatalf("still not %s after 10 s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// localEngine is testNode's Node actor engine.
func localEngine(t *testing.T) *fanEngine {
	t.Helper()
	e := engineOf(testNode)
	if e == nil {
		t.Fatal("testNode's Node actor has no fan-out engine")
	}
	return e
}

// waiting is how many calls of e wait on the shared monitor of to, and how
// many shared monitors and table entries e holds.
func (e *fanEngine) waiting(to gen.ProcessID) (waiters, watches, entries int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if w := e.watches[to]; w != nil {
		waiters = len(w.waiters)
	}
	return waiters, len(e.watches), len(e.table)
}

// monitorsSettle waits until this node and peer A hold no more name
// monitors than before (see TestFanoutLeavesNoProcessesOrMonitors).
func monitorsSettle(t *testing.T, local, remote int64) {
	t.Helper()
	until(t, "back to the name monitors held before", func() bool {
		rs, err := nodeMultiapply(testNode, []string{peerA.name}, "monitorsbyname", nil, 5*time.Second)
		if err != nil || rs[0].Err != nil {
			t.Fatalf("monitorsbyname: %v %v", err, rs)
		}
		r, _ := asInt(rs[0].Reply)
		return int64(testNode.Stats().MonitorsByName) <= local && r <= remote
	})
}

// released waits until e holds no call (each call's goroutine releases it
// just after the call returns; the tests run one at a time).
func released(t *testing.T, e *fanEngine) {
	t.Helper()
	until(t, "every call released", func() bool {
		_, w, n := e.waiting(gen.ProcessID{})
		return w == 0 && n == 0 && e.calls.Load() == 0
	})
}

// quiet waits until the Node actor's engine holds no call, and returns
// the name monitors held then here and on peer A.
func quiet(t *testing.T) (local, remote int64) {
	t.Helper()
	released(t, localEngine(t))
	remote = peerMonitors(t) // a Multiapply: released again below
	released(t, localEngine(t))
	return int64(testNode.Stats().MonitorsByName), remote
}

func peerMonitors(t *testing.T) int64 {
	t.Helper()
	rs, err := nodeMultiapply(testNode, []string{peerA.name}, "monitorsbyname", nil, 5*time.Second)
	if err != nil || rs[0].Err != nil {
		t.Fatalf("monitorsbyname: %v %v", err, rs)
	}
	v, _ := asInt(rs[0].Reply)
	return v
}

// Many calls in flight to one target share one monitor, in the Node actor;
// the target's exit ends every one of them at once with its reason.
func TestFanoutCallsShareOneMonitorAndItsDown(t *testing.T) {
	waitEcho(t, peerA.name)
	defer waitEcho(t, peerA.name)
	e := localEngine(t)
	target := gen.ProcessID{Name: echoName, Node: peerA.name}
	baseLocal, baseRemote := quiet(t)

	const callers = 24 // far more than 2×GOMAXPROCS
	var wg sync.WaitGroup
	results := make([][]Result, callers)
	for i := 0; i < callers; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			// Answered after 8 s, deadline 20 s: only the DOWN ends them
			// early, with a errs.KindRemote error instead of the reply.
			rs, err := nodeMulticall(testNode, []string{peerA.name}, echoName,
				etf.Tuple{etf.Atom("sleep"), 8000, i}, 20*time.Second)
			if err != nil {
				t.Error(err)
			}
			results[i] = rs
		}(i)
	}
	until(t, "all calls in flight", func() bool {
		w, _, _ := e.waiting(target)
		return w == callers
	})
	waiters, watches, entries := e.waiting(target)
	if watches != 1 || entries != callers+1 {
		t.Fatalf("%d calls in flight: %d shared monitors, %d table entries; want 1 and one tag per call plus the monitor",
			waiters, watches, entries)
	}
	if local := int64(testNode.Stats().MonitorsByName); local != baseLocal+1 {
		t.Fatalf("%d calls in flight to one target hold %d name monitors here (%d before), want one more", callers, local, baseLocal)
	}
	if remote := peerMonitors(t); remote != baseRemote+1 {
		t.Fatalf("%d calls in flight to one target hold %d name monitors on the peer (%d before), want one more", callers, remote, baseRemote)
	}

	rs, err := nodeMulticall(testNode, []string{peerA.name}, echoName, etf.Tuple{etf.Atom("exit"), "shared_boom"}, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	wantKind(t, rs[0], errs.KindRemote)
	wg.Wait()
	for i, rs := range results {
		if len(rs) != 1 {
			t.Fatalf("caller %d: %v", i, rs)
		}
		ne := wantKind(t, rs[0], errs.KindRemote)
		if re, ok := ne.Err.(*errs.RemoteError); !ok || re.Reason != "shared_boom" {
			t.Fatalf("caller %d: %v, want the exit reason shared_boom", i, ne)
		}
	}
	released(t, e)
	monitorsSettle(t, baseLocal, baseRemote)
}

// A node without the Node actor runs the same engine in a process per
// call: same results, nothing left behind.
func TestMulticallInOwnProcess(t *testing.T) {
	waitEcho(t, threeNodes()...)
	baseLocal, baseRemote := quiet(t)
	baseProcs := testNode.Stats().RunningProcesses
	ghost := "actors_ghost@127.0.0.1"
	nodes := []string{peerA.name, testNode.Name(), peerBare.name, ghost}
	for i := 0; i < 5; i++ {
		rs, err := multicallVia(nil, "multicall", testNode, nodes, echoName, etf.Tuple{etf.Atom("echo"), i}, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		wantEcho(t, rs[0], i)
		wantEcho(t, rs[1], i)
		wantKind(t, rs[2], errs.KindNoSuchProcess)
		wantKind(t, rs[3], errs.KindNoConnection)
	}
	rs, err := multicallVia(nil, "multicall", testNode, nodes[:2], echoName, etf.Tuple{etf.Atom("sleep"), 2000, 0}, 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	wantKind(t, rs[0], errs.KindTimeout)
	wantKind(t, rs[1], errs.KindTimeout)
	until(t, "back to the processes running before", func() bool {
		return testNode.Stats().RunningProcesses <= baseProcs
	})
	monitorsSettle(t, baseLocal, baseRemote)
}

// A fan-out process that stops ends its calls in flight at once (refused),
// and their monitors are still removed.
func TestFanoutStopEndsCallsInFlight(t *testing.T) {
	waitEcho(t, peerA.name)
	baseLocal, baseRemote := quiet(t)
	e, p, err := spawnFanProcess(testNode, callerMailbox(1))
	if err != nil {
		t.Fatal(err)
	}
	results := []Result{{Node: peerA.name}}
	c := newFanCall(echoName, results)
	ended := make(chan bool, 1)
	go func() {
		ended <- e.call(c, []int{0}, etf.Tuple{etf.Atom("sleep"), 8000, 0}, time.Now().Add(20*time.Second))
	}()
	until(t, "the call in flight", func() bool {
		_, watches, _ := e.waiting(gen.ProcessID{Name: echoName, Node: peerA.name})
		return watches == 1
	})
	p.Kill()
	if !<-ended {
		t.Fatal("call refused before it started")
	}
	wantKind(t, results[0], errs.KindRefused)
	// A stopped engine takes no call.
	if e.call(newFanCall(echoName, []Result{{Node: peerA.name}}), []int{0}, etf.Atom("x"), time.Now().Add(time.Second)) {
		t.Fatal("a stopped engine ran a call")
	}
	monitorsSettle(t, baseLocal, baseRemote)
}

// Fan-out references are its own: a reference Ergo made is never taken for
// one, and a late answer to a finished call is swallowed, not passed on.
func TestFanoutReferences(t *testing.T) {
	e := localEngine(t)
	for _, k := range []uint64{1, 1<<18 - 1, 1 << 18, 1<<50 - 1, refSeq.Load() + 1} {
		r := e.ref(k)
		if got, ok := e.key(r); !ok || got != k {
			t.Fatalf("key(ref(%d)) = %d, %v", k, got, ok)
		}
		if r.ID[0] >= 1<<18 {
			t.Fatalf("ref(%d) has a first word of more than 18 bits: %v", k, r)
		}
	}
	p, _ := newInbox(t)
	ergoRef := p.MakeRef()
	if _, ok := e.key(ergoRef); ok {
		t.Fatalf("an Ergo reference %v is taken for a fan-out one", ergoRef)
	}
	if e.deliver(etf.Tuple{ergoRef, etf.Atom("x")}) || e.deliver(gen.MessageDown{Ref: ergoRef, Reason: "normal"}) {
		t.Fatal("the engine took a message with Ergo's reference")
	}
	stale := e.ref(refSeq.Add(1))
	if !e.deliver(etf.Tuple{stale, etf.Atom("late")}) || !e.deliver(gen.MessageDown{Ref: stale, Reason: "normal"}) {
		t.Fatal("a late answer to a fan-out reference was passed on")
	}
	other := e.ref(7)
	other.Node = "someone_else@127.0.0.1"
	if _, ok := e.key(other); ok {
		t.Fatal("another node's reference is taken for a fan-out one")
	}
}

// Calls to the same targets from many goroutines at once, some ending by
// their deadline while others get answers, leave nothing behind.
func TestFanoutMixedDeadlinesInFlight(t *testing.T) {
	nodes := threeNodes()
	waitEcho(t, nodes...)
	e := localEngine(t)
	baseLocal, baseRemote := quiet(t)
	var wg sync.WaitGroup
	failures := make(chan error, 64)
	for i := 0; i < 32; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for j := 0; j < 5; j++ {
				slow := (i+j)%3 == 0
				req := etf.Term(etf.Tuple{etf.Atom("echo"), i})
				timeout := 10 * time.Second
				if slow {
					req, timeout = etf.Tuple{etf.Atom("sleep"), 400, i}, 30*time.Millisecond
				}
				rs, err := nodeMulticall(testNode, nodes, echoName, req, timeout)
				if err != nil {
					failures <- err
					return
				}
				for _, r := range rs {
					switch {
					case slow && (r.Err == nil || !isKind(r.Err, errs.KindTimeout)):
						failures <- fmt.Errorf("slow call %d: %v %v, want a timeout", i, r.Reply, r.Err)
						return
					case !slow && r.Err != nil:
						failures <- fmt.Errorf("call %d: %v", i, r.Err)
						return
					}
				}
			}
		}(i)
	}
	wg.Wait()
	close(failures)
	for err := range failures {
		t.Error(err)
	}
	released(t, e)
	monitorsSettle(t, baseLocal, baseRemote)
}

func isKind(err error, k errs.ErrorKind) bool {
	ne, ok := err.(*errs.NodeError)
	return ok && ne.Kind == k
}

// stopped reports whether every thread of process pid is stopped.
func stopped(t *testing.T, pid int) bool {
	t.Helper()
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, task.Name()))
		if err != nil {
			return false // a thread that just ended: look again
		}
		// The state follows the command name, which may hold spaces.
		f := bytes.Fields(b[bytes.LastIndexByte(b, ')')+1:])
		if len(f) == 0 || (string(f[0]) != "T" && string(f[0]) != "t") {
			return false
		}
	}
	return true
}

// A frozen peer (SIGSTOP: the link stays up, nothing answers) costs its
// callers their deadline and no more, while the other targets of the same
// calls answer; when it wakes, late answers are swallowed and it is called
// normally again.
func TestFanoutFrozenPeerEndsAtDeadline(t *testing.T) {
	frozen, err := startPeer("frozen", modeFull, true)
	if err != nil {
		t.Fatal(err)
	}
	defer frozen.kill()
	nodes := []string{peerA.name, frozen.name}
	waitEcho(t, nodes...)
	if err := frozen.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// kill(2) returns before every thread has stopped.
	until(t, "stopped", func() bool { return stopped(t, frozen.cmd.Process.Pid) })
	woken := false
	defer func() {
		if !woken {
			_ = frozen.cmd.Process.Signal(syscall.SIGCONT)
		}
	}()
	const deadline = 300 * time.Millisecond
	var wg sync.WaitGroup
	failures := make(chan error, 16)
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			start := time.Now()
			rs, err := nodeMulticall(testNode, nodes, echoName, etf.Tuple{etf.Atom("echo"), i}, deadline)
			elapsed := time.Since(start)
			switch {
			case err != nil:
				failures <- err
			case rs[0].Err != nil:
				failures <- fmt.Errorf("call %d: the live peer failed: %v", i, rs[0].Err)
			case !isKind(rs[1].Err, errs.KindTimeout):
				failures <- fmt.Errorf("call %d: the frozen peer gave %v %v, want a timeout", i, rs[1].Reply, rs[1].Err)
			case elapsed < deadline:
				failures <- fmt.Errorf("call %d: returned after %v, before its %v deadline", i, elapsed, deadline)
			case elapsed > deadline+5*time.Second: // generous: a loaded machine
				failures <- fmt.Errorf("call %d: returned after %v, long past its %v deadline", i, elapsed, deadline)
			}
		}(i)
	}
	wg.Wait()
	close(failures)
	for err := range failures {
		t.Error(err)
	}
	if err := frozen.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	woken = true
	waitEcho(t, nodes...)
	released(t, localEngine(t))
}
