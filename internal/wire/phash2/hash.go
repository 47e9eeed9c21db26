package phash2

import (
	"fmt"
	"math"
	"math/big"
	"math/bits"
	"unicode/utf8"

	"github.com/ergo-services/ergo/etf"
)

// How make_hash2 works (our summary of OTP's erts/emulator/beam/utils.c;
// the code below is our own):
//
// A running 32-bit state h starts at 0 and the term is walked depth first,
// left to right. Most steps feed two 32-bit words x, y into h with Bob
// Jenkins' lookup2 mixer: a = k+x, b = k+y, then mix(a, b, h) leaves the new h
// in the third word. The constant k is a multiple of the golden ratio
// 0x9e3779b9 that says what kind of thing was fed (kAtom, kTuple, ...). One
// word steps feed y = 0.
//
//   - atom: its atom-table hash (hashpjw of the name, see atomHash). If h is
//     still 0 it simply becomes h; otherwise it is fed with kAtom.
//   - [] : h = 3468870702 if h is 0, else the word 2 (OTP's NIL_DEF) is fed
//     with kNil.
//   - integer in -2^27..2^27-1: fed with kSmall as its 32-bit two's
//     complement; a negative one first also feeds its absolute value.
//   - other integer: the magnitude's 64-bit digits, least significant first,
//     each fed as (low32, high32) with kPosBig or kNegBig.
//   - float: (high32, low32) of its IEEE bits with kFloat; -0.0 as 0.0.
//   - binary: h = lookup2 block hash of the bytes seeded with kBinary+h (just
//     kBinary+h when empty).
//   - tuple: the arity with kTuple, then the elements.
//   - list: walked cell by cell. Runs of heads that are integers 0..255 are
//     packed four to a word (first byte most significant) and fed with
//     kBytes; a shorter final group is fed as is. Any other head is hashed as
//     a term. Finally the tail is hashed as a term ([] for a proper list).
//   - map: the size with kMapSize; then each key-value pair is hashed on its
//     own, starting from h = 0 (key, then value), and the XOR of those pair
//     hashes is fed with kMapPairs. The XOR is why the order of the pairs does
//     not matter.
//   - pid, reference: one number of it (see pidNumber, refNumber) with kPid,
//     kRef.
//
// phash2/2 then returns h mod Range; phash2/1 returns h & (2^27-1).

const golden = 0x9e3779b9

// Kinds of data fed to the mixer: golden*n mod 2^32 for OTP's n.
const (
	kSmall    = golden * 1 % (1 << 32)
	kNil      = golden * 2 % (1 << 32)
	kAtom     = golden * 3 % (1 << 32)
	kBytes    = golden * 4 % (1 << 32)
	kPid      = golden * 5 % (1 << 32)
	kRef      = golden * 7 % (1 << 32)
	kTuple    = golden * 9 % (1 << 32)
	kNegBig   = golden * 10 % (1 << 32)
	kPosBig   = golden * 11 % (1 << 32)
	kFloat    = golden * 12 % (1 << 32)
	kBinary   = golden * 13 % (1 << 32)
	kMapSize  = golden * 16 % (1 << 32)
	kMapPairs = golden * 19 % (1 << 32)

	nilDef   = 2          // the word fed for [] (OTP's NIL_DEF)
	nilFirst = 3468870702 // h for [] when h is still 0
)

// mix is lookup2's mixer; the result is the third word.
func mix(a, b, c uint32) uint32 {
	_, _, c = mix3(a, b, c)
	return c
}

// feed mixes the words x, y of kind k into h.
func feed(h, x, y, k uint32) uint32 { return mix(k+x, k+y, h) }

// blockHash is lookup2's hash of a byte string with initial value c.
func blockHash[B ~string | ~[]byte](p B, c uint32) uint32 {
	a, b := uint32(golden), uint32(golden)
	n := len(p)
	i := 0
	for ; n-i >= 12; i += 12 {
		a += uint32(p[i]) | uint32(p[i+1])<<8 | uint32(p[i+2])<<16 | uint32(p[i+3])<<24
		b += uint32(p[i+4]) | uint32(p[i+5])<<8 | uint32(p[i+6])<<16 | uint32(p[i+7])<<24
		c += uint32(p[i+8]) | uint32(p[i+9])<<8 | uint32(p[i+10])<<16 | uint32(p[i+11])<<24
		a, b, c = mix3(a, b, c)
	}
	// The last 0..11 bytes: as above, but the low byte of c holds the length.
	c += uint32(n)
	r := p[i:]
	switch len(r) {
	case 11:
		c += uint32(r[10]) << 24
		fallthrough
	case 10:
		c += uint32(r[9]) << 16
		fallthrough
	case 9:
		c += uint32(r[8]) << 8
		fallthrough
	case 8:
		b += uint32(r[7]) << 24
		fallthrough
	case 7:
		b += uint32(r[6]) << 16
		fallthrough
	case 6:
		b += uint32(r[5]) << 8
		fallthrough
	case 5:
		b += uint32(r[4])
		fallthrough
	case 4:
		a += uint32(r[3]) << 24
		fallthrough
	case 3:
		a += uint32(r[2]) << 16
		fallthrough
	case 2:
		a += uint32(r[1]) << 8
		fallthrough
	case 1:
		a += uint32(r[0])
	}
	return mix(a, b, c)
}

