package core

import (
	"errors"
	"sort"
	"testing"
	"time"

	"github.com/cloister-go/cloister/listener"
)

// FuzzSteps drives the core with event sequences decoded from the fuzzer's
// bytes (three bytes per event: kind, node, argument) and checks after every
// step what must always hold: declared transitions only, chained from the
// state before the step; a sorted member list with self and no duplicates;
// ready only with consensus; no member but self before the start; no member
// that is neither connected nor within its grace, nor one away past its
// grace after a tick; a bounded peer table. Run it with
//
//	go test -run '^$' -fuzz '^FuzzSteps$' -fuzztime 60s ./internal/core
func FuzzSteps(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 1, 0, 4, 1, 1, 5, 0, 10})
	f.Add([]byte{0, 0, 0, 1, 2, 0, 4, 2, 0, 2, 2, 0, 5, 0, 30, 1, 2, 0, 4, 2, 0})
	f.Add([]byte{0, 0, 0, 6, 3, 0, 6, 3, 0, 4, 3, 1, 5, 0, 200, 5, 0, 200})
	f.Add([]byte{0, 0, 0, 1, 1, 0, 4, 1, 0, 9, 0, 0, 5, 0, 255, 5, 0, 255, 7, 0, 0})
	// Events before Start: a member admitted in state down, then away, then
	// the start (found by fuzzing: it was away past its grace after Start).
	f.Add([]byte("021920000000700"))
	// Members, one leaving (its answer says so), this node leaving, acks.
	f.Add([]byte{0, 0, 0, 1, 1, 0, 4, 1, 1, 1, 2, 0, 4, 2, 1, 252, 2, 0, 4, 2, 7, 240, 0, 0, 242, 1, 0, 5, 0, 10, 2, 2, 0, 243, 3, 0, 5, 0, 50})
	nodes := []string{"a", "b", "c", "d", "e", "x@h", "", "bad name"}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 3000 {
			return
		}
		cf := cfg("a", 2, "a", "b", "c")
		cf.FlapGrace = time.Second
		c := New(cf)
		now := t0
		state := c.State()
		leaveDone := false
		for i := 0; i+2 < len(data); i += 3 {
			kind, n, arg := data[i]%11, nodes[int(data[i+1])%len(nodes)], data[i+2]
			if data[i] >= 240 {
				kind = 11 + data[i]%4 // leave and join; lower bytes keep the seeds' meaning
			}
			now = now.Add(time.Duration(arg) * 20 * time.Millisecond)
			var ev Event
			switch kind {
			case 0:
				ev = Start{Now: now}
			case 1:
				ev = NodeUp{Now: now, Node: n}
			case 2:
				ev = NodeDown{Now: now, Node: n}
			case 3:
				var err error
				if arg%2 == 1 {
					err = errors.New("refused")
				}
				ev = DialDone{Now: now, Node: n, Err: err, Gone: err != nil && arg%4 == 3}
			case 4:
				app := "cloister"
				if arg%3 == 0 {
					app = "other"
				}
				ms := make([]string, 0, arg%8)
				for j := 0; j < int(arg%8); j++ {
					ms = append(ms, nodes[(int(arg)+j)%len(nodes)])
				}
				ev = ProbeReply{Now: now, Node: n, OTPApp: app, Members: ms, Leaves: arg%5 != 0, Leaving: arg%11 == 7}
			case 5:
				// With a link read of n (maybe in the future, maybe of self).
				ev = Tick{Now: now, LinkRead: map[string]time.Time{n: now.Add(time.Duration(int(arg%16)-8) * 100 * time.Millisecond)}}
			case 6:
				ev = ProbedBy{Now: now, Node: n}
			case 7:
				ev = Stop{Now: now}
			case 8:
				ev = Discovered{Now: now, Peers: []string{n, nodes[int(arg)%len(nodes)]}}
			case 9:
				conn := []string{}
				if arg%2 == 0 {
					conn = append(conn, n)
				}
				ev = Tick{Now: now, Connected: conn}
			case 11:
				ev = Leave{Now: now}
			case 12:
				ev = LeaveNotice{Now: now, Node: n}
			case 13:
				ev = LeaveAck{Now: now, Node: n}
			case 14:
				ev = Join{Now: now, Node: n}
			default:
				ev = Discovered{Now: now}
			}
			fx := c.Step(ev)
			for _, f := range fx {
				if _, ok := f.(LeaveDone); ok {
					if leaveDone {
						t.Fatalf("event %d: a second LeaveDone", i/3)
					}
					leaveDone = true
				}
				if sl, ok := f.(SendLeave); ok && !c.Leaving() {
					t.Fatalf("event %d: %v while not leaving", i/3, sl)
				}
			}
			if err := chain(state, fx); err != nil {
				t.Fatalf("event %d (%T): %v", i/3, ev, err)
			}
			state = c.State()
			ms := c.Members()
			// A leaving node hands all its keys over: it is not in its rings.
			if !sort.StringsAreSorted(ms) || contains(ms, "a") == c.Leaving() || hasDup(ms) {
				t.Fatalf("event %d: members %v", i/3, ms)
			}
			if state == listener.StateReady && len(ms) < cf.Consensus {
				t.Fatalf("event %d: ready with %d < %d", i/3, len(ms), cf.Consensus)
			}
			if state == listener.StateDown && (len(ms) != 1 || c.Leaving()) {
				t.Fatalf("event %d: members %v before the start", i/3, ms)
			}
			for _, m := range ms {
				if m == "a" {
					continue
				}
				p := c.peers[m]
				if p == nil || !p.member || (!p.connected && p.awaySince.IsZero()) {
					t.Fatalf("event %d: %s in the ring but not a connected member nor away", i/3, m)
				}
				if _, tick := ev.(Tick); tick && c.active() && !p.awaySince.IsZero() && now.Sub(p.awaySince) >= cf.FlapGrace {
					t.Fatalf("event %d: %s away past its grace after a tick", i/3, m)
				}
			}
			if len(c.peers) > len(nodes) {
				t.Fatalf("event %d: %d peers", i/3, len(c.peers))
			}
		}
	})
}
