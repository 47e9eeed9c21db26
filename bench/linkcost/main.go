// Command linkcost measures what one node pays per peer per keepalive
// period to tell its peers it is alive and to hear that they are, over TCP
// ticks (what cloister does) and over authenticated UDP datagrams (an
// alternative that was measured, not built; see bench/scale.md).
//
// The measured process is one node with -peers peers, spread over -procs
// child processes; every peer ticks on the same wall-clock grid of -period,
// as cloister's nodes do, and only the measured process's CPU is counted.
// Modes, run interleaved -rounds times:
//
//   - idle: the links are up, nothing is sent (the fixed cost of the
//     process and its grid timer);
//   - tcp: a 4-byte write on each link per period, one reader goroutine
//     per link (cloister's keepalive ticks, without Ergo around them);
//   - udp: one socket; per period one sendmmsg of a datagram (64 bytes,
//     HMAC-SHA256 truncated to 16) to every peer, and a reader goroutine
//     in recvmmsg that checks each datagram's HMAC;
//   - drain: as udp, but nothing blocks in recvmmsg: at each grid tick the
//     node drains its socket with MSG_DONTWAIT before it sends, so the
//     process wakes once per period whatever the number of peers.
//
// Run it as
//
//	go run ./bench/linkcost -period 600ms -periods 20 -rounds 2
package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"hash"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"
)

var (
	peers   = flag.Int("peers", 49, "peers of the measured node")
	procs   = flag.Int("procs", 7, "child processes the peers run in")
	period  = flag.Duration("period", 600*time.Millisecond, "keepalive period (a wall-clock grid)")
	periods = flag.Int("periods", 20, "periods measured per run")
	rounds  = flag.Int("rounds", 2, "rounds of the modes, interleaved")
	modes   = flag.String("modes", "idle,tcp,udp,drain", "modes to run, in this order each round")
)

var key = []byte("a key derived from the cookie....")

func main() {
	flag.Parse()
	if flag.NArg() == 2 && flag.Arg(0) == "child" {
		if err := child(flag.Arg(1)); err != nil {
			fmt.Fprintln(os.Stderr, "linkcost child:", err)
			os.Exit(1)
		}
		return
	}
	fmt.Printf("peers %d in %d processes, period %v, %d periods a run\n", *peers, *procs, *period, *periods)
	for range *rounds {
		for _, mode := range strings.Split(*modes, ",") {
			if err := measure(mode); err != nil {
				fmt.Fprintln(os.Stderr, "linkcost:", err)
				os.Exit(1)
			}
		}
	}
}

// cpu is the process's CPU time so far, user and system.
func cpu() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// sleepToGrid sleeps until the next multiple of the period.
func sleepToGrid() {
	now := time.Now()
	time.Sleep(now.Truncate(*period).Add(*period).Sub(now))
}

var tick = []byte{0, 0, 0, 0}

// counters of the measured process (reset per run).
var heard, batches atomic.Int64

// readTicks is a link's reader, recording when it last read a byte.
func readTicks(c net.Conn, last *atomic.Int64) {
	b := make([]byte, 4096)
	for {
		n, err := c.Read(b)
		if n > 0 {
			heard.Add(1)
			last.Store(time.Now().UnixNano())
		}
		if err != nil {
			return
		}
	}
}

// seal builds peer i's datagram: magic and version, a sender name, a
// nonce, a counter, the counter heard, and a truncated HMAC.
func seal(h hash.Hash, b []byte, i int, ctr uint64) []byte {
	b = append(b[:0], 'C', 'L', 'V', 1)
	b = fmt.Appendf(b, "node%02d@127.0.0.1", i%100)
	b = binary.BigEndian.AppendUint64(b, 12345)
	b = binary.BigEndian.AppendUint64(b, ctr)
	b = binary.BigEndian.AppendUint64(b, ctr)
	h.Reset()
	h.Write(b)
	return h.Sum(b)[:len(b)+16]
}

// open checks a datagram's HMAC and returns the peer number it names.
func open(h hash.Hash, b, sum []byte) (int, bool) {
	if len(b) < 4+16+24+16 {
		return 0, false
	}
	h.Reset()
	h.Write(b[:len(b)-16])
	sum = h.Sum(sum[:0])
	if !hmac.Equal(sum[:16], b[len(b)-16:]) {
		return 0, false
	}
	return int(b[8]-'0')*10 + int(b[9]-'0'), true
}

