package discovery

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/cloister-go/cloister/internal/nodename"
)

// Backoff bounds of NodeName's wait for this host's address to appear in DNS.
const (
	NameBackoffMin = 50 * time.Millisecond
	NameBackoffMax = time.Second
)

// ErrInvalidNodeName reports a node name that is not "name@host", or an OTP app
// name that cannot prefix one. Test with errors.Is.
var ErrInvalidNodeName = nodename.ErrInvalid

// NameOptions says how NodeName names this node.
type NameOptions struct {
	// OTPApp is the node name prefix in service mode: "OTPApp@<ip>".
	OTPApp string
	// Service is the DNS name behind which this node's address appears.
	Service string
	// Loopback names the node "OTPApp@127.0.0.1" without asking DNS.
	Loopback bool
	// Magic derives the name; false returns Given unchanged (after validation),
	// whatever the other options say.
	Magic bool
	// Given is the name to use when Magic is false.
	Given string
	// LocalAddrs lists this host's addresses; nil means HostAddrs.
	LocalAddrs func() ([]netip.Addr, error)
	// Resolver asks DNS; nil means the system resolver.
	Resolver *Resolver
	// Logf logs the wait; nil means log.Printf.
	Logf func(string, ...any)
}

// NameError is NodeName's error when ctx ended before this host's address
// appeared behind the service. It unwraps to the context's error and to the
// last lookup error, so errors.Is(err, context.DeadlineExceeded) and
// errors.Is(err, ErrNotFound) work.
type NameError struct {
	Service    string       // the name resolved
	Local      []netip.Addr // this host's IPv4 addresses, one of which was looked for
	Answer     []netip.Addr // the last successful answer, nil if none
	LastLookup error        // the last lookup's error, nil if it succeeded
	Err        error        // the context's error
}

func (e *NameError) Error() string {
	if e.LastLookup != nil {
		return fmt.Sprintf("%v; none of this host's addresses %v appeared; gave up: %v", e.LastLookup, e.Local, e.Err)
	}
	return fmt.Sprintf("discovery: service %q answers %v, none of this host's addresses %v; gave up: %v",
		e.Service, e.Answer, e.Local, e.Err)
}

// Unwrap returns the context's error and the last lookup error.
func (e *NameError) Unwrap() []error {
	if e.LastLookup == nil {
		return []error{e.Err}
	}
	return []error{e.Err, e.LastLookup}
}

// ValidateNodeName checks name by the project's one rule (package
// nodename).
func ValidateNodeName(name string) error { return nodename.Check(name) }

// NodeName computes this node's name before Ergo starts.
//
// Magic false returns Given, validated. Loopback returns "OTPApp@127.0.0.1".
// Otherwise NodeName resolves Service until the answer contains one of this
// host's IPv4 addresses and returns "OTPApp@<that address>" (the lowest, if
// several). While it is absent it waits, NameBackoffMin doubling to
// NameBackoffMax, logging each time the wait grows; when ctx is done first it
// returns a *NameError naming the service and the addresses looked for.
func NodeName(ctx context.Context, o NameOptions) (string, error) {
	if !o.Magic {
		if err := ValidateNodeName(o.Given); err != nil {
			return "", err
		}
		return o.Given, nil
	}
	if o.OTPApp == "" || strings.Contains(o.OTPApp, "@") {
		return "", fmt.Errorf("%w: OTP app %q must be non-empty and contain no '@'", ErrInvalidNodeName, o.OTPApp)
	}
	if o.Loopback {
		return o.OTPApp + "@127.0.0.1", nil
	}
	if o.Service == "" {
		return "", errors.New("discovery: no service name to derive the node name from")
	}
	localAddrs := o.LocalAddrs
	if localAddrs == nil {
		localAddrs = HostAddrs
	}
	logf := o.Logf
	if logf == nil {
		logf = log.Printf
	}
	res := o.Resolver
	if res == nil {
		res = &Resolver{}
	}

	var (
		wait      time.Duration
		local     []netip.Addr
		answer    []netip.Addr // last successful answer
		lookupErr error        // last lookup's error
	)
	fail := func() (string, error) {
		return "", &NameError{Service: o.Service, Local: local, Answer: answer, LastLookup: lookupErr, Err: ctx.Err()}
	}
	for {
		all, err := localAddrs()
		if err != nil {
			return "", fmt.Errorf("discovery: listing this host's addresses: %w", err)
		}
		local = normalize(all)
		if len(local) == 0 {
			return "", fmt.Errorf("discovery: this host has no IPv4 address to find behind service %q (has %v)", o.Service, all)
		}

		addrs, err := res.Lookup(ctx, o.Service)
		switch {
		case err == nil:
			answer, lookupErr = addrs, nil
			for _, a := range addrs { // sorted, so the lowest match wins
				if _, found := slices.BinarySearchFunc(local, a, netip.Addr.Compare); found {
					return o.OTPApp + "@" + a.String(), nil
				}
			}
		case ctx.Err() == nil || (answer == nil && lookupErr == nil):
			// A lookup cut short by ctx tells nothing new, unless it is all there is.
			lookupErr = err
		}
		if ctx.Err() != nil {
			return fail()
		}

		if next := min(max(2*wait, NameBackoffMin), NameBackoffMax); next != wait {
			wait = next
			if err != nil {
				logf("%v; waiting %s for one of this host's addresses %v to appear", err, wait, local)
			} else {
				logf("discovery: service %q answers %v, none of this host's addresses %v; waiting %s",
					o.Service, addrs, local, wait)
			}
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return fail()
		case <-timer.C:
		}
	}
}

// HostAddrs returns the addresses of this host's network interfaces.
func HostAddrs() ([]netip.Addr, error) {
	ifAddrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	out := make([]netip.Addr, 0, len(ifAddrs))
	for _, ia := range ifAddrs {
		var ip net.IP
		switch v := ia.(type) {
		case *net.IPNet:
			ip = v.IP
		case *net.IPAddr:
			ip = v.IP
		}
		if a, ok := netip.AddrFromSlice(ip); ok {
			out = append(out, a.Unmap())
		}
	}
	return out, nil
}
