package distfilter

import (
	"context"
	"net"
	"testing"

	"github.com/ergo-services/ergo/lib"
	"github.com/ergo-services/ergo/node"
)

// stubProto stands for the proto below the filter: each Init is a new
// connection, Serve returns at once.
type stubProto struct{ n int }

type stubConn struct {
	node.ConnectionInterface
	id int
}

func (s *stubProto) Init(ctx context.Context, conn lib.NetReadWriter, nodename string, d node.HandshakeDetails) (node.ConnectionInterface, error) {
	s.n++
	return &stubConn{id: s.n}, nil
}
func (s *stubProto) Serve(ci node.ConnectionInterface, router node.CoreRouter) {}
func (s *stubProto) Terminate(ci node.ConnectionInterface)                     {}

// Two links to one BEAM peer set up at once: Ergo serves the first, the
// second (set up later, so stored last) loses the race and is terminated.
// The peer's link must then be the served one, not none.
func TestLostRaceLeavesTheServedBEAMLink(t *testing.T) {
	p := &proto{inner: &stubProto{}, f: newFilter(Options{})}
	peer := &peerInfo{name: "erl@127.0.0.1", creation: 1, beam: true}
	d := node.HandshakeDetails{Name: peer.name, Custom: peer}
	conn := func() lib.NetReadWriter {
		a, b := net.Pipe()
		t.Cleanup(func() { a.Close(); b.Close() })
		return a
	}
	won, err := p.Init(context.Background(), conn(), "go@127.0.0.1", d)
	if err != nil {
		t.Fatal(err)
	}
	p.Serve(won, nil)
	lost, err := p.Init(context.Background(), conn(), "go@127.0.0.1", d)
	if err != nil {
		t.Fatal(err)
	}
	p.Terminate(lost)
	v, ok := p.f.links.Load(peer.name)
	want, _ := p.conns.Load(won)
	if !ok || v != want {
		t.Fatalf("the peer's link after the loser ended: %p (present %v), want the served one %p", v, ok, want)
	}
}
