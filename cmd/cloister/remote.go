package main

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/cloister-go/cloister/actors"
	"github.com/cloister-go/cloister/internal/clusterstate"
	"github.com/cloister-go/cloister/internal/nodecmd"
	"github.com/cloister-go/cloister/internal/wire/ergonode"
	"github.com/ergo-services/ergo/etf"
	"github.com/ergo-services/ergo/gen"
	"github.com/ergo-services/ergo/lib"
)

// remoteFlags are shared by the commands that talk to a running node.
type remoteFlags struct {
	cookie   *string
	epmdPort *int
	self     *string
	monitor  *string
	timeout  *time.Duration
	tls      *bool
}

func addRemoteFlags(fs *flag.FlagSet) remoteFlags {
	return remoteFlags{
		cookie:   fs.String("cookie", nodecmd.Cookie(), "distribution cookie of the cluster, from $CLOISTER_COOKIE when set"),
		epmdPort: fs.Int("epmd-port", nodecmd.EPMDPort(), "EPMD port, from $ERL_EPMD_PORT when set"),
		self:     fs.String("cli-name", fmt.Sprintf("cloister_cli_%d@127.0.0.1", os.Getpid()), "name of the CLI's own (non-member) node"),
		monitor:  fs.String("monitor", actors.MonitorName, "registered name of the Monitor"),
		timeout:  fs.Duration("timeout", 5*time.Second, "how long to wait for the node"),
		tls:      fs.Bool("tls", false, "reach a node started with -tls (a TLS node refuses plain TCP)"),
	}
}

// callMonitor starts a throwaway Ergo node (it runs no cloister, so it
// never becomes a member), connects to target and calls its Monitor.
func (r remoteFlags) callMonitor(target string, req etf.Term) (etf.Term, error) {
	if err := ergonode.ValidateName(target); err != nil {
		return nil, err
	}
	// The CLI reports the cause of a failure in its error: no log lines.
	o := ergonode.Options{Cookie: *r.cookie, EPMDPort: uint16(*r.epmdPort), EPMDClientOnly: true, Logf: func(string, ...interface{}) {}}
	if *r.tls {
		// As `cloister node -tls`: a self-signed certificate, the cookie
		// authenticates.
		cert, err := lib.GenerateSelfSignedCert("cloister")
		if err != nil {
			return nil, fmt.Errorf("-tls: %w", err)
		}
		o.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true}
	}
	n, err := ergonode.Start(*r.self, o)
	if err != nil {
		return nil, err
	}
	defer n.Stop()
	done := make(chan error, 1)
	// ergonode.Connect: a failed handshake says why (cookie, TLS).
	go func() { done <- ergonode.Connect(n, target) }()
	select {
	case err := <-done:
		if err != nil {
			return nil, fmt.Errorf("cannot reach %s with cookie %q through epmd port %d (is it running? set -cookie and -epmd-port, or $CLOISTER_COOKIE and $ERL_EPMD_PORT, as the cluster has them): %w", target, *r.cookie, *r.epmdPort, err)
		}
	case <-time.After(*r.timeout):
		return nil, fmt.Errorf("cannot reach %s: no answer in %s", target, *r.timeout)
	}
	p, err := n.Spawn("", gen.ProcessOptions{}, &caller{})
	if err != nil {
		return nil, err
	}
	secs := int((*r.timeout + time.Second - 1) / time.Second)
	v, err := p.DirectWithTimeout(callReq{to: gen.ProcessID{Name: *r.monitor, Node: target}, msg: req, secs: secs}, secs+1)
	if err != nil {
		return nil, fmt.Errorf("%s does not answer as a cloister node (%s): %w", target, *r.monitor, err)
	}
	return v, nil
}

type callReq struct {
	to   gen.ProcessID
	msg  etf.Term
	secs int
}

// caller makes one gen_server call on behalf of the CLI.
type caller struct{ gen.Server }

func (c *caller) HandleDirect(p *gen.ServerProcess, ref etf.Ref, m interface{}) (interface{}, gen.DirectStatus) {
	r, ok := m.(callReq)
	if !ok {
		return nil, errors.New("bad request")
	}
	// Calls inside HandleDirect block the process only: fine for a CLI.
	v, err := p.CallWithTimeout(r.to, r.msg, r.secs)
	if err != nil {
		return nil, err
	}
	return v, gen.DirectStatusOK
}

