// Package nodecmd is `cloister node`: one node with cloister, configured
// by flags, a YAML file and CLOISTER_* variables, printing its state
// changes, serving /healthz, /readyz, /status, /whois (and /metrics), and
// stopping in order on SIGINT or SIGTERM in every phase, the start gate
// included. The `cloister` command runs it as is; the test suite's node
// program adds its own flags through an Extension, so the product binary
// carries no test hooks.
package nodecmd

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/cloister-go/cloister"
	"github.com/cloister-go/cloister/health"
	"github.com/cloister-go/cloister/internal/httpserve"
	"github.com/cloister-go/cloister/internal/listenerx"
	"github.com/cloister-go/cloister/internal/localcluster"
	"github.com/cloister-go/cloister/internal/logf"
	"github.com/cloister-go/cloister/listener"
	"github.com/cloister-go/cloister/metrics"
)

// Extension adds flags and behaviour to the node command (the test
// suite's node program uses it; `cloister` has none).
type Extension interface {
	// Flags adds the extension's flags.
	Flags(fs *flag.FlagSet)
	// Apply runs once the options are built, before the node starts: it
	// may change them, wrap s.Options.Listener, or take over by setting
	// s.Run.
	Apply(s *Setup) error
	// Handle adds HTTP handlers to the -http endpoint.
	Handle(mux *http.ServeMux)
}

// Setup is what an Extension may look at and change before the start.
type Setup struct {
	Name     string
	Cookie   string
	EPMDPort uint16
	Options  *cloister.Options
	Node     *cloister.NodeOptions
	Out      *localcluster.Printer
	Logf     func(format string, args ...interface{})
	// Run, when an extension sets it, replaces the cloister node: it runs
	// until stop is closed (SIGINT or SIGTERM) and returns the exit code.
	Run func(stop <-chan struct{}) int
}

// Main runs the node command with args (the words after `node`) and
// returns the exit code: 0 stopped on a signal, 1 failed, 2 bad usage.
// prog names the command in messages ("cloister node"); ext may be nil.
func Main(prog string, args []string, ext Extension) int {
	fs := flag.NewFlagSet(prog, flag.ContinueOnError)
	f := addFlags(fs)
	if ext != nil {
		ext.Flags(fs)
	}
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: %s [flags]\n\nRuns one node with cloister until SIGINT or SIGTERM, printing its state changes.\nFlags given explicitly override -config; CLOISTER_* variables set their defaults.\n\n", prog)
		fs.PrintDefaults()
	}
	if code, done := ParseFlags(fs, args); done {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "%s: unexpected arguments %q (flags only)\n", prog, fs.Args())
		return 2
	}
	minLevel, err := parseLevel(*f.logLevel)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", prog, err)
		return 2
	}
	out := localcluster.NewPrinter(os.Stdout, *f.events)
	opts, nopts, err := f.options(fs)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", prog, err)
		return 1
	}
	if *f.withMetrics && *f.httpAddr == "" {
		fmt.Fprintf(os.Stderr, "%s: -metrics needs -http or an http address in -config (metrics are served on its /metrics)\n", prog)
		return 2
	}
	if *f.check {
		if err := opts.Validate(); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", prog, err)
			return 1
		}
		fmt.Println("configuration ok")
		return 0
	}
	// Signals are ours from here on, whatever phase the node is in.
	sigs := make(chan os.Signal, 2)
	// SIGUSR1 once started: leave the cluster gracefully, then stop.
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1)
	defer signal.Stop(sigs)

	// cloister logs through slog.Default, that is through package log,
	// at the level asked for.
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)
	slog.SetLogLoggerLevel(minLevel)
	logf := logf.To(opts.Logger, slog.LevelInfo)
	opts.Listener = listenerx.Multi{
		listenerx.Logger{Logf: logf},
		listener.Func(func(from, to listener.State, s listener.Snapshot) {
			out.Print(map[string]interface{}{"event": "state", "node": s.Node, "from": from, "to": to, "snapshot": s})
		}),
	}
	var col *metrics.Collector
	if *f.withMetrics {
		col = metrics.New()
		col.Instrument(&opts)
	}
	// Removals with their reason, for tests and operators (a graceful
	// leave shows as reason "left").
	prevObserve := opts.Observe
	opts.Observe = func(e listener.Event) {
		if r, ok := e.(listener.Removed); ok {
			out.Print(map[string]interface{}{"event": "removed", "node": *f.name, "member": r.Node, "reason": string(r.Reason)})
		}
		if prevObserve != nil {
			prevObserve(e)
		}
	}
	setup := &Setup{Name: *f.name, Cookie: nopts.Cookie, EPMDPort: nopts.EPMDPort, Options: &opts, Node: &nopts, Out: out, Logf: logf}
	if ext != nil {
		if err := ext.Apply(setup); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", prog, err)
			return 2
		}
	}
	// The cluster exists before its start, so the HTTP endpoints report it
	// while the start waits for consensus, and after it stops.
	c, err := cloister.New(opts)
	if err != nil {
		out.Print(map[string]interface{}{"event": "error", "node": *f.name, "error": err.Error()})
		fmt.Fprintf(os.Stderr, "%s: %v\n", prog, err)
		return 1
	}

	if *f.httpAddr != "" {
		mux := health.Handler(c.State)
		mux.HandleFunc("/whois", whoisHandler(c))
		mux.HandleFunc("/join", joinHandler(c))
		if ext != nil {
			ext.Handle(mux)
		}
		if col != nil {
			col.SetSource(c.State)
			mux.Handle("/metrics", col.Handler())
		}
		hs, err := httpserve.Start(*f.httpAddr, mux)
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: -http %s: %v\n", prog, *f.httpAddr, err)
			return 1
		}
		defer hs.Close()
		out.Print(map[string]interface{}{"event": "listening", "http": hs.Addr()})
	}

	if setup.Run != nil {
		stop := make(chan struct{})
		go func() { <-sigs; close(stop) }()
		return setup.Run(stop)
	}
	return run(prog, *f.name, c, nopts, out, logf, sigs)
}

