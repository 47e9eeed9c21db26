package actors

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cloister-go/cloister/internal/core"
	"github.com/cloister-go/cloister/internal/discovery"
	"github.com/cloister-go/cloister/internal/statem"
	"github.com/cloister-go/cloister/internal/wire/ergonode"
	"github.com/cloister-go/cloister/listener"
	"github.com/ergo-services/ergo/etf"
	"github.com/ergo-services/ergo/gen"
	"github.com/ergo-services/ergo/node"
)

// MonitorOptions configure the Monitor. The app package validates and
// defaults them; every duration here is already positive.
type MonitorOptions struct {
	// Name is the Monitor's registered name, and the name it asks for on
	// peers (default MonitorName).
	Name      string
	OTPApp    string
	Consensus int
	// Sentries: a static node list. Service: a DNS name instead (peers are
	// OTPApp@<ip>), re-resolved every DiscoveryInterval by Resolver.
	Sentries          []string
	Service           string
	Resolver          *discovery.Resolver
	DiscoveryInterval time.Duration
	Listener          listener.Listener
	Heartbeat         time.Duration
	SuspectAfter      time.Duration
	RemoveAfter       time.Duration
	Reconcile         time.Duration
	DialTimeout       time.Duration
	BackoffMin        time.Duration
	BackoffMax        time.Duration
	// FlapGrace keeps a member whose connection dropped in the rings this
	// long while it is re-dialled (core.Config.FlapGrace); 0: none.
	FlapGrace time.Duration
	// Logf logs; nil means log.Printf.
	Logf func(format string, args ...interface{})
	// Observe, when set, sees every effect the Monitor carries out (tests,
	// metrics). It runs on the Monitor's goroutine and must not block.
	Observe func(effect interface{})
}

// Monitor is the cluster state machine (Cloister.Monitor): a thin driver
// around internal/core. It turns node events, timers and peer answers into
// core events and carries out the effects; it never blocks on the network
// (dials run on their own goroutines with a deadline).
type Monitor struct {
	statem.StateMachine
	opts    MonitorOptions
	cluster *Cluster

	core    *core.Core
	node    node.Node
	disp    *listener.Dispatcher
	probes  map[etf.Ref]probe
	cancel  context.CancelFunc
	stopRef *etf.Ref
	kick    chan struct{} // service mode: re-resolve now
	logf    func(string, ...interface{})
	// failing remembers, per peer that cannot be reached, the last error
	// logged, so a peer re-dialled forever is logged on change and then
	// once a minute, not on every attempt.
	failing map[string]*dialFailure
}

type dialFailure struct {
	reason   string // the error without addresses, to tell a change of cause
	attempts int
	since    time.Time
	logged   time.Time
}

type probe struct {
	node string
	at   time.Time
}

// Messages the Monitor sends itself. They never cross the network.
type (
	startMsg    struct{}
	tickMsg     struct{}
	continueMsg struct{}
	dialDoneMsg struct {
		node string
		err  error
		gone bool
	}
	discoveredMsg struct{ peers []string }
)

const tickEvery = 50 * time.Millisecond

// debug logs every core event with effects (CLOISTER_DEBUG=1).
var debug = os.Getenv("CLOISTER_DEBUG") == "1"

// NewMonitor returns the Monitor behaviour for cluster c.
func NewMonitor(c *Cluster, o MonitorOptions) *Monitor {
	if o.Name == "" {
		o.Name = MonitorName
	}
	c.MonitorName = o.Name
	return &Monitor{opts: o, cluster: c}
}

// ProcessLoop runs the state machine behind guardedLoop: a bare {} from
// any peer would otherwise kill the Monitor inside Ergo's own loop.
func (m *Monitor) ProcessLoop(ps gen.ProcessState, started chan<- bool) string {
	return guardedLoop(&m.StateMachine.Server, ps, started)
}

