package libring

import (
	"github.com/cloister-go/cloister/internal/wire/phash2"
	"github.com/cloister-go/cloister/ring"
)

// The ring finds these methods by type assertion (see ring.Lookup).
var _ interface {
	ring.Lookup
	KeyHash(key string) uint32
	Ranges(member string) []ring.HashRange
} = (*hashRing)(nil)

// KeyHash is phash2 of key taken as an Erlang binary, in hashRange: the key
// is owned by the first point at or above it.
func (l *hashRing) KeyHash(key string) uint32 { return phash2.Binary(key, hashRange) }

// Ranges: point i owns the hashes above the previous point up to and
// including itself; the first point also owns those above the last point.
// The ranges come in point order, unmerged: the ring merges them.
func (l *hashRing) Ranges(member string) []ring.HashRange {
	m := int32(-1)
	for i, name := range l.members {
		if name == member {
			m = int32(i)
			break
		}
	}
	if m < 0 || len(l.points) == 0 {
		return nil
	}
	var rs []ring.HashRange
	last := len(l.points) - 1
	for i, p := range l.points {
		if l.owners[i] != m {
			continue
		}
		if i == 0 {
			if top := l.points[last]; top != ^uint32(0) {
				rs = append(rs, ring.HashRange{From: top + 1, To: ^uint32(0)})
			}
			rs = append(rs, ring.HashRange{From: 0, To: p})
			continue
		}
		rs = append(rs, ring.HashRange{From: l.points[i-1] + 1, To: p})
	}
	return rs
}
