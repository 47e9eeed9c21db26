package ergonode

import (
	"context"
	"sync"
	"time"

	"github.com/ergo-services/ergo/lib"
	"github.com/ergo-services/ergo/node"
)

// unservedAfter is how long a connection may stay set up but not served
// before it is reaped. Ergo starts serving a registered connection at once,
// so anything still waiting after this was dropped. A variable for tests.
var unservedAfter = 10 * time.Second

// reaping works around a leak in Ergo v2.2.4: when two nodes dial each
// other at the same moment, each side sets up a connection (proto Init:
// a sender and a receiver goroutine per handler, and a keepalive timer),
// then the one that loses the registration race is closed but never
// terminated (node/network.go, connect and listen: on ErrTaken only the
// socket is closed). A mesh that re-dials from both sides after every
// partition leaks two goroutines per lost race, found by the chaos soak
// (tests/chaos). reaping terminates any connection Ergo did not start
// serving within unservedAfter.
type reaping struct {
	node.ProtoInterface
	after   time.Duration
	mu      sync.Mutex
	pending map[node.ConnectionInterface]*time.Timer
}

// ReapUnserved wraps a proto so that connections Ergo sets up and then
// drops without serving (a lost simultaneous-connect race) are terminated
// instead of leaking their goroutines. NodeOptions applies it.
func ReapUnserved(p node.ProtoInterface) node.ProtoInterface {
	return &reaping{ProtoInterface: p, after: unservedAfter, pending: map[node.ConnectionInterface]*time.Timer{}}
}

// Init implements node.ProtoInterface.
func (r *reaping) Init(ctx context.Context, conn lib.NetReadWriter, nodename string, details node.HandshakeDetails) (node.ConnectionInterface, error) {
	ci, err := r.ProtoInterface.Init(ctx, conn, nodename, details)
	if err != nil || ci == nil {
		return ci, err
	}
	r.mu.Lock()
	r.pending[ci] = time.AfterFunc(r.after, func() { r.reap(ci) })
	r.mu.Unlock()
	return ci, nil
}

// Serve implements node.ProtoInterface: a served connection is Ergo's to
// terminate, as usual.
func (r *reaping) Serve(ci node.ConnectionInterface, router node.CoreRouter) {
	r.mu.Lock()
	if t := r.pending[ci]; t != nil {
		t.Stop()
		delete(r.pending, ci)
	}
	r.mu.Unlock()
	r.ProtoInterface.Serve(ci, router)
}

func (r *reaping) reap(ci node.ConnectionInterface) {
	r.mu.Lock()
	_, waiting := r.pending[ci]
	delete(r.pending, ci)
	r.mu.Unlock()
	if waiting {
		r.ProtoInterface.Terminate(ci)
	}
}

// unserved is the number of connections set up and not (yet) served.
func (r *reaping) unserved() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pending)
}
