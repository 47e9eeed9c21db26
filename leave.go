package cloister

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/cloister-go/cloister/internal/clusterstate"
	"github.com/cloister-go/cloister/internal/core"
	"github.com/ergo-services/ergo/gen"
	"github.com/ergo-services/ergo/node"
)

// ErrBadNode is returned by Join for a name that cannot be a node's.
var ErrBadNode = errors.New("cloister: bad node name")

// leaveAsk bounds the Monitor's answer to a leave or join request (the
// leave itself is bounded by the caller's context).
const leaveAsk = 5 // seconds, as Ergo's Direct takes them

// Leave takes this node out of the cluster gracefully, then stops it. It
// tells every member that is a Go cloister that it is leaving; each drops
// it from its rings at once (no flap grace, no suspicion; reason
// listener.RemovedLeft) and acknowledges once its listener has returned
// from that change. This node's own listener first hears every range it
// hands over (Snapshot.RingChanges, all lost). Leave returns when every member
// told has acknowledged or gone away, or ctx ends, after stopping the node
// as Stop does; the error then wraps ctx's. Members that are Elixir
// cloister nodes are not told (they do not know the message): they see the
// node go as they see a stop.
func (c *Cluster) Leave(ctx context.Context) error {
	n, err := c.running()
	if err != nil {
		return err
	}
	var werr error
	if p := c.monitorProcess(n); p != nil {
		v, err := p.DirectWithTimeout(clusterstate.LeaveRequest{}, leaveAsk)
		if done, ok := v.(<-chan struct{}); err == nil && ok {
			select {
			case <-done:
			case <-ctx.Done():
				werr = fmt.Errorf("cloister: leave: not every member acknowledged (stopping anyway): %w", ctx.Err())
			}
		} else if err != nil {
			werr = fmt.Errorf("cloister: leave: %w (stopping anyway)", err)
		}
	}
	return errors.Join(werr, c.stopAfterLeave(n))
}

// Join adds node as a peer at run time: it is dialled, admitted when its
// Monitor answers for the same OTP application, and re-dialled like a
// listed sentry whenever it goes away, for the life of this cluster (a
// Monitor restarted by its Manager is given it again). A joined peer that
// leaves gracefully is dropped at once like any member and stays a peer:
// a new run of it is admitted again. Join after this node's Leave (or
// Stop) is ErrNotStarted. It returns once the Monitor has taken it; watch
// State or the listener for the member itself. A name that cannot be a
// node's (empty, no '@', spaces) is ErrBadNode.
func (c *Cluster) Join(node string) error {
	if err := checkNodeName(node); err != nil {
		return err
	}
	n, err := c.running()
	if err != nil {
		return err
	}
	if node == n.Name() {
		return fmt.Errorf("%w: %q is this node", ErrBadNode, node)
	}
	p := c.monitorProcess(n)
	if p == nil {
		return ErrNotStarted
	}
	if _, err := p.DirectWithTimeout(clusterstate.JoinRequest{Node: node}, leaveAsk); err != nil {
		return fmt.Errorf("cloister: join %s: %w", node, err)
	}
	return nil
}

// checkNodeName refuses what cannot be a node's name: empty, spaces or
// control characters, longer than 255 bytes, not exactly one '@' between
// a name and a host.
func checkNodeName(node string) error {
	if !core.ValidName(node) || strings.Count(node, "@") != 1 || strings.HasPrefix(node, "@") || strings.HasSuffix(node, "@") {
		return fmt.Errorf("%w: %q (want name@host)", ErrBadNode, node)
	}
	return nil
}

// monitorProcess is the node's Monitor process (nil when not running).
func (c *Cluster) monitorProcess(n node.Node) gen.Process {
	return n.ProcessByName(c.a.Options().MonitorName)
}

// stopAfterLeave stops the node in order (Stop).
func (c *Cluster) stopAfterLeave(node.Node) error { return c.Stop() }
