package distfilter

import (
	"testing"

	"github.com/ergo-services/ergo/etf"
	"github.com/ergo-services/ergo/node"
)

// routerLog records what reaches Ergo's router.
type routerLog struct {
	node.CoreRouter
	got []string
}

func (r *routerLog) RouteLink(a, b etf.Pid) error   { r.got = append(r.got, "link"); return nil }
func (r *routerLog) RouteUnlink(a, b etf.Pid) error { r.got = append(r.got, "unlink"); return nil }
func (r *routerLog) RouteExit(to, from etf.Pid, reason string) error {
	r.got = append(r.got, "exit")
	return nil
}
func (r *routerLog) RouteMonitorExit(from etf.Pid, reason string, ref etf.Ref) error {
	r.got = append(r.got, "monitor_exit")
	return nil
}

// A peer speaks only for its own processes: a LINK, UNLINK, EXIT or
// MONITOR_P_EXIT naming a pid of another node (ours included) as the
// sender is dropped. Ergo acted on them: a forged EXIT "from" a local
// child made its supervisor restart a live child, and a forged LINK
// joined two local processes. AcceptLink vetoes the rest.
func TestGuardDropsForgedSendersAndRefusedLinks(t *testing.T) {
	f := newFilter(Options{Logf: t.Logf, AcceptLink: func(peer string, to etf.Pid) bool { return to.ID != 1001 }})
	log := &routerLog{}
	g := guardRouter{CoreRouter: log, f: f, peer: "peer@h"}
	theirs := etf.Pid{Node: "peer@h", ID: 77}
	ours := etf.Pid{Node: "me@h", ID: 1000}
	protected := etf.Pid{Node: "me@h", ID: 1001}
	other := etf.Pid{Node: "third@h", ID: 5}

	_ = g.RouteLink(theirs, ours)
	_ = g.RouteUnlink(theirs, ours)
	_ = g.RouteExit(ours, theirs, "kill")
	_ = g.RouteMonitorExit(theirs, "normal", etf.Ref{})
	if want := []string{"link", "unlink", "exit", "monitor_exit"}; len(log.got) != 4 {
		t.Fatalf("own-pid operations: got %v, want %v", log.got, want)
	}
	log.got = nil
	for _, forged := range []etf.Pid{ours, other} {
		_ = g.RouteLink(forged, protected)
		_ = g.RouteLink(forged, ours)
		_ = g.RouteUnlink(forged, ours)
		_ = g.RouteExit(theirs, forged, "kill")
		_ = g.RouteMonitorExit(forged, "kill", etf.Ref{})
	}
	_ = g.RouteLink(theirs, protected) // refused by AcceptLink
	if len(log.got) != 0 {
		t.Fatalf("forged or refused operations reached Ergo: %v", log.got)
	}
	if f.guard.forged.Load() != 10 || f.guard.refused.Load() != 1 {
		t.Fatalf("counted %d forged, %d refused", f.guard.forged.Load(), f.guard.refused.Load())
	}
}
