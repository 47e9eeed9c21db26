// Command testnode is the node program of the test harness (cloistertest):
// `cloister node` plus the hooks only tests need, which the product binary
// does not carry. `testnode node [flags]` runs a node; `testnode epmd -port
// P` serves EPMD where Erlang's epmd is not installed.
//
// Test-only flags, on top of every `cloister node` flag:
//
//	-void            run the original suite's Void server
//	-panic-listener  add a listener that panics on every change
//	-plain           a plain Ergo node without cloister that keeps connecting to -sentry
//	-route N=ADDR    reach node N at ADDR instead of asking EPMD (cuttable proxies)
//	-record-dns      resolve names with Go's resolver and list every lookup
//	-full-lists      fetch a member's changed list whole and send no list
//	                 deltas, as a node of an older version does
//
// and the endpoints /debug/runtime (goroutines, memory, file descriptors,
// DNS lookups), /debug/goroutines, POST /debug/kill?process=NAME (kills a
// registered process, e.g. the Monitor, which its Manager then restarts)
// and, with CLOISTER_PPROF=1, /debug/pprof on the -http address.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	rpprof "runtime/pprof"
	"time"

	"github.com/cloister-go/cloister"
	"github.com/cloister-go/cloister/internal/clusterstate"
	"github.com/cloister-go/cloister/internal/localcluster"
	"github.com/cloister-go/cloister/internal/nodecmd"
	"github.com/cloister-go/cloister/internal/nodetest"
	"github.com/cloister-go/cloister/internal/wire/ergonode"
	"github.com/cloister-go/cloister/listener"
	"github.com/ergo-services/ergo/gen"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: testnode node [flags] | testnode epmd -port P")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "node":
		os.Exit(nodecmd.Main("testnode node", os.Args[2:], &extras{started: time.Now()}))
	case "epmd":
		os.Exit(localcluster.EPMDMain("testnode", os.Args[2:]))
	default:
		fmt.Fprintf(os.Stderr, "testnode: unknown command %q\n", os.Args[1])
		os.Exit(2)
	}
}

// extras are the test-only flags and endpoints.
type extras struct {
	void, panicListener, plain, recordDNS, fullLists *bool
	routes                                           []route
	dns                                              *dnsRecorder
	started                                          time.Time
}

func (x *extras) Flags(fs *flag.FlagSet) {
	x.void = fs.Bool("void", false, "run the test suite's Void server")
	x.panicListener = fs.Bool("panic-listener", false, "add a listener that panics on every change")
	x.plain = fs.Bool("plain", false, "start a plain Ergo node without cloister that connects to -sentry")
	x.fullLists = fs.Bool("full-lists", false, "fetch a member's changed list whole and send no list deltas (an older version's behaviour)")
	x.recordDNS = fs.Bool("record-dns", false, "resolve names with Go's resolver and list every name looked up on /debug/runtime")
	fs.Func("route", "reach a node at an address instead of asking EPMD, name@host=host:port (repeatable)", func(s string) error {
		r, err := parseRoute(s)
		if err == nil {
			x.routes = append(x.routes, r)
		}
		return err
	})
}

func (x *extras) Apply(s *nodecmd.Setup) error {
	clusterstate.NoListDeltas = *x.fullLists
	if *x.recordDNS {
		// Before any node starts: Ergo's call-home would look its host up.
		x.dns = recordDNS(metricsHost)
	}
	if *x.void {
		s.Options.AdditionalModules = append(s.Options.AdditionalModules, nodetest.VoidChild())
	}
	if *x.panicListener {
		// Printed first, then a panic: the Dispatcher must go on.
		l := s.Options.Listener
		s.Options.Listener = listener.Func(func(from, to listener.State, snap listener.Snapshot) {
			l.OnStateChange(from, to, snap)
			panic(fmt.Sprintf("test listener panics on %s -> %s", from, to))
		})
	}
	if len(x.routes) > 0 {
		// Installed by an application started before cloister, so they
		// exist before the Monitor's first dial.
		s.Node.Applications = append([]gen.ApplicationBehavior{newRoutesApp(x.routes)}, s.Node.Applications...)
	}
	if *x.plain {
		s.Run = func(stop <-chan struct{}) int { return runPlain(s, stop) }
	}
	return nil
}

