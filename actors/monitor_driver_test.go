package actors

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloister-go/cloister/internal/core"
	"github.com/cloister-go/cloister/listener"
)

// These tests run the Monitor's driver in-process, with a fake transport
// and a fake clock: every step is deterministic and "nothing happened for
// ten seconds" costs no wall-clock time. The real-process tests (tests/
// cluster, tests/failures) keep one end-to-end check per behaviour.

// fakeNet is the network as the driver sees it through the transport.
type fakeNet struct {
	mu        sync.Mutex
	connected map[string]bool
	// up: the peer's node accepts connections; answers: its Monitor
	// answers probes (false for a frozen peer); gone: its process is dead
	// (a dial proves it); hang: a dial to it never ends by itself (only
	// when the driver cancels it).
	up, answers, gone, hang map[string]bool
	// leaves: the peer's answers say it takes leave notices (a Go
	// cloister); leaving: they say it is leaving.
	leaves, leaving  map[string]bool
	leaveSent, acked []string
	otpApp           map[string]string
	roles            map[string][]string // what each peer announces
	probes           []string
	disconnects      []string
	events           []core.Event // node events the driver will hear
	connecting       int          // Connect calls in flight
	returned         int          // Connect calls returned, in all
	// linkRead: when each link last read a byte (ergonode.Links);
	// keepalive: the last Keepalive asked.
	linkRead   map[string]time.Time
	keepalives []time.Duration
	// keepaliveTo: the links the last Keepalive was for (nil: all);
	// suspects: the suspicions sent, "peer:node".
	keepaliveTo []string
	suspects    []string
	// hash, when set, is the members hash the peers answer probes with
	// (Go cloisters that agree with us, so they get pings); nil: they
	// answer without one (as Elixir cloisters do).
	hash func() uint64
	// watch: the neighbour watch the peers' answers announce (0: none).
	watch int
}

func newFakeNet() *fakeNet {
	return &fakeNet{connected: map[string]bool{}, up: map[string]bool{}, answers: map[string]bool{},
		gone: map[string]bool{}, hang: map[string]bool{}, otpApp: map[string]string{},
		leaves: map[string]bool{}, leaving: map[string]bool{}, roles: map[string][]string{},
		linkRead: map[string]time.Time{}}
}

func (f *fakeNet) LinkReads(dst map[string]time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(dst)
	for n, at := range f.linkRead {
		if f.connected[n] {
			dst[n] = at
		}
	}
}

func (f *fakeNet) Keepalive(idle time.Duration, only []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.keepalives = append(f.keepalives, idle)
	f.keepaliveTo = only
}

func (f *fakeNet) Suspect(peer, node string, silent time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.suspects = append(f.suspects, peer+":"+node)
}

