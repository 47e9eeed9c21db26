package actors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cloister-go/cloister/internal/clusterstate"
	"github.com/cloister-go/cloister/internal/core"
	"github.com/cloister-go/cloister/internal/discovery"
	"github.com/cloister-go/cloister/internal/ringx"
	"github.com/cloister-go/cloister/internal/statem"
	"github.com/cloister-go/cloister/internal/wire/distfilter"
	"github.com/cloister-go/cloister/internal/wire/ergonode"
	"github.com/cloister-go/cloister/listener"
	"github.com/cloister-go/cloister/ring"
	"github.com/ergo-services/ergo/etf"
	"github.com/ergo-services/ergo/gen"
	"github.com/ergo-services/ergo/lib"
	"github.com/ergo-services/ergo/node"
)

// Monitor is the cluster state machine (Cloister.Monitor): a gen_statem-
// style process whose state and transition table are the pure core's
// (internal/core), around a driver that carries out the core's effects. It
// turns node events, timers and peer answers into core events; it never
// blocks on the network (dials run on the driver's goroutines with a
// deadline).
type monitor struct {
	statem.StateMachine[listener.State]
	opts    Options
	cluster *shared

	// Per process run (set up again by every InitStateMachine: the
	// Manager restarts the same value).
	d    *driver
	tr   *ergoTransport
	kick chan struct{} // service mode: re-resolve now
	logf func(string, ...interface{})

	// the pending tick and delayed message, stopped when the process ends
	// (ProcessLoop); tickSeq tells the pending tick from a replaced one
	// already in the mailbox, tickAt is when it fires
	tickMu      sync.Mutex
	tickCancel  func() bool
	laterCancel func() bool
	tickSeq     uint64
	tickAt      time.Time
	stopped     bool
}

// Messages the Monitor sends itself. They never cross the network.
type (
	startMsg      struct{}
	tickMsg       struct{ seq uint64 }
	discoveredMsg struct{ peers []string }
)

// newMonitor returns the Monitor behaviour for cluster c; o is validated
// (Options.Validate) or at least names the Monitor.
func newMonitor(c *shared, o Options) *monitor {
	if o.MonitorName == "" {
		o.MonitorName = MonitorName
	}
	c.MonitorName = o.MonitorName
	return &monitor{opts: o, cluster: c}
}

var _ statem.Behavior[listener.State] = (*monitor)(nil)

// ProcessLoop runs the state machine behind guardedLoop: a bare {} from
// any peer would otherwise kill the Monitor inside Ergo's own loop.
func (m *monitor) ProcessLoop(ps gen.ProcessState, started chan<- bool) string {
	reason := guardedLoop(&m.StateMachine.Server, ps, started)
	m.end()
	return reason
}

// end marks the process ended and stops its timers, before Ergo tears it
// down. A tick still pending would be sent to the process Ergo is tearing
// down, and Ergo's send reads the mailbox field its cleanup writes (a data
// race inside Ergo): a timer firing now finishes its send first, or sees
// the mark and sends nothing (see after).
func (m *monitor) end() {
	m.tickMu.Lock()
	defer m.tickMu.Unlock()
	m.stopped = true
	if m.tickCancel != nil {
		m.tickCancel()
	}
	if m.laterCancel != nil {
		m.laterCancel()
	}
}

// sender is the part of a process that sends.
type sender interface {
	Send(interface{}, etf.Term) error
}

// after arms a timer that sends msg to self in d, unless the process has
// ended, and returns its cancel (called under tickMu). Not Ergo's
// SendAfter, for two reasons. Its timer may fire while the process ends,
// and its send then reads the mailbox field Ergo's cleanup writes (a data
// race inside Ergo) however soon the timer is stopped; this one sends
// under tickMu, which end holds to mark the end, so a send either
// completes while the process still runs or does not happen. And Ergo
// drops a local send into a full mailbox: a dropped tick would arm no
// successor, so this one tries again every tickEvery until it is taken.
func (m *monitor) after(p sender, self etf.Pid, msg etf.Term, d time.Duration) func() bool {
	var (
		t         *time.Timer // guarded by tickMu after this function
		cancelled bool
		fire      func()
	)
	fire = func() {
		m.tickMu.Lock()
		defer m.tickMu.Unlock()
		if m.stopped || cancelled {
			return
		}
		if err := p.Send(self, msg); errors.Is(err, lib.ErrProcessMailboxFull) {
			t = time.AfterFunc(tickEvery, fire)
		}
	}
	t = time.AfterFunc(d, fire)
	return func() bool { cancelled = true; return t.Stop() }
}

