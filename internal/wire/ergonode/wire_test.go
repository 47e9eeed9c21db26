package ergonode_test

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cloister-go/cloister/internal/erltest"
	"github.com/cloister-go/cloister/internal/testenv"

	"github.com/cloister-go/cloister/internal/wire/distfilter"
	"github.com/cloister-go/cloister/internal/wire/ergonode"
)

// The nodes of these tests are this test binary run again with childEnv
// set: one Ergo node per OS process, driven by lines on stdin. Its log
// (the standard logger, where Ergo writes too) is its stderr.
const childEnv = "ERGONODE_TEST_CHILD"

func runChild() int {
	port, _ := strconv.Atoi(os.Getenv("ERGONODE_TEST_EPMD"))
	o := ergonode.Options{Cookie: os.Getenv("ERGONODE_TEST_COOKIE"), EPMDPort: uint16(port)}
	if d := os.Getenv("ERGONODE_TEST_ACCEPT"); d != "" {
		o.AcceptTimeout, _ = time.ParseDuration(d)
	}
	if d := os.Getenv("ERGONODE_TEST_LOGEVERY"); d != "" {
		o.LogEvery, _ = time.ParseDuration(d)
	}
	o.MaxPendingHandshakes, _ = strconv.Atoi(os.Getenv("ERGONODE_TEST_PENDING"))
	if dir := os.Getenv("ERGONODE_TEST_TLS"); dir != "" {
		c, err := loadTLS(dir)
		if err != nil {
			fmt.Println("ERROR", err)
			return 1
		}
		o.TLS = c
	}
	beam := os.Getenv("ERGONODE_TEST_BEAM") != ""
	if beam {
		distfilter.Options{}.Apply(&o)
	}
	n, err := ergonode.Start(os.Getenv(childEnv), o)
	if err != nil {
		fmt.Println("ERROR", err)
		return 1
	}
	defer n.Stop()
	if beam {
		// net_adm:ping from erl answers pong
		if err := distfilter.InstallNetKernel(n); err != nil {
			fmt.Println("ERROR", err)
			return 1
		}
	}
	r, err := n.Resolve(n.Name())
	if err != nil {
		fmt.Println("ERROR", err)
		return 1
	}
	fmt.Println("READY", r.Port)
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 2 && f[0] == "connect":
			start := time.Now()
			err := ergonode.Connect(n, f[1])
			ms := float64(time.Since(start).Microseconds()) / 1000
			if err != nil {
				fmt.Printf("RESULT err %.2f %v\n", ms, strings.ReplaceAll(err.Error(), "\n", " "))
			} else {
				fmt.Printf("RESULT ok %.2f\n", ms)
			}
		case len(f) >= 1 && liveCommand(n, f):
			// liveness_wire_test.go
		case len(f) >= 1 && orderCommand(n, f):
			// order_wire_test.go
		case len(f) == 1 && f[0] == "nodes":
			ns := n.Nodes()
			sort.Strings(ns)
			fmt.Println("RESULT", strings.Join(ns, ","))
		default:
			fmt.Println("RESULT bad command")
		}
	}
	return 0
}

func loadTLS(dir string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
	if err != nil {
		return nil, err
	}
	ca, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, errors.New("no CA certificate in ca.pem")
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, ClientCAs: pool,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}, nil
}

type child struct {
	name  string
	port  int
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines chan string
	log   *syncBuf
}

type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, l := range strings.Split(s.b.String(), "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}

func (s *syncBuf) has(parts ...string) bool {
	for _, l := range s.lines() {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(l, p)
		}
		if ok {
			return true
		}
	}
	return false
}

// childOpts: extra environment for the child (ERGONODE_TEST_* settings).
func startChild(t *testing.T, name, cookie string, env ...string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+name, "ERGONODE_TEST_EPMD="+strconv.Itoa(int(epmd.Port)),
		"ERGONODE_TEST_COOKIE="+cookie)
	cmd.Env = append(cmd.Env, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	c := &child{name: name, cmd: cmd, in: in, lines: make(chan string, 16), log: &syncBuf{}}
	cmd.Stderr = c.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
		close(c.lines)
	}()
	t.Cleanup(func() {
		_ = in.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		if t.Failed() {
			t.Logf("%s log:\n%s", name, strings.Join(c.log.lines(), "\n"))
		}
	})
	l := c.next(t)
	if _, err := fmt.Sscanf(l, "READY %d", &c.port); err != nil {
		t.Fatalf("%s: %s\n%s", name, l, strings.Join(c.log.lines(), "\n"))
	}
	return c
}