func (f *fakeNet) Nodes() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for n, c := range f.connected {
		if c {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

func (f *fakeNet) Connect(ctx context.Context, peer string, checkGone bool) (bool, error) {
	f.mu.Lock()
	f.connecting++
	hang := f.hang[peer]
	f.mu.Unlock()
	defer func() { f.mu.Lock(); f.connecting--; f.returned++; f.mu.Unlock() }()
	if hang {
		<-ctx.Done()
		return false, fmt.Errorf("dial %s: %w", peer, ctx.Err())
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.up[peer] {
		return checkGone && f.gone[peer], errors.New("no route to node")
	}
	if !f.connected[peer] {
		f.connected[peer] = true
		f.events = append(f.events, core.NodeUp{Node: peer})
	}
	return false, nil
}

func (f *fakeNet) Disconnect(peer string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.disconnects = append(f.disconnects, peer)
	if f.connected[peer] {
		f.connected[peer] = false
		f.events = append(f.events, core.NodeDown{Node: peer})
	}
}

func (f *fakeNet) Probe(peer string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.probes = append(f.probes, peer)
	if f.connected[peer] && f.answers[peer] {
		app := f.otpApp[peer]
		if app == "" {
			app = "cloister"
		}
		pr := core.ProbeReply{Node: peer, OTPApp: app,
			Leaves: f.leaves[peer], Leaving: f.leaving[peer], Roles: f.roles[peer]}
		if f.hash != nil {
			pr.Hash, pr.HasHash = f.hash(), true
		}
		pr.Watch = f.watch
		f.events = append(f.events, pr)
	}
}

func (f *fakeNet) Leave(peer string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.connected[peer] {
		f.leaveSent = append(f.leaveSent, peer)
	}
}

func (f *fakeNet) AckLeave(peer string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.connected[peer] {
		f.acked = append(f.acked, peer)
	}
}

// Ping answers like Probe, with a Pong carrying the same hash (the fake
// peers agree with us).
func (f *fakeNet) Ping(peer string, hash uint64, _ *core.ListNews) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.probes = append(f.probes, peer)
	if f.connected[peer] && f.answers[peer] {
		f.events = append(f.events, core.Pong{Node: peer, Hash: hash})
	}
}

// drop cuts the connection to peer from the peer's side (a kill, a flap).
func (f *fakeNet) drop(peer string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.connected[peer] {
		f.connected[peer] = false
		f.events = append(f.events, core.NodeDown{Node: peer})
	}
}

func (f *fakeNet) set(m map[string]bool, peer string, v bool) {
	f.mu.Lock()
	m[peer] = v
	f.mu.Unlock()
}

func (f *fakeNet) take() []core.Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	evs := f.events
	f.events = nil
	return evs
}

// rig is a driver with its fake network, clock, listener and observer.
type rig struct {
	t     *testing.T
	d     *driver
	net   *fakeNet
	c     *shared
	now   time.Time
	start time.Time

	mu                      sync.Mutex
	lastReply               map[string]time.Time // when each peer's Monitor last answered
	posted                  []interface{}
	dialsStarted, dialsDone int      // dials begun and dialDoneMsg posted, in all
	events                  []string // observed, as "at=1.250s removed b@h gone"
	changes                 []string // told to the listener: "from>to state=<snapshot state>"
	snaps                   []listener.Snapshot
	// hold, when set, blocks the listener until it is closed.
	hold chan struct{}
	logs []string
	// later: messages posted with a delay (useTimers), delivered by
	// advance and until once the fake clock reaches them.
	later []delayed
}

type delayed struct {
	due time.Time
	msg interface{}
}

// useTimers makes the driver's delayed messages wait on the fake clock;
// without it they are posted at once.
func (r *rig) useTimers() {
	r.d.postAfter = func(m interface{}, after time.Duration) {
		r.mu.Lock()
		r.later = append(r.later, delayed{r.now.Add(after), m})
		r.mu.Unlock()
	}
}

// fire posts the delayed messages that are due and settles.
func (r *rig) fire() {
	r.mu.Lock()
	var due []delayed
	keep := r.later[:0]
	for _, l := range r.later {
		if !r.now.Before(l.due) {
			due = append(due, l)
		} else {
			keep = append(keep, l)
		}
	}
	r.later = keep
	for _, l := range due {
		r.posted = append(r.posted, l.msg)
	}
	r.mu.Unlock()
	if len(due) > 0 {
		r.settle()
	}
}

// advance moves the fake clock without a tick and fires what is due.
func (r *rig) advance(d time.Duration) {
	r.now = r.now.Add(d)
	r.fire()
}

func testOptions() Options {
	return Options{
		OTPApp: "cloister", Consensus: 1,
		Heartbeat: 500 * time.Millisecond, SuspectAfter: 3 * time.Second, RemoveAfter: 5 * time.Second,
		Reconcile: time.Second, DialTimeout: 5 * time.Second,
		BackoffMin: 50 * time.Millisecond, BackoffMax: time.Second,
	}
}

func newRig(t *testing.T, o Options, peers ...string) *rig {
	t.Helper()
	c, err := newShared("cloister", append([]string{"cloister"}, o.Groups...), nil)
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, net: newFakeNet(), c: c, now: time.Unix(1_700_000_000, 0), lastReply: map[string]time.Time{}}
	r.start = r.now
	for _, p := range peers {
		r.net.up[p], r.net.answers[p] = true, true
	}
	o.Listener = listener.Func(func(from, to listener.State, s listener.Snapshot) {
		r.mu.Lock()
		r.changes = append(r.changes, fmt.Sprintf("%s>%s state=%s", from, to, s.State))
		r.snaps = append(r.snaps, s)
		hold := r.hold
		r.mu.Unlock()
		if hold != nil {
			<-hold
		}
	})
	o.Observe = func(e listener.Event) {
		r.mu.Lock()
		r.events = append(r.events, fmt.Sprintf("at=%s %s", r.now.Sub(r.start), describeEvent(e)))
		if _, ok := e.(listener.DialStarted); ok {
			r.dialsStarted++
		}
		r.mu.Unlock()
	}
	logf := func(format string, args ...interface{}) {
		r.mu.Lock()
		r.logs = append(r.logs, fmt.Sprintf(format, args...))
		r.mu.Unlock()
	}
	r.d = newDriver(context.Background(), o, c, "a@h", r.net, func() time.Time { return r.now },
		func(m interface{}) {
			r.mu.Lock()
			r.posted = append(r.posted, m)
			if _, ok := m.(dialDoneMsg); ok {
				r.dialsDone++
			}
			r.mu.Unlock()
		}, logf)
	t.Cleanup(func() { r.d.stop() })
	return r
}

func describeEvent(e listener.Event) string {
	switch e := e.(type) {
	case listener.Transition:
		return "transition " + string(e.From) + ">" + string(e.To)
	case listener.RingsRebuilt:
		return "rings " + strings.Join(e.Members, ",")
	case listener.DialStarted:
		return "dial " + e.Node
	case listener.Suspected:
		return "suspected " + e.Node
	case listener.Disconnected:
		return "disconnected " + e.Node
	case listener.Removed:
		return "removed " + e.Node + " " + string(e.Reason)
	case listener.GraceStarted:
		return "grace " + e.Node
	case listener.Recovered:
		return "recovered " + e.Node
	case listener.Stalled:
		return "stalled"
	case listener.LeaveSent:
		return "leave-sent " + e.Node
	case listener.LeaveAcked:
		return "leave-acked " + e.Node
	case listener.LeaveDone:
		return "leave-done " + strings.Join(e.Missing, ",")
	}
	return fmt.Sprintf("%T", e)
}

