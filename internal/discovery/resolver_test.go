package discovery

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func addrs(t *testing.T, ss ...string) []netip.Addr {
	t.Helper()
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParseAddr(s)
	}
	return out
}

func TestLookupReturnsSortedUniqueIPv4(t *testing.T) {
	s := startDNS(t)
	s.set(t, "web.cloister.test",
		"A 10.0.0.3", "A 10.0.0.10", "A 10.0.0.1", "A 10.0.0.3", "AAAA fd00::1", "A 10.0.0.2")
	r := &Resolver{Server: s.addr}

	got, err := r.Lookup(context.Background(), "web.cloister.test")
	if err != nil {
		t.Fatal(err)
	}
	want := addrs(t, "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.10")
	if !slices.Equal(got, want) {
		t.Fatalf("Lookup = %v, want %v", got, want)
	}
	if s.queriedTypes("web.cloister.test")[dns.TypeAAAA] {
		t.Error("Lookup asked for AAAA records; it should ask for A only")
	}
}

func TestLookupOfIPv6OnlyNameIsNotFound(t *testing.T) {
	s := startDNS(t)
	s.set(t, "v6.cloister.test", "AAAA fd00::1", "AAAA fd00::2")
	r := &Resolver{Server: s.addr}

	_, err := r.Lookup(context.Background(), "v6.cloister.test")
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("Lookup error = %v, want ErrNotFound", err)
	}
}

func TestLookupNXDOMAINIsErrNotFoundNamingTheService(t *testing.T) {
	s := startDNS(t)
	r := &Resolver{Server: s.addr}

	got, err := r.Lookup(context.Background(), "missing.cloister.test")
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("Lookup = %v, %v; want ErrNotFound", got, err)
	}
	var le *LookupError
	if !errors.As(err, &le) || le.Service != "missing.cloister.test" || le.Server != s.addr {
		t.Fatalf("error %#v: want a *LookupError for the service and server", err)
	}
	var dnsErr *net.DNSError
	if !errors.As(err, &dnsErr) {
		t.Errorf("error %v does not unwrap to the *net.DNSError", err)
	}
	for _, want := range []string{`"missing.cloister.test"`, s.addr, "not found"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
}

func TestLookupSRVResolvesEveryTarget(t *testing.T) {
	s := startDNS(t)
	const name = "_epmd._tcp.web.ns.svc.cluster.test"
	s.set(t, name,
		"SRV 0 50 4369 pod-b.web.ns.svc.cluster.test.",
		"SRV 0 50 4369 pod-a.web.ns.svc.cluster.test.",
		"SRV 0 50 4369 pod-a.web.ns.svc.cluster.test.",
		"SRV 0 50 4369 gone.web.ns.svc.cluster.test.") // NXDOMAIN: skipped
	s.set(t, "pod-a.web.ns.svc.cluster.test", "A 10.1.0.9", "A 10.1.0.1")
	s.set(t, "pod-b.web.ns.svc.cluster.test", "A 10.1.0.5", "A 10.1.0.1", "AAAA fd00::5")
	r := &Resolver{Server: s.addr, SRV: true}

	got, err := r.Lookup(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	want := addrs(t, "10.1.0.1", "10.1.0.5", "10.1.0.9")
	if !slices.Equal(got, want) {
		t.Fatalf("Lookup = %v, want %v", got, want)
	}
	if !s.queriedTypes(name)[dns.TypeSRV] {
		t.Error("no SRV query reached the server")
	}
}

func TestLookupSRVNotFound(t *testing.T) {
	s := startDNS(t)
	s.set(t, "_epmd._tcp.empty.cluster.test", "SRV 0 50 4369 gone.cluster.test.")
	r := &Resolver{Server: s.addr, SRV: true}

	for _, name := range []string{"_epmd._tcp.missing.cluster.test", "_epmd._tcp.empty.cluster.test"} {
		if _, err := r.Lookup(context.Background(), name); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), name) {
			t.Errorf("Lookup(%s) error = %v, want ErrNotFound naming the service", name, err)
		}
	}
}

func TestLookupSRVTargetFailureFailsTheAnswer(t *testing.T) {
	s := startDNS(t)
	const name = "_epmd._tcp.web.cluster.test"
	s.set(t, name, "SRV 0 50 4369 a.cluster.test.", "SRV 0 50 4369 b.cluster.test.")
	s.set(t, "a.cluster.test", "A 10.2.0.1")
	s.failWith("b.cluster.test", dns.RcodeServerFailure)
	r := &Resolver{Server: s.addr, SRV: true}

	got, err := r.Lookup(context.Background(), name)
	if err == nil || errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "b.cluster.test") {
		t.Fatalf("Lookup = %v, %v; want a failure naming target b.cluster.test, not a partial answer", got, err)
	}
}

func TestLookupLargeAnswerFallsBackToTCP(t *testing.T) {
	s := startDNS(t)
	var records []string
	var want []netip.Addr
	for i := range 200 { // 200 A records do not fit a UDP answer
		ip := fmt.Sprintf("10.3.%d.%d", i/100, i%100+1)
		records = append(records, "A "+ip)
		want = append(want, netip.MustParseAddr(ip))
	}
	s.set(t, "big.cloister.test", records...)
	r := &Resolver{Server: s.addr}

	got, err := r.Lookup(context.Background(), "big.cloister.test")
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(want, netip.Addr.Compare)
	if !slices.Equal(got, want) {
		t.Fatalf("Lookup returned %d addresses, want %d", len(got), len(want))
	}
	if s.count("big.cloister.test", "udp") == 0 || s.count("big.cloister.test", "tcp") == 0 {
		t.Fatalf("queries udp=%d tcp=%d; want a truncated UDP answer retried over TCP",
			s.count("big.cloister.test", "udp"), s.count("big.cloister.test", "tcp"))
	}
}

func TestLookupOfSilentServerTimesOutWithoutNotFound(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0") // reads nothing, answers nothing
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	r := &Resolver{Server: pc.LocalAddr().String(), Timeout: 100 * time.Millisecond}

	_, err = r.Lookup(context.Background(), "web.cloister.test")
	var le *LookupError
	if !errors.As(err, &le) || errors.Is(err, ErrNotFound) {
		t.Fatalf("Lookup error = %v, want a *LookupError that is not ErrNotFound", err)
	}
}

func TestLookupRejectsEmptyName(t *testing.T) {
	r := &Resolver{Server: "127.0.0.1:1"}
	if _, err := r.Lookup(context.Background(), ""); err == nil || errors.Is(err, ErrNotFound) {
		t.Fatalf("Lookup(\"\") error = %v, want an error that is not ErrNotFound", err)
	}
}

func TestPeersNamesSortsAndDedupes(t *testing.T) {
	got := Peers("app", addrs(t, "10.0.0.10", "10.0.0.9", "10.0.0.10"))
	want := []string{"app@10.0.0.9", "app@10.0.0.10"}
	if !slices.Equal(got, want) {
		t.Fatalf("Peers = %v, want %v", got, want)
	}
	if got := Peers("app", nil); len(got) != 0 {
		t.Fatalf("Peers(nil) = %v, want none", got)
	}
}
