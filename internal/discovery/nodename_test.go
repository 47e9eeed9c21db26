package discovery

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

// fixedAddrs stands in for this host's interface addresses.
func fixedAddrs(ss ...string) func() ([]netip.Addr, error) {
	return func() ([]netip.Addr, error) {
		out := make([]netip.Addr, len(ss))
		for i, s := range ss {
			out[i] = netip.MustParseAddr(s)
		}
		return out, nil
	}
}

func TestNodeNameWaitsUntilOwnAddressIsInDNS(t *testing.T) {
	s := startDNS(t)
	s.set(t, "web.cloister.test", "A 10.9.0.5")
	var logs logLines
	// Two lookups without our address have passed when the third query comes.
	s.setAfter(t, 3, "web.cloister.test", "A 10.9.0.5", "A 10.9.0.7")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got, err := NodeName(ctx, NameOptions{
		OTPApp:     "app",
		Service:    "web.cloister.test",
		Magic:      true,
		LocalAddrs: fixedAddrs("fe80::1", "192.0.2.50", "10.9.0.7"),
		Resolver:   &Resolver{Server: s.addr},
		Logf:       logs.logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	if got != "app@10.9.0.7" {
		t.Fatalf("NodeName = %q, want app@10.9.0.7", got)
	}
	waits := logs.matching("waiting")
	if len(waits) < 2 || !strings.Contains(waits[0], "waiting 50ms") || !strings.Contains(waits[1], "waiting 100ms") {
		t.Fatalf("wait log lines = %q; want one per growing wait, from 50ms", waits)
	}
	for _, want := range []string{`"web.cloister.test"`, "10.9.0.7", "[10.9.0.5]"} {
		if !strings.Contains(waits[0], want) {
			t.Errorf("wait log line %q does not mention %s", waits[0], want)
		}
	}
}

func TestNodeNameWaitsThroughNXDOMAIN(t *testing.T) {
	s := startDNS(t)
	s.setAfter(t, 2, "web.cloister.test", "A 10.9.0.7")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got, err := NodeName(ctx, NameOptions{
		OTPApp: "app", Service: "web.cloister.test", Magic: true,
		LocalAddrs: fixedAddrs("10.9.0.7"), Resolver: &Resolver{Server: s.addr}, Logf: t.Logf,
	})
	if err != nil || got != "app@10.9.0.7" {
		t.Fatalf("NodeName = %q, %v; want app@10.9.0.7", got, err)
	}
}

func TestNodeNameDeadlineNamesServiceAndLocalAddresses(t *testing.T) {
	for _, tc := range []struct {
		name       string
		zone       []string // records of the service; none = NXDOMAIN
		notFound   bool
		wantAnswer []netip.Addr
	}{
		{name: "answer without this host", zone: []string{"A 10.9.0.5"}, wantAnswer: addrs(t, "10.9.0.5")},
		{name: "NXDOMAIN", notFound: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startDNS(t)
			if tc.zone != nil {
				s.set(t, "web.cloister.test", tc.zone...)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			got, err := NodeName(ctx, NameOptions{
				OTPApp: "app", Service: "web.cloister.test", Magic: true,
				LocalAddrs: fixedAddrs("10.9.0.7", "192.0.2.50"), Resolver: &Resolver{Server: s.addr}, Logf: t.Logf,
			})
			if err == nil {
				t.Fatalf("NodeName = %q, want an error", got)
			}
			t.Log(err)
			for _, want := range []string{`"web.cloister.test"`, "10.9.0.7", "192.0.2.50"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %s", err, want)
				}
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("error %v is not context.DeadlineExceeded", err)
			}
			if errors.Is(err, ErrNotFound) != tc.notFound {
				t.Errorf("errors.Is(%v, ErrNotFound) = %v, want %v", err, !tc.notFound, tc.notFound)
			}
			var ne *NameError
			if !errors.As(err, &ne) || !slices.Equal(ne.Answer, tc.wantAnswer) {
				t.Errorf("error %#v: want a *NameError with last answer %v", err, tc.wantAnswer)
			}
		})
	}
}

func TestNodeNameDeadlineReportsLookupThatNeverAnswered(t *testing.T) {
	for _, tc := range []struct {
		name     string
		setup    func(s *testDNS)
		notFound bool // the error should carry the earlier NXDOMAIN
	}{
		// A lookup cut short by the deadline is all there is: report it.
		{name: "silent from the start", setup: func(s *testDNS) { s.silence("web.cloister.test") }},
		// It tells less than the NXDOMAIN answers before it: report those.
		{name: "NXDOMAIN then silent", notFound: true, setup: func(s *testDNS) {
			s.after(t, 2, "web.cloister.test", func() { s.silence("web.cloister.test") })
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startDNS(t)
			tc.setup(s)
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			_, err := NodeName(ctx, NameOptions{
				OTPApp: "app", Service: "web.cloister.test", Magic: true,
				LocalAddrs: fixedAddrs("10.9.0.7"), Resolver: &Resolver{Server: s.addr, Timeout: time.Minute}, Logf: t.Logf,
			})
			t.Log(err)
			var ne *NameError
			if !errors.As(err, &ne) || ne.LastLookup == nil {
				t.Fatalf("error %#v: want a *NameError carrying the last lookup's error", err)
			}
			if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrNotFound) != tc.notFound {
				t.Errorf("error %v: Is DeadlineExceeded = %v, Is ErrNotFound = %v; want true, %v", err,
					errors.Is(err, context.DeadlineExceeded), errors.Is(err, ErrNotFound), tc.notFound)
			}
		})
	}
}

