package security

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloister-go/cloister/cloistertest"
	"github.com/cloister-go/cloister/internal/localcluster"
	"github.com/cloister-go/cloister/internal/nodetest"
	"github.com/cloister-go/cloister/internal/testenv"
	"github.com/cloister-go/cloister/listener"
	"github.com/ergo-services/ergo/etf"
	"github.com/ergo-services/ergo/gen"
)

const (
	monitorName = "Elixir.Cloister.Monitor"
	nodeName    = "Elixir.Cloister.Node"
)

// fakeMonitor is the attacker's Monitor: it answers the victims' probes
// with whatever the test sets, or not at all.
type fakeMonitor struct {
	gen.Server
	mu     sync.Mutex
	reply  etf.Term
	silent bool
	asked  int
}

func (f *fakeMonitor) set(reply etf.Term, silent bool) {
	f.mu.Lock()
	f.reply, f.silent, f.asked = reply, silent, 0
	f.mu.Unlock()
}

func (f *fakeMonitor) HandleCall(p *gen.ServerProcess, from gen.ServerFrom, m etf.Term) (etf.Term, gen.ServerStatus) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked++
	if f.silent || f.reply == nil {
		return nil, gen.ServerStatusIgnore
	}
	return f.reply, gen.ServerStatusOK
}

func (f *fakeMonitor) probes() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.asked
}

func stateReply(app string, members etf.List) etf.Term {
	return etf.Map{
		etf.Atom("fsm"):    []byte("monitor_" + app),
		etf.Atom("ring"):   etf.Atom(app),
		etf.Atom("groups"): etf.List{etf.Tuple{etf.Atom("ring"), members}},
	}
}

func atoms(ns ...string) etf.List {
	l := etf.List{}
	for _, n := range ns {
		l = append(l, etf.Atom(n))
	}
	return l
}

// healthy checks that both victims are running, ready, with exactly the
// two of them as members, and that their Monitors answer a call.
func healthy(t *testing.T, within time.Duration) {
	t.Helper()
	for _, v := range victims {
		if !v.Running() {
			t.Fatalf("%s exited", v.Name)
		}
		if _, err := v.WaitStatus(within, "ready with the victims only", func(s listener.Snapshot) bool {
			return s.Ready() && reflect.DeepEqual(s.Members, vnames)
		}); err != nil {
			t.Fatal(err)
		}
		r, err := call(gen.ProcessID{Name: monitorName, Node: v.Name}, etf.Atom("state"), 5*time.Second)
		if err != nil {
			t.Fatalf("%s Monitor: %v", v.Name, err)
		}
		if _, ok := r.(etf.Map); !ok {
			t.Fatalf("%s Monitor answered %v", v.Name, r)
		}
	}
	// Neither actor of either victim was restarted since the last check
	// (a restart loses nothing else healthy sees: the Manager restarts
	// both, and they assemble the same cluster again).
	if exits := watch.exits(); len(exits) > 0 {
		t.Fatalf("victim actors exited: %v", exits)
	}
	var targets []gen.ProcessID
	for _, v := range vnames {
		targets = append(targets, gen.ProcessID{Name: monitorName, Node: v}, gen.ProcessID{Name: nodeName, Node: v})
	}
	watch.arm(targets)
}

// connect makes the attacker connected to every victim (a call to their
// Monitor also makes them probe the attacker back).
func connect(t *testing.T) {
	t.Helper()
	connectTries(t, 1)
}

// reconnect is connect for right after the victims dropped their links to
// the attacker: a call lost with a dropping link is retried once.
func reconnect(t *testing.T) {
	t.Helper()
	connectTries(t, 2)
}

func connectTries(t *testing.T, tries int) {
	t.Helper()
	for _, v := range vnames {
		to := gen.ProcessID{Name: monitorName, Node: v}
		_, err := call(to, etf.Atom("state"), 5*time.Second)
		for try := 1; err != nil && try < tries; try++ {
			t.Logf("%v: %v; retrying", to, err)
			_, err = call(to, etf.Atom("state"), 5*time.Second)
		}
		if err != nil {
			for _, v := range victims {
				t.Logf("%s stderr:\n%s", v.Name, localcluster.LastLines(v.LogTail(), 40))
			}
			t.Fatal(err)
		}
	}
}

