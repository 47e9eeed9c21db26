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

	"github.com/cloister-go/cloister/cloistertest"
)

func main() {
	ns := flag.String("n", "3,5,10", "cluster sizes")
	rounds := flag.Int("rounds", 3, "rounds per size (the median is reported)")
	flag.Parse()
	bin, err := cloistertest.Binary()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("| N | assembly: last process started → all ready (median, min–max) | kill -9 → listener on every survivor (median, max) |")
	fmt.Println("|---|---|---|")
	for _, f := range strings.Split(*ns, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 2 {
			fmt.Fprintln(os.Stderr, "bad -n:", f)
			os.Exit(2)
		}
		var asm, kill []time.Duration
		for r := 0; r < *rounds; r++ {
			a, k, err := round(bin, n, r)
			if err != nil {
				fmt.Fprintf(os.Stderr, "N=%d round %d: %v\n", n, r, err)
				os.Exit(1)
			}
			asm = append(asm, a)
			kill = append(kill, k)
		}
		fmt.Printf("| %d | %s (%s–%s) | %s (max %s) |\n", n, med(asm), min(asm), max(asm), med(kill), max(kill))
	}
}

func round(bin string, n, r int) (time.Duration, time.Duration, error) {
	h, err := cloistertest.NewWithBinary(bin)
	if err != nil {
		return 0, 0, err
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
			return 0, 0, err
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
			return 0, 0, err
		}
		if at := time.Unix(0, e.At); at.After(readyAt) {
			readyAt = at
		}
	}
	assembly := readyAt.Sub(lastStart)

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
			return 0, 0, err
		}
		if d := time.Unix(0, e.At).Sub(killed); d > worst {
			worst = d
		}
	}
	return assembly, worst, nil
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