// parseInterspersed parses flags wherever they stand among the arguments
// (`status NODE -json` as `status -json NODE`); after "--" every word is an
// argument. It returns the arguments, or the exit code when done.
func parseInterspersed(fs *flag.FlagSet, args []string) (pos []string, code int, done bool) {
	for {
		if code, done := nodecmd.ParseFlags(fs, args); done {
			return nil, code, true
		}
		rest := fs.Args()
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), 0, false
		}
		if len(rest) == 0 {
			return pos, 0, false
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// status is `cloister status NODE`.
type status struct {
	Node      string   `json:"node"`
	OTPApp    string   `json:"otp_app"`
	State     string   `json:"state"`
	Consensus int      `json:"consensus"`
	Ring      string   `json:"ring"`
	Members   []string `json:"members"`
	Cluster   []string `json:"cluster"`
	Epoch     int64    `json:"epoch"`
	Hash      string   `json:"hash,omitempty"`
	// Roles and Meta: what the node announces (Options.Roles, Meta).
	Roles []string          `json:"roles,omitempty"`
	Meta  map[string]string `json:"meta,omitempty"`
	// MemberRoles and MemberMeta: every member's, as the node knows them
	// (members without any left out).
	MemberRoles map[string][]string          `json:"member_roles,omitempty"`
	MemberMeta  map[string]map[string]string `json:"member_meta,omitempty"`
}

// pairs reads [{K, V}] binaries (a state answer's meta) into a map.
func pairs(t etf.Term) map[string]string {
	var out map[string]string
	l, _ := t.(etf.List)
	for _, e := range l {
		kv, ok := e.(etf.Tuple)
		if !ok || len(kv) != 2 {
			continue
		}
		kb, ok1 := kv[0].([]byte)
		vb, ok2 := kv[1].([]byte)
		if ok1 && ok2 {
			if out == nil {
				out = map[string]string{}
			}
			out[string(kb)] = string(vb)
		}
	}
	return out
}

// binaries reads a list of binaries.
func binaries(t etf.Term) []string {
	var out []string
	l, _ := t.(etf.List)
	for _, e := range l {
		if b, ok := e.([]byte); ok {
			out = append(out, string(b))
		}
	}
	return out
}

// perMember reads [{Node, X}] into a map of node to read(X).
func perMember[T any](t etf.Term, read func(etf.Term) T) map[string]T {
	var out map[string]T
	l, _ := t.(etf.List)
	for _, e := range l {
		nx, ok := e.(etf.Tuple)
		if !ok || len(nx) != 2 {
			continue
		}
		if n, ok := nx[0].(etf.Atom); ok {
			if out == nil {
				out = map[string]T{}
			}
			out[string(n)] = read(nx[1])
		}
	}
	return out
}

func parseStatus(target string, t etf.Term) (status, error) {
	s := status{Node: target}
	app, members, ok := clusterstate.ParseState(t)
	if !ok {
		return s, fmt.Errorf("%s answered %v, not a cloister state", target, t)
	}
	s.OTPApp, s.Members = app, members
	m := t.(etf.Map)
	if v, ok := m[etf.Atom("state")].(etf.Atom); ok {
		s.State = string(v)
	}
	if v, ok := m[etf.Atom("ring")].(etf.Atom); ok {
		s.Ring = string(v)
	}
	s.Roles, s.Meta = binaries(m[etf.Atom("roles")]), pairs(m[etf.Atom("meta")])
	s.MemberRoles = perMember(m[etf.Atom("member_roles")], binaries)
	s.MemberMeta = perMember(m[etf.Atom("member_meta")], pairs)
	switch v := m[etf.Atom("consensus")].(type) {
	case int:
		s.Consensus = v
	case int64:
		s.Consensus = int(v)
	}
	switch v := m[etf.Atom("epoch")].(type) {
	case int:
		s.Epoch = int64(v)
	case int64:
		s.Epoch = v
	}
	if v, ok := m[etf.Atom("hash")].([]byte); ok {
		s.Hash = string(v)
	}
	if groups, ok := m[etf.Atom("groups")].(etf.List); ok {
		for _, g := range groups {
			if tup, ok := g.(etf.Tuple); ok && len(tup) == 2 && tup[0] == etf.Atom("cluster") {
				if l, ok := tup[1].(etf.List); ok {
					for _, n := range l {
						if a, ok := n.(etf.Atom); ok {
							s.Cluster = append(s.Cluster, string(a))
						}
					}
				}
			}
		}
	}
	sort.Strings(s.Members)
	sort.Strings(s.Cluster)
	return s, nil
}

// runStatus prints a node's Monitor state. Exit 0: ready; 3: reachable but
// not ready; 1: unreachable or not a cloister node; 2: usage.
func runStatus(args []string) int {
	fs := flag.NewFlagSet("cloister status", flag.ContinueOnError)
	rf := addRemoteFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: cloister status [flags] NODE\n\nExit status: 0 ready, 3 reachable but not ready, 1 unreachable, 2 usage.")
		fs.PrintDefaults()
	}
	pos, code, done := parseInterspersed(fs, args)
	if done {
		return code
	}
	if len(pos) != 1 {
		fmt.Fprintf(os.Stderr, "cloister status: want one node name, got %d arguments %q (cloister status [flags] NODE [flags])\n", len(pos), pos)
		return 2
	}
	target := pos[0]
	if err := ergonode.ValidateName(target); err != nil {
		fmt.Fprintln(os.Stderr, "cloister status:", err)
		return 2
	}
	t, err := rf.callMonitor(target, etf.Atom("state"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "cloister status:", err)
		return 1
	}
	s, err := parseStatus(target, t)
	// The CLI's own node is connected to the target while it asks: it is
	// no part of the cluster.
	s.Cluster = slices.DeleteFunc(s.Cluster, func(n string) bool { return n == *rf.self })
	if err != nil {
		fmt.Fprintln(os.Stderr, "cloister status:", err)
		return 1
	}
	if *asJSON {
		b, _ := json.MarshalIndent(s, "", "  ")
		fmt.Println(string(b))
	} else {
		fmt.Printf("node:      %s\nstate:     %s\notp_app:   %s\nconsensus: %d\nring:      %s (epoch %d, hash %s)\nmembers:   %d [%s]\ncluster:   %d [%s]\n",
			s.Node, s.State, s.OTPApp, s.Consensus, s.Ring, s.Epoch, s.Hash,
			len(s.Members), strings.Join(s.Members, " "), len(s.Cluster), strings.Join(s.Cluster, " "))
		if len(s.Roles) > 0 || len(s.Meta) > 0 {
			fmt.Printf("roles:     [%s]\nmeta:      [%s]\n", strings.Join(s.Roles, " "), strings.Join(kvs(s.Meta), " "))
		}
		// Each member's roles and metadata, when any member has some.
		if len(s.MemberRoles) > 0 || len(s.MemberMeta) > 0 {
			for _, n := range s.Members {
				fmt.Printf("member:    %s roles [%s] meta [%s]\n", n, strings.Join(s.MemberRoles[n], " "), strings.Join(kvs(s.MemberMeta[n]), " "))
			}
		}
	}
	if s.State != "ready" {
		return 3
	}
	return 0
}

