package actors

import (
	"reflect"
	"testing"

	"github.com/ergo-services/ergo/etf"
)

func TestMultiCallFrom(t *testing.T) {
	pid := etf.Pid{Node: "erl@127.0.0.1", ID: 7}
	ref := etf.Ref{Node: "erl@127.0.0.1", ID: [5]uint32{1, 2, 3, 4, 5}}
	mon := etf.Ref{Node: "erl@127.0.0.1", ID: [5]uint32{6, 7, 8, 9, 10}}

	// OTP 25: {Pid, {Ref, Node}}, reply to Pid with the tuple tag.
	to, tag, caller, ok := multiCallFrom(etf.Tuple{pid, etf.Tuple{ref, etf.Atom("go@127.0.0.1")}})
	if !ok || to != pid || caller != pid || !reflect.DeepEqual(tag, etf.Tuple{ref, etf.Atom("go@127.0.0.1")}) {
		t.Fatalf("OTP 25 form: %v %v %v %v", to, tag, caller, ok)
	}

	// OTP 27+: {Pid, [[alias | Alias] | Mon]} as Ergo decodes it (plain
	// lists); reply to the alias with the improper-list tag.
	to, tag, caller, ok = multiCallFrom(etf.Tuple{pid, etf.List{etf.List{etf.Atom("alias"), ref}, mon}})
	want := etf.ListImproper{etf.ListImproper{etf.Atom("alias"), ref}, mon}
	if !ok || to != etf.Alias(ref) || caller != pid || !reflect.DeepEqual(tag, want) {
		t.Fatalf("OTP 27 form: %v %#v %v %v", to, tag, caller, ok)
	}

	for _, bad := range []etf.Term{
		nil, etf.Tuple{}, etf.Tuple{pid}, etf.Tuple{1, etf.Tuple{ref, 1}},
		etf.Tuple{pid, etf.Tuple{1, 2}}, etf.Tuple{pid, ref},
		etf.Tuple{pid, etf.List{etf.Atom("alias"), ref}},
		etf.Tuple{pid, etf.List{etf.List{etf.Atom("other"), ref}, mon}},
		etf.Tuple{pid, etf.List{etf.List{etf.Atom("alias"), 1}, mon}},
		etf.Tuple{pid, etf.List{etf.List{etf.Atom("alias"), ref}, 1}},
	} {
		if _, _, _, ok := multiCallFrom(bad); ok {
			t.Errorf("%#v accepted", bad)
		}
	}
}
