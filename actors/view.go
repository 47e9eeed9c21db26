package actors

import (
	"sync"

	"github.com/cloister-go/cloister/internal/listenerx"
	"github.com/cloister-go/cloister/internal/ringx"
	"github.com/cloister-go/cloister/listener"
	"github.com/cloister-go/cloister/ring"
)

// viewExtras adds to every published view what operators read and the
// Monitor does not track: the recent state changes, and each ring's share
// of the key space per member.
type viewExtras struct {
	mu      sync.Mutex
	started bool
	prev    listener.State
	changes []listener.Change // immutable once published: replaced, never appended to in place
	shares  map[string]ringShares
}

// ringShares caches one ring snapshot's shares (computed from its points).
type ringShares struct {
	snap   *ring.View
	shares map[string]float64
}

// annotate returns s with Transitions and each ring's Shares filled in. The
// maps and slices of s are not written to: listeners may hold them.
func (v *viewExtras) annotate(s listener.Snapshot, rings *ring.Set) listener.Snapshot {
	v.mu.Lock()
	defer v.mu.Unlock()
	state := s.State
	if !v.started {
		v.started, v.prev = true, listener.StateDown
	}
	if state != v.prev {
		next := make([]listener.Change, 0, listenerx.RecentChanges)
		keep := v.changes
		if len(keep) >= listenerx.RecentChanges {
			keep = keep[len(keep)-listenerx.RecentChanges+1:]
		}
		next = append(append(next, keep...), listener.Change{From: v.prev, To: state, At: s.At})
		v.changes, v.prev = next, state
	}
	s.Transitions = v.changes
	if len(s.Rings) > 0 && rings != nil {
		out := make(map[string]listener.Ring, len(s.Rings))
		for name, r := range s.Rings {
			if snap, err := rings.Get(name); err == nil && snap.Hash() == r.Hash {
				c, ok := v.shares[name]
				if !ok || c.snap != snap {
					c = ringShares{snap, ringx.Shares(snap)}
					if v.shares == nil {
						v.shares = make(map[string]ringShares)
					}
					v.shares[name] = c
				}
				r.Shares = c.shares
			}
			out[name] = r
		}
		s.Rings = out
	}
	return s
}
