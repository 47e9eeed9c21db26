package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/cloister-go/cloister"
	"github.com/cloister-go/cloister/cloistertest"
	"github.com/cloister-go/cloister/health"
	"github.com/cloister-go/cloister/internal/config"
	"github.com/cloister-go/cloister/internal/wire/ergonode"
	"github.com/cloister-go/cloister/listener"
	"github.com/cloister-go/cloister/metrics"
)

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func runNode(args []string) int {
	fs := flag.NewFlagSet("cloister node", flag.ContinueOnError)
	name := fs.String("name", envOr("CLOISTER_NODE", ""), "node name, name@host (empty in service mode: derived)")
	cookie := fs.String("cookie", envOr("CLOISTER_COOKIE", "cloister"), "distribution cookie")
	epmdPort := fs.Int("epmd-port", atoiOr(os.Getenv("ERL_EPMD_PORT"), 4369), "EPMD port (default $ERL_EPMD_PORT or 4369)")
	embedded := fs.Bool("embedded-epmd", false, "when no EPMD runs, serve one on every interface (one per container); without it a node serves one on 127.0.0.1 for a loopback name")
	listen := fs.Int("listen-port", 0, "distribution port (0: first free from 15000)")
	// Every cluster option is a flag, derived from the options (and an
	// environment variable, CLOISTER_<KEY>).
	optFlags := config.BindFlags(fs)
	httpAddr := fs.String("http", envOr("CLOISTER_HTTP", ""), "serve /healthz, /readyz, /status on this address")
	events := fs.Bool("events", false, "print events as JSON lines on stdout")
	void := fs.Bool("void", false, "run the test suite's Void server")
	panicListener := fs.Bool("panic-listener", false, "add a listener that panics on every change (tests)")
	configPath := fs.String("config", "", "YAML config file (cloister init writes one); flags given explicitly override it")
	check := fs.Bool("check", false, "only load and validate the configuration, then exit")
	plain := fs.Bool("plain", false, "start a plain Ergo node without cloister that connects to -sentry (tests)")
	withMetrics := fs.Bool("metrics", false, "serve Prometheus metrics on /metrics of the -http endpoint")
	extras := addExtraFlags(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "cloister node: unexpected arguments %q\n", fs.Args())
		return 2
	}

	out := cloistertest.NewPrinter(os.Stdout, *events)
	// The options: defaults, then the file, then the environment, then the
	// flags given.
	opts := cloister.DefaultOptions()
	if *configPath != "" {
		if err := applyConfig(fs, *configPath, &opts, name, cookie, epmdPort, embedded, listen, httpAddr); err != nil {
			fmt.Fprintln(os.Stderr, "cloister node:", err)
			return 1
		}
	}
	if err := config.ApplyEnv(&opts, os.Getenv); err != nil {
		fmt.Fprintln(os.Stderr, "cloister node:", err)
		return 2
	}
	optFlags.Apply(&opts)
	if *withMetrics && *httpAddr == "" {
		fmt.Fprintln(os.Stderr, "cloister node: -metrics needs -http or an http address in -config (metrics are served on its /metrics)")
		return 2
	}
	if *check {
		if err := opts.Validate(); err != nil {
			fmt.Fprintln(os.Stderr, "cloister node:", err)
			return 1
		}
		fmt.Println("configuration ok")
		return 0
	}
	logger := log.New(os.Stderr, "", log.LstdFlags|log.Lmicroseconds)
	// cloister logs through slog.Default, that is through package log.
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)
	ls := listener.Multi{
		listener.Logger{Logf: logger.Printf},
		listener.Func(func(from, to listener.State, s listener.Snapshot) {
			out.Print(map[string]interface{}{"event": "state", "node": s.Node, "from": from, "to": to, "snapshot": s})
		}),
	}
	var l listener.Listener = ls
	if *panicListener {
		// Printed first, then a panic: the Dispatcher must go on.
		l = listener.Func(func(from, to listener.State, s listener.Snapshot) {
			ls.OnStateChange(from, to, s)
			panic(fmt.Sprintf("test listener panics on %s -> %s", from, to))
		})
	}
	opts.Listener = l
	if *void {
		opts.AdditionalModules = append(opts.AdditionalModules, cloistertest.Child())
	}
	var col *metrics.Collector
	if *withMetrics {
		col = metrics.New()
		col.Instrument(&opts)
	}

	// Removals with their reason, for tests and operators (a graceful
	// leave shows as reason "left").
	prevObserve := opts.Observe
	opts.Observe = func(e listener.Event) {
		if r, ok := e.(listener.Removed); ok {
			out.Print(map[string]interface{}{"event": "removed", "node": *name, "member": r.Node, "reason": string(r.Reason)})
		}
		if prevObserve != nil {
			prevObserve(e)
		}
	}

	nopts := cloister.NodeOptions{
		Cookie: *cookie, EPMDPort: uint16(*epmdPort), EmbeddedEPMD: *embedded, ListenPort: uint16(*listen),
	}
	if err := extras.apply(&opts, &nopts, logger.Printf); err != nil {
		fmt.Fprintf(os.Stderr, "cloister node: %v\n", err)
		return 2
	}
	// The cluster exists before its start, so the HTTP endpoints report it
	// while the start waits for consensus, and after it stops.
	c, err := cloister.New(opts)
	if err != nil {
		out.Print(map[string]interface{}{"event": "error", "node": *name, "error": err.Error()})
		fmt.Fprintln(os.Stderr, "cloister node:", err)
		return 1
	}

	var hs *health.Server
	if *httpAddr != "" {
		var err error
		mux := health.Handler(c.State)
		mux.HandleFunc("/whois", whoisHandler(c))
		mux.HandleFunc("/join", joinHandler(c))
		extras.handle(mux)
		if col != nil {
			col.SetSource(c.State)
			mux.Handle("/metrics", col.Handler())
		}
		hs, err = health.Start(*httpAddr, mux)
		if err != nil {
			fmt.Fprintf(os.Stderr, "cloister node: -http %s: %v\n", *httpAddr, err)
			return 1
		}
		defer hs.Close()
		out.Print(map[string]interface{}{"event": "listening", "http": hs.Addr()})
	}

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1)

	if *plain {
		return runPlain(*name, *cookie, uint16(*epmdPort), opts.Sentry, out, sigs)
	}
	start := time.Now()
	n := c
	if err := c.Start(context.Background(), *name, nopts); err != nil {
		out.Print(map[string]interface{}{"event": "error", "node": *name, "error": err.Error()})
		fmt.Fprintf(os.Stderr, "cloister node: %v\n", err)
		return 1
	}
	out.Print(map[string]interface{}{"event": "started", "node": n.Name(), "ms": time.Since(start).Milliseconds()})
	logger.Printf("cloister: %s started in %s", n.Name(), time.Since(start).Round(time.Millisecond))

	if sig := <-sigs; sig == syscall.SIGUSR1 {
		// SIGUSR1: leave gracefully (every Go member drops this node at
		// once and acknowledges), then stop.
		out.Print(map[string]interface{}{"event": "leaving", "node": n.Name()})
		ctx, cancel := context.WithTimeout(context.Background(), leaveTimeout)
		err := c.Leave(ctx)
		cancel()
		if err != nil {
			logger.Printf("cloister: %v", err)
		}
		out.Print(map[string]interface{}{"event": "stopped", "node": n.Name()})
		return 0
	}
	// Orderly: stop the application first so the Monitor runs stopping →
	// stopped and the listener hears it, then the node.
	if err := cloister.StopNode(n); err != nil {
		logger.Printf("cloister: %v", err)
	}
	out.Print(map[string]interface{}{"event": "stopped", "node": n.Name()})
	return 0
}