// sendLater sends msg to the Monitor after a delay, unless the process has
// ended (the driver's postAfter). One such message is pending at a time
// (the driver's coalesced ring build), so only the last is kept to stop.
func (m *monitor) sendLater(p sender, self etf.Pid, msg interface{}, after time.Duration) {
	m.tickMu.Lock()
	defer m.tickMu.Unlock()
	if !m.stopped {
		m.laterCancel = m.after(p, self, msg, after)
	}
}

// scheduleTick arms the next tick in d, replacing a pending one, unless
// the process has ended.
func (m *monitor) scheduleTick(p sender, self etf.Pid, d time.Duration) {
	m.tickMu.Lock()
	defer m.tickMu.Unlock()
	if m.stopped {
		return
	}
	m.tickSeq++
	m.armLocked(p, self, time.Now(), d)
}

// armLocked replaces the pending tick with one due at now+d under the
// current sequence number (tickMu held).
func (m *monitor) armLocked(p sender, self etf.Pid, now time.Time, d time.Duration) {
	if m.tickCancel != nil {
		m.tickCancel()
	}
	m.tickAt = now.Add(d)
	m.tickCancel = m.after(p, self, tickMsg{seq: m.tickSeq}, d)
}

// ticked takes a tick message: false for one that was replaced.
func (m *monitor) ticked(msg tickMsg) bool {
	m.tickMu.Lock()
	defer m.tickMu.Unlock()
	if msg.seq != m.tickSeq || m.tickCancel == nil {
		return false
	}
	m.tickCancel = nil
	return true
}

// rearm schedules the next tick at the core's next deadline (see
// driver.nextTick) when none is pending or the pending one comes too late:
// an event may bring a deadline closer (a lost link's re-dial).
func (m *monitor) rearm(p *statem.Process) {
	if m.d == nil {
		return
	}
	now := time.Now()
	m.rearmIn(p, p.Self(), now, m.d.nextTick(now))
}

// rearmIn is rearm at now, the next deadline d away. A pending tick more
// than tickLost past its time is taken for lost and armed again: only a
// tick arms the next one, so a tick message that never arrives (dropped
// into a full mailbox, a timer that did not fire) would otherwise stop
// the heartbeats, re-dials and reconciliation for good.
func (m *monitor) rearmIn(p sender, self etf.Pid, now time.Time, d time.Duration) {
	m.tickMu.Lock()
	pending, at := m.tickCancel != nil, m.tickAt
	m.tickMu.Unlock()
	if pending && now.After(at.Add(tickLost)) {
		m.resendTick(p, self, now, d)
		return
	}
	if pending && !now.Add(d).Before(at.Add(-tickEvery)) {
		return
	}
	m.scheduleTick(p, self, d)
}

// resendTick arms the pending tick again, in d, under the same sequence
// number: if the first message was only late (a long mailbox), whichever
// comes first is the tick and the other is dropped as replaced (the tick
// arms its successor under a new number), so a slow mailbox cannot make
// every tick replace the one before it.
func (m *monitor) resendTick(p sender, self etf.Pid, now time.Time, d time.Duration) {
	m.tickMu.Lock()
	defer m.tickMu.Unlock()
	if m.stopped || m.tickCancel == nil {
		return
	}
	m.armLocked(p, self, now, d)
}

// State is the core's state (statem.Behavior); down before the first
// InitStateMachine.
func (m *monitor) State() listener.State {
	if m.d == nil {
		return listener.StateDown
	}
	return m.d.core.State()
}

// Allowed is the core's transition table (statem.Behavior).
func (m *monitor) Allowed(from, to listener.State) bool { return core.Allowed(from, to) }

// Logf logs through the Monitor's logger (statem.Behavior).
func (m *monitor) Logf(format string, args ...interface{}) { m.logf(format, args...) }