// run starts the node and waits for a signal. The start (the gate that
// waits for consensus) runs aside, so a signal during it is heard at once.
func run(prog, name string, c *cloister.Cluster, nopts cloister.NodeOptions, out *localcluster.Printer, logf func(string, ...interface{}), sigs chan os.Signal) int {
	begin := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	res := make(chan error, 1)
	go func() { res <- c.Start(ctx, name, nopts) }()
	select {
	case err := <-res:
		if err != nil {
			out.Print(map[string]interface{}{"event": "error", "node": name, "error": err.Error()})
			fmt.Fprintf(os.Stderr, "%s: %v\n", prog, err)
			return 1
		}
	case sig := <-sigs:
		logf("cloister: %s during the start: stopping", sig)
		stopStarting(c, cancel, res, logf)
		out.Print(map[string]interface{}{"event": "stopped", "node": name, "during": "start"})
		return 0
	}
	out.Print(map[string]interface{}{"event": "started", "node": c.Name(), "ms": time.Since(begin).Milliseconds()})
	logf("cloister: %s started in %s", c.Name(), time.Since(begin).Round(time.Millisecond))

	select {
	case sig := <-sigs:
		if sig == syscall.SIGUSR1 {
			// Every Go member drops this node at once and acknowledges.
			out.Print(map[string]interface{}{"event": "leaving", "node": c.Name()})
			ctx, cancel := context.WithTimeout(context.Background(), leaveTimeout)
			err := c.Leave(ctx)
			cancel()
			if err != nil {
				logf("cloister: %v", err)
			}
			out.Print(map[string]interface{}{"event": "stopped", "node": c.Name()})
			return 0
		}
		logf("cloister: %s: stopping", sig)
	case <-c.Stopped():
		// Ended from inside (its Manager gave up): the process stays, so
		// /status and /healthz say so, until a signal.
		fmt.Fprintf(os.Stderr, "%s: %v\n", prog, c.Err())
		sig := <-sigs
		logf("cloister: %s: exiting", sig)
		out.Print(map[string]interface{}{"event": "stopped", "node": c.Name()})
		return 1
	}
	// A second signal while stopping: do not wait any longer.
	go func() {
		<-sigs
		logf("cloister: second signal: exiting now")
		os.Exit(1)
	}()
	// Orderly: the Monitor runs stopping → stopped and the listener hears
	// it, then the node stops.
	if err := c.Stop(); err != nil {
		logf("cloister: %v", err)
	}
	out.Print(map[string]interface{}{"event": "stopped", "node": c.Name()})
	return 0
}

// leaveTimeout bounds a leave asked with SIGUSR1.
const leaveTimeout = 15 * time.Second

// stopStarting stops a node still in its start gate, in order when it
// can: the Monitor runs stopping → stopped (the listener hears it), then
// the start is cancelled; each step is bounded to a second.
func stopStarting(c *cloister.Cluster, cancel context.CancelFunc, res chan error, logf func(string, ...interface{})) {
	stopped := make(chan error, 1)
	go func() { stopped <- c.Stop() }()
	select {
	case err := <-stopped:
		if err != nil && !errors.Is(err, cloister.ErrNotStarted) {
			logf("cloister: %v", err)
		}
	case <-time.After(time.Second):
		logf("cloister: the Monitor did not stop within 1s")
	}
	cancel()
	select {
	case <-res:
	case <-time.After(time.Second):
		logf("cloister: the start did not end within 1s of its cancellation")
	}
}

// ParseFlags parses args into fs. --help and -h print the usage on stdout
// and end with 0; a bad flag ends with 2 (the flag package has said why).
func ParseFlags(fs *flag.FlagSet, args []string) (code int, done bool) {
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	if err == flag.ErrHelp {
		fs.SetOutput(os.Stdout)
		fs.Usage()
		return 0, true
	}
	fs.SetOutput(os.Stderr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", fs.Name(), err)
		fmt.Fprintf(os.Stderr, "run `%s -h` for the flags\n", fs.Name())
		return 2, true
	}
	return 0, false
}

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

// whoisHandler answers /whois?key=K[&group=G] with the owner as JSON.
func whoisHandler(c *cloister.Cluster) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
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
}