// mix3 is mix returning all three words, for blockHash's rounds.
func mix3(a, b, c uint32) (uint32, uint32, uint32) {
	a -= b
	a -= c
	a ^= c >> 13
	b -= c
	b -= a
	b ^= a << 8
	c -= a
	c -= b
	c ^= b >> 13
	a -= b
	a -= c
	a ^= c >> 12
	b -= c
	b -= a
	b ^= a << 16
	c -= a
	c -= b
	c ^= b >> 5
	a -= b
	a -= c
	a ^= c >> 3
	b -= c
	b -= a
	b ^= a << 10
	c -= a
	c -= b
	c ^= b >> 15
	return a, b, c
}

// atomHash is the hash OTP keeps in its atom table: hashpjw over the UTF-8
// name, except that a two-byte sequence encoding U+0080..U+00FF counts as
// its single Latin-1 byte (so the value did not change when OTP 20 moved atoms
// from Latin-1 to UTF-8). OTP computes this in a machine word; only the low
// 32 bits are used and they do not depend on the word size.
func atomHash[B ~string | ~[]byte](name B) uint32 {
	var h uint32
	for i := 0; i < len(name); i++ {
		v := name[i]
		if i+1 < len(name) && v&0xFE == 0xC2 && name[i+1]&0xC0 == 0x80 {
			v = v<<6 | name[i+1]&0x3F // byte arithmetic: the Latin-1 code
			i++
		}
		h = h<<4 + uint32(v)
		if g := h & 0xF0000000; g != 0 {
			h ^= g >> 24
			h ^= g
		}
	}
	return h
}

func atomSum(h, ah uint32) uint32 {
	if h == 0 {
		return ah
	}
	return feed(h, ah, 0, kAtom)
}

func nilSum(h uint32) uint32 {
	if h == 0 {
		return nilFirst
	}
	return feed(h, nilDef, 0, kNil)
}

func binarySum[B ~string | ~[]byte](b B, h uint32) uint32 {
	if len(b) == 0 {
		return kBinary + h
	}
	return blockHash(b, kBinary+h)
}

// small28 reports whether x is hashed as a small integer (OTP's IS_SSMALL28).
func small28(x int64) bool { return x >= -(1<<27) && x < 1<<27 }

func smallSum(h uint32, x int32) uint32 {
	if x < 0 {
		h = feed(h, uint32(-x), 0, kSmall)
	}
	return feed(h, uint32(x), 0, kSmall)
}

// digitSum feeds one 64-bit digit of a big integer's magnitude.
func digitSum(h uint32, d uint64, neg bool) uint32 {
	k := uint32(kPosBig)
	if neg {
		k = kNegBig
	}
	return feed(h, uint32(d), uint32(d>>32), k)
}

func intSum(h uint32, x int64) uint32 {
	if small28(x) {
		return smallSum(h, int32(x))
	}
	if x < 0 {
		return digitSum(h, -uint64(x), true) // also right for math.MinInt64
	}
	return digitSum(h, uint64(x), false)
}

func uintSum(h uint32, x uint64) uint32 {
	if x < 1<<27 {
		return smallSum(h, int32(x))
	}
	return digitSum(h, x, false)
}

func bigSum(h uint32, x *big.Int) uint32 {
	if x.IsInt64() {
		return intSum(h, x.Int64())
	}
	neg := x.Sign() < 0
	words := x.Bits() // magnitude, least significant word first; no copy
	if bits.UintSize == 64 {
		for _, w := range words {
			h = digitSum(h, uint64(w), neg)
		}
		return h
	}
	for i := 0; i < len(words); i += 2 { // 32-bit words: pair them
		d := uint64(words[i])
		if i+1 < len(words) {
			d |= uint64(words[i+1]) << 32
		}
		h = digitSum(h, d, neg)
	}
	return h
}

