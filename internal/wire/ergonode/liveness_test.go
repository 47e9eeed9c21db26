package ergonode

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand"
	"sync"
	"testing"
	"time"
)

// sink is a socket that keeps what is written to it, and reads from r.
type sink struct {
	mu  sync.Mutex
	out bytes.Buffer
	r   io.Reader
	// short: each Write takes at most this many bytes and reports a short
	// write (0: all).
	short int
}

func (s *sink) Read(p []byte) (int, error)       { return s.r.Read(p) }
func (s *sink) SetReadDeadline(time.Time) error  { return nil }
func (s *sink) SetWriteDeadline(time.Time) error { return nil }
func (s *sink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.short > 0 && len(p) > s.short {
		s.out.Write(p[:s.short])
		return s.short, io.ErrShortWrite
	}
	return s.out.Write(p)
}

func (s *sink) bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]byte(nil), s.out.Bytes()...)
}

// packets cuts a stream into packets; ticks counts the empty ones, which
// are left out. ok is false if the stream does not end a packet.
func packets(b []byte) (ps [][]byte, ticks int, ok bool) {
	for len(b) >= 4 {
		l := int(binary.BigEndian.Uint32(b))
		if len(b)-4 < l {
			return ps, ticks, false
		}
		if l == 0 {
			ticks++
		} else {
			ps = append(ps, b[4:4+l])
		}
		b = b[4+l:]
	}
	return ps, ticks, len(b) == 0
}

// packet is a packet of n bytes (n > 0) whose body tells it apart.
func packet(i, n int) []byte {
	p := binary.BigEndian.AppendUint32(nil, uint32(n))
	for j := 0; j < n; j++ {
		p = append(p, byte(i+j)|1) // never a run of zeros that looks like a tick
	}
	return p
}

// writeChunks writes the packets in chunks cut by cut (as Ergo's bufio
// writer hands over part of a packet), calling between(true) after each
// chunk.
func writeChunks(t testing.TB, c *liveConn, pkts [][]byte, cut func() int, between func()) {
	var stream []byte
	for _, p := range pkts {
		stream = append(stream, p...)
	}
	for len(stream) > 0 {
		k := min(max(cut(), 1), len(stream))
		if _, err := c.Write(stream[:k]); err != nil {
			t.Fatal(err)
		}
		stream = stream[k:]
		between()
	}
}

// checkStream asserts the peer sees exactly the packets, in order, with
// ticks only between them.
func checkStream(t testing.TB, got []byte, pkts [][]byte) int {
	t.Helper()
	ps, ticks, ok := packets(got)
	if !ok {
		t.Fatalf("the stream does not end on a packet boundary")
	}
	if len(ps) != len(pkts) {
		t.Fatalf("peer sees %d packets, want %d (a tick inside a packet breaks the framing)", len(ps), len(pkts))
	}
	for i := range ps {
		if !bytes.Equal(ps[i], pkts[i][4:]) {
			t.Fatalf("packet %d differs (%d bytes, want %d)", i, len(ps[i]), len(pkts[i])-4)
		}
	}
	return ticks
}

// A tick tried after every chunk Ergo writes lands only between packets,
// however the packets are cut: the peer always reads valid framing.
func FuzzLiveConnFraming(f *testing.F) {
	f.Add([]byte{3, 1, 200, 7, 0, 9}, int64(1))
	f.Add([]byte{255, 255, 1, 1, 1}, int64(2))
	f.Add([]byte{0}, int64(3))
	f.Fuzz(func(t *testing.T, sizes []byte, seed int64) {
		if len(sizes) > 64 {
			sizes = sizes[:64]
		}
		var pkts [][]byte
		for i, s := range sizes {
			pkts = append(pkts, packet(i, int(s)*37%5000+1))
		}
		rng := rand.New(rand.NewSource(seed))
		s := &sink{}
		c := &liveConn{NetReadWriter: s, links: newLinks()}
		tries, boundaries := 0, 0
		writeChunks(t, c, pkts, func() int { return rng.Intn(700) + 1 }, func() {
			now := sinceEpoch() + int64(time.Hour) // idle for long
			c.mu.Lock()
			if c.boundary() {
				boundaries++
			}
			if _, err := c.idleTick(now, 1); err != nil {
				t.Fatal(err)
			}
			c.mu.Unlock()
			tries++
		})
		ticks := checkStream(t, s.bytes(), pkts)
		// Every try at a boundary wrote one, and none elsewhere.
		if ticks != boundaries {
			t.Fatalf("%d ticks written, %d tries at a boundary (of %d)", ticks, boundaries, tries)
		}
	})
}

// A short write (the socket took part of a chunk and failed) is tracked by
// what was written.
func TestLiveConnTracksShortWrites(t *testing.T) {
	s := &sink{short: 3}
	c := &liveConn{NetReadWriter: s, links: newLinks()}
	p := packet(0, 10)
	if _, err := c.Write(p); !errors.Is(err, io.ErrShortWrite) {
		t.Fatalf("want a short write, got %v", err)
	}
	if c.head != 3 || c.boundary() {
		t.Fatalf("after 3 of the 4 length bytes: head %d, boundary %v", c.head, c.boundary())
	}
	s.short = 0
	if _, err := c.Write(p[3:]); err != nil {
		t.Fatal(err)
	}
	if !c.boundary() {
		t.Fatal("the packet was written whole: want a boundary")
	}
}