// Connected implements statem.Behavior: a reply to a caller whose node is
// no longer connected is dropped, because Ergo would dial that node on the
// Monitor's goroutine to send it (seconds for a frozen peer).
func (m *monitor) Connected(node string) bool { return m.cluster.ConnectedTo(node) }

// InitStateMachine sets the Monitor up in state down; it must not fail (a
// failing child Init hangs an Ergo supervisor), so all fallible work comes
// after, as messages to itself.
func (m *monitor) InitStateMachine(p *statem.Process) error {
	m.tickMu.Lock()
	m.stopped, m.tickCancel, m.laterCancel = false, nil, nil // a restart runs the same value again
	m.tickMu.Unlock()
	m.logf = m.opts.logf(slog.LevelInfo)
	n, _ := p.Env(node.EnvKeyNode).(node.Node)
	m.cluster.SetNode(n)
	m.tr = newErgoTransport(n, p, m.opts.MonitorName, m.opts.DialTimeout)
	self := p.Self()
	m.d = newDriver(p.Context(), m.opts, m.cluster, n.Name(), m.tr, time.Now,
		func(msg interface{}) { _ = p.Send(self, msg) }, m.logf)
	m.d.warnf = m.opts.logf(slog.LevelWarn)
	m.d.postAfter = func(msg interface{}, after time.Duration) { m.sendLater(p, self, msg, after) }
	if err := p.MonitorEvent(node.EventNetwork); err != nil {
		m.logf("cloister: monitor: cannot subscribe to network events (%v); relying on reconcile", err)
	}
	m.kick = nil
	if m.opts.Service != "" {
		m.kick = make(chan struct{}, 1)
		w := &discovery.Watcher{
			Resolver: m.opts.resolver(), Service: m.opts.Service, OTPApp: m.opts.OTPApp,
			Interval: m.opts.DiscoveryInterval, Connected: m.tr.Nodes, Logf: m.logf,
			Kick: m.kick,
		}
		m.d.goOwned(func(ctx context.Context) {
			w.Run(ctx, func(peers []string) { _ = p.Send(self, discoveredMsg{peers: peers}) })
		})
	}
	m.d.publish(listener.StateDown)
	_ = p.Send(self, startMsg{})
	m.scheduleTick(p, self, tickEvery)
	return nil
}

func result(ts []core.Transition, actions ...statem.Action) statem.Result[listener.State] {
	res := statem.Result[listener.State]{Actions: actions}
	for _, t := range ts {
		res.Transitions = append(res.Transitions, statem.Transition[listener.State]{From: t.From, To: t.To})
	}
	return res
}

// HandleEvent turns one Ergo event into a core event through the driver,
// then sets the next tick.
func (m *monitor) HandleEvent(p *statem.Process, ev statem.Event) statem.Result[listener.State] {
	res := m.handleEvent(p, ev)
	m.rearm(p)
	return res
}

