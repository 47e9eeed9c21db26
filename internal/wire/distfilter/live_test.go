package distfilter

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/ergo-services/ergo/etf"
	"github.com/ergo-services/ergo/gen"

	"github.com/cloister-go/cloister/internal/erltest"
)

func TestConnectAndCallBothWays(t *testing.T) {
	forEachOTP(t, func(t *testing.T, r erltest.Runtime) {
		e := sharedErl(t, r, false)
		start := time.Now()
		expectEval(t, e, "net_kernel:connect_node("+q(goName)+")", "true")
		t.Logf("%s: erl connect_node(go) %v", r, time.Since(start))
		expectEval(t, e, "gen_server:call({go_echo, "+q(goName)+"}, {echo, 42})", "{reply,42,"+q(goName)+"}")
		start = time.Now()
		expectEval(t, e, "gen_server:call({go_echo, "+q(goName)+"}, {echo, [a,<<\"b\">>,{c}]})", "{reply,[a,<<98>>,{c}],"+q(goName)+"}")
		t.Logf("%s: erl->go gen_server:call %v", r, time.Since(start))
		expectEval(t, e, "catch gen_server:call({no_such, "+q(goName)+"}, x)", "{'EXIT',{noproc,{gen_server,call,[{no_such,"+q(goName)+"},x]}}}")

		// Go dials: drop the link first
		expectEval(t, e, "erlang:disconnect_node("+q(goName)+")", "true")
		waitGone(t, e.Name)
		start = time.Now()
		var err error
		for i := 0; i < 50; i++ { // a half-closed old link may refuse the first try
			if err = goNode.Connect(e.Name); err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("go connect %s: %v", e.Name, err)
		}
		t.Logf("%s: go Connect(erl) %v", r, time.Since(start))
		v := inProbe(t, func(p *gen.ServerProcess) (interface{}, error) {
			start := time.Now()
			v, err := p.Call(gen.ProcessID{Name: "go_echo", Node: e.Name}, etf.Tuple{etf.Atom("echo"), "hi"})
			t.Logf("%s: go->erl Call %v", r, time.Since(start))
			return v, err
		})
		want := etf.Tuple{etf.Atom("reply"), "hi", etf.Atom(e.Name)}
		if !equalTerms(v, want) {
			t.Fatalf("go call: %#v, want %#v", v, want)
		}
	})
}

func TestPing(t *testing.T) {
	forEachOTP(t, func(t *testing.T, r erltest.Runtime) {
		e := sharedErl(t, r, false)
		// a fresh link: ping connects, then asks net_kernel is_auth
		mustEval(t, e, "erlang:disconnect_node("+q(goName)+")")
		waitGone(t, e.Name)
		start := time.Now()
		expectEval(t, e, "net_adm:ping("+q(goName)+")", "pong")
		t.Logf("%s: ping %v", r, time.Since(start))
		expectEval(t, e, "net_adm:ping("+q(goName)+")", "pong")
		expectEval(t, e, "lists:member("+q(goName)+", nodes())", "true")
	})
}

func TestTopLevelEmptyListKeepsLink(t *testing.T) {
	forEachOTP(t, func(t *testing.T, r erltest.Runtime) {
		e := sharedErl(t, r, false)
		expectEval(t, e, "net_kernel:connect_node("+q(goName)+")", "true")
		drainInbox()
		before := theF.repairedNil.Load()
		expectEval(t, e, "G = {go_inbox, "+q(goName)+"}, G ! [], G ! after_nil, ok", "ok")
		if m := nextInbox(t); m != "" {
			t.Fatalf("first message %#v, want \"\" (the [] repaired)", m)
		}
		if m := nextInbox(t); m != etf.Atom("after_nil") {
			t.Fatalf("second message %#v, want after_nil", m)
		}
		if theF.repairedNil.Load() == before {
			t.Fatal("repair counter did not move")
		}
		// the link is the same one: a call still works and erl saw no nodedown
		expectEval(t, e, "gen_server:call({go_echo, "+q(goName)+"}, {echo, 1})", "{reply,1,"+q(goName)+"}")
		expectEval(t, e, "lists:member("+q(goName)+", nodes())", "true")
	})
}

// A {} from erl would kill the plain Ergo gen.Server it reaches; the filter
// drops it, and the process and the link live on.
func TestEmptyTupleMessageKeepsProcess(t *testing.T) {
	forEachOTP(t, func(t *testing.T, r erltest.Runtime) {
		e := sharedErl(t, r, false)
		expectEval(t, e, "net_kernel:connect_node("+q(goName)+")", "true")
		before := theF.droppedEmptyTuple.Load()
		pid := goNode.ProcessByName("go_echo")
		if pid == nil {
			t.Fatal("go_echo is not running")
		}
		expectEval(t, e, "G = {go_echo, "+q(goName)+"}, G ! {}, erlang:send(G, {}), ok", "ok")
		expectEval(t, e, "gen_server:call({go_echo, "+q(goName)+"}, {echo, 7})", "{reply,7,"+q(goName)+"}")
		if n := theF.droppedEmptyTuple.Load() - before; n != 2 {
			t.Fatalf("dropped %d {} messages, want 2", n)
		}
		if goNode.ProcessByName("go_echo") != pid {
			t.Fatal("go_echo was restarted or replaced")
		}
		expectEval(t, e, "lists:member("+q(goName)+", nodes())", "true")
	})
}

