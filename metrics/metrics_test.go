package metrics

import (
	"context"
	"errors"
	"fmt"
	"github.com/cloister-go/cloister/internal/errs"
	"go/ast"
	"go/parser"
	"go/token"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cloister-go/cloister/actors"
	"github.com/cloister-go/cloister/internal/listenerx"
	"github.com/cloister-go/cloister/listener"
)

// clock is a fake time source for the collector.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newWithClock() (*Collector, *clock) {
	c := New()
	ck := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	c.now = ck.now
	return c, ck
}

// gather collects c through a registry (which checks descriptions and
// consistency) and returns "name{labels}" -> value for counters and gauges,
// and name_count / name_sum for histograms.
func gather(t *testing.T, c prometheus.Collector) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatalf("register: %v", err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			key := mf.GetName()
			if len(labels) > 0 {
				key += "{" + strings.Join(labels, ",") + "}"
			}
			switch {
			case m.Gauge != nil:
				out[key] = m.GetGauge().GetValue()
			case m.Counter != nil:
				out[key] = m.GetCounter().GetValue()
			case m.Histogram != nil:
				out[key+"_count"] = float64(m.GetHistogram().GetSampleCount())
				out[key+"_sum"] = m.GetHistogram().GetSampleSum()
			}
		}
	}
	return out
}

func want(t *testing.T, got map[string]float64, key string, v float64) {
	t.Helper()
	g, ok := got[key]
	if !ok {
		t.Errorf("%s missing", key)
		return
	}
	if g != v {
		t.Errorf("%s = %v, want %v", key, g, v)
	}
}

func TestObserveCountsTransitionsRehashesAndHeartbeat(t *testing.T) {
	c, ck := newWithClock()
	for _, e := range []listener.Event{
		listener.Transition{From: listener.StateDown, To: listener.StateAssembling},
		listener.DialStarted{Node: "b@h"}, listener.DialStarted{Node: "c@h"},
		listener.Transition{From: listener.StateAssembling, To: listener.StateRehashing},
		listener.RingsRebuilt{Members: []string{"a@h", "b@h"}},
	} {
		c.observe(e)
	}
	ck.advance(3 * time.Millisecond)
	c.observe(listener.Transition{From: listener.StateRehashing, To: listener.StateReady})
	// A second rehash, 5 ms long; a suspicion and a removal in between.
	c.observe(listener.Suspected{Node: "b@h", Silence: 3 * time.Second})
	c.observe(listener.Disconnected{Node: "b@h"})
	c.observe(listener.Transition{From: listener.StateReady, To: listener.StateRehashing})
	c.observe(listener.RingsRebuilt{Members: []string{"a@h"}})
	ck.advance(5 * time.Millisecond)
	c.observe(listener.Transition{From: listener.StateRehashing, To: listener.StateReady})
	c.observe(listener.GraceStarted{Node: "c@h", For: time.Second})
	c.observe(listener.Recovered{Node: "c@h", After: 10 * time.Millisecond})
	c.observe(listener.GraceStarted{Node: "c@h", For: time.Second})
	c.observe(listener.Removed{Node: "c@h", Reason: listener.RemovedGraceExpired})
	c.observe(listener.Removed{Node: "b@h", Reason: listener.RemovedSilent})
	c.observe(listener.Removed{Node: "x@h", Reason: "who knows"})
	c.observe(listener.Stalled{For: 2 * time.Second})
	c.observe(nil) // ignored

	got := gather(t, c)
	want(t, got, `cloister_transitions_total{from="down",to="assembling"}`, 1)
	want(t, got, `cloister_transitions_total{from="rehashing",to="ready"}`, 2)
	want(t, got, `cloister_transitions_total{from="ready",to="rehashing"}`, 1)
	want(t, got, "cloister_rehashes_total", 2)
	want(t, got, "cloister_rehash_duration_seconds_count", 2)
	if s := got["cloister_rehash_duration_seconds_sum"]; s < 0.0079 || s > 0.0081 {
		t.Errorf("rehash duration sum = %v, want 0.008 (3 ms + 5 ms)", s)
	}
	want(t, got, "cloister_heartbeat_suspicions_total", 1)
	want(t, got, "cloister_heartbeat_removals_total", 1)
	want(t, got, "cloister_dials_total", 2)
	want(t, got, "cloister_flap_graces_total", 2)
	want(t, got, "cloister_flap_recoveries_total", 1)
	want(t, got, `cloister_member_removals_total{reason="grace_expired"}`, 1)
	want(t, got, `cloister_member_removals_total{reason="silent"}`, 1)
	want(t, got, `cloister_member_removals_total{reason="other"}`, 1)
	want(t, got, "cloister_stalls_total", 1)
}

