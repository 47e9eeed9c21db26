package interop

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// A reader for the terms erltest's Eval returns (written with ~tw): atoms,
// integers, floats, lists, tuples, binaries, maps. Pids, references, ports
// and funs come back as Opaque text. Just enough to check answers
// structurally instead of comparing long strings.

// Atom is an Erlang atom.
type Atom string

// Tuple is an Erlang tuple.
type Tuple []any

// List is an Erlang proper list.
type List []any

// Binary is an Erlang binary.
type Binary string

// Map is an Erlang map; keys are printed terms (fmt %v of the parsed key).
type Map map[string]any

// Opaque is a pid, reference, port or fun, as printed.
type Opaque string

func parseTerm(s string) (any, error) {
	p := &termParser{s: s}
	v, err := p.term()
	if err != nil {
		return nil, fmt.Errorf("parse %.200q: %w", s, err)
	}
	p.ws()
	if p.i != len(p.s) {
		return nil, fmt.Errorf("parse %.200q: trailing text at %d", s, p.i)
	}
	return v, nil
}

func mustParse(t testing.TB, s string) any {
	t.Helper()
	v, err := parseTerm(s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

type termParser struct {
	s string
	i int
}

func (p *termParser) ws() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\n' || p.s[p.i] == '\t') {
		p.i++
	}
}

func (p *termParser) peek() byte {
	p.ws()
	if p.i < len(p.s) {
		return p.s[p.i]
	}
	return 0
}

func (p *termParser) expect(c byte) error {
	if p.peek() != c {
		return fmt.Errorf("want %q at %d", c, p.i)
	}
	p.i++
	return nil
}

func (p *termParser) term() (any, error) {
	c := p.peek()
	switch {
	case c == '{':
		p.i++
		items, err := p.seq('}')
		return Tuple(items), err
	case c == '[':
		p.i++
		items, err := p.seq(']')
		return List(items), err
	case c == '#' && strings.HasPrefix(p.s[p.i:], "#{"):
		p.i += 2
		m := Map{}
		if p.peek() == '}' {
			p.i++
			return m, nil
		}
		for {
			k, err := p.term()
			if err != nil {
				return nil, err
			}
			p.ws()
			if !strings.HasPrefix(p.s[p.i:], "=>") {
				return nil, fmt.Errorf("want => at %d", p.i)
			}
			p.i += 2
			v, err := p.term()
			if err != nil {
				return nil, err
			}
			m[fmt.Sprint(k)] = v
			switch p.peek() {
			case ',':
				p.i++
			case '}':
				p.i++
				return m, nil
			default:
				return nil, fmt.Errorf("want , or } at %d", p.i)
			}
		}
	case c == '<' && strings.HasPrefix(p.s[p.i:], "<<"):
		p.i += 2
		var b []byte
		if strings.HasPrefix(p.s[p.i:], ">>") {
			p.i += 2
			return Binary(""), nil
		}
		for {
			v, err := p.term()
			if err != nil {
				return nil, err
			}
			n, ok := v.(int64)
			if !ok || n < 0 || n > 255 {
				return nil, fmt.Errorf("binary byte %v at %d", v, p.i)
			}
			b = append(b, byte(n))
			p.ws()
			if strings.HasPrefix(p.s[p.i:], ">>") {
				p.i += 2
				return Binary(b), nil
			}
			if err := p.expect(','); err != nil {
				return nil, err
			}
		}
	case c == '<' || c == '#':
		// pid <0.1.0>, #Ref<...>, #Port<...>, #Fun<...>
		start := p.i
		for p.i < len(p.s) && p.s[p.i] != '>' {
			p.i++
		}
		p.i++
		return Opaque(p.s[start:p.i]), nil
	case c == '\'':
		p.i++
		var b strings.Builder
		for p.i < len(p.s) && p.s[p.i] != '\'' {
			if p.s[p.i] == '\\' && p.i+1 < len(p.s) {
				p.i++
			}
			b.WriteByte(p.s[p.i])
			p.i++
		}
		if err := p.expect('\''); err != nil {
			return nil, err
		}
		return Atom(b.String()), nil
	case c == '-' || (c >= '0' && c <= '9'):
		start := p.i
		p.i++
		for p.i < len(p.s) && strings.IndexByte("0123456789.e+-#", p.s[p.i]) >= 0 {
			p.i++
		}
		txt := p.s[start:p.i]
		if n, err := strconv.ParseInt(txt, 10, 64); err == nil {
			return n, nil
		}
		if f, err := strconv.ParseFloat(txt, 64); err == nil {
			return f, nil
		}
		return nil, fmt.Errorf("number %q", txt)
	case c >= 'a' && c <= 'z':
		start := p.i
		for p.i < len(p.s) && (isAtomChar(p.s[p.i])) {
			p.i++
		}
		return Atom(p.s[start:p.i]), nil
	}
	return nil, fmt.Errorf("unexpected %q at %d", c, p.i)
}

func isAtomChar(c byte) bool {
	return c == '_' || c == '@' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
}

func (p *termParser) seq(end byte) ([]any, error) {
	var items []any
	if p.peek() == end {
		p.i++
		return items, nil
	}
	for {
		v, err := p.term()
		if err != nil {
			return nil, err
		}
		items = append(items, v)
		switch p.peek() {
		case ',':
			p.i++
		case end:
			p.i++
			return items, nil
		default:
			return nil, fmt.Errorf("want , or %q at %d", end, p.i)
		}
	}
}

func TestTermParser(t *testing.T) {
	v := mustParse(t, `{ok,[1,-2,'a@127.0.0.1',b],<<104,105>>,#{fsm => <<>>,groups => [{ring,[]}]},<0.12.0>,1.5}`)
	tup := v.(Tuple)
	if tup[0] != Atom("ok") || tup[2] != Binary("hi") || tup[4] != Opaque("<0.12.0>") || tup[5] != 1.5 {
		t.Fatalf("%#v", v)
	}
	l := tup[1].(List)
	if l[1] != int64(-2) || l[2] != Atom("a@127.0.0.1") {
		t.Fatalf("%#v", l)
	}
	m := tup[3].(Map)
	if m["fsm"] != Binary("") {
		t.Fatalf("%#v", m)
	}
	if _, err := parseTerm("{a,"); err == nil {
		t.Fatal("no error for a truncated term")
	}
}
