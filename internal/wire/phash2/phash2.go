// Package phash2 computes erlang:phash2/1,2 of Erlang terms held as Go values,
// bit for bit as OTP does (verified against OTP 25 by the tests in this
// package, which run erl).
//
// phash2 is OTP's "portable" hash: the same term hashes to the same value on
// every OTP version and platform, which is why hash rings shared by Erlang and
// Elixir nodes (libring, used by Elixir's cloister) are built on it. This
// implementation was written from a reading of make_hash2 in OTP's
// erts/emulator/beam/utils.c and of atom_hash in erts/emulator/beam/atom.c.
//
// # Go values and the Erlang terms they stand for
//
//	etf.Atom, bool                    atom (true/false for bool)
//	string, etf.String, []byte        binary
//	etf.Charlist                      list of code points ("abc" in Erlang)
//	int, int8..int64, uint..uint64,   integer (any size; a *big.Int that fits
//	  uintptr, *big.Int, big.Int        a small integer hashes like one)
//	float64, float32                  float (NaN and ±Inf are rejected)
//	etf.Tuple                         tuple
//	etf.List, []etf.Term, []any, nil  proper list (nil and empty lists are [])
//	etf.ListImproper{a, b, t}         improper list [a, b | t]
//	etf.Map, map[etf.Term]etf.Term,   map (the hash does not depend on
//	  map[any]any                       iteration order, as in OTP)
//	etf.Pid, etf.Ref, etf.Alias       pid, reference (only the fields OTP
//	                                    hashes: see the notes on each)
//
// A Go string is hashed as an Erlang binary: that is what Elixir code passes
// ("key" in Elixir is a binary). Note that Ergo's encoder sends a Go string as
// a charlist; to hash a charlist, pass Charlist(s) or etf.Charlist(s).
//
// Terms received from Erlang through Ergo need care: Ergo decodes an Erlang
// charlist into a Go string, which this package hashes as a binary. Hash such
// a term after turning those strings back into etf.Charlist.
//
// Any other Go type is refused with a *TypeError naming it (errors.Is(err,
// ErrUnsupported) holds). Bit strings whose size is not a whole number of
// bytes, funs and ports have no Go representation here.
package phash2

import (
	"errors"
	"fmt"

	"github.com/ergo-services/ergo/etf"
)

// DefaultRange is the range of erlang:phash2/1, used by Hash when rng is 0.
const DefaultRange = 1 << 27

// MaxDepth bounds how deeply terms may nest (tuples, lists, maps inside each
// other), and how many list tails that are themselves Go lists may follow one
// another. Real terms are far shallower; the bound turns a cyclic Go value (a
// slice that contains itself) into ErrTooDeep instead of a stack overflow.
const MaxDepth = 10000

// ErrUnsupported is matched (errors.Is) by every *TypeError.
var ErrUnsupported = errors.New("phash2: unsupported term")

// ErrTooDeep is returned for terms nested deeper than MaxDepth.
var ErrTooDeep = fmt.Errorf("phash2: term nested deeper than %d levels (a cyclic value?)", MaxDepth)

// TypeError reports a Go value that has no Erlang term to hash.
type TypeError struct {
	Type   string // the Go type, as fmt's %T prints it
	Reason string // why it is refused; empty when the type is simply unknown
}

func (e *TypeError) Error() string {
	if e.Reason == "" {
		return "phash2: unsupported Go type " + e.Type
	}
	return "phash2: unsupported Go type " + e.Type + ": " + e.Reason
}

// Unwrap makes errors.Is(err, ErrUnsupported) true.
func (e *TypeError) Unwrap() error { return ErrUnsupported }

// Hash returns erlang:phash2(term, rng): a value in 0..rng-1. rng == 0 means
// the range of erlang:phash2/1 (DefaultRange, 2^27). For the full range 2^32
// (phash2(Term, 1 bsl 32)), which uint32 cannot express, use Sum32.
//
// Atoms, binaries (including Go strings) and integers are hashed without
// allocating.
func Hash(term etf.Term, rng uint32) (uint32, error) {
	sum, err := Sum32(term)
	if err != nil {
		return 0, err
	}
	return Reduce(sum, rng), nil
}

// Sum32 returns the full 32-bit hash, equal to erlang:phash2(term, 1 bsl 32).
func Sum32(term etf.Term) (uint32, error) {
	return hashTerm(term, 0, 0)
}

// Binary returns erlang:phash2(<<b>>, rng) (rng 0: DefaultRange) without
// allocating; it is Hash for a key already known to be a binary.
func Binary(b string, rng uint32) uint32 {
	return Reduce(binarySum(b, 0), rng)
}

// Reduce maps a Sum32 value into 0..rng-1 exactly as phash2/2 does (plain
// modulo); rng == 0 means DefaultRange, as for phash2/1.
func Reduce(sum, rng uint32) uint32 {
	if rng == 0 {
		return sum & (DefaultRange - 1)
	}
	return sum % rng
}

// Charlist marks s as an Erlang charlist (a list of its code points), for the
// rare caller that hashes Erlang strings rather than binaries. It is
// etf.Charlist(s), spelled where users of this package look.
func Charlist(s string) etf.Charlist { return etf.Charlist(s) }
