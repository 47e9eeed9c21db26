package distfilter

import (
	"fmt"

	"github.com/ergo-services/ergo/etf"
	"github.com/ergo-services/ergo/gen"
	"github.com/ergo-services/ergo/node"
)

// netKernel stands in for Ergo's stub net_kernel, which answers every call
// with nil: net_adm:ping (a gen call {is_auth, Node}) then returns pang and
// disconnects.
type netKernel struct{ gen.Server }

// HandleCall answers is_auth with yes, like a BEAM net_kernel whose cookie
// matched (the handshake already checked it), and anything else with ok.
func (k *netKernel) HandleCall(p *gen.ServerProcess, from gen.ServerFrom, m etf.Term) (etf.Term, gen.ServerStatus) {
	if t, ok := m.(etf.Tuple); ok && len(t) == 2 && t[0] == etf.Atom("is_auth") {
		return etf.Atom("yes"), gen.ServerStatusOK
	}
	return etf.Atom("ok"), gen.ServerStatusOK
}

// HandleCast ignores casts quietly (Erlang's global and net_kernel send some).
func (k *netKernel) HandleCast(p *gen.ServerProcess, m etf.Term) gen.ServerStatus {
	return gen.ServerStatusOK
}

// HandleInfo ignores other messages quietly.
func (k *netKernel) HandleInfo(p *gen.ServerProcess, m etf.Term) gen.ServerStatus {
	return gen.ServerStatusOK
}

// InstallNetKernel replaces the node's net_kernel process with one that
// answers net_adm:ping (and Elixir's Node.ping) with pong. Call it once,
// right after the node started.
func InstallNetKernel(n node.Node) error {
	if p := n.ProcessByName("net_kernel"); p != nil {
		if err := n.UnregisterName("net_kernel"); err != nil {
			return fmt.Errorf("distfilter: unregister Ergo's net_kernel: %w", err)
		}
	}
	opts := gen.ProcessOptions{MailboxSize: serviceMailbox}
	if _, err := n.Spawn("net_kernel", opts, &netKernel{}); err != nil {
		return fmt.Errorf("distfilter: spawn net_kernel: %w", err)
	}
	return nil
}

// serviceMailbox is the mailbox of the two services BEAM peers call here
// (net_kernel, global_name_server). Both answer every message at once and
// never wait, and a BEAM caller has one call in flight per process, so
// 1024 queued requests is far beyond any real backlog; Ergo still drops
// past it. Ergo allocates three buffers of the mailbox's size for a
// gen.Server (mailbox, exit queue, deferred queue): at
// ergonode.NetworkMailbox (8192) that is 1.15 MB of live heap per service,
// which the GC's goal doubles, on every node, BEAM peers or not.
const serviceMailbox uint16 = 1024
