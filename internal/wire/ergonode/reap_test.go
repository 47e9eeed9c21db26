package ergonode

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/cloister-go/cloister/internal/testenv"
	"github.com/ergo-services/ergo/lib"
	"github.com/ergo-services/ergo/node"
)

// countingProto stands for Ergo's proto: it counts what is set up and
// torn down.
type countingProto struct {
	mu                        sync.Mutex
	inits, serves, terminates int
}

type fakeConn struct {
	node.ConnectionInterface
	id int
}

func (c *countingProto) Init(ctx context.Context, conn lib.NetReadWriter, nodename string, d node.HandshakeDetails) (node.ConnectionInterface, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.inits++
	return &fakeConn{id: c.inits}, nil
}

func (c *countingProto) Serve(ci node.ConnectionInterface, router node.CoreRouter) {
	c.mu.Lock()
	c.serves++
	c.mu.Unlock()
}

func (c *countingProto) Terminate(ci node.ConnectionInterface) {
	c.mu.Lock()
	c.terminates++
	c.mu.Unlock()
}

func (c *countingProto) counts() (int, int, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.inits, c.serves, c.terminates
}

// A connection that loses the registration race (set up, never served) is
// terminated; a served one is left to Ergo.
func TestUnservedConnectionsAreReaped(t *testing.T) {
	inner := &countingProto{}
	r := &reaping{ProtoInterface: inner, after: 50 * time.Millisecond, pending: map[node.ConnectionInterface]*time.Timer{}}
	won, _ := r.Init(context.Background(), nil, "a@h", node.HandshakeDetails{})
	if _, err := r.Init(context.Background(), nil, "a@h", node.HandshakeDetails{}); err != nil {
		t.Fatal(err)
	}
	r.Serve(won, nil)
	terminated := func() int { _, _, t := inner.counts(); return t }
	testenv.Poll(5*time.Second, func() bool { return terminated() >= 1 })
	// The served connection's timer, had Serve not stopped it, would
	// have fired before the reaped one's: watch two periods more.
	testenv.HoldsUntil(time.Now().Add(2*r.after), func() bool { return terminated() <= 1 })
	inits, serves, terms := inner.counts()
	if inits != 2 || serves != 1 || terms != 1 || r.unserved() != 0 {
		t.Fatalf("inits %d serves %d terminates %d pending %d", inits, serves, terms, r.unserved())
	}
}

// recordingProto is a wrapper as Options.WrapProto installs one (the
// distribution filter): it keeps each connection it saw set up until it
// sees that connection's Terminate.
type recordingProto struct {
	node.ProtoInterface
	mu   sync.Mutex
	live map[node.ConnectionInterface]bool
}

func (r *recordingProto) Init(ctx context.Context, conn lib.NetReadWriter, nodename string, d node.HandshakeDetails) (node.ConnectionInterface, error) {
	ci, err := r.ProtoInterface.Init(ctx, conn, nodename, d)
	if err == nil {
		r.mu.Lock()
		r.live[ci] = true
		r.mu.Unlock()
	}
	return ci, err
}

func (r *recordingProto) Terminate(ci node.ConnectionInterface) {
	r.ProtoInterface.Terminate(ci)
	r.mu.Lock()
	delete(r.live, ci)
	r.mu.Unlock()
}

func (r *recordingProto) held() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.live)
}

// The reaper terminates a lost race's connection through every proto
// wrapper, not only Ergo's proto: a wrapper that keeps per-connection
// state (the filter keeps each connection's peer) would otherwise hold the
// loser, and its buffers, for the node's life, once per lost race.
func TestReapedConnectionsReachEveryWrapper(t *testing.T) {
	defer func(d time.Duration) { unservedAfter = d }(unservedAfter)
	unservedAfter = 50 * time.Millisecond
	var rec *recordingProto
	opts := NodeOptions(Options{WrapProto: func(p node.ProtoInterface) node.ProtoInterface {
		rec = &recordingProto{ProtoInterface: p, live: map[node.ConnectionInterface]bool{}}
		return rec
	}})
	for i := 0; i < 2; i++ {
		a, b := net.Pipe()
		defer a.Close()
		defer b.Close()
		if _, err := opts.Proto.Init(context.Background(), a, "a@127.0.0.1", node.HandshakeDetails{Name: "b@127.0.0.1"}); err != nil {
			t.Fatal(err)
		}
	}
	if !testenv.Poll(5*time.Second, func() bool { return rec.held() == 0 }) {
		t.Fatalf("the wrapper still holds %d unserved connections after the reaper's delay", rec.held())
	}
}
