// Package health serves a node's cluster state over HTTP, for container
// probes and humans: /healthz (200 while cloister runs; 503 once it has
// stopped — a Kubernetes liveness probe), /readyz (200 only when the
// Monitor is ready — a readiness probe), /status (the snapshot as JSON)
// and / (the operator's page, a live view of /status; page.go). Standard
// library only.
package health

import (
	"encoding/json"
	"net/http"

	"github.com/cloister-go/cloister/listener"
)

// Handler returns the mux with the three endpoints and the operator's page
// at /, each reading the snapshot src gives (typically cloister.Cluster.State).
// Extra handlers (for example /metrics) may be added by the caller; serve
// it with net/http.
//
// /healthz fails in state stopped: cloister has stopped on this node (its
// Manager gave up after too many restarts, or was shut down). A Monitor
// restarted by its Manager passes through that state for a moment.
func Handler(src func() listener.Snapshot) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if s := src(); s.State == listener.StateStopped {
			// cloister no longer runs here (its Manager gave up or was
			// stopped): the process is up but not doing its job.
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("stopped\n"))
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		s := src()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !s.Ready() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(s.State + "\n"))
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.HandleFunc("/status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(src())
	})
	handlePage(mux)
	return mux
}