// settle waits for the driver's goroutines (the fake network answers at
// once) and feeds back what they and the network produced, until quiet.
func (r *rig) settle() {
	r.t.Helper()
	for i := 0; i < 1000; i++ {
		if !r.waitIdle() {
			r.t.Fatal("driver goroutines did not finish")
		}
		r.mu.Lock()
		posted := r.posted
		r.posted = nil
		r.mu.Unlock()
		evs := r.net.take()
		if len(posted) == 0 && len(evs) == 0 {
			return
		}
		for _, ev := range evs {
			if pr, ok := ev.(core.ProbeReply); ok {
				r.lastReply[pr.Node] = r.now
			}
			r.d.step(stamp(ev, r.now))
		}
		// Dials finish in any order; feed them sorted, for determinism.
		// A coalesced ring build (rebuildMsg) runs as the Monitor runs it.
		var dials []dialDoneMsg
		for _, m := range posted {
			switch m := m.(type) {
			case dialDoneMsg:
				dials = append(dials, m)
			case rebuildMsg:
				r.d.rebuilt()
			case ackReadyMsg:
				r.d.tr.AckLeave(m.node) // as the Monitor does
			}
		}
		sort.Slice(dials, func(i, j int) bool { return dials[i].node < dials[j].node })
		for _, m := range dials {
			r.d.dialDone(m)
		}
	}
	r.t.Fatal("the driver never settled")
}

// waitIdle waits until every dial begun has called Connect (on a goroutine
// of its own), no Connect is in flight except hanging ones, and every dial
// whose Connect returned has posted its result (right after the return,
// unless the driver stopped).
func (r *rig) waitIdle() bool {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		r.net.mu.Lock()
		hanging := 0
		for n, h := range r.net.hang {
			if h && !r.net.connected[n] {
				hanging++
			}
		}
		busy, returned := r.net.connecting, r.net.returned
		r.net.mu.Unlock()
		r.mu.Lock()
		started, posted := r.dialsStarted, r.dialsDone
		r.mu.Unlock()
		stopped := r.d.ctx.Err() != nil
		if busy <= hanging && (stopped || started == busy+returned && posted >= returned) {
			return true
		}
		time.Sleep(time.Millisecond)
	}
	return false
}

func stamp(ev core.Event, now time.Time) core.Event {
	switch e := ev.(type) {
	case core.NodeUp:
		e.Now = now
		return e
	case core.NodeDown:
		e.Now = now
		return e
	case core.ProbeReply:
		e.Now = now
		return e
	case core.Pong:
		e.Now = now
		return e
	}
	return ev
}

func (r *rig) begin() {
	r.d.start()
	r.settle()
}

// until ticks every tickEvery up to start+at.
func (r *rig) until(at time.Duration) {
	for end := r.start.Add(at); r.now.Before(end); {
		r.now = r.now.Add(tickEvery)
		r.d.tick()
		r.settle()
		r.fire()
	}
}

func (r *rig) eventLines() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// first is when the first event equal to what was observed, or -1.
func (r *rig) first(what string) time.Duration {
	for _, l := range r.eventLines() {
		at, ev, _ := strings.Cut(l, " ")
		if ev == what {
			d, _ := time.ParseDuration(strings.TrimPrefix(at, "at="))
			return d
		}
	}
	return -1
}

func (r *rig) count(prefix string) int {
	n := 0
	for _, l := range r.eventLines() {
		if _, ev, _ := strings.Cut(l, " "); strings.HasPrefix(ev, prefix) {
			n++
		}
	}
	return n
}

func (r *rig) listenerHeard() []string {
	r.d.disp.Flush(10 * time.Second)
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.changes)
}

// Every effect the core can emit has a case in the driver, and every one
// but Probe and Ping is observable as a public event; a new effect type
// fails here until the driver handles it.
func TestDriverHandlesEveryEffect(t *testing.T) {
	r := newRig(t, testOptions())
	kinds := map[string]bool{}
	for _, f := range core.Effects() {
		if _, ok := f.(core.Dial); ok {
			// apply, unlike step, tells no observer: count the dial as
			// begun ourselves, or settle cannot tell when it is done.
			r.mu.Lock()
			r.dialsStarted++
			r.mu.Unlock()
		}
		r.d.apply(f)
		e, ok := observed(f)
		switch f.(type) {
		case core.Probe, core.Ping, core.SendSuspect: // messages between Monitors
			if ok {
				t.Errorf("%T is observed as %T", f, e)
			}
			continue
		}
		if !ok {
			t.Errorf("effect %T has no public event", f)
			continue
		}
		kinds[fmt.Sprintf("%T", e)] = true
	}
	r.settle()
	if r.d.unhandled != 0 {
		t.Fatalf("%d effects not handled by the driver: %q", r.d.unhandled, r.logs)
	}
	if len(kinds) != len(core.Effects())-3 {
		t.Fatalf("effects map to %d distinct public events, want %d: %v", len(kinds), len(core.Effects())-3, kinds)
	}
}

