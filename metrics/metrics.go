// Package metrics is an optional Prometheus collector for cloister
// (github.com/prometheus/client_golang). Nothing in cloister depends on it:
// a node that wants metrics creates a Collector, lets it instrument the
// options before the start, points it at the cluster and serves it, e.g. on
// the health endpoint's mux:
//
//	col := metrics.New()
//	col.Instrument(&opts)                // Observe, Listener, fan-out hook
//	c, err := cloister.StartNode(name, opts, nopts)
//	col.SetSource(c.State)
//	mux := health.Handler(c.State)
//	mux.Handle("/metrics", col.Handler())
//
// Gauges (members, state, ring epochs, ...) are read from the cluster's
// snapshot when Prometheus scrapes; counters and histograms are fed by the
// Monitor's typed events (Options.Observe, listener.Event), by the listener
// wrapper and by the
// fan-out hook (Options.ObserveFanout). Every update is an atomic add: none
// blocks the Monitor.
//
// Every metric is named cloister_*. The outcome label of
// cloister_fanout_results_total is one of ok, timeout, no_connection,
// no_such_process, remote, refused and other.
package metrics

import (
	"errors"
	"github.com/cloister-go/cloister/internal/errs"
	"github.com/cloister-go/cloister/internal/logf"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cloister-go/cloister/actors"
	"github.com/cloister-go/cloister/app"
	"github.com/cloister-go/cloister/internal/listenerx"
	"github.com/cloister-go/cloister/listener"
)

// namespace prefixes every metric name.
const namespace = "cloister"

// Outcomes of one node in a fan-out, the values of the outcome label.
const (
	outcomeOK            = "ok"
	outcomeTimeout       = "timeout"
	outcomeNoConnection  = "no_connection"
	outcomeNoSuchProcess = "no_such_process"
	outcomeRemote        = "remote"
	outcomeRefused       = "refused"
	outcomeOther         = "other"
)

// Collector is a prometheus.Collector for one cloister node. Create it with
// New; it is safe for concurrent use.
type Collector struct {
	source atomic.Pointer[func() listener.Snapshot]
	last   atomic.Pointer[listener.Snapshot] // seen by the listener wrapper

	members, consensus, connected, suspects *prometheus.Desc
	state, ringEpoch, ringMembers           *prometheus.Desc
	memberRole                              *prometheus.Desc

	rehashes     prometheus.Counter
	rehashTime   prometheus.Histogram
	transitions  *prometheus.CounterVec
	suspicions   prometheus.Counter
	removals     prometheus.Counter
	dials        prometheus.Counter
	removed      *prometheus.CounterVec
	graces       prometheus.Counter
	recoveries   prometheus.Counter
	stalls       prometheus.Counter
	leaves       *prometheus.CounterVec
	listenerLat  prometheus.Histogram
	listenerTime prometheus.Histogram
	fanout       *prometheus.CounterVec

	mu          sync.Mutex
	rehashSince time.Time // when the Monitor entered rehashing (zero: not in it)
	now         func() time.Time

	handlerOnce sync.Once
	handler     http.Handler
}