// Table declares the Monitor's transitions (internal/core.Table).
func (m *Monitor) Table() statem.Table {
	t := statem.Table{}
	for from, tos := range core.Table {
		for _, to := range tos {
			t[statem.State(from)] = append(t[statem.State(from)], statem.State(to))
		}
	}
	return t
}

// InitStateMachine sets the Monitor up in state down; it must not fail (a
// failing child Init hangs an Ergo supervisor), so all fallible work comes
// after, as messages to itself.
func (m *Monitor) InitStateMachine(p *statem.Process, args ...etf.Term) (statem.State, []interface{}, error) {
	m.logf = m.opts.Logf
	if m.logf == nil {
		m.logf = log.Printf
	}
	n, _ := p.Env(node.EnvKeyNode).(node.Node)
	m.node = n
	m.cluster.SetNode(n)
	m.probes = map[etf.Ref]probe{}
	l := m.opts.Listener
	if l == nil {
		l = listener.Logger{Logf: m.logf}
	}
	m.disp = listener.NewDispatcher(l, m.logf, time.Second)
	sentries := m.opts.Sentries
	if m.opts.Service == "" && len(sentries) == 0 {
		sentries = []string{m.cluster.Self()}
	}
	m.core = core.New(core.Config{
		Self: m.cluster.Self(), OTPApp: m.opts.OTPApp, Consensus: m.opts.Consensus,
		Sentries: sentries, Service: m.opts.Service != "",
		Heartbeat: m.opts.Heartbeat, SuspectAfter: m.opts.SuspectAfter, RemoveAfter: m.opts.RemoveAfter,
		ProbeTimeout: 2 * m.opts.Heartbeat, Reprobe: 2 * time.Second, Reconcile: m.opts.Reconcile,
		BackoffMin: m.opts.BackoffMin, BackoffMax: m.opts.BackoffMax, FlapGrace: m.opts.FlapGrace,
	})
	m.failing = map[string]*dialFailure{}
	if err := p.MonitorEvent(node.EventNetwork); err != nil {
		m.logf("cloister: monitor: cannot subscribe to network events (%v); relying on reconcile", err)
	}
	ctx, cancel := context.WithCancel(p.Context())
	m.cancel = cancel
	if m.opts.Service != "" {
		m.kick = make(chan struct{}, 1)
		w := &discovery.Watcher{
			Resolver: m.opts.Resolver, Service: m.opts.Service, OTPApp: m.opts.OTPApp,
			Interval: m.opts.DiscoveryInterval, Connected: m.connected, Logf: m.logf,
			Kick: m.kick,
		}
		self := p.Self()
		go w.Run(ctx, func(peers []string) {
			_ = p.Send(self, discoveredMsg{peers: peers})
		})
	}
	m.publish(core.Down)
	p.Send(p.Self(), startMsg{})
	p.SendAfter(p.Self(), tickMsg{}, tickEvery)
	return statem.State(core.Down), nil, nil
}

var _ statem.Connectivity = (*Monitor)(nil)

// Connected implements statem.Connectivity: a reply to a caller whose node
// is no longer connected is dropped, because Ergo would dial that node on
// the Monitor's goroutine to send it (seconds for a frozen peer).
func (m *Monitor) Connected(node string) bool { return m.cluster.ConnectedTo(node) }

func (m *Monitor) connected() []string {
	if m.node == nil {
		return nil
	}
	return m.node.Nodes()
}