func (m *monitor) handleEvent(p *statem.Process, ev statem.Event) statem.Result[listener.State] {
	switch e := ev.(type) {
	case statem.Info:
		switch msg := e.Msg.(type) {
		case startMsg:
			ts := m.d.start()
			// Peers joined before a restart of this process are peers
			// still: the shared state outlives it.
			for _, peer := range m.cluster.joinedPeers() {
				ts = append(ts, m.d.step(core.Join{Now: time.Now(), Node: peer})...)
			}
			return result(ts)
		case tickMsg:
			if !m.ticked(msg) {
				return result(nil)
			}
			m.tr.expire(time.Now())
			return result(m.d.tick())
		case node.MessageEventNetwork:
			if msg.Online {
				return result(m.d.step(core.NodeUp{Now: time.Now(), Node: msg.PeerName}))
			}
			m.kickResolver()
			return result(m.d.step(core.NodeDown{Now: time.Now(), Node: msg.PeerName}))
		case dialDoneMsg:
			return result(m.d.dialDone(msg))
		case rebuildMsg:
			m.d.rebuilt()
			return result(nil)
		case discoveredMsg:
			return result(m.d.step(core.Discovered{Now: time.Now(), Peers: msg.peers}))
		case ackReadyMsg:
			m.tr.AckLeave(msg.node)
			return result(nil)
		case etf.Tuple:
			if len(msg) == 2 && (msg[0] == leaveTag || msg[0] == leaveAckTag) {
				peer, ok := msg[1].(etf.Atom)
				if !ok || peer == "" {
					return result(nil)
				}
				if msg[0] == leaveTag {
					return result(m.d.step(core.LeaveNotice{Now: time.Now(), Node: string(peer)}))
				}
				return result(m.d.step(core.LeaveAck{Now: time.Now(), Node: string(peer)}))
			}
			if len(msg) == 4 && msg[0] == suspectTag {
				from, ok1 := msg[1].(etf.Atom)
				about, ok2 := msg[2].(etf.Atom)
				silent, ok3 := clusterstate.TermInt(msg[3])
				if !ok1 || !ok2 || !ok3 || from == "" || about == "" || silent < 0 {
					return result(nil)
				}
				now := time.Now()
				return result(m.d.step(core.SuspectNotice{Now: now, From: string(from), Node: string(about),
					LastSeen: now.Add(-time.Duration(silent))}))
			}
			if len(msg) == 2 {
				if ref, ok := msg[0].(etf.Ref); ok {
					if peer, ping, ok := m.tr.answered(ref); ok {
						if ping {
							if h, news, ok := parseHeartbeat(msg[1], atomPong); ok {
								return result(m.countLists(core.Pong{Now: time.Now(), Node: peer, Hash: h, News: news}))
							}
							return result(nil)
						}
						if st, ok := clusterstate.ParsePeerState(msg[1]); ok {
							m.tr.listensOn(peer, parseDistPort(msg[1]))
							leaves, leaving := parseLeave(msg[1])
							mp, _ := msg[1].(etf.Map)
							deltas, _ := mp[etf.Atom("list_deltas")].(bool)
							return result(m.d.step(core.ProbeReply{Now: time.Now(), Node: peer, OTPApp: st.OTPApp,
								Members: st.Members, Hash: st.Hash, HasHash: st.HasHash, Leaves: leaves, Leaving: leaving,
								Roles: st.Roles, Meta: st.Meta, Deltas: deltas,
								Watch: parseWatch(msg[1])}))
						}
					}
				}
			}
			if res, ok := m.multiCall(p, msg); ok {
				return res
			}
		}
		// Anything else (garbage from the network included) is ignored.
		return result(nil)
	case statem.Call:
		return m.call(e)
	case statem.Direct:
		switch e.Msg.(type) {
		case snapshotRequest:
			return result(nil, statem.DirectReply{Ref: e.Ref, Msg: m.cluster.Snapshot()})
		case clusterstate.LeaveRequest:
			done, ts := m.d.leave()
			return result(ts, statem.DirectReply{Ref: e.Ref, Msg: done})
		case clusterstate.JoinRequest:
			req := e.Msg.(clusterstate.JoinRequest)
			m.cluster.rememberJoin(req.Node)
			return result(m.d.step(core.Join{Now: time.Now(), Node: req.Node}), statem.DirectReply{Ref: e.Ref, Msg: "ok"})
		case clusterstate.StopRequest:
			if m.State() == listener.StateStopped {
				return result(nil, statem.DirectReply{Ref: e.Ref, Msg: "stopped"})
			}
			ts := m.d.step(core.Stop{Now: time.Now()})
			// Answer once the listener has heard stopping and stopped.
			m.d.disp.Flush(stopFlush)
			return result(ts, statem.DirectReply{Ref: e.Ref, Msg: "stopped"})
		}
		return result(nil, statem.DirectReply{Ref: e.Ref, Err: fmt.Errorf("cloister: monitor: unknown request %T", e.Msg)})
	}
	return result(nil)
}

// kickResolver re-resolves the service now and shortly after (service
// mode): a killed container's address leaves the answer within moments,
// which ends its flap grace (core) well before the grace runs out.
func (m *monitor) kickResolver() {
	if m.kick == nil {
		return
	}
	kick := m.kick
	for _, d := range resolveKicks() {
		time.AfterFunc(d, func() {
			select {
			case kick <- struct{}{}:
			default:
			}
		})
	}
}

// snapshotRequest asks the Monitor (through process Direct) for a fresh
// snapshot. Code outside the Monitor normally reads the published snapshot (shared.Snapshot).
type snapshotRequest struct{}

