package main

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cloister-go/cloister/internal/localcluster"
	"github.com/cloister-go/cloister/ring"
)

// ShareTolerance bounds |moved / ideal share − 1| for a topology change.
// The ring's balance (ring.Replicas points per member) keeps one member's
// share of 1M keys within a few percent of 1/N; 25 % is far outside that.
const ShareTolerance = 0.25

// coord drives the worker processes and checks what they report.
type coord struct {
	h       *localcluster.Harness
	out     io.Writer
	nkeys   int
	batch   int
	timeout time.Duration
	keys    []string // the same key space as the workers, for the expected moves
	client  http.Client

	nodes  map[string]*member
	failed []string
	rounds int64 // work rounds done so far: every entity's work count
}

// member is one worker process and its HTTP address.
type member struct {
	node *localcluster.Node
	addr string
}

// run is the coordinator: the example's main job. It returns the exit
// status: 0 when every check held, 1 when one failed, 2 for bad flags.
func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("zerocost", flag.ContinueOnError)
	fs.SetOutput(stderr)
	nkeys := fs.Int("keys", 1000000, "number of keyed entities")
	batch := fs.Int("batch", 10000, "entities per handover Multicall")
	timeout := fs.Duration("timeout", 2*time.Minute, "deadline of each wait (start, handover)")
	verbose := fs.Bool("v", false, "show the nodes' logs on stderr")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 || *nkeys < 1 || *batch < 1 || *timeout <= 0 {
		fmt.Fprintln(stderr, usage())
		return 2
	}
	bin, err := os.Executable()
	if err != nil {
		fmt.Fprintln(stderr, "zerocost:", err)
		return 1
	}
	h, err := localcluster.New(bin, localcluster.Options{Cookie: "zerocost"})
	if err != nil {
		fmt.Fprintln(stderr, "zerocost:", err)
		return 1
	}
	defer h.Close()
	if *verbose {
		h.Logs = stderr
	}
	c := &coord{h: h, out: stdout, nkeys: *nkeys, batch: *batch, timeout: *timeout,
		keys: makeKeys(*nkeys), client: http.Client{Timeout: time.Minute}, nodes: map[string]*member{}}
	start := time.Now()
	err = c.scenario()
	if err != nil {
		c.failed = append(c.failed, err.Error())
	}
	c.stopAll()
	fmt.Fprintf(stdout, "\nmachine: %d CPUs, load average %s (other processes share the CPUs: times above include waiting for them)\n",
		runtime.NumCPU(), loadavg())
	if len(c.failed) > 0 {
		fmt.Fprintf(stdout, "\nFAIL after %s:\n", time.Since(start).Round(time.Millisecond))
		for _, f := range c.failed {
			fmt.Fprintln(stdout, "  -", f)
		}
		return 1
	}
	fmt.Fprintf(stdout, "\nPASS: every check held (%s in all)\n", time.Since(start).Round(time.Millisecond))
	return 0
}

func (c *coord) printf(format string, args ...interface{}) { fmt.Fprintf(c.out, format, args...) }

// check records a failed assertion; the run goes on so that the report
// shows everything that went wrong.
func (c *coord) check(ok bool, format string, args ...interface{}) bool {
	if !ok {
		msg := fmt.Sprintf(format, args...)
		c.failed = append(c.failed, msg)
		c.printf("  FAILED: %s\n", msg)
	}
	return ok
}

