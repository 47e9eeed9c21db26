package actors

import (
	"context"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/cloister-go/cloister/internal/core"
	"github.com/cloister-go/cloister/internal/dispatcher"
	"github.com/cloister-go/cloister/internal/listenerx"
	"github.com/cloister-go/cloister/internal/ringx"
	"github.com/cloister-go/cloister/listener"
	"github.com/cloister-go/cloister/ring"
)

// driver carries out the core's decisions: it feeds the core events, runs
// each effect through a transport, publishes the cluster's snapshot and
// tells the listener and the observer. It holds no state of the Monitor's
// own (the core does) and does no Ergo calls (the transport does), so it
// runs in-process in tests with a fake transport and a fake clock.
//
// Every method runs on one goroutine (the Monitor's). The goroutines it
// starts (dials, disconnects, discovery) are counted in wg and watch ctx,
// which stop cancels.
type driver struct {
	opts    Options
	core    *core.Core
	tr      transport
	cluster *shared
	self    string
	disp    *dispatcher.Dispatcher
	logf    func(string, ...interface{})
	warnf   func(string, ...interface{}) // trouble; logf unless set
	now     func() time.Time
	// post hands a message back to the Monitor's goroutine (the result of
	// a dial); it must not block.
	post func(msg interface{})
	// postAfter is post after a delay (a timer the Monitor stops with its
	// process); unset, it posts at once.
	postAfter func(msg interface{}, after time.Duration)

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// failing remembers, per peer that cannot be reached, the last error
	// logged, so a peer re-dialled forever is logged on change and then
	// once a minute, not on every attempt.
	failing map[string]*dialFailure
	// unhandled counts effects the driver has no case for (a bug; a test
	// feeds every effect type and expects none).
	unhandled int
	// pending is a member list published by the core whose rings are not
	// built yet; rebuildQueued: a rebuildMsg is on its way (see step).
	pending       []string
	pendingRoles  map[string][]string
	rebuildQueued bool

	// heard is each ring as the listener last heard it, to tell it the
	// ranges gained and lost since (listener.Snapshot.RingChanges).
	heard map[string]*ring.View
	// acks are the leaves to acknowledge once the listener heard this
	// step's changes.
	acks []string
	// left is closed when this node's leave is over (clusterstate.LeaveRequest).
	left chan struct{}
	// ringRole: the role a restricted ring's members need (Options.RingRoles).
	ringRole map[string]string
	// reads: the links' last reads, refilled at every tick.
	reads map[string]time.Time
	// keepaliveAt: the next keepalive tick (zero: the first tick is one).
	keepaliveAt time.Time
}

// rebuildMsg asks the driver, through the Monitor's mailbox, to build the
// rings of the pending member list.
type rebuildMsg struct{}

// later posts msg after a delay (see postAfter).
func (d *driver) later(msg interface{}, after time.Duration) {
	if d.postAfter == nil {
		d.post(msg)
		return
	}
	d.postAfter(msg, after)
}

// ackReadyMsg: the listener heard the change a leave made; acknowledge it.
type ackReadyMsg struct{ node string }

type dialFailure struct {
	reason   string // the error without addresses, to tell a change of cause
	attempts int
	since    time.Time
	logged   time.Time
}

// dialDoneMsg is a dial's result, handed back to the Monitor's goroutine.
type dialDoneMsg struct {
	node string
	err  error
	gone bool
}

func newDriver(parent context.Context, o Options, c *shared, self string, tr transport,
	now func() time.Time, post func(interface{}), logf func(string, ...interface{})) *driver {
	l := o.Listener
	if l == nil {
		l = listenerx.Logger{Logf: logf}
	}
	ctx, cancel := context.WithCancel(parent)
	return &driver{
		opts: o, tr: tr, cluster: c, self: self, logf: logf, warnf: logf, now: now, post: post,
		ctx: ctx, cancel: cancel, failing: map[string]*dialFailure{},
		heard: map[string]*ring.View{},
		disp:  dispatcher.New(l, logf, listenerSlow),
		core:  core.New(o.coreConfig(self)), ringRole: o.ringRoles(),
		reads: map[string]time.Time{},
	}
}

// start starts the core.
func (d *driver) start() []core.Transition {
	return d.step(core.Start{Now: d.now()})
}

// tick feeds a Tick, with the connection list when reconciliation is due.
func (d *driver) tick() []core.Transition {
	now := d.now()
	d.expireFailures(now)
	// The links write keepalives at the Monitor's keepalive ticks: a Monitor that
	// stops running stops them, and its peers then ping it and find it
	// silent.
	if !now.Before(d.keepaliveAt) {
		d.tr.Keepalive(keepaliveBusy(d.opts.SuspectAfter), d.core.KeepaliveTo())
		d.keepaliveAt = keepaliveAt(now, d.opts.SuspectAfter)
	}
	d.tr.LinkReads(d.reads)
	t := core.Tick{Now: now, LinkRead: d.reads}
	if d.core.ReconcileDue(now) {
		t.Connected = d.tr.Nodes()
		if t.Connected == nil {
			t.Connected = []string{}
		}
	}
	return d.step(t)
}

