package ergonode

import (
	"bytes"
	"fmt"
	"io"
	"log"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Ergo writes its warnings with the standard logger ("WARNING! ..."),
// one line per event, and a peer can trigger most of them at will: a line
// per failed handshake, per malformed packet, per message dropped on a full
// mailbox. captureErgoLog puts a filter in front of the standard logger's
// output that takes Ergo's lines out: those that repeat what cloister
// already says better (a failed handshake, which the gate logs with its
// cause) or that say nothing a user can act on are dropped; the others are
// rewritten as cloister lines and throttled per cause (LogEvery), with a
// count of what was held back. Every other line passes untouched.
//
// The filter is process-wide, like the standard logger: it is installed
// once, by the first node started, and writes to the output the standard
// logger had then. A program that later calls log.SetOutput replaces it
// and gets Ergo's lines unfiltered again.

var ergoLog struct {
	once sync.Once
	f    *ergoFilter
}

// captureErgoLog installs the filter (once, with the first node's
// window) and makes logf, when not nil, the destination of the lines it
// keeps.
func captureErgoLog(logf func(string, ...interface{}), window time.Duration) {
	ergoLog.once.Do(func() {
		f := &ergoFilter{next: log.Writer()}
		f.throttle = newThrottle(every(window), f.emit)
		ergoLog.f = f
		log.SetOutput(f)
	})
	if logf != nil {
		ergoLog.f.logf.Store(&logf)
	}
}

type ergoFilter struct {
	next     io.Writer
	logf     atomic.Pointer[func(string, ...interface{})]
	throttle *throttle
	// inWrite is set while Write holds the standard logger's lock: a line
	// emitted then must not go back through the standard logger.
	mu      sync.Mutex
	inWrite bool
	header  []byte
}

// ergoWarning is the prefix of Ergo's warnings; the standard logger's
// header (date, time, file) comes before it.
const ergoWarning = "WARNING! "

// Write implements io.Writer; the standard logger calls it once per line.
func (f *ergoFilter) Write(p []byte) (int, error) {
	i := bytes.Index(p, []byte(ergoWarning))
	// Only near the start: Ergo's prefix follows the logger's header.
	if i < 0 || i > 128 {
		return f.next.Write(p)
	}
	msg := strings.TrimRight(string(p[i+len(ergoWarning):]), "\n")
	key, line := ergoCause(msg)
	if key == "" {
		return len(p), nil
	}
	f.mu.Lock()
	f.inWrite, f.header = true, append(f.header[:0], p[:i]...)
	f.mu.Unlock()
	f.throttle.log("ergo\x00"+key, line)
	f.mu.Lock()
	f.inWrite = false
	f.mu.Unlock()
	return len(p), nil
}

// emit writes a kept line: to the node's Logf when one was given, else to
// the standard logger's output. Inside Write (the standard logger's lock
// is held) a Logf that uses the standard logger would deadlock, so the
// line is then written directly, or handed to Logf on another goroutine.
func (f *ergoFilter) emit(format string, args ...interface{}) {
	f.mu.Lock()
	inWrite, header := f.inWrite, string(f.header)
	f.mu.Unlock()
	lp := f.logf.Load()
	switch {
	case lp != nil && inWrite:
		go (*lp)(format, args...)
	case lp != nil:
		(*lp)(format, args...)
	case inWrite:
		_, _ = io.WriteString(f.next, header+fmt.Sprintf(format, args...)+"\n")
	default:
		log.Printf(format, args...)
	}
}

// ergoCause maps one of Ergo's warnings to a cause and the line cloister
// writes for it; an empty cause drops the line.
func ergoCause(msg string) (cause, line string) {
	has := func(s string) bool { return strings.Contains(msg, s) }
	switch {
	// The gate logs every failed handshake with its cause; the Monitor
	// logs failed dials.
	case has("Can't handshake with"), has("Handshake error"), has("Could not connect to"):
		return "", ""
	// A failed process start is returned to whoever started it (for
	// cloister itself: StartNode's error); Ergo's line is a dump of it.
	case has("initialization process failed"):
		return "", ""
	// Sent by every BEAM node's global name server on connect (its
	// handshake map has tuple keys); nothing to act on.
	case has("as a map key"):
		return "", ""
	case has("is full. dropped message"):
		return "mailbox", "cloister: ergo: a process mailbox is full, a message was dropped: " + clip(msg)
	case has("Malformed"), has("Mess at the link"), has("Disordered data"):
		return "malformed", "cloister: ergo: malformed distribution data, link closed: " + clip(msg)
	case has("link was closed"):
		return "closed", "cloister: ergo: a link was closed: " + clip(msg)
	case has("not responding"):
		return "silent", "cloister: ergo: " + clip(msg)
	}
	// Anything else, by its first words (the rest names pids and nodes).
	w := strings.Fields(msg)
	if len(w) > 3 {
		w = w[:3]
	}
	return "other\x00" + strings.Join(w, " "), "cloister: ergo: " + clip(msg)
}

// clip bounds a line from Ergo: some dump whole terms.
func clip(s string) string {
	const max = 300
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}