func measure(mode string) error {
	heard.Store(0)
	batches.Store(0)
	kind := "tcp"
	if mode == "udp" || mode == "drain" {
		kind = "udp"
	}
	var l interface {
		Addr() net.Addr
		Close() error
	}
	var uc *net.UDPConn
	if kind == "tcp" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		l = ln
	} else {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			return err
		}
		uc = c
		l = udpAddr{c}
	}
	defer l.Close()
	var cmds []*exec.Cmd
	defer func() {
		for _, c := range cmds {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
	}()
	for p := range *procs {
		n := *peers / *procs
		if p < *peers%*procs {
			n++
		}
		cmd := exec.Command(os.Args[0], "-period", period.String(), "child",
			fmt.Sprintf("%s,%s,%d,%d", mode, l.Addr(), p*100/(*procs), n))
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			return err
		}
		cmds = append(cmds, cmd)
	}
	lasts := make([]atomic.Int64, 100)
	var used time.Duration
	if kind == "tcp" {
		conns := make([]net.Conn, 0, *peers)
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for i := range *peers {
			c, err := l.(net.Listener).Accept()
			if err != nil {
				return err
			}
			conns = append(conns, c)
			go readTicks(c, &lasts[i])
		}
		time.Sleep(time.Second)
		t0 := cpu()
		for range *periods {
			sleepToGrid()
			if mode == "idle" {
				continue
			}
			for _, c := range conns {
				if _, err := c.Write(tick); err != nil {
					return err
				}
			}
		}
		used = cpu() - t0
	} else {
		var err error
		if used, err = measureUDP(mode, uc, lasts); err != nil {
			return err
		}
	}
	per := float64(*periods * *peers)
	fmt.Printf("%-5s %6.2f µs per peer per period   heard %d of %d, %d read batches\n",
		mode, float64(used.Nanoseconds())/1e3/per, heard.Load(), *periods**peers, batches.Load())
	return nil
}

type udpAddr struct{ *net.UDPConn }

func (u udpAddr) Addr() net.Addr { return u.LocalAddr() }

func measureUDP(mode string, uc *net.UDPConn, lasts []atomic.Int64) (time.Duration, error) {
	pc := ipv4.NewPacketConn(uc)
	// Each peer says hello once, so the node knows where to send.
	addrs := map[string]*net.UDPAddr{}
	b := make([]byte, 256)
	for len(addrs) < *peers {
		_, a, err := uc.ReadFromUDP(b)
		if err != nil {
			return 0, err
		}
		addrs[a.String()] = a
	}
	rms := make([]ipv4.Message, 64)
	for i := range rms {
		rms[i].Buffers = [][]byte{make([]byte, 256)}
	}
	rh := hmac.New(sha256.New, key)
	sum := make([]byte, 0, sha256.Size)
	handle := func(n int) {
		now := time.Now().UnixNano()
		for _, m := range rms[:n] {
			if i, ok := open(rh, m.Buffers[0][:m.N], sum); ok {
				heard.Add(1)
				lasts[i%len(lasts)].Store(now)
			}
		}
	}
	if mode == "udp" {
		go func() {
			for {
				n, err := pc.ReadBatch(rms, 0)
				if err != nil {
					return
				}
				batches.Add(1)
				handle(n)
			}
		}()
	}
	sh := hmac.New(sha256.New, key)
	ms := make([]ipv4.Message, 0, *peers)
	bufs := make([][]byte, *peers)
	for _, a := range addrs {
		ms = append(ms, ipv4.Message{Addr: a, Buffers: make([][]byte, 1)})
	}
	time.Sleep(time.Second)
	var ctr uint64
	t0 := cpu()
	for range *periods {
		sleepToGrid()
		if mode == "drain" {
			for {
				n, err := pc.ReadBatch(rms, syscall.MSG_DONTWAIT)
				if errors.Is(err, syscall.EAGAIN) || n == 0 {
					break
				}
				if err != nil {
					return 0, err
				}
				batches.Add(1)
				handle(n)
				if n < len(rms) {
					break
				}
			}
		}
		for i := range ms {
			ctr++
			bufs[i] = seal(sh, bufs[i], 0, ctr)
			ms[i].Buffers[0] = bufs[i]
		}
		for off := 0; off < len(ms); {
			n, err := pc.WriteBatch(ms[off:], 0)
			if err != nil {
				return 0, err
			}
			off += n
		}
	}
	return cpu() - t0, nil
}

// child runs n peers of the measured node, each on its own goroutine and
// socket, ticking on the grid; it runs until killed.
func child(arg string) error {
	var mode, addr string
	var first, n int
	f := strings.Split(arg, ",")
	if len(f) != 4 {
		return fmt.Errorf("bad child argument %q", arg)
	}
	mode, addr = f[0], f[1]
	if _, err := fmt.Sscan(f[2], &first); err != nil {
		return err
	}
	if _, err := fmt.Sscan(f[3], &n); err != nil {
		return err
	}
	errs := make(chan error, n)
	for i := range n {
		go func() { errs <- peer(mode, addr, first+i) }()
	}
	return <-errs
}

func peer(mode, addr string, i int) error {
	if mode == "idle" || mode == "tcp" {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return err
		}
		var last atomic.Int64
		go readTicks(c, &last)
		for {
			sleepToGrid()
			if mode == "idle" {
				continue
			}
			if _, err := c.Write(tick); err != nil {
				return err
			}
		}
	}
	to, err := net.ResolveUDPAddr("udp4", addr)
	if err != nil {
		return err
	}
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return err
	}
	go func() {
		b := make([]byte, 256)
		for {
			if _, _, err := c.ReadFromUDP(b); err != nil {
				return
			}
		}
	}()
	if _, err := c.WriteToUDP([]byte("hello"), to); err != nil {
		return err
	}
	h := hmac.New(sha256.New, key)
	var b []byte
	for ctr := uint64(1); ; ctr++ {
		sleepToGrid()
		b = seal(h, b, i, ctr)
		if _, err := c.WriteToUDP(b, to); err != nil {
			return err
		}
	}
}
