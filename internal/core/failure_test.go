package core

import (
	"errors"
	"fmt"
	"github.com/cloister-go/cloister/listener"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"
)

// sim plays the driver and the peers around one core: it ticks every 50 ms
// like the Monitor in package actors, answers
// the probes of the peers that are "up" and connected, and records every
// effect as a short line ("grace b", "removed b silent", ...).
type sim struct {
	t     *testing.T
	c     *Core
	now   time.Time
	up    map[string]bool // peers whose Monitor answers
	conn  map[string]bool // peers the "node" is connected to
	gone  map[string]bool // killed peers: a dial proves them gone
	lines []string        // every effect, as "at=1.250s grace b"
}

func newSim(t *testing.T, cf Config, members ...string) *sim {
	s := &sim{t: t, c: New(cf), now: t0, up: map[string]bool{}, conn: map[string]bool{}, gone: map[string]bool{}}
	s.feed(Start{Now: s.now})
	for _, m := range members {
		s.up[m], s.conn[m] = true, true
		s.feed(NodeUp{Now: s.now, Node: m})
	}
	s.lines = nil
	return s
}

func describe(f Effect) string {
	switch e := f.(type) {
	case Transition:
		return "transition " + string(e.From) + ">" + string(e.To)
	case Dial:
		return "dial " + e.Node
	case Probe:
		return "probe " + e.Node
	case Disconnect:
		return "disconnect " + e.Node
	case Publish:
		return "publish " + strings.Join(e.Members, ",")
	case Suspect:
		return "suspect " + e.Node
	case Grace:
		return "grace " + e.Node
	case Recovered:
		return "recovered " + e.Node
	case Removed:
		return "removed " + e.Node + " " + string(e.Reason)
	case Stalled:
		return "stalled"
	}
	return fmt.Sprintf("%T", f)
}

// feed runs one event and everything it causes at the same instant.
func (s *sim) feed(ev Event) {
	queue := []Event{ev}
	for i := 0; i < len(queue) && i < 10000; i++ {
		from := s.c.State()
		fx := s.c.Step(queue[i])
		if err := chain(from, fx); err != nil {
			s.t.Fatal(err)
		}
		for _, f := range fx {
			s.lines = append(s.lines, fmt.Sprintf("at=%s %s", s.now.Sub(t0), describe(f)))
			switch e := f.(type) {
			case Probe:
				if s.up[e.Node] && s.conn[e.Node] {
					queue = append(queue, ProbeReply{Now: s.now, Node: e.Node, OTPApp: "cloister"})
				}
			case Dial:
				if s.up[e.Node] {
					s.conn[e.Node] = true
					queue = append(queue, DialDone{Now: s.now, Node: e.Node})
				} else {
					queue = append(queue, DialDone{Now: s.now, Node: e.Node, Err: errors.New("refused"), Gone: s.gone[e.Node]})
				}
			case Disconnect:
				if s.conn[e.Node] {
					s.conn[e.Node] = false
					queue = append(queue, NodeDown{Now: s.now, Node: e.Node})
				}
			}
		}
	}
}

// until ticks every 50 ms up to t0+at.
func (s *sim) until(at time.Duration) {
	for end := t0.Add(at); s.now.Before(end); {
		s.now = s.now.Add(50 * time.Millisecond)
		s.feed(Tick{Now: s.now})
	}
}

// jump moves the clock without ticking (this node was frozen).
func (s *sim) jump(at time.Duration) { s.now = t0.Add(at) }

// has reports whether some effect line ends with what (after "at=... ").
func (s *sim) has(what string) bool {
	for _, l := range s.lines {
		if strings.SplitN(l, " ", 2)[1] == what {
			return true
		}
	}
	return false
}

// first is the time of the first line equal to what, or -1.
func (s *sim) first(what string) time.Duration {
	for _, l := range s.lines {
		parts := strings.SplitN(l, " ", 2)
		if parts[1] == what {
			d, _ := time.ParseDuration(strings.TrimPrefix(parts[0], "at="))
			return d
		}
	}
	return -1
}

func (s *sim) count(prefix string) int {
	n := 0
	for _, l := range s.lines {
		if strings.HasPrefix(strings.SplitN(l, " ", 2)[1], prefix) {
			n++
		}
	}
	return n
}

