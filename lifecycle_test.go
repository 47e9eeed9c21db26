package cloister_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloister-go/cloister"
	"github.com/cloister-go/cloister/internal/testenv"
	"github.com/ergo-services/ergo/etf"
)

// scenarioEnv names the scenario a child process of this test binary runs
// instead of the tests: each scenario starts a node of its own, one per
// process.
const scenarioEnv = "CLOISTER_FACADE_SCENARIO"

var scenarios = map[string]func(epmd uint16) error{
	"lifecycle":    scenarioLifecycle,
	"failed-start": scenarioFailedStart,
	"node-stopped": scenarioNodeStopped,
	"cancelled":    scenarioCancelled,
	"leave-join":   scenarioLeaveThenJoin,
}

func runScenario(name string) int {
	fn, ok := scenarios[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "no scenario %q\n", name)
		return 2
	}
	epmd, err := testenv.StartEPMD()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer epmd.Stop()
	if err := fn(epmd.Port); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		return 1
	}
	fmt.Println("scenario ok")
	return 0
}

func runChild(t *testing.T, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), scenarioEnv+"="+name)
	out, err := cmd.CombinedOutput()
	if !strings.Contains(string(out), "scenario ok") {
		t.Fatalf("scenario %s: %v\n%s", name, err, out)
	}
	// Built with -race, a child that saw a data race exits 66. Ergo has
	// races of its own at node stop; one with a frame of this package
	// fails the test.
	for _, report := range strings.Split(string(out), "WARNING: DATA RACE")[1:] {
		if ourFrame.MatchString(report) {
			t.Errorf("scenario %s: data race in package cloister:\n%s", name, report)
		}
	}
	if err != nil && cmd.ProcessState.ExitCode() != 66 {
		t.Fatalf("scenario %s: %v\n%s", name, err, out)
	}
}

// ourFrame matches a stack frame of the root package (not a subpackage).
var ourFrame = regexp.MustCompile(`github\.com/cloister-go/cloister\.`)

// A start, the default cluster's life, a stop: the package-level functions
// answer for the running cluster only.
func TestLifecycle(t *testing.T) { runChild(t, "lifecycle") }

// A failed start leaves nothing behind, and a waiter hears why it failed.
func TestFailedStartClearsDefault(t *testing.T) { runChild(t, "failed-start") }

// A start waiting for consensus ends when its context does (a program
// stopping on SIGINT cancels it).
func TestCancelledStart(t *testing.T) { runChild(t, "cancelled") }

// A node stopped behind cloister's back also ends the default.
func TestNodeStoppedClearsDefault(t *testing.T) { runChild(t, "node-stopped") }

// Leave stops the node: a Join (or a second Leave) after it is
// ErrNotStarted, as after Stop.
func TestLeaveThenJoin(t *testing.T) { runChild(t, "leave-join") }

var quiet = slog.New(slog.DiscardHandler)

// parkedIn reports whether some goroutine is blocked (in a select or on a
// channel) inside the function fn of this module, e.g. "cloister.AwaitReady".
func parkedIn(fn string) bool {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for _, g := range strings.Split(string(buf), "\n\n") {
		head, _, _ := strings.Cut(g, "\n")
		blocked := strings.Contains(head, "[select") || strings.Contains(head, "[chan receive")
		if blocked && strings.Contains(g, "github.com/cloister-go/"+fn+"(") {
			return true
		}
	}
	return false
}

