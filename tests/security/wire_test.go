package security

import (
	"net"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cloister-go/cloister/internal/erltest"
	"github.com/cloister-go/cloister/internal/localcluster"
	"github.com/cloister-go/cloister/internal/nodetest"
	"github.com/cloister-go/cloister/internal/testenv"

	"github.com/cloister-go/cloister/cloistertest"
	"github.com/cloister-go/cloister/listener"
)

// A thousand idle connections to a member's distribution port do not keep
// a new node out: its only sentry is that member, and before, the
// member's serial accept loop (5 s per idle socket) kept it assembling.
// The CLI and an erl node reach the member meanwhile too.
func TestClusterFormsPastIdleSockets(t *testing.T) {
	const idle = 1000
	hc := cloistertest.NewT(t)
	ns := localcluster.Names("crowd", 3)
	ready := func(n *cloistertest.Node, members []string) time.Duration {
		t.Helper()
		start := time.Now()
		if _, err := n.WaitStatus(60*time.Second, "ready with "+strings.Join(members, ","), func(s listener.Snapshot) bool {
			return s.Ready() && reflect.DeepEqual(s.Members, members)
		}); err != nil {
			t.Fatal(err)
		}
		return time.Since(start)
	}
	start := func(name string, members []string) (*cloistertest.Node, time.Duration) {
		t.Helper()
		t0 := time.Now()
		n, err := hc.Start(cloistertest.Spec{Name: name, Sentry: []string{ns[0]}, Consensus: len(members)})
		if err != nil {
			t.Fatal(err)
		}
		ready(n, members)
		return n, time.Since(t0)
	}
	n0, _ := start(ns[0], ns[:1])
	_, alone := start(ns[1], ns[:2])
	ready(n0, ns[:2])

	port := distPort(t, hc.EPMD, ns[0])
	socks := make([]net.Conn, 0, idle)
	defer func() {
		for _, s := range socks {
			s.Close()
		}
	}()
	for i := 0; i < idle; i++ {
		s, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), 5*time.Second)
		if err != nil {
			t.Fatalf("idle socket %d: %v", i, err)
		}
		socks = append(socks, s)
	}
	_, crowded := start(ns[2], ns)
	ready(n0, ns)

	// The CLI reaches the member through the crowd.
	bin, err := nodetest.CLI()
	if err != nil {
		t.Fatal(err)
	}
	cli := exec.Command(bin, "status", "-cookie", hc.Cookie, "-epmd-port", strconv.Itoa(int(hc.EPMD.Port)), ns[0])
	out, err := cli.CombinedOutput()
	if err != nil {
		t.Fatalf("cloister status with %d idle sockets open: %v\n%s", idle, err, out)
	}
	ms, res := erlPing(t, hc, ns[0])
	if res != "pong" {
		t.Fatalf("erl ping with %d idle sockets open: %s", idle, res)
	}
	t.Logf("a node joining through the member: %s to ready alone, %s with %d idle sockets opened on the member first; erl net_adm:ping %.1f ms",
		alone.Round(time.Millisecond), crowded.Round(time.Millisecond), idle, ms)
}

// erlPing runs an erl node that pings target: the time net_adm:ping took
// (ms) and its result.
func erlPing(t *testing.T, hc *cloistertest.Harness, target string) (float64, string) {
	t.Helper()
	if _, err := exec.LookPath("erl"); err != nil {
		t.Skip("no erl")
	}
	ms, res, err := erltest.TimedPing(hc.Cookie, hc.EPMD.Port, target, 90*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return ms, res
}

// `cloister status` reaches a TLS node with -tls; without it, the TLS node
// refuses the plaintext link and the CLI says the cause.
func TestCLIReachesTLSNodes(t *testing.T) {
	hc := cloistertest.NewT(t)
	name := "clitls_0@127.0.0.1"
	n, err := hc.Start(cloistertest.Spec{Name: name, Sentry: []string{name}, Consensus: 1, Args: []string{"-tls"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.WaitStatus(30*time.Second, "ready", func(s listener.Snapshot) bool { return s.Ready() }); err != nil {
		t.Fatal(err)
	}
	cli, err := nodetest.CLI()
	if err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, error) {
		a := append([]string{"status", "-cookie", hc.Cookie, "-epmd-port", strconv.Itoa(int(hc.EPMD.Port))}, args...)
		out, err := exec.Command(cli, a...).CombinedOutput()
		return string(out), err
	}
	out, err := run("-tls", name)
	if err != nil || !strings.Contains(out, "state:     ready") {
		t.Fatalf("status -tls: %v\n%s", err, out)
	}
	out, err = run(name)
	if err == nil || !strings.Contains(out, "TLS") {
		t.Fatalf("status without -tls: %v\n%s", err, out)
	}
	t.Logf("without -tls: %s", strings.TrimSpace(out))
	// whois too
	wout, err := exec.Command(cli, "whois", "-tls", "-cookie", hc.Cookie, "-epmd-port", strconv.Itoa(int(hc.EPMD.Port)), name, "some-key").CombinedOutput()
	if err != nil || !strings.Contains(string(wout), name) {
		t.Fatalf("whois -tls: %v\n%s", err, wout)
	}
}

// A node that cannot start says why in one line of cloister's, not with
// Ergo's dump of the start error (a source path and a Go struct).
func TestFailedStartSaysWhyOnce(t *testing.T) {
	hc := cloistertest.NewT(t)
	name := "nostart_0@127.0.0.1"
	// Two of two needed, the other never comes: the start times out.
	n, err := hc.Start(cloistertest.Spec{Name: name, Sentry: []string{name, "nostart_1@127.0.0.1"}, Consensus: 2,
		StartTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	e, err := n.WaitFor(30*time.Second, "an error event", func(e cloistertest.NodeEvent) bool { return e.Event == "error" })
	if err != nil {
		t.Fatal(err)
	}
	testenv.Poll(10*time.Second, func() bool { return !n.Running() })
	tail := n.LogTail()
	t.Logf("error event: %s; log:\n%s", e.Error, tail)
	if strings.Contains(tail, "WARNING!") || strings.Contains(tail, "StartError") {
		t.Fatalf("Ergo's dump in the log:\n%s", tail)
	}
}
