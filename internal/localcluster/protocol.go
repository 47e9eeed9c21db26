package localcluster

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/cloister-go/cloister/internal/wire/ergonode"
)

// The node side of the protocol: a program run as a node prints its events
// with a Printer, and answers `epmd -port P` with EPMDMain (the fallback
// when Erlang's epmd is not installed).

// Printer writes one JSON event line per call (the Event the harness reads),
// stamped with "at"; safe for concurrent use. A nil or disabled Printer
// prints nothing.
type Printer struct {
	mu  sync.Mutex
	on  bool
	enc *json.Encoder
}

// NewPrinter prints to w when on.
func NewPrinter(w io.Writer, on bool) *Printer {
	return &Printer{on: on, enc: json.NewEncoder(w)}
}

// Print writes the fields as one line, adding "at" (Unix nanoseconds).
func (p *Printer) Print(fields map[string]interface{}) {
	if p == nil || !p.on {
		return
	}
	fields["at"] = time.Now().UnixNano()
	p.mu.Lock()
	defer p.mu.Unlock()
	_ = p.enc.Encode(fields)
}

// EPMDMain is the `epmd -port P` subcommand of a node program: it serves
// cloister's EPMD (package internal/wire/epmd, never Ergo's) on
// 127.0.0.1:P, or on -address, until SIGTERM or SIGINT. prog names the
// program in messages; the result is the exit code.
func EPMDMain(prog string, args []string) int {
	fs := flag.NewFlagSet(prog+" epmd", flag.ContinueOnError)
	port := fs.Int("port", 4369, "port to serve EPMD on")
	addr := fs.String("address", "127.0.0.1", `interface to listen on ("" for every interface, as Erlang's epmd); registrations are accepted from the local host only`)
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			fs.SetOutput(os.Stdout)
			fmt.Fprintf(os.Stdout, "usage: %s epmd [-port P] [-address A]\n\nServes EPMD until SIGINT or SIGTERM.\n\n", prog)
			fs.PrintDefaults()
			return 0
		}
		fmt.Fprintf(os.Stderr, "%s epmd: %v\n", prog, err)
		return 2
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if *port < 1 || *port > 65535 {
		fmt.Fprintf(os.Stderr, "%s epmd: -port %d is not a port (1..65535)\n", prog, *port)
		return 2
	}
	if err := ergonode.ServeEPMDOn(ctx, *addr, uint16(*port)); err != nil {
		fmt.Fprintf(os.Stderr, "%s epmd: %v\n", prog, err)
		return 1
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	<-sigs
	return 0
}
