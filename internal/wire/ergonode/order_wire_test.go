package ergonode_test

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloister-go/cloister/internal/wire/ergonode"
	"github.com/ergo-services/ergo/etf"
	"github.com/ergo-services/ergo/gen"
	"github.com/ergo-services/ergo/node"
)

// Message order on a link with large messages. Ergo's link writer buffers
// packets up to 64000 bytes and writes a longer one straight to the
// socket, ahead of what it still buffers: messages overtake each other, or
// the large packet lands inside a buffered one and the link stalls.

// mixSize is the size of message i of a mixed run: a big one every fifth
// message, small ones between, so that small packets sit in the writer's
// buffer when a big one comes. The big ones are 100 KB, or 129.6 KB: with
// Ergo's default fragmentation unit (65000) both of its fragments are
// over the threshold.
func mixSize(i int) int {
	switch {
	case i%10 == 4:
		return 100_000
	case i%10 == 9:
		return 129_600
	}
	return 100 + i%7*150
}

// orderSink checks that the messages {Seq, Blob} it gets come in sequence
// and intact.
type orderSink struct{ gen.Server }

var ordered struct {
	sync.Mutex
	n, disorder, bad int
	last             int
}

func (s *orderSink) HandleInfo(p *gen.ServerProcess, m etf.Term) gen.ServerStatus {
	ordered.Lock()
	defer ordered.Unlock()
	t, ok := m.(etf.Tuple)
	if !ok || len(t) != 2 {
		ordered.bad++
		return gen.ServerStatusOK
	}
	i, _ := t[0].(int)
	if i64, ok := t[0].(int64); ok {
		i = int(i64)
	}
	b, _ := t[1].([]byte)
	if len(b) != mixSize(i) || string(b) != string(blob(i, len(b))) {
		ordered.bad++
	}
	if i != ordered.last+1 {
		ordered.disorder++
	}
	ordered.last = i
	ordered.n++
	return gen.ServerStatusOK
}

// orderCommand runs the child commands of the order test; false for any
// other command.
func orderCommand(n node.Node, f []string) bool {
	switch {
	case len(f) == 1 && f[0] == "ordsink":
		ordered.Lock()
		ordered.last = -1
		ordered.Unlock()
		_, err := n.Spawn("ordsink", gen.ProcessOptions{MailboxSize: ergonode.NetworkMailbox}, &orderSink{})
		fmt.Println("RESULT", err)
	case len(f) == 3 && f[0] == "sendmix":
		// sendmix Peer Count: messages 0..Count-1 to the peer's ordsink,
		// as fast as the sender goes.
		count, _ := strconv.Atoi(f[2])
		p := n.ProcessByName("ordsink")
		var err error
		for i := 0; i < count && err == nil; i++ {
			err = p.Send(gen.ProcessID{Name: "ordsink", Node: f[1]}, etf.Tuple{i, blob(i, mixSize(i))})
		}
		fmt.Println("RESULT", err)
	case len(f) == 1 && f[0] == "ordsunk":
		ordered.Lock()
		fmt.Println("RESULT", ordered.n, ordered.disorder, ordered.bad)
		ordered.Unlock()
	default:
		return false
	}
	return true
}

// mixRun sends count mixed messages from src to dst's ordsink and waits
// until all arrived or none arrived for 15 s: (arrived, out of sequence,
// damaged).
func mixRun(t *testing.T, src, dst *child, count int) (n, disorder, bad int) {
	t.Helper()
	if r := src.do(t, "sendmix "+dst.name+" "+strconv.Itoa(count)); r != "<nil>" {
		t.Fatalf("sendmix: %s", r)
	}
	last, since := -1, time.Now()
	for time.Since(since) < 15*time.Second {
		if _, err := fmt.Sscanf(dst.do(t, "ordsunk"), "%d %d %d", &n, &disorder, &bad); err != nil {
			t.Fatal(err)
		}
		if n == count {
			break
		}
		if n != last {
			last, since = n, time.Now()
		}
		time.Sleep(50 * time.Millisecond)
	}
	return n, disorder, bad
}

// Interleaved small and 100 KB messages between two Ergo node processes
// arrive all, in the order they were sent, in both directions of a link
// (the dialer's and the acceptor's), with and without the distribution
// filter (which changes what the dialer announces), and the link stays.
func TestLargeMessagesKeepOrder(t *testing.T) {
	const count = 1000
	for _, mode := range []struct {
		name string
		env  []string
	}{
		{"plain", nil},
		{"filter", []string{"ERGONODE_TEST_BEAM=1"}},
	} {
		for _, dir := range []string{"dialer-to-acceptor", "acceptor-to-dialer"} {
			t.Run(mode.name+"/"+dir, func(t *testing.T) {
				id := strings.ReplaceAll(mode.name+"_"+dir, "-", "_")
				dialer := startChild(t, "ord_d_"+id+"@127.0.0.1", "order", mode.env...)
				acceptor := startChild(t, "ord_a_"+id+"@127.0.0.1", "order", mode.env...)
				for _, c := range []*child{dialer, acceptor} {
					if r := c.do(t, "ordsink"); r != "<nil>" {
						t.Fatal(r)
					}
				}
				if ok, _, msg := dialer.connect(t, acceptor.name); !ok {
					t.Fatal(msg)
				}
				src, dst := dialer, acceptor
				if dir == "acceptor-to-dialer" {
					src, dst = acceptor, dialer
				}
				n, disorder, bad := mixRun(t, src, dst, count)
				links := dst.do(t, "nodes")
				if n != count || disorder != 0 || bad != 0 || links != src.name {
					t.Errorf("%d of %d messages arrived, %d out of sequence, %d damaged; %s's links: %q",
						n, count, disorder, bad, dst.name, links)
				}
			})
		}
	}
}
