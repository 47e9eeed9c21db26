// Package health serves a node's cluster state over HTTP, for container
// probes and humans: /healthz (200 while cloister runs; 503 once it has
// stopped — a Kubernetes liveness probe), /readyz (200 only when the
// Monitor is ready — a readiness probe), /status (the snapshot as JSON)
// and / (the operator's page, a live view of /status; page.go). Standard
// library only.
package health

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/cloister-go/cloister/listener"
)

// Source gives the current snapshot.
type Source func() listener.Snapshot

// Stopped is the state of a node where cloister has stopped: its Manager
// gave up after too many restarts, or was shut down. /healthz fails in it.
// (A Monitor restarted by its Manager passes through it for a moment.)
const Stopped = "stopped"

// Handler returns the mux with the three endpoints and the operator's page
// at /. Extra handlers (for example /metrics) may be added by the caller.
func Handler(src Source) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if s := src(); s.State == Stopped {
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

// Server is a running health endpoint.
type Server struct {
	srv *http.Server
	ln  net.Listener
}

// Start listens on addr ("127.0.0.1:0" picks a port) and serves h.
func Start(addr string, h http.Handler) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &Server{srv: &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}, ln: ln}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			_ = err // the listener closed under us; nothing to report to
		}
	}()
	return s, nil
}

// Addr is the address actually listened on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops the server.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return s.srv.Shutdown(ctx)
}
