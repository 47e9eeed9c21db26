package discovery

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/cloister-go/cloister/internal/testenv"
)

// testDNS is a real DNS server on 127.0.0.1 (UDP and TCP on one port) serving an
// in-memory zone that tests change while it runs.
type testDNS struct {
	addr string

	mu      sync.Mutex
	zone    map[string][]dns.RR // canonical name -> records; absent = NXDOMAIN
	rcode   map[string]int      // canonical name -> forced response code
	silent  map[string]bool     // canonical name -> queries get no reply
	queries []testQuery
}

type testQuery struct {
	name    string
	qtype   uint16
	network string // "udp" or "tcp"
}

// startDNS starts the server and stops it when the test ends.
func startDNS(t *testing.T) *testDNS {
	t.Helper()
	s := &testDNS{zone: map[string][]dns.RR{}, rcode: map[string]int{}, silent: map[string]bool{}}
	pc, l := listenPair(t)
	s.addr = pc.LocalAddr().String()
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: s}, {Listener: l, Handler: s}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go func() { _ = srv.ActivateAndServe() }()
		<-started
		t.Cleanup(func() { _ = srv.Shutdown() })
	}
	return s
}

// listenPair binds UDP and TCP on the same random 127.0.0.1 port.
func listenPair(t *testing.T) (net.PacketConn, net.Listener) {
	t.Helper()
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, l
		}
		pc.Close() // the TCP port is taken; try another
	}
	t.Fatal("no 127.0.0.1 port free for both UDP and TCP")
	return nil, nil
}

// set replaces the records of name; each record is "TYPE RDATA", e.g. "A 10.0.0.1".
func (s *testDNS) set(t *testing.T, name string, records ...string) {
	t.Helper()
	s.put(name, parseRecords(t, name, records...))
}

// setAfter does what set does once the server has seen n queries for name.
func (s *testDNS) setAfter(t *testing.T, n int, name string, records ...string) {
	t.Helper()
	rrs := parseRecords(t, name, records...)
	s.after(t, n, name, func() { s.put(name, rrs) })
}

// after runs change once the server has seen n queries for name. It returns at
// once; the wait runs in the background and stops when the test ends.
func (s *testDNS) after(t *testing.T, n int, name string, change func()) {
	stop, done := make(chan struct{}), make(chan struct{})
	t.Cleanup(func() { close(stop); <-done })
	go func() {
		defer close(done)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for s.count(name, "") < n {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
		change()
	}()
}

func parseRecords(t *testing.T, name string, records ...string) []dns.RR {
	t.Helper()
	rrs := make([]dns.RR, 0, len(records))
	for _, r := range records {
		rr, err := dns.NewRR(dns.Fqdn(name) + " 0 IN " + r)
		if err != nil {
			t.Fatalf("record %q: %v", r, err)
		}
		rrs = append(rrs, rr)
	}
	return rrs
}

func (s *testDNS) put(name string, rrs []dns.RR) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.zone[dns.CanonicalName(name)] = rrs
}

// remove makes name NXDOMAIN.
func (s *testDNS) remove(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.zone, dns.CanonicalName(name))
}

// failWith answers every query for name with rcode; dns.RcodeSuccess undoes it.
func (s *testDNS) failWith(name string, rcode int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rcode == dns.RcodeSuccess {
		delete(s.rcode, dns.CanonicalName(name))
		return
	}
	s.rcode[dns.CanonicalName(name)] = rcode
}

// silence makes the server drop queries for name without a reply.
func (s *testDNS) silence(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.silent[dns.CanonicalName(name)] = true
}

// count returns how many queries for name (any type) arrived over network ("" = any).
func (s *testDNS) count(name, network string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, q := range s.queries {
		if q.name == dns.CanonicalName(name) && (network == "" || q.network == network) {
			n++
		}
	}
	return n
}

// queriedTypes returns the query types seen for name.
func (s *testDNS) queriedTypes(name string) map[uint16]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	types := map[uint16]bool{}
	for _, q := range s.queries {
		if q.name == dns.CanonicalName(name) {
			types[q.qtype] = true
		}
	}
	return types
}

func (s *testDNS) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	// Authoritative with recursion available, as Docker's and Kubernetes' DNS
	// answer; the Go resolver treats a bare empty answer as a lame referral.
	m.Authoritative = true
	m.RecursionAvailable = true
	network := w.LocalAddr().Network()

	if len(r.Question) == 1 {
		q := r.Question[0]
		name := dns.CanonicalName(q.Name)
		s.mu.Lock()
		s.queries = append(s.queries, testQuery{name: name, qtype: q.Qtype, network: network})
		rrs, ok := s.zone[name]
		rcode, forced := s.rcode[name]
		silent := s.silent[name]
		s.mu.Unlock()
		if silent {
			return
		}
		switch {
		case forced:
			m.Rcode = rcode
		case !ok:
			m.Rcode = dns.RcodeNameError
		default:
			for _, rr := range rrs {
				if rr.Header().Rrtype == q.Qtype {
					m.Answer = append(m.Answer, dns.Copy(rr))
				}
			}
		}
	}
	if strings.HasPrefix(network, "udp") {
		size := dns.MinMsgSize
		if opt := r.IsEdns0(); opt != nil {
			size = int(opt.UDPSize())
		}
		m.Truncate(size) // sets TC when records do not fit, so the client retries over TCP
	}
	_ = w.WriteMsg(m)
}

// logLines collects Logf output for assertions.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
}

// matching returns the lines containing sub.
func (l *logLines) matching(sub string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, line := range l.lines {
		if strings.Contains(line, sub) {
			out = append(out, line)
		}
	}
	return out
}

// waitFor polls cond until it holds, failing the test after a generous timeout.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testenv.WaitFor(t, 20*time.Second, what, cond)
}