// HandleEvent turns one Ergo event into a core event and runs the effects.
func (m *Monitor) HandleEvent(p *statem.Process, state statem.State, ev interface{}) statem.Result {
	now := time.Now()
	switch e := ev.(type) {
	case statem.Enter:
		return statem.Result{}
	case statem.Info:
		switch msg := e.Msg.(type) {
		case startMsg:
			return m.step(p, core.Start{Now: now})
		case tickMsg:
			p.SendAfter(p.Self(), tickMsg{}, tickEvery)
			m.expireProbes(now)
			t := core.Tick{Now: now}
			if m.core.ReconcileDue(now) {
				t.Connected = m.connected()
				if t.Connected == nil {
					t.Connected = []string{}
				}
			}
			return m.step(p, t)
		case continueMsg:
			return m.step(p, core.Continue{Now: now})
		case node.MessageEventNetwork:
			if msg.Online {
				return m.step(p, core.NodeUp{Now: now, Node: msg.PeerName})
			}
			if m.kick != nil {
				// Re-resolve now and shortly after: a killed container's
				// address leaves the answer within moments, which ends its
				// flap grace (core) well before the grace runs out.
				kick := m.kick
				for _, d := range []time.Duration{0, 150 * time.Millisecond, 400 * time.Millisecond} {
					time.AfterFunc(d, func() {
						select {
						case kick <- struct{}{}:
						default:
						}
					})
				}
			}
			return m.step(p, core.NodeDown{Now: now, Node: msg.PeerName})
		case dialDoneMsg:
			m.noteDial(msg.node, msg.err, now)
			return m.step(p, core.DialDone{Now: now, Node: msg.node, Err: msg.err, Gone: msg.gone})
		case discoveredMsg:
			return m.step(p, core.Discovered{Now: now, Peers: msg.peers})
		case etf.Tuple:
			if len(msg) == 2 {
				if ref, ok := msg[0].(etf.Ref); ok {
					if pr, ok := m.probes[ref]; ok {
						delete(m.probes, ref)
						if app, members, ok := ParseState(msg[1]); ok {
							return m.step(p, core.ProbeReply{Now: now, Node: pr.node, OTPApp: app, Members: members})
						}
					}
				}
			}
			if res, ok := m.multiCall(p, msg, now); ok {
				return res
			}
		}
		// Anything else (garbage from the network included) is ignored.
		return statem.Result{}
	case statem.Call:
		return m.call(p, e, now)
	case statem.Direct:
		switch e.Msg.(type) {
		case SnapshotRequest:
			return statem.Result{Actions: []interface{}{statem.DirectReply{Ref: e.Ref, Msg: m.snapshot()}}}
		case StopRequest:
			if m.core.State() == core.Stopped {
				return statem.Result{Actions: []interface{}{statem.DirectReply{Ref: e.Ref, Msg: "stopped"}}}
			}
			ref := e.Ref
			m.stopRef = &ref
			return m.step(p, core.Stop{Now: now})
		}
		return statem.Result{Actions: []interface{}{statem.DirectReply{Ref: e.Ref, Err: fmt.Errorf("cloister: monitor: unknown request %T", e.Msg)}}}
	}
	return statem.Result{}
}

// StopRequest asks the Monitor (through process Direct) to run the orderly
// shutdown, stopping → stopped, and answers once the listener has been told.
// The node can then be stopped without losing those notifications.
type StopRequest struct{}

// SnapshotRequest asks the Monitor (through process Direct) for a fresh
// snapshot. Code outside the Monitor normally reads Cluster.Snapshot.
type SnapshotRequest struct{}

func (m *Monitor) call(p *statem.Process, e statem.Call, now time.Time) statem.Result {
	switch msg := e.Msg.(type) {
	case etf.Atom:
		if msg == "state" {
			res := statem.Result{Actions: []interface{}{statem.Reply{From: e.From, Msg: m.stateTerm()}}}
			// A peer Monitor asking is a cloister node: probe it back,
			// it may have asked before its own Monitor was registered.
			if from := string(e.From.Pid.Node); from != "" && from != m.cluster.Self() {
				more := m.step(p, core.ProbedBy{Now: now, Node: from})
				res.Next = more.Next
				res.Actions = append(res.Actions, more.Actions...)
			}
			return res
		}
	}
	if t, ok := e.Msg.(etf.Tuple); ok && len(t) == 3 && t[0] == etf.Atom("whois") {
		return statem.Result{Actions: []interface{}{statem.Reply{From: e.From, Msg: m.whois(t[1], t[2])}}}
	}
	return statem.Result{Actions: []interface{}{statem.Reply{From: e.From, Msg: etf.Tuple{etf.Atom("error"), etf.Atom("unknown_call")}}}}
}