// Concurrently with Ergo's writes (cut anywhere, with pauses), keepalives
// asked again and again keep the stream valid; and an idle link does get
// ticks.
func TestLiveConnKeepaliveUnderConcurrentWrites(t *testing.T) {
	s := &sink{}
	l := newLinks()
	c := &liveConn{NetReadWriter: s, links: l, peer: "p@127.0.0.1"}
	l.add(c.peer, c)
	done := make(chan struct{})
	kicked := make(chan struct{})
	go func() {
		defer close(kicked)
		for {
			select {
			case <-done:
				return
			default:
			}
			l.Keepalive(100*time.Microsecond, nil)
			time.Sleep(50 * time.Microsecond)
		}
	}()
	rng := rand.New(rand.NewSource(1))
	var pkts [][]byte
	for i := 0; i < 3000; i++ {
		pkts = append(pkts, packet(i, rng.Intn(3000)+1))
	}
	writeChunks(t, c, pkts, func() int { return rng.Intn(2000) + 1 }, func() {
		if rng.Intn(20) == 0 {
			time.Sleep(300 * time.Microsecond) // idle long enough for a tick
		}
	})
	// Idle now: ticks keep coming.
	before := len(s.bytes())
	deadline := time.Now().Add(10 * time.Second)
	for len(s.bytes()) < before+8 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	close(done)
	<-kicked
	l.wait()
	l.remove(c.peer, c)
	ticks := checkStream(t, s.bytes(), pkts)
	if got := len(s.bytes()); got < before+8 {
		t.Fatalf("an idle link wrote %d bytes in 10 s, want ticks", got-before)
	}
	t.Logf("%d packets, %d ticks", len(pkts), ticks)
}

// A tick only on a link idle for the period, and none on a removed link.
func TestLiveConnTicksOnlyWhenIdle(t *testing.T) {
	s := &sink{}
	l := newLinks()
	c := &liveConn{NetReadWriter: s, links: l, peer: "p@h"}
	l.add(c.peer, c)
	c.mu.Lock()
	c.lastWrite = 100
	wrote, err := c.idleTick(105, 10)
	if err != nil || wrote || len(s.bytes()) != 0 {
		t.Fatalf("written 5 ago, idle 10: wrote %v (%d bytes, %v)", wrote, len(s.bytes()), err)
	}
	if wrote, _ := c.idleTick(110, 10); !wrote || len(s.bytes()) != 4 {
		t.Fatalf("idle for the period: wrote %v, %d bytes; want one tick", wrote, len(s.bytes()))
	}
	c.mu.Unlock()
	l.remove(c.peer, c)
	c.mu.Lock()
	defer c.mu.Unlock()
	if wrote, _ := c.idleTick(1000, 10); wrote {
		t.Fatal("a removed link wrote a tick")
	}
}

// Reads are timed; ReadTimes reports the served links that read.
func TestLinksReadTimes(t *testing.T) {
	l := newLinks()
	a := &liveConn{NetReadWriter: &sink{r: bytes.NewReader([]byte{1, 2, 3})}, links: l, peer: "a@h"}
	b := &liveConn{NetReadWriter: &sink{r: bytes.NewReader(nil)}, links: l, peer: "b@h"}
	l.add(a.peer, a)
	l.add(b.peer, b)
	before := time.Now()
	if _, err := a.Read(make([]byte, 8)); err != nil {
		t.Fatal(err)
	}
	_, _ = b.Read(make([]byte, 8)) // EOF, nothing read
	got := map[string]time.Time{"stale@h": {}}
	l.ReadTimes(got)
	if len(got) != 1 || got[a.peer].Before(before) || got[a.peer].After(time.Now()) {
		t.Fatalf("read times %v: want only %s, between %v and now", got, a.peer, before)
	}
	l.remove(a.peer, a)
	l.ReadTimes(got)
	if len(got) != 0 {
		t.Fatalf("after the link ended: %v", got)
	}
}

// Keepalive with a list ticks only the links to those peers (the
// neighbour watch); without one, every link. Ticks counts them.
func TestKeepaliveOnlyToTheListedPeers(t *testing.T) {
	l := newLinks()
	sinks := map[string]*sink{}
	for _, p := range []string{"a@h", "b@h", "c@h"} {
		sinks[p] = &sink{}
		l.add(p, &liveConn{NetReadWriter: sinks[p], links: l, peer: p})
	}
	l.Keepalive(time.Nanosecond, []string{"a@h", "c@h", "gone@h"})
	l.wait()
	if a, b, c := len(sinks["a@h"].bytes()), len(sinks["b@h"].bytes()), len(sinks["c@h"].bytes()); a != 4 || b != 0 || c != 4 {
		t.Fatalf("bytes written a %d, b %d, c %d: want a tick to a and c only", a, b, c)
	}
	time.Sleep(time.Millisecond)
	l.Keepalive(time.Nanosecond, nil)
	l.wait()
	if got := l.Ticks(); got["a@h"] != 2 || got["b@h"] != 1 || got["c@h"] != 2 || len(got) != 3 {
		t.Fatalf("ticks %v, want a 2, b 1, c 2", got)
	}
}
