package distfilter

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// External term format tags we read or write (erl_ext_dist).
const (
	tagVersion     = 131
	tagAtomCache   = 82
	tagNewFloat    = 70
	tagBitBinary   = 77
	tagNewPid      = 88
	tagNewPort     = 89
	tagNewerRef    = 90
	tagSmallInt    = 97
	tagInt         = 98
	tagFloat       = 99
	tagAtom        = 100
	tagRef         = 101
	tagPort        = 102
	tagPid         = 103
	tagSmallTuple  = 104
	tagLargeTuple  = 105
	tagNil         = 106
	tagString      = 107
	tagList        = 108
	tagBinary      = 109
	tagSmallBig    = 110
	tagLargeBig    = 111
	tagNewFun      = 112
	tagExport      = 113
	tagNewRef      = 114
	tagSmallAtom   = 115
	tagMap         = 116
	tagFun         = 117
	tagAtomUTF8    = 118
	tagSmallAtomU8 = 119
	tagV4Port      = 120
)

// errTerm is returned for bytes that are not a term we can walk.
var errTerm = errors.New("distfilter: malformed or unsupported external term")

// errImplausible is returned for a term whose headers claim more elements
// than bytes follow (every element takes at least one). Ergo's decoder
// allocates a tuple, list or map from the claimed length before reading an
// element, so five bytes could make it ask for tens of gigabytes.
// newFunHead is the fixed part of a NEW_FUN_EXT after its tag.
const newFunHead = 29

var errImplausible = fmt.Errorf("%w: more elements claimed than bytes follow", errTerm)

// termVisitor is called for every reference term found while walking, with
// its byte range in the walked slice.
type termVisitor func(start, end int)

// skipTerm walks one term (without version byte) at the start of b and
// returns its length. Every NEWER_REFERENCE_EXT met, at any depth, is
// reported to visit (nil: none). Iterative: a deep term cannot exhaust the
// stack, and the loop ends because every step consumes input.
func skipTerm(b []byte, visit termVisitor) (int, error) {
	pos := 0
	pending := 1 // terms still to walk
	need := func(n int) error {
		if n < 0 || pos+n > len(b) {
			return errTerm
		}
		return nil
	}
	for pending > 0 {
		pending--
		if err := need(1); err != nil {
			return 0, err
		}
		tag := b[pos]
		pos++
		switch tag {
		case tagNil:
		case tagSmallInt, tagAtomCache:
			pos++
		case tagInt:
			pos += 4
		case tagNewFloat:
			pos += 8
		case tagFloat:
			pos += 31
		case tagAtom, tagAtomUTF8, tagString: // 2-byte length, then the bytes
			if err := need(2); err != nil {
				return 0, err
			}
			pos += 2 + int(binary.BigEndian.Uint16(b[pos:]))
		case tagSmallAtom, tagSmallAtomU8:
			if err := need(1); err != nil {
				return 0, err
			}
			pos += 1 + int(b[pos])
		case tagBinary:
			if err := need(4); err != nil {
				return 0, err
			}
			pos += 4 + int(binary.BigEndian.Uint32(b[pos:]))
		case tagBitBinary:
			if err := need(5); err != nil {
				return 0, err
			}
			pos += 5 + int(binary.BigEndian.Uint32(b[pos:]))
		case tagSmallBig:
			if err := need(1); err != nil {
				return 0, err
			}
			pos += 2 + int(b[pos])
		case tagLargeBig:
			if err := need(4); err != nil {
				return 0, err
			}
			pos += 5 + int(binary.BigEndian.Uint32(b[pos:]))
		case tagSmallTuple:
			if err := need(1); err != nil {
				return 0, err
			}
			pending += int(b[pos])
			pos++
		case tagLargeTuple:
			if err := need(4); err != nil {
				return 0, err
			}
			pending += int(binary.BigEndian.Uint32(b[pos:]))
			pos += 4
		case tagList:
			if err := need(4); err != nil {
				return 0, err
			}
			pending += int(binary.BigEndian.Uint32(b[pos:])) + 1 // elements and tail
			pos += 4
		case tagMap:
			if err := need(4); err != nil {
				return 0, err
			}
			pending += 2 * int(binary.BigEndian.Uint32(b[pos:]))
			pos += 4
		case tagPid, tagNewPid, tagPort, tagNewPort, tagV4Port:
			n, err := atomLen(b[pos:])
			if err != nil {
				return 0, err
			}
			pos += n + afterNode(tag)
		case tagRef:
			n, err := atomLen(b[pos:])
			if err != nil {
				return 0, err
			}
			pos += n + 5
		case tagNewRef, tagNewerRef:
			start := pos - 1
			if err := need(2); err != nil {
				return 0, err
			}
			words := int(binary.BigEndian.Uint16(b[pos:]))
			pos += 2
			n, err := atomLen(b[pos:])
			if err != nil {
				return 0, err
			}
			pos += n + 4*words
			if tag == tagNewRef {
				pos++
			} else {
				pos += 4
			}
			if err := need(0); err != nil {
				return 0, err
			}
			if visit != nil && tag == tagNewerRef {
				visit(start, pos)
			}
		case tagExport:
			pending += 3
		case tagNewFun:
			// Size counts itself and everything after the tag: Size(4)
			// Arity(1) Uniq(16) Index(4) NumFree(4), then terms. Ergo's
			// decoder allocates NumFree elements before reading one.
			if err := need(newFunHead); err != nil {
				return 0, err
			}
			size := int(binary.BigEndian.Uint32(b[pos:]))
			if size < newFunHead || int(binary.BigEndian.Uint32(b[pos+25:])) > size-newFunHead {
				return 0, errImplausible
			}
			pos += size
		case tagFun:
			if err := need(4); err != nil {
				return 0, err
			}
			pending += 4 + int(binary.BigEndian.Uint32(b[pos:]))
			pos += 4
		default:
			return 0, fmt.Errorf("%w: tag %d at byte %d", errTerm, tag, pos-1)
		}
		if pos > len(b) {
			return 0, errTerm
		}
		if pending > len(b)-pos {
			return 0, errImplausible
		}
	}
	return pos, nil
}

