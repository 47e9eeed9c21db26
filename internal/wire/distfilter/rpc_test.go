package distfilter

import (
	"fmt"
	"strings"
	"testing"

	"github.com/ergo-services/ergo/gen"

	"github.com/cloister-go/cloister/internal/erltest"
)

// TestRPCMatchesBEAM runs the same rpc/erpc calls from an erl node against
// a BEAM twin (dft_srv registered as go_echo, like the Go go_echo) and
// against the Go node, and requires the same terms (node names aside).
func TestRPCMatchesBEAM(t *testing.T) {
	forEachOTP(t, func(t *testing.T, r erltest.Runtime) {
		caller := startErl(t, r, "rpccaller", false)
		twin := sharedErl(t, r, false)
		exTwin := sharedErl(t, r, true)
		served := theF.rpcServed.Load()
		cases := []struct{ expr, via string }{
			{"rpc:call(N, gen_server, call, [go_echo, {echo, 42}])", ""},
			{"rpc:call(N, gen_server, call, [go_echo, {echo, [<<\"b\">>, \"s\", 1.5, -7, 1 bsl 70, #{a => {}}]}, 2000])", ""},
			{"rpc:call(N, gen_server, call, [go_echo, {echo, x}, infinity])", ""},
			{"rpc:call(N, gen_server, call, [{go_echo, N}, {echo, 1}])", ""},
			{"rpc:call(N, gen_server, call, [no_such, x])", ""},
			{"rpc:call(N, gen_server, call, [no_such, x, 500])", ""},
			{"rpc:call(N, gen_server, call, [{global, no_such}, x])", ""},
			{"rpc:call(N, gen_server, call, [go_echo, {sleep, 400}, 50])", ""},
			{"rpc:call(N, gen_server, cast, [go_echo, hello])", ""},
			{"rpc:call(N, gen_server, cast, [no_such, hello])", ""},
			{"rpc:call(N, erlang, node, [])", ""},
			{"rpc:call(N, nomod, nofun, [1, \"a\", <<>>])", ""},
			{"rpc:call(N, nomod, nofun, [])", ""},
			{"rpc:call(N, gen_server, call, [a])", ""},
			{"catch erpc:call(N, nomod, nofun, [x])", ""},
			{"catch erpc:call(N, gen_server, call, [no_such, x])", ""},
			{"erpc:call(N, gen_server, call, [go_echo, {echo, e}])", ""},
			{"rpc:multicall([N], erlang, node, [])", ""},
			{"rpc:multicall([N, N], gen_server, call, [go_echo, {echo, m}])", ""},
			{"rpc:cast(N, gen_server, cast, [go_echo, hello])", ""},
			{"erpc:cast(N, gen_server, cast, [go_echo, hello])", ""},
			{"rpc:eval_everywhere([N], gen_server, cast, [go_echo, hello])", ""},
			{"rpc:call(N, 'Elixir.GenServer', call, [go_echo, {echo, ex}])", "ex"},
			{"rpc:call(N, 'Elixir.GenServer', call, [no_such, x])", "ex"},
			{"rpc:call(N, 'Elixir.GenServer', call, [go_echo, {sleep, 400}, 50])", "ex"},
			{"rpc:call(N, 'Elixir.GenServer', cast, [go_echo, hello])", "ex"},
			{"rpc:call(N, dft_go, add, [1, 2, 3])", ""},
		}
		for _, c := range cases {
			tw := twin
			if c.via == "ex" {
				tw = exTwin
			}
			want := mustEval(t, caller, "N = "+q(tw.Name)+", "+c.expr)
			got := mustEval(t, caller, "N = "+q(goName)+", "+c.expr)
			want = strings.ReplaceAll(want, q(tw.Name), "NODE")
			got = strings.ReplaceAll(got, q(goName), "NODE")
			if got != want {
				t.Errorf("%s\n go:   %s\n beam: %s", c.expr, got, want)
			} else {
				t.Logf("%s -> %s", c.expr, got)
			}
		}
		expectEval(t, caller, "lists:member("+q(goName)+", nodes())", "true")
		if theF.rpcServed.Load()-served < uint64(len(cases)) {
			t.Fatalf("the filter answered %d spawn requests for %d cases", theF.rpcServed.Load()-served, len(cases))
		}
	})
}