// multiCall answers Erlang's gen_server:multi_call, whose request
// {'$gen_call', From, Req} Ergo does not recognise as a call (it lands in
// HandleInfo); multiCallFrom reads both forms of From (OTP 25, OTP 27+).
func (m *Monitor) multiCall(p *statem.Process, msg etf.Tuple, now time.Time) (statem.Result, bool) {
	if len(msg) != 3 || msg[0] != etf.Atom("$gen_call") {
		return statem.Result{}, false
	}
	to, tag, pid, ok := multiCallFrom(msg[1])
	if !ok {
		return statem.Result{}, false
	}
	res := m.call(p, statem.Call{From: gen.ServerFrom{Pid: pid}, Msg: msg[2]}, now)
	var rest []interface{}
	for _, a := range res.Actions {
		if r, ok := a.(statem.Reply); ok && r.From.Pid == pid && r.From.Ref == (etf.Ref{}) {
			// As statem.Reply does: never dial from the Monitor's goroutine.
			if m.Connected(string(pid.Node)) {
				_ = p.Send(to, etf.Tuple{tag, r.Msg})
			}
			continue
		}
		rest = append(rest, a)
	}
	res.Actions = rest
	return res, true
}

// whois answers {whois, Group, Key} (Group and Key as binary, charlist or
// atom; Group ” or 'default' is the default ring) with {ok, Owner} or
// {error, Reason}: the CLI and BEAM code ask a node this way. On a libring
// ring the owner is libring's for that term (an atom key hashes as an atom).
func (m *Monitor) whois(group, key etf.Term) etf.Term {
	g, ok1 := termString(group)
	k, ok2 := termString(key)
	if !ok1 || !ok2 {
		return etf.Tuple{etf.Atom("error"), etf.Atom("badarg")}
	}
	if g == "" || g == "default" {
		g = m.cluster.Ring
	}
	snap, err := m.cluster.Rings.Get(g)
	if err != nil {
		return etf.Tuple{etf.Atom("error"), []byte(err.Error())}
	}
	// A libring ring hashes the key as the term it arrived as, as Elixir's
	// libring does; Ergo decodes a charlist into a Go string, so it is
	// turned back into one. Other engines look up its text.
	var term etf.Term = key
	if s, ok := key.(string); ok {
		term = etf.Charlist(s)
	}
	owner, err := snap.OwnerTerm(term, func(etf.Term) string { return k })
	if err != nil {
		return etf.Tuple{etf.Atom("error"), []byte(err.Error())}
	}
	return etf.Tuple{etf.Atom("ok"), etf.Atom(owner)}
}

func termString(t etf.Term) (string, bool) {
	switch v := t.(type) {
	case []byte:
		return string(v), true
	case string:
		return v, true
	case etf.Atom:
		return string(v), true
	case etf.List:
		if len(v) == 0 {
			return "", true
		}
	}
	return "", false
}