// nextTick is how long until the next tick: at the core's next deadline,
// no sooner than tickEvery, and no later than the next keepalive tick.
func (d *driver) nextTick(now time.Time) time.Duration {
	every := keepaliveEvery(d.opts.SuspectAfter)
	slow := every
	if !d.keepaliveAt.IsZero() {
		// a wall clock set back or forward moves the grid: never wait
		// longer than a period
		slow = min(max(d.keepaliveAt.Sub(now), 0), every)
	}
	at := d.core.NextTick()
	if at.IsZero() {
		return slow
	}
	return min(max(at.Sub(now), tickEvery), slow)
}

// dialDone feeds a dial's result, logging failures (see noteDial).
func (d *driver) dialDone(m dialDoneMsg) []core.Transition {
	now := d.now()
	d.noteDial(m.node, m.err, now)
	return d.step(core.DialDone{Now: now, Node: m.node, Err: m.err, Gone: m.gone})
}

// step feeds the core one event and carries out its effects, then
// publishes the snapshot and tells the listener of every transition, in
// order. It returns the transitions.
func (d *driver) step(ev core.Event) []core.Transition {
	fx := d.core.Step(ev)
	if d.opts.Debug {
		if _, tick := ev.(core.Tick); !tick || len(fx) > 0 {
			d.logf("cloister: debug: %T %+v -> %+v", ev, ev, fx)
		}
	}
	var changes []core.Transition
	published := false
	for _, f := range fx {
		if d.opts.Observe != nil {
			if e, ok := observed(f); ok {
				d.opts.Observe(e)
			}
		}
		t, pub := d.apply(f)
		if t != nil {
			changes = append(changes, *t)
		}
		published = published || pub
	}
	if d.pending != nil {
		// A transition is told to the listener with the rings as they are
		// now, so they are built at once. Without one (a member joined
		// while consensus is still short), the build waits rebuildDelay
		// for a message to self: the joins that come in the meantime are
		// then built once, not once each.
		if len(changes) > 0 {
			d.rebuild()
		} else if !d.rebuildQueued {
			d.rebuildQueued = true
			d.later(rebuildMsg{}, rebuildDelay)
		}
	}
	switch ev.(type) {
	case core.Pong, core.PingedBy:
		// A heartbeat: without an effect the only thing it can change on
		// /status is a suspect cleared.
		if !published && len(changes) == 0 {
			if sus := d.cluster.Snapshot().Suspects; len(sus) > 0 && !slices.Equal(d.core.Suspects(), sus) {
				d.publish(d.core.State())
			}
			return changes
		}
	}
	if len(changes) > 0 {
		// One snapshot per state entered, in order, each told to the
		// listener with that snapshot; the rings are already rebuilt.
		for _, t := range changes {
			d.publish(t.To)
			snap := d.cluster.Snapshot()
			snap.RingChanges = d.ringChanges()
			d.disp.Notify(t.From, t.To, snap)
		}
	} else if published {
		d.publish(d.core.State())
	} else if t, tick := ev.(core.Tick); !tick || t.Connected != nil {
		// Connections of non-members change what /status shows too.
		d.publishIfChanged()
	}
	// A leave is acknowledged once the listener heard what it changed.
	for _, n := range d.acks {
		d.disp.After(func() { d.post(ackReadyMsg{node: n}) })
	}
	d.acks = d.acks[:0]
	return changes
}

// ringChanges lists, per ring changed since the listener last heard it,
// the hash ranges this node gained and lost (sorted by ring name).
func (d *driver) ringChanges() []listener.RingChange {
	var out []listener.RingChange
	snaps := ringx.Views(d.cluster.Rings)
	for _, name := range d.cluster.Rings.Names() {
		cur, old := snaps[name], d.heard[name]
		if cur == old || (old != nil && cur.Hash() == old.Hash()) {
			continue
		}
		d.heard[name] = cur
		gained, lost := ring.DiffRanges(old, cur, d.self)
		if len(gained) == 0 && len(lost) == 0 {
			continue
		}
		out = append(out, listener.RingChange{Ring: name, Epoch: cur.Epoch(), Gained: gained, Lost: lost})
	}
	return out
}

