package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/cloister-go/cloister/ergonode"
)

// runEPMD is `zerocost epmd -port P`: the harness's fallback when Erlang's
// epmd is not installed. Ergo serves EPMD in the first process that
// registers with a local-EPMD registrar; registering a placeholder name
// makes this process that server.
func runEPMD(args []string) int {
	fs := flag.NewFlagSet("zerocost epmd", flag.ContinueOnError)
	port := fs.Int("port", 4369, "port to serve EPMD on, on 127.0.0.1")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := ergonode.ServeEPMD(ctx, uint16(*port)); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", "zerocost epmd", err)
		return 1
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	<-sigs
	return 0
}