// step feeds the core and carries out its effects.
func (m *Monitor) step(p *statem.Process, ev interface{}) statem.Result {
	fx := m.core.Step(ev)
	if debug {
		if _, tick := ev.(core.Tick); !tick || len(fx) > 0 {
			m.logf("cloister: debug: %T %+v -> %+v", ev, ev, fx)
		}
	}
	var res statem.Result
	var changes []core.Transition
	published := false
	for _, f := range fx {
		if m.opts.Observe != nil {
			m.opts.Observe(f)
		}
		switch e := f.(type) {
		case core.Transition:
			res.Next = statem.State(e.To)
			changes = append(changes, e)
		case core.Dial:
			m.dial(p, e.Node)
		case core.Probe:
			m.probe(p, e.Node)
		case core.Disconnect:
			m.logf("cloister: %s silent for %s: removed and disconnected", e.Node, m.opts.RemoveAfter)
			go m.node.Disconnect(e.Node)
		case core.Publish:
			for _, name := range m.cluster.Rings.Names() {
				if _, _, err := m.cluster.Rings.Update(name, e.Members); err != nil {
					m.logf("cloister: ring %s: %v", name, err)
				}
			}
			published = true
		case core.Suspect:
			m.logf("cloister: %s suspected: no heartbeat answer for %s", e.Node, e.Silence.Round(time.Millisecond))
			published = true
		case core.Grace:
			m.logf("cloister: lost the connection to member %s; it stays in the rings for %s (flap grace) while it is re-dialled", e.Node, e.For)
			published = true
		case core.Recovered:
			m.logf("cloister: %s is back after %s, within the flap grace: rings unchanged", e.Node, e.After.Round(time.Millisecond))
			published = true
		case core.Removed:
			if e.Reason != core.ReasonSilent { // the Disconnect line says it
				m.logf("cloister: %s removed from the rings: %s", e.Node, e.Reason)
			}
		case core.Stalled:
			m.logf("cloister: this node did not run for %s (frozen, suspended or starved): members get a fresh heartbeat window", e.For.Round(time.Millisecond))
		case core.ContinueEffect:
			p.Send(p.Self(), continueMsg{})
		}
	}
	if published || len(changes) > 0 {
		m.publish(m.core.State())
	} else if _, tick := ev.(core.Tick); !tick || ev.(core.Tick).Connected != nil {
		// Connections of non-members change what /status shows too.
		m.publishIfChanged()
	}
	for _, t := range changes {
		m.disp.Notify(string(t.From), string(t.To), m.cluster.Snapshot())
	}
	if m.stopRef != nil && m.core.State() == core.Stopped {
		m.disp.Flush(2 * time.Second)
		res.Actions = append(res.Actions, statem.DirectReply{Ref: *m.stopRef, Msg: "stopped"})
		m.stopRef = nil
	}
	return res
}

func (m *Monitor) dial(p *statem.Process, peer string) {
	self := p.Self()
	n := m.node
	timeout := m.opts.DialTimeout
	go func() {
		done := make(chan error, 1)
		// Ergo's connect has no deadline of its own for the EPMD lookup.
		go func() { done <- n.Connect(peer) }()
		var err error
		gone := false
		select {
		case err = <-done:
			if err != nil {
				gone = processGone(n, peer, timeout)
			}
		case <-time.After(timeout):
			err = fmt.Errorf("cloister: dial %s: no answer in %s", peer, timeout)
		}
		_ = p.Send(self, dialDoneMsg{node: peer, err: err, gone: gone})
	}()
}

