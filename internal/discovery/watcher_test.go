package discovery

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// watch runs a Watcher against s and returns the channel of its reports.
func watch(t *testing.T, w *Watcher) <-chan []string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	reports := make(chan []string, 100)
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(ctx, func(peers []string) { reports <- peers })
	}()
	t.Cleanup(func() { cancel(); <-done })
	return reports
}

// nextReport returns the watcher's next report; reports arrive in order, so a
// report the test did not expect shows up here instead of the expected one.
func nextReport(t *testing.T, reports <-chan []string, want ...string) {
	t.Helper()
	select {
	case got := <-reports:
		if !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
			t.Fatalf("report = %v, want %v", got, want)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("no report; want %v", want)
	}
}

// connectedSet is a Connected func whose answer the test changes.
type connectedSet struct {
	mu    sync.Mutex
	nodes []string
}

func (c *connectedSet) set(nodes ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nodes = nodes
}

func (c *connectedSet) get() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.nodes)
}

func TestWatcherLogsNXDOMAINOnceAndPicksUpTheNameLater(t *testing.T) {
	s := startDNS(t)
	var logs logLines
	reports := watch(t, &Watcher{
		Resolver: &Resolver{Server: s.addr},
		Service:  "late.cloister.test",
		OTPApp:   "app",
		Interval: 20 * time.Millisecond,
		Logf:     logs.logf,
	})

	nextReport(t, reports) // NXDOMAIN is an answer: no peers
	// Each lookup asks the server for the name once, so five queries mean the
	// watcher has been told NXDOMAIN at least four times.
	waitFor(t, "five lookups of the missing name", func() bool { return s.count("late.cloister.test", "") >= 5 })
	if got := logs.matching(`"late.cloister.test" not found`); len(got) != 1 {
		t.Fatalf("NXDOMAIN logged %d times, want once: %q", len(got), got)
	}

	s.set(t, "late.cloister.test", "A 10.0.0.2", "A 10.0.0.1")
	nextReport(t, reports, "app@10.0.0.1", "app@10.0.0.2")
	waitFor(t, "the recovery log line", func() bool { return len(logs.matching("resolves again")) == 1 })
}

func TestWatcherKeepsConnectedPeerMissingFromDNS(t *testing.T) {
	s := startDNS(t)
	s.set(t, "web.cloister.test", "A 10.0.0.1", "A 10.0.0.2", "A 10.0.0.3")
	var connected connectedSet
	reports := watch(t, &Watcher{
		Resolver:  &Resolver{Server: s.addr},
		Service:   "web.cloister.test",
		OTPApp:    "app",
		Interval:  20 * time.Millisecond,
		Connected: connected.get,
		Logf:      t.Logf,
	})
	nextReport(t, reports, "app@10.0.0.1", "app@10.0.0.2", "app@10.0.0.3")

	// 10.0.0.2 stays connected, 10.0.0.3 does not: only .3 goes.
	connected.set("app@10.0.0.1", "app@10.0.0.2")
	s.set(t, "web.cloister.test", "A 10.0.0.1")
	nextReport(t, reports, "app@10.0.0.1", "app@10.0.0.2")

	// Once .2 disconnects too, it goes.
	connected.set("app@10.0.0.1")
	nextReport(t, reports, "app@10.0.0.1")

	// A restarted container comes back under a new address.
	s.set(t, "web.cloister.test", "A 10.0.0.1", "A 10.0.0.10")
	nextReport(t, reports, "app@10.0.0.1", "app@10.0.0.10")

	// NXDOMAIN keeps the connected peers only.
	s.remove("web.cloister.test")
	nextReport(t, reports, "app@10.0.0.1")
}

func TestWatcherKeepsPeersWhileServerFails(t *testing.T) {
	s := startDNS(t)
	s.set(t, "web.cloister.test", "A 10.0.0.1", "A 10.0.0.2")
	var logs logLines
	reports := watch(t, &Watcher{
		Resolver: &Resolver{Server: s.addr},
		Service:  "web.cloister.test",
		OTPApp:   "app",
		Interval: 20 * time.Millisecond,
		Logf:     logs.logf,
	})
	nextReport(t, reports, "app@10.0.0.1", "app@10.0.0.2")

	s.failWith("web.cloister.test", dns.RcodeServerFailure)
	before := s.count("web.cloister.test", "")
	waitFor(t, "lookups answered SERVFAIL", func() bool { return s.count("web.cloister.test", "") >= before+10 })
	s.set(t, "web.cloister.test", "A 10.0.0.1")
	s.failWith("web.cloister.test", dns.RcodeSuccess)

	// Had the failures changed the set, that report would come first.
	nextReport(t, reports, "app@10.0.0.1")
	if got := logs.matching("server misbehaving"); len(got) != 1 {
		t.Fatalf("server failure logged %d times, want once: %q", len(got), got)
	}
}

func TestWatcherReturnsWhenContextEnds(t *testing.T) {
	s := startDNS(t)
	s.set(t, "web.cloister.test", "A 10.0.0.1")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		(&Watcher{Resolver: &Resolver{Server: s.addr}, Service: "web.cloister.test", OTPApp: "app",
			Interval: 20 * time.Millisecond, Logf: t.Logf}).Run(ctx, func([]string) {})
	}()
	waitFor(t, "a few lookups", func() bool { return s.count("web.cloister.test", "") >= 3 })
	cancel()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after its context was cancelled")
	}
}

func TestCompareNodesOrdersHostsAsAddresses(t *testing.T) {
	nodes := []string{"b@10.0.0.1", "a@10.0.0.10", "a@10.0.0.9", "a@host", "a@10.0.0.9"}
	slices.SortFunc(nodes, compareNodes)
	want := []string{"a@10.0.0.9", "a@10.0.0.9", "a@10.0.0.10", "a@host", "b@10.0.0.1"}
	if !slices.Equal(nodes, want) {
		t.Fatalf("sorted = %v, want %v", nodes, want)
	}
}