func (c *coord) scenario() error {
	seeds := []string{"zc_1@127.0.0.1", "zc_2@127.0.0.1", "zc_3@127.0.0.1"}
	joiner, leaver := "zc_4@127.0.0.1", "zc_2@127.0.0.1"
	all := append(slices.Clone(seeds), joiner)
	remaining := slices.DeleteFunc(slices.Clone(all), func(n string) bool { return n == leaver })

	c.printf("zerocost: %s keyed entities on %d node processes, then +1 node, then -1 (batch %s, epmd 127.0.0.1:%d)\n",
		group(c.nkeys), len(seeds), group(c.batch), c.h.EPMD.Port)

	// 1. Three nodes form; each seeds the entities it owns.
	t0 := time.Now()
	for _, n := range seeds {
		if err := c.launch(n, seeds, true); err != nil {
			return err
		}
	}
	for _, n := range seeds { // each start gate opens once all three are members
		if err := c.waitStarted(n); err != nil {
			return err
		}
	}
	if err := c.waitQuiet(seeds); err != nil {
		return err
	}
	c.printf("\n== 1. %d nodes formed and seeded their entities: %s\n", len(seeds), since(t0))
	before, err := c.reports(seeds)
	if err != nil {
		return err
	}
	c.table(nil, before, nil)
	c.verify(before, seeds)
	if err := c.work(seeds); err != nil {
		return err
	}

	// 2. A fourth node joins; the others hand it the keys it now owns.
	pushed0 := pushedBy(before, seeds)
	t1 := time.Now()
	if err := c.launch(joiner, all, false); err != nil {
		return err
	}
	if err := c.waitStarted(joiner); err != nil {
		return err
	}
	if err := c.waitQuiet(all); err != nil {
		return err
	}
	c.printf("\n== 2. %s joined; handover done, cluster quiet %s after its start\n", joiner, since(t1))
	after, err := c.reports(all)
	if err != nil {
		return err
	}
	c.table(before, after, nil)
	c.verify(after, all)
	c.moves(seeds, all, pushedBy(after, all)-pushed0, "join")
	if err := c.work(all); err != nil {
		return err
	}

	// 3. One of the first nodes leaves: it drains, then stops.
	before = after
	pushed0 = pushedBy(before, remaining)
	t2 := time.Now()
	var drained handover
	if err := c.post(leaver, "/zc/drain", &drained); err != nil {
		return fmt.Errorf("drain %s: %w", leaver, err)
	}
	tDrain := time.Since(t2)
	if err := c.nodes[leaver].node.Stop(); err != nil {
		return err
	}
	delete(c.nodes, leaver)
	if err := c.waitQuiet(remaining); err != nil {
		return err
	}
	c.printf("\n== 3. %s drained (%s entities in %d batches, %s) and left; cluster quiet %s after the drain began\n",
		leaver, group(drained.Pushed), drained.Batches, tDrain.Round(time.Millisecond), since(t2))
	after, err = c.reports(remaining)
	if err != nil {
		return err
	}
	c.table(before, after, map[string]handover{leaver: drained})
	c.verify(after, remaining)
	c.moves(all, remaining, pushedBy(after, remaining)-pushed0+int64(drained.Pushed), "leave")
	return c.work(remaining)
}

// launch starts a worker process and learns its HTTP address.
func (c *coord) launch(name string, sentries []string, seed bool) error {
	args := []string{"-keys", strconv.Itoa(c.nkeys), "-batch", strconv.Itoa(c.batch)}
	if seed {
		args = append(args, "-seed")
	}
	n, err := c.h.Start(localcluster.Spec{Name: name, Sentry: sentries, Consensus: 3, Args: args})
	if err != nil {
		return err
	}
	ev, err := n.WaitFor(c.timeout, "listening", func(e localcluster.Event) bool { return e.Event == "listening" })
	if err != nil {
		return err
	}
	c.nodes[name] = &member{node: n, addr: ev.HTTP}
	return nil
}

// waitStarted waits until the worker's start gate opened (consensus).
func (c *coord) waitStarted(name string) error {
	if ev, err := c.nodes[name].node.WaitStarted(c.timeout); err != nil {
		return err
	} else if ev.Event == "error" {
		return fmt.Errorf("%s failed to start: %s", name, ev.Error)
	}
	return nil
}

func (c *coord) stopAll() {
	names := make([]string, 0, len(c.nodes))
	for n := range c.nodes {
		names = append(names, n)
	}
	var wg sync.WaitGroup
	for _, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var ok map[string]bool
			_ = c.post(n, "/zc/halt", &ok) // no handover: every node is going
			if err := c.nodes[n].node.Stop(); err != nil {
				c.nodes[n].node.Kill()
			}
		}()
	}
	wg.Wait()
}

