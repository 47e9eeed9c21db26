package distfilter

import (
	"bytes"
	"testing"

	"github.com/ergo-services/ergo/etf"
)

// BenchmarkFilter8MiB measures the filter alone on an 8 MiB message each
// way over an in-memory socket: what it adds to a big transfer.
func BenchmarkFilter8MiB(b *testing.B) {
	payload := putBinary(nil, bytes.Repeat([]byte{7}, 8<<20))
	in := passThroughFrame(tuple(integer(opSend), atom(""), goPidT), payload)
	erlPid := etf.Pid{Node: erlNode, ID: 85, Creation: 1700000000}
	out := ergoFrame(&testing.T{}, etf.Tuple{opSend, etf.Atom(""), erlPid}, bytes.Repeat([]byte{7}, 8<<20))
	buf := make([]byte, 64*1024)
	b.SetBytes(int64(len(in) + len(out)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		fc, s := newTestConn(in, true, false)
		s.discard = true
		for {
			if _, err := fc.Read(buf); err != nil {
				break
			}
		}
		if _, err := fc.Write(out); err != nil {
			b.Fatal(err)
		}
		if s.n < 8<<20 {
			b.Fatalf("wrote %d bytes", s.n)
		}
	}
}