// New returns a Collector with every counter at zero and no source: until
// SetSource (or the listener wrapper sees a change) the gauges report state
// down and no members.
func New() *Collector {
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, "", name), help, labels, nil)
	}
	c := &Collector{
		members:     desc("members", "Members of the cluster as this node sees them, itself included."),
		consensus:   desc("consensus", "Members needed before the cluster is ready (Options.Consensus)."),
		connected:   desc("connected_nodes", "Nodes this node is connected to (members or not)."),
		suspects:    desc("suspects", "Members currently suspected by the heartbeat."),
		state:       desc("state", "Monitor state: 1 for the current state, 0 for the others.", "state"),
		ringEpoch:   desc("ring_epoch", "This node's rebuild counter of the ring (not comparable across nodes).", "ring"),
		ringMembers: desc("ring_members", "Members of the ring.", "ring"),
		memberRole:  desc("member_role", "1 for each role each member announces (Options.Roles); a member without roles has none.", "member", "role"),
		rehashes: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "rehashes_total",
			Help: "Ring rebuilds: times the member list changed and the rings were rebuilt."}),
		rehashTime: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: namespace, Name: "rehash_duration_seconds",
			Help:    "Time spent in state rehashing per visit (ring rebuild and hand-back; a cluster below consensus stays there).",
			Buckets: prometheus.ExponentialBuckets(100e-6, 4, 10)}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "transitions_total",
			Help: "Monitor state transitions."}, []string{"from", "to"}),
		suspicions: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "heartbeat_suspicions_total",
			Help: "Members suspected after SuspectAfter without a heartbeat answer."}),
		removals: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "heartbeat_removals_total",
			Help: "Members removed and disconnected after RemoveAfter without a heartbeat answer."}),
		dials: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "dials_total",
			Help: "Connection attempts started by the Monitor."}),
		removed: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "member_removals_total",
			Help: "Members taken out of the rings, by reason (silent, connection_lost, grace_expired, foreign, gone)."},
			[]string{"reason"}),
		graces: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "flap_graces_total",
			Help: "Members whose connection dropped and who were kept in the rings for the flap grace."}),
		recoveries: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "flap_recoveries_total",
			Help: "Members back within their flap grace (the rings did not change)."}),
		stalls: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "stalls_total",
			Help: "Times this node's own ticks stopped (frozen or starved process)."}),
		leaves: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "leave_steps_total",
			Help: "Graceful leaves: notices this node sent (sent), leaves of others it acknowledged (acked), its own leaves over (done)."},
			[]string{"step"}),
		listenerLat: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: namespace, Name: "listener_latency_seconds",
			Help:    "From a state change to the listener starting to handle it (queueing in the dispatcher).",
			Buckets: prometheus.ExponentialBuckets(10e-6, 4, 10)}),
		listenerTime: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: namespace, Name: "listener_duration_seconds",
			Help:    "Time the listener took to handle one state change.",
			Buckets: prometheus.ExponentialBuckets(10e-6, 4, 12)}),
		fanout: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "fanout_results_total",
			Help: "Per-node outcomes of Multicall and Multiapply calls made from this node, by error kind."},
			[]string{"op", "outcome"}),
		now: time.Now,
	}
	return c
}

// SetSource makes the gauges read src (typically cloister.Cluster.State)
// at every scrape. Without it they read the last snapshot the listener
// wrapper saw.
func (c *Collector) SetSource(src func() listener.Snapshot) {
	if src == nil {
		c.source.Store(nil)
		return
	}
	c.source.Store(&src)
}

func (c *Collector) snapshot() listener.Snapshot {
	if src := c.source.Load(); src != nil {
		return (*src)()
	}
	if s := c.last.Load(); s != nil {
		return *s
	}
	return listener.Snapshot{State: listener.StateDown}
}

// Instrument wires the collector into opts before the node starts: it
// chains Observe (an Observe already set still runs, first), wraps the
// Listener (nil: the default logger, as cloister would use) and chains
// ObserveFanout the same way, so fan-outs of this cluster's node are
// counted (and only those).
func (c *Collector) Instrument(opts *app.Options) {
	if prev := opts.Observe; prev != nil {
		opts.Observe = func(e listener.Event) {
			prev(e)
			c.observe(e)
		}
	} else {
		opts.Observe = c.observe
	}
	next := opts.Listener
	if next == nil {
		next = listenerx.Logger{Logf: logf.To(opts.Logger, slog.LevelInfo)}
	}
	opts.Listener = c.wrapListener(next)
	if prev := opts.ObserveFanout; prev != nil {
		opts.ObserveFanout = func(op string, results []actors.Result) {
			prev(op, results)
			c.observeFanout(op, results)
		}
	} else {
		opts.ObserveFanout = c.observeFanout
	}
}

// observe counts one event of the Monitor (app.Options.Observe): state
// transitions, ring rebuilds and the time spent rehashing, heartbeat
// suspicions and removals, members removed by reason, flap graces and
// recoveries, stalls, dials. It runs on the Monitor's goroutine and
// only adds to atomic counters.
func (c *Collector) observe(ev listener.Event) {
	switch e := ev.(type) {
	case listener.Transition:
		c.transitions.WithLabelValues(string(e.From), string(e.To)).Inc()
		c.mu.Lock()
		now := c.now()
		if e.From == listener.StateRehashing && !c.rehashSince.IsZero() {
			c.rehashTime.Observe(now.Sub(c.rehashSince).Seconds())
			c.rehashSince = time.Time{}
		}
		if e.To == listener.StateRehashing {
			c.rehashSince = now
		}
		c.mu.Unlock()
	case listener.RingsRebuilt:
		c.rehashes.Inc()
	case listener.Suspected:
		c.suspicions.Inc()
	case listener.Disconnected:
		c.removals.Inc()
	case listener.DialStarted:
		c.dials.Inc()
	case listener.Removed:
		c.removed.WithLabelValues(removalReason(e.Reason)).Inc()
	case listener.GraceStarted:
		c.graces.Inc()
	case listener.Recovered:
		c.recoveries.Inc()
	case listener.Stalled:
		c.stalls.Inc()
	case listener.LeaveSent:
		c.leaves.WithLabelValues("sent").Inc()
	case listener.LeaveAcked:
		c.leaves.WithLabelValues("acked").Inc()
	case listener.LeaveDone:
		c.leaves.WithLabelValues("done").Inc()
	}
}