func floatSum(h uint32, f float64, typ string) (uint32, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, &TypeError{Type: typ, Reason: fmt.Sprintf("%v is not an Erlang float", f)}
	}
	if f == 0 {
		f = 0 // -0.0 hashes as 0.0
	}
	u := math.Float64bits(f)
	return feed(h, uint32(u>>32), uint32(u), kFloat), nil
}

// pidNumber is what OTP hashes of a pid: the ID field of its external
// format (NEW_PID_EXT), which is the low 32 bits of etf.Pid.ID when Ergo runs
// with FlagBigPidRef. The serial, node and creation are not hashed, so pids
// that differ only in those collide, as they do in OTP.
func pidNumber(p etf.Pid) uint32 { return uint32(p.ID) }

// refNumber is what OTP hashes of a reference: its first ID word. Node,
// creation and the other words are not hashed.
func refNumber(r etf.Ref) uint32 { return r.ID[0] }

// hashTerm folds t into h. depth counts the nesting so far.
func hashTerm(t etf.Term, h uint32, depth int) (uint32, error) {
	if depth > MaxDepth {
		return 0, ErrTooDeep
	}
	switch v := t.(type) {
	case etf.Atom:
		return atomSum(h, atomHash(v)), nil
	case bool:
		if v {
			return atomSum(h, atomHash("true")), nil
		}
		return atomSum(h, atomHash("false")), nil
	case string:
		return binarySum(v, h), nil
	case etf.String:
		return binarySum(v, h), nil
	case []byte:
		return binarySum(v, h), nil
	case int:
		return intSum(h, int64(v)), nil
	case int64:
		return intSum(h, v), nil
	case int32:
		return intSum(h, int64(v)), nil
	case int16:
		return intSum(h, int64(v)), nil
	case int8:
		return intSum(h, int64(v)), nil
	case uint:
		return uintSum(h, uint64(v)), nil
	case uint64:
		return uintSum(h, v), nil
	case uint32:
		return uintSum(h, uint64(v)), nil
	case uint16:
		return uintSum(h, uint64(v)), nil
	case uint8:
		return uintSum(h, uint64(v)), nil
	case uintptr:
		return uintSum(h, uint64(v)), nil
	case *big.Int:
		if v == nil {
			return 0, &TypeError{Type: "*big.Int", Reason: "nil pointer"}
		}
		return bigSum(h, v), nil
	case big.Int:
		return bigSum(h, &v), nil
	case float64:
		return floatSum(h, v, "float64")
	case float32:
		return floatSum(h, float64(v), "float32")
	case nil:
		return nilSum(h), nil
	case etf.Tuple:
		h = feed(h, uint32(len(v)), 0, kTuple)
		for _, e := range v {
			var err error
			if h, err = hashTerm(e, h, depth+1); err != nil {
				return 0, err
			}
		}
		return h, nil
	case etf.List, []etf.Term, []any, etf.ListImproper, etf.Charlist:
		c := cursor{tail: t}
		if !c.next() {
			return 0, ErrTooDeep
		}
		if c.done() {
			return hashTerm(c.tail, h, depth+1) // [] or the lone element of a 1-element ListImproper
		}
		return listSum(c, h, depth)
	case etf.Map:
		return mapSum(h, len(v), func(yield func(k, v etf.Term) bool) {
			for k, e := range v {
				if !yield(k, e) {
					return
				}
			}
		}, depth)
	case map[etf.Term]etf.Term:
		return hashTerm(etf.Map(v), h, depth)
	case map[any]any:
		return mapSum(h, len(v), func(yield func(k, v etf.Term) bool) {
			for k, e := range v {
				if !yield(k, e) {
					return
				}
			}
		}, depth)
	case etf.Pid:
		return feed(h, pidNumber(v), 0, kPid), nil
	case etf.Ref:
		return feed(h, refNumber(v), 0, kRef), nil
	case etf.Alias:
		return feed(h, refNumber(etf.Ref(v)), 0, kRef), nil
	}
	return 0, &TypeError{Type: fmt.Sprintf("%T", t)}
}

func mapSum(h uint32, size int, pairs func(yield func(k, v etf.Term) bool), depth int) (uint32, error) {
	h = feed(h, uint32(size), 0, kMapSize)
	if size == 0 {
		return h, nil
	}
	var x uint32
	var err error
	pairs(func(k, v etf.Term) bool {
		var p uint32
		if p, err = hashTerm(k, 0, depth+1); err != nil {
			return false
		}
		if p, err = hashTerm(v, p, depth+1); err != nil {
			return false
		}
		x ^= p
		return true
	})
	if err != nil {
		return 0, err
	}
	return feed(h, x, 0, kMapPairs), nil
}

