package epmd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ergo-services/ergo/node"
)

func freePort(t *testing.T) uint16 {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

type lines struct {
	mu sync.Mutex
	l  []string
}

func (l *lines) logf(f string, a ...interface{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.l = append(l.l, strings.TrimSpace(fmt.Sprintf(f, a...)))
}

func (l *lines) all() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.l, "\n")
}

func TestRegistrarServesWhenNoEPMDAndPeersTakeOver(t *testing.T) {
	port := freePort(t)
	var la, lb lines
	a := &Registrar{Port: port, Logf: la.logf}
	ctxA, stopA := context.WithCancel(context.Background())
	defer stopA()
	if err := a.Register(ctxA, "a@127.0.0.1", node.RegisterOptions{Port: 15000, EnableTLS: true}); err != nil {
		t.Fatal(err)
	}
	if a.Serving() == nil || !strings.Contains(la.all(), "no EPMD was running at 127.0.0.1:"+strconv.Itoa(int(port))+"; serving EPMD in this process on 127.0.0.1:") {
		t.Fatalf("a: not serving, or no line saying so: %q", la.all())
	}
	b := &Registrar{Port: port, Logf: lb.logf}
	ctxB, stopB := context.WithCancel(context.Background())
	defer stopB()
	if err := b.Register(ctxB, "b@127.0.0.1", node.RegisterOptions{Port: 15001}); err != nil {
		t.Fatal(err)
	}
	if b.Serving() != nil || !strings.Contains(lb.all(), "registered with the EPMD at 127.0.0.1:") {
		t.Fatalf("b should use a's EPMD: %q", lb.all())
	}
	r, err := b.Resolve("a@127.0.0.1")
	if err != nil || r.Port != 15000 || !r.Options.IsErgo || r.Options.TLS == nil || r.Host != "127.0.0.1" {
		t.Fatalf("resolve a: %+v %v", r, err)
	}
	if r, err := a.Resolve("b@127.0.0.1"); err != nil || r.Port != 15001 || r.Options.TLS != nil {
		t.Fatalf("resolve b: %+v %v", r, err)
	}
	// A second registration of a live name fails with a clear error.
	c := &Registrar{Port: port, Mode: ClientOnly, Logf: t.Logf}
	if err := c.Register(context.Background(), "b@127.0.0.1", node.RegisterOptions{Port: 1}); err == nil || !strings.Contains(err.Error(), "name refused") {
		t.Fatalf("duplicate registration: %v", err)
	}
	// a's process ends: its EPMD goes, b serves one and re-registers.
	stopA()
	deadline := time.Now().Add(20 * time.Second)
	for b.Serving() == nil || !strings.Contains(lb.all(), "registered again") {
		if time.Now().After(deadline) {
			t.Fatalf("b did not take over: %q", lb.all())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if r, err := b.Resolve("b@127.0.0.1"); err != nil || r.Port != 15001 {
		t.Fatalf("b after taking over: %+v %v", r, err)
	}
	if _, err := b.Resolve("a@127.0.0.1"); !errors.Is(err, ErrNotRegistered) {
		t.Fatalf("a still known: %v", err)
	}
	stopB()
	deadline = time.Now().Add(10 * time.Second)
	for b.Serving() != nil {
		if time.Now().After(deadline) {
			t.Fatal("b's EPMD not stopped with its node")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestClientOnlyFailsFastWithoutEPMD(t *testing.T) {
	port := freePort(t)
	r := &Registrar{Port: port, Mode: ClientOnly}
	err := r.Register(context.Background(), "a@127.0.0.1", node.RegisterOptions{Port: 1})
	if err == nil || !strings.Contains(err.Error(), "cannot reach the EPMD at 127.0.0.1:"+strconv.Itoa(int(port))) {
		t.Fatalf("want a clear error, got %v", err)
	}
	if c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(int(port)), time.Second); err == nil {
		c.Close()
		t.Fatal("a client-only registrar served EPMD")
	}
}

func TestPortFromEnv(t *testing.T) {
	t.Setenv("ERL_EPMD_PORT", "")
	if p, err := PortFromEnv(); p != 4369 || err != nil {
		t.Fatalf("unset: %d %v", p, err)
	}
	t.Setenv("ERL_EPMD_PORT", "24370")
	if p, err := PortFromEnv(); p != 24370 || err != nil {
		t.Fatalf("24370: %d %v", p, err)
	}
	for _, bad := range []string{"x", "0", "70000", "-1"} {
		t.Setenv("ERL_EPMD_PORT", bad)
		if _, err := PortFromEnv(); err == nil || !strings.Contains(err.Error(), "ERL_EPMD_PORT") {
			t.Fatalf("%q: %v", bad, err)
		}
		r := &Registrar{}
		if err := r.Register(context.Background(), "a@127.0.0.1", node.RegisterOptions{Port: 1}); err == nil || !strings.Contains(err.Error(), "ERL_EPMD_PORT") {
			t.Fatalf("Register with ERL_EPMD_PORT=%q: %v", bad, err)
		}
	}
	// The registrar follows the variable.
	port := freePort(t)
	t.Setenv("ERL_EPMD_PORT", strconv.Itoa(int(port)))
	s := &Server{Logf: t.Logf}
	if err := s.Listen("127.0.0.1:" + strconv.Itoa(int(port))); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := &Registrar{Mode: ClientOnly, Logf: t.Logf}
	if err := r.Register(ctx, "envnode@127.0.0.1", node.RegisterOptions{Port: 1234}); err != nil {
		t.Fatal(err)
	}
	if n := s.Names(); len(n) != 1 || n[0] != (NameEntry{"envnode", 1234}) {
		t.Fatalf("names at $ERL_EPMD_PORT: %v", n)
	}
}

func TestRegistrarRejectsBadNames(t *testing.T) {
	for _, name := range []string{"noat", "@h", "n@", "a\nb@h", strings.Repeat("n", MaxNameLen+1) + "@h"} {
		r := &Registrar{Port: freePort(t), Mode: ClientOnly}
		if err := r.Register(context.Background(), name, node.RegisterOptions{Port: 1}); err == nil {
			t.Errorf("%q accepted", name)
		}
	}
}
