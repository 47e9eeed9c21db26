package distfilter

import (
	"errors"
	"testing"

	"github.com/ergo-services/ergo/etf"
)

// TestDecodeResult reads every shape of erpc:execute_call's exit reason.
func TestDecodeResult(t *testing.T) {
	res := putRef(nil, goNodeU, 1, 7, 8, 9)
	other := putRef(nil, goNodeU, 1, 7, 8, 10)
	elixir := func(msg []byte) []byte {
		b := []byte{tagMap, 0, 0, 0, 3}
		b = append(b, atom("__struct__")...)
		b = append(b, atom("Elixir.RuntimeError")...)
		b = append(b, atom("__exception__")...)
		b = append(b, atom("true")...)
		b = append(b, atom("message")...)
		return append(b, msg...)
	}
	stack := putList(nil, tuple(atom("m"), atom("f"), integer(1), putList(nil)))
	cases := []struct {
		name    string
		reason  []byte
		value   etf.Term
		class   string
		text    string
		errIs   error
		message string
	}{
		{"return", tuple(res, atom("return"), putList(nil, integer(1))), etf.List{1}, "", "", nil, ""},
		{"return []", tuple(res, atom("return"), putList(nil)), etf.List{}, "", "", nil, ""},
		{"throw", tuple(res, atom("throw"), atom("x")), nil, "throw", "throw: x", nil, ""},
		{"exit", tuple(res, atom("exit"), tuple(atom("noproc"), putBinary(nil, []byte("why")))), nil, "exit", `exit: {noproc, <<"why">>}`, nil, ""},
		{"error", tuple(res, atom("error"), atom("badarg"), stack), nil, "error", "error: badarg", nil, ""},
		{"erpc arg error", tuple(res, atom("error"), tuple(atom("erpc"), atom("system_limit"))), nil, "error", "error: {erpc, system_limit}", nil, ""},
		{"elixir", tuple(res, atom("error"), elixir(putBinary(nil, []byte("boom"))), stack), nil, "error", "error: ** (RuntimeError) boom", nil, "boom"},
		{"killed", atom("killed"), nil, "exit", "exit: killed", nil, ""},
		{"noconnection", atom("noconnection"), nil, "", "", ErrConnectionLost, ""},
		{"another call's result", tuple(other, atom("return"), atom("x")), nil, "exit", "", nil, ""},
	}
	for _, c := range cases {
		v, err := decodeResult(res, c.reason)
		var x *Exception
		switch {
		case c.errIs != nil:
			if !errors.Is(err, c.errIs) {
				t.Errorf("%s: %v, want %v", c.name, err, c.errIs)
			}
		case c.class == "":
			if err != nil || !equalTerms(v, c.value) {
				t.Errorf("%s: %#v, %v; want %#v", c.name, v, err, c.value)
			}
		default:
			if !errors.As(err, &x) || x.Class != c.class || (c.text != "" && err.Error() != c.text) || x.Message != c.message {
				t.Errorf("%s: %#v (%v)", c.name, err, err)
			}
		}
	}
}

// TestIOAnswers: a sink group leader takes output and refuses input.
func TestIOAnswers(t *testing.T) {
	out := tuple(atom("put_chars"), atom("unicode"), putBinary(nil, []byte("hi")))
	in := tuple(atom("get_line"), atom("unicode"), putBinary(nil, []byte("> ")))
	if !isOutput(out) || isOutput(in) {
		t.Fatal("put_chars / get_line")
	}
	if !isOutput(tuple(atom("requests"), putList(nil, out, out))) || isOutput(tuple(atom("requests"), putList(nil, out, in))) {
		t.Fatal("requests")
	}
}