func TestRPCGoFuncs(t *testing.T) {
	forEachOTP(t, func(t *testing.T, r erltest.Runtime) {
		e := sharedErl(t, r, false)
		g := q(goName)
		expectEval(t, e, "rpc:call("+g+", dft_go, add, [1, 2, 1 bsl 40])", fmt.Sprint(3+1<<40))
		expectEval(t, e, "rpc:call("+g+", dft_go, add, [])", "0")
		expectEval(t, e, "rpc:call("+g+", dft_go, add, [a])", "{badrpc,{'EXIT',{badarith,[{dft_go,add,[a],[]}]}}}")
		expectEval(t, e, "rpc:call("+g+", dft_go, fail, [1])", "{badrpc,{'EXIT',{{go_error,<<105,116,32,102,97,105,108,101,100>>},[{dft_go,fail,[1],[]}]}}}")
		expectEval(t, e, "catch erpc:call("+g+", dft_go, throw, [x])", "{thrown,[x]}")
		expectEval(t, e, "rpc:call("+g+", dft_go, missing, [])", "{badrpc,{'EXIT',{undef,[{dft_go,missing,[],[]}]}}}")
		// a Go server that stops while answering: its reason, as gen_server:call exits
		if _, err := goNode.Spawn("go_stopme", gen.ProcessOptions{}, &echoServer{}); err != nil {
			t.Fatal(err)
		}
		expectEval(t, e, "rpc:call("+g+", gen_server, call, [go_stopme, {stop, custom}])",
			"{badrpc,{'EXIT',{custom,{gen_server,call,[go_stopme,{stop,custom}]}}}}")
	})
}

// A Go function runs through the Funcs' cap: beyond it the caller gets
// error:busy and nothing runs.
func TestRPCGoFuncsShareTheCap(t *testing.T) {
	forEachOTP(t, func(t *testing.T, r erltest.Runtime) {
		e := sharedErl(t, r, false)
		g := q(goName)
		before := limitedFuncs.runs.Load()
		expectEval(t, e, "rpc:call("+g+", dft_go, add, [1])", "1")
		if got := limitedFuncs.runs.Load() - before; got != 1 {
			t.Fatalf("the function ran %d times through TryGo, want 1", got)
		}
		limitedFuncs.full.Store(true)
		defer limitedFuncs.full.Store(false)
		expectEval(t, e, "rpc:call("+g+", dft_go, add, [1])", "{badrpc,{'EXIT',{busy,[{dft_go,add,[1],[]}]}}}")
		if got := limitedFuncs.runs.Load() - before; got != 1 {
			t.Fatalf("a call beyond the cap ran (%d runs)", got)
		}
	})
}

func TestRPCConcurrentAndTimed(t *testing.T) {
	forEachOTP(t, func(t *testing.T, r erltest.Runtime) {
		e := sharedErl(t, r, false)
		g := q(goName)
		// 500 concurrent forwarded calls, each answered with its own value
		expectEval(t, e, `N = `+g+`, Self = self(),
			[spawn(fun() -> Self ! {I, rpc:call(N, gen_server, call, [go_echo, {echo, I}])} end) || I <- lists:seq(1, 500)],
			Rs = [receive {I, R} -> R after 20000 -> timeout end || I <- lists:seq(1, 500)],
			Bad = [{I, R} || {I, R} <- lists:zip(lists:seq(1, 500), Rs), R =/= {reply, I, N}],
			{length(Bad), lists:sublist(Bad, 3)}`, "{0,[]}")
		// per-call cost, Go node vs the BEAM twin
		twin := sharedErl(t, r, true) // a remote BEAM node with go_echo too
		for _, target := range []string{g, q(twin.Name)} {
			v := mustEval(t, e, `N = `+target+`,
				[rpc:call(N, gen_server, call, [go_echo, {echo, 1}]) || _ <- lists:seq(1, 50)],
				Time = fun(F) -> T0 = erlang:monotonic_time(microsecond), [F() || _ <- lists:seq(1, 1000)],
					(erlang:monotonic_time(microsecond) - T0) div 1000 end,
				{Time(fun() -> N = rpc:call(N, erlang, node, []) end),
				 Time(fun() -> {reply, 1, N} = rpc:call(N, gen_server, call, [go_echo, {echo, 1}]) end),
				 Time(fun() -> {reply, 1, N} = gen_server:call({go_echo, N}, {echo, 1}) end),
				 Time(fun() -> pong = net_adm:ping(N) end)}`)
			t.Logf("%s: to %s µs/call {rpc erlang:node, rpc gen_server:call, gen_server:call, ping} = %s", r, target, v)
		}
		expectEval(t, e, "lists:member("+g+", nodes())", "true")
	})
}
