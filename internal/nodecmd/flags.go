package nodecmd

import (
	"crypto/tls"
	"flag"
	"fmt"
	"os"
	"strconv"

	"github.com/cloister-go/cloister"
	"github.com/cloister-go/cloister/internal/config"
	"github.com/ergo-services/ergo/lib"
)

// The defaults every command shares, so `cloister status NODE` reaches a
// node started by `cloister node` or `cloister run` with no flags: the
// cookie is $CLOISTER_COOKIE or "cloister", the epmd port $ERL_EPMD_PORT
// or 4369 (Erlang's own rule).
const (
	DefaultCookie   = "cloister"
	DefaultEPMDPort = 4369
)

// Cookie is the default cookie: $CLOISTER_COOKIE, else DefaultCookie.
func Cookie() string { return EnvOr("CLOISTER_COOKIE", DefaultCookie) }

// EPMDPort is the default epmd port: $ERL_EPMD_PORT, else DefaultEPMDPort.
func EPMDPort() int { return AtoiOr(os.Getenv("ERL_EPMD_PORT"), DefaultEPMDPort) }

// EnvOr is the environment variable key, or def when unset or empty.
func EnvOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// AtoiOr is s as an int, or def when s is not one.
func AtoiOr(s string, def int) int {
	if v, err := strconv.Atoi(s); err == nil {
		return v
	}
	return def
}

// flags are the node command's own flags (the node's settings and the
// command's); the cluster options' flags come from config.BindFlags.
type flags struct {
	name, cookie, httpAddr, configPath, logLevel *string
	epmdPort, listen                             *int
	embedded, events, check, withMetrics, tls    *bool
	opts                                         *config.Flags
}

func addFlags(fs *flag.FlagSet) *flags {
	return &flags{
		name:        fs.String("name", EnvOr("CLOISTER_NODE", ""), "node name, name@host ($CLOISTER_NODE; empty in service mode: derived)"),
		cookie:      fs.String("cookie", Cookie(), "distribution cookie, from $CLOISTER_COOKIE when set"),
		epmdPort:    fs.Int("epmd-port", EPMDPort(), "EPMD port, from $ERL_EPMD_PORT when set"),
		embedded:    fs.Bool("embedded-epmd", false, "when no EPMD runs, serve one on every interface (one per container); without it a node serves one on 127.0.0.1 for a loopback name"),
		listen:      fs.Int("listen-port", 0, "distribution port (0: first free from 15000)"),
		httpAddr:    fs.String("http", EnvOr("CLOISTER_HTTP", ""), "serve /healthz, /readyz, /status, /whois on this address ($CLOISTER_HTTP)"),
		events:      fs.Bool("events", false, "print events as JSON lines on stdout"),
		configPath:  fs.String("config", "", "YAML config file (cloister init writes one); flags given explicitly override it"),
		check:       fs.Bool("check", false, "only load and validate the configuration, then exit"),
		withMetrics: fs.Bool("metrics", false, "serve Prometheus metrics on /metrics of the -http endpoint"),
		tls:         fs.Bool("tls", false, "distribution over TLS with a self-signed certificate (encrypts; peers are authenticated by the cookie)"),
		logLevel:    fs.String("log-level", EnvOr("CLOISTER_LOG_LEVEL", "info"), "least severe log line shown: error, warning, info or debug, from $CLOISTER_LOG_LEVEL when set"),
		// Every cluster option is a flag, derived from the options (and an
		// environment variable, CLOISTER_<KEY>).
		opts: config.BindFlags(fs),
	}
}

// options builds the cloister and node options: defaults, then the file
// (-config), then the environment, then the flags given.
func (f *flags) options(fs *flag.FlagSet) (cloister.Options, cloister.NodeOptions, error) {
	opts := cloister.DefaultOptions()
	if *f.configPath != "" {
		if err := f.applyConfig(fs, &opts); err != nil {
			return opts, cloister.NodeOptions{}, err
		}
	}
	if err := config.ApplyEnv(&opts, os.Getenv); err != nil {
		return opts, cloister.NodeOptions{}, err
	}
	f.opts.Apply(&opts)
	if *f.epmdPort < 0 || *f.epmdPort > 65535 {
		return opts, cloister.NodeOptions{}, fmt.Errorf("-epmd-port %d: want 0-65535", *f.epmdPort)
	}
	if *f.listen < 0 || *f.listen > 65535 {
		return opts, cloister.NodeOptions{}, fmt.Errorf("-listen-port %d: want 0-65535", *f.listen)
	}
	nopts := cloister.NodeOptions{
		Cookie: *f.cookie, EPMDPort: uint16(*f.epmdPort), EmbeddedEPMD: *f.embedded, ListenPort: uint16(*f.listen),
	}
	if *f.tls {
		cert, err := lib.GenerateSelfSignedCert("cloister")
		if err != nil {
			return opts, nopts, fmt.Errorf("-tls: %w", err)
		}
		// Self-signed: the certificate cannot be verified, so TLS here
		// encrypts and the cookie authenticates (see docs/failures.md).
		nopts.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true}
	}
	return opts, nopts, nil
}

// fromFile sets *dst to the file's value v unless the flag was given or v
// is unset (zero).
func fromFile[T comparable](set map[string]bool, flagName string, dst *T, v T) {
	var zero T
	if !set[flagName] && v != zero {
		*dst = v
	}
}

// applyConfig makes the file the base of the options (the option flags
// given are applied over it) and of the node settings no flag gave.
func (f *flags) applyConfig(fs *flag.FlagSet, opts *cloister.Options) error {
	file, err := config.Load(*f.configPath)
	if err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	*opts = file.Options()
	fromFile(set, "name", f.name, file.Node.Name)
	fromFile(set, "cookie", f.cookie, file.Node.Cookie)
	fromFile(set, "epmd-port", f.epmdPort, int(file.Node.EPMDPort))
	fromFile(set, "embedded-epmd", f.embedded, file.Node.EmbeddedEPMD)
	fromFile(set, "listen-port", f.listen, int(file.Node.ListenPort))
	fromFile(set, "http", f.httpAddr, file.Node.HTTP)
	return nil
}
