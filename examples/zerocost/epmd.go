package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/ergo-services/ergo/node"
	"github.com/ergo-services/ergo/proto/dist"
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
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(*port))
	// The registrar quietly turns client when the port is taken: check first.
	probe, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "zerocost epmd: %s is taken: %v\n", addr, err)
		return 1
	}
	probe.Close()
	reg := dist.CreateRegistrarWithLocalEPMD("127.0.0.1", uint16(*port))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	placeholder := fmt.Sprintf("zerocost_epmd_%d@127.0.0.1", os.Getpid())
	if err := reg.Register(ctx, placeholder, node.RegisterOptions{Port: 1, HandshakeVersion: dist.HandshakeVersion6}); err != nil {
		fmt.Fprintln(os.Stderr, "zerocost epmd:", err)
		return 1
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	<-sigs
	return 0
}
