package actors

import (
	"time"

	"github.com/cloister-go/cloister/internal/clusterstate"
	"github.com/ergo-services/ergo/etf"
)

// OTP supervisor calls. supervisor:which_children/1 and friends call with
// an infinite timeout, so a supervisor that never answers hangs the
// caller for ever; the Manager answers the read-only ones as an OTP
// supervisor does and refuses the ones that would change its tree
// ({error, refused}): cloister's processes are not for other nodes to
// stop or replace.

var (
	atomWorker     = etf.Atom("worker")
	atomSupervisor = etf.Atom("supervisor")
	atomRefused    = etf.Atom("refused")
	atomNotFound   = etf.Atom("not_found")
	atomUndefined  = etf.Atom("undefined")
)

// handleCall answers one mailbox message if it is a $gen_call; anything
// else is dropped (an OTP supervisor logs it).
func (s *supervisor) handleCall(m etf.Term) {
	t, ok := m.(etf.Tuple)
	if !ok || len(t) != 3 || t[0] != atomGenCall {
		return
	}
	from, ok := t[1].(etf.Tuple)
	if !ok || len(from) != 2 {
		return
	}
	pid, ok := from[0].(etf.Pid)
	if !ok {
		return
	}
	// The reply goes to the caller's pid tagged with its ref, or (OTP
	// 24+) to the alias the tag [alias | Ref] names.
	var to interface{} = pid
	tag := from[1]
	node := pid.Node
	switch v := tag.(type) {
	case etf.Ref:
	case etf.List: // Ergo decodes the improper list [alias | Ref] so
		ref, ok := aliasRef(v)
		if !ok {
			return
		}
		to, node = etf.Alias(ref), ref.Node
		tag = etf.ListImproper{etf.Atom("alias"), ref} // and it must go back improper
	case etf.ListImproper:
		ref, ok := aliasRef(etf.List(v))
		if !ok {
			return
		}
		to, node = etf.Alias(ref), ref.Node
	default:
		return
	}
	// Never dial from here: Ergo would do it on this goroutine.
	if s.connected != nil && !s.connected(string(node)) {
		return
	}
	_ = s.p.Send(to, etf.Tuple{tag, s.answer(t[2])})
}

func aliasRef(l etf.List) (etf.Ref, bool) {
	if len(l) != 2 || l[0] != etf.Atom("alias") {
		return etf.Ref{}, false
	}
	ref, ok := l[1].(etf.Ref)
	return ref, ok
}

// answer is the reply an OTP supervisor gives to req.
func (s *supervisor) answer(req etf.Term) etf.Term {
	switch r := req.(type) {
	case etf.Atom:
		switch r {
		case "which_children":
			return s.whichChildren()
		case "count_children":
			return s.countChildren()
		}
	case etf.Tuple:
		if len(r) == 2 {
			switch r[0] {
			case etf.Atom("get_childspec"):
				for i := range s.children {
					if idMatches(r[1], s.childID(i)) {
						return etf.Tuple{atomOK, s.childSpec(i)}
					}
				}
				return etf.Tuple{atomError, atomNotFound}
			case etf.Atom("start_child"), etf.Atom("terminate_child"),
				etf.Atom("restart_child"), etf.Atom("delete_child"):
				return etf.Tuple{atomError, atomRefused}
			}
		}
	}
	return etf.Tuple{atomError, atomUnknownCall}
}

func idMatches(t etf.Term, id string) bool {
	s, ok := clusterstate.TermText(t)
	return ok && s == id
}

func (s *supervisor) childType(i int) etf.Atom {
	if s.children[i].sup {
		return atomSupervisor
	}
	return atomWorker
}

// whichChildren is [{Id, Child, Type, Modules}], the child started last
// first, as OTP lists them; Child is the pid or undefined.
func (s *supervisor) whichChildren() etf.List {
	out := etf.List{}
	for i := len(s.children) - 1; i >= 0; i-- {
		var child etf.Term = atomUndefined
		if p := s.children[i].proc; p != nil {
			child = p.Self()
		}
		id := etf.Atom(s.childID(i))
		out = append(out, etf.Tuple{id, child, s.childType(i), etf.List{id}})
	}
	return out
}

// countChildren is [{specs, N}, {active, A}, {supervisors, S}, {workers, W}].
func (s *supervisor) countChildren() etf.List {
	active, sups := 0, 0
	for i, c := range s.children {
		if c.proc != nil && c.proc.IsAlive() {
			active++
		}
		if s.children[i].sup {
			sups++
		}
	}
	n := len(s.children)
	return etf.List{
		etf.Tuple{etf.Atom("specs"), n},
		etf.Tuple{etf.Atom("active"), active},
		etf.Tuple{etf.Atom("supervisors"), sups},
		etf.Tuple{etf.Atom("workers"), n - sups},
	}
}

// childSpec is the child's spec as supervisor:get_childspec/2 gives it.
// A Go child has no start function; start names the child's id.
func (s *supervisor) childSpec(i int) etf.Map {
	id := etf.Atom(s.childID(i))
	shutdown := etf.Term(int(childStopTimeout / time.Millisecond))
	if s.children[i].sup {
		shutdown = etf.Atom("infinity")
	}
	return etf.Map{
		etf.Atom("id"):          id,
		etf.Atom("start"):       etf.Tuple{id, etf.Atom("start_link"), etf.List{}},
		etf.Atom("restart"):     etf.Atom("permanent"),
		etf.Atom("significant"): false,
		etf.Atom("shutdown"):    shutdown,
		etf.Atom("type"):        s.childType(i),
		etf.Atom("modules"):     etf.List{id},
	}
}
