package ring

import (
	"fmt"
	"slices"

	"github.com/cloister-go/cloister/internal/ringx/hook"
	"github.com/ergo-services/ergo/etf"
)

// View is one ring at one epoch. It is immutable and safe for concurrent
// use; a change of members publishes a new View.
type View struct {
	name    string
	epoch   uint64
	members []string // sorted, distinct; never handed out
	hash    uint64
	engine  Engine
	lookup  Lookup // nil when members is empty
	empty   error  // returned by Owner when lookup is nil; built once so that path does not allocate
}

func newSnapshot(name string, epoch uint64, e Engine, members []string) *View {
	s := &View{name: name, epoch: epoch, members: members, hash: hook.MembersHash(members), engine: e}
	if len(members) == 0 {
		s.empty = fmt.Errorf("%w: %q", ErrEmptyRing, name)
	} else {
		s.lookup = e.Build(members)
	}
	return s
}

// Name returns the ring's name.
func (s *View) Name() string { return s.name }

// Epoch returns the ring's local change counter: 0 when defined, +1 on every
// change of its member set. Epochs are not comparable across nodes; Hash is.
func (s *View) Epoch() uint64 { return s.epoch }

// Members returns a sorted copy of the ring's members.
func (s *View) Members() []string { return slices.Clone(s.members) }

// Len returns the number of members.
func (s *View) Len() int { return len(s.members) }

// Hash returns a 64-bit FNV-1a hash of the sorted member set (each member
// length-prefixed). It ignores the epoch and the engine, so nodes holding the
// same members report the same Hash; nodes that compare rings this way must
// use the same engine.
func (s *View) Hash() uint64 { return s.hash }

// Owner returns the member owning key, or an error wrapping ErrEmptyRing when
// the ring has no members. It does not allocate.
func (s *View) Owner(key string) (string, error) {
	if s.lookup == nil {
		return "", s.empty
	}
	return s.lookup.Owner(key), nil
}

// ownerTerm returns the owner of a term key (internal/ringx.OwnerTerm). A
// ring whose engine hashes terms (the libring engine hashes a key term with
// erlang:phash2, as Elixir's libring does, so both sides agree on atoms,
// tuples and numbers, not only on binaries) hashes key itself; any other
// looks up text(key), the caller's canonical text for the term
// (cloister.Key). The error wraps ErrEmptyRing for a ring without members,
// or is the engine's for a term it cannot hash.
func (s *View) ownerTerm(key etf.Term, text func(etf.Term) string) (string, error) {
	if s.lookup == nil {
		return "", s.empty
	}
	if tl, ok := s.lookup.(termLookup); ok {
		return tl.OwnerTerm(key)
	}
	return s.lookup.Owner(text(key)), nil
}
