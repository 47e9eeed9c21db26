// Package ring keeps named consistent-hash rings: which member (node) owns a
// key. Every node must compute the same owner for the same key and members,
// whatever order members joined in, so each ring is built from its sorted
// member list on every change (the default engine may start from a previous
// circle, with the same result) and published as an immutable View with an
// epoch number. Lookups read an atomic pointer and take no lock; writers are
// serialized.
package ring

import "errors"

var (
	// ErrNoSuchRing is returned for a ring name that was never defined.
	ErrNoSuchRing = errors.New("cloister: no such ring")
	// ErrEmptyRing is returned when a ring has no members to own a key.
	ErrEmptyRing = errors.New("cloister: ring has no members")
	// ErrRingDefined is returned by Set.Define for a name defined already.
	ErrRingDefined = errors.New("cloister: ring already defined")
	// ErrBadName is returned for an empty ring name or an empty member name.
	ErrBadName = errors.New("cloister: empty name")
	// ErrNoRanges is returned by View.KeyHash for a ring whose engine
	// cannot list hash ranges (its Lookup is not a Ranger).
	ErrNoRanges = errors.New("cloister: ring engine cannot list hash ranges")
)