// A killed node, the most common removal, leaves with reason gone: every
// reason has its own label, none is counted as "other".
func TestEveryRemovalReasonHasItsLabel(t *testing.T) {
	c, _ := newWithClock()
	for _, r := range listenerx.RemovalReasons() {
		c.observe(listener.Removed{Node: "b@h", Reason: r})
	}
	got := gather(t, c)
	want(t, got, `cloister_member_removals_total{reason="gone"}`, 1)
	for _, r := range listenerx.RemovalReasons() {
		want(t, got, `cloister_member_removals_total{reason="`+string(r)+`"}`, 1)
	}
	if v := got[`cloister_member_removals_total{reason="other"}`]; v != 0 {
		t.Errorf("%v removals counted as other", v)
	}
}

func TestRehashDurationNeedsAnEntry(t *testing.T) {
	// Leaving rehashing without having seen it entered (the collector was
	// attached late) records nothing rather than a bogus duration.
	c, _ := newWithClock()
	c.observe(listener.Transition{From: listener.StateRehashing, To: listener.StateReady})
	want(t, gather(t, c), "cloister_rehash_duration_seconds_count", 0)
}

func TestGaugesWithoutSourceReportDown(t *testing.T) {
	got := gather(t, New())
	want(t, got, `cloister_state{state="down"}`, 1)
	for _, s := range listenerx.States()[1:] {
		want(t, got, fmt.Sprintf("cloister_state{state=%q}", s), 0)
	}
	want(t, got, "cloister_members", 0)
}

func TestGaugesReadTheSourceAtEveryScrape(t *testing.T) {
	c := New()
	snap := listener.Snapshot{
		State: "ready", Consensus: 2,
		Members:   []string{"a@h", "b@h", "c@h"},
		Connected: []string{"b@h", "c@h", "x@h"},
		Suspects:  []string{"c@h"},
		Roles:     map[string][]string{"a@h": {"api"}, "b@h": {"gpu", "worker"}},
		Rings: map[string]listener.Ring{
			"shop":  {Members: []string{"a@h", "b@h", "c@h"}, Epoch: 7},
			"carts": {Members: []string{"a@h", "b@h", "c@h"}, Epoch: 2},
		},
	}
	c.SetSource(func() listener.Snapshot { return snap })
	got := gather(t, c)
	want(t, got, "cloister_members", 3)
	want(t, got, "cloister_consensus", 2)
	want(t, got, "cloister_connected_nodes", 3)
	want(t, got, "cloister_suspects", 1)
	want(t, got, `cloister_state{state="ready"}`, 1)
	want(t, got, `cloister_state{state="rehashing"}`, 0)
	want(t, got, `cloister_ring_epoch{ring="shop"}`, 7)
	want(t, got, `cloister_ring_epoch{ring="carts"}`, 2)
	want(t, got, `cloister_ring_members{ring="shop"}`, 3)
	want(t, got, `cloister_member_role{member="a@h",role="api"}`, 1)
	want(t, got, `cloister_member_role{member="b@h",role="worker"}`, 1)
	want(t, got, `cloister_member_role{member="b@h",role="gpu"}`, 1)
	for k := range got {
		if strings.Contains(k, `member="c@h"`) {
			t.Errorf("a member without roles has a role: %s", k)
		}
	}

	snap.State, snap.Members = "rehashing", []string{"a@h"}
	snap.Rings = map[string]listener.Ring{"shop": {Members: []string{"a@h"}, Epoch: 8}}
	got = gather(t, c)
	want(t, got, "cloister_members", 1)
	want(t, got, `cloister_state{state="rehashing"}`, 1)
	want(t, got, `cloister_state{state="ready"}`, 0)
	want(t, got, `cloister_ring_epoch{ring="shop"}`, 8)
	if _, ok := got[`cloister_ring_epoch{ring="carts"}`]; ok {
		t.Error("a ring gone from the snapshot is still reported")
	}
}