func scenarioLeaveThenJoin(epmd uint16) error {
	opts := cloister.DefaultOptions()
	opts.Logger = quiet
	c, err := cloister.StartNode("leaver@127.0.0.1", opts, cloister.NodeOptions{EPMDPort: epmd})
	if err != nil {
		return fmt.Errorf("start: %v", err)
	}
	if err := c.Join("ghost@127.0.0.1"); err != nil {
		return fmt.Errorf("join before the leave: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Leave(ctx); err != nil {
		return fmt.Errorf("leave with no member to tell: %v", err)
	}
	if !errors.Is(c.Err(), cloister.ErrStopped) || cloister.Default() != nil {
		return fmt.Errorf("after the leave: Err %v, default %p", c.Err(), cloister.Default())
	}
	if err := c.Join("ghost@127.0.0.1"); !errors.Is(err, cloister.ErrNotStarted) {
		return fmt.Errorf("Cluster.Join after the leave: %v, want ErrNotStarted", err)
	}
	if err := c.Leave(ctx); !errors.Is(err, cloister.ErrNotStarted) {
		return fmt.Errorf("second leave: %v, want ErrNotStarted", err)
	}
	return nil
}

func scenarioLifecycle(epmd uint16) error {
	if _, err := cloister.Whois("", "k"); !errors.Is(err, cloister.ErrNotStarted) {
		return fmt.Errorf("Whois before start: %v, want ErrNotStarted", err)
	}
	if err := cloister.StopNode(nil); !errors.Is(err, cloister.ErrNotStarted) {
		return fmt.Errorf("StopNode(nil): %v, want ErrNotStarted", err)
	}
	// Before any start, AwaitReady waits (here until its context ends)
	// rather than failing at once.
	short, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	err := cloister.AwaitReady(short)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("AwaitReady before start: %v, want it to wait until its deadline", err)
	}
	waited := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		waited <- cloister.AwaitReady(ctx)
	}()
	// The start must find the waiter blocked, waiting for a default.
	if !testenv.Poll(30*time.Second, func() bool { return parkedIn("cloister.AwaitReady") }) {
		return errors.New("the AwaitReady waiter never blocked before the start")
	}

	opts := cloister.DefaultOptions()
	opts.OTPApp = "shop" // the default ring is named after the application
	opts.Logger = quiet
	c, err := cloister.StartNode("life@127.0.0.1", opts, cloister.NodeOptions{EPMDPort: epmd})
	if err != nil {
		return fmt.Errorf("start: %v", err)
	}
	if err := <-waited; err != nil {
		return fmt.Errorf("AwaitReady called before the start: %v", err)
	}
	if cloister.Default() != c || c.Name() != "life@127.0.0.1" || c.Node() == nil {
		return fmt.Errorf("default %p (want %p), name %q", cloister.Default(), c, c.Name())
	}
	for _, ring := range []string{"shop", ""} {
		if o, err := cloister.Whois(ring, "cart:1"); err != nil || o != c.Name() {
			return fmt.Errorf("Whois(%q): %q, %v", ring, o, err)
		}
	}
	if !cloister.Mine("cart:1") || !slices.Equal(cloister.Siblings(), []string{c.Name()}) {
		return fmt.Errorf("Mine %v, Siblings %v", cloister.Mine("cart:1"), cloister.Siblings())
	}
	// A second start while this one runs is refused and changes nothing.
	if _, err := cloister.StartNode("life2@127.0.0.1", opts, cloister.NodeOptions{EPMDPort: epmd}); !errors.Is(err, cloister.ErrAlreadyStarted) {
		return fmt.Errorf("second start: %v, want ErrAlreadyStarted", err)
	}
	if err := c.Start(context.Background(), "life@127.0.0.1", cloister.NodeOptions{EPMDPort: epmd}); !errors.Is(err, cloister.ErrAlreadyStarted) {
		return fmt.Errorf("restart of a running cluster: %v, want ErrAlreadyStarted", err)
	}
	if cloister.Default() != c {
		return errors.New("a refused start changed the default")
	}

	if err := cloister.StopNode(c); err != nil {
		return fmt.Errorf("stop: %v", err)
	}
	if cloister.Default() != nil {
		return errors.New("default kept after stop")
	}
	if o, err := cloister.Whois("", "cart:1"); !errors.Is(err, cloister.ErrNotStarted) {
		return fmt.Errorf("Whois after stop: %q, %v", o, err)
	}
	if _, err := cloister.Multicall(nil, "x", etf.Atom("x"), time.Second); !errors.Is(err, cloister.ErrNotStarted) {
		return fmt.Errorf("Multicall after stop: %v", err)
	}
	if _, err := c.Multicall(nil, "x", etf.Atom("x"), time.Second); !errors.Is(err, cloister.ErrNotStarted) {
		return fmt.Errorf("Cluster.Multicall after stop: %v", err)
	}
	if cloister.Mine("cart:1") || cloister.Siblings() != nil || cloister.State().State != "down" {
		return fmt.Errorf("after stop: Mine %v, Siblings %v, State %s", cloister.Mine("cart:1"), cloister.Siblings(), cloister.State().State)
	}
	if !errors.Is(c.Err(), cloister.ErrStopped) {
		return fmt.Errorf("Err after stop: %v", c.Err())
	}
	if err := c.Stop(); !errors.Is(err, cloister.ErrNotStarted) {
		return fmt.Errorf("second stop: %v", err)
	}
	return nil
}

func scenarioFailedStart(epmd uint16) error {
	waited := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		waited <- cloister.AwaitReady(ctx)
	}()
	opts := cloister.DefaultOptions()
	opts.Consensus = 2
	opts.Sentry = []string{"fail@127.0.0.1", "ghost@127.0.0.1"}
	opts.StartTimeout = 1500 * time.Millisecond
	opts.Logger = quiet
	_, err := cloister.StartNode("fail@127.0.0.1", opts, cloister.NodeOptions{EPMDPort: epmd})
	var se *cloister.StartError
	if !errors.As(err, &se) || !slices.Equal(se.Missing, []string{"ghost@127.0.0.1"}) {
		return fmt.Errorf("start: %v, want a StartError missing ghost", err)
	}
	if werr := <-waited; !errors.As(werr, &se) {
		return fmt.Errorf("AwaitReady during a failed start: %v, want the StartError", werr)
	}
	if cloister.Default() != nil {
		return errors.New("a failed start left a default")
	}
	if _, err := cloister.Whois("", "k"); !errors.Is(err, cloister.ErrNotStarted) {
		return fmt.Errorf("Whois after a failed start: %v", err)
	}
	if cloister.Siblings() != nil {
		return fmt.Errorf("Siblings after a failed start: %v", cloister.Siblings())
	}
	return nil
}

