package ring

var _ sharer = (*circle)(nil)

// Shares is each member's share of the 2^32 CRC-32 key hashes: point i owns
// the hashes from the previous point up to just below it, the first point
// also those from the last point to the top (a key goes to the first point
// strictly above its hash, wrapping).
func (c *circle) Shares() map[string]float64 {
	out := make(map[string]float64, len(c.members))
	if len(c.hashes) == 0 {
		return out
	}
	const space = 1 << 32
	// Summed per member index, then one map entry per member: a map
	// update per point (512 a member) made this the largest part of a
	// survivor's work for a member's removal (the listener's snapshot
	// carries the shares of the new ring).
	width := make([]uint64, len(c.members))
	last := len(c.hashes) - 1
	for i, h := range c.hashes {
		if i == 0 {
			width[c.owners[i]] += uint64(h) + space - uint64(c.hashes[last]) // wraps; all of it when one point
		} else {
			width[c.owners[i]] += uint64(h) - uint64(c.hashes[i-1])
		}
	}
	for m, w := range width {
		if w > 0 {
			out[c.members[m]] = float64(w) / space
		}
	}
	return out
}

// shares returns each member's share of the key-hash space
// (internal/ringx.Shares): nil for a ring without members or an engine that
// cannot tell. A member that owns no point is absent.
func (s *View) shares() map[string]float64 {
	if sh, ok := s.lookup.(sharer); ok {
		return sh.Shares()
	}
	return nil
}
