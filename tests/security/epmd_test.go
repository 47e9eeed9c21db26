package security

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"os"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloister-go/cloister"
	"github.com/cloister-go/cloister/cloistertest"
	"github.com/cloister-go/cloister/internal/erltest"
	"github.com/cloister-go/cloister/internal/testenv"
	"github.com/cloister-go/cloister/listener"
)

// EPMD as an attacker sees it: raw, unauthenticated sockets against every
// process that serves EPMD — `cloister epmd` and a node with
// -embedded-epmd — and the real clients (erl, Ergo nodes) against it. The
// packets are built here by hand, not with cloister's EPMD package, so
// these tests also run against code that does not have it.

// killerPacket is an ALIVE2_REQ whose name length (0xFFFF) points past the
// packet: it crashed any process serving Ergo's embedded EPMD.
var killerPacket = []byte{0x00, 0x0b, 0x78, 0x3a, 0x98, 0x4d, 0x00, 0x00, 0x06, 0x00, 0x05, 0xff, 0xff}

func epmdAddr(port uint16) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))) }

func frame(body []byte) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(body))), body...)
}

func alive2Req(name string, port uint16) []byte {
	b := []byte{'x'}
	b = binary.BigEndian.AppendUint16(b, port)
	b = append(b, 77, 0, 0, 6, 0, 5)
	b = binary.BigEndian.AppendUint16(b, uint16(len(name)))
	b = append(b, name...)
	b = append(b, 0, 0)
	return frame(b)
}

// exchange sends req on a new connection (from local, if set) and reads
// until the server closes or 3 s pass.
func exchange(t *testing.T, port uint16, local net.Addr, req []byte) []byte {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: local}
	c, err := d.Dial("tcp", epmdAddr(port))
	if err != nil {
		t.Fatalf("dial epmd %d: %v", port, err)
	}
	defer c.Close()
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	b, _ := io.ReadAll(c)
	return b
}

// namesAt returns the names registered at the EPMD on port.
func namesAt(t *testing.T, port uint16) []string {
	t.Helper()
	b := exchange(t, port, nil, frame([]byte{'n'}))
	if len(b) < 4 {
		t.Fatalf("NAMES at %d: %x", port, b)
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b[4:]))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "name "); ok {
			if i := strings.Index(rest, " at port "); i > 0 {
				out = append(out, rest[:i])
			}
		}
	}
	return out
}

// portOf asks the EPMD on port for name: its port, or 0 when unknown.
func portOf(t *testing.T, port uint16, name string) int {
	t.Helper()
	b := exchange(t, port, nil, frame(append([]byte{'z'}, name...)))
	if len(b) >= 4 && b[0] == 'w' && b[1] == 0 {
		return int(binary.BigEndian.Uint16(b[2:4]))
	}
	if len(b) != 2 || b[0] != 'w' {
		t.Fatalf("PORT_PLEASE2 %q at %d: reply %x", name, port, b)
	}
	return 0
}

// ourEPMD replaces the harness's epmd with `cloister epmd`.
func ourEPMD(t *testing.T, h *cloistertest.Harness) {
	t.Helper()
	h.EPMD.Stop()
	e, err := testenv.StartEPMDWith(h.Bin, "epmd")
	if err != nil {
		t.Fatal(err)
	}
	h.EPMD = e
}