func TestDriverAssemblesAndTellsEveryStateWithItsSnapshot(t *testing.T) {
	o := testOptions()
	o.Consensus = 3
	o.Sentry = []string{"a@h", "b@h", "c@h"}
	r := newRig(t, o, "b@h", "c@h")
	r.begin()
	s := r.c.Snapshot()
	if !s.Ready() || !reflect.DeepEqual(s.Members, []string{"a@h", "b@h", "c@h"}) {
		t.Fatalf("snapshot %s %v", s.State, s.Members)
	}
	if r.now != r.start {
		t.Fatal("the fake clock moved")
	}
	want := []string{"down>assembling state=assembling", "assembling>rehashing state=rehashing", "rehashing>ready state=ready"}
	if got := r.listenerHeard(); !reflect.DeepEqual(got, want) {
		t.Fatalf("listener heard %q, want %q", got, want)
	}
	if got := s.Rings["cloister"].Members; !reflect.DeepEqual(got, s.Members) {
		t.Fatalf("ring %v, members %v", got, s.Members)
	}
}

// While every member answers, ten seconds pass with no transition, no
// suspicion, no dial and no ring rebuild (was a fixed sleep on real nodes).
func TestDriverQuietClusterStaysQuiet(t *testing.T) {
	o := testOptions()
	o.Sentry = []string{"a@h", "b@h", "c@h"}
	r := newRig(t, o, "b@h", "c@h")
	r.begin()
	epoch := r.c.Snapshot().Rings["cloister"].Epoch
	before := len(r.eventLines())
	r.until(10 * time.Second)
	if extra := r.eventLines()[before:]; len(extra) != 0 {
		t.Fatalf("events in a quiet cluster: %q", extra)
	}
	if e := r.c.Snapshot().Rings["cloister"].Epoch; e != epoch {
		t.Fatalf("ring epoch %d -> %d", epoch, e)
	}
	if n := len(r.net.disconnects); n != 0 {
		t.Fatalf("%d disconnects", n)
	}
}

// A frozen peer (connected, never answering) is suspected at SuspectAfter,
// removed and disconnected at RemoveAfter after its last answer, never
// before, within a few heartbeats after; the other member stays.
func TestDriverRemovesAFrozenPeerAtRemoveAfter(t *testing.T) {
	o := testOptions()
	o.Sentry = []string{"a@h", "b@h", "c@h"}
	r := newRig(t, o, "b@h", "c@h")
	r.begin()
	r.until(time.Second)
	r.net.set(r.net.answers, "b@h", false) // SIGSTOP: the link stays, nobody answers
	lastAnswer := r.lastReply["b@h"]
	r.until(12 * time.Second)
	sus, rem := r.first("suspected b@h"), r.first("removed b@h silent")
	if sus < 0 || rem < 0 {
		t.Fatalf("suspected at %s, removed at %s: %q", sus, rem, r.eventLines())
	}
	silence := rem - lastAnswer.Sub(r.start)
	if silence < o.RemoveAfter || silence > o.RemoveAfter+2*o.Heartbeat {
		t.Fatalf("removed after %s of silence, want within [RemoveAfter, RemoveAfter+2 heartbeats] = [%s, %s]",
			silence, o.RemoveAfter, o.RemoveAfter+2*o.Heartbeat)
	}
	if s := sus - lastAnswer.Sub(r.start); s < o.SuspectAfter || s > o.SuspectAfter+2*o.Heartbeat {
		t.Fatalf("suspected after %s of silence", s)
	}
	if r.first("disconnected b@h") != rem || !slices.Contains(r.net.disconnects, "b@h") {
		t.Fatalf("not disconnected at the removal: %v", r.net.disconnects)
	}
	if got := r.c.Snapshot().Members; !reflect.DeepEqual(got, []string{"a@h", "c@h"}) {
		t.Fatalf("members %v", got)
	}
}

// A killed member (connection lost, its re-dial proves it gone) leaves at
// once with reason gone, not after the flap grace.
func TestDriverKilledMemberLeavesAsGone(t *testing.T) {
	o := testOptions()
	o.Sentry = []string{"a@h", "b@h"}
	o.FlapGrace = 3 * time.Second
	r := newRig(t, o, "b@h")
	r.begin()
	r.until(time.Second)
	r.net.set(r.net.up, "b@h", false)
	r.net.set(r.net.gone, "b@h", true)
	r.net.drop("b@h")
	r.settle()
	if at := r.first("removed b@h gone"); at != time.Second {
		t.Fatalf("removed (gone) at %s, want at the drop (1s): %q", at, r.eventLines())
	}
	if r.count("grace b@h") != 1 {
		t.Fatalf("graces: %q", r.eventLines())
	}
}

