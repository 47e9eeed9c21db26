package ergonode

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"

	"github.com/ergo-services/ergo/node"
	"github.com/ergo-services/ergo/proto/dist"
)

// ServeEPMD makes this process an EPMD server on 127.0.0.1:port, with
// Ergo's embedded EPMD, until ctx ends: the fallback where Erlang's epmd
// is not installed (`cloister epmd`). Ergo's registrar quietly becomes a
// client when the port is taken, so that is checked first and reported.
func ServeEPMD(ctx context.Context, port uint16) error {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port)))
	probe, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("cloister: epmd: cannot listen on %s (another epmd?): %w", addr, err)
	}
	probe.Close()
	reg := dist.CreateRegistrarWithLocalEPMD("127.0.0.1", port)
	// Registering a placeholder name is what starts the embedded server.
	placeholder := fmt.Sprintf("cloister_epmd_%d@127.0.0.1", os.Getpid())
	if err := reg.Register(ctx, placeholder, node.RegisterOptions{Port: 1, HandshakeVersion: dist.HandshakeVersion6}); err != nil {
		return fmt.Errorf("cloister: epmd: %w", err)
	}
	return nil
}
