package ergonode_test

import (
	"fmt"
	"math/rand"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cloister-go/cloister/internal/testenv"
	"github.com/cloister-go/cloister/internal/wire/ergonode"
	"github.com/ergo-services/ergo/etf"
	"github.com/ergo-services/ergo/gen"
	"github.com/ergo-services/ergo/node"
)

// sinkServer counts the blobs it gets and checks each is intact.
type sinkServer struct{ gen.Server }

var sunk struct {
	sync.Mutex
	n, bad int
}

// blob is message i of a run: size bytes derived from i.
func blob(i, size int) []byte {
	b := make([]byte, size)
	for j := range b {
		b[j] = byte(i*7 + j)
	}
	return b
}

func (s *sinkServer) HandleInfo(p *gen.ServerProcess, m etf.Term) gen.ServerStatus {
	t, ok := m.(etf.Tuple)
	sunk.Lock()
	defer sunk.Unlock()
	if !ok || len(t) != 2 {
		sunk.bad++
		return gen.ServerStatusOK
	}
	i, _ := t[0].(int)
	if i64, ok := t[0].(int64); ok {
		i = int(i64)
	}
	b, _ := t[1].([]byte)
	if string(b) != string(blob(i, len(b))) {
		sunk.bad++
	}
	sunk.n++
	return gen.ServerStatusOK
}

// keepaliveStop stops the child's keepalive loop (liveCommand).
var keepaliveStop chan struct{}

// liveCommand runs the child commands of the liveness test; false for any
// other command.
func liveCommand(n node.Node, f []string) bool {
	switch {
	case len(f) == 2 && f[0] == "keepalive":
		// keepalive Idle: as a Monitor does, ask every Idle/2.
		d, _ := time.ParseDuration(f[1])
		if keepaliveStop != nil {
			close(keepaliveStop)
			keepaliveStop = nil
		}
		if d > 0 {
			stop := make(chan struct{})
			keepaliveStop = stop
			go func() {
				t := time.NewTicker(d / 2)
				defer t.Stop()
				for {
					select {
					case <-stop:
						return
					case <-t.C:
						ergonode.LinksOf(n).Keepalive(d, nil)
					}
				}
			}()
		}
		fmt.Println("RESULT ok")
	case len(f) == 2 && f[0] == "readage":
		reads := map[string]time.Time{}
		ergonode.LinksOf(n).ReadTimes(reads)
		at, ok := reads[f[1]]
		if !ok {
			fmt.Println("RESULT -1")
		} else {
			fmt.Println("RESULT", time.Since(at).Milliseconds())
		}
	case len(f) == 1 && f[0] == "sink":
		_, err := n.Spawn("sink", gen.ProcessOptions{MailboxSize: ergonode.NetworkMailbox}, &sinkServer{})
		fmt.Println("RESULT", err)
	case len(f) == 3 && f[0] == "send":
		// send Peer Count: blobs of random sizes up to 60 KB (Ergo's
		// writer buffers 4 KB, so most cross in pieces), with pauses that
		// let keepalives in between. Larger ones: order_wire_test.go.
		count, _ := strconv.Atoi(f[2])
		p := n.ProcessByName("sink")
		rng := rand.New(rand.NewSource(1))
		var err error
		for i := 0; i < count && err == nil; i++ {
			size := rng.Intn(60000)
			if rng.Intn(2) == 0 {
				size = rng.Intn(5000)
			}
			err = p.Send(gen.ProcessID{Name: "sink", Node: f[1]}, etf.Tuple{i, blob(i, size)})
			if rng.Intn(4) == 0 {
				time.Sleep(time.Duration(rng.Intn(3000)) * time.Microsecond)
			}
		}
		fmt.Println("RESULT", err)
	case len(f) == 1 && f[0] == "sunk":
		sunk.Lock()
		fmt.Println("RESULT", sunk.n, sunk.bad)
		sunk.Unlock()
	default:
		return false
	}
	return true
}

// readAge is how long ago c's link to peer last read a byte; -1: never.
func (c *child) readAge(t *testing.T, peer string) time.Duration {
	t.Helper()
	ms, err := strconv.Atoi(c.do(t, "readage "+peer))
	if err != nil {
		t.Fatalf("%s: readage %s: %v", c.name, peer, err)
	}
	if ms < 0 {
		return -1
	}
	return time.Duration(ms) * time.Millisecond
}

// Over a real Ergo link between two node processes: a node whose Monitor
// asks for keepalives makes its idle link read on the other side within
// the period; a node that does not leaves it silent; packets of every
// size cross with the ticks between them and arrive intact, and the link
// stays; and a frozen (SIGSTOPped) node's link falls silent.
func TestKeepaliveOverARealLink(t *testing.T) {
	a := startChild(t, "live_a@127.0.0.1", "live")
	b := startChild(t, "live_b@127.0.0.1", "live")
	if r := b.do(t, "keepalive 50ms"); r != "ok" {
		t.Fatal(r)
	}
	if r := a.do(t, "sink"); r != "<nil>" {
		t.Fatal(r)
	}
	if r := b.do(t, "sink"); r != "<nil>" {
		t.Fatal(r)
	}
	if ok, _, msg := a.connect(t, b.name); !ok {
		t.Fatal(msg)
	}
	time.Sleep(time.Second)
	// b writes ticks: a reads within the period (plus scheduling).
	if age := a.readAge(t, b.name); age < 0 || age > 500*time.Millisecond {
		t.Errorf("a last read from b (keepalive 50ms) %s ago", age)
	}
	// a asks for none: b has read nothing since the handshake.
	if age := b.readAge(t, a.name); age >= 0 && age < 700*time.Millisecond {
		t.Errorf("b last read from a (no keepalive) %s ago, want silence", age)
	}

	b.do(t, "keepalive 2ms")
	const count = 400
	if r := b.do(t, "send "+a.name+" "+strconv.Itoa(count)); r != "<nil>" {
		t.Fatal(r)
	}
	var last string
	for end := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		last = a.do(t, "sunk")
		if f := strings.Fields(last); len(f) == 2 && f[0] == strconv.Itoa(count) {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("a got (count, damaged) = %s of %d blobs in 30 s; a's links: %q", last, count, a.do(t, "nodes"))
		}
	}
	if f := strings.Fields(a.do(t, "sunk")); f[1] != "0" {
		t.Fatalf("%s blobs arrived damaged", f[1])
	}
	if r := a.do(t, "nodes"); r != b.name {
		t.Fatalf("a's links after the blobs: %q, want %s (a broken framing drops the link)", r, b.name)
	}
	b.do(t, "keepalive 50ms")

	// Frozen: b writes nothing more.
	if err := syscall.Kill(b.cmd.Process.Pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = syscall.Kill(b.cmd.Process.Pid, syscall.SIGCONT) }()
	time.Sleep(time.Second)
	if age := a.readAge(t, b.name); age < 900*time.Millisecond {
		t.Errorf("a last read from the frozen b %s ago, want about 1 s", age)
	}
	if err := syscall.Kill(b.cmd.Process.Pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 10*time.Second, "reads from the thawed b", func() bool {
		age := a.readAge(t, b.name)
		return age >= 0 && age < 500*time.Millisecond
	})
}