// A member whose link flaps back within the flap grace never leaves the
// rings: no rebuild, no transition.
func TestDriverFlapWithinGraceKeepsTheRings(t *testing.T) {
	o := testOptions()
	o.Sentry = []string{"a@h", "b@h"}
	o.FlapGrace = 3 * time.Second
	r := newRig(t, o, "b@h")
	r.begin()
	r.until(time.Second)
	epoch := r.c.Snapshot().Rings["cloister"].Epoch
	transitions := r.count("transition")
	r.net.drop("b@h") // b still up: the immediate re-dial reconnects
	r.until(6 * time.Second)
	if r.count("recovered b@h") != 1 || r.count("removed") != 0 || r.count("transition") != transitions {
		t.Fatalf("events %q", r.eventLines())
	}
	if e := r.c.Snapshot().Rings["cloister"].Epoch; e != epoch {
		t.Fatalf("ring rebuilt: epoch %d -> %d", epoch, e)
	}
}

// A node that is not a cloister (never answers) is re-probed, never
// added; a cloister of another application answers and is never added.
// Ten seconds of heartbeats and re-probes (was a fixed sleep on real
// nodes).
func TestDriverPlainAndForeignNodesNeverJoin(t *testing.T) {
	o := testOptions()
	r := newRig(t, o)
	r.begin()
	r.net.mu.Lock()
	r.net.connected["plain@h"], r.net.connected["billing@h"] = true, true
	r.net.answers["billing@h"], r.net.otpApp["billing@h"] = true, "billing"
	r.net.events = append(r.net.events, core.NodeUp{Node: "plain@h"}, core.NodeUp{Node: "billing@h"})
	r.net.mu.Unlock()
	r.until(10 * time.Second)
	if got := r.c.Snapshot().Members; !reflect.DeepEqual(got, []string{"a@h"}) {
		t.Fatalf("members %v", got)
	}
	if r.count("rings") != 1 || r.count("transition") != 3 {
		t.Fatalf("events %q", r.eventLines())
	}
	n := 0
	for _, p := range r.net.probes {
		if p == "plain@h" {
			n++
		}
	}
	// Once at connect, then every reprobeEvery.
	if want := 1 + int(10*time.Second/reprobeEvery); n < want-1 || n > want+1 {
		t.Fatalf("plain node probed %d times in 10s, want about %d", n, want)
	}
	if got := r.c.Snapshot().Connected; !reflect.DeepEqual(got, []string{"billing@h", "plain@h"}) {
		t.Fatalf("connected %v", got)
	}
}

// Below consensus the Monitor stays in rehashing, whatever the time (was
// a fixed sleep on real nodes); the missing node's arrival makes it ready.
func TestDriverBelowConsensusStaysRehashing(t *testing.T) {
	o := testOptions()
	o.Consensus = 3
	o.Sentry = []string{"a@h", "b@h", "c@h"}
	r := newRig(t, o, "b@h")
	r.begin()
	r.until(10 * time.Second)
	s := r.c.Snapshot()
	if s.State != listener.StateRehashing || !reflect.DeepEqual(s.Members, []string{"a@h", "b@h"}) {
		t.Fatalf("with 2 of 3: %s %v", s.State, s.Members)
	}
	r.net.set(r.net.up, "c@h", true)
	r.net.set(r.net.answers, "c@h", true)
	r.until(12 * time.Second) // c is re-dialled within BackoffMax
	if s := r.c.Snapshot(); !s.Ready() || len(s.Members) != 3 {
		t.Fatalf("with 3 of 3: %s %v", s.State, s.Members)
	}
}

// A member silent for less than SuspectAfter (a short cut: its answers
// are held, then flow) is never suspected and the rings never change.
func TestDriverShortSilenceIsInvisible(t *testing.T) {
	o := testOptions()
	o.Sentry = []string{"a@h", "b@h", "c@h"}
	r := newRig(t, o, "b@h", "c@h")
	r.begin()
	r.until(time.Second)
	events := len(r.eventLines())
	r.net.set(r.net.answers, "b@h", false)
	r.until(2500 * time.Millisecond)
	r.net.set(r.net.answers, "b@h", true)
	r.until(15 * time.Second)
	if extra := r.eventLines()[events:]; len(extra) != 0 {
		t.Fatalf("events after a 1.5 s silence: %q", extra)
	}
}

// Three link resets in a row, each back within the flap grace: the rings
// never change (was three flaps and fixed sleeps on real nodes).
func TestDriverRepeatedFlapsKeepTheRings(t *testing.T) {
	o := testOptions()
	o.Sentry = []string{"a@h", "b@h", "c@h"}
	o.FlapGrace = time.Second
	r := newRig(t, o, "b@h", "c@h")
	r.begin()
	r.until(time.Second)
	epoch := r.c.Snapshot().Rings["cloister"].Epoch
	for i := 0; i < 3; i++ {
		// c refuses connections for 300 ms after its link reset.
		r.net.set(r.net.up, "c@h", false)
		r.net.drop("c@h")
		r.until(r.now.Sub(r.start) + 300*time.Millisecond)
		r.net.set(r.net.up, "c@h", true)
		r.until(r.now.Sub(r.start) + time.Second)
	}
	r.until(r.now.Sub(r.start) + 3*time.Second)
	if r.count("grace c@h") != 3 || r.count("recovered c@h") != 3 || r.count("removed") != 0 {
		t.Fatalf("events %q", r.eventLines())
	}
	if e := r.c.Snapshot().Rings["cloister"].Epoch; e != epoch {
		t.Fatalf("ring rebuilt: epoch %d -> %d", epoch, e)
	}
}

