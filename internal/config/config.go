// Package config reads cloister's configuration file (YAML): the cluster
// options and the node settings. The keys are derived from the options'
// struct tags, as are the command line's flags (see BindFlags), so every
// option is settable in both; unknown keys are rejected, so a typo is an
// error, not a silent default. Every error names the key, the line and
// what is allowed.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"github.com/cloister-go/cloister/internal/errs"
	"io"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"github.com/cloister-go/cloister/actors"
	"github.com/cloister-go/cloister/internal/nodename"
	"github.com/cloister-go/cloister/internal/wire/ergonode"
	"github.com/cloister-go/cloister/ring"
	"github.com/cloister-go/cloister/ring/libring"
	"gopkg.in/yaml.v3"
)

// Node holds the node settings of the file (the "node:" section).
type Node struct {
	Name         string `yaml:"name" help:"node name, name@host"`
	Cookie       string `yaml:"cookie" help:"distribution cookie"`
	EPMDPort     uint16 `yaml:"epmd_port" help:"EPMD port"`
	EmbeddedEPMD bool   `yaml:"embedded_epmd" help:"serve EPMD in this process when the port is free"`
	ListenPort   uint16 `yaml:"listen_port" help:"distribution port (0: first free from 15000)"`
	// HTTP is the health endpoint address ("" = off).
	HTTP string `yaml:"http" help:"serve /healthz, /readyz, /status on this address"`
}

// File is a configuration file read: the cluster options (defaults for
// what the file does not set) and the node section.
type File struct {
	Node Node
	opts actors.Options
	// lines: where each key was given (the node section's as node.<key>);
	// items: the lines of a list's entries. Errors point at them.
	lines map[string]int
	items map[string][]int
}

// Options returns the cluster options the file sets, over the defaults.
func (f *File) Options() actors.Options { return f.opts }

// Line is where key ("consensus", "node.name") was given, or 0.
func (f *File) Line(key string) int { return f.lines[key] }

// Error is a configuration error: the key, the line (0 when the key is not
// in the file) and what is wrong, including what is allowed.
type Error struct {
	Path string // the file, when read by Load
	Line int
	Key  string
	Msg  string
	Err  error // the underlying error, for errors.Is (cloister.ErrInvalidOption)
}

// Error reads "cloister: config: FILE: line N: KEY: what is wrong".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("cloister: config: ")
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

const emptyFile = "the file is empty: set at least sentry (or service) and consensus; `cloister init` writes a commented file"

// Parse reads a configuration. Every key is checked as it is read: an
// unknown key, a value of the wrong kind, a key given twice and an empty
// file are an *Error naming the key and the line. Parse does not check the
// options together (Load and Validate do).
func Parse(r io.Reader) (*File, error) {
	var doc yaml.Node
	if err := yaml.NewDecoder(r).Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &Error{Msg: emptyFile}
		}
		return nil, &Error{Line: yamlErrLine(err), Msg: "not valid YAML: " + yamlErrMsg(err)}
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind == yaml.ScalarNode && doc.Content[0].Tag == "!!null" {
		return nil, &Error{Msg: emptyFile}
	}
	top := doc.Content[0]
	if top.Kind != yaml.MappingNode {
		return nil, &Error{Line: top.Line, Msg: "want keys and values (key: value), one per line"}
	}
	f := &File{opts: actors.DefaultOptions(), lines: map[string]int{}, items: map[string][]int{}}
	err := f.decode(top, "", reflect.ValueOf(&f.opts).Elem(), optionFields, func(k, v *yaml.Node) (bool, error) {
		if k.Value != "node" {
			return false, nil
		}
		if v.Kind != yaml.MappingNode {
			return true, &Error{Line: v.Line, Key: "node", Msg: "want the node settings (name, cookie, ...), indented under node:"}
		}
		return true, f.decode(v, "node.", reflect.ValueOf(&f.Node).Elem(), nodeFields, nil)
	})
	if err != nil {
		return nil, err
	}
	return f, nil
}