func (m *monitor) call(e statem.Call) statem.Result[listener.State] {
	switch msg := e.Msg.(type) {
	case etf.Atom:
		if msg == "state" {
			clusterstate.Lists.StateAnswers.Add(1)
			reply := statem.Reply{From: e.From, Msg: m.stateTerm(string(e.From.Pid.Node))}
			// A peer Monitor asking is a cloister node: probe it back,
			// it may have asked before its own Monitor was registered.
			if from := string(e.From.Pid.Node); from != "" && from != m.cluster.Self() {
				m.d.core.Answered(from) // it holds our list now
				return result(m.d.step(core.ProbedBy{Now: time.Now(), Node: from}), reply)
			}
			return result(nil, reply)
		}
	case etf.Tuple:
		if (len(msg) == 2 || len(msg) == 5) && msg[0] == atomPing {
			// The pong is built after the step: the ping's news may have
			// changed what we hold of the peer's list, which it tells.
			h, news, ok := parseHeartbeat(msg, atomPing)
			from := string(e.From.Pid.Node)
			var ts []core.Transition
			if ok && from != "" && from != m.cluster.Self() {
				ts = m.countLists(core.PingedBy{Now: time.Now(), Node: from, Hash: h, News: news})
			}
			var answer *core.ListNews
			if len(msg) == 5 {
				if answer = m.d.core.News(from); answer == nil {
					answer = &core.ListNews{} // long form asked, long form answered
				}
			}
			return result(ts, statem.Reply{From: e.From, Msg: heartbeat(atomPong, m.d.core.MembersHash(), answer)})
		}
		if len(msg) == 3 && msg[0] == etf.Atom("whois") {
			return result(nil, statem.Reply{From: e.From, Msg: m.whois(msg[1], msg[2])})
		}
		if len(msg) == 4 && msg[0] == etf.Atom("whois_n") {
			return result(nil, statem.Reply{From: e.From, Msg: m.whoisN(msg[1], msg[2], msg[3])})
		}
	}
	return result(nil, statem.Reply{From: e.From, Msg: etf.Tuple{etf.Atom("error"), etf.Atom("unknown_call")}})
}

