// Command cloister-example runs one cloister node in a container, configured
// from environment variables, and logs every state change of its Monitor.
//
// In service mode (CLOISTER_SERVICE set) the node finds its peers behind a
// DNS name — a Docker Compose network alias or a Kubernetes headless Service
// — and names itself OTPApp@<its own address in that answer>. Each container
// serves EPMD itself (one per container): cloister's own implementation,
// which answers peers' lookups but accepts registrations only from inside
// the container.
//
// Usage:
//
//	cloister-example              run the node (the image's entrypoint)
//	cloister-example status       print this container's /status (JSON)
//	cloister-example healthcheck  exit 0 when /readyz answers 200 (HEALTHCHECK)
//
// The two helper commands exist because a FROM scratch image has neither a
// shell nor curl: `docker exec <container> /cloister-example status` works.
//
// Environment (defaults in brackets):
//
//	CLOISTER_SERVICE        DNS name whose IPv4 addresses are the peers
//	CLOISTER_SRV            "1": look up SRV records of CLOISTER_SERVICE [0]
//	CLOISTER_DNS_SERVER     host:port to ask instead of /etc/resolv.conf
//	CLOISTER_NODE           node name when CLOISTER_SERVICE is empty (name@host)
//	CLOISTER_SENTRY         comma-separated peers when CLOISTER_SERVICE is empty
//	CLOISTER_CONSENSUS      members needed before ready [1]
//	CLOISTER_COOKIE         distribution cookie [cloister]
//	CLOISTER_OTP_APP        application name, node-name prefix [cloister]
//	CLOISTER_HTTP           health endpoint address, "off" to disable [0.0.0.0:8080]
//	CLOISTER_START_TIMEOUT  give up starting after this long, 0 = never [0]
//	CLOISTER_FLAP_GRACE     how long a dropped member stays in the rings while
//	                        it is re-dialled, "off" = none [1s]
//	CLOISTER_EPMD_PORT      EPMD port served in the container [4369]
//	CLOISTER_LISTEN_PORT    distribution port, 0 = first free from 15000 [0]
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cloister-go/cloister"
	"github.com/cloister-go/cloister/health"
	"github.com/cloister-go/cloister/listener"
)

// DefaultHTTP is the health endpoint's address: every interface, because
// probes (Docker's HEALTHCHECK aside) come from outside the container.
const DefaultHTTP = "0.0.0.0:8080"

func main() {
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)
	cmd := "run"
	if len(os.Args) > 1 {
		cmd = os.Args[1]
	}
	switch cmd {
	case "run":
		os.Exit(run())
	case "status":
		os.Exit(get("/status", os.Stdout))
	case "healthcheck":
		os.Exit(get("/readyz", io.Discard))
	default:
		fmt.Fprintf(os.Stderr, "cloister-example: unknown command %q (want run, status or healthcheck)\n", cmd)
		os.Exit(2)
	}
}

// config is what the environment says.
type config struct {
	opts     cloister.Options
	nopts    cloister.NodeOptions
	name     string
	httpAddr string
}

func env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func envInt(key string, def, lo, hi int) (int, error) {
	s := os.Getenv(key)
	if s == "" {
		return def, nil
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < lo || v > hi {
		return 0, fmt.Errorf("cloister-example: %s = %q: want an integer in [%d, %d]", key, s, lo, hi)
	}
	return v, nil
}

func loadConfig() (config, error) {
	var c config
	o := cloister.DefaultOptions()
	o.OTPApp = env("CLOISTER_OTP_APP", "cloister")
	o.Ring = "" // follows OTPApp
	o.Service = os.Getenv("CLOISTER_SERVICE")
	o.DNSServer = os.Getenv("CLOISTER_DNS_SERVER")
	switch s := env("CLOISTER_SRV", "0"); s {
	case "0", "false":
	case "1", "true":
		o.SRV = true
	default:
		return c, fmt.Errorf("cloister-example: CLOISTER_SRV = %q: want 0 or 1", s)
	}
	var err error
	if o.Consensus, err = envInt("CLOISTER_CONSENSUS", 1, 1, 1<<16); err != nil {
		return c, err
	}
	if s := os.Getenv("CLOISTER_START_TIMEOUT"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			return c, fmt.Errorf("cloister-example: CLOISTER_START_TIMEOUT = %q: want a duration such as 60s (0: wait forever)", s)
		}
		o.StartTimeout = d
	}
	switch s := os.Getenv("CLOISTER_FLAP_GRACE"); s {
	case "":
	case "off":
		o.FlapGrace = cloister.NoFlapGrace
	default:
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return c, fmt.Errorf("cloister-example: CLOISTER_FLAP_GRACE = %q: want a duration such as 500ms, or off", s)
		}
		o.FlapGrace = d
	}
	c.name = os.Getenv("CLOISTER_NODE")
	if o.Service == "" {
		if c.name == "" {
			return c, errors.New("cloister-example: set CLOISTER_SERVICE (a DNS name) or CLOISTER_NODE (name@host)")
		}
		if s := os.Getenv("CLOISTER_SENTRY"); s != "" {
			o.Sentry = strings.Split(s, ",")
		}
	} else if os.Getenv("CLOISTER_SENTRY") != "" {
		return c, errors.New("cloister-example: set either CLOISTER_SERVICE or CLOISTER_SENTRY, not both")
	}
	if err := o.Validate(); err != nil {
		return c, err
	}
	c.opts = o

	epmd, err := envInt("CLOISTER_EPMD_PORT", 4369, 1, 65535)
	if err != nil {
		return c, err
	}
	listen, err := envInt("CLOISTER_LISTEN_PORT", 0, 0, 65535)
	if err != nil {
		return c, err
	}
	c.nopts = cloister.NodeOptions{
		Cookie:   env("CLOISTER_COOKIE", "cloister"),
		EPMDPort: uint16(epmd),
		// One EPMD per container, nothing else to run. On every interface:
		// peers in other containers look this node's port up there.
		EmbeddedEPMD: true,
		ListenPort:   uint16(listen),
	}
	c.httpAddr = env("CLOISTER_HTTP", DefaultHTTP)
	return c, nil
}

