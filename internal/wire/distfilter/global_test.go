package distfilter

import (
	"strings"
	"testing"
	"time"

	"github.com/cloister-go/cloister/internal/erltest"
	"github.com/cloister-go/cloister/internal/testenv"
)

// bounded evaluates a possibly blocking expression in a fresh process of
// node n: its value, or timeout after ms.
func bounded(expr string, ms int) string {
	return "Self = self(), spawn(fun() -> Self ! {bounded, begin " + expr + " end} end), " +
		"receive {bounded, R} -> R after " + itoa(ms) + " -> timeout end"
}

func itoa(i int) string {
	s := ""
	for ; i > 0; i /= 10 {
		s = string(rune('0'+i%10)) + s
	}
	if s == "" {
		return "0"
	}
	return s
}

// TestGlobalWithGoNode: Erlang's global on two BEAM nodes connected to
// each other and to the Go node: sync returns, names registered (also for
// a Go pid) are seen on both BEAM nodes, trans and set_lock over nodes()
// (the Go node included) work and the Go node's lock table refuses a
// second requester, and a BEAM node losing its link to the Go node makes
// nobody disconnect anybody (global's prevent-overlapping-partitions).
func TestGlobalWithGoNode(t *testing.T) {
	forEachOTP(t, func(t *testing.T, r erltest.Runtime) {
		a := startErl(t, r, "globa", false)
		b := startErl(t, r, "globb", false)
		g := q(goName)
		expectEval(t, a, "net_kernel:connect_node("+q(b.Name)+")", "true")
		expectEval(t, a, "net_kernel:connect_node("+g+")", "true")
		expectEval(t, b, "net_kernel:connect_node("+g+")", "true")
		for _, n := range []*erltest.Node{a, b} {
			start := time.Now()
			expectEval(t, n, bounded("global:sync()", 10000), "ok")
			t.Logf("%s: global:sync() with the Go node connected: %v", n.Name, time.Since(start))
			expectEval(t, n, "lists:member("+g+", nodes())", "true")
		}
		// names among the BEAM nodes, as without the Go node
		expectEval(t, a, "P = spawn(fun() -> receive stop -> ok end end), erltest_ctl:set(gp, P), global:register_name(glob_a, P)", "yes")
		expectEval(t, b, "ok = begin "+bounded("global:sync()", 10000)+" end, global:whereis_name(glob_a) =:= rpc:call("+q(a.Name)+", erltest_ctl, get, [gp])", "true")
		expectEval(t, b, "global:register_name(glob_a, self())", "no")
		// a Go process under a global name
		expectEval(t, a, "GoPid = gen_server:call({go_echo, "+g+"}, new_linkee), global:register_name(glob_go, GoPid)", "yes")
		expectEval(t, b, "ok = begin "+bounded("global:sync()", 10000)+" end, node(global:whereis_name(glob_go))", g)
		// trans and set_lock over nodes(): the Go node is asked too
		expectEval(t, a, bounded("global:trans({glob_res, self()}, fun() -> done end)", 10000), "done")
		// a lock is held by a process (as on BEAM nodes, it goes with it)
		expectEval(t, a, "Self = self(), H = spawn(fun() -> Self ! {h, global:set_lock({glob_lock, req1})}, "+
			"receive {release, From} -> From ! {h, global:del_lock({glob_lock, req1})} end end), erltest_ctl:set(holder, H), "+
			"receive {h, R} -> R after 10000 -> timeout end", "true")
		expectEval(t, b, bounded("global:set_lock({glob_lock, req2}, ["+g+"], 0)", 10000), "false")
		expectEval(t, b, bounded("global:set_lock({glob_lock, req2}, ["+q(a.Name)+"], 0)", 10000), "false")
		expectEval(t, a, "erltest_ctl:get(holder) ! {release, self()}, receive {h, R} -> R after 10000 -> timeout end", "true")
		expectEval(t, b, bounded("global:set_lock({glob_lock, req2}, ["+g+"], 0)", 10000), "true")
		// the holder of a lock dies: the Go node releases it
		expectEval(t, b, bounded("P = spawn(fun() -> true = global:set_lock({glob_dead, r1}, ["+g+"], 0), receive _ -> ok end end), "+
			"timer:sleep(100), exit(P, kill), timer:sleep(300), global:set_lock({glob_dead, r2}, ["+g+"], 0)", 10000), "true")
		// b drops its link to the Go node: a and b stay linked, a keeps the
		// Go node (no overlapping-partition disconnects)
		expectEval(t, b, "erlang:disconnect_node("+g+")", "true")
		// b's global announces the lost connection to a; a's global keeps
		// it in global_lost_connections and, in the same step, decides
		// whether to disconnect anyone. Once it is kept, a system message
		// answered by a's global and then by net_kernel (which carries a
		// disconnect out) means the decision is made and acted on, and a
		// marker logged after it means any line global logged is out.
		testenv.WaitFor(t, 10*time.Second, a.Name+" to hear that "+b.Name+" lost the Go node", func() bool {
			return mustEval(t, a, "ets:member(global_lost_connections, {"+q(b.Name)+", "+g+"})") == "true"
		})
		for _, n := range []*erltest.Node{a, b} {
			expectEval(t, n, "_ = sys:get_state(global_name_server, 5000), _ = sys:get_state(net_kernel, 5000), "+
				"logger:warning(\"global_test: decided\"), ok", "ok")
			testenv.WaitFor(t, 10*time.Second, n.Name+"'s log to show the marker", func() bool {
				return strings.Contains(n.Output(), "global_test: decided")
			})
		}
		expectEval(t, a, "lists:sort([lists:member("+q(b.Name)+", nodes()), lists:member("+g+", nodes())])", "[true,true]")
		expectEval(t, b, "lists:member("+q(a.Name)+", nodes())", "true")
		for _, n := range []*erltest.Node{a, b} {
			if out := n.Output(); strings.Contains(out, "overlapping partitions") {
				t.Errorf("%s logged a disconnect by global:\n%s", n.Name, out)
			}
			expectEval(t, n, bounded("global:sync()", 10000), "ok")
		}
		// b links to the Go node again: a new session, answered again
		expectEval(t, b, "net_kernel:connect_node("+g+")", "true")
		expectEval(t, b, "ok = begin "+bounded("global:sync()", 10000)+" end, lists:member("+g+", nodes())", "true")
		expectEval(t, a, "whereis(global_name_server) =/= undefined", "true")
	})
}
