package ring

import (
	"errors"
	"fmt"

	"github.com/ergo-services/ergo/etf"
)

var (
	// ErrBadCount is returned when a replica count below 1 is asked for.
	ErrBadCount = errors.New("cloister: replica count must be at least 1")
	// ErrNoReplicas is returned for a ring whose engine cannot list a key's
	// replicas (its Lookup has no AppendOwners method).
	ErrNoReplicas = errors.New("cloister: ring engine cannot list replicas")
)

var _ replicaLookup = (*circle)(nil)

// replicaStack bounds the replica sets collected with no allocation: up to
// this many owners the indices already taken are kept on the stack.
const replicaStack = 16

// AppendOwners is consistent.GetN over members: starting at the point that
// owns key (the first point above crc32(key), wrapping) it walks the circle
// and appends each member not yet taken, until min(n, members) are taken.
// The first is Owner(key). It does not allocate for n <= 16 when dst has
// room.
func (c *circle) AppendOwners(dst []string, key string, n int) []string {
	if n > len(c.members) {
		n = len(c.members)
	}
	if n <= 0 || len(c.hashes) == 0 {
		return dst
	}
	if n == 1 {
		return append(dst, c.Owner(key))
	}
	var stack [replicaStack]int32
	taken := stack[:0]
	if n > replicaStack {
		taken = make([]int32, 0, n)
	}
	start := c.search(hashKey(key))
	for i := start; ; {
		o := c.owners[i]
		if !containsInt32(taken, o) {
			taken = append(taken, o)
			dst = append(dst, c.members[o])
			if len(taken) == n {
				return dst
			}
		}
		if i++; i == len(c.hashes) {
			i = 0
		}
		if i == start {
			// Only reachable if some member lost every point to collisions.
			return dst
		}
	}
}

func containsInt32(s []int32, v int32) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// checkCount validates a replica count.
func checkCount(n int) error {
	if n < 1 {
		return fmt.Errorf("%w: got %d", ErrBadCount, n)
	}
	return nil
}

// AppendOwners appends key's replica set to dst: up to n distinct members
// in the order the engine walks the ring (see the engine's AppendOwners).
// It fails with ErrBadCount for n < 1, ErrEmptyRing for a ring without
// members and ErrNoReplicas for an engine that cannot list replicas. It does
// not allocate when dst has room for n members (n <= 16).
func (s *View) AppendOwners(dst []string, key string, n int) ([]string, error) {
	if err := checkCount(n); err != nil {
		return dst, err
	}
	if s.lookup == nil {
		return dst, s.empty
	}
	rl, ok := s.lookup.(replicaLookup)
	if !ok {
		return dst, fmt.Errorf("%w: %s", ErrNoReplicas, s.engine.Name())
	}
	return rl.AppendOwners(dst, key, n), nil
}

// OwnersN returns key's replica set in a new slice (see AppendOwners).
func (s *View) OwnersN(key string, n int) ([]string, error) {
	if err := checkCount(n); err != nil {
		return nil, err
	}
	return s.AppendOwners(make([]string, 0, min(n, s.Len())), key, n)
}

// appendOwnersTerm is AppendOwners for a term key
// (internal/ringx.AppendOwnersTerm): an engine that hashes terms hashes it
// itself; any other looks up text(key).
func (s *View) appendOwnersTerm(dst []string, key etf.Term, n int, text func(etf.Term) string) ([]string, error) {
	if err := checkCount(n); err != nil {
		return dst, err
	}
	if s.lookup == nil {
		return dst, s.empty
	}
	if tl, ok := s.lookup.(termReplicaLookup); ok {
		return tl.AppendOwnersTerm(dst, key, n)
	}
	return s.AppendOwners(dst, text(key), n)
}

// AppendOwners is View.AppendOwners on ring name; it also fails with
// ErrNoSuchRing.
func (s *Set) AppendOwners(dst []string, name, key string, n int) ([]string, error) {
	snap, ok := s.view()[name]
	if !ok {
		return dst, fmt.Errorf("%w: %q", ErrNoSuchRing, name)
	}
	return snap.AppendOwners(dst, key, n)
}