func TestNodeNameUsesHostAddrsByDefault(t *testing.T) {
	host, err := HostAddrs()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(host, netip.MustParseAddr("127.0.0.1")) {
		t.Skipf("this host has no 127.0.0.1 interface address (has %v)", host)
	}
	s := startDNS(t)
	s.set(t, "web.cloister.test", "A 203.0.113.9", "A 127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got, err := NodeName(ctx, NameOptions{
		OTPApp: "app", Service: "web.cloister.test", Magic: true, Resolver: &Resolver{Server: s.addr}, Logf: t.Logf,
	})
	if err != nil || got != "app@127.0.0.1" {
		t.Fatalf("NodeName = %q, %v; want app@127.0.0.1", got, err)
	}
}

func TestNodeNameMagicFalseReturnsGiven(t *testing.T) {
	got, err := NodeName(context.Background(), NameOptions{
		OTPApp: "app", Service: "web.cloister.test", Loopback: true, Magic: false, Given: "shop@db1.example",
	})
	if err != nil || got != "shop@db1.example" {
		t.Fatalf("NodeName = %q, %v; want the given name", got, err)
	}
}

func TestNodeNameLoopback(t *testing.T) {
	// No resolver and no service: loopback mode must not ask DNS.
	got, err := NodeName(context.Background(), NameOptions{OTPApp: "app", Loopback: true, Magic: true})
	if err != nil || got != "app@127.0.0.1" {
		t.Fatalf("NodeName = %q, %v; want app@127.0.0.1", got, err)
	}
}

func TestNodeNameRejectsMalformedGiven(t *testing.T) {
	for _, given := range []string{"", "app", "app@", "@host", "a@b@c", "@"} {
		got, err := NodeName(context.Background(), NameOptions{Given: given})
		if !errors.Is(err, ErrInvalidNodeName) || !strings.Contains(err.Error(), `"`+given+`"`) {
			t.Errorf("NodeName(Given %q) = %q, %v; want ErrInvalidNodeName naming it", given, got, err)
		}
	}
}

func TestNodeNameRejectsBadOTPApp(t *testing.T) {
	for _, app := range []string{"", "a@b"} {
		got, err := NodeName(context.Background(), NameOptions{OTPApp: app, Loopback: true, Magic: true})
		if !errors.Is(err, ErrInvalidNodeName) || !strings.Contains(err.Error(), `"`+app+`"`) {
			t.Errorf("NodeName(OTPApp %q) = %q, %v; want ErrInvalidNodeName naming it", app, got, err)
		}
	}
}

func TestNodeNameWithoutIPv4AddressFailsAtOnce(t *testing.T) {
	got, err := NodeName(context.Background(), NameOptions{ // no deadline: must not wait
		OTPApp: "app", Service: "web.cloister.test", Magic: true,
		LocalAddrs: fixedAddrs("fe80::1"), Resolver: &Resolver{Server: "127.0.0.1:1"},
	})
	if err == nil || !strings.Contains(err.Error(), "no IPv4 address") {
		t.Fatalf("NodeName = %q, %v; want an error about no IPv4 address", got, err)
	}
}