// The goroutines the driver starts end with it: dials that would hang
// for ever are cancelled by the stop, and the listener's dispatcher ends.
func TestDriverStopLeavesNoGoroutines(t *testing.T) {
	base := runtime.NumGoroutine()
	o := testOptions()
	o.DialTimeout = time.Hour
	var peers []string
	for i := 0; i < 20; i++ {
		peers = append(peers, fmt.Sprintf("p%d@h", i))
	}
	o.Sentry = append([]string{"a@h"}, peers...)
	r := newRig(t, o)
	for _, p := range peers {
		r.net.hang[p] = true
	}
	r.d.start()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r.net.mu.Lock()
		n := r.net.connecting
		r.net.mu.Unlock()
		if n == len(peers) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d dials in flight", n, len(peers))
		}
		time.Sleep(time.Millisecond)
	}
	if during := runtime.NumGoroutine(); during < base+len(peers) {
		t.Fatalf("goroutines %d during the dials, base %d", during, base)
	}
	if !r.d.stop() {
		t.Fatal("stop: goroutines still running")
	}
	var now int
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if now = runtime.NumGoroutine(); now <= base {
			break
		}
	}
	if now > base {
		buf := make([]byte, 1<<16)
		t.Fatalf("goroutines %d after the stop, %d before the start\n%s", now, base, buf[:runtime.Stack(buf, true)])
	}
	if s := r.c.Snapshot().State; s != listener.StateStopped {
		t.Fatalf("state %s after stop", s)
	}
	if got := r.listenerHeard(); len(got) < 2 || got[len(got)-1] != "stopping>stopped state=stopped" {
		t.Fatalf("listener heard %q", got)
	}
}

// A connection lost without a node event (a missed NodeDown) is found by
// the reconciliation with the transport's connection list within
// Reconcile, and the member leaves after its flap grace.
func TestDriverReconcileFindsAMissedNodeDown(t *testing.T) {
	o := testOptions()
	o.Sentry = []string{"a@h", "b@h", "c@h"}
	o.FlapGrace = 500 * time.Millisecond
	r := newRig(t, o, "b@h", "c@h")
	r.begin()
	r.until(time.Second)
	// b's link is gone and nobody told the driver; b refuses re-dials.
	r.net.mu.Lock()
	r.net.connected["b@h"], r.net.up["b@h"] = false, false
	r.net.mu.Unlock()
	lost := r.now.Sub(r.start)
	r.until(5 * time.Second)
	grace, removed := r.first("grace b@h"), r.first("removed b@h grace_expired")
	if grace < lost || grace > lost+o.Reconcile+tickEvery {
		t.Fatalf("grace at %s, lost at %s, Reconcile %s: %q", grace, lost, o.Reconcile, r.eventLines())
	}
	if removed < grace+o.FlapGrace || removed > grace+o.FlapGrace+2*tickEvery {
		t.Fatalf("removed at %s, grace at %s", removed, grace)
	}
	if got := r.c.Snapshot().Members; !reflect.DeepEqual(got, []string{"a@h", "c@h"}) {
		t.Fatalf("members %v", got)
	}
}

// Joins that arrive together while consensus is still short are built into
// the rings once, not once each: a ring build hashes and merges every
// member's points, and an assembly of N nodes saw N-1 joins on every node.
func TestDriverCoalescesTheRingBuildsOfABurstOfJoins(t *testing.T) {
	o := testOptions()
	o.Consensus = 6
	o.Sentry = []string{"a@h", "b@h", "c@h", "d@h", "e@h", "f@h"}
	r := newRig(t, o, "b@h", "c@h", "d@h", "e@h", "f@h")
	r.begin()
	s := r.c.Snapshot()
	if !s.Ready() || !reflect.DeepEqual(s.Rings["cloister"].Members, o.Sentry) {
		t.Fatalf("snapshot %s, ring %v", s.State, s.Rings["cloister"].Members)
	}
	// Epoch 1: the ring of this node alone (entering rehashing); then the
	// five joins, answered in one batch, in one build.
	if e := s.Rings["cloister"].Epoch; e != 2 {
		t.Fatalf("ring epoch %d after five joins in one burst, want 2 (one build for the burst)", e)
	}
}

// untilNext ticks when the driver asks (driver.nextTick) up to start+at;
// before each tick, hear(now) runs (a peer's link reads, say).
func (r *rig) untilNext(at time.Duration, hear func(now time.Time)) (ticks int) {
	for end := r.start.Add(at); r.now.Before(end); {
		r.now = r.now.Add(r.d.nextTick(r.now))
		if hear != nil {
			hear(r.now)
		}
		r.d.tick()
		r.settle()
		ticks++
	}
	return ticks
}

// pings counts the pings and probes sent since the last call.
func (r *rig) requests() int {
	r.net.mu.Lock()
	defer r.net.mu.Unlock()
	n := len(r.net.probes)
	r.net.probes = nil
	return n
}