// multiCall answers Erlang's gen_server:multi_call, whose request
// {'$gen_call', From, Req} Ergo does not recognise as a call (it lands in
// HandleInfo); multiCallFrom reads both forms of From (OTP 25, OTP 27+).
func (m *monitor) multiCall(p *statem.Process, msg etf.Tuple) (statem.Result[listener.State], bool) {
	if len(msg) != 3 || msg[0] != etf.Atom("$gen_call") {
		return result(nil), false
	}
	to, tag, pid, ok := multiCallFrom(msg[1])
	if !ok {
		return result(nil), false
	}
	res := m.call(statem.Call{From: gen.ServerFrom{Pid: pid}, Msg: msg[2]})
	var rest []statem.Action
	for _, a := range res.Actions {
		if r, ok := a.(statem.Reply); ok && r.From.Pid == pid && r.From.Ref == (etf.Ref{}) {
			// As statem's Reply does: never dial from the Monitor's goroutine.
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
func (m *monitor) whois(group, key etf.Term) etf.Term {
	snap, term, k, bad := m.lookupArgs(group, key, true)
	if bad != nil {
		return bad
	}
	owner, err := ringx.OwnerTerm(snap, term, func(etf.Term) string { return k })
	if err != nil {
		return etf.Tuple{etf.Atom("error"), []byte(err.Error())}
	}
	return etf.Tuple{etf.Atom("ok"), etf.Atom(owner)}
}

// lookupArgs checks a whois request's group and key (ok false makes it
// badarg) and finds the ring: its view, the key as the term to hash and as
// text, or the error answer. A libring ring hashes the key as the term it
// arrived as, as Elixir's libring does; Ergo decodes a charlist into a Go
// string, so it is turned back into one. Other engines look up its text.
func (m *monitor) lookupArgs(group, key etf.Term, ok bool) (*ring.View, etf.Term, string, etf.Term) {
	g, ok1 := termString(group)
	k, ok2 := termString(key)
	if !ok || !ok1 || !ok2 {
		return nil, nil, "", etf.Tuple{etf.Atom("error"), etf.Atom("badarg")}
	}
	if g == "" || g == "default" {
		g = m.cluster.Ring
	}
	snap, err := m.cluster.Rings.Get(g)
	if err != nil {
		return nil, nil, "", etf.Tuple{etf.Atom("error"), []byte(err.Error())}
	}
	var term etf.Term = key
	if s, ok := key.(string); ok {
		term = etf.Charlist(s)
	}
	return snap, term, k, nil
}

// whoisN answers {whois_n, Group, Key, N} (Group and Key as for whois, N
// an integer ≥ 1) with {ok, [Node]}, the key's replica set as WhoisN gives
// it (on a libring ring, key_to_nodes/3 of the key as the term it arrived
// as), or {error, Reason}.
func (m *monitor) whoisN(group, key, count etf.Term) etf.Term {
	c, _ := clusterstate.TermInt(count)
	n := int(c)
	snap, term, k, bad := m.lookupArgs(group, key, n >= 1)
	if bad != nil {
		return bad
	}
	owners, err := ringx.AppendOwnersTerm(snap, make([]string, 0, min(n, snap.Len())), term, n, func(etf.Term) string { return k })
	if err != nil {
		return etf.Tuple{etf.Atom("error"), []byte(err.Error())}
	}
	return etf.Tuple{etf.Atom("ok"), atoms(owners)}
}

// termString is clusterstate.TermText that also reads [] (the empty
// charlist, which ETF does not turn into a Go string).
func termString(t etf.Term) (string, bool) {
	if l, ok := t.(etf.List); ok && len(l) == 0 {
		return "", true
	}
	return clusterstate.TermText(t)
}

// stateTerm is the answer to gen_server:call(Monitor, state) from a process
// on node caller: the shape an Elixir cloister 0.16 Monitor gives (fsm,
// ring, groups), and for callers that are not BEAM nodes (this node, Go
// peers) a few keys of ours besides. A BEAM caller gets exactly the three
// keys, so Cloister.multicall(Cloister.Monitor, :state) returns maps of one
// shape from Go and Elixir nodes alike.
func (m *monitor) stateTerm(caller string) etf.Term {
	members := m.d.core.Members()
	cluster := append([]string{m.cluster.Self()}, m.tr.Nodes()...)
	st := etf.Map{
		etf.Atom("fsm"):  []byte("monitor_" + m.opts.OTPApp),
		etf.Atom("ring"): etf.Atom(m.cluster.Ring),
		etf.Atom("groups"): etf.List{
			etf.Tuple{etf.Atom("ring"), atoms(members)},
			etf.Tuple{etf.Atom("cluster"), atoms(cluster)},
		},
	}
	if caller != "" && distfilter.IsBEAM(m.cluster.Self(), caller) {
		return st
	}
	st[etf.Atom("state")] = etf.Atom(m.State())
	st[etf.Atom("consensus")] = m.opts.Consensus
	st[etf.Atom("otp_app")] = []byte(m.opts.OTPApp)
	// Go cloister peers only: this node takes leave notices, and whether
	// it is leaving (an Elixir cloister would not know the notice).
	st[etf.Atom("leaves")] = true
	st[etf.Atom("leaving")] = m.d.core.Leaving()
	// It takes the long ping (list deltas, see heartbeat).
	if !clusterstate.NoListDeltas {
		st[etf.Atom("list_deltas")] = true
	}
	// The neighbour watch this node runs: peers narrow theirs only when
	// every member runs the same.
	if m.opts.WatchNeighbours > 0 {
		st[etf.Atom("watch")] = int64(m.opts.WatchNeighbours)
	}
	if sn, err := m.cluster.Rings.Get(m.cluster.Ring); err == nil {
		st[etf.Atom("epoch")] = int64(sn.Epoch())
		st[etf.Atom("hash")] = []byte(fmt.Sprintf("%016x", sn.Hash()))
	}
	// Where this node listens: a peer that loses the link dials there
	// first, and a refusal tells it at once that this node is gone.
	if port := ergonode.ListenPort(m.tr.node); port != 0 {
		st[etf.Atom("dist_port")] = int64(port)
	}
	// The members' hash as a ping carries it: a peer that reads it pings us.
	st[etf.Atom("members_hash")] = hashBytes(m.d.core.MembersHash())
	// What this node announces about itself: its roles, which restrict
	// rings, travel with its membership (see core.ProbeReply).
	if len(m.opts.Roles) > 0 || len(m.opts.Meta) > 0 {
		roles := etf.List{}
		for _, r := range m.opts.roles() {
			roles = append(roles, []byte(r))
		}
		// Metadata as [{Key, Value}] binaries (a map keyed by binaries
		// cannot be built in Go).
		meta := etf.List{}
		for _, kv := range m.opts.Meta {
			k, v, _ := strings.Cut(kv, "=")
			meta = append(meta, etf.Tuple{[]byte(k), []byte(v)})
		}
		st[etf.Atom("roles")], st[etf.Atom("meta")] = roles, meta
	}
	// Every member's roles and metadata, for a caller outside the ring
	// (`cloister status`); members learn them from each other's answers.
	if !slices.Contains(members, caller) {
		addMemberRoles(st, m.cluster.Snapshot())
	}
	return st
}

// addMemberRoles puts the members' roles and metadata of snapshot s into
// a state answer: member_roles => [{Node, [Role]}] and member_meta =>
// [{Node, [{Key, Value}]}] (binaries), members without any left out.
func addMemberRoles(st etf.Map, s listener.Snapshot) {
	roles, meta := etf.List{}, etf.List{}
	for _, n := range s.Members {
		if rs := s.Roles[n]; len(rs) > 0 {
			l := make(etf.List, len(rs))
			for i, r := range rs {
				l[i] = []byte(r)
			}
			roles = append(roles, etf.Tuple{etf.Atom(n), l})
		}
		if md := s.Meta[n]; len(md) > 0 {
			l := etf.List{}
			for _, k := range slices.Sorted(maps.Keys(md)) {
				l = append(l, etf.Tuple{[]byte(k), []byte(md[k])})
			}
			meta = append(meta, etf.Tuple{etf.Atom(n), l})
		}
	}
	st[etf.Atom("member_roles")], st[etf.Atom("member_meta")] = roles, meta
}

// countLists steps a ping or pong and adds the deltas it applied or
// missed to clusterstate.Lists.
func (m *monitor) countLists(ev core.Event) []core.Transition {
	applied, missed := m.d.core.ListStats()
	ts := m.d.step(ev)
	a, b := m.d.core.ListStats()
	clusterstate.Lists.Deltas.Add(int64(a - applied))
	clusterstate.Lists.DeltaMisses.Add(int64(b - missed))
	return ts
}

// parseLeave reads the leave keys of a Go cloister's state answer: whether
// it takes leave notices and whether it is leaving. Anything else (an
// Elixir cloister's answer) takes none and is not leaving.
func parseLeave(t etf.Term) (leaves, leaving bool) {
	mp, _ := t.(etf.Map)
	leaves, _ = mp[etf.Atom("leaves")].(bool)
	leaving, _ = mp[etf.Atom("leaving")].(bool)
	return leaves, leaving
}

// parseWatch reads the neighbour watch a Go cloister's state answer
// gives (0 when absent).
func parseWatch(t etf.Term) int {
	mp, _ := t.(etf.Map)
	k, _ := clusterstate.TermInt(mp[etf.Atom("watch")])
	if k < 1 || k > 1<<16 {
		return 0
	}
	return int(k)
}

// parseDistPort reads the distribution port a Go cloister's state answer
// gives (0 when absent: an Elixir cloister, or an older Go one).
func parseDistPort(t etf.Term) uint16 {
	mp, _ := t.(etf.Map)
	p, _ := clusterstate.TermInt(mp[etf.Atom("dist_port")])
	if p < 1 || p > 65535 {
		return 0
	}
	return uint16(p)
}

// TerminateStateMachine runs the orderly shutdown if it has not run
// (stopping → stopped, each change told to the listener, which gets a
// moment to finish) and stops the goroutines the Monitor started.
func (m *monitor) TerminateStateMachine(p *statem.Process, state listener.State, reason string) {
	if m.d == nil {
		return
	}
	if !m.d.stop() {
		m.logf("cloister: monitor: goroutines still running %s after the stop", stopWait)
	}
}

func atoms(ss []string) etf.List {
	l := make(etf.List, len(ss))
	for i, s := range ss {
		l[i] = etf.Atom(s)
	}
	return l
}
