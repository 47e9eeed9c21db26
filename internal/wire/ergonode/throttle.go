package ergonode

import (
	"fmt"
	"sync"
	"time"
)

// LogEvery is how often one cause of a log line a peer can trigger (a
// failed handshake, a full mailbox, a malformed packet) is written: the
// first occurrence at once, then at most one summary per LogEvery with the
// number of occurrences it stands for.
const LogEvery = 30 * time.Second

// maxCauses bounds the causes a throttle tracks; past it, new causes share
// one overflow cause, so a flood of distinct peers cannot grow it.
const maxCauses = 512

// throttle writes one line per cause per window and counts the rest. A
// window that suppressed lines ends with a summary line naming the count,
// written by a timer, so the count is never lost when the flood stops.
type throttle struct {
	every time.Duration
	logf  func(string, ...interface{})
	// after runs fn once d has passed (time.AfterFunc; tests replace it).
	after func(d time.Duration, fn func())

	mu     sync.Mutex
	causes map[string]*cause
}

type cause struct {
	since      time.Time // start of the current window
	suppressed int
	last       string // the latest suppressed line, for the summary
	timer      bool   // a summary is scheduled
}

func newThrottle(every time.Duration, logf func(string, ...interface{})) *throttle {
	return &throttle{every: every, logf: logf, causes: map[string]*cause{},
		after: func(d time.Duration, fn func()) { time.AfterFunc(d, fn) }}
}

// log writes line now if key has not been written in the current window;
// otherwise it counts it for the window's summary.
func (t *throttle) log(key, line string) {
	now := time.Now()
	t.mu.Lock()
	c := t.causes[key]
	if c == nil && len(t.causes) >= maxCauses {
		key = "\x00overflow"
		line = "cloister: more causes of log lines than tracked; latest: " + line
		c = t.causes[key]
	}
	if c == nil {
		t.causes[key] = &cause{since: now}
		t.mu.Unlock()
		t.logf("%s", line)
		return
	}
	c.suppressed++
	c.last = line
	if !c.timer {
		c.timer = true
		t.after(t.every-now.Sub(c.since), func() { t.flush(key) })
	}
	t.mu.Unlock()
}

// flush ends key's window: a summary of what it suppressed, and a new
// window if there was any (a steady flood gives one line per window), or
// the cause is forgotten.
func (t *throttle) flush(key string) {
	t.mu.Lock()
	c := t.causes[key]
	if c == nil {
		t.mu.Unlock()
		return
	}
	n, last, since := c.suppressed, c.last, c.since
	if n == 0 {
		delete(t.causes, key)
		t.mu.Unlock()
		return
	}
	now := time.Now()
	c.since, c.suppressed, c.last, c.timer = now, 0, "", true
	t.after(t.every, func() { t.flush(key) })
	t.mu.Unlock()
	t.logf("%s", fmt.Sprintf("%s [%d more like this in the last %s, not logged]", last, n, now.Sub(since).Round(time.Second)))
}
