// Package hook carries the parts of package ring that only this module's
// own packages use: ring fills these in when it is initialised, and package
// ringx wraps them in typed functions. It exists because ringx must import
// ring (its functions take ring's types) and ring cannot import ringx back;
// the arguments are typed any here for that reason alone. Use ringx.
package hook

import (
	"encoding/binary"
	"hash/fnv"

	"github.com/ergo-services/ergo/etf"
)

// MembersHash is the 64-bit FNV-1a hash of a sorted member list, each name
// length-prefixed: what ring.View.Hash reports and what the core's peers
// compare. It lives here, a package both ring and internal/core import,
// so the two can never drift apart.
func MembersHash(members []string) uint64 {
	h := fnv.New64a()
	var n [binary.MaxVarintLen64]byte
	for _, m := range members {
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(m)))])
		h.Write([]byte(m))
	}
	return h.Sum64()
}

// Set by package ring's init; each takes a *ring.View (or *ring.Set, or
// []ring.HashRange) as any. See the functions of the same name in ringx.
var (
	Shares           func(view any) map[string]float64
	Ranges           func(view any, member string) any
	OwnerTerm        func(view any, key etf.Term, text func(etf.Term) string) (string, error)
	AppendOwnersTerm func(view any, dst []string, key etf.Term, n int, text func(etf.Term) string) ([]string, error)
	Views            func(set any) any
	MergeRanges      func(ranges any) any
)