// Members whose links carry traffic (the keepalives) get no ping at all
// once told our hash; the driver ticks only at the keepalive ticks, every
// keepaliveEvery on the wall clock's grid, and has the idle links write
// keepalives at each. A frozen member's link falls silent: it is pinged
// again, and suspected and removed SuspectAfter and RemoveAfter after its
// last read plus linkGap (when its next keepalive was due), never before,
// and no later than a tick after that.
func TestDriverLinkReadsSpareThePings(t *testing.T) {
	o := testOptions()
	o.Sentry = []string{"a@h", "b@h", "c@h"}
	r := newRig(t, o, "b@h", "c@h")
	r.net.hash = r.d.core.MembersHash
	r.begin()
	every := keepaliveEvery(o.SuspectAfter)
	live := map[string]bool{"b@h": true, "c@h": true}
	hear := r.hearOnGrid(live, every)
	r.untilNext(2*time.Second, hear) // the first heartbeats tell b and c our hash
	r.requests()
	r.net.mu.Lock()
	r.net.keepalives = nil
	r.net.mu.Unlock()
	from := r.now
	ticks := r.untilNext(12*time.Second, hear)
	if n := r.requests(); n != 0 {
		t.Fatalf("%d pings or probes in 10 s to members heard on their links, want 0", n)
	}
	if want := int(r.now.Sub(from) / every); ticks < want-1 || ticks > want+1 {
		t.Fatalf("%d ticks in %s of quiet, want about %d (one every %s)", ticks, r.now.Sub(from), want, every)
	}
	r.net.mu.Lock()
	kas := slices.Clone(r.net.keepalives)
	r.net.mu.Unlock()
	if len(kas) < ticks-1 || len(kas) > ticks || kas[0] != keepaliveBusy(o.SuspectAfter) {
		t.Fatalf("keepalives %v over %d ticks; want one per tick, for links idle %s", kas, ticks, keepaliveBusy(o.SuspectAfter))
	}

	// b freezes: no reads, no answers.
	r.net.set(r.net.answers, "b@h", false)
	live["b@h"] = false
	lastRead := r.net.linkRead["b@h"]
	r.untilNext(25*time.Second, hear)
	if r.requests() == 0 {
		t.Fatal("the silent b was never pinged")
	}
	gap := linkGap(o.SuspectAfter)
	sus, rem := r.first("suspected b@h"), r.first("removed b@h silent")
	if s := r.start.Add(sus).Sub(lastRead); sus < 0 || s < o.SuspectAfter+gap || s > o.SuspectAfter+gap+tickEvery {
		t.Fatalf("suspected %s after b's last read, want SuspectAfter (%s) + linkGap (%s) and at most a tick more: %q", s, o.SuspectAfter, gap, r.eventLines())
	}
	if s := r.start.Add(rem).Sub(lastRead); rem < 0 || s < o.RemoveAfter+gap || s > o.RemoveAfter+gap+tickEvery {
		t.Fatalf("removed %s after b's last read, want RemoveAfter (%s) + linkGap (%s) and at most a tick more: %q", s, o.RemoveAfter, gap, r.eventLines())
	}
	if r.count("suspected c@h")+r.count("removed c@h") != 0 {
		t.Fatalf("c, heard on its link, was suspected or removed: %q", r.eventLines())
	}
}

// At eight members that all run the neighbour watch, the driver has only
// the links to its four neighbours write keepalives; a frozen neighbour is
// suspected and the suspicion sent to every other member, after which the
// keepalives go to every link again.
func TestDriverNeighbourWatch(t *testing.T) {
	o := testOptions()
	peers := []string{"b@h", "c@h", "d@h", "e@h", "f@h", "g@h", "h@h"}
	o.Sentry = append([]string{"a@h"}, peers...)
	o.WatchNeighbours = defaultWatchNeighbours // testOptions leaves it 0: every member
	r := newRig(t, o, peers...)
	r.net.hash = r.d.core.MembersHash
	r.net.watch = defaultWatchNeighbours
	r.begin()
	every := keepaliveEvery(o.SuspectAfter)
	live := map[string]bool{}
	for _, p := range peers {
		live[p] = true
	}
	hear := r.hearOnGrid(live, every)
	r.untilNext(4*time.Second, hear)
	neighbours := []string{"b@h", "c@h", "g@h", "h@h"}
	r.net.mu.Lock()
	to := slices.Clone(r.net.keepaliveTo)
	r.net.mu.Unlock()
	if !slices.Equal(to, neighbours) {
		t.Fatalf("keepalives to %v, want the neighbours %v", to, neighbours)
	}
	r.net.set(r.net.answers, "b@h", false)
	live["b@h"] = false
	r.untilNext(10*time.Second, hear)
	r.net.mu.Lock()
	sent := slices.Clone(r.net.suspects)
	to = slices.Clone(r.net.keepaliveTo)
	r.net.mu.Unlock()
	var want []string
	for _, p := range peers[1:] {
		want = append(want, p+":b@h")
	}
	if !slices.Equal(sent, want) {
		t.Fatalf("suspicions sent %v, want %v", sent, want)
	}
	if r.count("removed b@h silent") != 1 {
		t.Fatalf("b not removed: %q", r.eventLines())
	}
	if to != nil {
		t.Fatalf("keepalives to %v after a suspicion, want every link", to)
	}
}