// kvs is m as sorted key=value strings.
func kvs(m map[string]string) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, k+"="+m[k])
	}
	return out
}

// runWhois prints the owner of KEY as NODE sees it.
func runWhois(args []string) int {
	fs := flag.NewFlagSet("cloister whois", flag.ContinueOnError)
	rf := addRemoteFlags(fs)
	group := fs.String("group", "", "ring (default: the node's default ring)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: cloister whois [flags] NODE KEY")
		fs.PrintDefaults()
	}
	pos, code, done := parseInterspersed(fs, args)
	if done {
		return code
	}
	if len(pos) != 2 {
		fmt.Fprintf(os.Stderr, "cloister whois: want a node name and a key, got %d arguments %q (cloister whois [flags] NODE KEY [flags])\n", len(pos), pos)
		return 2
	}
	if err := ergonode.ValidateName(pos[0]); err != nil {
		fmt.Fprintln(os.Stderr, "cloister whois:", err)
		return 2
	}
	t, err := rf.callMonitor(pos[0], etf.Tuple{etf.Atom("whois"), []byte(*group), []byte(pos[1])})
	if err != nil {
		fmt.Fprintln(os.Stderr, "cloister whois:", err)
		return 1
	}
	if tup, ok := t.(etf.Tuple); ok && len(tup) == 2 {
		switch tup[0] {
		case etf.Atom("ok"):
			fmt.Println(tup[1])
			return 0
		case etf.Atom("error"):
			if b, ok := tup[1].([]byte); ok {
				fmt.Fprintln(os.Stderr, "cloister whois:", string(b))
			} else {
				fmt.Fprintln(os.Stderr, "cloister whois:", tup[1])
			}
			return 1
		}
	}
	fmt.Fprintf(os.Stderr, "cloister whois: unexpected answer %v\n", t)
	return 1
}