func members(t *testing.T, v *cloistertest.Node) []string {
	t.Helper()
	s, err := v.Status()
	if err != nil {
		t.Fatal(err)
	}
	return s.Members
}

// A hostile peer (this process, with the cookie) against two victims.
func TestHostilePeer(t *testing.T) {
	setUp(t)
	healthy(t, 30*time.Second) // and starts watching the victims' actors
	t.Run("lying peer Monitor", lyingPeerMonitor)
	t.Run("random terms to Monitor and Node", randomTermsToMonitorAndNode)
	// Before the flood: a Node actor whose mailbox is still full drops
	// the calls this one makes.
	t.Run("forged callers on a frozen node stall neither Monitor nor Node actor", forgedCallersDoNotStallMonitor)
	t.Run("cast flood to the Node actor", castFloodToNodeActorIsBounded)
}

// A call whose From names a process on another node makes the callee
// answer that node; Ergo dials a node it is not connected to on the
// sending goroutine, and a frozen node holds that dial for a whole
// handshake timeout (5 s). Three such calls, with the caller on a frozen
// node, must not keep the Monitor or the Node actor from answering the
// next call: both drop answers to nodes they are not connected to.
func forgedCallersDoNotStallMonitor(t *testing.T) {
	const ghostName = "ghost@127.0.0.1"
	ghost, err := h.Start(cloistertest.Spec{Name: ghostName, Sentry: []string{ghostName}, Consensus: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer ghost.Kill()
	if e, err := ghost.WaitStarted(30 * time.Second); err != nil || e.Event != "started" {
		t.Fatalf("ghost: %v %+v", err, e)
	}
	if err := ghost.Freeze(); err != nil {
		t.Fatal(err)
	}
	defer ghost.Thaw()
	for _, c := range []struct {
		to  gen.ProcessID
		req etf.Term
	}{
		{gen.ProcessID{Name: monitorName, Node: vnames[0]}, etf.Atom("state")},
		// The Node actor answers a bad request at once, {error, ...}.
		{gen.ProcessID{Name: nodeName, Node: vnames[1]}, etf.Tuple{etf.Atom("multiapply"), etf.Atom("nosuch"), etf.List{1}}},
	} {
		for i := 0; i < 3; i++ {
			forged := etf.Tuple{etf.Pid{Node: ghostName, ID: uint64(1000 + i), Creation: 1}, me.MakeRef()}
			if err := me.Send(c.to, etf.Tuple{etf.Atom("$gen_call"), forged, c.req}); err != nil {
				t.Fatal(err)
			}
		}
		// One handshake timeout is 5 s; answering within 4 s shows the
		// process did not try even one.
		start := time.Now()
		if _, err := call(c.to, c.req, 4*time.Second); err != nil {
			t.Fatalf("%v stalled after answering callers on a frozen node: %v", c.to, err)
		}
		t.Logf("%v answered %s after three forged calls", c.to, time.Since(start).Round(time.Millisecond))
	}
	healthy(t, 10*time.Second)
}

// A peer Monitor that lies never breaks the victims: a foreign or
// malformed answer is never a member; a member listing a hundred thousand
// nodes (real, malformed or absurd) costs the victims a bounded number of
// dials and goroutines; and a member that stops answering is removed.
func lyingPeerMonitor(t *testing.T) {
	connect(t)
	huge := etf.List{}
	for i := 0; i < 100_000; i++ {
		huge = append(huge, etf.Atom(fmt.Sprintf("ghost_%d@127.0.0.1", i)))
	}
	huge = append(huge, etf.Atom("two@at@signs"), etf.Atom("has space@h"), 42, []byte("bin@h"), etf.Tuple{})
	deep := etf.Term(etf.List{})
	for i := 0; i < 200; i++ {
		deep = etf.List{deep}
	}
	cases := []struct {
		name   string
		reply  etf.Term
		member bool
	}{
		{"another OTP application", stateReply("billing", atoms(append(vnames, attackerName)...)), false},
		{"fsm of the wrong type", etf.Map{etf.Atom("fsm"): 42, etf.Atom("groups"): atoms(vnames...)}, false},
		{"not a map", etf.Tuple{etf.Atom("ok"), []byte("monitor_cloister")}, false},
		{"groups of garbage", etf.Map{etf.Atom("fsm"): []byte("monitor_cloister"), etf.Atom("groups"): etf.List{deep, 7, etf.Tuple{etf.Atom("ring"), etf.Map{}}}}, true},
		{"a hundred thousand members", stateReply("cloister", huge), true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			base, err := nodetest.Runtime(victims[0].Node, true)
			if err != nil {
				t.Fatal(err)
			}
			fake.set(c.reply, false)
			// The victims re-probe a connected non-member every 2 s.
			deadline := time.Now().Add(8 * time.Second)
			joined := false
			peak := base.Goroutines
			for time.Now().Before(deadline) && (fake.probes() < 2 || (c.member && !joined)) {
				joined = contains(members(t, victims[0]), attackerName)
				if rs, err := nodetest.Runtime(victims[0].Node, false); err == nil && rs.Goroutines > peak {
					peak = rs.Goroutines
				}
				time.Sleep(100 * time.Millisecond)
			}
			if fake.probes() == 0 {
				t.Fatal("the victims never probed the attacker")
			}
			if joined != c.member {
				t.Fatalf("attacker member: %v, want %v (members %v)", joined, c.member, members(t, victims[0]))
			}
			// Dials are bounded (64 at a time, 1024 names kept): the
			// goroutines of a victim stay within a few hundred.
			if peak > base.Goroutines+400 {
				t.Fatalf("goroutines %d → peak %d", base.Goroutines, peak)
			}
			t.Logf("%s: probed %d times, member %v, goroutines %d → peak %d", c.name, fake.probes(), joined, base.Goroutines, peak)
			if c.member {
				// A member that stops answering is removed by the
				// heartbeat (and disconnected).
				fake.set(nil, true)
				at := time.Now()
				if _, err := victims[0].WaitStatus(10*time.Second, "attacker removed", func(s listener.Snapshot) bool {
					return !contains(s.Members, attackerName)
				}); err != nil {
					t.Fatal(err)
				}
				t.Logf("silent attacker removed after %s", time.Since(at).Round(10*time.Millisecond))
				// Each victim removes it on its own clock, drops the link
				// and later re-dials it (a known node): a call made while
				// a link drops is lost with it, so wait for both removals
				// and give the first call after them one retry.
				for _, v := range victims[1:] {
					if _, err := v.WaitStatus(10*time.Second, "attacker removed", func(s listener.Snapshot) bool {
						return !contains(s.Members, attackerName)
					}); err != nil {
						t.Fatal(err)
					}
				}
				reconnect(t)
			}
			fake.set(nil, true)
			healthy(t, 15*time.Second)
		})
	}
}

// randomTerm builds a term of any shape the wire can carry, up to depth.
func randomTerm(r *rand.Rand, depth int) etf.Term {
	k := r.Intn(14)
	if depth <= 0 && k >= 9 {
		k = r.Intn(9)
	}
	switch k {
	case 0:
		return r.Intn(1 << 20)
	case 1:
		return r.Int63() - r.Int63()
	case 2:
		return r.Float64() * 1e9
	case 3:
		return etf.Atom([]string{"state", "ok", "error", "$gen_call", "$gen_cast", "multiapply", "ping", "whois", "", "nil", "true"}[r.Intn(11)])
	case 4:
		b := make([]byte, r.Intn(64))
		r.Read(b)
		return b
	case 5:
		return fmt.Sprintf("str%d", r.Intn(100))
	case 6:
		return me.Self()
	case 7:
		return me.MakeRef()
	case 8:
		return etf.Atom(fmt.Sprintf("n%d@127.0.0.1", r.Intn(5)))
	case 9, 10:
		t := make(etf.Tuple, r.Intn(5))
		for i := range t {
			t[i] = randomTerm(r, depth-1)
		}
		return t
	case 11, 12:
		l := make(etf.List, 1+r.Intn(5))
		for i := range l {
			l[i] = randomTerm(r, depth-1)
		}
		return l
	default:
		m := etf.Map{}
		for i := r.Intn(4); i >= 0; i-- {
			m[etf.Atom(fmt.Sprintf("k%d", i))] = randomTerm(r, depth-1)
		}
		return m
	}
}

// Random terms of every shape, sent to the Monitor and the Node actor of
// every victim as plain messages, casts and calls (with our pid and refs
// in them), leave both actors answering and the cluster as it was.
func randomTermsToMonitorAndNode(t *testing.T) {
	fake.set(nil, true)
	r := rand.New(rand.NewSource(5))
	sent := 0
	for i := 0; i < 3000; i++ {
		term := randomTerm(r, 4)
		var msg etf.Term
		switch r.Intn(4) {
		case 0:
			msg = term
		case 1:
			msg = etf.Tuple{etf.Atom("$gen_cast"), term}
		case 2:
			msg = etf.Tuple{etf.Atom("$gen_call"), etf.Tuple{me.Self(), me.MakeRef()}, term}
		default:
			msg = etf.Tuple{me.MakeRef(), term} // a fake probe reply
		}
		if tt, ok := msg.(etf.List); ok && len(tt) == 0 {
			continue // Ergo cannot send a top-level empty list
		}
		to := gen.ProcessID{Name: []string{monitorName, nodeName}[r.Intn(2)], Node: vnames[r.Intn(2)]}
		if err := me.Send(to, msg); err == nil {
			sent++
		}
	}
	t.Logf("sent %d random terms", sent)
	// A call from the same process is answered after the terms sent
	// before it: once the Monitors answer, the terms are handled, and a
	// crash one caused has happened.
	for _, v := range vnames {
		if _, err := call(gen.ProcessID{Name: monitorName, Node: v}, etf.Atom("state"), 15*time.Second); err != nil {
			t.Fatalf("%s Monitor after the terms: %v", v, err)
		}
	}
	healthy(t, 15*time.Second)
	// The Node actor still serves requests.
	for _, v := range vnames {
		res, err := call(gen.ProcessID{Name: nodeName, Node: v}, etf.Tuple{etf.Atom("multiapply"), []byte("nope"), etf.List{1}}, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if tup, ok := res.(etf.Tuple); !ok || len(tup) != 2 || tup[0] != etf.Atom("error") {
			t.Fatalf("%s Node answered %v", v, res)
		}
	}
}

// A flood of casts to the Node actor cannot grow a victim's memory without
// bound: Ergo drops what does not fit in the actor's bounded mailbox.
func castFloodToNodeActorIsBounded(t *testing.T) {
	fake.set(nil, true)
	v := victims[0]
	base, err := nodetest.Runtime(v.Node, true)
	if err != nil {
		t.Fatal(err)
	}
	payload := bytes.Repeat([]byte("x"), 1024)
	const casts = 100_000
	done := make(chan struct{})
	var peak uint64
	go func() {
		defer close(done)
		for i := 0; i < casts; i++ {
			_ = me.Send(gen.ProcessID{Name: nodeName, Node: v.Name}, etf.Tuple{etf.Atom("$gen_cast"), etf.Tuple{etf.Atom("flood"), i, payload}})
		}
	}()
	for sampling := true; sampling; {
		select {
		case <-done:
			sampling = false
		case <-time.After(100 * time.Millisecond):
		}
		if rs, err := nodetest.Runtime(v.Node, false); err == nil && rs.HeapInuse > peak {
			peak = rs.HeapInuse
		}
	}
	// The casts are handled (or dropped) once a call sent after them is
	// answered; one dropped with a full mailbox is sent again.
	var answered bool
	for deadline := time.Now().Add(30 * time.Second); !answered && time.Now().Before(deadline); {
		_, err := call(gen.ProcessID{Name: nodeName, Node: v.Name}, etf.Tuple{etf.Atom("multiapply"), []byte("nope"), etf.List{1}}, 5*time.Second)
		answered = err == nil
	}
	if !answered {
		t.Fatal("the Node actor answered no call in 30 s after the flood")
	}
	after, err := nodetest.Runtime(v.Node, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d casts of 1 KiB (%d MiB): heap in use peak %.1f MiB (live before %.1f), live heap after %.1f MiB",
		casts, casts>>10, mib(peak), mib(base.HeapAlloc), mib(after.HeapAlloc))
	// 8192 queued 1 KiB casts are 8 MiB plus their decoding; the flood
	// itself is 200 MiB.
	if peak > base.HeapInuse+96<<20 {
		t.Fatalf("heap in use grew to %.1f MiB during the flood", mib(peak))
	}
	if after.HeapAlloc > base.HeapAlloc+16<<20 {
		t.Fatalf("live heap %.1f → %.1f MiB after the flood", mib(base.HeapAlloc), mib(after.HeapAlloc))
	}
	healthy(t, 15*time.Second)
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// syncBuffer collects the node processes' logs.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// lines returns the log lines of one node that contain all of words.
func (s *syncBuffer) lines(nodeName string, words ...string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, l := range strings.Split(s.b.String(), "\n") {
		if !strings.HasPrefix(l, "["+nodeName+"]") {
			continue
		}
		ok := true
		for _, w := range words {
			ok = ok && strings.Contains(l, w)
		}
		if ok {
			out = append(out, l)
		}
	}
	return out
}

func waitLog(t *testing.T, logs *syncBuffer, nodeName string, timeout time.Duration, words ...string) string {
	t.Helper()
	var ls []string
	if !testenv.Poll(timeout, func() bool { ls = logs.lines(nodeName, words...); return len(ls) > 0 }) {
		t.Logf("logs of %s:\n%s", nodeName, strings.Join(logs.lines(nodeName), "\n"))
		t.Fatalf("%s logged no line with %q in %s", nodeName, words, timeout)
	}
	return ls[0]
}

// dials reads a node's cloister_dials_total (it runs with -metrics): how
// many connections its Monitor has begun.
func dials(t *testing.T, n *cloistertest.Node) int {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	r, err := c.Get("http://" + n.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	sc := bufio.NewScanner(r.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "cloister_dials_total "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %q: %v", n.Name, sc.Text(), err)
			}
			return int(f)
		}
	}
	t.Fatalf("%s: no cloister_dials_total on /metrics", n.Name)
	return 0
}

// A node with the wrong cookie never joins, and both sides' logs say why,
// naming the other node, instead of Ergo's bare "no route to node".
func TestWrongCookieIsRefusedAndTheLogSaysWhy(t *testing.T) {
	hc := cloistertest.NewT(t)
	logs := &syncBuffer{}
	hc.Logs = logs
	ns := []string{"cookie_0@127.0.0.1", "cookie_1@127.0.0.1", "intruder@127.0.0.1"}
	var nodes []*cloistertest.Node
	for i, n := range ns {
		s := cloistertest.Spec{Name: n, Sentry: ns, Consensus: 2, Args: []string{"-metrics"}}
		if i == 2 {
			s.Args = append(s.Args, "-cookie", "not-the-cookie")
		}
		node, err := hc.Start(s)
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, node)
	}
	for _, n := range nodes[:2] {
		if _, err := n.WaitStatus(30*time.Second, "ready without the intruder", func(s listener.Snapshot) bool {
			return s.Ready() && reflect.DeepEqual(s.Members, ns[:2])
		}); err != nil {
			t.Fatal(err)
		}
	}
	// The member refusing the intruder's connection names it and the cause.
	l := waitLog(t, logs, ns[0], 15*time.Second, "intruder@127.0.0.1", "cookie mismatch", "incoming")
	t.Logf("member: %s", l)
	// The member's Monitor, dialling the intruder, says the same.
	l = waitLog(t, logs, ns[0], 15*time.Second, "cannot connect to intruder@127.0.0.1", "cookie mismatch")
	t.Logf("member's Monitor: %s", l)
	// The intruder, refused, is told why too.
	l = waitLog(t, logs, ns[2], 15*time.Second, "cookie_0@127.0.0.1", "cookie mismatch")
	t.Logf("intruder: %s", l)
	// More attempts each way, each refused and none logged again: the
	// member re-dials the intruder (its only unconnected sentry), the
	// intruder both members.
	member0, intruder0 := dials(t, nodes[0]), dials(t, nodes[2])
	testenv.WaitFor(t, 30*time.Second, "two more dials each way", func() bool {
		return dials(t, nodes[0]) >= member0+2 && dials(t, nodes[2]) >= intruder0+4
	})
	s, err := nodes[2].Status()
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Members) != 1 || len(s.Connected) != 0 {
		t.Fatalf("intruder members %v connected %v", s.Members, s.Connected)
	}
	// Throttled: not one line per retry. The handshake: one per peer,
	// direction and cause every 30 s. The Monitor: one per change of
	// cause, whatever address and direction each attempt had (it logged
	// one per attempt when only those changed).
	if ls := logs.lines(ns[0], "cloister: handshake with intruder@127.0.0.1", "cookie mismatch", "incoming"); len(ls) != 1 {
		t.Fatalf("%d handshake lines for the same refusal:\n%s", len(ls), strings.Join(ls, "\n"))
	}
	if ls := logs.lines(ns[0], "cannot connect to intruder@127.0.0.1", "cookie mismatch"); len(ls) != 1 {
		t.Fatalf("%d Monitor lines for the same refusal:\n%s", len(ls), strings.Join(ls, "\n"))
	}
}

