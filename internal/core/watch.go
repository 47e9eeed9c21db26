package core

import "time"

// The neighbour watch. Keeping every member alive on every link costs each
// node N-1 keepalive writes and reads per keepalive period. In a steady
// cluster (every member answers pings, tells our members hash and watches
// with our k, nobody suspected) each member instead keeps alive and judges
// only its neighbours: the k members on each side of it in the sorted
// member list, taken as a circle. The lists agree, so the relation is
// symmetric: whoever this node judges writes to it, and whoever judges this
// node is written to. Each member is watched by 2k others.
//
// A neighbour silent for SuspectAfter is suspected as before, and the
// suspicion is sent to every member (SendSuspect) with when it was last
// heard. Any suspicion, here or received, ends the narrow watch for
// RemoveAfter: every member is then kept alive and judged (and pinged when
// its link is silent), as with WatchNeighbours = 0. Members this node did
// not judge get a fresh window, counted from the newest sign of life of a
// neighbour not suspected (now, unless every neighbour went silent: then
// this node is the one cut off and removes everyone about when it removes
// its neighbours); the reported member is judged from the time reported,
// so every node removes a frozen member about when its neighbours do.
// A change of the member list ends the narrow watch too, until the lists
// agree again: the neighbour sets move with it.
//
// What is found later than with a full watch: a link between two
// non-neighbours that stops carrying anything while both ends still hear
// their neighbours is not noticed at all in a steady cluster (the two keep
// each other); and members of the far side of a partition that none of
// this node's side watched are removed a SuspectAfter later (their window
// starts when this node's side first suspects someone).

// neighbours marks the k neighbours of this node in the member list.
func (c *Core) neighbours() {
	k := c.cfg.WatchNeighbours
	for _, p := range c.peers {
		p.neighbour = false
	}
	n := len(c.members)
	if k <= 0 || n-1 <= 2*k {
		for _, m := range c.members {
			if p := c.peers[m]; p != nil {
				p.neighbour = true
			}
		}
		return
	}
	self := -1
	for i, m := range c.members {
		if m == c.cfg.Self {
			self = i
			break
		}
	}
	if self < 0 {
		return // leaving: not in its own list, watches everyone
	}
	for d := 1; d <= k; d++ {
		for _, i := range []int{(self + d) % n, (self - d + n) % n} {
			if p := c.peers[c.members[i]]; p != nil {
				p.neighbour = true
			}
		}
	}
}

// judged reports whether a member's silence counts (and it is pinged when
// its link is silent): every member's outside the narrow watch.
func (c *Core) judged(p *peer) bool { return !c.narrow || p.neighbour }

// narrowOK reports whether the narrow watch may run now (see above).
func (c *Core) narrowOK(now time.Time) bool {
	k := c.cfg.WatchNeighbours
	if k <= 0 || len(c.members)-1 <= 2*k || now.Before(c.fullUntil) || c.leaving || !c.active() {
		return false
	}
	for _, p := range c.peers {
		if !p.member {
			continue
		}
		if !p.steady() || p.hash != c.hash || p.suspect || p.watch != k {
			return false
		}
	}
	return true
}

// updateWatch enters or leaves the narrow watch. Leaving it, the members
// this node did not judge get a fresh window (see above): those outside
// the narrow watch, and a member that became a neighbour since (a removal
// moves the neighbour sets before the next tick widens the watch).
func (c *Core) updateWatch(now time.Time) {
	want := c.narrowOK(now)
	if c.narrow && !want {
		anchor := c.anchor(now)
		for _, p := range c.peers {
			if p.member && !p.watched && p.lastSeen.Before(anchor) {
				p.lastSeen = anchor
				p.suspect = false
			}
		}
	}
	c.narrow = want
	for _, p := range c.peers {
		p.watched = p.member && c.judged(p)
	}
}

// anchor is the newest sign of life of a member judged so far and not
// suspected (of any of them when all are), no later than now; now when
// there is none.
func (c *Core) anchor(now time.Time) time.Time {
	var fresh, any time.Time
	for _, p := range c.peers {
		if !p.member || !p.watched {
			continue
		}
		if p.lastSeen.After(any) {
			any = p.lastSeen
		}
		if !p.suspect && p.lastSeen.After(fresh) {
			fresh = p.lastSeen
		}
	}
	if fresh.IsZero() {
		fresh = any
	}
	if fresh.IsZero() || fresh.After(now) {
		return now
	}
	return fresh
}

// suspected: this node just suspected member n. With the neighbour watch
// on, every member hears of a neighbour's suspicion, and this node watches
// everyone for RemoveAfter.
func (c *Core) suspected(fx []Effect, n string, p *peer, now time.Time) []Effect {
	if c.cfg.WatchNeighbours <= 0 {
		return fx
	}
	c.fullUntil = later(c.fullUntil, now.Add(c.cfg.RemoveAfter))
	if !p.neighbour {
		return fx // its own neighbours tell
	}
	var to []string
	for _, m := range c.members {
		if q := c.peers[m]; m != n && q != nil && q.connected && q.watch > 0 {
			to = append(to, m)
		}
	}
	if len(to) == 0 {
		return fx
	}
	silent := max(now.Sub(p.lastSeen), 0)
	return append(fx, SendSuspect{Node: n, LastSeen: p.lastSeen, Silent: silent, To: to})
}

// suspectNotice: a member suspects e.Node. This node watches everyone for
// RemoveAfter; e.Node, unless it is a neighbour (judged here on its own
// link), is judged from what this node heard of it or from e.LastSeen,
// whichever is later (no fresh window).
func (c *Core) suspectNotice(fx []Effect, e SuspectNotice) []Effect {
	if c.cfg.WatchNeighbours <= 0 || !c.active() {
		return fx
	}
	if from := c.peers[e.From]; from == nil || !from.member || e.From == c.cfg.Self {
		return fx // only a member's notice counts
	}
	c.fullUntil = later(c.fullUntil, e.Now.Add(c.cfg.RemoveAfter))
	c.updateWatch(e.Now)
	p := c.peers[e.Node]
	if e.Node == c.cfg.Self || p == nil || !p.member || !p.connected {
		return fx
	}
	at := e.LastSeen
	if at.After(e.Now) {
		at = e.Now
	}
	// Judged from what was heard, here or there: not from a fresh
	// window (only a window is dropped; a neighbour's own reads stay).
	p.heard = later(p.heard, at)
	p.lastSeen = p.heard
	return fx
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// KeepaliveTo lists the members whose links need keepalives now: nil for
// every link (no narrow watch), else this node's neighbours, sorted.
func (c *Core) KeepaliveTo() []string {
	if !c.narrow {
		return nil
	}
	out := make([]string, 0, 2*c.cfg.WatchNeighbours)
	for _, m := range c.members {
		if p := c.peers[m]; p != nil && p.neighbour {
			out = append(out, m)
		}
	}
	return out
}

// Narrow reports whether the neighbour watch is narrowed to the
// neighbours (see KeepaliveTo).
func (c *Core) Narrow() bool { return c.narrow }