// processGone tells a dead node from an unreachable one after a failed
// dial (Ergo reports both as "no route"): its EPMD answers that the name is
// not registered, or nothing listens on the port it registered. Anything
// else — EPMD or host unreachable, a timeout, a static route — is not proof.
func processGone(n node.Node, peer string, timeout time.Duration) bool {
	type res struct {
		route node.Route
		err   error
	}
	ch := make(chan res, 1)
	go func() {
		r, err := n.Resolve(peer)
		ch <- res{r, err}
	}()
	var r res
	select {
	case r = <-ch:
	case <-time.After(timeout):
		return false
	}
	if debug {
		log.Printf("cloister: debug: resolve %s after a failed dial: %+v %v", peer, r.route, r.err)
	}
	if r.err != nil {
		return strings.Contains(r.err.Error(), "desired node not found")
	}
	host := r.route.Host
	if i := strings.IndexByte(peer, '@'); host == "" && i >= 0 {
		host = peer[i+1:]
	}
	c, err := net.DialTimeout("tcp", net.JoinHostPort(host, strconv.Itoa(int(r.route.Port))), timeout)
	if err == nil {
		c.Close()
		return false
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}

// probe asks a peer's Monitor for its state with a plain $gen_call that
// Ergo, Erlang and Elixir servers all answer, without blocking: the reply
// arrives as an info message {Ref, State}.
func (m *Monitor) probe(p *statem.Process, peer string) {
	// Sending to a node that is not connected would make Ergo dial
	// synchronously on this goroutine (ERGO-NOTES §4.5): never do that.
	if !slices.Contains(m.node.Nodes(), peer) {
		return
	}
	ref := p.MakeRef()
	m.probes[ref] = probe{node: peer, at: time.Now()}
	msg := etf.Tuple{etf.Atom("$gen_call"), etf.Tuple{p.Self(), ref}, etf.Atom("state")}
	if err := p.Send(gen.ProcessID{Name: m.opts.Name, Node: peer}, msg); err != nil {
		delete(m.probes, ref)
	}
}

func (m *Monitor) expireProbes(now time.Time) {
	for ref, pr := range m.probes {
		if now.Sub(pr.at) > 10*time.Second {
			delete(m.probes, ref)
		}
	}
	for peer, f := range m.failing {
		if now.Sub(f.logged) > 10*time.Minute {
			delete(m.failing, peer)
		}
	}
}

// noteDial logs why a peer cannot be reached: the first failure, every
// change of reason, then once a minute while it lasts; and the success
// that ends a run of failures. Ergo reports every failed connect as "no
// route to node"; a failed handshake's real cause (cookie, TLS, timeout)
// is added from ergonode.
func (m *Monitor) noteDial(peer string, err error, now time.Time) {
	f := m.failing[peer]
	if err == nil {
		if f != nil {
			m.logf("cloister: connected to %s after %d failed attempts over %s", peer, f.attempts, now.Sub(f.since).Round(time.Millisecond))
			delete(m.failing, peer)
		}
		return
	}
	msg := err.Error()
	reason := msg
	if he := ergonode.LastHandshakeError(m.cluster.Self(), peer, 10*time.Second); he != nil {
		msg += ": " + strings.TrimPrefix(he.Error(), "cloister: ")
		// Not he.Error(): its address (a new port each time) and
		// direction change with every attempt, its cause does not.
		reason += ": " + he.Cause.Error()
	}
	if f == nil {
		if len(m.failing) >= 4096 {
			return // a flood of bad names; each is still retried
		}
		f = &dialFailure{since: now}
		m.failing[peer] = f
	}
	f.attempts++
	if reason != f.reason || now.Sub(f.logged) >= time.Minute {
		m.logf("cloister: cannot connect to %s (attempt %d, failing for %s, retrying with backoff): %s",
			peer, f.attempts, now.Sub(f.since).Round(time.Millisecond), msg)
		f.reason, f.logged = reason, now
	}
}

// publish refreshes the Cluster's snapshot.
func (m *Monitor) publish(s core.State) {
	m.cluster.publish(m.build(s))
}

func (m *Monitor) snapshot() listener.Snapshot { return m.cluster.Snapshot() }

// publishIfChanged publishes when the connected set differs from the
// published one (members and state changes publish unconditionally).
func (m *Monitor) publishIfChanged() {
	old := m.cluster.Snapshot()
	conn := m.connected()
	sort.Strings(conn)
	if !slices.Equal(conn, old.Connected) || !slices.Equal(m.core.Suspects(), old.Suspects) {
		m.publish(m.core.State())
	}
}
func (m *Monitor) build(s core.State) listener.Snapshot {
	members := append([]string(nil), m.core.Members()...)
	rings := map[string]listener.Ring{}
	for name, sn := range m.cluster.Rings.Snapshots() {
		rings[name] = listener.Ring{Members: sn.Members(), Epoch: sn.Epoch(), Hash: sn.Hash()}
	}
	conn := m.connected()
	sort.Strings(conn)
	return listener.Snapshot{
		Node: m.cluster.Self(), OTPApp: m.opts.OTPApp, State: string(s), Consensus: m.opts.Consensus,
		Members: members, Rings: rings, Connected: conn, Suspects: m.core.Suspects(),
		Flags: listener.Flags{
			Alive:     s != core.Stopping && s != core.Stopped,
			Clustered: len(members) > 1,
			Sentry:    m.core.SelfIsSentry(),
		},
		At: time.Now(),
	}
}

// stateTerm is the answer to gen_server:call(Monitor, state), in the shape
// an Elixir cloister 0.16 Monitor gives (SPEC §10), plus a few keys of ours.
func (m *Monitor) stateTerm() etf.Term {
	members := m.core.Members()
	cluster := append([]string{m.cluster.Self()}, m.connected()...)
	st := etf.Map{
		etf.Atom("fsm"):  []byte("monitor_" + m.opts.OTPApp),
		etf.Atom("ring"): etf.Atom(m.cluster.Ring),
		etf.Atom("groups"): etf.List{
			etf.Tuple{etf.Atom("ring"), atoms(members)},
			etf.Tuple{etf.Atom("cluster"), atoms(cluster)},
		},
		etf.Atom("state"):     etf.Atom(m.core.State()),
		etf.Atom("consensus"): m.opts.Consensus,
		etf.Atom("otp_app"):   []byte(m.opts.OTPApp),
	}
	if sn, err := m.cluster.Rings.Get(m.cluster.Ring); err == nil {
		st[etf.Atom("epoch")] = int64(sn.Epoch())
		st[etf.Atom("hash")] = []byte(fmt.Sprintf("%016x", sn.Hash()))
	}
	return st
}

// ParseState reads a Monitor's state reply (ours or Elixir cloister's):
// the OTP application from fsm "monitor_<app>" and the ring members.
func ParseState(t etf.Term) (otpApp string, members []string, ok bool) {
	mp, isMap := t.(etf.Map)
	if !isMap {
		return "", nil, false
	}
	var fsm string
	switch v := mp[etf.Atom("fsm")].(type) {
	case []byte:
		fsm = string(v)
	case string:
		fsm = v
	case etf.Atom:
		fsm = string(v)
	default:
		return "", nil, false
	}
	if !strings.HasPrefix(fsm, "monitor_") {
		return "", nil, false
	}
	otpApp = strings.TrimPrefix(fsm, "monitor_")
	groups, _ := mp[etf.Atom("groups")].(etf.List)
	// A peer may list any number of nodes; the core keeps at most
	// core.MaxReported valid ones, so reading far beyond is wasted work.
	const maxRead = 4 * core.MaxReported
	for _, g := range groups {
		tup, ok := g.(etf.Tuple)
		if !ok || len(tup) != 2 || tup[0] != etf.Atom("ring") {
			continue
		}
		list, _ := tup[1].(etf.List)
		if len(list) > maxRead {
			list = list[:maxRead]
		}
		for _, n := range list {
			switch v := n.(type) {
			case etf.Atom:
				members = append(members, string(v))
			case string:
				members = append(members, v)
			}
		}
	}
	return otpApp, members, true
}

// TerminateStateMachine runs the orderly shutdown: stopping → stopped, each
// change told to the listener, which gets a moment to finish.
func (m *Monitor) TerminateStateMachine(p *statem.Process, state statem.State, reason string) {
	if m.cancel != nil {
		m.cancel()
	}
	for _, f := range m.core.Step(core.Stop{Now: time.Now()}) {
		m.stopEffect(f)
	}
	for _, f := range m.core.Step(core.Continue{Now: time.Now()}) {
		m.stopEffect(f)
	}
	m.disp.Close(2 * time.Second)
}

func (m *Monitor) stopEffect(f interface{}) {
	if t, ok := f.(core.Transition); ok {
		m.publish(t.To)
		m.disp.Notify(string(t.From), string(t.To), m.cluster.Snapshot())
	}
}

func atoms(ss []string) etf.List {
	l := make(etf.List, len(ss))
	for i, s := range ss {
		l[i] = etf.Atom(s)
	}
	return l
}