// One 13-byte packet used to kill `cloister epmd` and every node with
// -embedded-epmd. Both must stay up and keep serving.
func TestEPMDKillerPacketKillsNothing(t *testing.T) {
	h := cloistertest.NewT(t)
	ourEPMD(t, h)
	a, err := h.Start(cloistertest.Spec{Name: "epmdk_0@127.0.0.1", Consensus: 1})
	if err != nil {
		t.Fatal(err)
	}
	emb, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	b, err := h.Start(cloistertest.Spec{Name: "epmdk_1@127.0.0.1", Consensus: 1,
		Args: []string{"-embedded-epmd", "-epmd-port", strconv.Itoa(int(emb))}})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []*cloistertest.Node{a, b} {
		if e, err := n.WaitStarted(60 * time.Second); err != nil || e.Event != "started" {
			t.Fatalf("%s: %v %+v", n.Name, err, e)
		}
	}
	for _, tc := range []struct {
		what string
		port uint16
		node string
	}{{"cloister epmd", h.EPMD.Port, "epmdk_0"}, {"node with -embedded-epmd", emb, "epmdk_1"}} {
		for i := 0; i < 3; i++ {
			exchange(t, tc.port, nil, killerPacket)
		}
		// exchange returned: the server closed each connection, having
		// handled the packet, or died (a crashing process closes them
		// as it exits); a dead server answers no lookup below.
		if p := portOf(t, tc.port, tc.node); p == 0 {
			t.Fatalf("%s: %s no longer registered after the packet", tc.what, tc.node)
		}
	}
	if !b.Running() {
		t.Fatal("the node serving EPMD exited")
	}
	if _, err := b.Status(); err != nil {
		t.Fatalf("node with -embedded-epmd after the packet: %v", err)
	}
}

// A name is registered only from the local host, is held by one socket
// only, and is freed when that socket closes: a second ALIVE2 on one
// socket leaves nothing behind, and a stranger cannot squat the name of a
// node that is down.
func TestEPMDRegistrationRules(t *testing.T) {
	h := cloistertest.NewT(t)
	ourEPMD(t, h)
	port := h.EPMD.Port

	t.Run("second ALIVE2 on one socket", func(t *testing.T) {
		c, err := net.DialTimeout("tcp", epmdAddr(port), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write(alive2Req("squat_a", 1111)); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		// ALIVE2_X_RESP ('v', 6 bytes) or ALIVE2_RESP ('y', 4 bytes).
		resp := make([]byte, 6)
		if _, err := io.ReadFull(c, resp[:4]); err != nil || resp[1] != 0 {
			t.Fatalf("first registration: %x %v", resp, err)
		}
		if resp[0] == 'v' {
			if _, err := io.ReadFull(c, resp[4:]); err != nil {
				t.Fatal(err)
			}
		}
		_, _ = c.Write(alive2Req("squat_b", 2222))
		// The second request is handled when the server closes the
		// socket (or, at the latest, the read deadline passes).
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, _ = io.Copy(io.Discard, c)
		c.Close()
		var names []string
		if !testenv.Poll(10*time.Second, func() bool {
			names = namesAt(t, port)
			return !contains(names, "squat_a") && !contains(names, "squat_b")
		}) {
			t.Fatalf("names left registered after their socket closed: %v", names)
		}
	})

	t.Run("not from another host", func(t *testing.T) {
		src := nonLoopbackAddr()
		if src == nil {
			t.Skip("no non-loopback IPv4 address on this host to dial from (the rule is unit-tested in internal/wire/epmd)")
		}
		// The peer address is not loopback and not the address dialled
		// (127.0.0.1): as a packet from another host would look.
		victim, err := h.Start(cloistertest.Spec{Name: "squatted@127.0.0.1", Consensus: 1})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := victim.WaitStarted(60 * time.Second); err != nil {
			t.Fatal(err)
		}
		victim.Kill()
		testenv.WaitFor(t, 10*time.Second, "unregistration of the killed node's name", func() bool { return portOf(t, port, "squatted") == 0 })
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: src}}
		c, err := d.Dial("tcp", epmdAddr(port))
		if err != nil {
			t.Skipf("cannot dial 127.0.0.1 from %s: %v", src, err)
		}
		defer c.Close()
		_, _ = c.Write(alive2Req("squatted", 1))
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
		reply, _ := io.ReadAll(c)
		if len(reply) >= 2 && reply[1] == 0 {
			t.Fatalf("registration from %s accepted: %x", src, reply)
		}
		if p := portOf(t, port, "squatted"); p != 0 {
			t.Fatalf("name squatted from %s (port %d)", src, p)
		}
		// The node restarts under its name.
		if err := victim.Restart(); err != nil {
			t.Fatal(err)
		}
		if e, err := victim.WaitStarted(60 * time.Second); err != nil || e.Event != "started" {
			t.Fatalf("restart after a squat attempt: %v %+v\n%s", err, e, victim.LogTail())
		}
	})
}

