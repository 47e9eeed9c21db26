package discovery

import (
	"context"
	"errors"
	"log"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// DefaultInterval is the Watcher's re-resolve period when Interval is zero.
const DefaultInterval = time.Second

// Watcher re-resolves a service name at Interval and reports the peer set: the
// node names behind the name, plus every node it reported before that is still
// connected. An answer that omits a connected node (a DNS server lagging behind,
// a container between health checks) never drops it; it goes once it is both
// missing from DNS and disconnected.
type Watcher struct {
	// Resolver asks DNS; nil means the system resolver.
	Resolver *Resolver
	// Service is the name to resolve.
	Service string
	// OTPApp is the node name prefix: peers are "OTPApp@<ip>".
	OTPApp string
	// Interval between lookups; zero means DefaultInterval.
	Interval time.Duration
	// Connected returns the node names this node is connected to now. It is
	// called from Run's goroutine, only when an answer omits a reported peer.
	// nil means none is connected.
	Connected func() []string
	// Logf logs failures and recoveries; nil means log.Printf.
	Logf func(format string, args ...any)
	// Kick, when set, makes Run resolve at once each time it receives
	// (the Monitor kicks when a peer's link drops: a killed container's
	// address leaves the service's DNS answer at once).
	Kick <-chan struct{}
}

// Run resolves at once and then every Interval until ctx is done. It calls out,
// on Run's own goroutine, with the first answer and then on every change of the
// peer set; out owns the slice it gets. The set is sorted by name then address,
// and includes this node when its address is behind the name.
//
// NXDOMAIN (ErrNotFound) is an answer: the set becomes the connected peers only,
// possibly empty. Any other failure (timeout, server failure) keeps the set as
// it was. Each distinct failure is logged once, not on every tick, and recovery
// is logged too.
func (w *Watcher) Run(ctx context.Context, out func(peers []string)) {
	interval := w.Interval
	if interval <= 0 {
		interval = DefaultInterval
	}
	logf := w.Logf
	if logf == nil {
		logf = log.Printf
	}
	res := w.Resolver
	if res == nil {
		res = &Resolver{}
	}

	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	var (
		current  []string
		reported bool
		lastErr  string // the failure logged last; "" once lookups succeed again
	)
	for {
		addrs, err := res.Lookup(ctx, w.Service)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			if msg := err.Error(); msg != lastErr {
				logf("%s; retrying every %s", msg, interval)
				lastErr = msg
			}
		} else if lastErr != "" {
			logf("discovery: service %q resolves again: %d IPv4 addresses", w.Service, len(addrs))
			lastErr = ""
		}
		if err == nil || errors.Is(err, ErrNotFound) {
			next := w.merge(current, Peers(w.OTPApp, addrs))
			if !reported || !slices.Equal(next, current) {
				current, reported = next, true
				out(slices.Clone(current))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		case <-w.Kick:
		}
	}
}

// merge returns resolved plus the members of prev that are missing from it but
// still connected, sorted.
func (w *Watcher) merge(prev, resolved []string) []string {
	next := slices.Clone(resolved)
	var connected []string
	asked := false
	for _, p := range prev {
		if slices.Contains(resolved, p) {
			continue
		}
		if !asked && w.Connected != nil {
			connected, asked = w.Connected(), true
		}
		if slices.Contains(connected, p) {
			next = append(next, p)
		}
	}
	slices.SortFunc(next, compareNodes)
	return slices.Compact(next)
}

// compareNodes orders node names by name, then by host, comparing hosts as IP
// addresses when both are, so "a@10.0.0.9" sorts before "a@10.0.0.10".
func compareNodes(a, b string) int {
	an, ah, _ := strings.Cut(a, "@")
	bn, bh, _ := strings.Cut(b, "@")
	if c := strings.Compare(an, bn); c != 0 {
		return c
	}
	aip, aerr := netip.ParseAddr(ah)
	bip, berr := netip.ParseAddr(bh)
	if aerr == nil && berr == nil {
		return aip.Compare(bip)
	}
	return strings.Compare(ah, bh)
}
