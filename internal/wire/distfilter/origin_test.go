package distfilter

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ergo-services/ergo/etf"

	"github.com/cloister-go/cloister/internal/erltest"
	"github.com/cloister-go/cloister/internal/testenv"
)

// TestRPCOut runs BEAM functions on erl and Elixir nodes from Go (RPC):
// values, each exception class with its reason, undef, io from the
// function, a timeout that leaves the link usable, and an Elixir exception
// whose text is read as text.
func TestRPCOut(t *testing.T) {
	forEachOTP(t, func(t *testing.T, r erltest.Runtime) {
		e := sharedErl(t, r, false)
		expectEval(t, e, "net_kernel:connect_node("+q(goName)+")", "true")
		// erl's connect returns before our side registers the link
		testenv.Poll(2*time.Second, func() bool { return IsBEAM(goName, e.Name) })
		if !IsBEAM(goName, e.Name) {
			t.Fatalf("IsBEAM(%s) false on a filtered link", e.Name)
		}
		if IsBEAM(goName, "nobody@127.0.0.1") {
			t.Fatal("IsBEAM true for a node not connected")
		}
		call := func(m, f string, args etf.List, d time.Duration) (etf.Term, error) {
			t.Helper()
			start := time.Now()
			v, err := RPC(goName, e.Name, m, f, args, d)
			t.Logf("%s:%s -> %#v, %v (%v)", m, f, v, err, time.Since(start))
			return v, err
		}
		v, err := call("erlang", "node", nil, 5*time.Second)
		if err != nil || v != etf.Atom(e.Name) {
			t.Fatalf("erlang:node(): %#v, %v", v, err)
		}
		v, err = call("lists", "reverse", etf.List{etf.List{etf.Atom("a"), []byte("b"), etf.Tuple{}}}, 5*time.Second)
		if err != nil || !equalTerms(v, etf.List{etf.Tuple{}, []byte("b"), etf.Atom("a")}) {
			t.Fatalf("lists:reverse: %#v, %v", v, err)
		}
		v, err = call("erlang", "list_to_tuple", etf.List{etf.List{}}, 5*time.Second)
		if err != nil || !equalTerms(v, etf.Tuple{}) {
			t.Fatalf("list_to_tuple([]): %#v, %v", v, err)
		}
		for _, c := range []struct{ fn, class, text string }{
			{"error", "error", "error: boom"},
			{"exit", "exit", "exit: boom"},
			{"throw", "throw", "throw: boom"},
		} {
			_, err = call("erlang", c.fn, etf.List{etf.Atom("boom")}, 5*time.Second)
			var x *Exception
			if !errors.As(err, &x) || x.Class != c.class || x.Reason != etf.Atom("boom") || err.Error() != c.text {
				t.Fatalf("erlang:%s(boom): %#v", c.fn, err)
			}
			if c.class == "error" && x.Stack == nil {
				t.Errorf("erlang:error: no stack")
			}
		}
		_, err = call("nomod", "nofun", etf.List{1}, 5*time.Second)
		var x *Exception
		if !errors.As(err, &x) || x.Class != "error" || x.Reason != etf.Atom("undef") {
			t.Fatalf("nomod:nofun: %#v", err)
		}
		// io from the function: output accepted, input refused
		v, err = call("io", "format", etf.List{"hello from rpc~n"}, 5*time.Second)
		if err != nil || v != etf.Atom("ok") {
			t.Fatalf("io:format: %#v, %v", v, err)
		}
		v, err = call("io", "get_line", etf.List{"prompt> "}, 5*time.Second)
		if err != nil || !equalTerms(v, etf.Tuple{etf.Atom("error"), etf.Atom("enotsup")}) {
			t.Fatalf("io:get_line: %#v, %v", v, err)
		}
		start := time.Now()
		_, err = call("timer", "sleep", etf.List{3000}, 200*time.Millisecond)
		if !errors.Is(err, ErrTimeout) || time.Since(start) > 2*time.Second {
			t.Fatalf("timer:sleep(3000) with 200 ms: %v after %v", err, time.Since(start))
		}
		v, err = call("erlang", "node", nil, 5*time.Second)
		if err != nil || v != etf.Atom(e.Name) {
			t.Fatalf("after a timeout: %#v, %v", v, err)
		}
		expectEval(t, e, "lists:member("+q(goName)+", nodes())", "true")

		// Elixir: the exception's text, not bytes
		x2 := sharedErl(t, r, true)
		expectEval(t, x2, "net_kernel:connect_node("+q(goName)+")", "true")
		testenv.Poll(2*time.Second, func() bool { return IsBEAM(goName, x2.Name) })
		_, err = RPC(goName, x2.Name, "Elixir.Keyword", "fetch!", etf.List{etf.List{}, etf.Atom("k")}, 5*time.Second)
		if !errors.As(err, &x) || x.Class != "error" || !strings.Contains(x.Message, "key :k not found") {
			t.Fatalf("Keyword.fetch!([], :k): %#v", err)
		}
		t.Logf("Elixir exception: %v", err)
		_, err = RPC(goName, x2.Name, "Elixir.String", "to_integer", etf.List{[]byte("x")}, 5*time.Second)
		if !errors.As(err, &x) || x.Class != "error" || x.Reason != etf.Atom("badarg") {
			t.Fatalf("String.to_integer(\"x\"): %#v", err)
		}
	})
}

func TestRPCOutBadUse(t *testing.T) {
	if _, err := RPC(goName, "nobody@127.0.0.1", "erlang", "node", nil, time.Second); !errors.Is(err, ErrNotBEAM) {
		t.Fatalf("not connected: %v", err)
	}
	if _, err := RPC("other@127.0.0.1", "x@127.0.0.1", "erlang", "node", nil, time.Second); !errors.Is(err, ErrNoFilter) {
		t.Fatalf("no filter: %v", err)
	}
	if _, err := RPC(goName, "x@127.0.0.1", "", "node", nil, time.Second); err == nil {
		t.Fatal("empty module accepted")
	}
	if _, err := RPC(goName, "x@127.0.0.1", "erlang", "node", nil, 0); err == nil {
		t.Fatal("zero timeout accepted")
	}
}
