package distfilter

import (
	"log"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ergo-services/ergo/etf"
	"github.com/ergo-services/ergo/node"
)

// The link guard sits between every connection (BEAM and Ergo peers alike)
// and Ergo's core, where decoded control messages are routed. Ergo
// believes the pids a peer names in them: a LINK, UNLINK or EXIT whose
// sender is a pid of another node — this one included — is acted on, so a
// peer with the cookie could link two of our own processes, cut a
// supervisor's link to its child, or deliver a kill "from" a local process
// to everything linked to it. Those are dropped: a peer speaks only for
// its own processes (as the BEAM's distribution does). And with
// Options.AcceptLink, a link the embedding program does not want (cloister
// refuses links from non-members to its own processes) is dropped before
// Ergo records it, so the exit signal that follows reaches nobody.

// guardStats counts what the guard dropped, and throttles its log lines.
type guardStats struct {
	forged  atomic.Uint64 // control messages naming another node's pid as sender
	refused atomic.Uint64 // links AcceptLink refused

	mu   sync.Mutex
	last map[string]time.Time // cause -> last logged
	skip map[string]int       // cause -> lines suppressed since
}

// guardLogEvery is how often each kind of guard notice may be logged.
const guardLogEvery = 10 * time.Second

func (g *guardStats) note(f *filter, cause, format string, args ...interface{}) {
	g.mu.Lock()
	if g.last == nil {
		g.last, g.skip = map[string]time.Time{}, map[string]int{}
	}
	now := time.Now()
	if t, ok := g.last[cause]; ok && now.Sub(t) < guardLogEvery {
		g.skip[cause]++
		g.mu.Unlock()
		return
	}
	skipped := g.skip[cause]
	g.last[cause], g.skip[cause] = now, 0
	g.mu.Unlock()
	if skipped > 0 {
		format += " (%d more like it since the last such line)"
		args = append(args, skipped)
	}
	f.logf(format, args...)
}

// guardRouter is Ergo's router as one connection's reader sees it.
type guardRouter struct {
	node.CoreRouter
	f    *filter
	peer string
}

func (g guardRouter) forged(op string, from etf.Pid) bool {
	if string(from.Node) == g.peer {
		return false
	}
	g.f.guard.forged.Add(1)
	g.f.guard.note(g.f, "forged", "distfilter: dropped a %s from %s naming %s's pid %s as its sender: a peer speaks only for its own processes",
		op, g.peer, from.Node, pidText(from))
	return true
}

// RouteLink implements node.CoreRouter: LINK {1, From, To}.
func (g guardRouter) RouteLink(from, to etf.Pid) error {
	if g.forged("LINK", from) {
		return nil
	}
	if accept := g.f.opts.AcceptLink; accept != nil && !accept(g.peer, to) {
		g.f.guard.refused.Add(1)
		g.f.guard.note(g.f, "refused", "distfilter: refused a link from %s (%s) to %s",
			g.peer, pidText(from), pidText(to))
		return nil
	}
	return g.CoreRouter.RouteLink(from, to)
}

// RouteUnlink implements node.CoreRouter: UNLINK {4, From, To}.
func (g guardRouter) RouteUnlink(from, to etf.Pid) error {
	if g.forged("UNLINK", from) {
		return nil
	}
	return g.CoreRouter.RouteUnlink(from, to)
}

// RouteExit implements node.CoreRouter: EXIT {3, From, To, Reason}. Ergo
// delivers it to every process linked to From, whatever To says.
func (g guardRouter) RouteExit(to, terminated etf.Pid, reason string) error {
	if g.forged("EXIT", terminated) {
		return nil
	}
	return g.CoreRouter.RouteExit(to, terminated, reason)
}

// RouteMonitorExit implements node.CoreRouter: MONITOR_P_EXIT naming the
// process that ended, which must be the peer's.
func (g guardRouter) RouteMonitorExit(terminated etf.Pid, reason string, ref etf.Ref) error {
	if g.forged("MONITOR_P_EXIT", terminated) {
		return nil
	}
	return g.CoreRouter.RouteMonitorExit(terminated, reason, ref)
}

func pidText(p etf.Pid) string {
	return "<" + string(p.Node) + "." + strconv.FormatUint(p.ID, 10) + ">"
}

// logf logs a notice of the filter's.
func (f *filter) logf(format string, args ...interface{}) {
	if f.opts.Logf != nil {
		f.opts.Logf(format, args...)
		return
	}
	log.Printf(format, args...)
}

// peerOf is the peer node of a connection the proto wrapper set up.
func (p *proto) peerOf(ci node.ConnectionInterface) string {
	if v, ok := p.peers.Load(ci); ok {
		return v.(string)
	}
	return ""
}

// guarded wraps the router for the connection to peer; a connection whose
// peer is unknown keeps Ergo's router.
func (p *proto) guarded(ci node.ConnectionInterface, router node.CoreRouter) node.CoreRouter {
	peer := p.peerOf(ci)
	if peer == "" {
		return router
	}
	return guardRouter{CoreRouter: router, f: p.f, peer: peer}
}
