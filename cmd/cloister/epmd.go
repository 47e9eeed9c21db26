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

// runEPMD serves EPMD on 127.0.0.1 with Ergo's embedded server, for
// machines without Erlang's epmd. It is enough for Go nodes and for erl.
func runEPMD(args []string) int {
	fs := flag.NewFlagSet("cloister epmd", flag.ContinueOnError)
	port := fs.Int("port", 4369, "port to serve EPMD on (127.0.0.1)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := ergonode.ServeEPMD(ctx, uint16(*port)); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", "cloister epmd", err)
		return 1
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	<-sigs
	return 0
}
