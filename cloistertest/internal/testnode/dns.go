package main

import (
	"context"
	"errors"
	"net"
	"sort"
	"strings"
	"sync"
)

// dnsRecorder makes every DNS lookup of the process visible: recordDNS
// replaces net.DefaultResolver with Go's own resolver dialling through it,
// which reads the question name of every query and refuses to send the
// queries for blocked names. Tests use it to assert at run time that
// Ergo's anonymous metrics (a TXT lookup of metrics.ergo.services, then
// UDP to it, 60 s after start) stay off: the lookup is the first thing the
// call-home does, and with this in place it would be both recorded and
// stopped. The test node's -record-dns flag installs it and reports on
// /debug/runtime.
type dnsRecorder struct {
	mu      sync.Mutex
	seen    map[string]bool
	blocked map[string]bool
	hits    map[string]bool // blocked names that were asked for
}

// errDNSBlocked is the error of a query for a blocked name.
var errDNSBlocked = errors.New("testnode: DNS query blocked")

// metricsHost is the host Ergo's anonymous metrics look up and send to.
const metricsHost = "metrics.ergo.services"

// recordDNS installs the recorder for the whole process; queries for the
// blocked names never leave it. Call it before starting anything that may
// resolve names.
func recordDNS(blocked ...string) *dnsRecorder {
	r := &dnsRecorder{seen: map[string]bool{}, blocked: map[string]bool{}, hits: map[string]bool{}}
	for _, b := range blocked {
		r.blocked[strings.ToLower(strings.TrimSuffix(b, "."))] = true
	}
	var d net.Dialer
	net.DefaultResolver = &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, address)
			if err != nil {
				return nil, err
			}
			// Go's resolver frames by the conn's type: a PacketConn
			// gets bare messages, anything else 2-byte lengths.
			if u, ok := c.(*net.UDPConn); ok {
				return &dnsPacketConn{UDPConn: u, r: r}, nil
			}
			return &dnsConn{Conn: c, r: r}, nil
		},
	}
	return r
}

// note records a query name and says whether it may be sent.
func (r *dnsRecorder) note(name string) bool {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.seen) < 10000 {
		r.seen[name] = true
	}
	if r.blocked[name] {
		r.hits[name] = true
		return false
	}
	return true
}

// Lookups lists the names looked up, and the blocked ones asked for.
func (r *dnsRecorder) Lookups() (all, blocked []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for n := range r.seen {
		all = append(all, n)
	}
	for n := range r.hits {
		blocked = append(blocked, n)
	}
	sort.Strings(all)
	sort.Strings(blocked)
	return all, blocked
}

// dnsConn is a stream (TCP) DNS connection: 2-byte length, message.
type dnsConn struct {
	net.Conn
	r *dnsRecorder
}

func (c *dnsConn) Write(b []byte) (int, error) {
	if len(b) >= 2 {
		if name, ok := questionName(b[2:]); ok && !c.r.note(name) {
			return 0, errDNSBlocked
		}
	}
	return c.Conn.Write(b)
}

// dnsPacketConn is a UDP DNS connection: one message per write.
type dnsPacketConn struct {
	*net.UDPConn
	r *dnsRecorder
}

func (c *dnsPacketConn) Write(b []byte) (int, error) {
	if name, ok := questionName(b); ok && !c.r.note(name) {
		return 0, errDNSBlocked
	}
	return c.UDPConn.Write(b)
}

// questionName reads the first question's name of a DNS message.
func questionName(m []byte) (string, bool) {
	if len(m) < 13 {
		return "", false
	}
	var labels []string
	for i := 12; i < len(m); {
		l := int(m[i])
		if l == 0 {
			return strings.Join(labels, "."), len(labels) > 0
		}
		if l > 63 || i+1+l > len(m) {
			return "", false
		}
		labels = append(labels, string(m[i+1:i+1+l]))
		i += 1 + l
	}
	return "", false
}