func TestListenerWrapperTimesDeliveriesAndKeepsTheSnapshot(t *testing.T) {
	c, ck := newWithClock()
	var calls []string
	l := c.wrapListener(listener.Func(func(from, to listener.State, s listener.Snapshot) {
		calls = append(calls, string(from+">"+to))
		ck.advance(20 * time.Millisecond) // the listener's own work
	}))
	at := ck.t
	ck.advance(2 * time.Millisecond) // queued in the dispatcher
	l.OnStateChange("rehashing", "ready", listener.Snapshot{State: "ready", Members: []string{"a@h", "b@h"}, At: at})
	if len(calls) != 1 || calls[0] != "rehashing>ready" {
		t.Fatalf("wrapped listener calls = %v", calls)
	}
	got := gather(t, c)
	want(t, got, "cloister_listener_latency_seconds_count", 1)
	want(t, got, "cloister_listener_duration_seconds_count", 1)
	if s := got["cloister_listener_latency_seconds_sum"]; s < 0.0019 || s > 0.0021 {
		t.Errorf("latency = %v, want 0.002", s)
	}
	if s := got["cloister_listener_duration_seconds_sum"]; s < 0.0199 || s > 0.0201 {
		t.Errorf("duration = %v, want 0.020", s)
	}
	// Without a source, the gauges show what the listener saw last.
	want(t, got, "cloister_members", 2)
	want(t, got, `cloister_state{state="ready"}`, 1)
}

func TestListenerWrapperLetsAPanicThroughAndStillTimesIt(t *testing.T) {
	c, _ := newWithClock()
	l := c.wrapListener(listener.Func(func(from, to listener.State, s listener.Snapshot) { panic("boom") }))
	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Errorf("recovered %v, want the listener's panic", r)
			}
		}()
		l.OnStateChange("ready", "stopping", listener.Snapshot{State: "stopping"})
	}()
	got := gather(t, c)
	want(t, got, "cloister_listener_duration_seconds_count", 1)
	// No At: no latency sample rather than one measured from year 1.
	want(t, got, "cloister_listener_latency_seconds_count", 0)
}

