// Command cluster measures cluster formation and failure detection with
// real node processes on 127.0.0.1 (the `cloister node` binary):
//
//   - assembly: from the moment the last of N processes is started to the
//     moment every node is ready with N members (node-side timestamps);
//   - kill: from kill -9 of one node to the listener call on every survivor.
//
// It prints a Markdown table. Usage: go run ./bench/cluster -n 3,5,10,25 -rounds 3
package main

import (
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cloister-go/cloister/actors"
	"github.com/cloister-go/cloister/cloistertest"
	"github.com/cloister-go/cloister/internal/wire/ergonode"
	"github.com/ergo-services/ergo/etf"
	"github.com/ergo-services/ergo/gen"
)

func main() {
	ns := flag.String("n", "3,5,10", "cluster sizes")
	rounds := flag.Int("rounds", 3, "rounds per size (the median is reported)")
	calls := flag.Int("calls", 200, "fan-outs per size for the Multicall measurement")
	flag.Parse()
	bin, err := cloistertest.Binary()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("| N | assembly: last process started → all ready (median, min–max) | kill -9 → listener on every survivor (median, max) | Multicall to N nodes | raw loop of N Ergo calls | Multicall / raw |")
	fmt.Println("|---|---|---|---|---|---|")
	for _, f := range strings.Split(*ns, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 2 {
			fmt.Fprintln(os.Stderr, "bad -n:", f)
			os.Exit(2)
		}
		var asm, kill []time.Duration
		var mc, raw time.Duration
		for r := 0; r < *rounds; r++ {
			c := 0
			if r == 0 {
				c = *calls
			}
			a, k, m, w, err := round(bin, n, r, c)
			if err != nil {
				fmt.Fprintf(os.Stderr, "N=%d round %d: %v\n", n, r, err)
				os.Exit(1)
			}
			asm = append(asm, a)
			kill = append(kill, k)
			if c > 0 {
				mc, raw = m, w
			}
		}
		fmt.Printf("| %d | %s (%s–%s) | %s (max %s) | %s | %s | %.2f |\n", n, med(asm), min(asm), max(asm), med(kill), max(kill),
			mc.Round(time.Microsecond), raw.Round(time.Microsecond), float64(mc)/float64(raw))
	}
}

func round(bin string, n, r, calls int) (asm, kill, mc, raw time.Duration, err error) {
	h, err := cloistertest.NewWithBinary(bin)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	defer h.Close()
	var names []string
	for i := 0; i < n; i++ {
		names = append(names, fmt.Sprintf("bench%d_%d_%d@127.0.0.1", n, r, i))
	}
	var nodes []*cloistertest.Node
	var lastStart time.Time
	for _, name := range names {
		node, err := h.Start(cloistertest.Spec{Name: name, Sentry: names, Consensus: n})
		if err != nil {
			return 0, 0, 0, 0, err
		}
		lastStart = time.Now()
		nodes = append(nodes, node)
	}
	var readyAt time.Time
	for _, node := range nodes {
		e, err := node.WaitFor(60*time.Second, "ready with all", func(e cloistertest.Event) bool {
			return e.Event == "state" && e.To == "ready" && len(e.Snapshot.Members) == n
		})
		if err != nil {
			return 0, 0, 0, 0, err
		}
		if at := time.Unix(0, e.At); at.After(readyAt) {
			readyAt = at
		}
	}
	assembly := readyAt.Sub(lastStart)
	if calls > 0 {
		if mc, raw, err = fanout(h, names, calls); err != nil {
			return 0, 0, 0, 0, err
		}
	}

	time.Sleep(300 * time.Millisecond) // let heartbeats settle
	victim := nodes[n/2]
	killed := time.Now()
	victim.Kill()
	var worst time.Duration
	for _, node := range nodes {
		if node == victim {
			continue
		}
		e, err := node.WaitFor(30*time.Second, "rehash after kill", func(e cloistertest.Event) bool {
			return e.Event == "state" && e.From == "ready" && e.To == "rehashing" && time.Unix(0, e.At).After(killed)
		})
		if err != nil {
			return 0, 0, 0, 0, err
		}
		if d := time.Unix(0, e.At).Sub(killed); d > worst {
			worst = d
		}
	}
	return assembly, worst, mc, raw, nil
}

// fanout times, from a plain Ergo node connected to the cluster (it runs no
// cloister), Multicall of a small request to every node's Monitor against
// the baseline: a loop of Ergo's own CallWithTimeout to the same nodes, run
// inside a process and timed there. Interleaved; means per fan-out.
func fanout(h *cloistertest.Harness, names []string, calls int) (time.Duration, time.Duration, error) {
	n, err := ergonode.Start(fmt.Sprintf("benchcaller_%d_%d@127.0.0.1", len(names), os.Getpid()),
		ergonode.Options{EPMDPort: h.EPMD.Port, Cookie: h.Cookie})
	if err != nil {
		return 0, 0, err
	}
	defer n.Stop()
	for _, nm := range names {
		if err := n.Connect(nm); err != nil {
			return 0, 0, err
		}
	}
	p, err := n.Spawn("", gen.ProcessOptions{}, &rawCaller{})
	if err != nil {
		return 0, 0, err
	}
	req := etf.Tuple{etf.Atom("whois"), []byte(""), []byte("user:42")}
	var mcTotal, rawTotal time.Duration
	for i := 0; i < calls; i++ {
		start := time.Now()
		rs, err := actors.Multicall(n, names, actors.MonitorName, req, 5*time.Second)
		mcTotal += time.Since(start)
		if err != nil {
			return 0, 0, err
		}
		for _, r := range rs {
			if r.Err != nil {
				return 0, 0, r.Err
			}
		}
		d, err := p.Direct(rawLoop{names: names, req: req})
		if err != nil {
			return 0, 0, err
		}
		rawTotal += d.(time.Duration)
	}
	return mcTotal / time.Duration(calls), rawTotal / time.Duration(calls), nil
}

type rawLoop struct {
	names []string
	req   etf.Term
}

// rawCaller runs the baseline: N sequential gen_server calls.
type rawCaller struct{ gen.Server }

func (c *rawCaller) HandleDirect(p *gen.ServerProcess, ref etf.Ref, m interface{}) (interface{}, gen.DirectStatus) {
	l := m.(rawLoop)
	start := time.Now()
	for _, nm := range l.names {
		if _, err := p.CallWithTimeout(gen.ProcessID{Name: actors.MonitorName, Node: nm}, l.req, 5); err != nil {
			return nil, err
		}
	}
	return time.Since(start), gen.DirectStatusOK
}

func sorted(ds []time.Duration) []time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s
}

func med(ds []time.Duration) time.Duration { return sorted(ds)[len(ds)/2].Round(time.Millisecond) }
func min(ds []time.Duration) time.Duration { return sorted(ds)[0].Round(time.Millisecond) }
func max(ds []time.Duration) time.Duration {
	return sorted(ds)[len(ds)-1].Round(time.Millisecond)
}
