package actors

import "github.com/ergo-services/ergo/etf"

// multiCallFrom reads the From of a '$gen_call' sent by Erlang's
// gen_server:multi_call, which Ergo's gen.Server does not take for a call
// (it lands in HandleInfo), and returns where the reply goes (a pid or an
// alias), the tag the reply must carry, and the caller's pid. Two forms
// exist, both verified live (tests/interop):
//
//   - OTP 25 and older: {Pid, {Ref, Node}} from a middleman process; the
//     reply is {{Ref, Node}, Reply} sent to Pid.
//   - OTP 27 and 29: {Pid, [[alias | Alias] | Mon]} with no middleman; the
//     reply is {[[alias | Alias] | Mon], Reply} sent to the alias (the
//     caller waits for exactly that tag). Ergo decodes the improper lists
//     as plain lists, so the tag is rebuilt improper for the reply.
func multiCallFrom(from etf.Term) (to interface{}, tag etf.Term, caller etf.Pid, ok bool) {
	t, isTuple := from.(etf.Tuple)
	if !isTuple || len(t) != 2 {
		return nil, nil, etf.Pid{}, false
	}
	pid, isPid := t[0].(etf.Pid)
	if !isPid {
		return nil, nil, etf.Pid{}, false
	}
	switch v := t[1].(type) {
	case etf.Tuple: // {Ref, Node}
		if len(v) != 2 {
			return nil, nil, etf.Pid{}, false
		}
		if _, isRef := v[0].(etf.Ref); !isRef {
			return nil, nil, etf.Pid{}, false
		}
		return pid, v, pid, true
	case etf.List, etf.ListImproper: // [[alias | Alias] | Mon]
		outer := asList(v)
		if len(outer) != 2 {
			return nil, nil, etf.Pid{}, false
		}
		mon, isRef := outer[1].(etf.Ref)
		inner := asList(outer[0])
		if !isRef || len(inner) != 2 || inner[0] != etf.Atom("alias") {
			return nil, nil, etf.Pid{}, false
		}
		alias, isRef := inner[1].(etf.Ref)
		if !isRef {
			return nil, nil, etf.Pid{}, false
		}
		return etf.Alias(alias), etf.ListImproper{etf.ListImproper{etf.Atom("alias"), alias}, mon}, pid, true
	}
	return nil, nil, etf.Pid{}, false
}

func asList(t etf.Term) []etf.Term {
	switch v := t.(type) {
	case etf.List:
		return v
	case etf.ListImproper:
		return v
	}
	return nil
}