// removalReason is the reason label: the reason's own value, "other" for
// a value that is none of listenerx.RemovalReasons.
func removalReason(r listener.RemovalReason) string {
	if slices.Contains(listenerx.RemovalReasons(), r) {
		return string(r)
	}
	return "other"
}

// wrapListener wraps next so that every delivery is timed: the latency from the
// change (the snapshot's At) to the call, and the call's duration. The
// snapshot is kept for the gauges when no source is set. A panic in next
// still reaches the dispatcher, which recovers and logs it.
func (c *Collector) wrapListener(next listener.Listener) listener.Listener {
	return listener.Func(func(from, to listener.State, s listener.Snapshot) {
		start := c.now()
		if !s.At.IsZero() {
			c.listenerLat.Observe(start.Sub(s.At).Seconds())
		}
		snap := s
		c.last.Store(&snap)
		defer func() { c.listenerTime.Observe(c.now().Sub(start).Seconds()) }()
		if next != nil {
			next.OnStateChange(from, to, s)
		}
	})
}

// observeFanout counts the per-node outcomes of one Multicall or
// Multiapply (op "multicall" or "multiapply"), by error kind.
func (c *Collector) observeFanout(op string, results []actors.Result) {
	for _, r := range results {
		c.fanout.WithLabelValues(op, outcomeOf(r.Err)).Inc()
	}
}

// outcomeOf names the outcome label for a fan-out result's error.
func outcomeOf(err error) string {
	if err == nil {
		return outcomeOK
	}
	var ne *errs.NodeError
	if !errors.As(err, &ne) {
		return outcomeOther
	}
	switch ne.Kind {
	case errs.KindTimeout:
		return outcomeTimeout
	case errs.KindNoConnection:
		return outcomeNoConnection
	case errs.KindNoSuchProcess:
		return outcomeNoSuchProcess
	case errs.KindRemote:
		return outcomeRemote
	case errs.KindRefused:
		return outcomeRefused
	}
	return outcomeOther
}

func (c *Collector) counters() []prometheus.Collector {
	return []prometheus.Collector{c.rehashes, c.rehashTime, c.transitions, c.suspicions, c.removals,
		c.dials, c.removed, c.graces, c.recoveries, c.stalls, c.leaves, c.listenerLat, c.listenerTime, c.fanout}
}

// Describe sends every metric's description.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.members, c.consensus, c.connected, c.suspects, c.state, c.ringEpoch, c.ringMembers, c.memberRole} {
		ch <- d
	}
	for _, m := range c.counters() {
		m.Describe(ch)
	}
}

// Collect reads the snapshot for the gauges and sends every metric.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	s := c.snapshot()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(c.members, float64(len(s.Members)))
	gauge(c.consensus, float64(s.Consensus))
	gauge(c.connected, float64(len(s.Connected)))
	gauge(c.suspects, float64(len(s.Suspects)))
	for _, st := range listenerx.States() {
		v := 0.0
		if st == s.State {
			v = 1
		}
		gauge(c.state, v, string(st))
	}
	names := make([]string, 0, len(s.Rings))
	for n := range s.Rings {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		gauge(c.ringEpoch, float64(s.Rings[n].Epoch), n)
		gauge(c.ringMembers, float64(len(s.Rings[n].Members)), n)
	}
	for _, m := range slices.Sorted(maps.Keys(s.Roles)) {
		for _, r := range s.Roles[m] {
			gauge(c.memberRole, 1, m, r)
		}
	}
	for _, m := range c.counters() {
		m.Collect(ch)
	}
}

// Handler serves the collector, with the Go runtime and process
// collectors, from a registry of its own, in the Prometheus text format.
func (c *Collector) Handler() http.Handler {
	c.handlerOnce.Do(func() {
		reg := prometheus.NewRegistry()
		reg.MustRegister(c, collectors.NewGoCollector(),
			collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		c.handler = promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
	})
	return c.handler
}
