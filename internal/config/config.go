// Package config reads and writes cloister's configuration file (YAML):
// the cluster options and the node settings, with unknown keys rejected so
// a typo is an error, not a silent default.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/cloister-go/cloister/app"
	"github.com/cloister-go/cloister/internal/wire/ergonode"
	"github.com/cloister-go/cloister/ring"
	"github.com/cloister-go/cloister/ring/libring"
	"gopkg.in/yaml.v3"
)

// Node holds the node settings of the file.
type Node struct {
	Name         string `yaml:"name"`
	Cookie       string `yaml:"cookie"`
	EPMDPort     uint16 `yaml:"epmd_port"`
	EmbeddedEPMD bool   `yaml:"embedded_epmd"`
	ListenPort   uint16 `yaml:"listen_port"`
	// HTTP is the health endpoint address ("" = off).
	HTTP string `yaml:"http"`
}

// File is the whole configuration file.
type File struct {
	OTPApp            string   `yaml:"otp_app"`
	Sentry            []string `yaml:"sentry"`
	Service           string   `yaml:"service"`
	DNSServer         string   `yaml:"dns_server"`
	SRV               bool     `yaml:"srv"`
	Consensus         *int     `yaml:"consensus"`
	Ring              string   `yaml:"ring"`
	Groups            []string `yaml:"groups"`
	Engine            string   `yaml:"engine"`
	Loopback          bool     `yaml:"loopback"`
	Magic             *bool    `yaml:"magic"`
	StartTimeout      Duration `yaml:"start_timeout"`
	Reconcile         Duration `yaml:"reconcile"`
	Heartbeat         Duration `yaml:"heartbeat"`
	SuspectAfter      Duration `yaml:"suspect_after"`
	RemoveAfter       Duration `yaml:"remove_after"`
	DialTimeout       Duration `yaml:"dial_timeout"`
	BackoffMin        Duration `yaml:"backoff_min"`
	BackoffMax        Duration `yaml:"backoff_max"`
	DiscoveryInterval Duration `yaml:"discovery_interval"`
	Node              Node     `yaml:"node"`
}

// Duration is a time.Duration written as "500ms", "3s".
type Duration time.Duration

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (want e.g. 500ms, 3s)", n.Line, s)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration as text.
func (d Duration) MarshalYAML() (interface{}, error) { return time.Duration(d).String(), nil }

// Parse reads a configuration; unknown keys are an error naming the key.
func Parse(r io.Reader) (*File, error) {
	dec := yaml.NewDecoder(r)
	dec.KnownFields(true)
	var f File
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return &f, nil
		}
		return nil, fmt.Errorf("cloister: config: %w", err)
	}
	return &f, nil
}

// Load reads and validates the file at path.
func Load(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cloister: config: %w", err)
	}
	f, err := Parse(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if f.Engine != "" && EngineByName(f.Engine) == nil {
		return nil, fmt.Errorf("%s: engine %q: want consistent, libring or libring-otp26", path, f.Engine)
	}
	o := f.Options()
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if f.Node.Name != "" {
		if err := ergonode.ValidateName(f.Node.Name); err != nil {
			return nil, fmt.Errorf("%s: node.name: %w", path, err)
		}
	}
	return f, nil
}

// Options turns the file into cloister options (defaults for what is unset).
func (f *File) Options() app.Options {
	o := app.DefaultOptions()
	if f.OTPApp != "" {
		o.OTPApp = f.OTPApp
		o.Ring = ""
	}
	o.Sentry = f.Sentry
	o.Service, o.DNSServer, o.SRV = f.Service, f.DNSServer, f.SRV
	if f.Consensus != nil {
		o.Consensus = *f.Consensus
	}
	if f.Ring != "" {
		o.Ring = f.Ring
	}
	o.Groups = f.Groups
	if e := EngineByName(f.Engine); e != nil {
		o.Engine = e
	}
	o.Loopback = f.Loopback
	if f.Magic != nil {
		o.Magic = *f.Magic
	}
	set := func(dst *time.Duration, v Duration) {
		if v != 0 {
			*dst = time.Duration(v)
		}
	}
	set(&o.StartTimeout, f.StartTimeout)
	set(&o.Reconcile, f.Reconcile)
	set(&o.Heartbeat, f.Heartbeat)
	set(&o.SuspectAfter, f.SuspectAfter)
	set(&o.RemoveAfter, f.RemoveAfter)
	set(&o.DialTimeout, f.DialTimeout)
	set(&o.BackoffMin, f.BackoffMin)
	set(&o.BackoffMax, f.BackoffMax)
	set(&o.DiscoveryInterval, f.DiscoveryInterval)
	return o
}

// EngineByName returns the ring engine called name ("consistent", the
// default; "libring", which places keys as Elixir's libring does, for mixed
// Go/Elixir clusters; "libring-otp26", the same for Elixir nodes on OTP 26
// or later, which hash atom keys differently), or nil for an unknown name.
func EngineByName(name string) ring.Engine {
	switch name {
	case "", "consistent":
		return ring.Consistent()
	case "libring":
		return libring.Engine()
	case "libring-otp26":
		return libring.EngineFor(26)
	}
	return nil
}

// NodeOptions turns the node section into Ergo node options.
func (f *File) NodeOptions() ergonode.Options {
	return ergonode.Options{Cookie: f.Node.Cookie, EPMDPort: f.Node.EPMDPort,
		EmbeddedEPMD: f.Node.EmbeddedEPMD, ListenPort: f.Node.ListenPort}
}

// Template is the commented file `cloister init` writes. Every key is
// shown with its default; it loads and validates as written.
const Template = `# cloister configuration (YAML). Unknown keys are rejected.
# Durations are Go durations: 500ms, 3s, 1m.

# Application the cluster runs for: default ring name; node-name prefix in
# service mode. Only nodes running cloister for the same otp_app are members.
otp_app: cloister

# Peers: either a static node list ...
sentry:
  - cloister_0@127.0.0.1
  - cloister_1@127.0.0.1
  - cloister_2@127.0.0.1
# ... or a DNS service name whose IPv4 addresses are the peers (otp_app@<ip>).
# service: cloister_test.local
# dns_server: ""        # host:port; empty = the system resolver
# srv: false            # look up SRV records (Kubernetes headless services)

# Members (this node included) needed before the cluster is ready; the
# node's start blocks until then.
consensus: 2

# ring: cloister        # default ring name (default: otp_app)
# groups: []            # extra named rings, same members
# engine: consistent    # or libring: owners as Elixir's libring computes them (mixed clusters);
#                       # libring-otp26 when the Elixir nodes run OTP 26+ (atom keys hash differently)
# loopback: false       # service mode: name this node otp_app@127.0.0.1
# magic: true           # false: never derive the node name in service mode

start_timeout: 0s       # 0s = wait forever for consensus
reconcile: 1s           # safety-net check of the node's connections
heartbeat: 500ms        # member heartbeat period
suspect_after: 3s       # silence before a member is suspected
remove_after: 5s        # silence before a member is removed and disconnected
dial_timeout: 5s        # one connection attempt
backoff_min: 50ms       # re-dial backoff, doubling ...
backoff_max: 1s         # ... up to this, forever
discovery_interval: 1s  # DNS re-resolution period

node:
  name: cloister_0@127.0.0.1
  cookie: cloister
  epmd_port: 4369
  embedded_epmd: false  # serve EPMD in the node (one per container)
  listen_port: 0        # 0: first free port from 15000
  http: ""              # health endpoint, e.g. 127.0.0.1:8080 (/healthz /readyz /status)
`