// decode sets the fields of dst from the mapping m; extra handles a key
// that is not a field (the node section).
func (f *File) decode(m *yaml.Node, prefix string, dst reflect.Value, fields []field,
	extra func(k, v *yaml.Node) (bool, error)) error {
	byKey := map[string]field{}
	for _, fl := range fields {
		byKey[fl.Key] = fl
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		key := prefix + k.Value
		if first, ok := f.lines[key]; ok {
			return &Error{Line: k.Line, Key: key, Msg: fmt.Sprintf("given twice (first on line %d)", first)}
		}
		f.lines[key] = k.Line
		if extra != nil {
			if handled, err := extra(k, v); handled || err != nil {
				return err
			}
		}
		fl, ok := byKey[k.Value]
		if !ok {
			return &Error{Line: k.Line, Key: key, Msg: "unknown key" + suggest(k.Value, fields, prefix == "")}
		}
		if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
			continue // "key:" with no value keeps the default
		}
		val, err := f.value(fl, key, v)
		if err != nil {
			return err
		}
		dst.Field(fl.index).Set(val)
	}
	return nil
}

func (f *File) value(fl field, key string, v *yaml.Node) (reflect.Value, error) {
	if fl.typ.Kind() == reflect.Slice {
		if v.Kind != yaml.SequenceNode {
			return reflect.Value{}, &Error{Line: v.Line, Key: key, Msg: "want a list: one entry per line (  - name) or [a, b]"}
		}
		items := make([]string, 0, len(v.Content))
		for _, it := range v.Content {
			if it.Kind != yaml.ScalarNode {
				return reflect.Value{}, &Error{Line: it.Line, Key: key, Msg: "want a list of names"}
			}
			items = append(items, it.Value)
			f.items[key] = append(f.items[key], it.Line)
		}
		return reflect.ValueOf(items), nil
	}
	if v.Kind != yaml.ScalarNode {
		return reflect.Value{}, &Error{Line: v.Line, Key: key, Msg: "want " + describe(fl.typ) + ", not a list or a map"}
	}
	val, err := parseScalar(fl.typ, fl.Name, v.Value)
	if err != nil {
		return reflect.Value{}, &Error{Line: v.Line, Key: key, Msg: err.Error()}
	}
	return val, nil
}

// suggest names the key meant, or the known keys.
func suggest(got string, fields []field, top bool) string {
	var keys []string
	for _, fl := range fields {
		if closeEnough(got, fl.Key) {
			return fmt.Sprintf(" (did you mean %s?)", fl.Key)
		}
		keys = append(keys, fl.Key)
	}
	if top {
		keys = append(keys, "node")
	}
	return " (known keys: " + strings.Join(keys, ", ") + ")"
}

// closeEnough: at most one byte inserted, deleted or changed (a typo).
func closeEnough(a, b string) bool {
	if len(a)-len(b) > 1 || len(b)-len(a) > 1 {
		return false
	}
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	j, k := len(a), len(b)
	for j > i && k > i && a[j-1] == b[k-1] {
		j--
		k--
	}
	return j-i <= 1 && k-i <= 1
}

var yamlLine = regexp.MustCompile(`line (\d+): ?`)

func yamlErrLine(err error) int {
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n
	}
	return 0
}

func yamlErrMsg(err error) string {
	return yamlLine.ReplaceAllString(strings.TrimPrefix(err.Error(), "yaml: "), "")
}

// Load reads the file at path and validates it; every error is an *Error
// naming the file, the line and the key.
func Load(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cloister: config: %w", err)
	}
	f, err := Parse(bytes.NewReader(b))
	if err == nil {
		err = f.Validate()
	}
	if err != nil {
		if ce, ok := err.(*Error); ok {
			ce.Path = path
		}
		return nil, err
	}
	return f, nil
}