// listSum hashes the list whose first cell c is at (c not done).
func listSum(c cursor, h uint32, depth int) (uint32, error) {
	for {
		// A run of byte heads, four to a word.
		var sh uint32
		n := 0
		for {
			b, ok := c.byteHead()
			if !ok {
				break
			}
			sh = sh<<8 + uint32(b)
			if n == 3 {
				h = feed(h, sh, 0, kBytes)
				sh, n = 0, 0
			} else {
				n++
			}
			if !c.next() {
				return 0, ErrTooDeep
			}
			if c.done() {
				break
			}
		}
		if n > 0 {
			h = feed(h, sh, 0, kBytes)
		}
		if c.done() {
			return hashTerm(c.tail, h, depth+1)
		}
		// A head that is not a byte.
		var err error
		if c.runes != "" {
			r, _ := utf8.DecodeRuneInString(c.runes) // > 255 here, so a small integer
			h = smallSum(h, r)
		} else if h, err = hashTerm(c.elems[0], h, depth+1); err != nil {
			return 0, err
		}
		if !c.next() {
			return 0, ErrTooDeep
		}
		if c.done() {
			return hashTerm(c.tail, h, depth+1)
		}
	}
}

// cursor walks the cells of a list made of Go slices and charlists, and
// follows a tail that is itself a list into it, as OTP sees one list
// however it was built: etf.ListImproper{1, etf.List{2}} is [1, 2].
type cursor struct {
	elems []etf.Term // the cells left in the current slice, or
	runes string     // the code points left in the current charlist
	tail  etf.Term   // what follows them
	hops  int        // tails followed, bounded by MaxDepth
}

// done reports that no cells are left; tail is then the list's final tail.
func (c *cursor) done() bool { return len(c.elems) == 0 && c.runes == "" }

// next consumes the current cell (if any) and moves to the next one,
// following list tails. It reports false if more than MaxDepth tails were
// followed (a cyclic value).
func (c *cursor) next() bool {
	if c.runes != "" {
		_, size := utf8.DecodeRuneInString(c.runes)
		c.runes = c.runes[size:]
	} else if len(c.elems) > 0 {
		c.elems = c.elems[1:]
	}
	for c.done() {
		switch t := c.tail.(type) {
		case etf.List:
			c.elems, c.tail = t, nil
		case []etf.Term:
			c.elems, c.tail = t, nil
		case []any:
			c.elems, c.tail = anyTerms(t), nil
		case etf.ListImproper:
			switch len(t) {
			case 0:
				c.tail = nil
			case 1: // Ergo sends this as a list of no cells before the tail: the tail itself
				c.tail = t[0]
			default:
				c.elems, c.tail = t[:len(t)-1], t[len(t)-1]
			}
		case etf.Charlist:
			c.runes, c.tail = string(t), nil
		default:
			return true // a non-list tail: the list ends here
		}
		if c.hops++; c.hops > MaxDepth {
			return false
		}
	}
	return true
}

// anyTerms views a []any as []etf.Term (etf.Term is a defined empty
// interface type, so the two slice types differ only in name).
func anyTerms(s []any) []etf.Term {
	out := make([]etf.Term, len(s))
	for i, e := range s {
		out[i] = e
	}
	return out
}

// byteHead reports whether the current cell's head is an integer 0..255,
// which OTP packs into its string words, and returns it.
func (c *cursor) byteHead() (byte, bool) {
	if c.runes != "" {
		r, _ := utf8.DecodeRuneInString(c.runes)
		if r <= 0xFF {
			return byte(r), true
		}
		return 0, false
	}
	return asByte(c.elems[0])
}

func asByte(t etf.Term) (byte, bool) {
	var x int64
	switch v := t.(type) {
	case uint8:
		return v, true
	case int:
		x = int64(v)
	case int64:
		x = v
	case int32:
		x = int64(v)
	case int16:
		x = int64(v)
	case int8:
		x = int64(v)
	case uint:
		if v > 0xFF {
			return 0, false
		}
		x = int64(v)
	case uint64:
		if v > 0xFF {
			return 0, false
		}
		x = int64(v)
	case uint32:
		x = int64(v)
	case uint16:
		x = int64(v)
	case uintptr:
		if v > 0xFF {
			return 0, false
		}
		x = int64(v)
	case *big.Int:
		if v == nil || !v.IsInt64() {
			return 0, false
		}
		x = v.Int64()
	case big.Int:
		if !v.IsInt64() {
			return 0, false
		}
		x = v.Int64()
	default:
		return 0, false
	}
	if x < 0 || x > 0xFF {
		return 0, false
	}
	return byte(x), true
}