// afterNode is the size of the fixed fields after the node atom of a pid
// or port term.
func afterNode(tag byte) int {
	switch tag {
	case tagPid:
		return 9
	case tagPort:
		return 5
	case tagNewPort:
		return 8
	}
	return 12 // NEW_PID_EXT, V4_PORT_EXT
}

// atomLen is the encoded length of the atom at the start of b.
func atomLen(b []byte) (int, error) {
	if len(b) < 2 {
		return 0, errTerm
	}
	switch b[0] {
	case tagAtom, tagAtomUTF8:
		if len(b) < 3 {
			return 0, errTerm
		}
		return 3 + int(binary.BigEndian.Uint16(b[1:])), nil
	case tagSmallAtom, tagSmallAtomU8:
		return 2 + int(b[1]), nil
	case tagAtomCache:
		return 2, nil
	}
	return 0, errTerm
}

// atomText is the text of the atom term t (no cache references).
func atomText(t []byte) (string, bool) {
	if len(t) < 2 {
		return "", false
	}
	switch t[0] {
	case tagAtom, tagAtomUTF8:
		if len(t) < 3 {
			return "", false
		}
		n := int(binary.BigEndian.Uint16(t[1:]))
		if len(t) < 3+n {
			return "", false
		}
		return string(t[3 : 3+n]), true
	case tagSmallAtom, tagSmallAtomU8:
		n := int(t[1])
		if len(t) < 2+n {
			return "", false
		}
		return string(t[2 : 2+n]), true
	}
	return "", false
}

// elements splits the tuple term t into its elements' byte ranges.
func elements(t []byte) ([][]byte, error) {
	var n, pos int
	switch {
	case len(t) >= 2 && t[0] == tagSmallTuple:
		n, pos = int(t[1]), 2
	case len(t) >= 5 && t[0] == tagLargeTuple:
		n, pos = int(binary.BigEndian.Uint32(t[1:])), 5
	default:
		return nil, errTerm
	}
	if n > len(t) {
		return nil, errTerm
	}
	out := make([][]byte, 0, n)
	for i := 0; i < n; i++ {
		l, err := skipTerm(t[pos:], nil)
		if err != nil {
			return nil, err
		}
		out = append(out, t[pos:pos+l])
		pos += l
	}
	return out, nil
}