// leave starts this node's graceful leave; the channel is closed when it
// is over (every member told acknowledged, or went away). Asked again, it
// returns the same channel.
func (d *driver) leave() (<-chan struct{}, []core.Transition) {
	if d.left != nil {
		return d.left, nil
	}
	d.left = make(chan struct{})
	ts := d.step(core.Leave{Now: d.now()})
	if !d.core.Leaving() {
		// Not running (down, stopping, stopped): nobody to tell.
		d.closeLeft()
	}
	return d.left, ts
}

func (d *driver) closeLeft() {
	if d.left == nil {
		d.left = make(chan struct{})
	}
	select {
	case <-d.left:
	default:
		close(d.left)
	}
}

// apply carries out one effect. It returns the transition if f is one,
// and whether the snapshot must be published.
func (d *driver) apply(f core.Effect) (*core.Transition, bool) {
	switch e := f.(type) {
	case core.Transition:
		return &e, false
	case core.Dial:
		d.dial(e.Node, d.core.AwaitsGone(e.Node))
	case core.Probe:
		d.tr.Probe(e.Node)
	case core.Ping:
		d.tr.Ping(e.Node, d.core.MembersHash(), d.core.News(e.Node))
	case core.Disconnect:
		d.warnf("cloister: %s silent for %s: removed and disconnected", e.Node, d.opts.RemoveAfter)
		d.disconnect(e.Node)
	case core.Publish:
		// Built at the end of the step, or coalesced (see step).
		d.pending, d.pendingRoles = e.Members, e.Roles
		return nil, true
	case core.Suspect:
		d.warnf("cloister: %s suspected: no heartbeat answer for %s", e.Node, e.Silence.Round(time.Millisecond))
		return nil, true
	case core.Grace:
		d.warnf("cloister: lost the connection to member %s; it stays in the rings for %s (flap grace) while it is re-dialled", e.Node, e.For)
		return nil, true
	case core.Recovered:
		d.logf("cloister: %s is back after %s, within the flap grace: rings unchanged", e.Node, e.After.Round(time.Millisecond))
		return nil, true
	case core.Removed:
		if e.Reason != listener.RemovedSilent { // the Disconnect line says it
			d.warnf("cloister: %s removed from the rings: %s", e.Node, listenerx.Describe(e.Reason))
		}
	case core.Stalled:
		d.warnf("cloister: this node did not run for %s (frozen, suspended or starved): members get a fresh heartbeat window", e.For.Round(time.Millisecond))
	case core.SendLeave:
		d.tr.Leave(e.Node)
	case core.SendSuspect:
		for _, n := range e.To {
			d.tr.Suspect(n, e.Node, e.Silent)
		}
	case core.AckLeave:
		d.logf("cloister: %s is leaving: acknowledged once the listener has heard", e.Node)
		d.acks = append(d.acks, e.Node)
	case core.LeaveDone:
		if len(e.Missing) > 0 {
			d.logf("cloister: leave: %d members went away before acknowledging: %v", len(e.Missing), e.Missing)
		}
		d.closeLeft()
		return nil, true
	default:
		d.unhandled++
		d.warnf("cloister: monitor: BUG: effect %T not handled", f)
	}
	return nil, false
}

// rebuild builds every ring from the pending member list.
func (d *driver) rebuild() {
	for _, name := range d.cluster.Rings.Names() {
		members := core.WithRole(d.pending, d.pendingRoles, d.ringRole[name])
		if _, _, err := d.cluster.Rings.Update(name, members); err != nil {
			d.warnf("cloister: ring %s: %v", name, err)
		}
	}
	d.pending, d.pendingRoles = nil, nil
}

// rebuilt handles a rebuildMsg: the coalesced build, then a snapshot.
func (d *driver) rebuilt() {
	d.rebuildQueued = false
	if d.pending != nil {
		d.rebuild()
		d.publish(d.core.State())
	}
}

// observed is the public event for an effect (none for a probe or a ping:
// too frequent, and not a decision).
func observed(f core.Effect) (listener.Event, bool) {
	switch e := f.(type) {
	case core.Transition:
		return listener.Transition{From: e.From, To: e.To}, true
	case core.Dial:
		return listener.DialStarted{Node: e.Node}, true
	case core.Disconnect:
		return listener.Disconnected{Node: e.Node}, true
	case core.Publish:
		return listener.RingsRebuilt{Members: slices.Clone(e.Members)}, true
	case core.Suspect:
		return listener.Suspected{Node: e.Node, Silence: e.Silence}, true
	case core.Grace:
		return listener.GraceStarted{Node: e.Node, For: e.For}, true
	case core.Recovered:
		return listener.Recovered{Node: e.Node, After: e.After}, true
	case core.Removed:
		return listener.Removed{Node: e.Node, Reason: e.Reason}, true
	case core.Stalled:
		return listener.Stalled{For: e.For}, true
	case core.SendLeave:
		return listener.LeaveSent{Node: e.Node}, true
	case core.AckLeave:
		return listener.LeaveAcked{Node: e.Node}, true
	case core.LeaveDone:
		return listener.LeaveDone{Missing: slices.Clone(e.Missing)}, true
	}
	return nil, false
}

