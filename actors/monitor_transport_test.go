package actors

import (
	"context"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/cloister-go/cloister/internal/core"
	"github.com/cloister-go/cloister/internal/wire/ergonode"
	"github.com/ergo-services/ergo/etf"
	"github.com/ergo-services/ergo/gen"
	"github.com/ergo-services/ergo/node"
)

// A peer killed with kill -9 is told from a flap by dialling where it last
// listened: the kernel refuses at once, and the re-dial reports it gone
// without a lookup at its EPMD (another process, slow to answer on a loaded
// host when every survivor asks at once). The address is then forgotten, so
// the next dial asks the EPMD: a peer started again may listen elsewhere.
func TestConnectToAKilledPeerIsGoneWithoutAnEPMDLookup(t *testing.T) {
	victim, err := startPeer("refused", modeBare, true)
	if err != nil {
		t.Fatal(err)
	}
	defer victim.kill()
	if _, ok := ergonode.LastAddress(testNode, victim.name); !ok {
		t.Fatal("no address remembered for a peer this node dialled")
	}
	victim.kill() // SIGKILL
	waitGone(t, victim.name)
	skipIfTaken(t, victim.name)

	tr := newErgoTransport(testNode, nil, MonitorName, 5*time.Second)
	before := ergonode.Lookups(testNode, victim.name)
	gone, err := tr.Connect(context.Background(), victim.name, true)
	if !gone || err == nil {
		t.Fatalf("re-dial of a killed peer: gone %v, err %v; want gone with an error", gone, err)
	}
	if n := ergonode.Lookups(testNode, victim.name) - before; n != 0 {
		t.Fatalf("re-dial of a killed peer looked it up at the EPMD %d times, want 0 (refused at its last address)", n)
	}
	if _, ok := ergonode.LastAddress(testNode, victim.name); ok {
		t.Fatal("the refused address is still remembered")
	}

	// Next dial: through the EPMD, and still gone (name unregistered).
	gone, err = tr.Connect(context.Background(), victim.name, true)
	if !gone || err == nil {
		t.Fatalf("second dial: gone %v, err %v; want gone with an error", gone, err)
	}
	if ergonode.Lookups(testNode, victim.name) == before {
		t.Fatal("the second dial did not ask the EPMD")
	}
}

// A peer that is alive but whose link dropped (a flap) still answers where
// it listens: the dial there proves nothing, and the re-dial connects.
func TestConnectToALivePeerAfterAFlapConnects(t *testing.T) {
	p, err := startPeer("flap", modeBare, true)
	if err != nil {
		t.Fatal(err)
	}
	defer p.kill()
	if err := testNode.Disconnect(p.name); err != nil {
		t.Fatal(err)
	}
	waitGone(t, p.name)
	tr := newErgoTransport(testNode, nil, MonitorName, 5*time.Second)
	gone, err := tr.Connect(context.Background(), p.name, true)
	if gone || err != nil {
		t.Fatalf("re-dial of a live peer: gone %v, err %v; want connected", gone, err)
	}
	if _, ok := ergonode.LastAddress(testNode, p.name); !ok {
		t.Fatal("a live peer's address was forgotten")
	}
}

