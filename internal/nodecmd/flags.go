package nodecmd

import (
	"crypto/tls"
	"flag"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/cloister-go/cloister"
	"github.com/cloister-go/cloister/app"
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

// flags are the node command's own flags, all defined here.
type flags struct {
	name, cookie, sentry, service, dnsServer, otpApp, httpAddr, configPath, logLevel *string
	epmdPort, listen, consensus                                                      *int
	embedded, loopback, events, check, withMetrics, tls                              *bool
	startTimeout, heartbeat, suspect, remove, flapGrace                              *time.Duration
}

func addFlags(fs *flag.FlagSet) *flags {
	return &flags{
		name:         fs.String("name", EnvOr("CLOISTER_NODE", ""), "node name, name@host ($CLOISTER_NODE; empty in service mode: derived)"),
		cookie:       fs.String("cookie", Cookie(), "distribution cookie, from $CLOISTER_COOKIE when set"),
		epmdPort:     fs.Int("epmd-port", EPMDPort(), "EPMD port, from $ERL_EPMD_PORT when set"),
		embedded:     fs.Bool("embedded-epmd", false, "when no EPMD runs, serve one on every interface (one per container); without it a node serves one on 127.0.0.1 for a loopback name"),
		listen:       fs.Int("listen-port", 0, "distribution port (0: first free from 15000)"),
		sentry:       fs.String("sentry", EnvOr("CLOISTER_SENTRY", ""), "comma-separated peer nodes ($CLOISTER_SENTRY)"),
		service:      fs.String("service", EnvOr("CLOISTER_SERVICE", ""), "DNS service name whose addresses are the peers ($CLOISTER_SERVICE)"),
		dnsServer:    fs.String("dns-server", "", "DNS server host:port (default: the system resolver)"),
		consensus:    fs.Int("consensus", AtoiOr(os.Getenv("CLOISTER_CONSENSUS"), 1), "members needed before ready ($CLOISTER_CONSENSUS)"),
		otpApp:       fs.String("otp-app", EnvOr("CLOISTER_OTP_APP", "cloister"), "application name: ring name, node-name prefix ($CLOISTER_OTP_APP)"),
		loopback:     fs.Bool("loopback", false, "service mode: name this node otpapp@127.0.0.1"),
		httpAddr:     fs.String("http", EnvOr("CLOISTER_HTTP", ""), "serve /healthz, /readyz, /status, /whois on this address ($CLOISTER_HTTP)"),
		events:       fs.Bool("events", false, "print events as JSON lines on stdout"),
		startTimeout: fs.Duration("start-timeout", 0, "fail the start if consensus is not reached in this time (0: wait forever)"),
		heartbeat:    fs.Duration("heartbeat", 0, "member heartbeat period (default 500ms)"),
		suspect:      fs.Duration("suspect-after", 0, "silence before a member is suspected (default 3s)"),
		remove:       fs.Duration("remove-after", 0, "silence before a member is removed (default 5s)"),
		flapGrace:    fs.Duration("flap-grace", 0, "keep a member whose connection dropped in the rings this long while re-dialling it (default 1s; negative: none)"),
		configPath:   fs.String("config", "", "YAML config file (cloister init writes one); flags given explicitly override it"),
		check:        fs.Bool("check", false, "only load and validate the configuration, then exit"),
		withMetrics:  fs.Bool("metrics", false, "serve Prometheus metrics on /metrics of the -http endpoint"),
		logLevel:     fs.String("log-level", EnvOr("CLOISTER_LOG_LEVEL", "info"), "least severe log line shown: error, warning, info or debug (debug adds Ergo's own warnings), from $CLOISTER_LOG_LEVEL when set"),
		tls:          fs.Bool("tls", false, "distribution over TLS with a self-signed certificate (encrypts; peers are authenticated by the cookie)"),
	}
}

// options builds the cloister and node options: the file (-config) as the
// base, flags given explicitly on top.
func (f *flags) options(fs *flag.FlagSet) (cloister.Options, cloister.NodeOptions, error) {
	opts := cloister.DefaultOptions()
	opts.OTPApp = *f.otpApp
	opts.Ring = ""
	opts.Consensus = *f.consensus
	opts.Service = *f.service
	opts.DNSServer = *f.dnsServer
	opts.Loopback = *f.loopback
	opts.StartTimeout = *f.startTimeout
	opts.Heartbeat, opts.SuspectAfter, opts.RemoveAfter = *f.heartbeat, *f.suspect, *f.remove
	opts.Sentry = splitList(*f.sentry)
	switch {
	case *f.flapGrace < 0:
		opts.FlapGrace = app.NoFlapGrace
	case *f.flapGrace > 0:
		opts.FlapGrace = *f.flapGrace
	}
	if *f.configPath != "" {
		if err := f.applyConfig(fs, &opts); err != nil {
			return opts, cloister.NodeOptions{}, err
		}
	}
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

// flagFields are the cluster options a flag overrides the file with: each
// copies its field from the flag-built options.
var flagFields = map[string]func(dst, flags *cloister.Options){
	"otp-app":       func(d, f *cloister.Options) { d.OTPApp, d.Ring = f.OTPApp, f.Ring },
	"consensus":     func(d, f *cloister.Options) { d.Consensus = f.Consensus },
	"sentry":        func(d, f *cloister.Options) { d.Sentry = f.Sentry },
	"service":       func(d, f *cloister.Options) { d.Service = f.Service },
	"dns-server":    func(d, f *cloister.Options) { d.DNSServer = f.DNSServer },
	"loopback":      func(d, f *cloister.Options) { d.Loopback = f.Loopback },
	"start-timeout": func(d, f *cloister.Options) { d.StartTimeout = f.StartTimeout },
	"heartbeat":     func(d, f *cloister.Options) { d.Heartbeat = f.Heartbeat },
	"suspect-after": func(d, f *cloister.Options) { d.SuspectAfter = f.SuspectAfter },
	"remove-after":  func(d, f *cloister.Options) { d.RemoveAfter = f.RemoveAfter },
	"flap-grace":    func(d, f *cloister.Options) { d.FlapGrace = f.FlapGrace },
}

// fromFile sets *dst to the file's value v unless the flag was given or v
// is unset (zero).
func fromFile[T comparable](set map[string]bool, flagName string, dst *T, v T) {
	var zero T
	if !set[flagName] && v != zero {
		*dst = v
	}
}

// applyConfig makes the file the base of the options; flags given
// explicitly on the command line win.
func (f *flags) applyConfig(fs *flag.FlagSet, opts *cloister.Options) error {
	file, err := config.Load(*f.configPath)
	if err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	keep := *opts
	*opts = file.Options()
	for flagName, copyField := range flagFields {
		if set[flagName] {
			copyField(opts, &keep)
		}
	}
	fromFile(set, "name", f.name, file.Node.Name)
	fromFile(set, "cookie", f.cookie, file.Node.Cookie)
	fromFile(set, "epmd-port", f.epmdPort, int(file.Node.EPMDPort))
	fromFile(set, "embedded-epmd", f.embedded, file.Node.EmbeddedEPMD)
	fromFile(set, "listen-port", f.listen, int(file.Node.ListenPort))
	fromFile(set, "http", f.httpAddr, file.Node.HTTP)
	return nil
}
