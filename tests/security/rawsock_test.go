package security

import (
	"encoding/binary"
	"fmt"
	"io"
	"math/rand"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cloister-go/cloister/cloistertest"
	"github.com/cloister-go/cloister/internal/localcluster"
	"github.com/cloister-go/cloister/internal/nodetest"
	"github.com/cloister-go/cloister/internal/testenv"
	"github.com/cloister-go/cloister/listener"
)

// distPort asks epmd (PORT_PLEASE2) for a node's distribution port.
func distPort(t *testing.T, epmd *testenv.EPMD, node string) int {
	t.Helper()
	c, err := net.DialTimeout("tcp", epmd.Addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	name := node[:strings.IndexByte(node, '@')]
	req := binary.BigEndian.AppendUint16(nil, uint16(1+len(name)))
	req = append(append(req, 122), name...)
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	resp := make([]byte, 4)
	if _, err := io.ReadFull(c, resp); err != nil || resp[0] != 119 || resp[1] != 0 {
		t.Fatalf("epmd PORT_PLEASE2 %s: % x %v", name, resp, err)
	}
	return int(binary.BigEndian.Uint16(resp[2:]))
}

// Unauthenticated sockets on the distribution port — garbage, absurd
// length prefixes, handshakes begun and abandoned, idle connections —
// cost a victim nothing lasting: the cluster stays ready with the same
// members, and once the sockets are gone its goroutines and open files
// are back where they were.
func TestRawSocketsOnTheDistributionPort(t *testing.T) {
	hh := cloistertest.NewT(t)
	names := localcluster.Names("rvictim", 2)
	var vs []*cloistertest.Node
	for _, n := range names {
		v, err := hh.Start(cloistertest.Spec{Name: n, Sentry: names, Consensus: 2})
		if err != nil {
			t.Fatal(err)
		}
		vs = append(vs, v)
	}
	ready := func(what string) {
		t.Helper()
		for _, v := range vs {
			if !v.Running() {
				t.Fatalf("%s: %s exited:\n%s", what, v.Name, localcluster.LastLines(v.LogTail(), 30))
			}
			if _, err := v.WaitStatus(30*time.Second, "ready with both", func(s listener.Snapshot) bool {
				return s.Ready() && reflect.DeepEqual(s.Members, names)
			}); err != nil {
				t.Fatalf("%s: %v", what, err)
			}
		}
	}
	for _, v := range vs {
		if e, err := v.WaitStarted(30 * time.Second); err != nil || e.Event != "started" {
			t.Fatalf("%s: %v %+v", v.Name, err, e)
		}
	}
	ready("start")
	victim := vs[0]
	addr := fmt.Sprintf("127.0.0.1:%d", distPort(t, hh.EPMD, victim.Name))
	base, err := nodetest.Runtime(victim.Node, true)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewSource(7))
	// Each attack opens its sockets, writes, holds them open a moment,
	// then closes them.
	attacks := []struct {
		name  string
		n     int
		bytes func() []byte
	}{
		{"idle", 50, func() []byte { return nil }},
		{"garbage", 200, func() []byte {
			b := make([]byte, 1+r.Intn(4096))
			r.Read(b)
			return b
		}},
		{"2-byte length 65535, then nothing", 50, func() []byte { return []byte{0xff, 0xff} }},
		{"4-byte length 4 GiB (TLS framing), then nothing", 50, func() []byte { return []byte{0xff, 0xff, 0xff, 0xff, 'N'} }},
		{"send_name of a node that never answers the challenge", 50, func() []byte {
			// 'N', flags (8), creation (4), name length (2), name
			name := fmt.Sprintf("ghost%d@127.0.0.1", r.Intn(1e6))
			b := []byte{'N', 0, 0, 0, 0, 0x0d, 0x07, 0xdf, 0x7d, 0, 0, 0, 1}
			b = binary.BigEndian.AppendUint16(b, uint16(len(name)))
			b = append(b, name...)
			return append(binary.BigEndian.AppendUint16(nil, uint16(len(b))), b...)
		}},
		{"old send_name 'n' with a 0-byte name", 50, func() []byte { return []byte{0, 7, 'n', 0, 6, 0, 0, 0, 0} }},
	}
	for _, a := range attacks {
		var conns []net.Conn
		for i := 0; i < a.n; i++ {
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Logf("%s: dial %d: %v", a.name, i, err)
				continue
			}
			conns = append(conns, c)
			if b := a.bytes(); b != nil {
				_ = c.SetWriteDeadline(time.Now().Add(time.Second))
				_, _ = c.Write(b)
			}
		}
		time.Sleep(200 * time.Millisecond)
		for _, c := range conns {
			c.Close()
		}
		ready(a.name)
		t.Logf("%s: %d sockets; cluster still ready", a.name, len(conns))
	}
	// Ergo's handshake gives up on a silent socket after 5 s: after that,
	// nothing the sockets caused may remain.
	var after nodetest.RuntimeStats
	if !testenv.PollInterval(60*time.Second, 500*time.Millisecond, func() bool { // a garbage collection per check
		if after, err = nodetest.Runtime(victim.Node, true); err != nil {
			t.Fatal(err)
		}
		return after.Goroutines <= base.Goroutines+5 && after.FDs <= base.FDs+3
	}) {
		t.Fatalf("goroutines %d -> %d, fds %d -> %d: the sockets left something behind", base.Goroutines, after.Goroutines, base.FDs, after.FDs)
	}
	t.Logf("goroutines %d -> %d, fds %d -> %d, heap %.1f -> %.1f MiB", base.Goroutines, after.Goroutines, base.FDs, after.FDs, mib(base.HeapInuse), mib(after.HeapInuse))
	ready("after")
}