// Distribution over TLS between Go nodes: a cluster forms with TLS both
// through EPMD (Ergo's TLS flag there) and through static routes, every
// connection between the nodes is TLS from its first byte, and a node
// without TLS is refused with the cause named.
func TestTLSDistribution(t *testing.T) {
	ht := cloistertest.NewT(t)
	logs := &syncBuffer{}
	ht.Logs = logs
	ns := []string{"tls_0@127.0.0.1", "tls_1@127.0.0.1", "tls_2@127.0.0.1"}
	plain := "plain_0@127.0.0.1"
	net, err := ht.Network(append(append([]string(nil), ns...), plain)...)
	if err != nil {
		t.Fatal(err)
	}
	var nodes []*cloistertest.Node
	for _, n := range ns {
		node, err := ht.Start(cloistertest.Spec{Name: n, Sentry: ns, Consensus: 3, Args: []string{"-tls"}})
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, node)
	}
	var hash uint64
	for i, n := range nodes {
		s, err := n.WaitStatus(30*time.Second, "ready over TLS", func(s listener.Snapshot) bool {
			return s.Ready() && reflect.DeepEqual(s.Members, ns)
		})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			hash = s.Rings["cloister"].Hash
		} else if s.Rings["cloister"].Hash != hash {
			t.Fatal("rings differ")
		}
	}
	tlsConns, plainConns := net.Connections()
	if tlsConns < 3 || plainConns != 0 {
		t.Fatalf("connections through the proxies: %d TLS, %d not TLS", tlsConns, plainConns)
	}
	t.Logf("%d connections between the nodes, all TLS", tlsConns)

	// A node without TLS, listing the TLS nodes as sentries.
	p, err := ht.Start(cloistertest.Spec{Name: plain, Sentry: append([]string{plain}, ns...), Consensus: 1})
	if err != nil {
		t.Fatal(err)
	}
	// The TLS node cannot know the name of a peer that never got past TLS:
	// it names the address and the cause, once per host and cause.
	l := waitLog(t, logs, ns[0], 15*time.Second, "incoming", "TLS on one side only", "speaks plain TCP")
	t.Logf("TLS node: %s", l)
	// A TLS listener closes on a plain dialer without a word.
	l = waitLog(t, logs, plain, 15*time.Second, "closed the connection without answering", "require TLS")
	t.Logf("plain node: %s", l)
	s, err := p.Status()
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Members) != 1 || len(s.Connected) != 0 {
		t.Fatalf("plain node joined: members %v connected %v", s.Members, s.Connected)
	}
	// Several retries: the plain node dials the three TLS nodes again
	// and again (every connection through the proxies not starting with
	// a TLS record is one of its attempts).
	_, plain0 := net.Connections()
	testenv.WaitFor(t, 30*time.Second, "two more rounds of the plain node's dials", func() bool {
		_, n := net.Connections()
		return n >= plain0+6
	})
	if n := len(logs.lines(ns[0], "incoming", "TLS on one side only")); n != 1 {
		t.Fatalf("%d lines for the same refused host and cause, want 1", n)
	}
}

// TLS without fault-injection routes: the nodes find each other's TLS
// flag through EPMD, as in production.
func TestTLSThroughEPMD(t *testing.T) {
	ht := cloistertest.NewT(t)
	ns := []string{"etls_0@127.0.0.1", "etls_1@127.0.0.1"}
	var nodes []*cloistertest.Node
	for _, n := range ns {
		node, err := ht.Start(cloistertest.Spec{Name: n, Sentry: ns, Consensus: 2, Args: []string{"-tls"}})
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, node)
	}
	for _, n := range nodes {
		if e, err := n.WaitStarted(30 * time.Second); err != nil || e.Event != "started" {
			t.Fatalf("%s: %v %+v", n.Name, err, e)
		}
	}
	// Kill one and bring it back: the TLS link is re-established.
	nodes[1].Kill()
	if err := nodes[1].Restart(); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if _, err := n.WaitStatus(30*time.Second, "ready again", func(s listener.Snapshot) bool {
			return s.Ready() && reflect.DeepEqual(s.Members, ns)
		}); err != nil {
			t.Fatal(err)
		}
	}
}