// leaveTimeout bounds a leave asked with SIGUSR1.
const leaveTimeout = 15 * time.Second

func atoiOr(s string, def int) int {
	if v, err := strconv.Atoi(s); err == nil {
		return v
	}
	return def
}

// runPlain is an Ergo node without cloister, connected to the given nodes:
// an observer that must never enter a ring.
func runPlain(name, cookie string, epmdPort uint16, peers []string, out *cloistertest.Printer, sigs chan os.Signal) int {
	n, err := ergonode.Start(name, ergonode.Options{Cookie: cookie, EPMDPort: epmdPort})
	if err != nil {
		out.Print(map[string]interface{}{"event": "error", "node": name, "error": err.Error()})
		return 1
	}
	defer n.Stop()
	out.Print(map[string]interface{}{"event": "started", "node": n.Name()})
	// Keep connecting: the peers may not be up yet, and may restart.
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-sigs:
			return 0
		case <-tick.C:
			have := map[string]bool{}
			for _, c := range n.Nodes() {
				have[c] = true
			}
			for _, p := range peers {
				if p != name && !have[p] {
					_ = n.Connect(p)
				}
			}
		}
	}
}

// whoisHandler answers /whois?key=K[&group=G] with the owner as JSON.
// joinHandler adds a peer at run time: POST /join?node=name@host.
func joinHandler(c *cloister.Cluster) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST /join?node=name@host", http.StatusMethodNotAllowed)
			return
		}
		node := r.URL.Query().Get("node")
		if err := c.Join(node); err != nil {
			code := http.StatusServiceUnavailable
			if errors.Is(err, cloister.ErrBadNode) {
				code = http.StatusBadRequest
			}
			http.Error(w, err.Error(), code)
			return
		}
		fmt.Fprintf(w, "joining %s\n", node)
	}
}

func whoisHandler(c *cloister.Cluster) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { whois(c, w, r) }
}

func whois(c *cloister.Cluster, w http.ResponseWriter, r *http.Request) {
	key, group := r.URL.Query().Get("key"), r.URL.Query().Get("group")
	res := map[string]string{"key": key, "group": group}
	code := http.StatusOK
	owner, err := c.Whois(group, key)
	if err != nil {
		res["error"] = err.Error()
		code = http.StatusNotFound
	} else {
		res["owner"] = owner
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(res)
}

// fromFile sets *dst to the file's value v unless the flag was given or v
// is unset (zero).
func fromFile[T comparable](set map[string]bool, flagName string, dst *T, v T) {
	var zero T
	if !set[flagName] && v != zero {
		*dst = v
	}
}

// applyConfig makes the file the base of the options (the caller applies
// the option flags given over it) and of the node settings no flag gave.
func applyConfig(fs *flag.FlagSet, path string, opts *cloister.Options, name, cookie *string, epmdPort *int, embedded *bool, listen *int, httpAddr *string) error {
	f, err := config.Load(path)
	if err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	*opts = f.Options()
	fromFile(set, "name", name, f.Node.Name)
	fromFile(set, "cookie", cookie, f.Node.Cookie)
	fromFile(set, "epmd-port", epmdPort, int(f.Node.EPMDPort))
	fromFile(set, "embedded-epmd", embedded, f.Node.EmbeddedEPMD)
	fromFile(set, "listen-port", listen, int(f.Node.ListenPort))
	fromFile(set, "http", httpAddr, f.Node.HTTP)
	return nil
}