func run() int {
	c, err := loadConfig()
	if err != nil {
		log.Print(err)
		return 2
	}
	c.opts.Listener = listener.Func(logChange)
	cl, err := cloister.New(c.opts)
	if err != nil {
		log.Printf("cloister-example: %v", err)
		return 2
	}

	// The health endpoint comes first: /healthz answers and /readyz says
	// 503 while the start below waits for consensus.
	if c.httpAddr != "off" {
		mux := health.Handler(cl.State)
		addr, stop, err := serveHTTP(c.httpAddr, mux)
		if err != nil {
			log.Printf("cloister-example: health endpoint on CLOISTER_HTTP = %q: %v", c.httpAddr, err)
			return 1
		}
		defer stop()
		log.Printf("cloister-example: health endpoint on http://%s (/healthz /readyz /status)", addr)
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)

	mode := "sentries " + strings.Join(c.opts.Sentry, ",")
	if c.opts.Service != "" {
		mode = "service " + c.opts.Service
	}
	log.Printf("cloister-example: starting: %s, consensus %d, otp app %s", mode, c.opts.Consensus, c.opts.OTPApp)
	start := time.Now()
	// StartNode blocks until consensus; a SIGTERM meanwhile must still stop
	// the container at once.
	done := make(chan error, 1)
	stop := cl.Stop
	go func() {
		err := cl.Start(context.Background(), c.name, c.nopts)
		if err == nil {
			log.Printf("cloister-example: %s ready in %s", cl.Name(), time.Since(start).Round(time.Millisecond))
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			log.Printf("cloister-example: %v", err)
			return 1
		}
	case s := <-sigs:
		log.Printf("cloister-example: %s before the cluster was ready; exiting", s)
		return 0
	}
	s := <-sigs
	log.Printf("cloister-example: %s: leaving the cluster", s)
	if err := stop(); err != nil {
		log.Printf("cloister-example: %v", err)
		return 1
	}
	return 0
}

// logChange is the listener: one line per state change, with what an
// operator needs to compare nodes (members and the default ring's hash).
func logChange(from, to listener.State, s listener.Snapshot) {
	r := s.Rings[s.OTPApp]
	log.Printf("cloister-example: %s: %s -> %s, members %d/%d [%s], ring hash %016x",
		s.Node, from, to, len(s.Members), s.Consensus, strings.Join(s.Members, ", "), r.Hash)
}

// get fetches path from this container's health endpoint and copies the
// body to w; the exit code is 0 on 200, 1 otherwise.
func get(path string, w io.Writer) int {
	addr := env("CLOISTER_HTTP", DefaultHTTP)
	if addr == "off" {
		fmt.Fprintln(os.Stderr, "cloister-example: CLOISTER_HTTP is off: no health endpoint to ask")
		return 1
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "cloister-example: CLOISTER_HTTP = %q: %v\n", addr, err)
		return 1
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(host, port)+path, nil)
	if err != nil {
		fmt.Fprintf(os.Stderr, "cloister-example: %v\n", err)
		return 1
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(os.Stderr, "cloister-example: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	if _, err := io.Copy(w, resp.Body); err != nil {
		fmt.Fprintf(os.Stderr, "cloister-example: reading %s: %v\n", path, err)
		return 1
	}
	if resp.StatusCode != http.StatusOK {
		return 1
	}
	return 0
}

// serveHTTP serves h on addr ("127.0.0.1:0" picks a port) until stop,
// which lets requests in progress finish for up to 2 s; it returns the
// address actually listened on.
func serveHTTP(addr string, h http.Handler) (string, func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }() // ends with ErrServerClosed at stop
	stop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}
	return ln.Addr().String(), stop, nil
}
