package phash2

import (
	"errors"
	"math"
	"math/big"
	"strings"
	"testing"

	"github.com/ergo-services/ergo/etf"
)

// These tests need no erl: they check properties that follow from how OTP
// sees terms. erl_test.go checks the values themselves.

func sum(t *testing.T, term etf.Term) uint32 {
	t.Helper()
	h, err := Sum32(term)
	if err != nil {
		t.Fatalf("Sum32(%#v): %v", term, err)
	}
	return h
}

func TestGoStringHashesAsBinaryNotCharlist(t *testing.T) {
	for _, s := range []string{"", "a", "key-42", "ünï"} {
		h := sum(t, s)
		if sum(t, []byte(s)) != h || sum(t, etf.String(s)) != h || Binary(s, 0) != Reduce(h, 0) {
			t.Errorf("%q: string, []byte, etf.String and Binary disagree", s)
		}
		if s != "" && sum(t, Charlist(s)) == h {
			t.Errorf("%q: the charlist hashes like the binary", s)
		}
	}
}

func TestCharlistIsAListOfCodePoints(t *testing.T) {
	cases := map[string]etf.List{
		"":    nil,
		"é":   {233},
		"abc": {97, 98, 99},
		"aΩb": {97, 937, 98},
	}
	for s, l := range cases {
		if sum(t, Charlist(s)) != sum(t, l) {
			t.Errorf("Charlist(%q) differs from %v", s, l)
		}
	}
}

func TestIntegerGoTypesAgree(t *testing.T) {
	for _, x := range []int64{0, 1, 127, 255, 256, -1, -128, 1<<27 - 1, 1 << 27, -(1 << 27), -(1 << 27) - 1, math.MaxInt32, math.MinInt64, math.MaxInt64} {
		want := sum(t, big.NewInt(x))
		forms := []etf.Term{x, int(x), *big.NewInt(x)}
		if x == int64(int32(x)) {
			forms = append(forms, int32(x))
		}
		if x == int64(int16(x)) {
			forms = append(forms, int16(x))
		}
		if x == int64(int8(x)) {
			forms = append(forms, int8(x))
		}
		if x >= 0 {
			forms = append(forms, uint64(x), uint(x), uintptr(x))
			if x <= math.MaxUint32 {
				forms = append(forms, uint32(x))
			}
			if x <= math.MaxUint16 {
				forms = append(forms, uint16(x))
			}
			if x <= math.MaxUint8 {
				forms = append(forms, uint8(x))
			}
		}
		for _, f := range forms {
			if got := sum(t, f); got != want {
				t.Errorf("%T(%v) = %d, *big.Int = %d", f, f, got, want)
			}
		}
	}
	u := uint64(math.MaxUint64)
	if sum(t, u) != sum(t, new(big.Int).SetUint64(u)) {
		t.Error("uint64 max differs from the same *big.Int")
	}
}

func TestBoolsAreAtoms(t *testing.T) {
	if sum(t, true) != sum(t, etf.Atom("true")) || sum(t, false) != sum(t, etf.Atom("false")) {
		t.Error("bool and atom differ")
	}
}

func TestNegativeZeroHashesAsZero(t *testing.T) {
	if sum(t, math.Copysign(0, -1)) != sum(t, 0.0) {
		t.Error("-0.0 and 0.0 differ")
	}
	if sum(t, float32(2.5)) != sum(t, 2.5) {
		t.Error("float32 and float64 differ")
	}
}

func TestListTailsAreFollowed(t *testing.T) {
	a, b := etf.Atom("a"), etf.Atom("b")
	same := [][2]etf.Term{
		{etf.ListImproper{1, 2, etf.List{3, 4}}, etf.List{1, 2, 3, 4}},
		{etf.ListImproper{1, etf.Charlist("bc")}, etf.List{1, 98, 99}},
		{etf.ListImproper{a, etf.List{}}, etf.List{a}},
		{etf.ListImproper{a, nil}, etf.List{a}},
		{etf.ListImproper{a, etf.ListImproper{b, etf.List{}}}, etf.List{a, b}},
		{etf.ListImproper{b}, b},
		{etf.ListImproper{}, nil},
		{etf.List{}, nil},
		{[]etf.Term{a, 1}, etf.List{a, 1}},
		{[]any{a, 1}, etf.List{a, 1}},
	}
	for _, p := range same {
		if sum(t, p[0]) != sum(t, p[1]) {
			t.Errorf("%#v and %#v differ", p[0], p[1])
		}
	}
	if sum(t, etf.ListImproper{1, 2}) == sum(t, etf.List{1, 2}) {
		t.Error("[1|2] hashes like [1,2]")
	}
}