func TestLinkUnlink(t *testing.T) {
	forEachOTP(t, func(t *testing.T, r erltest.Runtime) {
		e := sharedErl(t, r, false)
		g := q(goName)
		// erl links to a Go process that then exits: the reason arrives
		expectEval(t, e, "P = gen_server:call({go_echo, "+g+"}, new_linkee), dft_srv:linked_exit(P, boom)", "{exit,boom}")
		// erl links and unlinks (UNLINK_ID on OTP 26+), then the Go
		// process exits: no signal, and the link survived
		expectEval(t, e, "P = gen_server:call({go_echo, "+g+"}, new_linkee), dft_srv:unlink_then_exit(P, boom)", "unlinked")
		// erl monitors a Go process that exits: DOWN with the reason
		expectEval(t, e, "P = gen_server:call({go_echo, "+g+"}, new_linkee), dft_srv:monitor_exit(P, gone)", "{down,gone}")
		expectEval(t, e, "gen_server:call({go_echo, "+g+"}, {echo, 2})", "{reply,2,"+g+"}")

		// Go links to an erl process and unlinks (UNLINK becomes UNLINK_ID)
		mustEval(t, e, "P = spawn(fun() -> receive stop -> ok end end), erltest_ctl:set(p, P)")
		drainInbox()
		mustEval(t, e, "{go_inbox, "+g+"} ! {pid, erltest_ctl:get(p)}")
		m, _ := nextInbox(t).(etf.Tuple)
		if len(m) != 2 {
			t.Fatalf("inbox: %#v", m)
		}
		erlPid, _ := m[1].(etf.Pid)
		out := theF.unlinkOut.Load()
		inProbe(t, func(p *gen.ServerProcess) (interface{}, error) {
			p.Link(erlPid)
			return nil, nil
		})
		expectEval(t, e, "timer:sleep(100), {links, L} = process_info(erltest_ctl:get(p), links), length(L)", "1")
		inProbe(t, func(p *gen.ServerProcess) (interface{}, error) {
			p.Unlink(erlPid)
			return nil, nil
		})
		expectEval(t, e, "timer:sleep(100), {links, L} = process_info(erltest_ctl:get(p), links), length(L)", "0")
		expectEval(t, e, "lists:member("+g+", nodes())", "true")
		expectEval(t, e, "gen_server:call({go_echo, "+g+"}, {echo, 3})", "{reply,3,"+g+"}")
		if theF.unlinkOut.Load() == out {
			t.Error("Go's unlink did not go out as UNLINK_ID")
		}
		if theF.unlinkIn.Load() == 0 {
			t.Error("no UNLINK_ID from erl was translated")
		}
	})
}

func TestElixirCall(t *testing.T) {
	forEachOTP(t, func(t *testing.T, r erltest.Runtime) {
		e := sharedErl(t, r, true)
		g := q(goName)
		expectEval(t, e, "'Elixir.GenServer':call({go_echo, "+g+"}, {echo, <<\"s\">>})", "{reply,<<115>>,"+g+"}")
		expectEval(t, e, "'Elixir.Node':ping("+g+")", "pong")
		// Elixir cloister's fan-out is rpc:multicall
		expectEval(t, e, "rpc:multicall(["+g+"], 'Elixir.GenServer', call, [go_echo, {echo, 1}])", "{[{reply,1,"+g+"}],[]}")
	})
}

// equalTerms compares decoded terms structurally.
func equalTerms(a, b interface{}) bool {
	switch x := a.(type) {
	case etf.Tuple:
		y, ok := b.(etf.Tuple)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !equalTerms(x[i], y[i]) {
				return false
			}
		}
		return true
	case etf.List:
		y, ok := b.(etf.List)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !equalTerms(x[i], y[i]) {
				return false
			}
		}
		return true
	case []byte:
		y, ok := b.([]byte)
		return ok && string(x) == string(y)
	}
	return a == b
}

