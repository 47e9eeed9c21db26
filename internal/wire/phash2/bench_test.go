package phash2

import (
	"testing"

	"github.com/ergo-services/ergo/etf"
)

var sink uint32

func BenchmarkBinary16(b *testing.B) {
	for b.Loop() {
		sink = Binary("user:1234567890a", 4294967295)
	}
}

func BenchmarkHashAtom(b *testing.B) {
	var k etf.Term = etf.Atom("otpapp@10.0.0.17")
	for b.Loop() {
		sink, _ = Hash(k, 4294967295)
	}
}

func BenchmarkHashTuple(b *testing.B) {
	var k etf.Term = etf.Tuple{etf.Atom("otpapp@10.0.0.17"), 77}
	for b.Loop() {
		sink, _ = Hash(k, 4294967295)
	}
}