func (c *child) next(t *testing.T) string {
	t.Helper()
	select {
	case l, ok := <-c.lines:
		if !ok {
			t.Fatalf("%s exited", c.name)
		}
		return l
	case <-time.After(60 * time.Second):
		t.Fatalf("%s silent for 60 s", c.name)
	}
	return ""
}

func (c *child) do(t *testing.T, cmd string) string {
	t.Helper()
	if _, err := io.WriteString(c.in, cmd+"\n"); err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(c.next(t), "RESULT ")
}

// connect makes c dial peer: ok, the time it took, and the error text.
func (c *child) connect(t *testing.T, peer string) (bool, float64, string) {
	t.Helper()
	r := c.do(t, "connect "+peer)
	f := strings.SplitN(r, " ", 3)
	if len(f) < 2 {
		t.Fatalf("connect: %q", r)
	}
	ms, _ := strconv.ParseFloat(f[1], 64)
	if len(f) == 3 {
		return f[0] == "ok", ms, f[2]
	}
	return f[0] == "ok", ms, ""
}

// sockets is how many sockets the child process holds open.
func (c *child) sockets(t *testing.T) int {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", c.cmd.Process.Pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && strings.HasPrefix(l, "socket:") {
			n++
		}
	}
	return n
}

func (c *child) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(c.port)) }