// graceCfg is the default configuration with a 1 s flap grace.
func graceCfg(grace time.Duration) Config {
	c := cfg("a", 2, "a", "b", "c")
	c.FlapGrace = grace
	return c
}

// The flap guard and the heartbeat, each as a script against the sim.
func TestFailureDetection(t *testing.T) {
	abc := []string{"a", "b", "c"}
	cases := []struct {
		name   string
		grace  time.Duration
		script func(s *sim)
		// members at the end; effects that must and must not have happened
		members []string
		want    []string
		never   []string
		check   func(t *testing.T, s *sim)
	}{
		{
			name:  "a flap within the grace leaves the rings alone",
			grace: time.Second,
			script: func(s *sim) {
				s.until(time.Second)
				s.conn["b"] = false
				s.feed(NodeDown{Now: s.now, Node: "b"}) // b's link drops, b itself is up: re-dialled at once
				s.until(3 * time.Second)
			},
			members: abc,
			want:    []string{"grace b", "dial b", "recovered b"},
			never:   []string{"removed b connection_lost", "removed b grace_expired", "transition ready>rehashing"},
		},
		{
			name:  "a member not back within the grace is removed when it ends",
			grace: time.Second,
			script: func(s *sim) {
				s.until(time.Second)
				s.up["b"], s.conn["b"] = false, false
				s.feed(NodeDown{Now: s.now, Node: "b"})
				s.until(4 * time.Second)
			},
			members: []string{"a", "c"},
			want:    []string{"grace b", "removed b grace_expired", "transition ready>rehashing", "transition rehashing>ready"},
			never:   []string{"recovered b", "disconnect b"},
			check: func(t *testing.T, s *sim) {
				down, gone := s.first("grace b"), s.first("removed b grace_expired")
				if gone-down < time.Second || gone-down > 1100*time.Millisecond {
					t.Fatalf("removed %s after the drop, want the 1s grace", gone-down)
				}
				if n := s.count("transition ready>rehashing"); n != 1 {
					t.Fatalf("%d rehashes, want 1", n)
				}
			},
		},
		{
			name:  "a killed member (re-dial proves it gone) leaves at once despite the grace",
			grace: time.Second,
			script: func(s *sim) {
				s.until(time.Second)
				s.up["b"], s.conn["b"], s.gone["b"] = false, false, true
				s.feed(NodeDown{Now: s.now, Node: "b"})
				s.until(3 * time.Second)
			},
			members: []string{"a", "c"},
			want:    []string{"grace b", "dial b", "removed b gone", "transition ready>rehashing"},
			never:   []string{"removed b grace_expired", "recovered b"},
			check: func(t *testing.T, s *sim) {
				if at := s.first("removed b gone"); at != time.Second {
					t.Fatalf("removed at %s, want at once (1s)", at)
				}
			},
		},
		{
			name:  "without a grace a lost member leaves at once",
			grace: 0,
			script: func(s *sim) {
				s.until(time.Second)
				s.up["b"], s.conn["b"] = false, false
				s.feed(NodeDown{Now: s.now, Node: "b"})
				s.until(2 * time.Second)
			},
			members: []string{"a", "c"},
			want:    []string{"removed b connection_lost"},
			never:   []string{"grace b"},
			check: func(t *testing.T, s *sim) {
				if at := s.first("removed b connection_lost"); at != time.Second {
					t.Fatalf("removed at %s", at)
				}
			},
		},
		{
			name:  "a restart within the grace (up, down, up) churns nothing",
			grace: time.Second,
			script: func(s *sim) {
				s.until(time.Second)
				s.up["b"], s.conn["b"] = false, false
				s.feed(NodeDown{Now: s.now, Node: "b"})
				s.until(1500 * time.Millisecond)
				s.up["b"] = true // back: the next dial connects and b answers
				s.until(5 * time.Second)
			},
			members: abc,
			want:    []string{"grace b", "recovered b"},
			never:   []string{"transition ready>rehashing", "removed b grace_expired"},
		},
		{
			name:  "dropping again inside the grace keeps the first deadline",
			grace: time.Second,
			script: func(s *sim) {
				s.until(time.Second)
				s.up["b"], s.conn["b"] = false, false
				s.feed(NodeDown{Now: s.now, Node: "b"})
				s.until(1300 * time.Millisecond)
				// Connected again, but the Monitor never answers, then lost again.
				s.conn["b"] = true
				s.feed(NodeUp{Now: s.now, Node: "b"})
				s.until(1600 * time.Millisecond)
				s.conn["b"] = false
				s.feed(NodeDown{Now: s.now, Node: "b"})
				s.until(4 * time.Second)
			},
			members: []string{"a", "c"},
			check: func(t *testing.T, s *sim) {
				if at := s.first("removed b grace_expired"); at < 2*time.Second || at > 2100*time.Millisecond {
					t.Fatalf("removed at %s, want 1s after the first drop (at 1s)", at)
				}
				if n := s.count("grace b"); n != 1 {
					t.Fatalf("%d graces, want 1", n)
				}
			},
		},
		{
			name:  "a silent member is suspected at 3s and removed at 5s, without a grace",
			grace: time.Second,
			script: func(s *sim) {
				s.until(time.Second)
				s.up["b"] = false // frozen: still connected, never answers
				s.until(9 * time.Second)
			},
			members: []string{"a", "c"},
			want:    []string{"suspect b", "disconnect b", "removed b silent"},
			never:   []string{"grace b"},
			check: func(t *testing.T, s *sim) {
				// The last answer was the probe of the tick at ≤ 1s.
				sus, rem := s.first("suspect b"), s.first("removed b silent")
				if sus < 3*time.Second || sus > 4*time.Second || rem < 5*time.Second || rem > 6*time.Second {
					t.Fatalf("suspected at %s, removed at %s", sus, rem)
				}
				if s.first("disconnect b") != rem {
					t.Fatal("removal must disconnect at once")
				}
			},
		},
		{
			name:  "a frozen node does not evict its peers when it thaws",
			grace: time.Second,
			script: func(s *sim) {
				s.until(time.Second)
				s.jump(20 * time.Second) // this node was SIGSTOPped for 19 s
				s.until(30 * time.Second)
			},
			members: abc,
			want:    []string{"stalled"},
			never:   []string{"removed b silent", "removed c silent", "suspect b", "disconnect b"},
		},
		{
			// Seen live: a node SIGSTOPped within 50 ms of its start had
			// never ticked, so its first tick found no clock to compare.
			name:  "a node frozen before its first tick does not evict its peers",
			grace: time.Second,
			script: func(s *sim) {
				s.jump(7 * time.Second)
				s.until(15 * time.Second)
			},
			members: abc,
			want:    []string{"stalled"},
			never:   []string{"removed b silent", "removed c silent", "suspect b", "disconnect b"},
		},
		{
			name:  "after a stall a peer that stays silent is still removed",
			grace: time.Second,
			script: func(s *sim) {
				s.until(time.Second)
				s.up["b"] = false
				s.jump(20 * time.Second)
				s.until(30 * time.Second)
			},
			members: []string{"a", "c"},
			want:    []string{"stalled", "removed b silent"},
			check: func(t *testing.T, s *sim) {
				if at := s.first("removed b silent"); at < 25*time.Second || at > 26*time.Second {
					t.Fatalf("removed at %s, want RemoveAfter after the thaw at 20s", at)
				}
			},
		},
		{
			name:  "a member answering for another OTPApp leaves at once",
			grace: time.Second,
			script: func(s *sim) {
				s.until(time.Second)
				s.feed(ProbeReply{Now: s.now, Node: "b", OTPApp: "billing"})
				s.up["b"] = false
				s.until(2 * time.Second)
			},
			members: []string{"a", "c"},
			want:    []string{"removed b foreign"},
			never:   []string{"grace b"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newSim(t, graceCfg(tc.grace), "b", "c")
			if !reflect.DeepEqual(s.c.Members(), abc) || s.c.State() != listener.StateReady {
				t.Fatalf("setup: %s %v", s.c.State(), s.c.Members())
			}
			tc.script(s)
			if tc.members != nil && !reflect.DeepEqual(s.c.Members(), tc.members) {
				t.Fatalf("members %v, want %v\n%s", s.c.Members(), tc.members, strings.Join(s.lines, "\n"))
			}
			for _, w := range tc.want {
				if !s.has(w) {
					t.Errorf("no %q", w)
				}
			}
			for _, w := range tc.never {
				if s.has(w) {
					t.Errorf("unexpected %q at %s", w, s.first(w))
				}
			}
			if tc.check != nil {
				tc.check(t, s)
			}
			if t.Failed() {
				t.Log(strings.Join(filterLines(s.lines), "\n"))
			}
		})
	}
}