func nonLoopbackAddr() net.IP {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() {
			return n.IP
		}
	}
	return nil
}

// Real Erlang nodes and cloister nodes register with `cloister epmd` and
// find each other through it.
func TestEPMDServesErlangAndErgo(t *testing.T) {
	if _, err := exec.LookPath("erl"); err != nil {
		t.Skip("erl not installed")
	}
	h := cloistertest.NewT(t)
	ourEPMD(t, h)
	env, err := erltest.NewEnv(h.Cookie)
	if err != nil {
		t.Fatal(err)
	}
	env.EPMD.Stop()
	env.EPMD = h.EPMD // Stop is idempotent; the harness closes it too
	defer env.Close()
	e1, err := env.StartNode("epmd_e1", erltest.NodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e2, err := env.StartNode("epmd_e2", erltest.NodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	g, err := h.Start(cloistertest.Spec{Name: "epmd_go@127.0.0.1", Consensus: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.WaitStarted(60 * time.Second); err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{e2.Name, "epmd_go@127.0.0.1"} {
		if r, err := e1.Eval("net_adm:ping('" + target + "')"); err != nil || r != "pong" {
			t.Fatalf("net_adm:ping(%s) from %s: %q %v", target, e1.Name, r, err)
		}
	}
	// erl checks the port in the NAMES reply against its own.
	r, err := e2.Eval("{ok, Ns} = net_adm:names(), lists:sort([list_to_atom(N) || {N, _} <- Ns])")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{strings.Split(e1.Name, "@")[0], strings.Split(e2.Name, "@")[0], "epmd_go"} {
		if !strings.Contains(r, n) {
			t.Fatalf("net_adm:names() = %s, missing %s", r, n)
		}
	}
}

// A newcomer's machine has no epmd: two nodes still form a cluster (one
// serves EPMD in its process and says so), the other takes over when that
// process is killed, and the killed node comes back.
func TestNodesFormWithoutAnEPMD(t *testing.T) {
	h := cloistertest.NewT(t)
	logs := &syncBuffer{}
	h.Logs = logs
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	ns := []string{"noepmd_0@127.0.0.1", "noepmd_1@127.0.0.1"}
	var nodes []*cloistertest.Node
	for _, n := range ns {
		node, err := h.Start(cloistertest.Spec{Name: n, Sentry: ns, Consensus: 2,
			Args: []string{"-epmd-port", strconv.Itoa(int(port))}})
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, node)
	}
	for _, node := range nodes {
		if e, err := node.WaitStarted(60 * time.Second); err != nil || e.Event != "started" {
			t.Fatalf("%s: %v %+v\n%s", node.Name, err, e, node.LogTail())
		}
	}
	ready := func(n *cloistertest.Node, members []string) {
		t.Helper()
		if _, err := n.WaitStatus(60*time.Second, "ready with "+strings.Join(members, ","), func(s listener.Snapshot) bool {
			return s.Ready() && reflect.DeepEqual(s.Members, members)
		}); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range nodes {
		ready(n, ns)
	}
	// The nodes start together: either may be the one that serves.
	p := strconv.Itoa(int(port))
	served := func(i int) []string {
		return logs.lines(ns[i], "no EPMD was running at 127.0.0.1:"+p, "serving EPMD in this process on 127.0.0.1:"+p)
	}
	used := func(i int) []string { return logs.lines(ns[i], "registered with the EPMD at 127.0.0.1:"+p) }
	server, client := -1, -1
	if !testenv.Poll(10*time.Second, func() bool {
		for i := range ns {
			if len(served(i)) == 1 && len(used(1-i)) == 1 && len(served(1-i)) == 0 {
				server, client = i, 1-i
			}
		}
		return server >= 0
	}) {
		t.Fatalf("want one node serving EPMD and saying so, the other using it:\n%s\n%s",
			strings.Join(logs.lines(ns[0]), "\n"), strings.Join(logs.lines(ns[1]), "\n"))
	}
	t.Log(served(server)[0])
	t.Log(used(client)[0])

	killed := time.Now()
	nodes[server].Kill()
	t.Log(waitLog(t, logs, ns[client], 30*time.Second, "registered again", "serving EPMD in this process"))
	t.Logf("took over EPMD within %s of the kill (50 ms polling)", time.Since(killed).Round(time.Millisecond))
	// Alone (below consensus 2), but up and with the dead node gone.
	if _, err := nodes[client].WaitStatus(60*time.Second, "alone", func(s listener.Snapshot) bool {
		return reflect.DeepEqual(s.Members, ns[client:client+1])
	}); err != nil {
		t.Fatal(err)
	}
	if err := nodes[server].Restart(); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		ready(n, ns)
	}
}

// cloister.StartNode with no EPMD port given uses $ERL_EPMD_PORT, as BEAM
// tools do, in a program of its own (this test binary, re-run).
func TestStartNodeHonoursERLEPMDPORT(t *testing.T) {
	h := cloistertest.NewT(t) // the system epmd (or ours) on a private port
	name := "envport@127.0.0.1"
	cmd := exec.Command(os.Args[0], "-test.run=^TestEPMDHelperStartNode$", "-test.v")
	cmd.Env = append(os.Environ(), "CLOISTER_EPMD_HELPER="+name, "ERL_EPMD_PORT="+strconv.Itoa(int(h.EPMD.Port)))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}()
	if !testenv.Poll(60*time.Second, func() bool { return contains(namesAt(t, h.EPMD.Port), "envport") }) {
		out.mu.Lock()
		o := out.b.String()
		out.mu.Unlock()
		t.Fatalf("not registered at $ERL_EPMD_PORT=%d; names %v; helper output:\n%s", h.EPMD.Port, namesAt(t, h.EPMD.Port), o)
	}
}

// TestEPMDHelperStartNode is the program of TestStartNodeHonoursERLEPMDPORT;
// it does nothing unless run by it.
func TestEPMDHelperStartNode(t *testing.T) {
	name := os.Getenv("CLOISTER_EPMD_HELPER")
	if name == "" {
		return
	}
	opts := cloister.DefaultOptions()
	opts.Sentry = []string{name}
	opts.Consensus = 1
	n, err := cloister.StartNode(name, opts, cloister.NodeOptions{Cookie: "envport"})
	if err != nil {
		t.Fatal(err)
	}
	defer cloister.StopNode(n)
	_, _ = io.Copy(io.Discard, os.Stdin) // until the parent closes stdin
}

// A node looking a peer up at an EPMD that closes without answering (or
// anything else listening on the peer's EPMD port) keeps running: Ergo's
// own client indexed the empty reply and panicked.
func TestNodeSurvivesAnEPMDThatHangsUp(t *testing.T) {
	h := cloistertest.NewT(t)
	ourEPMD(t, h) // on 127.0.0.1 only, so 127.0.0.2 is free for the hostile one
	hostile, err := net.Listen("tcp", net.JoinHostPort("127.0.0.2", strconv.Itoa(int(h.EPMD.Port))))
	if err != nil {
		t.Skipf("cannot listen on 127.0.0.2: %v", err)
	}
	defer hostile.Close()
	var hangups atomic.Int32
	go func() {
		for {
			c, err := hostile.Accept()
			if err != nil {
				return
			}
			_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
			_, _ = c.Read(make([]byte, 64))
			c.Close()
			hangups.Add(1)
		}
	}()
	n, err := h.Start(cloistertest.Spec{Name: "looker@127.0.0.1", Sentry: []string{"looker@127.0.0.1", "ghost@127.0.0.2"}, Consensus: 1})
	if err != nil {
		t.Fatal(err)
	}
	if e, err := n.WaitStarted(60 * time.Second); err != nil || e.Event != "started" {
		t.Fatalf("%v %+v\n%s", err, e, n.LogTail())
	}
	if !testenv.Poll(30*time.Second, func() bool { return hangups.Load() >= 3 || !n.Running() }) || !n.Running() {
		t.Fatalf("%d lookups hung up on; node running=%v\n%s", hangups.Load(), n.Running(), n.LogTail())
	}
	if !n.Running() {
		t.Fatalf("node exited after its lookups were hung up on\n%s", n.LogTail())
	}
	if _, err := n.Status(); err != nil {
		t.Fatalf("node after hung-up lookups: %v", err)
	}
}
