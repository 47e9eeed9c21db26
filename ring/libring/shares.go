package libring

import "github.com/cloister-go/cloister/ring"

// The ring finds Shares by type assertion (see ring.Lookup).
var _ interface {
	ring.Lookup
	Shares() map[string]float64
} = (*hashRing)(nil)

// Shares is each member's share of phash2's hashRange key hashes: point i
// owns the hashes above the previous point up to and including itself, the
// first point also those above the last point (a key goes to the first
// point at or above its hash, wrapping).
func (l *hashRing) Shares() map[string]float64 {
	out := make(map[string]float64, len(l.members))
	if len(l.points) == 0 {
		return out
	}
	last := len(l.points) - 1
	for i, p := range l.points {
		var width uint64
		if i == 0 {
			width = uint64(p) + 1 + hashRange - 1 - uint64(l.points[last]) // [0, p] and (last, hashRange)
		} else {
			width = uint64(p) - uint64(l.points[i-1])
		}
		out[l.members[l.owners[i]]] += float64(width) / hashRange
	}
	return out
}
