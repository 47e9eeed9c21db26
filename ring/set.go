package ring

import (
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
)

// Set is a registry of named rings. Reads (Get, Owner, AppendOwners, Names)
// load an atomic pointer to an immutable map of snapshots and take no lock;
// writes (Define, Update) are serialized and publish a new map. The zero
// value is an empty Set.
type Set struct {
	mu    sync.Mutex // serializes writers
	rings atomic.Pointer[map[string]*View]
}

// NewSet returns a Set with no rings.
func NewSet() *Set { return &Set{} }

// view returns the current, immutable map of rings (nil before the first
// Define, which reads as empty).
func (s *Set) view() map[string]*View {
	if m := s.rings.Load(); m != nil {
		return *m
	}
	return nil
}

// Define declares the ring name, initially empty (epoch 0). A nil engine
// means Consistent(). It fails with ErrRingDefined if name exists and with
// ErrBadName if name is empty.
func (s *Set) Define(name string, e Engine) error {
	if name == "" {
		return fmt.Errorf("%w: ring name", ErrBadName)
	}
	if e == nil {
		e = Consistent()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.view()
	if _, ok := cur[name]; ok {
		return fmt.Errorf("%w: %q", ErrRingDefined, name)
	}
	s.publish(cur, newSnapshot(name, 0, e, nil))
	return nil
}

// Update sets the members of ring name. Members are sorted and de-duplicated
// (the caller's slice is not modified). If the member set is unchanged it
// returns the current snapshot and false; otherwise it rebuilds the ring from
// scratch, so owners depend only on the member set, publishes it with the
// epoch increased by one and returns it and true. It fails with ErrNoSuchRing
// for an undefined ring and ErrBadName for an empty member name.
func (s *Set) Update(name string, members []string) (*View, bool, error) {
	norm := slices.Clone(members)
	slices.Sort(norm)
	norm = slices.Clip(slices.Compact(norm))
	if len(norm) > 0 && norm[0] == "" {
		return nil, false, fmt.Errorf("%w: member of ring %q", ErrBadName, name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.view()
	old, ok := cur[name]
	if !ok {
		return nil, false, fmt.Errorf("%w: %q", ErrNoSuchRing, name)
	}
	if slices.Equal(old.members, norm) {
		return old, false, nil
	}
	snap := newSnapshot(name, old.epoch+1, old.engine, norm)
	s.publish(cur, snap)
	return snap, true, nil
}

// publish stores a copy of cur with snap in it. The caller holds s.mu.
func (s *Set) publish(cur map[string]*View, snap *View) {
	next := make(map[string]*View, len(cur)+1)
	maps.Copy(next, cur)
	next[snap.name] = snap
	s.rings.Store(&next)
}

// Get returns the current snapshot of ring name, or an error wrapping
// ErrNoSuchRing.
func (s *Set) Get(name string) (*View, error) {
	snap, ok := s.view()[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrNoSuchRing, name)
	}
	return snap, nil
}

// Names returns the names of the defined rings, sorted.
func (s *Set) Names() []string {
	return slices.Sorted(maps.Keys(s.view()))
}

// Owner returns the member of ring name that owns key (Whois). It fails with
// ErrNoSuchRing or ErrEmptyRing and does not allocate when it succeeds.
func (s *Set) Owner(name, key string) (string, error) {
	snap, ok := s.view()[name]
	if !ok {
		return "", fmt.Errorf("%w: %q", ErrNoSuchRing, name)
	}
	return snap.Owner(key)
}

// views returns a copy of the current rings, ring name to view, read at one
// instant (internal/ringx.Views).
func (s *Set) views() map[string]*View {
	m := maps.Clone(s.view())
	if m == nil {
		m = make(map[string]*View)
	}
	return m
}