func filterLines(ls []string) []string {
	var out []string
	for _, l := range ls {
		if !strings.Contains(l, " probe ") {
			out = append(out, l)
		}
	}
	return out
}

// Bad input from peers: each case feeds one kind of abuse and checks the
// bound that holds it.
func TestPeerInputIsBounded(t *testing.T) {
	cases := []struct {
		name  string
		feed  func(s *sim)
		check func(t *testing.T, s *sim)
	}{
		{
			name: "a peer calling state in a loop gets one probe back per Heartbeat/5",
			feed: func(s *sim) {
				for i := 0; i < 1000; i++ {
					s.now = s.now.Add(time.Millisecond)
					s.feed(ProbedBy{Now: s.now, Node: "x"})
					s.feed(Tick{Now: s.now})
				}
			},
			check: func(t *testing.T, s *sim) {
				// 1000 calls in 1 s, Heartbeat 500 ms: at most one per
				// 100 ms (x never answers).
				if n := s.count("probe x"); n < 5 || n > 10 {
					t.Fatalf("%d probes back in 1s, want one per 100 ms at most", n)
				}
			},
		},
		{
			name: "a member listing 100 000 nodes is capped and dialled a few at a time",
			feed: func(s *sim) {
				big := make([]string, 0, 100_000)
				for i := 0; i < 100_000; i++ {
					big = append(big, fmt.Sprintf("n%d@h", i))
				}
				s.feed(ProbeReply{Now: s.now, Node: "b", OTPApp: "cloister", Members: big})
			},
			check: func(t *testing.T, s *sim) {
				if n := s.count("dial "); n != MaxDialing {
					t.Fatalf("%d dials at once, want %d", n, MaxDialing)
				}
				if n := len(s.c.peers["b"].reported); n != MaxReported {
					t.Fatalf("kept %d reported names, want %d", n, MaxReported)
				}
				if len(s.c.peers) > MaxReported+10 {
					t.Fatalf("%d peers known", len(s.c.peers))
				}
			},
		},
		{
			name: "malformed names in a member list are never dialled",
			feed: func(s *sim) {
				bad := []string{"", "a b@h", "x@y@z", "ctl\x00@h", strings.Repeat("n", 300) + "@h", "ok@h", "ok@h", "a"}
				s.feed(ProbeReply{Now: s.now, Node: "b", OTPApp: "cloister", Members: bad})
			},
			check: func(t *testing.T, s *sim) {
				var dials []string
				for _, l := range s.lines {
					if p := strings.SplitN(l, " ", 2)[1]; strings.HasPrefix(p, "dial ") {
						dials = append(dials, strings.TrimPrefix(p, "dial "))
					}
				}
				if !reflect.DeepEqual(dials, []string{"ok@h"}) {
					t.Fatalf("dialled %q", dials)
				}
			},
		},
		{
			name: "names nobody reports any more are forgotten",
			feed: func(s *sim) {
				var names []string
				for i := 0; i < 500; i++ {
					names = append(names, fmt.Sprintf("gone%d@h", i))
				}
				s.feed(ProbeReply{Now: s.now, Node: "b", OTPApp: "cloister", Members: names})
				s.until(2 * time.Second) // the dials fail and back off
				s.feed(ProbeReply{Now: s.now, Node: "b", OTPApp: "cloister", Members: []string{"a", "b"}})
				s.until(30 * time.Second)
			},
			check: func(t *testing.T, s *sim) {
				var left []string
				for n := range s.c.peers {
					left = append(left, n)
				}
				sort.Strings(left)
				if !reflect.DeepEqual(left, []string{"b", "c"}) {
					t.Fatalf("peers still known: %d %v", len(left), left[:min(len(left), 5)])
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newSim(t, graceCfg(time.Second), "b", "c")
			tc.feed(s)
			tc.check(t, s)
		})
	}
}
