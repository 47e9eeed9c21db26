// Command beam is a Go service joining an existing Erlang/Elixir cluster
// (README.md shows both sides). It starts a cloister node on the libring
// engine, so it places keys exactly as the BEAM members do, and waits for
// consensus; then it
//
//   - serves BEAM callers: a gen_server registered as "greeter"
//     (gen_server:call({greeter, GoNode}, {hello, Name})) and a Go function
//     rpc:call(GoNode, shop, price, [Item]) reaches;
//   - calls the BEAM members: asks every other member's
//     'Elixir.Cloister.Monitor' {whois, <<>>, Key} for -keys keys with
//     Multicall and checks that they name the owners its own Whois names;
//   - prints what it did and stays up until SIGINT/SIGTERM.
//
// It exits 1 when the cluster does not form within -start-timeout or when
// an owner differs.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ergo-services/ergo/etf"
	"github.com/ergo-services/ergo/gen"

	"github.com/cloister-go/cloister"
	"github.com/cloister-go/cloister/actors"
	"github.com/cloister-go/cloister/ring/libring"
)

func main() {
	os.Exit(run())
}

func run() int {
	epmdDefault := 4369
	if p, err := strconv.Atoi(os.Getenv("ERL_EPMD_PORT")); err == nil {
		epmdDefault = p
	}
	name := flag.String("name", "shop_go@127.0.0.1", "this node's name (name@host, as the BEAM nodes see it)")
	cookie := flag.String("cookie", "secret", "distribution cookie, the BEAM nodes' -setcookie")
	sentry := flag.String("sentry", "shop1@127.0.0.1", "comma-separated BEAM (or Go) nodes to join through")
	consensus := flag.Int("consensus", 3, "members (this node included) needed before the service starts")
	otpApp := flag.String("otp-app", "shop", "the cluster's application: Elixir cloister's otp_app")
	epmdPort := flag.Int("epmd-port", epmdDefault, "EPMD port (default $ERL_EPMD_PORT or 4369)")
	keys := flag.Int("keys", 1000, "keys whose owners are compared with the other members (0: none; Elixir cloister itself does not answer {whois, G, K})")
	startTimeout := flag.Duration("start-timeout", time.Minute, "give up when consensus is not reached in this time")
	flag.Parse()

	opts := cloister.DefaultOptions()
	opts.OTPApp = *otpApp
	opts.Ring = "" // the default ring is named after OTPApp, as in Elixir cloister
	opts.Sentry = strings.Split(*sentry, ",")
	opts.Consensus = *consensus
	opts.Engine = libring.Engine() // owners as Elixir's libring computes them
	opts.StartTimeout = *startTimeout
	opts.AdditionalModules = []cloister.Child{{Name: "greeter", Child: &greeter{}}}

	start := time.Now()
	n, err := cloister.StartNode(*name, opts, cloister.NodeOptions{Cookie: *cookie, EPMDPort: uint16(*epmdPort)})
	if err != nil {
		fmt.Println("start failed:", err)
		return 1
	}
	defer func() { _ = cloister.StopNode(n) }()
	c := n
	fmt.Printf("ready in %s: members %s\n", time.Since(start).Round(time.Millisecond), strings.Join(c.Siblings(), " "))

	// rpc:call(GoNode, shop, price, [Item]) runs this ("shop:price").
	err = c.RegisterFunc("shop:price", func(args etf.List) (etf.Term, error) {
		if len(args) != 1 {
			return nil, errors.New("shop:price takes one item")
		}
		item := fmt.Sprint(args[0])
		if b, ok := args[0].([]byte); ok {
			item = string(b)
		}
		return 100 + len(item), nil
	})
	if err != nil {
		fmt.Println(err)
		return 1
	}

	if *keys > 0 {
		if code := compareOwners(c, n.Name(), *keys); code != 0 {
			return code
		}
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	fmt.Println("serving; stop with Ctrl-C")
	<-sigs
	fmt.Println("stopping")
	return 0
}

// compareOwners asks every other member for the owners of n keys and
// compares them with this node's Whois.
func compareOwners(c *cloister.Cluster, self string, n int) int {
	var peers []string
	for _, m := range c.Siblings() {
		if m != self {
			peers = append(peers, m)
		}
	}
	t0 := time.Now()
	differ := 0
	for i := 0; i < n; i++ {
		key := "cart:" + strconv.Itoa(i)
		mine, err := c.Whois("", key)
		if err != nil {
			fmt.Println("whois:", err)
			return 1
		}
		// Go strings are Erlang binaries: []byte encodes as one.
		req := etf.Tuple{etf.Atom("whois"), []byte{}, []byte(key)}
		res, err := c.Multicall(peers, actors.MonitorName, req, 2*time.Second)
		if err != nil {
			fmt.Println("multicall:", err)
			return 1
		}
		for _, r := range res {
			want := etf.Tuple{etf.Atom("ok"), etf.Atom(mine)}
			got, _ := r.Reply.(etf.Tuple)
			if r.Err != nil || len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
				if differ < 5 {
					fmt.Printf("owner of %q: this node says %s, %s says %v (err %v)\n", key, mine, r.Node, r.Reply, r.Err)
				}
				differ++
			}
		}
		if i < 3 {
			fmt.Printf("owner of %q: %s (this node and %d peers agree so far)\n", key, mine, len(peers))
		}
	}
	if differ > 0 {
		fmt.Printf("owners DIFFER: %d answers of %d\n", differ, n*len(peers))
		return 1
	}
	fmt.Printf("owners agree: %d/%d keys with %d peers (%s) in %s\n", n, n, len(peers), strings.Join(peers, " "),
		time.Since(t0).Round(time.Millisecond))
	return 0
}

// greeter answers gen_server:call({greeter, GoNode}, {hello, Name}) with
// {hello_from, GoNode, Name}; anything else with {error, unknown_call}.
type greeter struct{ gen.Server }

func (g *greeter) HandleCall(p *gen.ServerProcess, from gen.ServerFrom, m etf.Term) (etf.Term, gen.ServerStatus) {
	if t, ok := m.(etf.Tuple); ok && len(t) == 2 && t[0] == etf.Atom("hello") {
		return etf.Tuple{etf.Atom("hello_from"), etf.Atom(p.NodeName()), t[1]}, gen.ServerStatusOK
	}
	return etf.Tuple{etf.Atom("error"), etf.Atom("unknown_call")}, gen.ServerStatusOK
}

// HandleInfo ignores stray messages: a BEAM peer's garbage must not stop it.
func (g *greeter) HandleInfo(p *gen.ServerProcess, m etf.Term) gen.ServerStatus {
	return gen.ServerStatusOK
}