// runPlain is an Ergo node without cloister, connected to the given nodes:
// an observer that must never enter a ring.
func runPlain(s *nodecmd.Setup, stop <-chan struct{}) int {
	n, err := ergonode.Start(s.Name, ergonode.Options{Cookie: s.Cookie, EPMDPort: s.EPMDPort})
	if err != nil {
		s.Out.Print(map[string]interface{}{"event": "error", "node": s.Name, "error": err.Error()})
		return 1
	}
	defer n.Stop()
	s.Out.Print(map[string]interface{}{"event": "started", "node": n.Name()})
	// Keep connecting: the peers may not be up yet, and may restart.
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return 0
		case <-tick.C:
			have := map[string]bool{}
			for _, c := range n.Nodes() {
				have[c] = true
			}
			for _, p := range s.Options.Sentry {
				if p != s.Name && !have[p] {
					_ = n.Connect(p)
				}
			}
		}
	}
}

// Handle adds /debug/runtime: goroutines, memory (after a GC with ?gc=1),
// open file descriptors, and the DNS names looked up (with -record-dns);
// and /debug/goroutines, the goroutines grouped by stack.
func (x *extras) Handle(mux *http.ServeMux) {
	mux.HandleFunc("/debug/runtime", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("gc") == "1" {
			runtime.GC()
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		st := nodetest.RuntimeStats{
			Goroutines: runtime.NumGoroutine(), HeapAlloc: ms.HeapAlloc, HeapInuse: ms.HeapInuse,
			HeapObjects: ms.HeapObjects, Sys: ms.Sys, NumGC: ms.NumGC, FDs: countFDs(),
			Uptime:       time.Since(x.started).Seconds(),
			StateAnswers: clusterstate.Lists.StateAnswers.Load(), ListDeltas: clusterstate.Lists.Deltas.Load(),
			DeltaMisses: clusterstate.Lists.DeltaMisses.Load(),
		}
		if x.dns != nil {
			st.DNSRecorded = true
			st.DNS, st.DNSBlocked = x.dns.Lookups()
		}
		st.ForcedGC, st.HeapIdle, st.Released = ms.NumForcedGC, ms.HeapIdle, ms.HeapReleased
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(st)
	})
	mux.HandleFunc("/debug/goroutines", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_ = rpprof.Lookup("goroutine").WriteTo(w, 1)
	})
	// The keepalive ticks each link wrote, by peer (the neighbour watch's
	// test counts them).
	mux.HandleFunc("/debug/ticks", func(w http.ResponseWriter, r *http.Request) {
		c := cloister.Default()
		if c == nil || c.Node() == nil || ergonode.LinksOf(c.Node()) == nil {
			http.Error(w, "not started", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(ergonode.LinksOf(c.Node()).Ticks())
	})
	// A crash of a cloister process from outside (the Monitor is hardened
	// against every message a peer could send): its Manager restarts it.
	mux.HandleFunc("/debug/kill", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST /debug/kill?process=NAME", http.StatusMethodNotAllowed)
			return
		}
		c := cloister.Default()
		if c == nil || c.Node() == nil {
			http.Error(w, "not started", http.StatusServiceUnavailable)
			return
		}
		name := r.URL.Query().Get("process")
		p := c.Node().ProcessByName(name)
		if p == nil {
			http.Error(w, "no process "+name, http.StatusNotFound)
			return
		}
		p.Kill()
		fmt.Fprintf(w, "killed %s %s\n", name, p.Self())
	})
	// CPU and heap profiles for the benchmarks (bench/cluster -profile);
	// only when asked for, as profiles show the node's internals.
	if os.Getenv("CLOISTER_PPROF") == "1" {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	}
}

func countFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(ents)
}