func TestOutcomeNamesEveryErrorKind(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{nil, outcomeOK},
		{&errs.NodeError{Node: "a@h", Kind: errs.KindTimeout}, outcomeTimeout},
		{&errs.NodeError{Node: "a@h", Kind: errs.KindNoConnection}, outcomeNoConnection},
		{&errs.NodeError{Node: "a@h", Kind: errs.KindNoSuchProcess}, outcomeNoSuchProcess},
		{&errs.NodeError{Node: "a@h", Kind: errs.KindRemote}, outcomeRemote},
		{&errs.NodeError{Node: "a@h", Kind: errs.KindRefused}, outcomeRefused},
		{&errs.NodeError{Node: "a@h", Kind: 99}, outcomeOther},
		{fmt.Errorf("wrapped: %w", &errs.NodeError{Node: "a@h", Kind: errs.KindTimeout}), outcomeTimeout},
		{errors.New("something else"), outcomeOther},
	} {
		if got := outcomeOf(tc.err); got != tc.want {
			t.Errorf("outcomeOf(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

func TestObserveFanoutCountsPerNodeOutcomes(t *testing.T) {
	c := New()
	c.observeFanout("multicall", []actors.Result{
		{Node: "a@h", Reply: "x"},
		{Node: "b@h", Err: &errs.NodeError{Node: "b@h", Kind: errs.KindTimeout}},
		{Node: "c@h", Err: &errs.NodeError{Node: "c@h", Kind: errs.KindTimeout}},
	})
	c.observeFanout("multiapply", []actors.Result{{Node: "a@h", Err: &errs.NodeError{Node: "a@h", Kind: errs.KindRemote}}})
	got := gather(t, c)
	want(t, got, `cloister_fanout_results_total{op="multicall",outcome="ok"}`, 1)
	want(t, got, `cloister_fanout_results_total{op="multicall",outcome="timeout"}`, 2)
	want(t, got, `cloister_fanout_results_total{op="multiapply",outcome="remote"}`, 1)
}

func TestInstrumentChainsObserveWrapsTheListenerAndHooksFanout(t *testing.T) {
	c, _ := newWithClock()
	opts := actors.DefaultOptions()
	var seen []listener.Event
	opts.Observe = func(e listener.Event) { seen = append(seen, e) }
	var fanned int
	opts.ObserveFanout = func(string, []actors.Result) { fanned++ }
	var heard int
	opts.Listener = listener.Func(func(from, to listener.State, s listener.Snapshot) { heard++ })
	c.Instrument(&opts)

	opts.Observe(listener.RingsRebuilt{Members: []string{"a@h"}})
	if len(seen) != 1 {
		t.Errorf("the Observe set before Instrument saw %d effects, want 1", len(seen))
	}
	opts.Listener.OnStateChange("down", "assembling", listener.Snapshot{State: "assembling"})
	if heard != 1 {
		t.Errorf("the user's listener heard %d changes, want 1", heard)
	}
	if opts.ObserveFanout == nil {
		t.Fatal("Instrument did not install the fan-out hook")
	}
	opts.ObserveFanout("multicall", []actors.Result{{Node: "a@h"}})
	if fanned != 1 {
		t.Errorf("the ObserveFanout set before Instrument saw %d fan-outs, want 1", fanned)
	}
	got := gather(t, c)
	want(t, got, "cloister_rehashes_total", 1)
	want(t, got, "cloister_listener_duration_seconds_count", 1)
	want(t, got, `cloister_fanout_results_total{op="multicall",outcome="ok"}`, 1)

	// A nil Listener becomes the default logger, wrapped.
	var logged []string
	o2 := actors.DefaultOptions()
	o2.Logger = slog.New(recordHandler{&logged})
	New().Instrument(&o2)
	o2.Listener.OnStateChange("rehashing", "ready", listener.Snapshot{Node: "a@h", Members: []string{"a@h"}})
	if len(logged) != 1 || !strings.Contains(logged[0], "rehashing -> ready") {
		t.Errorf("default listener logged %q", logged)
	}
}

func TestMetricsPassLint(t *testing.T) {
	c := New()
	c.SetSource(func() listener.Snapshot {
		return listener.Snapshot{State: "ready", Members: []string{"a@h"},
			Rings: map[string]listener.Ring{"r": {Members: []string{"a@h"}, Epoch: 1}}}
	})
	c.observeFanout("multicall", []actors.Result{{Node: "a@h"}})
	c.observe(listener.Transition{From: listener.StateDown, To: listener.StateAssembling})
	problems, err := testutil.CollectAndLint(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

// Every public event type moves some counter: a new listener.Event type
// fails here until the collector counts it (or this test says why not).
func TestObserveCountsEveryEventType(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "../listener/state.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	examples := map[string]listener.Event{
		"Transition":   listener.Transition{From: listener.StateDown, To: listener.StateAssembling},
		"RingsRebuilt": listener.RingsRebuilt{Members: []string{"a@h"}},
		"DialStarted":  listener.DialStarted{Node: "b@h"},
		"Suspected":    listener.Suspected{Node: "b@h"},
		"Disconnected": listener.Disconnected{Node: "b@h"},
		"Removed":      listener.Removed{Node: "b@h", Reason: listener.RemovedGone},
		"GraceStarted": listener.GraceStarted{Node: "b@h"},
		"Recovered":    listener.Recovered{Node: "b@h"},
		"Stalled":      listener.Stalled{},
		"LeaveSent":    listener.LeaveSent{Node: "b@h"},
		"LeaveAcked":   listener.LeaveAcked{Node: "b@h"},
		"LeaveDone":    listener.LeaveDone{},
	}
	found := 0
	for _, d := range f.Decls {
		fd, ok := d.(*ast.FuncDecl)
		if !ok || fd.Recv == nil || fd.Name.Name != "isEvent" {
			continue
		}
		name := fd.Recv.List[0].Type.(*ast.Ident).Name
		found++
		e, ok := examples[name]
		if !ok {
			t.Errorf("listener.%s is a new event type: count it in Collector.observe and add it here", name)
			continue
		}
		c, _ := newWithClock()
		before := total(gather(t, c))
		c.observe(e)
		if after := total(gather(t, c)); after == before {
			t.Errorf("listener.%s moved no counter", name)
		}
	}
	if found != len(examples) {
		t.Errorf("%d event types declared, %d known here", found, len(examples))
	}
}

// total sums every counter (histogram counts included).
func total(m map[string]float64) float64 {
	s := 0.0
	for k, v := range m {
		if strings.HasPrefix(k, "cloister_") && !strings.HasSuffix(k, "_sum") && !strings.Contains(k, "cloister_state{") &&
			!strings.HasPrefix(k, "cloister_members") && !strings.HasPrefix(k, "cloister_consensus") {
			s += v
		}
	}
	return s
}

// recordHandler keeps every message logged.
type recordHandler struct{ msgs *[]string }

func (h recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h recordHandler) Handle(_ context.Context, r slog.Record) error {
	*h.msgs = append(*h.msgs, r.Message)
	return nil
}
func (h recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h recordHandler) WithGroup(string) slog.Handler      { return h }
