package nodetest

import (
	"github.com/cloister-go/cloister"
	"github.com/ergo-services/ergo/etf"
	"github.com/ergo-services/ergo/gen"
)

// VoidName is the registered name of the Void test server.
const VoidName = "Void"

// void is the original test suite's server: on a cast or call
// {ping, From} it sends {pong, Self} to From (and replies ok to a call);
// on {ping_one, From} it does the same only if this node owns the key
// {ping_one, From}, so exactly one node of a cluster answers.
type void struct{ gen.Server }

// VoidChild returns the Void server as an additional module for
// cloister.Options (what cloistertest.Spec.Void starts on a node).
func VoidChild() cloister.Child { return cloister.Child{Name: VoidName, Child: &void{}} }

// HandleCast answers pings.
func (v *void) HandleCast(p *gen.ServerProcess, msg etf.Term) gen.ServerStatus {
	v.ping(p, msg)
	return gen.ServerStatusOK
}

// HandleCall answers pings and replies ok.
func (v *void) HandleCall(p *gen.ServerProcess, from gen.ServerFrom, msg etf.Term) (etf.Term, gen.ServerStatus) {
	v.ping(p, msg)
	return etf.Atom("ok"), gen.ServerStatusOK
}

// HandleInfo ignores everything: garbage must not kill the server.
func (v *void) HandleInfo(p *gen.ServerProcess, msg etf.Term) gen.ServerStatus {
	return gen.ServerStatusOK
}

func (v *void) ping(p *gen.ServerProcess, msg etf.Term) {
	t, ok := msg.(etf.Tuple)
	if !ok || len(t) != 2 {
		return
	}
	from, ok := t[1].(etf.Pid)
	if !ok {
		return
	}
	switch t[0] {
	case etf.Atom("ping"):
	case etf.Atom("ping_one"):
		c := cloister.Default()
		if c == nil || !c.MineTerm(t) {
			return
		}
	default:
		return
	}
	_ = p.Send(from, etf.Tuple{etf.Atom("pong"), p.Self()})
}
