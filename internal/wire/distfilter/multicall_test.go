package distfilter

import (
	"strings"
	"testing"
	"time"

	"github.com/cloister-go/cloister/internal/erltest"
)

// TestMultiCallAnyGoServer: gen_server:multi_call and Elixir's
// GenServer.multi_call reach a plain Go gen.Server (go_echo answers calls
// only; it has no multi_call code) with nothing written for it: the Go node
// answers like the BEAM twin and is no bad node, with a timeout and with
// the default infinity; a missing name is a bad node at once.
func TestMultiCallAnyGoServer(t *testing.T) {
	forEachOTP(t, func(t *testing.T, r erltest.Runtime) {
		e := sharedErl(t, r, false)
		twin := sharedErl(t, r, true)
		g := q(goName)
		expectEval(t, e, "net_kernel:connect_node("+g+")", "true")
		nodes := "[" + q(twin.Name) + ", " + g + "]"
		start := time.Now()
		got := mustEval(t, e, "gen_server:multi_call("+nodes+", go_echo, {echo, mc}, 2000)")
		took := time.Since(start)
		want := "{[{" + q(twin.Name) + ",{reply,mc," + q(twin.Name) + "}},{" + g + ",{reply,mc," + g + "}}],[]}"
		if got != want {
			t.Fatalf("multi_call with 2000:\n got  %s\n want %s", got, want)
		}
		t.Logf("%s: multi_call to a BEAM and a Go server: %v", r, took)
		// infinity (the default): bounded only by Eval's own timeout
		expectEval(t, e, "gen_server:multi_call(["+g+"], go_echo, {echo, [1, <<\"b\">>]})",
			"{[{"+g+",{reply,[1,<<98>>],"+g+"}}],[]}")
		// many at once, from many processes
		expectEval(t, e, "Self = self(), [spawn(fun() -> Self ! gen_server:multi_call(["+g+"], go_echo, {echo, I}, 5000) end) || I <- lists:seq(1, 200)], "+
			"lists:usort([case R of {[{_, {reply, _, _}}], []} -> ok; Other -> Other end || R <- dft_srv:collect(200, 5000)])", "[ok]")
		// a name nobody has: a bad node, not a wait for the timeout
		start = time.Now()
		expectEval(t, e, "gen_server:multi_call(["+g+"], no_such_server, x, 3000)", "{[],["+g+"]}")
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("missing name took %v", d)
		}
		// Elixir's GenServer.multi_call, default timeout (infinity)
		expectEval(t, twin, "net_kernel:connect_node("+g+")", "true")
		v := mustEval(t, twin, "'Elixir.GenServer':multi_call(["+g+"], go_echo, {echo, ex})")
		if !strings.Contains(v, "{reply,ex,"+g+"}") || !strings.HasSuffix(v, ",[]}") {
			t.Fatalf("Elixir multi_call: %s", v)
		}
		expectEval(t, e, "lists:member("+g+", nodes())", "true")
	})
}