// listElements splits a proper list term ([] or LIST_EXT with a [] tail,
// or a STRING_EXT) into its elements' byte ranges; STRING_EXT elements are
// returned re-encoded as small integers.
func listElements(t []byte) ([][]byte, error) {
	if len(t) == 1 && t[0] == tagNil {
		return nil, nil
	}
	if len(t) >= 3 && t[0] == tagString {
		n := int(binary.BigEndian.Uint16(t[1:]))
		if len(t) < 3+n {
			return nil, errTerm
		}
		out := make([][]byte, n)
		for i := 0; i < n; i++ {
			out[i] = []byte{tagSmallInt, t[3+i]}
		}
		return out, nil
	}
	if len(t) < 5 || t[0] != tagList {
		return nil, errTerm
	}
	n := int(binary.BigEndian.Uint32(t[1:]))
	if n > len(t) {
		return nil, errTerm
	}
	pos := 5
	out := make([][]byte, 0, n)
	for i := 0; i < n; i++ {
		l, err := skipTerm(t[pos:], nil)
		if err != nil {
			return nil, err
		}
		out = append(out, t[pos:pos+l])
		pos += l
	}
	if pos >= len(t) || t[pos] != tagNil {
		return nil, errTerm // improper list
	}
	return out, nil
}

// smallInt reads a non-negative integer term (SMALL_INTEGER or INTEGER).
func smallInt(t []byte) (int, bool) {
	switch {
	case len(t) == 2 && t[0] == tagSmallInt:
		return int(t[1]), true
	case len(t) == 5 && t[0] == tagInt:
		return int(int32(binary.BigEndian.Uint32(t[1:]))), true
	}
	return 0, false
}

// pidNode returns the node atom text and the trailing ID/serial/creation
// bytes of a NEW_PID_EXT term.
func pidParts(t []byte) (node string, id, serial, creation uint32, ok bool) {
	if len(t) < 2 || t[0] != tagNewPid {
		return "", 0, 0, 0, false
	}
	n, err := atomLen(t[1:])
	if err != nil || len(t) != 1+n+12 {
		return "", 0, 0, 0, false
	}
	node, ok = atomText(t[1 : 1+n])
	rest := t[1+n:]
	return node, binary.BigEndian.Uint32(rest), binary.BigEndian.Uint32(rest[4:]),
		binary.BigEndian.Uint32(rest[8:]), ok
}

// Builders: append one encoded term (no version byte) to b.

func putAtom(b []byte, a string) []byte {
	if len(a) < 256 {
		b = append(b, tagSmallAtomU8, byte(len(a)))
	} else {
		b = append(b, tagAtomUTF8, byte(len(a)>>8), byte(len(a)))
	}
	return append(b, a...)
}

func putInt(b []byte, i int64) []byte {
	switch {
	case i >= 0 && i < 256:
		return append(b, tagSmallInt, byte(i))
	case i >= -1<<31 && i < 1<<31:
		return binary.BigEndian.AppendUint32(append(b, tagInt), uint32(int32(i)))
	}
	sign := byte(0)
	u := uint64(i)
	if i < 0 {
		sign, u = 1, uint64(-i)
	}
	b = append(b, tagSmallBig, 8, sign)
	return binary.LittleEndian.AppendUint64(b, u)
}

func putTuple(b []byte, arity int) []byte {
	if arity < 256 {
		return append(b, tagSmallTuple, byte(arity))
	}
	return binary.BigEndian.AppendUint32(append(b, tagLargeTuple), uint32(arity))
}

// putList writes a proper list of already encoded elements.
func putList(b []byte, elems ...[]byte) []byte {
	if len(elems) == 0 {
		return append(b, tagNil)
	}
	b = binary.BigEndian.AppendUint32(append(b, tagList), uint32(len(elems)))
	for _, e := range elems {
		b = append(b, e...)
	}
	return append(b, tagNil)
}

func putBinary(b []byte, data []byte) []byte {
	b = binary.BigEndian.AppendUint32(append(b, tagBinary), uint32(len(data)))
	return append(b, data...)
}

func putPid(b []byte, node string, id, serial, creation uint32) []byte {
	b = putAtom(append(b, tagNewPid), node)
	b = binary.BigEndian.AppendUint32(b, id)
	b = binary.BigEndian.AppendUint32(b, serial)
	return binary.BigEndian.AppendUint32(b, creation)
}

func putRef(b []byte, node string, creation uint32, words ...uint32) []byte {
	b = append(b, tagNewerRef, 0, byte(len(words)))
	b = putAtom(b, node)
	b = binary.BigEndian.AppendUint32(b, creation)
	for _, w := range words {
		b = binary.BigEndian.AppendUint32(b, w)
	}
	return b
}

// tuple encodes a tuple of already encoded elements.
func tuple(elems ...[]byte) []byte {
	b := putTuple(nil, len(elems))
	for _, e := range elems {
		b = append(b, e...)
	}
	return b
}

func atom(a string) []byte   { return putAtom(nil, a) }
func integer(i int64) []byte { return putInt(nil, i) }