func TestMapHashIgnoresOrderAndGoMapType(t *testing.T) {
	m := etf.Map{}
	for i := range 100 { // beyond 32 keys, as OTP's HAMT maps
		m[i] = etf.Tuple{etf.Atom("v"), i}
	}
	want := sum(t, m)
	for range 20 { // Go randomises map iteration order on every range
		if sum(t, m) != want {
			t.Fatal("the hash of one map changed between runs")
		}
	}
	mm := map[any]any{}
	mt := map[etf.Term]etf.Term{}
	for k, v := range m {
		mm[k], mt[k] = v, v
	}
	if sum(t, mm) != want || sum(t, mt) != want {
		t.Error("map[any]any / map[etf.Term]etf.Term differ from etf.Map")
	}
	delete(m, 7)
	if sum(t, m) == want {
		t.Error("removing a key did not change the hash")
	}
}

func TestUnsupportedValuesAreRefusedByType(t *testing.T) {
	type point struct{ X int }
	var nilBig *big.Int
	cases := map[string]etf.Term{
		"phash2.point":   point{1},
		"chan int":       make(chan int),
		"func()":         func() {},
		"[]string":       []string{"a"},
		"map[string]int": map[string]int{"a": 1},
		"etf.Port":       etf.Port{},
		"float64":        math.NaN(),
		"*big.Int":       nilBig,
	}
	for typ, v := range cases {
		_, err := Hash(v, 0)
		var te *TypeError
		if !errors.Is(err, ErrUnsupported) || !errors.As(err, &te) || te.Type != typ || !strings.Contains(err.Error(), typ) {
			t.Errorf("%s: got %v", typ, err)
		}
	}
	if _, err := Sum32(etf.Tuple{1, etf.List{math.Inf(1)}}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("nested +Inf: got %v", err)
	}
}

func TestCyclicValuesAreRefused(t *testing.T) {
	l := etf.List{nil}
	l[0] = l
	tail := etf.ListImproper{1, nil}
	tail[1] = tail
	tup := etf.Tuple{nil}
	tup[0] = tup
	for _, v := range []etf.Term{l, tail, tup} {
		if _, err := Sum32(v); !errors.Is(err, ErrTooDeep) {
			t.Errorf("%T: got %v", v, err)
		}
	}
}

func TestReduceIsPhash2Range(t *testing.T) {
	h := sum(t, etf.Tuple{etf.Atom("k"), 1})
	if r, _ := Hash(etf.Tuple{etf.Atom("k"), 1}, 0); r != h&(DefaultRange-1) || r >= DefaultRange {
		t.Errorf("range 0: %d", r)
	}
	for _, rng := range []uint32{1, 2, 7, 1 << 27, 4294967295} {
		if r, _ := Hash(etf.Tuple{etf.Atom("k"), 1}, rng); r != h%rng || r >= rng {
			t.Errorf("range %d: %d", rng, r)
		}
	}
}

func TestKeysHashWithoutAllocating(t *testing.T) {
	keys := []etf.Term{etf.Atom("node@127.0.0.1"), "user:42", []byte("user:42"), etf.String("x"), 42, int64(1) << 40, uint64(7), true}
	for _, k := range keys {
		if n := testing.AllocsPerRun(100, func() { _, _ = Hash(k, 4294967295) }); n != 0 {
			t.Errorf("Hash(%T) allocates %.0f times", k, n)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _ = Binary("user:42", 4294967295) }); n != 0 {
		t.Errorf("Binary allocates %.0f times", n)
	}
}
