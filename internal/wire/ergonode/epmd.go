package ergonode

import (
	"context"
	"fmt"
	"net"
	"strconv"

	"github.com/cloister-go/cloister/internal/wire/epmd"
	"github.com/ergo-services/ergo/node"
)

// registrar is the node's EPMD client: cloister's own (package epmd), never
// Ergo's, whose parsers trust lengths from the network. With no EPMD
// running it serves one in this process unless EPMDClientOnly is set; the
// port defaults to $ERL_EPMD_PORT, else 4369, as for every BEAM tool.
func registrar(o Options) node.Registrar {
	r := &epmd.Registrar{Host: o.EPMDHost, Port: o.EPMDPort, Logf: o.Logf}
	if o.EPMDClientOnly {
		r.Mode = epmd.ClientOnly
	}
	if o.EmbeddedEPMD {
		all := "" // peers in other containers look names up here
		r.ServeHost = &all
	}
	return r
}

// EPMDPort is the EPMD port a node with these options uses: EPMDPort, else
// $ERL_EPMD_PORT, else 4369. An ERL_EPMD_PORT that is not a port is an error.
func EPMDPort(o Options) (uint16, error) {
	if o.EPMDPort != 0 {
		return o.EPMDPort, nil
	}
	return epmd.PortFromEnv()
}

// ServeEPMD serves cloister's EPMD on 127.0.0.1:port until ctx ends: the
// fallback where Erlang's epmd is not installed (`cloister epmd`).
func ServeEPMD(ctx context.Context, port uint16) error {
	return ServeEPMDOn(ctx, "127.0.0.1", port)
}

// ServeEPMDOn is ServeEPMD on host ("" for every interface, as Erlang's
// epmd listens). Registrations are accepted from the local host only.
func ServeEPMDOn(ctx context.Context, host string, port uint16) error {
	addr := net.JoinHostPort(host, strconv.Itoa(int(port)))
	s := &epmd.Server{}
	if err := s.Listen(addr); err != nil {
		return fmt.Errorf("cloister: epmd: cannot listen on %s (another epmd?): %w", addr, err)
	}
	go func() {
		<-ctx.Done()
		s.Close()
	}()
	return nil
}
