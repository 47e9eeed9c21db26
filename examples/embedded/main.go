// Command embedded is an Ergo application that runs cloister inside its
// own supervision tree, the way an application that already has one adds
// it: its spec lists cloister's Manager as a child, its Start blocks until
// the cluster has reached consensus, and only then does it start its
// workers, so they never run in a half-formed cluster.
//
//	go run ./examples/embedded -name shop_0@127.0.0.1 -sentry shop_0@127.0.0.1,shop_1@127.0.0.1 -consensus 2 &
//	go run ./examples/embedded -name shop_1@127.0.0.1 -sentry shop_0@127.0.0.1,shop_1@127.0.0.1 -consensus 2
//
// Each node prints "workers started ..." once the cluster has formed, then
// calls every member's cart_server and prints how many answered. Stop it
// with Ctrl-C (SIGINT) or SIGTERM.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/cloister-go/cloister"
	"github.com/ergo-services/ergo/etf"
	"github.com/ergo-services/ergo/gen"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("embedded", flag.ContinueOnError)
	fs.SetOutput(stderr)
	name := fs.String("name", "shop_0@127.0.0.1", "node name")
	sentry := fs.String("sentry", "", "comma-separated peer nodes (empty: this node alone)")
	consensus := fs.Int("consensus", 1, "members needed before the workers start")
	cookie := fs.String("cookie", "shop", "distribution cookie")
	epmdPort := fs.Int("epmd-port", 4369, "EPMD port")
	startTimeout := fs.Duration("start-timeout", 0, "give up the start after this long without consensus (0: wait forever)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	logger := log.New(stderr, "", log.LstdFlags|log.Lmicroseconds)

	opts := cloister.DefaultOptions()
	opts.OTPApp = "shop" // the default ring is "shop"
	opts.Consensus = *consensus
	if *sentry != "" {
		opts.Sentry = strings.Split(*sentry, ",")
	}
	opts.StartTimeout = *startTimeout
	opts.StartLogEvery = 200 * time.Millisecond
	opts.Logger = slog.New(slog.NewTextHandler(stderr, nil))
	cluster, err := cloister.New(opts)
	if err != nil {
		fmt.Fprintln(stderr, "embedded:", err)
		return 2
	}
	// The package-level functions (cloister.Multicall, Whois, ...) act on
	// this cluster; without this call, use the *Cluster itself.
	if err := cloister.SetDefault(cluster); err != nil {
		fmt.Fprintln(stderr, "embedded:", err)
		return 1
	}

	shop := &shopApp{cluster: cluster, out: stdout}
	n, err := cloister.StartErgoNode(*name, cloister.NodeOptions{
		Cookie: *cookie, EPMDPort: uint16(*epmdPort), Logf: logger.Printf,
		Applications: []gen.ApplicationBehavior{shop},
	})
	if err != nil {
		if shop.err != nil {
			err = shop.err // why the start gate failed
		}
		fmt.Fprintln(stderr, "embedded:", err)
		return 1
	}

	// Caught from here on, before anything is printed that tells a
	// supervisor (or the test) the node is up: a SIGTERM between that line
	// and the wait below would kill the node without its orderly stop.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)

	// Once the workers run: call every member's cart_server.
	answered := 0
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		results, err := cloister.Multicall(nil, "cart_server", etf.Atom("hello"), 2*time.Second)
		if err != nil {
			fmt.Fprintln(stderr, "embedded:", err)
			break
		}
		answered = 0
		for _, r := range results {
			if r.Err == nil {
				answered++
			}
		}
		if answered == len(results) && answered >= *consensus {
			break
		}
	}
	fmt.Fprintf(stdout, "multicall: %d of %d answered\n", answered, len(cloister.Siblings()))

	<-sigs
	if err := cluster.Stop(); err != nil {
		logger.Printf("embedded: %v", err)
	}
	n.Wait()
	fmt.Fprintf(stdout, "stopped %s\n", *name)
	return 0
}

// shopApp is the user's Ergo application. cloister's Manager is one of its
// children; Start waits for consensus, then starts the workers.
type shopApp struct {
	gen.Application
	cluster *cloister.Cluster
	out     io.Writer
	err     error
}

// Load lists cloister's Manager as a child: Ergo starts it, and with it
// the Monitor that assembles the cluster, before calling Start.
func (a *shopApp) Load(args ...etf.Term) (gen.ApplicationSpec, error) {
	return gen.ApplicationSpec{
		Name:        "shop",
		Description: "an application with cloister in its own tree",
		Version:     "v1.0.0",
		Children:    []gen.ApplicationChildSpec{a.cluster.ApplicationChildSpec()},
	}, nil
}

// Start blocks until the cluster is ready (cloister's start gate: progress
// lines while it waits, a *cloister.StartError after StartTimeout), then
// starts the workers under their own supervisor. Ergo's Start cannot
// return an error, so a failed gate panics, which fails the node's start.
func (a *shopApp) Start(p gen.Process, args ...etf.Term) {
	if err := a.cluster.AwaitReady(context.Background()); err != nil {
		a.err = err
		panic(err.Error()) // Ergo prints it with %#v: a string reads best
	}
	members := a.cluster.Siblings()
	if _, err := p.Spawn("shop_workers", gen.ProcessOptions{}, &workers{cluster: a.cluster}); err != nil {
		a.err = err
		panic(err)
	}
	fmt.Fprintf(a.out, "workers started on %s with %d members: %v\n", a.cluster.Name(), len(members), members)
}

// workers supervises the application's workers: here one cart_server.
type workers struct {
	gen.Supervisor
	cluster *cloister.Cluster
}

func (w *workers) Init(args ...etf.Term) (gen.SupervisorSpec, error) {
	return gen.SupervisorSpec{
		Children: []gen.SupervisorChildSpec{{Name: "cart_server", Child: &cartServer{cluster: w.cluster}}},
		Strategy: gen.SupervisorStrategy{Type: gen.SupervisorStrategyOneForOne, Intensity: 5, Period: 5,
			Restart: gen.SupervisorStrategyRestartPermanent},
	}, nil
}

// cartServer answers a call with the node it runs on and the members it
// sees: {cart, Node, Members}.
type cartServer struct {
	gen.Server
	cluster *cloister.Cluster
}

func (c *cartServer) HandleCall(p *gen.ServerProcess, from gen.ServerFrom, m etf.Term) (etf.Term, gen.ServerStatus) {
	return etf.Tuple{etf.Atom("cart"), etf.Atom(c.cluster.Name()), len(c.cluster.Siblings())}, gen.ServerStatusOK
}
