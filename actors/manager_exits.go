package actors

import (
	"log"
	"strconv"
	"sync"
	"time"

	"github.com/ergo-services/ergo/etf"
	"github.com/ergo-services/ergo/gen"
)

// ownExits makes a process of cloister's deaf to exit signals from other
// processes. In Ergo any connected node can link to any pid (they are
// numbered in start order, so easy to guess) and then exit, and the
// linked process dies: with the cookie, a peer could kill the Monitor
// again and again until its supervisor gave up, which switched cloister
// off for good. So the process traps exits, and ownExits returns the
// channel its gen.Server loop reads exit requests from, which stays
// empty: the process's own exit request (Exit called on it — its
// supervisor stopping or restarting it) kills it, as for a process that
// does not trap (its Terminate runs with reason "kill"); every other
// signal, from a link on another node or a local one, is dropped. The
// process's life is tied to its supervisor's by context, not by links.
func ownExits(ps gen.ProcessState, in <-chan gen.ProcessGracefulExitRequest) <-chan gen.ProcessGracefulExitRequest {
	self := ps.Self()
	name := ps.Name()
	ctx := ps.Context()
	ps.SetTrapExit(true)
	go func() {
		for {
			select {
			case ex := <-in:
				if ex.From == self {
					// Not SetTrapExit(false) and a forwarded request:
					// Ergo reads the flag unlocked after queueing it.
					ps.Kill()
					return
				}
				exitsIgnored.note(name, ex)
			case <-ctx.Done():
				return
			}
		}
	}()
	return make(chan gen.ProcessGracefulExitRequest)
}

// exitLog rate-limits the line about ignored exit signals: a peer can send
// them as fast as it likes.
type exitLog struct {
	mu         sync.Mutex
	last       time.Time
	suppressed int
	total      uint64
	logf       func(string, ...interface{})
}

var exitsIgnored = &exitLog{logf: log.Printf}

// exitLogEvery is how often the ignored-exit line may be written.
const exitLogEvery = 10 * time.Second

func (l *exitLog) note(to string, ex gen.ProcessGracefulExitRequest) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total++
	now := time.Now()
	if !l.last.IsZero() && now.Sub(l.last) < exitLogEvery {
		l.suppressed++
		return
	}
	more := ""
	if l.suppressed > 0 {
		more = " (and " + strconv.Itoa(l.suppressed) + " more since the last such line)"
	}
	l.logf("cloister: ignored an exit signal (%s) from %s to %s: cloister's processes take exit signals only from their supervisor%s",
		ex.Reason, pidString(ex.From), nameOr(to), more)
	l.last, l.suppressed = now, 0
}

// Ignored returns how many exit signals cloister's processes have dropped
// in this OS process.
func (l *exitLog) Ignored() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

func pidString(p etf.Pid) string {
	return "<" + string(p.Node) + "." + strconv.FormatUint(p.ID, 10) + ">"
}

func nameOr(n string) string {
	if n == "" {
		return "an unnamed process"
	}
	return n
}