func (c *coord) get(node, path string, v interface{}) error {
	return c.do(http.MethodGet, node, path, v)
}

func (c *coord) post(node, path string, v interface{}) error {
	return c.do(http.MethodPost, node, path, v)
}

func (c *coord) do(method, node, path string, v interface{}) error {
	m := c.nodes[node]
	if m == nil {
		return fmt.Errorf("zerocost: no node %s", node)
	}
	req, err := http.NewRequest(method, "http://"+m.addr+path, nil)
	if err != nil {
		return err
	}
	r, err := c.client.Do(req)
	if err != nil {
		return err
	}
	defer r.Body.Close()
	if r.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(r.Body)
		return fmt.Errorf("%s %s on %s: %s: %s", method, path, node, r.Status, strings.TrimSpace(string(b)))
	}
	return json.NewDecoder(r.Body).Decode(v)
}

// waitQuiet polls every node until all are ready with exactly the members
// given, agree on the ring, have handed over for it, and have received
// every entity they gained.
func (c *coord) waitQuiet(members []string) error {
	want := slices.Sorted(slices.Values(members))
	deadline := time.Now().Add(c.timeout)
	var why string
	for {
		why = c.quiet(want)
		if why == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cluster not quiet after %s: %s", c.timeout, why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// quiet says why the cluster is not quiet yet ("" when it is).
func (c *coord) quiet(want []string) string {
	var hash uint64
	for i, n := range want {
		var s nodeState
		if err := c.get(n, "/zc/state", &s); err != nil {
			return err.Error()
		}
		switch {
		case s.State != "ready":
			return fmt.Sprintf("%s is %s", n, s.State)
		case !slices.Equal(s.Members, want):
			return fmt.Sprintf("%s has members %v", n, s.Members)
		case i > 0 && s.RingHash != hash:
			return fmt.Sprintf("%s has another ring (%x, not %x)", n, s.RingHash, hash)
		case s.HandedHash != s.RingHash || s.Busy:
			return fmt.Sprintf("%s is handing over", n)
		case s.Pending > 0:
			return fmt.Sprintf("%s waits for %d entities", n, s.Pending)
		case s.Leftover > 0:
			return fmt.Sprintf("%s failed to hand over %d entities", n, s.Leftover)
		}
		hash = s.RingHash
	}
	return ""
}

// reports gathers every node's report, in the order given.
func (c *coord) reports(names []string) ([]report, error) {
	out := make([]report, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.get(n, "/zc/report", &out[i])
		}()
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// pushedBy sums the entities the named nodes have pushed so far.
func pushedBy(rs []report, names []string) int64 {
	var t int64
	for _, r := range rs {
		if slices.Contains(names, r.Node) {
			t += r.Pushed
		}
	}
	return t
}

// verify checks the exactly-once property from the nodes' reports.
func (c *coord) verify(rs []report, members []string) {
	counts, err := holders(rs, c.nkeys)
	if !c.check(err == nil, "bad bitmap: %v", err) {
		return
	}
	var none, many, owned, held int
	for _, n := range counts {
		switch {
		case n == 0:
			none++
		case n > 1:
			many++
		}
	}
	for _, r := range rs {
		owned += r.Owned
		held += r.Held
		c.check(r.Strays == 0, "%s holds %d entities another node owns", r.Node, r.Strays)
		c.check(r.Held == r.Owned, "%s holds %d entities but owns %d keys", r.Node, r.Held, r.Owned)
		c.check(r.Held == 0 || (r.MinWork == c.rounds && r.MaxWork == c.rounds),
			"%s: work counts %d..%d, want %d (an entity lost its state in a handover)", r.Node, r.MinWork, r.MaxWork, c.rounds)
	}
	c.check(owned == c.nkeys, "the nodes own %d keys in all, want %d", owned, c.nkeys)
	c.check(none == 0 && many == 0, "%d keys held by no node, %d by more than one", none, many)
	if none == 0 && many == 0 && owned == c.nkeys && held == c.nkeys {
		c.printf("  ok: every one of the %s keys is owned by exactly one of %d nodes and held there once (bitmaps), work counts all %d\n",
			group(c.nkeys), len(members), c.rounds)
	}
}

// holders counts, for every key index, how many nodes hold the entity.
func holders(rs []report, nkeys int) ([]uint8, error) {
	counts := make([]uint8, nkeys)
	for _, r := range rs {
		bits, err := base64.StdEncoding.DecodeString(r.Bitmap)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", r.Node, err)
		}
		if len(bits) != (nkeys+7)/8 {
			return nil, fmt.Errorf("%s: bitmap of %d bytes for %d keys", r.Node, len(bits), nkeys)
		}
		for i := range counts {
			if bits[i/8]&(1<<(i%8)) != 0 && counts[i] < 255 {
				counts[i]++
			}
		}
	}
	return counts, nil
}

// moves checks that the entities handed over are exactly the keys whose
// owner changed between the two member sets, and compares them with the
// ideal share.
func (c *coord) moves(from, to []string, moved int64, what string) {
	set := ring.NewSet()
	_ = set.Define("a", nil)
	_ = set.Define("b", nil)
	old, _, _ := set.Update("a", from)
	cur, _, _ := set.Update("b", to)
	gained, lost := diffOwners(old, cur, c.keys)
	changed := 0
	for _, ks := range lost {
		changed += len(ks)
	}
	// The ideal: one member's fair share of the larger ring.
	ideal := float64(c.nkeys) / float64(max(len(from), len(to)))
	ratio := float64(moved) / ideal
	c.printf("  moved %s entities on %s: the keys whose owner changed are %s (%s); ideal share 1/%d = %s; ratio %.3f\n",
		group(int(moved)), what, group(changed), movedBetween(gained, lost), max(len(from), len(to)), group(int(ideal)), ratio)
	c.printf("  baseline: a static partition (fnv1a mod N over the sorted members) would have moved %s (%.0f %%)\n",
		group(modMoved(c.keys, from, to)), 100*float64(modMoved(c.keys, from, to))/float64(c.nkeys))
	c.check(moved == int64(changed), "%s moved %d entities, but %d keys changed owner", what, moved, changed)
	c.check(ratio > 1-ShareTolerance && ratio < 1+ShareTolerance, "%s moved %.3f of the ideal share", what, ratio)
	// Consistent hashing's promise: only the node that came or went is
	// involved.
	c.check(len(gained) == 1 || len(lost) == 1, "%s moved keys between %d gainers and %d losers", what, len(gained), len(lost))
}

// modMoved counts the keys whose owner changes from one member list to the
// other when owners are members[fnv1a(key) mod len(members)].
func modMoved(keys, from, to []string) int {
	a, b := slices.Sorted(slices.Values(from)), slices.Sorted(slices.Values(to))
	n := 0
	for _, k := range keys {
		h := fnv1a(k)
		if a[h%uint32(len(a))] != b[h%uint32(len(b))] {
			n++
		}
	}
	return n
}

// movedBetween says who gained and who lost.
func movedBetween(gained, lost map[string][]string) string {
	side := func(m map[string][]string) string {
		var parts []string
		for _, n := range slices.Sorted(maps.Keys(m)) {
			parts = append(parts, fmt.Sprintf("%s %s", short(n), group(len(m[n]))))
		}
		return strings.Join(parts, ", ")
	}
	return "from " + side(lost) + " to " + side(gained)
}

// work runs a work round on every node at once and checks that every
// entity was worked on exactly once.
func (c *coord) work(names []string) error {
	res := make([]workResult, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	t0 := time.Now()
	for i, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.post(n, "/zc/work", &res[i])
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	c.rounds++
	c.printf("  work round %d (%d nodes at once, %s): each node asks Mine for all %s keys and works on its own\n",
		c.rounds, len(names), since(t0), group(c.nkeys))
	worked, missing := 0, 0
	for _, r := range res {
		c.printf("    %-8s worked %9s  %6.0f ms  %5.0f ns/key (Mine alone %3.0f ns/key; baseline fnv1a mod N %3.0f ns/key)\n",
			short(r.Node), group(r.Worked), r.Ms, r.NsPerKey, r.MineNs, r.ModNs)
		worked += r.Worked
		missing += r.Missing
	}
	c.check(missing == 0, "%d owned entities missing in work round %d", missing, c.rounds)
	for _, r := range res {
		c.check(r.Owned == r.Worked+r.Missing, "%s: Mine counted %d keys, then %d", r.Node, r.Worked+r.Missing, r.Owned)
	}
	c.check(worked == c.nkeys, "work round %d worked %d entities, want %d", c.rounds, worked, c.nkeys)
	return nil
}

// table prints the per-node counts, before (nil: none) and after a step.
func (c *coord) table(before, after []report, gone map[string]handover) {
	prev := map[string]report{}
	for _, r := range before {
		prev[r.Node] = r
	}
	names := map[string]bool{}
	for _, r := range before {
		names[r.Node] = true
	}
	for _, r := range after {
		names[r.Node] = true
	}
	now := map[string]report{}
	for _, r := range after {
		now[r.Node] = r
	}
	c.printf("  %-8s %10s %10s %10s %5s %9s %9s %9s %8s %8s %8s %8s\n",
		"node", "before", "after", "owned", "rings", "gained", "lost", "pushed", "diff ms", "push ms", "RSS MiB", "heap MiB")
	var tb, ta, to int
	for _, n := range slices.Sorted(maps.Keys(names)) {
		b, hadB := prev[n]
		a, hasA := now[n]
		col := func(ok bool, v int) string {
			if !ok {
				return "-"
			}
			return group(v)
		}
		// The handovers of this step: a node may see several rings in a
		// row (a joiner can be ready with part of the cluster first).
		var step []handover
		if hasA {
			step = a.Handovers[min(len(b.Handovers), len(a.Handovers)):]
		} else if d, ok := gone[n]; ok {
			step = []handover{d}
		}
		var sum handover
		for _, h := range step {
			sum.Gained += h.Gained
			sum.Lost += h.Lost
			sum.Pushed += h.Pushed
			sum.DiffMs += h.DiffMs
			sum.PushMs += h.PushMs
		}
		rssMiB, heapMiB := "-", "-"
		if hasA {
			rssMiB, heapMiB = fmt.Sprintf("%.1f", float64(a.RSS)/(1<<20)), fmt.Sprintf("%.1f", float64(a.HeapLive)/(1<<20))
			ta += a.Held
			to += a.Owned
		}
		if hadB {
			tb += b.Held
		}
		c.printf("  %-8s %10s %10s %10s %5d %9s %9s %9s %8.1f %8.1f %8s %8s\n", short(n),
			col(hadB, b.Held), col(hasA, a.Held), col(hasA, a.Owned), len(step),
			group(sum.Gained), group(sum.Lost), group(sum.Pushed), sum.DiffMs, sum.PushMs, rssMiB, heapMiB)
	}
	c.printf("  %-8s %10s %10s %10s\n", "total", func() string {
		if before == nil {
			return "-"
		}
		return group(tb)
	}(), group(ta), group(to))
}

// loadavg is the 1, 5 and 15 minute load average (Linux; "?" elsewhere).
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "?"
}

// short drops the host of a node name.
func short(node string) string {
	if i := strings.IndexByte(node, '@'); i > 0 {
		return node[:i]
	}
	return node
}

func since(t time.Time) time.Duration { return time.Since(t).Round(time.Millisecond) }

// group writes n with thousands separators.
func group(n int) string {
	s := strconv.Itoa(n)
	neg := strings.HasPrefix(s, "-")
	if neg {
		s = s[1:]
	}
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
