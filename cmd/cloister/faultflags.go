package main

import (
	"crypto/tls"
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
	"github.com/cloister-go/cloister/cloistertest"
	"github.com/ergo-services/ergo/gen"
	"github.com/ergo-services/ergo/lib"
)

// nodeExtras are the `cloister node` flags for fault injection and
// security: static routes (how tests route a
// node through cuttable proxies), TLS, and the /debug/runtime endpoint that
// tests read goroutines, memory and DNS lookups from.
type nodeExtras struct {
	routes    []cloistertest.Route
	tls       *bool
	recordDNS *bool
	dns       *cloistertest.DNSRecorder
	started   time.Time
}

func addExtraFlags(fs *flag.FlagSet) *nodeExtras {
	x := &nodeExtras{started: time.Now()}
	fs.Func("route", "reach a node at an address instead of asking EPMD, name@host=host:port (repeatable; tests route nodes through cuttable proxies)", func(s string) error {
		r, err := cloistertest.ParseRoute(s)
		if err == nil {
			x.routes = append(x.routes, r)
		}
		return err
	})
	x.tls = fs.Bool("tls", false, "distribution over TLS with a self-signed certificate (encrypts; peers are authenticated by the cookie)")
	x.recordDNS = fs.Bool("record-dns", false, "resolve names with Go's resolver and list every name looked up on /debug/runtime (tests)")
	return x
}

// apply sets the cloister and node options from the flags.
func (x *nodeExtras) apply(opts *cloister.Options, nopts *cloister.NodeOptions, logf func(string, ...interface{})) error {
	if *x.recordDNS {
		// Before any node starts: Ergo's call-home would look its host up.
		x.dns = cloistertest.RecordDNS(cloistertest.MetricsHost)
	}
	if len(x.routes) > 0 {
		// Installed by an application started before cloister, so they
		// exist before the Monitor's first dial.
		nopts.Applications = append([]gen.ApplicationBehavior{cloistertest.RoutesApp(x.routes)}, nopts.Applications...)
	}
	if *x.tls {
		cert, err := lib.GenerateSelfSignedCert("cloister")
		if err != nil {
			return fmt.Errorf("-tls: %w", err)
		}
		// Self-signed: the certificate cannot be verified, so TLS here
		// encrypts and the cookie authenticates (see docs/failures.md).
		nopts.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true}
	}
	nopts.Logf = logf
	return nil
}

// handle adds /debug/runtime: goroutines, memory (after a GC with ?gc=1),
// open file descriptors, and the DNS names looked up (with -record-dns).
func (x *nodeExtras) handle(mux *http.ServeMux) {
	mux.HandleFunc("/debug/runtime", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("gc") == "1" {
			runtime.GC()
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		st := cloistertest.RuntimeStats{
			Goroutines: runtime.NumGoroutine(), HeapAlloc: ms.HeapAlloc, HeapInuse: ms.HeapInuse,
			HeapObjects: ms.HeapObjects, Sys: ms.Sys, NumGC: ms.NumGC, FDs: countFDs(),
			Uptime: time.Since(x.started).Seconds(),
		}
		if x.dns != nil {
			st.DNSRecorded = true
			st.DNS, st.DNSBlocked = x.dns.Lookups()
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(st)
	})
	// The goroutines, grouped by stack: what a leak is made of.
	mux.HandleFunc("/debug/goroutines", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_ = rpprof.Lookup("goroutine").WriteTo(w, 1)
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
