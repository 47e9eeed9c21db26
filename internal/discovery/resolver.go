// Package discovery finds cluster peers behind a DNS service name (Docker compose
// service, Kubernetes headless service) and names this node before Ergo starts
// (the original's "Docker friendly" mode). It knows nothing about Ergo: it deals in IPv4 addresses and node name
// strings of the form "otpapp@<ip>".
package discovery

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"
)

// DefaultTimeout bounds one DNS lookup when Resolver.Timeout is zero.
const DefaultTimeout = 2 * time.Second

// ErrNotFound reports that a service name has no IPv4 address: NXDOMAIN, an empty
// answer, or (SRV) no target with an IPv4 address. Test with errors.Is.
var ErrNotFound = errors.New("discovery: service not found")

// LookupError is the error of Resolver.Lookup. It matches ErrNotFound under
// errors.Is when the name has no IPv4 address, and unwraps to the resolver's
// error (often a *net.DNSError).
type LookupError struct {
	Service  string // the name looked up
	Server   string // the DNS server asked; "" for the system resolver
	NotFound bool   // the answer said there is no address (rather than: no answer)
	Err      error  // the underlying cause
}

func (e *LookupError) Error() string {
	via := "the system resolver"
	if e.Server != "" {
		via = e.Server
	}
	// A *net.DNSError names the nameserver from resolv.conf even when our Dial sent
	// the query elsewhere, so show only its cause.
	cause := e.Err.Error()
	var dnsErr *net.DNSError
	if errors.As(e.Err, &dnsErr) {
		cause = dnsErr.Err
	}
	if e.NotFound {
		return fmt.Sprintf("discovery: service %q not found via %s: %s", e.Service, via, cause)
	}
	return fmt.Sprintf("discovery: lookup of service %q via %s failed: %s", e.Service, via, cause)
}

// Is makes errors.Is(err, ErrNotFound) true for a not-found answer.
func (e *LookupError) Is(target error) bool { return e.NotFound && target == ErrNotFound }

// Unwrap returns the underlying cause.
func (e *LookupError) Unwrap() error { return e.Err }

// Resolver looks up the IPv4 addresses behind a service name. The zero value uses
// the system resolver. It is safe for concurrent use.
type Resolver struct {
	// Server is the DNS server to ask, "host:port" (port 53 if omitted), over UDP
	// and, for truncated answers, TCP. "" uses the system resolver.
	Server string
	// Timeout bounds each DNS lookup; zero means DefaultTimeout.
	Timeout time.Duration
	// SRV makes Lookup query SRV records for the name (as a Kubernetes headless
	// service publishes under "_port._tcp.svc.ns.svc.cluster.local") and resolve
	// each target to its A records, instead of querying A records directly.
	SRV bool
}

// Lookup returns the IPv4 addresses behind service, sorted and without
// duplicates; IPv6 addresses are ignored. An error is a *LookupError; when the
// name has no IPv4 address it matches ErrNotFound.
func (r *Resolver) Lookup(ctx context.Context, service string) ([]netip.Addr, error) {
	if service == "" {
		return nil, r.lookupError(service, false, errors.New("empty service name"))
	}
	res := r.netResolver()
	var (
		addrs []netip.Addr
		err   error
	)
	if r.SRV {
		addrs, err = r.lookupSRV(ctx, res, service)
	} else {
		addrs, err = r.lookupA(ctx, res, service)
	}
	if err != nil {
		return nil, r.lookupError(service, isNotFound(err), err)
	}
	addrs = normalize(addrs)
	if len(addrs) == 0 {
		return nil, r.lookupError(service, true, errors.New("no IPv4 address in the answer"))
	}
	return addrs, nil
}

func (r *Resolver) lookupError(service string, notFound bool, err error) *LookupError {
	return &LookupError{Service: service, Server: r.Server, NotFound: notFound, Err: err}
}

func (r *Resolver) timeout() time.Duration {
	if r.Timeout > 0 {
		return r.Timeout
	}
	return DefaultTimeout
}

// netResolver builds the net.Resolver for Server. It is cheap, so it is built per
// call rather than cached, which keeps the exported fields freely assignable.
func (r *Resolver) netResolver() *net.Resolver {
	if r.Server == "" {
		return net.DefaultResolver
	}
	server := r.Server
	if _, _, err := net.SplitHostPort(server); err != nil {
		server = net.JoinHostPort(server, "53")
	}
	return &net.Resolver{
		PreferGo: true,
		// The Go resolver picks the network: "udp" first, "tcp" when the answer
		// is truncated. Only the address is replaced.
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, server)
		},
	}
}

func (r *Resolver) lookupA(ctx context.Context, res *net.Resolver, name string) ([]netip.Addr, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout())
	defer cancel()
	return res.LookupNetIP(ctx, "ip4", name)
}

func (r *Resolver) lookupSRV(ctx context.Context, res *net.Resolver, name string) ([]netip.Addr, error) {
	qctx, cancel := context.WithTimeout(ctx, r.timeout())
	_, srvs, err := res.LookupSRV(qctx, "", "", name)
	cancel()
	// With some malformed targets the resolver returns the good records and an
	// error; use the good ones.
	if err != nil && len(srvs) == 0 {
		return nil, err
	}
	targets := make([]string, 0, len(srvs))
	for _, s := range srvs {
		targets = append(targets, s.Target)
	}
	slices.Sort(targets)
	targets = slices.Compact(targets)

	var addrs []netip.Addr
	for _, t := range targets {
		a, err := r.lookupA(ctx, res, t)
		if isNotFound(err) {
			continue // a target that went away between the two queries
		}
		if err != nil {
			// Fail the whole answer rather than return a partial peer set.
			return nil, fmt.Errorf("SRV target %s: %w", t, err)
		}
		addrs = append(addrs, a...)
	}
	return addrs, nil
}

func isNotFound(err error) bool {
	var dnsErr *net.DNSError
	return errors.As(err, &dnsErr) && dnsErr.IsNotFound
}

// normalize keeps the IPv4 addresses (unmapping IPv4-in-IPv6), sorted and unique.
func normalize(addrs []netip.Addr) []netip.Addr {
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		if a = a.Unmap(); a.Is4() {
			out = append(out, a)
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}

// Peers turns addresses into node names "otpApp@<ip>", in address order and
// without duplicates.
func Peers(otpApp string, addrs []netip.Addr) []string {
	sorted := slices.Clone(addrs)
	slices.SortFunc(sorted, netip.Addr.Compare)
	sorted = slices.Compact(sorted)
	names := make([]string, len(sorted))
	for i, a := range sorted {
		names[i] = otpApp + "@" + a.String()
	}
	return names
}
