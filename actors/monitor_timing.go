package actors

import "time"

// The Monitor's timing that is not an option (Options holds the
// rest: heartbeat, suspicion, removal, reconcile, dial and backoff, flap
// grace, discovery interval). Every fixed duration the Monitor uses is
// here; none is written inline elsewhere.
const (
	// tickEvery is the shortest gap between two of the Monitor's ticks
	// (heartbeats, re-dials, grace expiries, reconciliation): a tick runs
	// at the core's next deadline (core.NextTick), but no sooner than this
	// after the last one, so it bounds how late a deadline is noticed when
	// deadlines crowd. In a steady cluster ticks come every slowTick.
	tickEvery = 50 * time.Millisecond

	// tickLost: a pending tick this far past its time is taken for lost
	// and armed again (monitor.rearmIn). Far above a tick's usual delay;
	// a late one that then arrives costs nothing (see resendTick).
	tickLost = 2 * time.Second

	// probeTimeoutHeartbeats: a connected non-member that has not answered
	// a probe within this many heartbeats may be probed again at once when
	// it asks us (core.Config.ProbeTimeout = this × Heartbeat).
	probeTimeoutHeartbeats = 2

	// reprobeEvery is how often a connected node that is not a member (a
	// cloister still starting, or a plain BEAM or Ergo node) is asked
	// again whether it runs a cloister Monitor (core.Config.Reprobe).
	reprobeEvery = 2 * time.Second

	// firstDialGraceBackoffs: a first contact whose name sorts before ours
	// is left this many BackoffMin to dial us before we dial it
	// (core.Config.FirstDialGrace). Longer than the assembly cap below, so
	// a lower node re-dialling us at that cap usually comes first.
	firstDialGraceBackoffs = 8

	// assemblyBackoffs caps, in BackoffMin, the re-dial wait towards a
	// first contact whose name sorts after ours until this node is first
	// ready (core.Config.AssemblyBackoffMax).
	assemblyBackoffs = 4

	// probeForget: a probe whose answer has not come within this time is
	// forgotten; a late answer is then ignored (the heartbeat asks again).
	probeForget = 10 * time.Second

	// dialLogEvery: a peer that keeps failing to connect is logged on the
	// first failure, on every change of cause, and then at most this often.
	dialLogEvery = time.Minute

	// dialForget: the failure record of a peer not logged for this long is
	// dropped (its next failure is logged as a first one).
	dialForget = 10 * time.Minute

	// listenerSlow: a listener call slower than this is logged.
	listenerSlow = time.Second

	// stopFlush bounds how long an orderly stop waits for the listener to
	// hear stopping and stopped.
	stopFlush = 2 * time.Second

	// stopWait bounds how long a stopping Monitor waits for the goroutines
	// it started (dials, disconnects, discovery) to return. They watch the
	// Monitor's context, so they normally return at once.
	stopWait = 2 * time.Second
)

// defaultWatchNeighbours is Options.WatchNeighbours's default: each member
// is watched by four others in a steady cluster.
const defaultWatchNeighbours = 2

// keepaliveEvery is the period of the links' keepalives, and the longest
// gap between two of the Monitor's ticks: a fifth of SuspectAfter. The
// keepalive ticks fall on a grid of this period on the wall clock
// (keepaliveAt), the same on every node, so that a node's peers write to
// it at about the same moment and its reads come in one wake-up rather
// than one each. Paced by SuspectAfter, not Heartbeat: a silence is judged
// against SuspectAfter and RemoveAfter, and the core counts a read as a
// sign of life until the next keepalive is due (linkGap), so a slower
// keepalive delays no detection past its deadline and brings none
// forward. The stall guard's clock runs on ticks: core.StallAfter is at
// least half of SuspectAfter, 2.5 of these periods. Never below tickEvery.
func keepaliveEvery(suspectAfter time.Duration) time.Duration {
	return max(suspectAfter/5, tickEvery)
}

// keepaliveBusy: at a keepalive tick, a link that wrote something within
// this long writes no keepalive (ergonode.Links); it carries traffic.
func keepaliveBusy(suspectAfter time.Duration) time.Duration { return suspectAfter / 20 }

// linkGap is the longest a live peer's link goes without a write (a
// quarter of SuspectAfter, core.Config.LinkGap): a keepalive every
// keepaliveEvery, skipped after a write less than keepaliveBusy before it.
func linkGap(suspectAfter time.Duration) time.Duration {
	return keepaliveEvery(suspectAfter) + keepaliveBusy(suspectAfter)
}

// keepaliveAt is the keepalive tick after now: the next multiple of
// keepaliveEvery on the wall clock.
func keepaliveAt(now time.Time, suspectAfter time.Duration) time.Time {
	every := keepaliveEvery(suspectAfter)
	return now.Truncate(every).Add(every)
}

// resolveKicks are the delays, after a member's connection drops in
// service (DNS) mode, at which the service is re-resolved: a killed
// container's address leaves the answer within moments, which ends its
// flap grace well before the grace runs out.
func resolveKicks() []time.Duration {
	return []time.Duration{0, 150 * time.Millisecond, 400 * time.Millisecond}
}

// maxDialFailuresKept bounds the per-peer dial failure records (a flood of
// bad names must not grow memory; each is still retried).
const maxDialFailuresKept = 4096

// rebuildDelay: a member list published while consensus is still short
// (no state change for the listener to hear) has its rings built this
// long after, once, with every change that came in the meantime. During an
// assembly of N nodes each node would otherwise build its rings about N
// times, each build costing O(N × 512 points, the default engine's) work
// and memory, on 2 cores shared by N processes. A change that comes with a state change
// (ready, a member lost from ready) is built at once, as before.
const rebuildDelay = 100 * time.Millisecond
