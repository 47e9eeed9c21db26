// Package httpserve runs the HTTP endpoints of cloister's own programs
// (cloister node, the test harnesses): a handler served on an address, with
// the port actually picked and an orderly stop.
package httpserve

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"
)

// Server is a running HTTP endpoint.
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

// Close stops the server, letting requests in progress finish for up to 2 s.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return s.srv.Shutdown(ctx)
}