func TestLargeMessagesAndOrder(t *testing.T) {
	forEachOTP(t, func(t *testing.T, r erltest.Runtime) {
		e := sharedErl(t, r, false)
		g := q(goName)
		// erl -> Go -> erl: one frame each way, no fragmentation on BEAM links
		for _, size := range []int{70_000, 1 << 20, 8 << 20} {
			start := time.Now()
			expectEval(t, e, fmt.Sprintf(`B = binary:copy(<<1,2,3,4,5,6,7,8>>, %d), {reply, B2, _} = gen_server:call({go_echo, %s}, {echo, B}, 20000), B2 =:= B`, size/8, g), "true")
			t.Logf("%s: %d-byte echo erl->go->erl %v", r, size, time.Since(start))
		}
		// Go -> erl -> Go
		big := bytes.Repeat([]byte{9}, 1<<20)
		v := inProbe(t, func(p *gen.ServerProcess) (interface{}, error) {
			return p.CallWithTimeout(gen.ProcessID{Name: "go_echo", Node: e.Name}, etf.Tuple{etf.Atom("echo"), big}, 20)
		})
		if rep, ok := v.(etf.Tuple); !ok || len(rep) != 3 || !bytes.Equal(rep[1].([]byte), big) {
			t.Fatalf("1 MiB echo go->erl->go failed")
		}
		// 5000 messages in order, interleaved with a large one
		drainInbox()
		mustEval(t, e, `G = {go_inbox, `+g+`}, [begin G ! I, (I rem 1000 =:= 0) andalso (G ! {big, binary:copy(<<0>>, 100000)}) end || I <- lists:seq(1, 5000)], ok`)
		next := 1
		for next <= 5000 {
			switch m := nextInbox(t).(type) {
			case int, int64:
				if fmt.Sprint(m) != fmt.Sprint(next) {
					t.Fatalf("message %v arrived when %d was due", m, next)
				}
				next++
			case etf.Tuple: // the big ones
			default:
				t.Fatalf("unexpected %#v", m)
			}
		}
	})
}

// goMixSize is the size of Go -> erl message i: small ones with a 100 KB
// or 129.6 KB one every fifth, over Ergo's 64000-byte writer limit
// (ergonode's order test has the same mix).
func goMixSize(i int) int {
	switch {
	case i%10 == 4:
		return 100_000
	case i%10 == 9:
		return 129_600
	}
	return 100 + i%7*150
}

// Interleaved small and large messages from Go reach an erl process all,
// in the order they were sent, and the link stays: Ergo fragments them on
// BEAM links too, and the filter hands the peer each message whole.
func TestGoToErlLargeMessagesKeepOrder(t *testing.T) {
	forEachOTP(t, func(t *testing.T, r erltest.Runtime) {
		const count = 1000
		e := startErl(t, r, "ordbig"+r.Release, false)
		// ord_sink counts {I, Binary}: arrived, out of sequence, wrong size
		mustEval(t, e, `Size = fun(I) -> case I rem 10 of 4 -> 100000; 9 -> 129600; _ -> 100 + (I rem 7) * 150 end end,
			Loop = fun L(Next, N, Dis, Bad) ->
				receive
					{report, From} -> From ! {ord, N, Dis, Bad}, L(Next, N, Dis, Bad);
					{I, B} when is_integer(I), is_binary(B) ->
						D = case I of Next -> 0; _ -> 1 end,
						W = case byte_size(B) =:= Size(I) of true -> 0; false -> 1 end,
						L(I + 1, N + 1, Dis + D, Bad + W);
					_ -> L(Next, N, Dis, Bad + 1)
				end
			end,
			register(ord_sink, spawn(fun() -> Loop(0, 0, 0, 0) end)), ok`)
		if err := goNode.Connect(e.Name); err != nil {
			t.Fatal(err)
		}
		sink := gen.ProcessID{Name: "ord_sink", Node: e.Name}
		inProbe(t, func(p *gen.ServerProcess) (interface{}, error) {
			for i := 0; i < count; i++ {
				if err := p.Send(sink, etf.Tuple{i, bytes.Repeat([]byte{byte(i)}, goMixSize(i))}); err != nil {
					return nil, err
				}
			}
			return nil, nil
		})
		var n, dis, bad int
		last, since := -1, time.Now()
		for time.Since(since) < 15*time.Second {
			rep := mustEval(t, e, `ord_sink ! {report, self()}, receive {ord, N, D, B} -> {N, D, B} after 5000 -> timeout end`)
			if _, err := fmt.Sscanf(rep, "{%d,%d,%d}", &n, &dis, &bad); err != nil {
				t.Fatalf("ord_sink report %q: %v", rep, err)
			}
			if n == count {
				break
			}
			if n != last {
				last, since = n, time.Now()
			}
			time.Sleep(50 * time.Millisecond)
		}
		linked := mustEval(t, e, "lists:member("+q(goName)+", nodes())")
		if n != count || dis != 0 || bad != 0 || linked != "true" {
			t.Errorf("%s got %d of %d messages, %d out of sequence, %d damaged; linked to Go: %s", e.Name, n, count, dis, bad, linked)
		}
	})
}
