// Package ringx is the part of package ring's API that only this module
// uses: the operator's page (shares), the Monitor's term lookups (WhoisTerm,
// whois_n from BEAM peers), its ring-change bookkeeping and the engines'
// range merging. Keeping these out of ring keeps the public surface to what
// a user of rings needs.
package ringx

import (
	"github.com/cloister-go/cloister/internal/ringx/hook"
	"github.com/cloister-go/cloister/ring"
	"github.com/ergo-services/ergo/etf"
)

// Shares returns each member's share (0..1) of the key-hash space of v: nil
// for a ring without members or an engine that cannot tell.
func Shares(v *ring.View) map[string]float64 { return hook.Shares(v) }

// Ranges returns the sorted, merged key-hash ranges member owns in v (nil
// when it owns none, or the ring is empty or its engine cannot tell).
func Ranges(v *ring.View, member string) []ring.HashRange {
	return hook.Ranges(v, member).([]ring.HashRange)
}

// OwnerTerm returns the owner of a term key. A ring whose engine hashes
// terms (the libring engine, with erlang:phash2) hashes key itself; any
// other looks up text(key), the caller's canonical text for the term. The
// error wraps ring.ErrEmptyRing for a ring without members, or is the
// engine's for a term it cannot hash.
func OwnerTerm(v *ring.View, key etf.Term, text func(etf.Term) string) (string, error) {
	return hook.OwnerTerm(v, key, text)
}

// AppendOwnersTerm is View.AppendOwners for a term key, hashed as
// OwnerTerm does.
func AppendOwnersTerm(v *ring.View, dst []string, key etf.Term, n int, text func(etf.Term) string) ([]string, error) {
	return hook.AppendOwnersTerm(v, dst, key, n, text)
}

// Views returns a copy of the current rings of s, ring name to view, read
// at one instant (Names then Get may see two different publications).
func Views(s *ring.Set) map[string]*ring.View { return hook.Views(s).(map[string]*ring.View) }

// MergeRanges sorts l in place and merges touching or overlapping ranges;
// it returns the merged prefix of l.
func MergeRanges(l []ring.HashRange) []ring.HashRange {
	return hook.MergeRanges(l).([]ring.HashRange)
}