// dial connects to peer on a goroutine of the driver's, bounded by
// DialTimeout and cancelled by stop; the result comes back through post.
// checkGone: a failure is examined for a gone process (see
// core.AwaitsGone).
func (d *driver) dial(peer string, checkGone bool) {
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		ctx, cancel := context.WithTimeout(d.ctx, d.opts.DialTimeout)
		defer cancel()
		gone, err := d.tr.Connect(ctx, peer, checkGone)
		if d.ctx.Err() != nil {
			return // stopped: nobody to tell
		}
		d.post(dialDoneMsg{node: peer, err: err, gone: gone})
	}()
}

// disconnect drops the link off the Monitor's goroutine (Ergo's close may
// wait on the connection).
func (d *driver) disconnect(peer string) {
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		d.tr.Disconnect(peer)
	}()
}

// goOwned runs f on a goroutine counted in wg; f must return once ctx is
// done.
func (d *driver) goOwned(f func(ctx context.Context)) {
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		f(d.ctx)
	}()
}

// stop cancels the driver's goroutines, runs the orderly shutdown if it
// has not run (stopping → stopped, told to the listener) and closes the
// listener's dispatcher. It reports whether every goroutine returned
// within stopWait.
func (d *driver) stop() bool {
	d.cancel()
	d.step(core.Stop{Now: d.now()})
	d.disp.Close(stopFlush)
	return waitGroup(&d.wg, stopWait)
}

// noteDial logs why a peer cannot be reached: the first failure, every
// change of cause, then once every dialLogEvery while it lasts; and the
// success that ends a run of failures.
func (d *driver) noteDial(peer string, err error, now time.Time) {
	f := d.failing[peer]
	if err == nil {
		if f != nil {
			d.logf("cloister: connected to %s after %d failed attempts over %s", peer, f.attempts, now.Sub(f.since).Round(time.Millisecond))
			delete(d.failing, peer)
		}
		return
	}
	reason := failureCause(err)
	if f == nil {
		if len(d.failing) >= maxDialFailuresKept {
			return // a flood of bad names; each is still retried
		}
		f = &dialFailure{since: now}
		d.failing[peer] = f
	}
	f.attempts++
	if reason != f.reason || now.Sub(f.logged) >= dialLogEvery {
		d.warnf("cloister: cannot connect to %s (attempt %d, failing for %s, retrying with backoff): %s",
			peer, f.attempts, now.Sub(f.since).Round(time.Millisecond), err.Error())
		f.reason, f.logged = reason, now
	}
}

func (d *driver) expireFailures(now time.Time) {
	for peer, f := range d.failing {
		if now.Sub(f.logged) > dialForget {
			delete(d.failing, peer)
		}
	}
}

// publish refreshes the shared snapshot, in state s.
func (d *driver) publish(s core.State) { d.cluster.publish(d.build(s)) }

// publishIfChanged publishes when the connected set or the suspects differ
// from the published ones (members and state changes publish always).
func (d *driver) publishIfChanged() {
	old := d.cluster.Snapshot()
	conn := d.connected()
	if !slices.Equal(conn, old.Connected) || !slices.Equal(d.core.Suspects(), old.Suspects) {
		d.publish(d.core.State())
	}
}

// connected is the sorted connection list.
func (d *driver) connected() []string {
	conn := d.tr.Nodes()
	sort.Strings(conn)
	return conn
}

func (d *driver) build(s core.State) listener.Snapshot {
	members := slices.Clone(d.core.Members())
	rings := map[string]listener.Ring{}
	for name, sn := range ringx.Views(d.cluster.Rings) {
		rings[name] = listener.Ring{Members: sn.Members(), Epoch: sn.Epoch(), Hash: sn.Hash()}
	}
	return listener.Snapshot{
		Node: d.self, OTPApp: d.opts.OTPApp, State: s, Consensus: d.opts.Consensus,
		Members: members, Rings: rings, Connected: d.connected(), Suspects: d.core.Suspects(),
		Leaving: d.core.Leaving(),
		Roles:   maps.Clone(d.core.Roles()), Meta: d.core.Meta(),
		Flags: listener.Flags{
			Alive:     s != listener.StateStopping && s != listener.StateStopped,
			Clustered: len(members) > 1,
			Sentry:    d.core.SelfIsSentry(),
		},
		At: d.now(),
	}
}