// A peer's link may only ever have been dialled by the peer, so this node
// never looked its name up: its Monitor's state answer says where it
// listens, and that address serves the same way.
func TestAddressFromTheStateAnswerServesAsTheLastAddress(t *testing.T) {
	c, err := newShared("portannounce", []string{"portannounce"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	o := testOptions()
	o.MonitorName = "port_announce_monitor"
	o.OTPApp = "portannounce"
	o.Sentry = []string{testNode.Name()}
	proc, err := testNode.Spawn(o.MonitorName, gen.ProcessOptions{MailboxSize: ergonode.NetworkMailbox}, newMonitor(c, o))
	if err != nil {
		t.Fatal(err)
	}
	defer killIfAlive(proc)
	box, ch := newInbox(t)
	ref := box.MakeRef()
	if err := box.Send(proc.Self(), etf.Tuple{etf.Atom("$gen_call"), etf.Tuple{box.Self(), ref}, etf.Atom("state")}); err != nil {
		t.Fatal(err)
	}
	var answer etf.Term
	select {
	case m := <-ch:
		if r, ok := m.(etf.Tuple); ok && len(r) == 2 && r[0] == ref {
			answer = r[1]
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no state answer")
	}
	want := ergonode.ListenPort(testNode)
	if got := parseDistPort(answer); want == 0 || got != want {
		t.Fatalf("state answer's dist_port %d, this node listens on %d (answer %v)", got, want, answer)
	}

	// A killed peer whose address came from its answer only: gone,
	// without a lookup.
	victim, err := startPeer("announced", modeBare, true)
	if err != nil {
		t.Fatal(err)
	}
	defer victim.kill()
	addr, ok := ergonode.LastAddress(testNode, victim.name)
	if !ok {
		t.Fatal("no address remembered for a peer this node dialled")
	}
	_, portText, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portText)
	// The Monitor would re-dial the victim too (and forget its address).
	proc.Kill()
	if err := proc.WaitWithTimeout(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	ergonode.ForgetAddress(testNode, victim.name)
	tr := newErgoTransport(testNode, nil, MonitorName, 5*time.Second)
	tr.listensOn(victim.name, uint16(port))
	victim.kill()
	waitGone(t, victim.name)
	skipIfTaken(t, victim.name)
	before := ergonode.Lookups(testNode, victim.name)
	gone, err := tr.Connect(context.Background(), victim.name, true)
	if !gone || err == nil || ergonode.Lookups(testNode, victim.name) != before {
		t.Fatalf("re-dial of a killed peer known by its answer: gone %v, err %v, %d lookups", gone, err, ergonode.Lookups(testNode, victim.name)-before)
	}
}

// skipIfTaken skips the test when a killed peer's port already serves
// another process (other tests on the host start nodes in the same port
// range): the dial there then rightly proves nothing.
func skipIfTaken(t *testing.T, peer string) {
	t.Helper()
	addr, ok := ergonode.LastAddress(testNode, peer)
	if !ok {
		t.Fatalf("no address remembered for %s", peer)
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Skipf("%s, where the killed %s listened, already serves another process", addr, peer)
	}
}

// What the dial to a last address concludes: refused, or accepted by a
// listening socket that is closed before it is served (a dying process),
// is nothing listening; a listener that holds the dial is something.
func TestNothingListens(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	// Accepted into the backlog, never served, and the listener closes
	// while the dial waits: the kernel resets it.
	go func() { time.Sleep(resetWait / 5); ln.Close() }()
	if !nothingListens(addr, time.Second) {
		t.Fatal("a dial accepted by a listener that then closed: something listens")
	}
	if !nothingListens(addr, time.Second) {
		t.Fatal("a closed port: something listens")
	}
	live, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	go func() {
		for {
			c, err := live.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	if nothingListens(live.Addr().String(), time.Second) {
		t.Fatal("a listener that holds the dial: nothing listens")
	}
	// The dying listener caught during the connect (seen at N = 25, not
	// reproducible on demand): the dial fails with a reset, as Go reports it.
	reset := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNRESET)}
	if !dialRefused(reset) {
		t.Fatal("a dial reset during the connect: something listens")
	}
	if dialRefused(&net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ETIMEDOUT)}) {
		t.Fatal("a dial that timed out: nothing listens")
	}
}

// A peer reached by a static route (a proxy, a mapped port) is dialled
// where the route says: the port it announces is not where this node
// reaches it, so it is not noted, and a refusal there would prove nothing.
func TestStaticRoutePeerIsNotDialledAtItsAnnouncedPort(t *testing.T) {
	peer := "static_routed_peer@127.0.0.1"
	if err := testNode.AddStaticRoute(peer, "127.0.0.1", 1, node.RouteOptions{}); err != nil {
		t.Fatal(err)
	}
	defer testNode.RemoveStaticRoute(peer)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close() // refused from now on
	tr := newErgoTransport(testNode, nil, MonitorName, time.Second)
	tr.listensOn(peer, uint16(port))
	if a, ok := ergonode.LastAddress(testNode, peer); ok {
		t.Fatalf("announced port noted (%s) for a peer with a static route", a)
	}
	ergonode.RememberAddress(testNode, peer, ln.Addr().String())
	defer ergonode.ForgetAddress(testNode, peer)
	if _, gone := refusedAtLastAddress(testNode, peer, time.Second); gone {
		t.Fatal("a peer with a static route found gone at an address the route does not name")
	}
}

// A failed dial tells whether the peer's process is gone only when asked:
// finding out costs a second EPMD lookup, which only a member in its flap
// grace needs (core.AwaitsGone).
func TestConnectChecksGoneOnlyWhenAsked(t *testing.T) {
	tr := newErgoTransport(testNode, nil, MonitorName, 2*time.Second)
	nobody := fmt.Sprintf("nobody_%d@127.0.0.1", os.Getpid())
	for _, tc := range []struct {
		checkGone, want bool
	}{{false, false}, {true, true}} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		gone, err := tr.Connect(ctx, nobody, tc.checkGone)
		cancel()
		if err == nil {
			t.Fatalf("connected to %s, which is not registered", nobody)
		}
		if gone != tc.want {
			t.Fatalf("checkGone %v: gone %v, want %v (%v)", tc.checkGone, gone, tc.want, err)
		}
	}
}

// The heartbeat's two forms: {Tag, Hash} for a peer that takes no list
// deltas (an older Go cloister answers any other ping with an error), and
// {Tag, Hash, Have, Added, Removed}; both read back as sent.
func TestHeartbeatForms(t *testing.T) {
	short := heartbeat(atomPing, 7, nil)
	if len(short) != 2 {
		t.Fatalf("short form %v", short)
	}
	if h, news, ok := parseHeartbeat(short, atomPing); !ok || h != 7 || news != nil {
		t.Fatalf("short form read as %d %+v %v", h, news, ok)
	}
	for _, sent := range []*core.ListNews{
		{},
		{Have: 42, HasHave: true, Added: []string{"b@h", "c@h"}, Removed: []string{"d@h"}},
	} {
		long := heartbeat(atomPong, 9, sent)
		if len(long) != 5 {
			t.Fatalf("long form %v", long)
		}
		h, got, ok := parseHeartbeat(long, atomPong)
		if !ok || h != 9 || got.Have != sent.Have || got.HasHave != sent.HasHave ||
			!slices.Equal(got.Added, sent.Added) || !slices.Equal(got.Removed, sent.Removed) {
			t.Fatalf("long form %+v read as %d %+v %v", sent, h, got, ok)
		}
		if _, _, ok := parseHeartbeat(long, atomPing); ok {
			t.Fatal("a pong read as a ping")
		}
	}
	for _, bad := range []etf.Tuple{
		{atomPing, hashBytes(1), []byte{}, etf.List{"b@h"}, etf.List{}}, // not atoms
		{atomPing, hashBytes(1), []byte{}, etf.List{}},                  // four elements
		{atomPing, []byte{1}, []byte{}, etf.List{}, etf.List{}},         // short hash
	} {
		if _, _, ok := parseHeartbeat(bad, atomPing); ok {
			t.Fatalf("%v read as a heartbeat", bad)
		}
	}
}
