package cloister_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cloister-go/cloister"
	"github.com/cloister-go/cloister/internal/testenv"
	"github.com/cloister-go/cloister/listener"
	"github.com/ergo-services/ergo/etf"
	"github.com/ergo-services/ergo/gen"
)

// One node for the whole test binary (Ergo has data races of its own with
// several nodes in one process), named like the examples' output. Tests
// that need a node of their own run this binary again as a child process
// (see runScenario).
func TestMain(m *testing.M) {
	if name := os.Getenv(scenarioEnv); name != "" {
		os.Exit(runScenario(name))
	}
	epmd, err := testenv.StartEPMD()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	changes := make(chan string, 16)
	opts := cloister.DefaultOptions()
	opts.Logger = slog.New(slog.DiscardHandler)
	opts.Groups = []string{"sessions"}
	opts.AdditionalModules = []cloister.Child{{Name: "echo", Child: &echo{}}}
	opts.Listener = listener.Func(func(from, to listener.State, s listener.Snapshot) {
		changes <- string(from) + " -> " + string(to)
	})
	c, err := cloister.StartNode("example@127.0.0.1", opts, cloister.NodeOptions{EPMDPort: epmd.Port})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		epmd.Stop()
		os.Exit(1)
	}
	code := m.Run()
	if code == 0 {
		// The listener heard the start, in order.
		var got []string
		for len(got) < 3 {
			select {
			case c := <-changes:
				got = append(got, c)
			case <-time.After(5 * time.Second):
				got = append(got, "timeout")
			}
		}
		if strings.Join(got, ", ") != "down -> assembling, assembling -> rehashing, rehashing -> ready" {
			fmt.Fprintln(os.Stderr, "listener heard:", got)
			code = 1
		}
	}
	if err := cloister.StopNode(c); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	epmd.Stop()
	os.Exit(code)
}

// echo replies to a call with {echo, Request}.
type echo struct{ gen.Server }

func (e *echo) HandleCall(p *gen.ServerProcess, from gen.ServerFrom, m etf.Term) (etf.Term, gen.ServerStatus) {
	return etf.Tuple{etf.Atom("echo"), m}, gen.ServerStatusOK
}

func ExampleWhois() {
	owner, err := cloister.Whois("", "user:42") // "" is the default ring
	fmt.Println(owner, err)

	_, err = cloister.Whois("no_such_ring", "user:42")
	fmt.Println(errors.Is(err, cloister.ErrNoSuchRing))
	// Output:
	// example@127.0.0.1 <nil>
	// true
}

func ExampleMine() {
	if cloister.Mine("cart:7") {
		fmt.Println("this node owns cart:7")
	}
	// Any term works as a key (a method of the cluster StartNode returned);
	// every node renders it identically.
	fmt.Println(cloister.Default().MineTerm(etf.Tuple{etf.Atom("order"), 42}))
	// Output:
	// this node owns cart:7
	// true
}

func ExampleMulticall() {
	// nil targets the members of the default ring; the deadline may be
	// sub-second.
	results, err := cloister.Multicall(nil, "echo", etf.Atom("hello"), 300*time.Millisecond)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, r := range results {
		fmt.Println(r.Node, r.Reply, r.Err)
	}
	// A node that is not connected has a typed error instead of a reply.
	results, _ = cloister.Multicall([]string{"ghost@127.0.0.1"}, "echo", etf.Atom("hello"), 300*time.Millisecond)
	fmt.Println(errors.Is(results[0].Err, cloister.ErrNoConnection))
	// Output:
	// example@127.0.0.1 [echo hello] <nil>
	// true
}

func ExampleMultiapply() {
	c := cloister.Default() // the cluster StartNode returned
	_ = c.RegisterFunc("double", func(args etf.List) (etf.Term, error) {
		if len(args) != 1 {
			return nil, errors.New("want one argument")
		}
		n, _ := args[0].(int)
		return n * 2, nil
	})
	results, _ := cloister.Multiapply(nil, "double", etf.List{21}, time.Second)
	fmt.Println(results[0].Node, results[0].Reply)
	// Output: example@127.0.0.1 42
}

func ExampleState() {
	s := cloister.State()
	fmt.Println(s.State, s.Members, s.Consensus, s.Rings["sessions"].Members)
	// Output: ready [example@127.0.0.1] 1 [example@127.0.0.1]
}

func ExampleAwaitReady() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	fmt.Println(cloister.AwaitReady(ctx))
	// Output: <nil>
}

func Example_listener() {
	opts := cloister.DefaultOptions()
	// Runs on its own goroutine, in order; a panic is logged, never fatal.
	opts.Listener = listener.Func(func(from, to listener.State, s listener.Snapshot) {
		fmt.Printf("%s -> %s: %d/%d members\n", from, to, len(s.Members), s.Consensus)
	})
	fmt.Println(opts.Validate())
	// Output: <nil>
}

func TestKeyIsCanonical(t *testing.T) {
	a := cloister.Key(etf.Map{etf.Atom("b"): 1, etf.Atom("a"): etf.List{"x", []byte("y")}})
	for i := 0; i < 50; i++ {
		if b := cloister.Key(etf.Map{etf.Atom("a"): etf.List{"x", []byte("y")}, etf.Atom("b"): 1}); a != b {
			t.Fatalf("map key not canonical: %q vs %q", a, b)
		}
	}
	if cloister.Key("s") == cloister.Key(etf.Atom("s")) || cloister.Key(etf.Tuple{1}) == cloister.Key(etf.List{1}) {
		t.Fatal("different terms share a key")
	}
	if cloister.Key("plain") != "plain" || cloister.Key([]byte("bin")) != "bin" {
		t.Fatal("strings and binaries must be their own key")
	}
}