func scenarioCancelled(epmd uint16) error {
	opts := cloister.DefaultOptions()
	opts.Consensus = 2
	opts.Sentry = []string{"cancel@127.0.0.1", "ghost@127.0.0.1"}
	opts.Logger = quiet
	c, err := cloister.New(opts)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	err = c.Start(ctx, "cancel@127.0.0.1", cloister.NodeOptions{EPMDPort: epmd})
	if !errors.Is(err, context.Canceled) {
		return fmt.Errorf("cancelled start: %v, want context.Canceled", err)
	}
	if cloister.Default() != nil || !errors.Is(c.Err(), context.Canceled) {
		return fmt.Errorf("after a cancelled start: default %v, Err %v", cloister.Default(), c.Err())
	}
	return nil
}

func scenarioNodeStopped(epmd uint16) error {
	opts := cloister.DefaultOptions()
	opts.Logger = quiet
	c, err := cloister.StartNode("gone@127.0.0.1", opts, cloister.NodeOptions{EPMDPort: epmd})
	if err != nil {
		return err
	}
	c.Node().Stop()
	for deadline := time.Now().Add(30 * time.Second); ; {
		if _, err := cloister.Whois("", "k"); errors.Is(err, cloister.ErrNotStarted) {
			break
		}
		if time.Now().After(deadline) {
			return errors.New("Whois still answers 30 s after the node stopped")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !errors.Is(c.Err(), cloister.ErrStopped) {
		return fmt.Errorf("Err: %v", c.Err())
	}
	return nil
}

// While the example node runs, another start is refused and leaves the
// running cluster the default.
func TestSecondStartRefused(t *testing.T) {
	before := cloister.Default()
	if before == nil {
		t.Fatal("no default cluster while the example node runs")
	}
	_, err := cloister.StartNode("second@127.0.0.1", cloister.DefaultOptions(), cloister.NodeOptions{})
	if !errors.Is(err, cloister.ErrAlreadyStarted) {
		t.Fatalf("second start: %v, want ErrAlreadyStarted", err)
	}
	if cloister.Default() != before {
		t.Fatal("the refused start replaced the default")
	}
	if _, err := cloister.Whois("", "k"); err != nil {
		t.Fatal(err)
	}
}

func TestStopNil(t *testing.T) {
	if err := cloister.StopNode(nil); !errors.Is(err, cloister.ErrNotStarted) {
		t.Fatalf("StopNode(nil): %v", err)
	}
	var c *cloister.Cluster
	if err := c.Stop(); !errors.Is(err, cloister.ErrNotStarted) {
		t.Fatalf("nil Stop: %v", err)
	}
}

// The package-level lookups are one atomic load in front of the ring's.
func TestLookupsDoNotAllocate(t *testing.T) {
	for name, fn := range map[string]func(){
		"Whois": func() { _, _ = cloister.Whois("", "user:42") },
		"Mine":  func() { _ = cloister.Mine("user:42") },
	} {
		if a := testing.AllocsPerRun(1000, fn); a != 0 {
			t.Errorf("%s: %.1f allocations per call, want 0", name, a)
		}
	}
}

func BenchmarkWhois(b *testing.B) {
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := cloister.Whois("", "user:42"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWhoisParallel is Whois from every P at once: no lock, so the
// rate per call holds as goroutines are added.
func BenchmarkWhoisParallel(b *testing.B) {
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := cloister.Whois("", "user:42"); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkMine(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = cloister.Mine("user:42")
	}
}

// BenchmarkRingOwner is the lookup under Whois, for comparison.
func BenchmarkRingOwner(b *testing.B) {
	r, err := cloister.Default().Ring("")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Owner("user:42"); err != nil {
			b.Fatal(err)
		}
	}
}

// A child spec built but never started holds no goroutine: the watcher of
// its node starts with the node.
func TestUnstartedChildSpecHoldsNoGoroutine(t *testing.T) {
	const specs = 50
	before := runtime.NumGoroutine()
	keep := make([]*cloister.Cluster, 0, specs)
	for i := 0; i < specs; i++ {
		c, err := cloister.New(cloister.DefaultOptions())
		if err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			_ = c.ChildSpec()
		} else {
			_ = c.ApplicationChildSpec()
		}
		keep = append(keep, c)
	}
	// The running example node's goroutines come and go: wait for a
	// count well below one per spec.
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for runtime.NumGoroutine()-before >= specs/2 {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("%d unstarted child specs hold %d more goroutines", specs, runtime.NumGoroutine()-before)
		}
	}
	runtime.KeepAlive(keep)
}