// Idle and half-open sockets on a node's distribution port do not hold
// back the handshakes of real peers: Ergo's accept loop handshakes one
// connection at a time, each for up to its timeout (5 s), so before, the
// peer below waited 1000 × 5 s and its connect failed.
func TestIdleSocketsDoNotDelayHandshakes(t *testing.T) {
	const idle = 1000
	// A long deadline and a cap above the crowd: every idle socket stays
	// pending while the peers connect, so only concurrency can let them in.
	target := startChild(t, "idle_target@127.0.0.1", "c", "ERGONODE_TEST_ACCEPT=60s", "ERGONODE_TEST_PENDING=2000", "ERGONODE_TEST_BEAM=1")
	const peers = 3
	var before, crowd []*child
	var names []string
	for i := 0; i < peers; i++ {
		before = append(before, startChild(t, fmt.Sprintf("idle_before%d@127.0.0.1", i), "c"))
		crowd = append(crowd, startChild(t, fmt.Sprintf("idle_peer%d@127.0.0.1", i), "c"))
		names = append(names, before[i].name, crowd[i].name)
	}
	sort.Strings(names)
	var alone, crowded []float64
	for _, p := range before {
		ok, ms, msg := p.connect(t, target.name)
		if !ok {
			t.Fatalf("connect without idle sockets: %s", msg)
		}
		alone = append(alone, ms)
	}
	socks := make([]net.Conn, 0, idle)
	defer func() {
		for _, s := range socks {
			s.Close()
		}
	}()
	held := target.sockets(t)
	for i := 0; i < idle; i++ {
		s, err := net.DialTimeout("tcp", target.addr(), 5*time.Second)
		if err != nil {
			t.Fatalf("idle socket %d: %v", i, err)
		}
		socks = append(socks, s)
	}
	// The crowd is in place once the node has accepted every idle socket
	// (the kernel completes a TCP handshake before the node accepts it).
	testenv.WaitFor(t, 30*time.Second, fmt.Sprintf("the target to accept %d idle sockets", idle), func() bool {
		return target.sockets(t)-held >= idle
	})
	for _, p := range crowd {
		ok, ms, msg := p.connect(t, target.name)
		if !ok {
			t.Fatalf("connect with %d idle sockets open: %s", idle, msg)
		}
		crowded = append(crowded, ms)
	}
	// The target registers a link a moment after the peer's side is done.
	testenv.WaitFor(t, 10*time.Second, "links to every peer on the target", func() bool {
		return target.do(t, "nodes") == strings.Join(names, ",")
	})
	erlMS, erlRes := erlPing(t, target.name, "c")
	if erlRes != "pong" {
		t.Fatalf("erl ping with %d idle sockets open: %s", idle, erlRes)
	}
	// Ergo writes a warning for the tuple keys of the map a BEAM node's
	// global sends on connect, and one per failed handshake: dropped.
	for _, l := range target.log.lines() {
		if strings.Contains(l, "WARNING!") {
			t.Fatalf("Ergo's own line in the log: %s", l)
		}
	}
	// The idle sockets were still open, and pending, all along.
	open := 0
	for _, s := range socks[:20] {
		_ = s.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
		var b [1]byte
		if _, err := s.Read(b[:]); isTimeout(err) {
			open++
		}
	}
	if open != 20 {
		t.Fatalf("%d of 20 idle sockets still open, want all: the test did not hold the crowd", open)
	}
	sort.Float64s(alone)
	sort.Float64s(crowded)
	t.Logf("Go peer connect (ms, sorted): %v alone, %v with %d idle sockets open; erl net_adm:ping %.2f ms", alone, crowded, idle, erlMS)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// erlPing runs an erl node that pings target: the time net_adm:ping took
// (ms) and its result.
func erlPing(t *testing.T, target, cookie string) (float64, string) {
	t.Helper()
	if _, err := exec.LookPath("erl"); err != nil {
		t.Skip("no erl")
	}
	ms, res, err := erltest.TimedPing(cookie, epmd.Port, target, 90*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return ms, res
}

// With TLS, a node neither sends nor accepts a plaintext link, and refuses
// a peer whose certificate another authority signed; two TLS nodes of one
// authority connect.
func TestTLSEnforced(t *testing.T) {
	dir := t.TempDir()
	ca1, ca2 := newCA(t, "ca1"), newCA(t, "ca2")
	dirs := map[string]string{}
	for _, n := range []struct {
		name string
		ca   *ca
	}{{"a", ca1}, {"b", ca1}, {"c", ca2}} {
		d := filepath.Join(dir, n.name)
		n.ca.issue(t, d)
		dirs[n.name] = d
	}
	a := startChild(t, "tls_a@127.0.0.1", "c", "ERGONODE_TEST_TLS="+dirs["a"])
	b := startChild(t, "tls_b@127.0.0.1", "c", "ERGONODE_TEST_TLS="+dirs["b"])
	c := startChild(t, "tls_c@127.0.0.1", "c", "ERGONODE_TEST_TLS="+dirs["c"])
	p := startChild(t, "plain_p@127.0.0.1", "c")

	if ok, _, msg := b.connect(t, a.name); !ok {
		t.Fatalf("TLS b -> TLS a: %s", msg)
	}
	// A plain peer dials a TLS node: refused, both say why.
	if ok, _, msg := p.connect(t, a.name); ok || !strings.Contains(msg, "TLS") {
		t.Fatalf("plain -> TLS: ok %v: %s", ok, msg)
	}
	testenv.WaitFor(t, 10*time.Second, "TLS mismatch line on a", func() bool { return a.log.has("incoming", "TLS on one side only") })
	// A TLS node dials a plain peer (its EPMD entry says no TLS): in TLS,
	// which the plain peer sees and refuses.
	if ok, _, msg := a.connect(t, p.name); ok || !strings.Contains(msg, "TLS") {
		t.Fatalf("TLS -> plain: ok %v: %s", ok, msg)
	}
	testenv.WaitFor(t, 10*time.Second, "'the peer speaks TLS' on the plain node", func() bool {
		return p.log.has("tls_a@127.0.0.1", "speaks TLS") || p.log.has("incoming", "speaks TLS")
	})
	// Another authority's certificate: refused both ways.
	if ok, _, msg := c.connect(t, a.name); ok || !strings.Contains(msg, "certificate") {
		t.Fatalf("other CA -> a: ok %v: %s", ok, msg)
	}
	if ok, _, msg := a.connect(t, c.name); ok || !strings.Contains(msg, "certificate") {
		t.Fatalf("a -> other CA: ok %v: %s", ok, msg)
	}
	if got := a.do(t, "nodes"); got != b.name {
		t.Fatalf("a's links: %q, want only %s", got, b.name)
	}
	if got := p.do(t, "nodes"); got != "" {
		t.Fatalf("the plain node has links: %q", got)
	}
}

// A TLS configuration without a certificate would make Ergo listen in
// plain TCP: Start refuses it.
func TestTLSWithoutCertificateFailsAtStart(t *testing.T) {
	_, err := ergonode.Start("nocert@127.0.0.1", ergonode.Options{EPMDPort: epmd.Port, TLS: &tls.Config{}})
	if err == nil || !strings.Contains(err.Error(), "without a certificate") {
		t.Fatalf("err %v", err)
	}
}

// Garbage and wrong-cookie connections, which a stranger can make at
// will, produce a bounded number of log lines per cause, with a count of
// those held back, and none of Ergo's own.
func TestPeerTriggeredLogLinesAreThrottled(t *testing.T) {
	const garbage, wrong = 200, 20
	target := startChild(t, "loud_target@127.0.0.1", "c", "ERGONODE_TEST_LOGEVERY=1s")
	intruder := startChild(t, "loud_intruder@127.0.0.1", "not-c")
	for i := 0; i < garbage; i++ {
		s, err := net.DialTimeout("tcp", target.addr(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		// a length, then bytes that are no handshake message
		b := make([]byte, 2+16)
		binary.BigEndian.PutUint16(b, 16)
		copy(b[2:], "GET / HTTP/1.0\r\n")
		_, _ = s.Write(b)
		_ = s.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, _ = io.Copy(io.Discard, s) // until the node closes it
		s.Close()
	}
	for i := 0; i < wrong; i++ {
		if ok, _, msg := intruder.connect(t, target.name); ok || !strings.Contains(msg, "cookie") {
			t.Fatalf("wrong cookie: ok %v: %s", ok, msg)
		}
	}
	testenv.WaitFor(t, 15*time.Second, "a summary with a count", func() bool { return target.log.has("more like this") })
	// The last 1 s windows end, their summaries written: the bound below
	// holds all along.
	testenv.HoldsUntil(time.Now().Add(1500*time.Millisecond), func() bool { return len(target.log.lines()) <= 12 })
	lines := target.log.lines()
	t.Logf("%d garbage and %d wrong-cookie connections: %d log lines:\n%s", garbage, wrong, len(lines), strings.Join(lines, "\n"))
	for _, l := range lines {
		if strings.Contains(l, "WARNING!") {
			t.Fatalf("Ergo's own line: %s", l)
		}
	}
	// per cause: the first line and one summary per 1 s window; the
	// causes are garbage and wrong cookie, a few windows each
	if len(lines) > 12 {
		t.Fatalf("%d lines for %d bad connections", len(lines), garbage+wrong)
	}
	if ils := intruder.log.lines(); len(ils) > 12 {
		t.Fatalf("the intruder logged %d lines for %d refused dials:\n%s", len(ils), wrong, strings.Join(ils, "\n"))
	}
}

type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

var serial int64 = 1

func newCA(t *testing.T, name string) *ca {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &ca{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue writes ca.pem, cert.pem and key.pem into dir: a certificate for
// 127.0.0.1, usable by a server and a client.
func (c *ca) issue(t *testing.T, dir string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"ca.pem":   c.pem,
		"cert.pem": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		"key.pem":  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}),
	}
	for n, b := range files {
		if err := os.WriteFile(filepath.Join(dir, n), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// An incoming handshake is bounded: a silent socket is closed by the node
// once AcceptTimeout has passed, never before; and past
// MaxPendingHandshakes the oldest pending sockets are dropped for new
// ones, so a peer still gets in.
func TestIncomingHandshakeDeadlineAndCap(t *testing.T) {
	const accept, capN, idle = 500 * time.Millisecond, 8, 40
	target := startChild(t, "bounded_target@127.0.0.1", "c", "ERGONODE_TEST_ACCEPT="+accept.String())
	// A deadline far away: what closes a socket there is the cap.
	capped := startChild(t, "capped_target@127.0.0.1", "c", "ERGONODE_TEST_ACCEPT=60s", fmt.Sprintf("ERGONODE_TEST_PENDING=%d", capN))
	peer := startChild(t, "bounded_peer@127.0.0.1", "c")

	// The deadline.
	s, err := net.DialTimeout("tcp", target.addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	_ = s.SetReadDeadline(t0.Add(30 * time.Second))
	var b [1]byte
	_, err = s.Read(b[:])
	held := time.Since(t0)
	s.Close()
	if err != io.EOF || held < accept-50*time.Millisecond {
		t.Fatalf("silent socket: %v after %s, want EOF after %s", err, held, accept)
	}

	// The cap: of idle silent sockets, only the newest capN stay pending.
	socks := make([]net.Conn, 0, idle)
	defer func() {
		for _, s := range socks {
			s.Close()
		}
	}()
	for i := 0; i < idle; i++ {
		s, err := net.DialTimeout("tcp", capped.addr(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		socks = append(socks, s)
	}
	dropped := 0
	for _, s := range socks[:idle-capN] {
		_ = s.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := s.Read(b[:]); err == io.EOF {
			dropped++
		}
	}
	if dropped != idle-capN {
		t.Fatalf("%d of the oldest %d sockets dropped, want all (cap %d)", dropped, idle-capN, capN)
	}
	// The newest stay pending.
	for _, s := range socks[idle-capN:] {
		_ = s.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		if _, err := s.Read(b[:]); !isTimeout(err) {
			t.Fatalf("a socket within the cap: %v, want it still open", err)
		}
	}
	if ok, _, msg := peer.connect(t, capped.name); !ok {
		t.Fatalf("connect past the cap: %s", msg)
	}
	t.Logf("silent socket closed after %s (deadline %s); %d of %d idle sockets dropped at once (cap %d)",
		held.Round(time.Millisecond), accept, dropped, idle, capN)
}