// The next tick: the next keepalive tick on the grid when quiet, soon when
// a deadline is near (a lost member's re-dial).
func TestDriverNextTick(t *testing.T) {
	o := testOptions()
	o.Sentry = []string{"a@h", "b@h"}
	o.FlapGrace = 0
	r := newRig(t, o, "b@h")
	every := keepaliveEvery(o.SuspectAfter)
	if d := r.d.nextTick(r.now); d != every {
		t.Fatalf("before the start: %s", d)
	}
	r.begin()
	r.until(2 * time.Second)
	r.d.tick()
	if d, want := r.d.nextTick(r.now), keepaliveAt(r.now, o.SuspectAfter).Sub(r.now); d < tickEvery || d > want {
		t.Fatalf("quiet: next tick in %s, want by the keepalive tick in %s", d, want)
	}
	r.net.set(r.net.up, "b@h", false)
	r.net.drop("b@h")
	r.settle()
	if d := r.d.nextTick(r.now); d > o.BackoffMin {
		t.Fatalf("after b's link dropped: next tick in %s, want by its re-dial (backoff %s)", d, o.BackoffMin)
	}
}

// Joins short of consensus that come one by one, not in one batch, are
// built together rebuildDelay after the first of them; the join that
// reaches consensus is built at once, with the transition to ready.
func TestDriverDelaysTheRingBuildsOfJoinsShortOfConsensus(t *testing.T) {
	o := testOptions()
	o.Consensus = 5
	o.Sentry = []string{"a@h", "b@h", "c@h", "d@h", "e@h"}
	r := newRig(t, o)
	r.useTimers()
	r.begin()
	epoch := func() uint64 {
		snap, err := r.c.Rings.Get("cloister")
		if err != nil {
			t.Fatal(err)
		}
		return snap.Epoch()
	}
	members := func() []string {
		snap, _ := r.c.Rings.Get("cloister")
		return snap.Members()
	}
	if e := epoch(); e != 1 {
		t.Fatalf("epoch %d after the start, want 1 (this node alone)", e)
	}
	// b, c and d come up 20 ms apart.
	join := func(p string) {
		r.net.set(r.net.answers, p, true)
		r.net.set(r.net.up, p, true)
		r.net.mu.Lock()
		r.net.connected[p] = true
		r.net.events = append(r.net.events, core.NodeUp{Node: p})
		r.net.mu.Unlock()
		r.settle()
	}
	for _, p := range []string{"b@h", "c@h", "d@h"} {
		join(p)
		if got := r.c.Snapshot().Members; !slices.Contains(got, p) {
			t.Fatalf("%s not a member after its answer: %v", p, got)
		}
		if e := epoch(); e != 1 {
			t.Fatalf("ring built before rebuildDelay (epoch %d, members %v)", e, members())
		}
		r.advance(20 * time.Millisecond)
	}
	// 60 ms after b: still waiting; at rebuildDelay after b, one build.
	r.advance(rebuildDelay - 60*time.Millisecond - time.Millisecond)
	if e := epoch(); e != 1 {
		t.Fatalf("ring built %s after the first join, before rebuildDelay %s", rebuildDelay-time.Millisecond, rebuildDelay)
	}
	r.advance(time.Millisecond)
	if e, m := epoch(), members(); e != 2 || !slices.Equal(m, []string{"a@h", "b@h", "c@h", "d@h"}) {
		t.Fatalf("rebuildDelay after the first join: epoch %d members %v, want 2 [a b c d] (one build)", e, m)
	}
	if s := r.c.Snapshot(); !slices.Equal(s.Rings["cloister"].Members, members()) {
		t.Fatalf("published snapshot's ring %v, built ring %v", s.Rings["cloister"].Members, members())
	}
	// e reaches consensus: built at once, with the transition.
	join("e@h")
	if e, s := epoch(), r.c.Snapshot(); e != 3 || !s.Ready() || len(s.Rings["cloister"].Members) != 5 {
		t.Fatalf("after the fifth join: epoch %d, state %s, ring %v", e, s.State, s.Rings["cloister"].Members)
	}
	// The build still pending from nothing: none fires later.
	r.until(time.Second)
	if e := epoch(); e != 3 {
		t.Fatalf("epoch %d a second later, want 3", e)
	}
}

// hearOnGrid returns a hook for untilNext that sets the last link read of
// every peer live says is alive to its keepalive on the shared grid of
// period every (5 ms after the grid point, the last one not after now),
// as their keepalives, on the same grid as ours, would be read.
func (r *rig) hearOnGrid(live map[string]bool, every time.Duration) func(time.Time) {
	return func(now time.Time) {
		r.net.mu.Lock()
		defer r.net.mu.Unlock()
		for n, ok := range live {
			if ok {
				at := now.Truncate(every).Add(5 * time.Millisecond)
				if at.After(now) {
					at = at.Add(-every)
				}
				r.net.linkRead[n] = at
			}
		}
	}
}
