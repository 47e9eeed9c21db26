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

// runEPMD serves EPMD on 127.0.0.1 with Ergo's embedded server, for
// machines without Erlang's epmd. It is enough for Go nodes and for erl.
func runEPMD(args []string) int {
	fs := flag.NewFlagSet("cloister epmd", flag.ContinueOnError)
	port := fs.Int("port", 4369, "port to serve EPMD on (127.0.0.1)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(*port))
	// Ergo's registrar silently becomes a client when the port is taken;
	// say so instead.
	l, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "cloister epmd: cannot listen on %s (another epmd?): %v\n", addr, err)
		return 1
	}
	l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reg := dist.CreateRegistrarWithLocalEPMD("127.0.0.1", uint16(*port))
	// Registering a placeholder name starts the embedded server.
	if err := reg.Register(ctx, fmt.Sprintf("cloister_epmd_%d@127.0.0.1", os.Getpid()), node.RegisterOptions{Port: 1, HandshakeVersion: dist.HandshakeVersion6}); err != nil {
		fmt.Fprintf(os.Stderr, "cloister epmd: %v\n", err)
		return 1
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	<-sigs
	return 0
}
