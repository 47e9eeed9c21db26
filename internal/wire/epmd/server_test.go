package epmd

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// startServer serves on a free 127.0.0.1 port and returns the port.
func startServer(t *testing.T, s *Server) uint16 {
	t.Helper()
	if s.Logf == nil {
		s.Logf = t.Logf
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(func() { s.Close() })
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

func dial(t *testing.T, port uint16) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(int(port)), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// send writes b and returns everything read until the server closes (or
// until 2 s of silence, reported as open=true).
func send(t *testing.T, c net.Conn, b []byte) (reply []byte, open bool) {
	t.Helper()
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	return readAll(c, 2*time.Second)
}

func readAll(c net.Conn, quiet time.Duration) ([]byte, bool) {
	var out []byte
	buf := make([]byte, 4096)
	for {
		_ = c.SetReadDeadline(time.Now().Add(quiet))
		n, err := c.Read(buf)
		out = append(out, buf[:n]...)
		if err != nil {
			var ne net.Error
			return out, errors.As(err, &ne) && ne.Timeout()
		}
	}
}

// registerOn registers name on a new connection and returns it (open).
func registerOn(t *testing.T, port uint16, a Alive2Req) (net.Conn, []byte) {
	t.Helper()
	c := dial(t, port)
	if _, err := c.Write(mustEncode(t, a)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	want := 6
	if a.High < 6 {
		want = 4
	}
	b := make([]byte, want)
	if _, err := io.ReadFull(c, b[:2]); err != nil {
		return c, nil
	}
	if b[1] == 0 {
		if _, err := io.ReadFull(c, b[2:]); err != nil {
			t.Fatal(err)
		}
	} else {
		b = b[:2]
	}
	_ = c.SetReadDeadline(time.Time{})
	return c, b
}

func lookup(t *testing.T, port uint16, name string) (Alive2Req, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return Lookup(ctx, "127.0.0.1", port, name)
}

// waitGone polls until name is no longer registered.
func waitGone(t *testing.T, port uint16, name string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := lookup(t, port, name)
		if errors.Is(err, ErrNotRegistered) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%q still registered: %v", name, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRegisterLookupNames(t *testing.T) {
	port := startServer(t, &Server{})
	_, resp := registerOn(t, port, alive("a", []byte{0x11, 0x3b, 1, 1}))
	if len(resp) != 6 || resp[0] != codeAlive2XResp || resp[1] != 0 || binary.BigEndian.Uint32(resp[2:]) == 0 {
		t.Fatalf("version 6 node: want ALIVE2_X_RESP ok with a creation, got %x", resp)
	}
	old := Alive2Req{Port: 15001, NodeType: nodeTypeHidden, High: 5, Low: 5, Name: "old"}
	_, resp = registerOn(t, port, old)
	if len(resp) != 4 || resp[0] != codeAlive2Resp || resp[1] != 0 {
		t.Fatalf("version 5 node: want ALIVE2_RESP ok, got %x", resp)
	}
	if cr := binary.BigEndian.Uint16(resp[2:]); cr < 1 || cr > 3 {
		t.Fatalf("16-bit creation %d, want 1..3", cr)
	}
	a, err := lookup(t, port, "a")
	if err != nil || a.Port != 15000 || !bytes.Equal(a.Extra, []byte{0x11, 0x3b, 1, 1}) || a.High != 6 || a.Low != 5 {
		t.Fatalf("lookup a: %+v %v", a, err)
	}
	if a, err := lookup(t, port, "old"); err != nil || a.NodeType != nodeTypeHidden || a.Port != 15001 {
		t.Fatalf("lookup old: %+v %v", a, err)
	}
	if _, err := lookup(t, port, "nobody"); !errors.Is(err, ErrNotRegistered) || !strings.Contains(err.Error(), "desired node not found") {
		t.Fatalf("lookup of an unknown name: %v", err)
	}
	// Odd names are answered "not found", never cut off (Ergo's client
	// panics on an empty reply).
	for _, name := range []string{"", "a@b", "\xff", "x\n"} {
		reply, _ := send(t, dial(t, port), appendRequest(nil, []byte{codePortPlease2}, []byte(name)))
		if !bytes.Equal(reply, []byte{codePort2Resp, 1}) {
			t.Errorf("lookup of %q: reply %x", name, reply)
		}
	}
	reply, _ := send(t, dial(t, port), appendRequest(nil, []byte{codeNamesReq}))
	want := binary.BigEndian.AppendUint32(nil, uint32(port))
	want = append(want, "name a at port 15000\nname old at port 15001\n"...)
	if !bytes.Equal(reply, want) {
		t.Fatalf("NAMES: %q, want %q", reply, want)
	}
	names, err := Names(context.Background(), "127.0.0.1", port)
	if err != nil || len(names) != 2 || names[0] != (NameEntry{"a", 15000}) {
		t.Fatalf("Names: %v %v", names, err)
	}
}

func TestKillerPacketLeavesServerServing(t *testing.T) {
	port := startServer(t, &Server{})
	held, _ := registerOn(t, port, alive("held", nil))
	for i := 0; i < 3; i++ {
		reply, open := send(t, dial(t, port), killer)
		if len(reply) != 0 || open {
			t.Fatalf("killer packet: reply %x, open %v; want closed with no reply", reply, open)
		}
	}
	if _, err := lookup(t, port, "held"); err != nil {
		t.Fatalf("after the killer packet: %v", err)
	}
	if _, resp := registerOn(t, port, alive("after", nil)); len(resp) != 6 || resp[1] != 0 {
		t.Fatalf("registration after the killer packet: %x", resp)
	}
	_ = held
}

func TestNameTakenWhileLiveFreedOnClose(t *testing.T) {
	port := startServer(t, &Server{})
	first, resp := registerOn(t, port, alive("n", nil))
	if resp[1] != 0 {
		t.Fatal("first registration refused")
	}
	c2, resp := registerOn(t, port, alive("n", nil))
	if len(resp) != 2 || resp[0] != codeAlive2XResp || resp[1] == 0 {
		t.Fatalf("duplicate of a live name: reply %x, want refused", resp)
	}
	if _, open := readAll(c2, 2*time.Second); open {
		t.Fatal("refused registration's socket left open")
	}
	first.Close()
	waitGone(t, port, "n")
	_, resp = registerOn(t, port, alive("n", nil))
	if resp[1] != 0 {
		t.Fatalf("name not free after its socket closed: %x", resp)
	}
}

func TestSecondAliveOnOneSocketFreesAndCloses(t *testing.T) {
	port := startServer(t, &Server{})
	c, resp := registerOn(t, port, alive("one", nil))
	if resp[1] != 0 {
		t.Fatal("registration refused")
	}
	reply, open := send(t, c, mustEncode(t, alive("two", nil)))
	if len(reply) != 0 || open {
		t.Fatalf("second ALIVE2 on a socket: reply %x open %v; want closed", reply, open)
	}
	waitGone(t, port, "one")
	if _, err := lookup(t, port, "two"); !errors.Is(err, ErrNotRegistered) {
		t.Fatalf("second name registered: %v", err)
	}
}

func TestNonLocalRegistrationRefused(t *testing.T) {
	var mu sync.Mutex
	var logs []string
	s := &Server{Logf: func(f string, a ...interface{}) {
		mu.Lock()
		logs = append(logs, f)
		mu.Unlock()
	}}
	// The peer address as seen from another host: injected, as the rule
	// itself is unit-tested below with real address pairs.
	s.isLocal = func(remote, local net.Addr) bool { return false }
	port := startServer(t, s)
	c, resp := registerOn(t, port, alive("intruder", nil))
	if resp != nil {
		t.Fatalf("non-local registration answered %x, want closed", resp)
	}
	c.Close()
	if _, err := lookup(t, port, "intruder"); !errors.Is(err, ErrNotRegistered) {
		t.Fatalf("non-local registration took effect: %v", err)
	}
	// Lookups from anywhere still work.
	if reply, _ := send(t, dial(t, port), appendRequest(nil, []byte{codeNamesReq})); len(reply) != 4 {
		t.Fatalf("NAMES from a non-local peer: %x", reply)
	}
}

func TestIsLocalPeer(t *testing.T) {
	tcp := func(s string) net.Addr { return &net.TCPAddr{IP: net.ParseIP(s), Port: 1} }
	for _, tc := range []struct {
		remote, local string
		want          bool
	}{
		{"127.0.0.1", "127.0.0.1", true},
		{"127.3.4.5", "10.0.0.1", true},
		{"::1", "::1", true},
		{"::ffff:127.0.0.1", "::ffff:127.0.0.1", true},
		{"172.18.0.3", "172.18.0.3", true},  // a container dialling its own address
		{"172.18.0.1", "172.18.0.3", false}, // the Docker host, or another container
		{"10.0.0.2", "10.0.0.1", false},
		{"fe80::1", "fe80::2", false},
	} {
		if got := IsLocalPeer(tcp(tc.remote), tcp(tc.local)); got != tc.want {
			t.Errorf("IsLocalPeer(%s, %s) = %v, want %v", tc.remote, tc.local, got, tc.want)
		}
	}
	if IsLocalPeer(nil, tcp("127.0.0.1")) {
		t.Error("unknown peer address counted as local")
	}
}

func TestRefusedAndAnsweredAsErlangsEPMD(t *testing.T) {
	port := startServer(t, &Server{})
	registerOn(t, port, alive("live", nil))
	for _, tc := range []struct {
		name  string
		req   []byte
		reply []byte
	}{
		{"kill", appendRequest(nil, []byte("k")), []byte("NO")},
		{"stop", appendRequest(nil, []byte("slive")), nil},
		{"dump", appendRequest(nil, []byte("d")), nil},
		{"unknown", appendRequest(nil, []byte("q")), nil},
		{"zero length", []byte{0, 0}, nil},
		{"over the limit", []byte{0xff, 0xff, 'n'}, nil},
	} {
		reply, open := send(t, dial(t, port), tc.req)
		if !bytes.Equal(reply, tc.reply) || open {
			t.Errorf("%s: reply %q open %v, want %q and closed", tc.name, reply, open, tc.reply)
		}
	}
	if _, err := lookup(t, port, "live"); err != nil {
		t.Fatalf("after refused requests: %v", err)
	}
}

func TestIdleAndPartialRequestsTimeOut(t *testing.T) {
	port := startServer(t, &Server{RequestTimeout: 300 * time.Millisecond})
	t0 := time.Now()
	idle := dial(t, port)
	partial := dial(t, port)
	if _, err := partial.Write(mustEncode(t, alive("slow", nil))[:5]); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]net.Conn{"idle": idle, "partial": partial} {
		_, open := readAll(c, 10*time.Second)
		if open {
			t.Fatalf("%s connection not closed", name)
		}
		if d := time.Since(t0); d < 200*time.Millisecond {
			t.Fatalf("%s connection closed after %s, before the 300 ms request timeout", name, d)
		}
	}
}

func TestPendingCapEvictsOldest(t *testing.T) {
	const max = 8
	port := startServer(t, &Server{MaxPending: max})
	// A registered socket is not pending and is never evicted.
	held, resp := registerOn(t, port, alive("held", nil))
	if resp[1] != 0 {
		t.Fatal("registration refused")
	}
	var idle []net.Conn
	for i := 0; i < 5*max; i++ {
		idle = append(idle, dial(t, port))
	}
	// The newest request is still served, and the oldest idle ones closed.
	if _, err := lookup(t, port, "held"); err != nil {
		t.Fatalf("lookup with %d idle connections: %v", len(idle), err)
	}
	if _, open := readAll(idle[0], 5*time.Second); open {
		t.Fatal("oldest idle connection not evicted")
	}
	_ = held.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if _, err := held.Read(make([]byte, 1)); err == nil || !isTimeout(err) {
		t.Fatalf("registered socket closed by the cap: %v", err)
	}
}

func TestMaxNames(t *testing.T) {
	port := startServer(t, &Server{MaxNames: 2})
	registerOn(t, port, alive("a", nil))
	registerOn(t, port, alive("b", nil))
	if _, resp := registerOn(t, port, alive("c", nil)); len(resp) < 2 || resp[1] == 0 {
		t.Fatalf("third name over a limit of 2: %x", resp)
	}
}

func TestCloseFreesEverything(t *testing.T) {
	s := &Server{}
	port := startServer(t, s)
	c, _ := registerOn(t, port, alive("a", nil))
	idle := dial(t, port)
	s.Close()
	if _, open := readAll(c, 5*time.Second); open {
		t.Fatal("registered socket open after Close")
	}
	if _, open := readAll(idle, 5*time.Second); open {
		t.Fatal("idle socket open after Close")
	}
	if _, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(int(port)), time.Second); err == nil {
		t.Fatal("still listening after Close")
	}
}

func TestLogsAreRateLimited(t *testing.T) {
	var mu sync.Mutex
	var lines []string
	port := startServer(t, &Server{Logf: func(f string, a ...interface{}) {
		mu.Lock()
		lines = append(lines, f)
		mu.Unlock()
	}})
	for i := 0; i < 50; i++ {
		send(t, dial(t, port), killer)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(lines) != 1 {
		t.Fatalf("50 malformed packets: %d log lines, want 1 per 10 s", len(lines))
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// FuzzServe: any bytes sent to the server, as a local peer, leave it
// serving: it answers a lookup on a fresh connection afterwards.
func FuzzServe(f *testing.F) {
	f.Add(killer)
	f.Add(mustEncode(f, alive("n", nil)))
	f.Add(append(mustEncode(f, alive("n", nil)), mustEncode(f, alive("m", nil))...))
	f.Add(appendRequest(nil, []byte("zfoo")))
	f.Add(appendRequest(nil, []byte("n")))
	f.Add([]byte{0, 1})
	f.Add([]byte{0xff, 0xff, 'x'})
	s := &Server{RequestTimeout: 200 * time.Millisecond, Logf: func(string, ...interface{}) {},
		isLocal: func(net.Addr, net.Addr) bool { return true }}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	go func() { _ = s.Serve(ln) }()
	defer s.Close()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(int(port)), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = c.Write(data)
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		_, _ = io.Copy(io.Discard, c)
		c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		// A name no registration can take ('@' is refused).
		if _, err := Lookup(ctx, "127.0.0.1", port, "no@body"); !errors.Is(err, ErrNotRegistered) {
			t.Fatalf("after %x: lookup %v", data, err)
		}
	})
}
