// Command cloister is cloister's command line, the original's mix tasks:
//
//	cloister init    write a commented config file
//	cloister run     run N local nodes until Ctrl-C
//	cloister test    run a command with a local cluster up
//	cloister demo    a local 3-node cluster that forms, answers whois and survives a kill
//	cloister node    run one node with cloister (flags below), printing events
//	cloister status  print a node's state, members and ring epoch
//	cloister whois   print the owner of a key as a node sees it
//	cloister epmd    serve EPMD (cloister's own) where Erlang's epmd is not installed
//	cloister version print the version
//
// Run `cloister <command> -h` for a command's flags. Every command that
// talks to nodes uses the same defaults: cookie $CLOISTER_COOKIE or
// "cloister", epmd port $ERL_EPMD_PORT or 4369. Exit codes: 0 ok, 1
// failure, 2 bad usage.
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/cloister-go/cloister/internal/localcluster"
	"github.com/cloister-go/cloister/internal/nodecmd"
)

const version = "v0.1.0"

func usage(w io.Writer) {
	fmt.Fprintf(w, `usage: cloister <command> [flags]

commands:
  init      write a commented config file (cloister.yaml)
  run       run N local nodes (built-in, or -- your program) until Ctrl-C
  test      run a command (e.g. go test ./...) with a local N-node cluster up
  demo      run a local 3-node cluster: form, whois, kill a node, recover
  node      run one node with cloister, printing state changes
  status    print a node's Monitor state (--json); exit 0 ready, 3 not ready, 1 unreachable
  whois     print the owner of a key as a node sees it
  epmd      serve EPMD (cloister's own) where Erlang's is not installed
  version   print the version

Every command that talks to nodes uses the same defaults: cookie
$CLOISTER_COOKIE or %q, epmd port $ERL_EPMD_PORT or %d.
Run 'cloister <command> -h' for a command's flags.
`, nodecmd.DefaultCookie, nodecmd.DefaultEPMDPort)
}

func main() {
	if len(os.Args) < 2 {
		usage(os.Stderr)
		os.Exit(2)
	}
	var code int
	switch os.Args[1] {
	case "node":
		code = nodecmd.Main("cloister node", os.Args[2:], nil)
	case "init":
		code = runInit(os.Args[2:])
	case "run":
		code = runRun(os.Args[2:])
	case "test":
		code = runTest(os.Args[2:])
	case "status":
		code = runStatus(os.Args[2:])
	case "whois":
		code = runWhois(os.Args[2:])
	case "epmd":
		code = localcluster.EPMDMain("cloister", os.Args[2:])
	case "demo":
		code = runDemo(os.Args[2:])
	case "version", "-version", "--version":
		fmt.Println("cloister", version)
	case "-h", "-help", "--help", "help":
		usage(os.Stdout)
	default:
		fmt.Fprintf(os.Stderr, "cloister: unknown command %q\n", os.Args[1])
		usage(os.Stderr)
		code = 2
	}
	os.Exit(code)
}