// Validate checks the options together (actors.Options.Validate) and the node
// name; the error is an *Error naming the key and the line.
func (f *File) Validate() error {
	o := f.opts
	if err := o.Validate(); err != nil {
		var oe *errs.OptionError
		if !errors.As(err, &oe) {
			return &Error{Msg: err.Error(), Err: err}
		}
		key, value := oe.Field, shown(oe.Value)
		for _, fl := range optionFields {
			if fl.Name == oe.Field {
				key = fl.Key
				if fl.typ == durationType {
					value = fmt.Sprint(oe.Value)
				}
			}
		}
		line := f.lines[key]
		if oe.Index >= 0 && oe.Index < len(f.items[key]) {
			line = f.items[key][oe.Index]
		}
		msg := fmt.Sprintf("%s is not allowed: %s", value, keysFor(oe.Why))
		if oe.Index >= 0 {
			msg = fmt.Sprintf("entry %d, %s", oe.Index+1, msg)
		}
		if line == 0 {
			msg += " (set it in the file)"
		}
		return &Error{Line: line, Key: key, Msg: msg, Err: err}
	}
	if f.Node.Name != "" {
		if err := nodename.Check(f.Node.Name); err != nil {
			return &Error{Line: f.lines["node.name"], Key: "node.name", Msg: err.Error(), Err: err}
		}
	}
	return nil
}

func shown(v interface{}) string {
	switch x := v.(type) {
	case string:
		return strconv.Quote(x)
	case []string:
		return "[" + strings.Join(x, ", ") + "]"
	}
	return fmt.Sprint(v)
}

// keysFor rewrites the Go names in a validation message as the file's.
func keysFor(why string) string {
	why = strings.ReplaceAll(why, "NoFlapGrace", "off")
	for _, fl := range optionFields {
		why = regexp.MustCompile(`\b`+fl.Name+`\b`).ReplaceAllString(why, fl.Key)
	}
	return why
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

// engineNames are the names EngineByName knows, as the file writes them.
var engineNames = []string{"consistent", "libring", "libring-otp26"}

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
# roles: []             # roles this node announces, e.g. [worker] (at most 16)
# meta: []              # metadata it announces, key=value, e.g. [zone=eu-1] (at most 32)
# ring_roles: []        # restrict a ring to members with a role: [jobs=worker]
# engine: consistent    # or libring: owners as Elixir's libring computes them (mixed clusters);
#                       # libring-otp26 when the Elixir nodes run OTP 26+ (atom keys hash differently)
# manager_name: Elixir.Cloister.Manager   # registered names, as on an Elixir node
# monitor_name: Elixir.Cloister.Monitor
# loopback: false       # service mode: name this node otp_app@127.0.0.1
# magic: true           # false: never derive the node name in service mode

start_timeout: 0s       # 0s = wait forever for consensus
start_log_every: 2s     # progress line interval while the start waits
reconcile: 1s           # safety-net check of the node's connections
heartbeat: 500ms        # member heartbeat period
suspect_after: 3s       # silence before a member is suspected
remove_after: 5s        # silence before a member is removed and disconnected
# flap_grace: 1s        # a dropped member stays this long while re-dialled
#                       # (default 1s or remove_after/2; off: removed at once)
# watch_neighbours: 2   # steady cluster: members on each side each member watches (-1: all)
dial_timeout: 5s        # one connection attempt
backoff_min: 50ms       # re-dial backoff, doubling ...
backoff_max: 1s         # ... up to this, forever
discovery_interval: 1s  # DNS re-resolution period
# keep_freed_memory: false  # true: never force a GC to return a membership burst's memory
# debug: false          # log every event of the Monitor's core (verbose)

node:
  name: cloister_0@127.0.0.1
  cookie: cloister
  epmd_port: 4369
  embedded_epmd: false  # serve EPMD in the node (one per container)
  listen_port: 0        # 0: first free port from 15000
  http: ""              # health endpoint, e.g. 127.0.0.1:8080 (/healthz /readyz /status)
`
